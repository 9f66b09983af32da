"""MEGA HOPEX REST import simulator (seed 002).

Endpoints (ids percent-decoded before they are compared, so ``rCE%28taFnUXDC`` is ``rCE(taFnUXDC``):

* ``POST /UAS/connect/token`` form: grant_type=password, scope (must contain ``hopex``),
  username, password, client_id, client_secret, environmentId. Answers
  ``{"access_token", "expires_in", "token_type": "Bearer"}``; a wrong client answers 401
  ``invalid_client``, a wrong user/password or environment 400 ``invalid_grant`` (as UAS does).
* ``{api}/environments/{env}/repositories/{repo}/profiles/{profile}/...`` with
  ``Authorization: Bearer <token>``, ``Basic base64(user:password)`` or
  ``HOPEXBASIC user:password`` (both Basic forms need the ``HopexEnvironment`` header).
  A bad token or bad credentials answer 401 (the error echoes the Authorization header it got,
  as a careless server would, so tests prove the connector scrubs it).
  - ``POST .../import``: multipart, exactly one file part, ``validate`` as a form field or as
    ``?validate=`` (default Standard). 202 ``{"job_id"}`` + ``Location: /import/job/<id>``.
    Empty file: 400. File over 30 MB (``max_file_bytes``): 413 with a message.
  - ``POST .../syncimport``: same input; answers 200 with the final job status (and job_id).
  - ``GET .../import/job/{id}``: 202 ``RUNNING`` for the first ``running_polls`` status
    requests of that job (default 2), ``TERMINATED`` from the next one on.
  - ``GET .../import/job/{id}/rejects``: the rejects file (text/plain), 404 when none.

Outcome, decided from the uploaded file content:

* a line containing ``NEVER-ENDS``: the job stays RUNNING forever;
* a line containing ``FAIL-JOB``: TERMINATED with reason ``ERROR`` and ``errmsg``;
* lines containing ``INVALID`` are rejected: TERMINATED/DONE with ``rejects: true``; the
  rejects file holds one line per rejected command: ``line 3: unknown metaclass "X": <line>``;
* anything else: TERMINATED/DONE with ``rejects: false``.

Sources of each behaviour (seed 002 = "Import file", VENDORS.md section 3 = V3):

* The REST path {api}/environments/{env}/repositories/{repo}/profiles/{profile}/import with cn64
  ids holding ``(`` and ``)``: V3 "URL shape" [DOC, examples].
* UAS ``/UAS/connect/token`` password grant, its fields and ``{"access_token", "expires_in": 3600,
  "token_type": "Bearer"}``: V3 "UAS token" [DOC-community + CODE]. The invalid_client /
  invalid_grant errors are IdentityServer's usual answers, not documented by MEGA.
* Authorization Bearer (UAS), Basic with the HopexEnvironment header, HOPEXBASIC user:password:
  V3 "Auth" (V4 table; V2 for HOPEXBASIC). Whether V4 Basic is base64 is not documented: base64.
* Multipart import with exactly one file, ``validate`` Never/Standard/AtEnd/AtEndOnSuccess as a body
  field (V4) or a query parameter (V2), default Standard; 202 + ``Location: /import/job/<id>`` +
  ``{"job_id"}``; files over 30 MB refused: seed 002 / V3 "Submit". The 413 code for the size
  and the 400 for an empty file are not documented (the page says only "a message should be
  displayed"): this simulator's choice.
* ``/syncimport`` and ``.../import/job/<id>/rejects``: seed 002 names them; their exact answers
  are not documented (V3 "Rejects", open question 3): the final status, and text/plain.
* Job status RUNNING / TERMINATED with reason DONE, rejects and rejects_file_name, HTTP 202 for
  every answer: V3 "Poll" [DOC V2]. ``status_code`` switches to 200 ("do not rely on 200 vs 202");
  a failed job is not documented: ``failure`` switches among FAILURE_SHAPES.
* The rejects file format is not documented: one line per refused command is this simulator's.
* The markers that decide an outcome (``INVALID``, ``FAIL-JOB``, ``NEVER-ENDS``) and how many
  polls a job runs (``running_polls``) are test conventions, not vendor behaviour.

Misbehaviour (500, 429, delays, dropped connections, malformed bodies) comes from the base
class's fault injection. ``revoke_tokens()`` makes every issued token invalid (a re-auth
then succeeds); ``accept_tokens = False`` refuses every token, even fresh ones.
"""

