"""MEGA HOPEX REST import (seed 002, VENDORS.md section 3).

One upload = one HOPEX command file (.mgr/.mgl/.xmg) imported into one repository:

* submit: multipart POST ``{repo}/import`` (one file part + ``validate``) answers 202
  ``{"job_id": ...}`` (or ``Location: /import/job/<id>``). Files of at most
  ``sync_import_max_bytes`` go to ``{repo}/syncimport`` instead, whose answer is already a job
  status, so the import can end in the submit step.
* poll: GET ``{repo}/import/job/{job_id}``: ``RUNNING`` or ``TERMINATED`` with
  ``job_info.reason`` ``DONE`` (``rejects`` true/false). Anything else is a failed import.
* rejects: GET ``{repo}/import/job/{job_id}/rejects`` when ``rejects`` is true: an opaque file,
  kept as it is (raw rejects) and read as one reject row per non-empty line.

``{repo}`` is ``{base_url}{api_path}/environments/{env}/repositories/{repo}/profiles/{profile}``;
the ids are cn64 ids that contain ``(`` and ``)``, so every path segment is percent-encoded.
Auth is a UAS bearer token (resource-owner password grant, cached until 90 % of its life,
one re-authentication on 401) or Basic (``Basic base64(user:password)``, or the V2
``HOPEXBASIC user:password``) with the ``HopexEnvironment`` header.
HTTP 200 and 202 are treated alike: only the JSON body decides.
"""

from __future__ import annotations

import base64
import codecs
import contextlib
import json
import re
import tempfile
import time
from dataclasses import dataclass
from typing import Any, BinaryIO
from urllib.parse import quote, unquote

from .. import http
from ..errors import (
    InputError,
    SettingsError,
    VendorAuthError,
    VendorProtocolError,
    VendorRejectedError,
)
from ..model import FinalState, Progress, RawRejects, RejectRow
from ..scrub import register_secret, scrub
from ..settings import Field
from ..source import Source
from ..units import limit_text
from .base import Connector, StepContext

MAX_FILE_BYTES = 30 * 1024 * 1024  # "Its size should be less than 30Mb" (seed 002)
VALIDATE_VALUES = ("Never", "Standard", "AtEnd", "AtEndOnSuccess")
TOKEN_REFRESH_RATIO = 0.9  # renew the UAS token once 90 % of expires_in has passed
DEFAULT_TOKEN_LIFETIME = 3600  # when UAS does not say (its documented answer says 3600)
# rejects files larger than this are staged to S3 in parts of REJECTS_PART_BYTES, never held whole
INLINE_REJECTS_BYTES = 4 * 1024 * 1024
REJECTS_PART_BYTES = 1024 * 1024
JOB_INFO_LIMIT = 500  # characters of job_info quoted in a failure message

AUTH_FIELDS = (
    Field("type", str, required=True, choices=("uas", "basic"),
          doc='"uas" (bearer token from HOPEX UAS) or "basic" (user and password on every call)'),
    Field("username", str, required=True, doc="the HOPEX user (or service account) login"),
    Field("password", str, required=True, secret=True, doc="the HOPEX user's password"),
    Field("uas_url", str, doc="UAS token endpoint; default {base_url}/UAS/connect/token (uas only)"),
    Field("client_id", str, default="HopexAPI", doc="UAS client id (uas only)"),
    Field("client_secret", str, default="secret", secret=True, doc="UAS client secret (uas only)"),
    Field("scope", str, default="hopex openid read write", doc="UAS scopes (uas only)"),
    Field("environment_id", str,
          doc="environmentId sent to UAS and in the HopexEnvironment header; default: the "
              "top-level environment_id"),
    Field("basic_scheme", str, default="Basic", choices=("Basic", "HOPEXBASIC"),
          doc='basic only: "Basic" sends base64(user:password); "HOPEXBASIC" sends '
              "user:password as HOPEX V2 documents it"),
)


