"""Adobe Campaign Standard XDM ingestion simulator (seed 001) with the Adobe IMS token endpoint.

Endpoints (one server):

* ``POST /ims/token/v3`` form ``grant_type=client_credentials, client_id, client_secret, scope``
  -> ``{"access_token", "token_type": "bearer", "expires_in"}``; a bad secret answers 401
  ``invalid_client``, an unknown client 400 ``invalid_client``, no scope 400 ``invalid_scope``.
* ``POST /{org}/campaign/dataIngestion/xdmIngestion/{mappingId}/ingest`` and ``GET`` on the same
  path with the requestId (query ``?requestId=`` or JSON body ``{"requestId": id}``; both are
  accepted unless ``require_request_id_in`` is "query" or "body").

Auth: ``Authorization: Bearer`` must hold a live token (else 401 ``{"error_code": "401013",
"message": "Oauth token is not valid"}``), ``X-Api-Key`` must be the token's client id (else 403
``403000``); the ``UNPROVISIONED_CLIENT_ID`` client gets tokens but every API call answers 403
``{"error_code": "403023", "message": "Profile is not valid"}``. A wrong organization or path
answers ``{"code": 500, "message": "Oops. Something went wrong. Check your URI and try again."}``.

Outcome by mapping id prefix (case-insensitive); every request answers "In Progress" for the
first ``polls_before_done`` status GETs, then:

* ``notstopped`` / ``notpublished``: the POST answers Failed "... is not stopped/published";
* ``fail56``: Failed, ``ACP-880056 Failed to fetch the record from the database.``, 0 records;
* ``fail96``: Failed, ``ACP-880096 Sync Job failed to upload...`` with a batchId;
* ``abort1``: the first request of the mapping is Aborted, the next one succeeds;
* ``abortall``: every request is Aborted;
* ``busy``: a request started by someone else is already running: the first POST answers
  "In Progress" with that request's id;
* anything else (``ok...``): Success with ``numRecords`` = the id's trailing digits, else 15
  (also the resubmitted ``abort1`` request and the adopted ``busy`` one).

Sources of each behaviour (seed 001 = "Triggering ... data ingestion", VENDORS.md section 2 = V2):

* The token endpoint, its form fields and ``{"access_token", "token_type": "bearer", "expires_in":
  86399}``, no refresh token: V2 "Token" (Adobe Developer Console OAuth S2S reference). The
  ``invalid_client`` / ``invalid_scope`` error bodies are not in the seed: IMS's usual answers,
  this simulator's choice. Which scopes Campaign needs is not documented: any scope is accepted.
* Headers Authorization: Bearer and X-Api-Key = the client id: V2 "Headers" (setting-up-api-access.md).
  The 401013 / 403023 / 500 "Oops" bodies: V2 "Generic errors" (troubleshooting.md).
* ``POST .../xdmIngestion/{mappingId}/ingest`` and its three answers (submitted, "already in
  progress" with the running request id, Failed "is not stopped" / "is not published" without a
  requestId): seed 001 / V2 "Submit".
* ``GET`` on the same path, status Success / Failed / Aborted / In Progress, numRecords, batchId,
  the ACP-880056 / ACP-880096 / aborted infos: seed 001 / V2 "Status".
* How the requestId travels on the GET is not documented (the seed's example is not valid JSON):
  both a query parameter and a JSON body are accepted; ``require_request_id_in`` switches to
  only one of them, and the contract tests run the connector against each.
* Which mapping gives which outcome (the id prefixes below) and how long a request runs
  (``polls_before_done``) are test conventions, not vendor behaviour.

A POST while a request of the mapping is still running answers "In Progress" with its id (the
documented "already in progress"). Tokens: ``revoke_tokens()`` invalidates the live ones (one
401 then a fresh token works); ``reject_all_tokens = True`` makes every token invalid.
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote

from .base import DemoCase, Reply, Request, Simulator

CLIENT_ID = "sim-campaign-client"
CLIENT_SECRET = "sim-campaign-secret-7f3a"
UNPROVISIONED_CLIENT_ID = "sim-campaign-unprovisioned"
UNPROVISIONED_CLIENT_SECRET = "sim-campaign-unprov-secret-91c2"
ORGANIZATION = "simorg"
SCOPES = "openid,AdobeID,campaign_sdk,additional_info.projectedProductContext"
TOKEN_PATH = "/ims/token/v3"

_INGEST_PATH = re.compile(r"^/(?P<org>[^/]+)/campaign/dataIngestion/xdmIngestion/(?P<mapping>[^/]+)/ingest/?$")
_OOPS = {"code": 500, "message": "Oops. Something went wrong. Check your URI and try again."}

DEMO_CASES = [
    DemoCase("mapping ingested (JSON trigger)", file="events/files/campaign/success.json",
             key="inbox/campaign/success.json", expect="SUCCEEDED"),
    DemoCase("mapping named by the key, empty trigger file", file="events/files/campaign/empty.json",
             key="inbox/campaign/mapping=okProfiles42/trigger.json", expect="SUCCEEDED"),
    DemoCase("aborted once, resubmitted, then ingested", file="events/files/campaign/aborted-then-success.json",
             key="inbox/campaign/aborted-then-success.json", expect="SUCCEEDED"),
    DemoCase("ingestion already in progress: adopted", file="events/files/campaign/busy.json",
             key="inbox/campaign/busy.json", expect="SUCCEEDED"),
    DemoCase("failed with a batch to look up in Platform", file="events/files/campaign/failed-batch.json",
             key="inbox/campaign/failed-batch.json", expect="FAILED"),
    DemoCase("mapping not stopped", file="events/files/campaign/not-stopped.json",
             key="inbox/campaign/not-stopped.json", expect="FAILED"),
    DemoCase("trigger without a well-formed mapping id", file="events/files/campaign/bad-mapping-id.json",
             key="inbox/campaign/bad-mapping-id.json", expect="FAILED"),
]


@dataclass
class _Ingestion:
    request_id: int
    mapping_id: str
    attempt: int  # 1 = first request of this mapping
    polls: int = 0
    final: dict[str, Any] | None = None  # the final answer, once given


class CampaignSimulator(Simulator):
    vendor = "campaign"

    def __init__(self, *, polls_before_done: int = 2, token_lifetime: int = 86399,
                 require_request_id_in: str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.polls_before_done = polls_before_done
        self.token_lifetime = token_lifetime
        self.require_request_id_in = require_request_id_in
        self.organization = ORGANIZATION
        self.clients = {CLIENT_ID: CLIENT_SECRET, UNPROVISIONED_CLIENT_ID: UNPROVISIONED_CLIENT_SECRET}
        self.unprovisioned = {UNPROVISIONED_CLIENT_ID}
        self.reject_all_tokens = False
        self.tokens: dict[str, str] = {}  # access token -> client id
        self.token_calls = 0
        self.ingestions: dict[int, _Ingestion] = {}
        self.adopted_answers = 0  # "already in progress" answers: a second trigger adopted a running ingestion
        self._running: dict[str, int] = {}  # mapping id -> running request id
        self._attempts: dict[str, int] = {}
        self._ids = itertools.count(3520)
        self._state_lock = threading.Lock()

    # -- test helpers ----------------------------------------------------------------------------
    def reset(self, *, polls_before_done: int = 2, require_request_id_in: str | None = None) -> None:
        """Forget every token, ingestion, fault and logged request (one server for many tests)."""
        self.reset_concurrency()
        with self._lock, self._state_lock:
            self.requests.clear()
            self._faults.clear()
            self.tokens.clear()
            self.token_calls = 0
            self.ingestions.clear()
            self._running.clear()
            self.adopted_answers = 0
            self._attempts.clear()
            self.reject_all_tokens = False
            self.polls_before_done = polls_before_done
            self.require_request_id_in = require_request_id_in

    def revoke_tokens(self) -> None:
        """Invalidate every live token (as if they expired): the next API call answers 401."""
        with self._state_lock:
            self.tokens.clear()

    def ingest_posts(self, mapping_id: str | None = None) -> list[Request]:
        return [r for r in self.requests_to("/ingest", "POST")
                if mapping_id is None or unquote(r.path).split("/")[-2] == mapping_id]

    def settings(self, *, client: str = "default", request_id_in: str | None = None) -> dict[str, Any]:
        client_id, secret = ((UNPROVISIONED_CLIENT_ID, UNPROVISIONED_CLIENT_SECRET)
                             if client == "unprovisioned" else (CLIENT_ID, CLIENT_SECRET))
        return {
            "vendor": "campaign",
            "base_url": self.base_url,
            "allow_http": True,
            "timeout_seconds": 5,
            "organization": self.organization,
            "ims": {"token_url": self.base_url + TOKEN_PATH, "client_id": client_id,
                    "client_secret": secret, "scopes": SCOPES},
            "request_id_in": request_id_in or self.require_request_id_in or "query",
            "max_resubmits": 3,
            "poll": {"first_wait_seconds": 1, "max_wait_seconds": 2, "factor": 1.0},
        }

    # -- dispatch --------------------------------------------------------------------------------
    def handle(self, req: Request) -> Reply:
        if req.path == TOKEN_PATH:
            return self._token(req) if req.method == "POST" else Reply(405, {"error": "method_not_allowed"})
        match = _INGEST_PATH.match(req.path)
        auth_error = self._check_auth(req)
        if auth_error:
            return auth_error
        if not match or unquote(match["org"]) != self.organization:
            return Reply(500, _OOPS)
        mapping_id = unquote(match["mapping"])
        if req.method == "POST":
            return self._submit(mapping_id)
        if req.method == "GET":
            return self._status(req, mapping_id)
        return Reply(405, {"code": 405, "message": f"Method {req.method} not allowed"})

    # -- IMS -------------------------------------------------------------------------------------
    def _token(self, req: Request) -> Reply:
        if "application/x-www-form-urlencoded" not in req.header("Content-Type"):
            return Reply(400, {"error": "invalid_request", "error_description": "form body expected"})
        form = {k: v[0] for k, v in parse_qs(req.body.decode("utf-8")).items()}
        if form.get("grant_type") != "client_credentials":
            return Reply(400, {"error": "unsupported_grant_type"})
        client_id = form.get("client_id", "")
        if client_id not in self.clients:
            return Reply(400, {"error": "invalid_client", "error_description": "invalid client_id parameter"})
        if form.get("client_secret") != self.clients[client_id]:
            return Reply(401, {"error": "invalid_client", "error_description": "invalid client_secret parameter"})
        if not form.get("scope"):
            return Reply(400, {"error": "invalid_scope", "error_description": "scope is required"})
        token = "sim-at-" + secrets.token_hex(12)
        with self._state_lock:
            self.tokens[token] = client_id
            self.token_calls += 1
        return Reply(200, {"access_token": token, "token_type": "bearer", "expires_in": self.token_lifetime})

    def _check_auth(self, req: Request) -> Reply | None:
        auth = req.header("Authorization")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        with self._state_lock:
            client_id = self.tokens.get(token)
        if not client_id or self.reject_all_tokens:
            return Reply(401, {"error_code": "401013", "message": "Oauth token is not valid"})
        if req.header("X-Api-Key") != client_id:
            return Reply(403, {"error_code": "403000", "message": "Api Key is invalid"})
        if client_id in self.unprovisioned:
            return Reply(403, {"error_code": "403023", "message": "Profile is not valid"})
        return None

    # -- ingestion -------------------------------------------------------------------------------
    def _submit(self, mapping_id: str) -> Reply:
        kind = _kind(mapping_id)
        if kind in ("notstopped", "notpublished"):
            state = "not stopped" if kind == "notstopped" else "not published"
            return Reply(200, {"info": f"Unable to submit data ingestion request, XDM Mapping ID: "
                                       f"{mapping_id} is {state}", "status": "Failed"})
        with self._state_lock:
            running = self._running.get(mapping_id)
            if running is None and kind == "busy" and mapping_id not in self._attempts:
                running = self._new_ingestion(mapping_id)  # started by someone else
            if running is not None:
                self.adopted_answers += 1  # a second trigger of a running mapping (what the guard's lane avoids)
                return Reply(200, {"requestId": running, "status": "In Progress",
                                   "info": f"Ingestion request already in progress for the Mapping ID: "
                                           f"{mapping_id}"})
            request_id = self._new_ingestion(mapping_id)
        self.job_started(str(request_id), mapping_id)  # concurrent ingestions (base.Simulator)
        return Reply(200, {"requestId": request_id, "status": "Success",
                           "info": f"Ingestion request submitted successfully for the Mapping ID: {mapping_id}"})

    def _new_ingestion(self, mapping_id: str) -> int:
        request_id = next(self._ids)
        attempt = self._attempts.get(mapping_id, 0) + 1
        self._attempts[mapping_id] = attempt
        self.ingestions[request_id] = _Ingestion(request_id, mapping_id, attempt)
        self._running[mapping_id] = request_id
        return request_id

    def _status(self, req: Request, mapping_id: str) -> Reply:
        raw_id, error = self._request_id(req)
        if error:
            return error
        try:
            request_id = int(str(raw_id).strip())
        except ValueError:
            request_id = -1
        with self._state_lock:
            ingestion = self.ingestions.get(request_id)
            if ingestion is None or ingestion.mapping_id != mapping_id:
                return Reply(404, {"code": 404, "message": f"Ingestion request {raw_id} not found for "
                                                           f"the Mapping ID: {mapping_id}"})
            if ingestion.final is not None:
                return Reply(200, ingestion.final)
            ingestion.polls += 1
            if ingestion.polls <= self.polls_before_done:
                return Reply(200, _answer(ingestion, "In Progress", f"Mapping Id: {mapping_id}."))
            ingestion.final = self._final(ingestion)
            self._running.pop(mapping_id, None)
            final = ingestion.final
        self.job_ended(str(request_id))
        return Reply(200, final)

    def _request_id(self, req: Request) -> tuple[Any, Reply | None]:
        in_query = req.query.get("requestId", [None])[0]
        in_body = None
        if req.body.strip():
            try:
                doc = json.loads(req.body)
            except ValueError:
                return None, Reply(400, {"code": 400, "message": "Malformed JSON body"})
            in_body = doc.get("requestId") if isinstance(doc, dict) else None
        wanted = self.require_request_id_in
        if wanted == "query":
            in_body = None
        elif wanted == "body":
            in_query = None
        value = in_query if in_query not in (None, "") else in_body
        if value in (None, ""):
            return None, Reply(400, {"code": 400, "message": "requestId is required"})
        return value, None

    def _final(self, ingestion: _Ingestion) -> dict[str, Any]:
        mapping_id = ingestion.mapping_id
        kind = _kind(mapping_id)
        prefix = f"Mapping Id: {mapping_id}."
        if kind == "fail56":
            return _answer(ingestion, "Failed", f"{prefix} ACP-880056 Failed to fetch the record from the database.")
        if kind == "fail96":
            return _answer(ingestion, "Failed", f"{prefix} ACP-880096 Sync Job failed to upload. Please check "
                                                "the error in the Platform UI.",
                           batch_id=f"01SIMBATCH{ingestion.request_id}")
        if kind == "abortall" or (kind == "abort1" and ingestion.attempt == 1):
            return _answer(ingestion, "Aborted", f"{prefix} Ingestion request aborted due to some issue with "
                                                 "data ingestion service. Please submit a new request")
        return _answer(ingestion, "Success", f"{prefix} ", num_records=_num_records(mapping_id))


def _kind(mapping_id: str) -> str:
    low = mapping_id.lower()
    for kind in ("notstopped", "notpublished", "fail56", "fail96", "abortall", "abort1", "busy"):
        if low.startswith(kind):
            return kind
    return "ok"


def _num_records(mapping_id: str) -> int:
    kind = _kind(mapping_id)
    rest = mapping_id if kind == "ok" else mapping_id[len(kind):]  # "abort1" is not 1 record
    digits = re.search(r"(\d+)$", rest)
    return int(digits.group(1)) if digits else 15


def _answer(ingestion: _Ingestion, status: str, info: str, *, batch_id: str = "",
            num_records: int = 0) -> dict[str, Any]:
    return {"batchId": batch_id, "info": info, "numRecords": num_records,
            "requestId": ingestion.request_id, "status": status}