from __future__ import annotations

import base64
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from email.message import Message
from email.utils import collapse_rfc2231_value
from typing import Any
from urllib.parse import parse_qs, quote, unquote

from .base import DemoCase, Reply, Request, Simulator

ENVIRONMENT_ID = "rCE(taFnUXDC"
REPOSITORY_ID = "MIwdE)9gNz9I"
PROFILE_ID = "757wuc(SGjpJ"
USERNAME = "sim-importer"
PASSWORD = "sim-hopex-Pa55word"
CLIENT_ID = "HopexAPI"
CLIENT_SECRET = "sim-uas-client-secret"
TOKEN_PATH = "/UAS/connect/token"
API_PATH = "/restapi/v1"
MAX_FILE_BYTES = 30 * 1024 * 1024
VALIDATE_VALUES = ("Never", "Standard", "AtEnd", "AtEndOnSuccess")

DEMO_CASES = [
    DemoCase("clean command file", file="events/files/hopex/clean.mgl",
             key="inbox/hopex/clean.mgl", expect="SUCCEEDED"),
    DemoCase("command file with rejected lines", file="events/files/hopex/with-rejects.mgl",
             key="inbox/hopex/with-rejects.mgl", expect="SUCCEEDED_WITH_REJECTS"),
    DemoCase("import job that fails at HOPEX", file="events/files/hopex/fails.mgl",
             key="inbox/hopex/fails.mgl", expect="FAILED"),
    DemoCase("validate option from the key (validate=AtEnd)", file="events/files/hopex/clean.mgl",
             key="inbox/hopex/validate=AtEnd/clean.mgl", expect="SUCCEEDED"),
]

# The demo also imports one file into each of two more HOPEX targets (a settings document with
# targets default, prod and test), each target served by its own simulator (for_target, its own
# port and credentials): target name -> its case.
TARGET_DEMO_CASES = {
    "prod": DemoCase("target prod, chosen by the key folder target=prod", file="events/files/hopex/clean.mgl",
                     key="inbox/hopex/target=prod/clean.mgl", expect="SUCCEEDED"),
    "test": DemoCase("target test, chosen by S3 metadata target: test", file="events/files/hopex/clean.mgl",
                     key="inbox/hopex/to-test/clean.mgl", expect="SUCCEEDED", metadata={"target": "test"}),
}


@dataclass
class Outcome:
    kind: str  # "done", "rejects", "error" or "never"
    rejects: str = ""
    errmsg: str = ""


def judge(content: bytes) -> Outcome:
    """Decide a job's outcome from the command file (see the module docstring)."""
    lines = re.split(r"\r\n|\r|\n", content.decode("utf-8", "replace"))
    if any("NEVER-ENDS" in line for line in lines):
        return Outcome("never")
    for number, line in enumerate(lines, 1):
        if "FAIL-JOB" in line:
            return Outcome("error", errmsg=f"Import aborted at line {number}: the repository "
                                           "refused the update session (FAIL-JOB)")
    rejected = [(number, line.strip()) for number, line in enumerate(lines, 1) if "INVALID" in line]
    if rejected:
        return Outcome("rejects", rejects="".join(
            f"line {number}: {_reject_reason(line)}: {line}\n" for number, line in rejected))
    return Outcome("done")


def _reject_reason(line: str) -> str:
    quoted = re.search(r'"([^"]*INVALID[^"]*)"', line)
    if quoted and line.startswith((".Create", ".Update", ".Delete")):
        return f'unknown metaclass "{quoted.group(1)}"'
    if quoted:
        return f'unknown object "{quoted.group(1)}"'
    return "invalid command"


# How a failed job answers: no document shows one (only reason DONE is documented), so each
# plausible shape can be switched on: "reason" TERMINATED + reason ERROR + errmsg (default),
# "status" job_status FAILED, "bare" TERMINATED + reason ABORTED without any message.
FAILURE_SHAPES = ("reason", "status", "bare")