class HopexConnector(Connector):
    vendor = "hopex"
    max_file_bytes = MAX_FILE_BYTES
    settings_fields = (
        Field("environment_id", str, required=True, doc="HOPEX environment id (cn64, e.g. rCE(taFnUXDC)"),
        Field("repository_id", str, required=True, doc="HOPEX repository id (cn64)"),
        Field("profile_id", str, required=True, doc="HOPEX profile id (cn64) the import runs with"),
        Field("auth", dict, required=True, fields=AUTH_FIELDS, doc="how to authenticate"),
        Field("validate", str, default="Standard", choices=VALIDATE_VALUES,
              doc="when HOPEX saves the imported changes (default of the validate option)"),
        Field("validate_as", str, default="form", choices=("form", "query"),
              doc='send validate as a multipart field ("form", V4 docs) or as ?validate= ("query", V2)'),
        Field("sync_import_max_bytes", int, default=0, minimum=0,
              doc="files of at most this size use syncimport (0 = never; HOPEX advises < 4 MB)"),
        Field("api_path", str, default="/restapi/v1", doc="path of the REST API under base_url"),
    )
    option_fields = (
        Field("validate", str, choices=VALIDATE_VALUES,
              doc="when HOPEX saves the imported changes; default: the validate setting"),
    )

    def __init__(self, settings: dict[str, Any], session=None):
        super().__init__(settings, session=session)
        auth = settings["auth"]
        self._auth = auth
        self._environment = auth.get("environment_id") or settings["environment_id"]
        self._uas_url = (auth.get("uas_url") or f"{settings['base_url']}/UAS/connect/token").rstrip("/")
        if auth["type"] == "uas":
            _check_url(self._uas_url, "auth.uas_url", settings.get("allow_http", False))
        self._basic_header = _basic_header(auth) if auth["type"] == "basic" else None
        self._repo_url = repository_url(settings)
        self._token: str | None = None
        self._token_renew_at = 0.0
        self._clock = time.monotonic  # replaced in tests to age the token

    # -- connector protocol ---------------------------------------------------------------------
    def validate(self, ctx: StepContext) -> list[RejectRow]:
        check_file(ctx.source)
        self._validate_value(ctx.options)
        return []  # HOPEX decides rejects itself; nothing record-level can be checked locally

    def submit(self, ctx: StepContext) -> Progress:
        source = ctx.source
        check_file(source)  # never upload what validate() would refuse, even if it was skipped
        validate = self._validate_value(ctx.options)
        sync = source.size <= self.settings["sync_import_max_bytes"]
        endpoint = "syncimport" if sync else "import"
        what = f"HOPEX {endpoint} of {source.name}"
        params = {"validate": validate} if self.settings["validate_as"] == "query" else None
        resp = self._request("POST", f"{self._repo_url}/{endpoint}", what=what, params=params,
                             open_body=lambda stack: self._multipart(stack, source, validate))
        body = _json_or_none(resp)
        job_id = job_id_from(body, resp.headers.get("Location"))
        job = {"job_id": job_id, "mode": endpoint, "validate": validate, "polls": 0}
        if sync and isinstance(body, dict) and "job_status" in body:
            progress = self._progress(body, job, ctx)  # syncimport answers with the job status
            if progress.done or job_id is not None:
                return progress
        if job_id is None:
            raise VendorProtocolError(
                f"{what}: HOPEX answered HTTP {resp.status_code} without a job_id or a "
                f"Location header: {http.body_snippet(resp, 200)}"
            )
        return Progress(
            job=job, vendor_ref=job_id,
            message=f"HOPEX accepted {source.name} as import job {job_id} (validate={validate}).",
        )

    def poll(self, job: dict[str, Any], ctx: StepContext) -> Progress:
        job_id = job["job_id"]
        job = {**job, "polls": int(job.get("polls", 0)) + 1}
        what = f"HOPEX status of import job {job_id}"
        resp = self._request("GET", self._job_url(job_id), what=what)
        return self._progress(http.json_body(resp, what), job, ctx)

    # -- job status -> Progress -------------------------------------------------------------------
    def _progress(self, status: Any, job: dict[str, Any], ctx: StepContext) -> Progress:
        verdict = read_status(status)
        job_id = job.get("job_id")
        name = ctx.source.name
        counts = {"polls": job["polls"]}
        if verdict.running:
            return Progress(job=job, vendor_ref=job_id, counts=counts,
                            message=f"HOPEX import job {job_id} of {name} is running.")
        if verdict.failure:
            return Progress(job=job, done=True, state=FinalState.FAILED, vendor_ref=job_id,
                            counts=counts, error_type="VendorJobFailed",
                            message=f"HOPEX import job {job_id} of {name} failed: {verdict.failure}")
        saved = _saved_note(job["validate"], verdict.rejects)
        if not verdict.rejects:
            return Progress(job=job, done=True, state=FinalState.SUCCEEDED, vendor_ref=job_id,
                            counts={**counts, "rejected": 0},
                            message=f"HOPEX imported {name} without rejects (job {job_id}){saved}.")
        if job_id is None:  # a syncimport answer without a job id: nowhere to fetch rejects from
            return Progress(job=job, done=True, state=FinalState.SUCCEEDED_WITH_REJECTS,
                            counts=counts,
                            message=f"HOPEX imported {name} with rejects ({verdict.rejects_file_name}) "
                                    f"but gave no job id to download them from{saved}.")
        fetched = self._fetch_rejects(job_id, ctx, rejects_name(name, verdict.rejects_file_name))
        if isinstance(fetched, int):  # a large file: streamed to S3 in parts, never held whole
            return Progress(
                job=job, done=True, state=FinalState.SUCCEEDED_WITH_REJECTS, vendor_ref=job_id,
                counts={**counts, "rejected": fetched},
                message=f"HOPEX imported {name} with {fetched} rejected line(s) (job {job_id}){saved}.",
            )
        content, content_type = fetched
        rows = reject_rows(content)
        return Progress(
            job=job, done=True, state=FinalState.SUCCEEDED_WITH_REJECTS, vendor_ref=job_id,
            counts={**counts, "rejected": len(rows)}, rejects=rows,
            raw_rejects=content or None,
            raw_rejects_format=RawRejects(rejects_name(name, verdict.rejects_file_name), content_type),
            message=f"HOPEX imported {name} with {len(rows)} rejected line(s) (job {job_id}){saved}.",
        )

    def _fetch_rejects(self, job_id: str, ctx: StepContext, file_name: str) -> tuple[bytes, str] | int:
        """The rejects file: (content, content type) when it is small; when it is larger than
        INLINE_REJECTS_BYTES it is staged in parts through ``ctx.emit_rejects`` (raw bytes as they
        came, rows decoded on the way) and the number of rejected lines is returned. Bounded by
        the setting max_answer_bytes.rejects (ResponseTooLarge)."""
        what = f"HOPEX rejects of import job {job_id}"
        with tempfile.SpooledTemporaryFile(max_size=INLINE_REJECTS_BYTES) as spool:
            resp = self._request("GET", f"{self._job_url(job_id)}/rejects", what=what, sink=spool)
            content_type = resp.headers.get("Content-Type") or "application/octet-stream"
            size = spool.tell()
            spool.seek(0)
            if size > INLINE_REJECTS_BYTES and not content_type.startswith("application/json"):
                return stage_rejects_file(spool, ctx, RawRejects(file_name, content_type))
            content = spool.read()
        if content_type.startswith("application/json"):
            # asked as JSON (Accept), the file may come back as one JSON string: unwrap it
            with contextlib.suppress(ValueError):
                value = json.loads(content)
                if isinstance(value, str):
                    return value.encode("utf-8"), "text/plain; charset=utf-8"
        return content, content_type

    # -- HTTP ---------------------------------------------------------------------------------------
    def _request(self, method: str, url: str, *, what: str, open_body=None, params=None, sink=None):
        """One API call; with UAS, a 401 drops the token and the call is sent once more. With a
        ``sink`` (a binary file) the answer is written there (a GET of a rejects file)."""
        for attempt in (1, 2):
            with contextlib.ExitStack() as stack:
                headers = {"Accept": "application/json", **self._auth_headers()}
                data = None
                if open_body is not None:  # re-opened per attempt: a stream is read only once
                    data = open_body(stack)
                    headers["Content-Type"] = data.content_type
                if sink is not None:
                    sink.seek(0)
                    sink.truncate()
                    resp = http.download_to(self.session, url, sink, what=what, headers=headers)
                else:
                    resp = http.request(self.session, method, url, what=what, headers=headers,
                                        params=params, data=data)
            if resp.status_code == 401 and attempt == 1 and self._auth["type"] == "uas":
                self._token = None
                continue
            break
        _raise_for_status(resp, what)
        return resp

    def _multipart(self, stack: contextlib.ExitStack, source: Source, validate: str):
        from requests_toolbelt.multipart.encoder import MultipartEncoder  # submit only: not at cold start

        stream = stack.enter_context(source.open())
        fields: list[tuple[str, Any]] = []
        if self.settings["validate_as"] == "form":
            fields.append(("validate", validate))
        fields.append(("file", (source.name, SizedReader(stream, source.size, source.name),
                                "application/octet-stream")))
        return MultipartEncoder(fields=fields)

    def _auth_headers(self) -> dict[str, str]:
        if self._basic_header:
            return {"Authorization": self._basic_header, "HopexEnvironment": self._environment}
        return {"Authorization": f"Bearer {self._uas_token()}"}

    def _uas_token(self) -> str:
        now = self._clock()
        if self._token and now < self._token_renew_at:
            return self._token
        auth = self._auth
        what = "HOPEX UAS token request"
        form = {
            "grant_type": "password", "scope": auth["scope"],
            "username": auth["username"], "password": auth["password"],
            "client_id": auth["client_id"], "client_secret": auth["client_secret"],
            "environmentId": self._environment,
        }
        resp = http.request(self.session, "POST", self._uas_url, what=what, data=form,
                            headers={"Accept": "application/json"})
        if resp.status_code in (400, 401, 403):
            raise VendorAuthError(
                f"{what}: UAS refused the credentials of {auth['username']!r} (HTTP "
                f"{resp.status_code}{_oauth_error(resp)}): check auth.username, auth.password, "
                "auth.client_id, auth.client_secret, auth.scope and the environment id"
            )
        http.raise_for_status(resp, what)
        answer = http.json_body(resp, what)
        token = answer.get("access_token") if isinstance(answer, dict) else None
        if not isinstance(token, str) or not token:
            raise VendorProtocolError(f"{what}: UAS answered without an access_token")
        register_secret(token)
        lifetime = answer.get("expires_in")
        if isinstance(lifetime, str) and lifetime.isdigit():
            lifetime = int(lifetime)
        if not isinstance(lifetime, (int, float)) or isinstance(lifetime, bool) or lifetime <= 0:
            lifetime = DEFAULT_TOKEN_LIFETIME
        self._token = token
        self._token_renew_at = now + TOKEN_REFRESH_RATIO * lifetime
        return token

    # -- small helpers ------------------------------------------------------------------------------
    def _job_url(self, job_id: str) -> str:
        return f"{self._repo_url}/import/job/{quote(str(job_id), safe='')}"

    def _validate_value(self, options: dict[str, Any]) -> str:
        value = (options or {}).get("validate") or self.settings["validate"]
        for allowed in VALIDATE_VALUES:  # key segments are typed by hand: accept any case
            if str(value).lower() == allowed.lower():
                return allowed
        raise InputError(
            f"option validate is {value!r}: use one of {', '.join(VALIDATE_VALUES)} "
            "(e.g. the key segment validate=AtEnd/)"
        )


# -- pure helpers (unit-tested) -------------------------------------------------------------------

@dataclass(frozen=True)
class StatusVerdict:
    """What one HOPEX job status means: running, failed (with why) or done (with rejects?)."""

    running: bool = False
    failure: str = ""
    rejects: bool = False
    rejects_file_name: Any = None


def read_status(status: Any) -> StatusVerdict:
    """Read ``{"job_status": ..., "job_info": ...}``. Only RUNNING and TERMINATED/DONE are
    documented: any other status or reason is a failure, described with its job_info."""
    if not isinstance(status, dict) or not isinstance(status.get("job_status"), str):
        raise VendorProtocolError(
            f"HOPEX job status has no job_status: {_short(status)}"
        )
    job_status = status["job_status"].strip().upper()
    info = status.get("job_info")
    if job_status == "RUNNING":
        return StatusVerdict(running=True)
    if job_status != "TERMINATED":
        return StatusVerdict(failure=f"job_status {status['job_status']!r}, job_info {_short(info)}")
    reason = info.get("reason") if isinstance(info, dict) else None
    if not isinstance(reason, str) or reason.strip().upper() != "DONE":
        return StatusVerdict(failure=f"TERMINATED with reason {reason!r}, job_info {_short(info)}")
    return StatusVerdict(rejects=_truthy(info.get("rejects")),
                         rejects_file_name=info.get("rejects_file_name"))