@dataclass
class SimJob:
    job_id: str
    filename: str
    size: int
    validate: str
    validate_via: str  # "form", "query" or "default"
    outcome: Outcome
    running_polls: int
    status_polls: int = 0
    synchronous: bool = False  # syncimport: the job ended before the answer
    created: float = 0.0  # clock() at submit
    run_seconds: float = 0.0  # seconds of clock() the job also needs before it can end
    clock: Any = time.monotonic

    @property
    def finished(self) -> bool:
        if self.outcome.kind == "never":
            return False
        if self.synchronous:
            return True
        return self.status_polls > self.running_polls and self.clock() - self.created >= self.run_seconds

    def status(self, failure: str = "reason") -> dict[str, Any]:
        """The job status body (seed 002 / VENDORS.md section 3 "Poll": RUNNING, TERMINATED,
        reason DONE with ``rejects`` and ``rejects_file_name``). A failed job is not documented:
        ``failure`` picks one of the plausible shapes (see FAILURE_SHAPES)."""
        if not self.finished:
            return {"job_status": "RUNNING", "job_info": None}
        if self.outcome.kind == "error":
            if failure == "status":
                return {"job_status": "FAILED", "job_info": {"reason": "ERROR", "errmsg": self.outcome.errmsg}}
            if failure == "bare":
                return {"job_status": "TERMINATED", "job_info": {"reason": "ABORTED"}}
            return {"job_status": "TERMINATED", "job_info": {"reason": "ERROR", "errmsg": self.outcome.errmsg}}
        if self.outcome.kind == "rejects":
            stem = self.filename.rsplit(".", 1)[0] or "import"
            return {"job_status": "TERMINATED", "job_info": {
                "reason": "DONE", "rejects": True, "rejects_file_name": f"{stem}_rejects.txt"}}
        return {"job_status": "TERMINATED", "job_info": {"reason": "DONE", "rejects": False}}