def reject_rows(content: bytes) -> list[RejectRow]:
    """One row per non-empty line of the rejects file: record = its line number there."""
    lines = re.split(r"\r\n|\r|\n", decode_text(content))
    return [RejectRow(record=str(number), reason=line.strip())
            for number, line in enumerate(lines, 1) if line.strip()]


def stage_rejects_file(stream: BinaryIO, ctx: StepContext, fmt: RawRejects) -> int:
    """Stage a large rejects file in parts of REJECTS_PART_BYTES: each part's raw bytes as they are
    (Finalize concatenates them byte for byte) and its lines as rows numbered like
    ``reject_rows``. Returns the number of rows. Memory: one part, whatever the file size."""
    head = stream.read(4)
    stream.seek(0)
    if head.startswith(codecs.BOM_UTF8):
        encoding = "utf-8-sig"
    elif head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    else:
        encoding = "utf-8" if _is_utf8(stream) else "cp1252"
    decoder = codecs.getincrementaldecoder(encoding)("replace")
    carry, number, total, part = "", 0, 0, 0
    while True:
        raw = stream.read(REJECTS_PART_BYTES)
        text = carry + decoder.decode(raw, final=not raw)
        held = "\r" if text.endswith("\r") and raw else ""  # a CRLF may be split between two parts
        lines = re.split(r"\r\n|\r|\n", text[: len(text) - len(held)])
        carry = (lines.pop() + held) if raw else ""
        rows = []
        for line in lines:
            number += 1
            if line.strip():
                rows.append(RejectRow(record=str(number), reason=line.strip()))
        total += len(rows)
        if rows or raw:
            ctx.emit_rejects(f"rejects-{part:06d}", rows, raw or None, fmt)
            part += 1
        if not raw:
            return total


def _is_utf8(stream: BinaryIO) -> bool:
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        while chunk := stream.read(REJECTS_PART_BYTES):
            decoder.decode(chunk)
        decoder.decode(b"", final=True)
        return True
    except UnicodeDecodeError:
        return False
    finally:
        stream.seek(0)


def decode_text(content: bytes) -> str:
    """HOPEX files are UTF-8, UTF-16 (with BOM) or Windows ANSI: read whichever it is."""
    if content.startswith(codecs.BOM_UTF8):
        return content[len(codecs.BOM_UTF8):].decode("utf-8", "replace")
    if content.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return content.decode("utf-16", "replace")
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError:
        return content.decode("cp1252", "replace")


def rejects_name(source_name: str, rejects_file_name: Any) -> str:
    """``<upload>.rejects`` plus the extension of HOPEX's rejects_file_name, if it has one."""
    extension = ""
    if isinstance(rejects_file_name, str):
        base = re.split(r"[\\/]", rejects_file_name.strip())[-1]
        stem, dot, suffix = base.rpartition(".")
        if dot and stem and re.fullmatch(r"[A-Za-z0-9]{1,10}", suffix):
            extension = f".{suffix}"
    return f"{source_name}.rejects{extension}"


def job_id_from(body: Any, location: str | None) -> str | None:
    """The job id from ``{"job_id": ...}``, else from ``Location: .../import/job/<id>``."""
    if isinstance(body, dict) and body.get("job_id") not in (None, ""):
        return str(body["job_id"])
    if location:
        match = re.search(r"/job/([^/?#]+)", location)
        if match:
            return unquote(match.group(1))
    return None