class HopexSimulator(Simulator):
    vendor = "hopex"

    def __init__(self, *, running_polls: int = 2, token_lifetime: int = 3600,
                 max_file_bytes: int = MAX_FILE_BYTES, job_id_in_body: bool = True,
                 status_code: int = 202, failure: str = "reason",
                 latency: float = 0.0, seed: int | None = None, username: str = USERNAME,
                 password: str = PASSWORD, client_secret: str = CLIENT_SECRET):
        super().__init__(latency=latency, seed=seed)
        assert failure in FAILURE_SHAPES, failure
        # one simulator per HOPEX target: each may have credentials of its own (a test
        # repository and a production one never share a password)
        self.username, self.password, self.client_secret = username, password, client_secret
        self._defaults = {"running_polls": running_polls, "token_lifetime": token_lifetime,
                          "max_file_bytes": max_file_bytes, "job_id_in_body": job_id_in_body,
                          "status_code": status_code, "failure": failure}
        self.reset()

    @classmethod
    def for_target(cls, target: str, **kwargs: Any) -> HopexSimulator:
        """A simulator standing for HOPEX target ``target``: the same API, credentials of its own
        (user, password and UAS client secret carry the target's name)."""
        return cls(username=f"sim-importer-{target}", password=f"sim-hopex-{target}-Pa55word",
                   client_secret=f"sim-uas-{target}-client-secret", **kwargs)

    def reset(self) -> None:
        """Back to a fresh simulator (same server): tests share one across a module."""
        self.reset_concurrency()
        with self._lock:
            self.running_polls: int = self._defaults["running_polls"]
            self.token_lifetime: int = self._defaults["token_lifetime"]
            self.max_file_bytes: int = self._defaults["max_file_bytes"]
            # False: the import answer carries the job id only in its Location header
            self.job_id_in_body: bool = self._defaults["job_id_in_body"]
            # the V2 page shows 202 for every status and rejects answer; 200 is as plausible
            # (VENDORS.md section 3: "Do not rely on HTTP 200 vs 202")
            self.status_code: int = self._defaults["status_code"]
            self.failure: str = self._defaults["failure"]  # shape of a failed job: FAILURE_SHAPES
            self.accept_tokens = True
            # jobs also last job_seconds on `clock` (real seconds by default; the local runner's
            # local.moto_seams.virtual_clock makes them vendor seconds whatever the time scale)
            self.job_seconds: float = 0.0
            self.clock = time.monotonic
            self.jobs: dict[str, SimJob] = {}
            self.tokens: set[str] = set()
            self.requests.clear()
            self._faults.clear()

    # -- settings ------------------------------------------------------------------------------
    def settings(self, auth: str = "uas", **overrides: Any) -> dict[str, Any]:
        """A settings document for this simulator; ``auth`` is uas, basic or hopexbasic."""
        if auth == "uas":
            auth_doc = {"type": "uas", "username": self.username, "password": self.password,
                        "client_id": CLIENT_ID, "client_secret": self.client_secret}
        else:
            auth_doc = {"type": "basic", "username": self.username, "password": self.password,
                        "basic_scheme": "HOPEXBASIC" if auth == "hopexbasic" else "Basic"}
        doc = {
            "vendor": "hopex", "base_url": self.base_url, "allow_http": True, "timeout_seconds": 10,
            "environment_id": ENVIRONMENT_ID, "repository_id": REPOSITORY_ID, "profile_id": PROFILE_ID,
            "auth": auth_doc,
        }
        doc.update(overrides)
        return doc

    def revoke_tokens(self) -> None:
        with self._lock:
            self.tokens.clear()

    # -- dispatch ------------------------------------------------------------------------------
    def handle(self, req: Request) -> Reply:
        if req.path == TOKEN_PATH:
            return self._token(req) if req.method == "POST" else Reply(405, {"error": "POST only"})
        if not req.path.startswith(API_PATH + "/"):
            return Reply(404, {"error": f"no such endpoint {req.path}"})
        segments = [unquote(s) for s in req.path[len(API_PATH) + 1:].split("/")]
        if len(segments) < 7 or segments[0:6:2] != ["environments", "repositories", "profiles"]:
            return Reply(404, {"error": f"no such endpoint {req.path}"})
        refused = self._refuse_auth(req)
        if refused:
            return refused
        if segments[1:7:2] != [ENVIRONMENT_ID, REPOSITORY_ID, PROFILE_ID]:
            return Reply(404, {"error": "unknown environment, repository or profile"})
        tail, method = segments[6:], req.method
        if tail == ["import"] and method == "POST":
            return self._import(req, sync=False)
        if tail == ["syncimport"] and method == "POST":
            return self._import(req, sync=True)
        if len(tail) == 3 and tail[:2] == ["import", "job"] and method == "GET":
            return self._status(tail[2])
        if len(tail) == 4 and tail[:2] == ["import", "job"] and tail[3] == "rejects" and method == "GET":
            return self._rejects(tail[2])
        return Reply(404, {"error": f"no such endpoint {method} {req.path}"})

    # -- UAS -----------------------------------------------------------------------------------
    def _token(self, req: Request) -> Reply:
        form = {k: v[0] for k, v in parse_qs(req.body.decode("utf-8", "replace")).items()}
        if form.get("grant_type") != "password":
            return Reply(400, {"error": "unsupported_grant_type"})
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != self.client_secret:
            return Reply(401, {"error": "invalid_client"})
        if form.get("username") != self.username or form.get("password") != self.password:
            return Reply(400, {"error": "invalid_grant", "error_description": "invalid_username_or_password"})
        if form.get("environmentId") != ENVIRONMENT_ID:
            return Reply(400, {"error": "invalid_grant", "error_description": "unknown environment"})
        if "hopex" not in form.get("scope", "").split():
            return Reply(400, {"error": "invalid_scope"})
        token = secrets.token_hex(20)
        with self._lock:
            self.tokens.add(token)
        return Reply(200, {"access_token": token, "expires_in": self.token_lifetime,
                           "token_type": "Bearer", "scope": form["scope"]})

    def _refuse_auth(self, req: Request) -> Reply | None:
        header = req.header("Authorization")
        scheme, _, credentials = header.partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer":
            with self._lock:
                ok = self.accept_tokens and credentials in self.tokens
        elif scheme in ("basic", "hopexbasic"):
            if scheme == "basic":
                try:
                    credentials = base64.b64decode(credentials, validate=True).decode("utf-8")
                except ValueError:
                    credentials = ""
            ok = credentials == f"{self.username}:{self.password}"
            if ok and req.header("HopexEnvironment") != ENVIRONMENT_ID:
                return Reply(401, {"error": "unauthorized",
                                   "message": "Basic authentication needs the HopexEnvironment header"})
        else:
            ok = False
        if ok:
            return None
        return Reply(401, {"error": "unauthorized", "message": f"invalid authorization '{header}'"},
                     {"WWW-Authenticate": "Bearer"})

    # -- import ----------------------------------------------------------------------------------
    def _import(self, req: Request, *, sync: bool) -> Reply:
        form = _multipart(req)
        if form is None:
            return Reply(400, {"error": "expected a multipart/form-data body"})
        files = [part for part in form if part[1] is not None]
        if len(files) != 1:
            return Reply(400, {"error": "exactly one file must be uploaded in one request"})
        _, filename, content = files[0]
        fields = {name: content.decode("utf-8", "replace") for name, fname, content in form if fname is None}
        if "validate" in fields:
            validate, via = fields["validate"], "form"
        elif "validate" in req.query:
            validate, via = req.query["validate"][0], "query"
        else:
            validate, via = "Standard", "default"
        if validate not in VALIDATE_VALUES:
            return Reply(400, {"error": f"invalid validate value {validate!r}"})
        if len(content) > self.max_file_bytes:
            return Reply(413, {"message": "The file size is more than 30Mb: it cannot be imported"})
        if not content:
            return Reply(400, {"error": "the file is empty"})
        job = SimJob(str(uuid.uuid4()), filename, len(content), validate, via, judge(content),
                     self.running_polls, synchronous=sync, created=self.clock(),
                     run_seconds=self.job_seconds, clock=self.clock)
        with self._lock:
            self.jobs[job.job_id] = job
        self.job_started(job.job_id, filename)
        if sync:
            self.job_ended(job.job_id)
        location = {"Location": f"/import/job/{quote(job.job_id, safe='')}"}
        if sync:
            return Reply(200, {"job_id": job.job_id, **job.status(self.failure)}, location)
        body = {"job_id": job.job_id} if self.job_id_in_body else b""
        return Reply(202, body, location)

    def _status(self, job_id: str) -> Reply:
        with self._lock:
            job = self.jobs.get(job_id)
            if job is None:
                return Reply(404, {"error": f"unknown job {job_id}"})
            job.status_polls += 1
            status = job.status(self.failure)
        if job.finished:  # the client learns it ended: the vendor runs one job fewer
            self.job_ended(job_id)
        return Reply(self.status_code, status)

    def _rejects(self, job_id: str) -> Reply:
        with self._lock:
            job = self.jobs.get(job_id)
        if job is None or not job.finished or job.outcome.kind != "rejects":
            return Reply(404, {"error": "no rejects: the job is unknown, running, or has no rejects"})
        # seed 002: "202 Accepted" followed by the rejects file content (format not described)
        return Reply(self.status_code, job.outcome.rejects, {"Content-Type": "text/plain; charset=utf-8"})


def _multipart(req: Request) -> list[tuple[str, str | None, bytes]] | None:
    """[(field name, file name or None, content)] of a multipart/form-data body."""
    from requests_toolbelt.multipart.decoder import MultipartDecoder  # dev dependency only

    content_type = req.header("Content-Type")
    if not content_type.startswith("multipart/form-data"):
        return None
    parts = []
    for part in MultipartDecoder(req.body, content_type).parts:
        disposition = Message()
        disposition["Content-Disposition"] = part.headers.get(b"Content-Disposition", b"").decode()
        name = disposition.get_param("name", header="Content-Disposition")
        filename = disposition.get_param("filename", header="Content-Disposition")
        parts.append((collapse_rfc2231_value(name or ""),
                      None if filename is None else collapse_rfc2231_value(filename), part.content))
    return parts