def repository_url(settings: dict[str, Any]) -> str:
    """``{base_url}{api_path}/environments/{env}/repositories/{repo}/profiles/{profile}``."""
    api_path = "/" + settings["api_path"].strip("/") if settings["api_path"].strip("/") else ""
    segments = {name: quote(settings[f"{name}_id"], safe="")
                for name in ("environment", "repository", "profile")}
    return (f"{settings['base_url']}{api_path}/environments/{segments['environment']}"
            f"/repositories/{segments['repository']}/profiles/{segments['profile']}")


def check_file(source: Source) -> None:
    """Local checks before any upload: not empty, at most 30 MB (HOPEX's hard limit)."""
    if source.size <= 0:
        raise InputError(
            f"{source.name} is empty: upload a HOPEX command file (.mgr, .mgl or .xmg) "
            "with at least one command"
        )
    if source.size > MAX_FILE_BYTES:
        raise InputError(
            f"{source.name} is {source.size:,} bytes, over {limit_text('hopex', MAX_FILE_BYTES)}: "
            f"split it into several command files and upload each"
        )


class SizedReader:
    """The upload stream with a ``len`` that MultipartEncoder reads to stream it (S3 streams
    have no length of their own); never gives more than ``size`` bytes."""

    def __init__(self, stream: BinaryIO, size: int, name: str):
        self._stream = stream
        self._left = size
        self._name = name

    @property
    def len(self) -> int:
        return self._left

    def read(self, amount: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        amount = self._left if amount is None or amount < 0 else min(amount, self._left)
        chunk = self._stream.read(amount)
        if not chunk:  # the encoder loops while len > 0: never leave it waiting for bytes
            raise InputError(f"{self._name} ended {self._left} bytes before its announced size; "
                             "upload it again")
        self._left -= len(chunk)
        return chunk


def _raise_for_status(resp, what: str) -> None:
    code = resp.status_code
    if code == 413:
        raise VendorRejectedError(
            f"{what}: HOPEX refused the file as too large (HTTP 413) {http.body_snippet(resp)}; "
            "split it into command files of less than 30 MB"
        )
    if code == 404:
        raise VendorRejectedError(
            f"{what}: HOPEX has no such environment, repository, profile or job (HTTP 404) "
            f"{http.body_snippet(resp)}; check environment_id, repository_id, profile_id and api_path"
        )
    http.raise_for_status(resp, what)


def _basic_header(auth: dict[str, Any]) -> str:
    credentials = f"{auth['username']}:{auth['password']}"
    if auth["basic_scheme"] == "HOPEXBASIC":
        value = f"HOPEXBASIC {credentials}"  # V2 docs: "HOPEXBASIC mylogin:xyx123", not encoded
    else:
        value = "Basic " + base64.b64encode(credentials.encode("utf-8")).decode("ascii")
    register_secret(value.split(" ", 1)[1])
    return value


def _check_url(url: str, name: str, allow_http: bool) -> None:
    if not url.startswith(("https://", "http://")):
        raise SettingsError(f"setting {name} must start with https://")
    if url.startswith("http://") and not allow_http:
        raise SettingsError(f"setting {name} uses plain http://: use https:// or set allow_http to true")


def _json_or_none(resp) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None


def _oauth_error(resp) -> str:
    body = _json_or_none(resp)
    if not isinstance(body, dict):
        return ""
    parts = [str(body[k]) for k in ("error", "error_description") if body.get(k)]
    return scrub(": " + " - ".join(parts))[:200] if parts else ""


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return scrub(text[:JOB_INFO_LIMIT] + ("..." if len(text) > JOB_INFO_LIMIT else ""))


def _saved_note(validate: str, rejects: bool) -> str:
    if validate == "Never":
        return "; validate=Never: HOPEX checked the file and saved nothing"
    if validate == "AtEndOnSuccess" and rejects:
        return "; validate=AtEndOnSuccess: because of the rejects HOPEX saved nothing"
    return ""
