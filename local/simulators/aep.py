"""Adobe Experience Platform simulator: streaming inlet, Flow Service, Schema Registry, Catalog,
Conversion (Data Prep) and the IMS token endpoint on one server (seed 003, VENDORS.md section 4).

Endpoints (paths as on platform.adobe.io / dcs.adobedc.net / ims-na1.adobelogin.com):

* ``POST /ims/token/v3`` form ``grant_type=client_credentials, client_id, client_secret, scope``
  -> ``{"access_token", "token_type": "bearer", "expires_in"}``; bad credentials -> 401
  ``invalid_client``.
* ``POST /collection/{inletId}`` (seed 003, "Affichage des données brutes à ingérer"): one
  message, raw with the flow id in header ``x-adobe-flow-id`` (or the ``x-adobe-flow-id`` query
  parameter), or an XDM envelope -> 200 ``{"inletId", "xactionId", "receivedTimeMs"}``; a refused
  message -> 400 with a problem body shaped like the inlet's documented 401
  ``{"type", "status", "title", "report": {"message"}}`` (the 400 body is not documented).
* ``POST /collection/batch/{inletId}`` body ``{"messages": [...]}`` (streaming-multiple-messages.md,
  documented with XDM envelopes only) -> 207 ``{"inletId", "batchId", "receivedTimeMs",
  "responses": [...]}``, one response per message in order: ``{"xactionId"}`` when accepted,
  ``{"statusCode": 400, "message"}`` when refused. A bare (raw) record is refused there as a
  documented inlet refuses a message without the envelope: 400 "... Message has unknown xdm
  format", unless the simulator is built with ``raw_on_batch=True`` (an inlet that would take
  raw records there: undocumented, for the connector's opt-in ``raw_batch`` path).
  Whole-request answers: 413 over ``max_body_bytes`` (1 MB), 429 over the configured rates (the
  documented 1,000 requests/s and 10,000 messages/s when given), 401 without / 403 with an
  unknown token on an authenticated inlet, 404 unknown inlet, 400 for a body that is not
  ``{"messages": [...]}``.
* ``/data/foundation/flowservice/{connections,sourceConnections,targetConnections,flows}``:
  POST creates (201 ``{"id", "etag"}``), GET lists with ``?property=name==X`` (``{"items"}``),
  GET ``/{id}`` -> ``{"items": [object]}``; connections carry ``auth.params.inletUrl/inletId``.
  ``GET /flowSpecs?property=name=="..."``, ``GET /runs?property=flowId==X``.
* ``/data/foundation/schemaregistry/tenant/schemas``: POST (201, full schema with ``$id`` and
  ``meta:altId``; 409 on a title that exists), GET ``?property=title==X`` -> ``{"results"}``.
* ``/data/foundation/catalog/dataSets``: POST -> ``["@/dataSets/{id}"]``, GET
  ``?property=name==X`` -> ``{id: dataset}``.
* ``/data/foundation/conversion/mappingSets``: POST -> ``{"id", "version", ...}``, GET
  ``?limit=&start=`` -> ``{"data": [...], "_page": {...}}``, GET ``/{id}``.
  Platform calls need ``Authorization: Bearer`` (a token from /ims/token/v3), ``x-api-key``
  (the client id), ``x-gw-ims-org-id`` and ``x-sandbox-name``: 401 / 403 otherwise.

Outcome conventions (decided from the content):

* a message whose record (raw message, or ``body.xdmEntity``) holds the text ``INVALID`` in any
  string value, is empty, or has no body, is refused with statusCode 400 and
  ``"... Message has unknown xdm format"``; an XDM message whose ``header.imsOrgId`` is not the
  org is refused with ``"Message has an absent or wrong ims org in the header"``;
* an accepted record holding ``FAILVALIDATION`` in a value is counted as *failed* in the flow
  runs (accepted by the inlet, not landed in the dataset), the others as ingested;
* ``fail_messages(status, count)`` makes the next ``count`` messages answer that statusCode
  (e.g. 503: a retryable per-message failure); ``inject(Fault(...))`` (base class) fails whole
  requests; ``expire_tokens()`` makes every issued token invalid.
* flow runs show the latest counts only after ``run_settle_polls`` GETs of ``/runs`` since the
  last accepted message (durations count in requests, not seconds).

``created`` counts the objects created through the API per kind (provisioning idempotency);
``accepted`` holds every accepted record (test: each id exactly once).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections import Counter, defaultdict
from typing import Any
from urllib.parse import parse_qs, unquote

from .base import DemoCase, Reply, Request, Simulator

STREAMING_SPEC = "bc7b00d6-623a-4dfc-9fdb-f1240aeadaeb"
DATALAKE_SPEC = "c604ff05-7f1a-43c0-8e18-33bf874cb11c"
PROVIDER_ID = "521eee4d-8cbe-4906-bb48-fb6bd4450033"
FLOW_SPECS = {
    "c1a19761-d2c7-4702-b9fa-fe91f0613e81": "Steam data with transformation",
    "d8a6f005-7eaf-4153-983e-e8574508b877": "Steam data",
}
TOKEN_PATH = "/ims/token/v3"
_PLATFORM = "/data/foundation/"
_KINDS = {  # path segment -> kind counted in ``created``
    "flowservice/connections": "connections",
    "flowservice/sourceConnections": "sourceConnections",
    "flowservice/targetConnections": "targetConnections",
    "flowservice/flows": "flows",
    "schemaregistry/tenant/schemas": "schemas",
    "catalog/dataSets": "dataSets",
    "conversion/mappingSets": "mappingSets",
}


def _now_ms() -> int:
    return int(time.time() * 1000)


def _scan(value: Any) -> tuple[bool, bool]:
    """(holds INVALID, holds FAILVALIDATION) in any string value, nested."""
    if isinstance(value, str):
        return "INVALID" in value, "FAILVALIDATION" in value
    if isinstance(value, dict):
        value = value.values()
    elif not isinstance(value, list):
        return False, False
    invalid = failing = False
    for v in value:
        i, f = _scan(v)
        invalid, failing = invalid or i, failing or f
    return invalid, failing


def _property_filter(query: dict[str, list[str]]) -> tuple[str, str] | None:
    """``property=name=="X"`` (quotes optional) -> ("name", "X")."""
    for prop in query.get("property", []):
        if "==" in prop:
            name, value = prop.split("==", 1)
            return name.strip(), value.strip().strip('"')
    return None


def _get_path(obj: dict, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


class AepSimulator(Simulator):
    vendor = "aep"
    ORG = "0123456789ABCDEF01234567@AdobeOrg"
    CLIENT_ID = "sim-aep-client-id"
    CLIENT_SECRET = "sim-aep-client-secret"
    TENANT = "simtenant"
    SANDBOX = "prod"

    def __init__(self, *, latency: float = 0.0, seed: int | None = None, authenticated: bool = False,
                 message_mode: str = "raw", max_body_bytes: int = 1_000_000, raw_on_batch: bool = False,
                 max_requests_per_second: float | None = None,
                 max_messages_per_second: float | None = None, run_settle_polls: int = 1,
                 token_lifetime: int = 86399):
        super().__init__(latency=latency, seed=seed)
        self.authenticated = authenticated
        self.message_mode = message_mode
        self.raw_on_batch = raw_on_batch
        self.max_body_bytes = max_body_bytes
        self.refused_429 = 0  # requests answered 429 (over the inlet's rates)
        self.max_requests_per_second = max_requests_per_second
        self.max_messages_per_second = max_messages_per_second
        self.run_settle_polls = run_settle_polls
        self.token_lifetime = token_lifetime
        self.tokens: set[str] = set()
        self.token_requests = 0
        self.objects: dict[str, dict[str, dict]] = defaultdict(dict)
        self.created: Counter[str] = Counter()
        self.accepted: list[dict] = []
        self.refused: list[dict] = []
        self.batch_requests = 0
        self.messages_accepted = 0  # counted even when the bodies are not kept (record_bodies)
        self.messages_refused = 0
        self._message_failures: list[tuple[int, str]] = []
        self._window = [0, 0, 0]  # second, requests, messages in that second
        self._runs: dict[str, dict[str, Any]] = {}
        self._seq = 0
        self._inlet_lock = threading.Lock()
        self._inlets: dict[str, bool] = {}  # inlet id -> authentication required
        self._default: dict[str, str] = {}

    def start(self, port: int = 0) -> AepSimulator:
        super().start(port)
        if not self._default:  # after start: inletUrl holds the real address
            self._default = self._make_default_dataflow()
        return self

    # -- test helpers ---------------------------------------------------------------------------
    def fail_messages(self, status: int, count: int = 1, message: str = "") -> None:
        """The next ``count`` messages are answered with this per-message statusCode.

        VENDORS.md section 4 "Batch" [DOC streaming-multiple-messages.md]: a 207 holds one entry per
        message, in order; failures carry ``statusCode`` and ``message``, and only the failed ones
        are to be resent. Which codes a single message can get is not documented (the examples show
        400 only; 429, 500 and 503 are documented for whole requests): any code can be injected here,
        so each retryable one is tested per message as well as per request."""
        text = message or {429: "Too many requests, retry later", 500: "Processing error",
                           502: "Bad gateway, retry later", 503: "Service unavailable, retry later",
                           504: "Gateway timeout, retry later"}.get(status, f"error {status}")
        with self._inlet_lock:
            self._message_failures.extend([(status, text)] * count)

    def expire_tokens(self) -> None:
        with self._lock:
            self.tokens.clear()

    def accepted_ids(self, key: str = "id") -> Counter:
        """How many times each record id was accepted (duplicates show as counts > 1)."""
        with self._inlet_lock:
            return Counter(str(r.get(key)) for r in self.accepted if isinstance(r, dict))

    def new_objects(self) -> int:
        return sum(self.created.values())

    # -- settings -------------------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        d = self._default
        doc: dict[str, Any] = {
            "vendor": "aep",
            "base_url": self.base_url,
            "allow_http": True,
            "timeout_seconds": 10,
            "inlet_id": d["inlet_id"],
            "flow_id": d["flow_id"],
            "message_mode": self.message_mode,
            "ims_org_id": self.ORG,
            "sandbox_name": self.SANDBOX,
            "authenticated": self.authenticated,
            "ims": self._ims_settings(),
            "platform_base_url": self.base_url,
            "retry_base_seconds": 0.02,
            "retry_max_seconds": 0.2,
            "time_margin_seconds": 5,
            "poll": {"first_wait_seconds": 1, "max_wait_seconds": 5, "factor": 2.0},
        }
        if self.raw_on_batch and self.message_mode == "raw":
            doc["raw_batch"] = True  # this inlet takes raw records on /collection/batch (opt-in path)
        if self.message_mode == "xdm":
            doc["schema_id"] = d["schema_id"]
            doc["dataset_id"] = d["dataset_id"]
        return doc

    def provision_settings(self, **overrides: Any) -> dict[str, Any]:
        """A provisioning document (aep_provision) pointing at this simulator."""
        doc = {
            "platform_base_url": self.base_url,
            "allow_http": True,
            "ims": self._ims_settings(),
            "ims_org_id": self.ORG,
            "sandbox_name": self.SANDBOX,
            "data_type": "raw",
            "authenticated": False,
            "names": {"connection": "s3-vendor-import profiles", "dataflow": "s3-vendor-import profiles"},
            "schema": {"title": "s3-vendor-import profiles"},
            "dataset": {"name": "s3-vendor-import profiles"},
            "mapping": [
                {"source": "id", "destination": "_simtenant.profileId"},
                {"source": "email", "destination": "personalEmail.address"},
                {"source": "firstName", "destination": "person.name.firstName"},
                {"source": "lastName", "destination": "person.name.lastName"},
            ],
        }
        doc.update(overrides)
        return doc

    def _ims_settings(self) -> dict[str, str]:
        return {"token_url": f"{self.base_url}{TOKEN_PATH}", "client_id": self.CLIENT_ID,
                "client_secret": self.CLIENT_SECRET, "scopes": "openid,AdobeID,read_organizations"}

    # -- dispatch -------------------------------------------------------------------------------
    def handle(self, req: Request) -> Reply:
        path = unquote(req.path)
        if path.startswith("/collection/"):
            return self._collection(req, path)
        if path == TOKEN_PATH and req.method == "POST":
            return self._token(req)
        if path.startswith(_PLATFORM):
            denied = self._check_platform_auth(req)
            return denied or self._platform(req, path[len(_PLATFORM):].rstrip("/"))
        return Reply(404, {"title": "Not Found", "detail": f"no route for {req.method} {path}"})

    # -- IMS -------------------------------------------------------------------------------------
    def _token(self, req: Request) -> Reply:
        form = {k: v[0] for k, v in parse_qs(req.body.decode("utf-8", "replace")).items()}
        if form.get("grant_type") != "client_credentials":
            return Reply(400, {"error": "unsupported_grant_type"})
        if form.get("client_id") != self.CLIENT_ID or form.get("client_secret") != self.CLIENT_SECRET:
            return Reply(401, {"error": "invalid_client", "error_description": "invalid client credentials"})
        token = f"sim-aep-token-{uuid.uuid4().hex}"
        with self._lock:
            self.tokens.add(token)
            self.token_requests += 1
        return Reply(200, {"access_token": token, "token_type": "bearer", "expires_in": self.token_lifetime})

    def _bearer_ok(self, req: Request) -> bool | None:
        """None: no Authorization header; else whether the bearer token is valid."""
        auth = req.header("Authorization")
        if not auth:
            return None
        kind, _, token = auth.partition(" ")
        return kind.lower() == "bearer" and token in self.tokens

    def _check_platform_auth(self, req: Request) -> Reply | None:
        ok = self._bearer_ok(req)
        if not ok:
            return Reply(401, {"error_code": "401013", "message": "Oauth token is not valid"})
        if req.header("x-api-key") != self.CLIENT_ID:
            return Reply(403, {"error_code": "403003", "message": "Api Key is invalid"})
        if req.header("x-gw-ims-org-id") != self.ORG:
            return Reply(403, {"error_code": "403025", "message": "Profile is not valid"})
        if not req.header("x-sandbox-name"):
            return Reply(400, {"title": "Bad Request", "detail": "x-sandbox-name header is required"})
        if req.method in ("POST", "PUT", "PATCH") and "json" not in req.header("Content-Type"):
            return Reply(415, {"title": "Unsupported Media Type"})
        return None

    # -- inlet (kept cheap: used for throughput benchmarks) ------------------------------------
    def _collection(self, req: Request, path: str) -> Reply:
        if req.method != "POST":
            return Reply(405, {"title": "Method Not Allowed"})
        parts = path.split("/")
        batch = len(parts) == 4 and parts[2] == "batch"
        inlet_id = parts[3] if batch else parts[2]
        inlet = self._inlet(inlet_id)
        if inlet is None:
            return Reply(404, {"title": "Not Found", "detail": f"inlet {inlet_id} not found"})
        if inlet["authenticated"]:
            ok = self._bearer_ok(req)
            if ok is None:
                return Reply(401, {"type": "https://ns.adobe.com/adobecloud/problem/data-collection-service-"
                                           "authorization", "status": "401", "title": "Authorization",
                                   "report": {"message": f"[{inlet_id}] Ims service token is empty"}})
            if not ok:
                return Reply(403, {"type": "https://ns.adobe.com/adobecloud/problem/data-collection-service-"
                                           "authorization", "status": "403", "title": "Authorization",
                                   "report": {"message": f"[{inlet_id}] Ims service token is not valid"}})
        if len(req.body) > self.max_body_bytes:
            return Reply(413, {"title": "Payload Too Large",
                               "detail": f"request body exceeds {self.max_body_bytes} bytes"})
        try:
            body = json.loads(req.body or b"null")
        except ValueError:
            return Reply(400, {"title": "Bad Request", "detail": "body is not valid JSON"})
        messages = body.get("messages") if batch and isinstance(body, dict) else [body]
        if not isinstance(messages, list) or not messages:
            return Reply(400, {"title": "Bad Request", "detail": "expected {\"messages\": [...]}"})
        if self._over_rate(len(messages)):
            return Reply(429, {"title": "Too Many Requests"})
        flow_id = req.header("x-adobe-flow-id") or (req.query.get("x-adobe-flow-id") or [""])[0]
        if flow_id and flow_id not in self.objects["flows"]:
            return Reply(400, {"title": "Bad Request", "detail": f"unknown flow id {flow_id}"})
        now = _now_ms()
        responses, accepted, refused, failing = [], [], [], 0
        with self._inlet_lock:
            self._seq += 1
            seq = self._seq
            self.batch_requests += 1
        for i, message in enumerate(messages):
            injected = self._take_message_failure()
            if injected:
                responses.append({"statusCode": injected[0], "message": injected[1]})
                continue
            entity, problem = self._entity(message, flow_id, inlet_id, batch)
            if problem:
                responses.append({"statusCode": 400, "message": problem})
                refused.append(message)
                continue
            invalid, fails = _scan(entity)
            if invalid:
                responses.append({"statusCode": 400, "message": f"inletId: [{inlet_id}] imsOrgId: "
                                                                f"[{self.ORG}] Message has unknown xdm format"})
                refused.append(message)
                continue
            failing += fails
            accepted.append(entity)
            responses.append({"xactionId": f"{now}:{seq}:{i}"})
        with self._inlet_lock:
            self.messages_accepted += len(accepted)
            self.messages_refused += len(refused)
            if self.record_bodies:  # benchmarks turn it off: memory stays flat
                self.accepted.extend(accepted)
                self.refused.extend(refused)
            if accepted:
                self._record_run(flow_id or self._flow_of(messages[0]), len(accepted), failing, now)
        if not batch:
            answer = responses[0]
            if "xactionId" in answer:
                return Reply(200, {"inletId": inlet_id, "xactionId": answer["xactionId"], "receivedTimeMs": now})
            status = int(answer["statusCode"])
            return Reply(status, {"type": "https://ns.adobe.com/adobecloud/problem/data-collection-service-"
                                          "validation", "status": str(status),
                                  "title": "Invalid XDM Message Format" if status == 400 else "Error",
                                  "report": {"message": answer["message"]}})
        return Reply(207, {"inletId": inlet_id, "batchId": f"{now}:{seq}:244", "receivedTimeMs": now,
                           "responses": responses})

    def _entity(self, message: Any, flow_id: str, inlet_id: str, batch: bool = False) -> tuple[Any, str]:
        """The record a message carries, or why it is refused."""
        unknown = f"inletId: [{inlet_id}] imsOrgId: [{self.ORG}] Message has unknown xdm format"
        if not isinstance(message, dict):
            return None, unknown
        if "header" in message:  # the XDM envelope
            header = message.get("header") or {}
            if not isinstance(header, dict) or header.get("imsOrgId") != self.ORG:
                return None, (f"inletId: [{inlet_id}] imsOrgId: [{header.get('imsOrgId')}] Message has "
                              "an absent or wrong ims org in the header")
            body = message.get("body")
            entity = body.get("xdmEntity") if isinstance(body, dict) else None
            if not entity:
                return None, unknown
            return entity, ""
        if not message:
            return None, unknown
        if batch and not self.raw_on_batch:  # documented only with the XDM envelope
            return None, unknown
        if not flow_id:
            return None, f"inletId: [{inlet_id}] a raw message needs the header x-adobe-flow-id"
        return message, ""

    @staticmethod
    def _flow_of(message: Any) -> str:
        header = message.get("header") if isinstance(message, dict) else None
        return (header or {}).get("flowId", "") if isinstance(header, dict) else ""

    def _take_message_failure(self) -> tuple[int, str] | None:
        if not self._message_failures:
            return None
        with self._inlet_lock:
            return self._message_failures.pop(0) if self._message_failures else None

    def _over_rate(self, messages: int) -> bool:
        if self.max_requests_per_second is None and self.max_messages_per_second is None:
            return False
        second = int(time.monotonic())
        with self._inlet_lock:
            if self._window[0] != second:
                self._window = [second, 0, 0]
            self._window[1] += 1
            self._window[2] += messages
            over = ((self.max_requests_per_second is not None
                     and self._window[1] > self.max_requests_per_second)
                    or (self.max_messages_per_second is not None
                        and self._window[2] > self.max_messages_per_second))
            if over:  # a refused request does not count
                self.refused_429 += 1
                self._window[1] -= 1
                self._window[2] -= messages
            return over

    def _inlet(self, inlet_id: str) -> dict | None:
        authenticated = self._inlets.get(inlet_id)
        return None if authenticated is None else {"authenticated": authenticated}

    # -- flow runs --------------------------------------------------------------------------------
    def _record_run(self, flow_id: str, accepted: int, failing: int, now: int) -> None:
        run = self._runs.setdefault(flow_id, {
            "id": str(uuid.uuid4()), "createdAt": now, "accepted": 0, "failed": 0, "polls": 0,
            "shown": {"accepted": 0, "failed": 0, "updatedAt": now},
        })
        run["accepted"] += accepted
        run["failed"] += failing
        run["updatedAt"] = now
        run["polls"] = 0

    def _runs_reply(self, flow_id: str) -> Reply:
        with self._inlet_lock:
            run = self._runs.get(flow_id)
            if run is None:
                return Reply(200, {"items": []})
            run["polls"] += 1
            settled = run["polls"] > self.run_settle_polls
            if settled:
                run["shown"] = {"accepted": run["accepted"], "failed": run["failed"],
                                "updatedAt": run["updatedAt"]}
            shown = dict(run["shown"])
        landed = shown["accepted"] - shown["failed"]
        status = "success" if not shown["failed"] else "partialSuccess"
        item = {
            "id": run["id"], "flowId": flow_id, "createdAt": run["createdAt"],
            "updatedAt": shown["updatedAt"], "sandboxName": self.SANDBOX,
            "metrics": {
                "durationSummary": {"startedAtUTC": run["createdAt"],
                                    "completedAtUTC": shown["updatedAt"] if settled else None},
                "recordSummary": {"inputRecordCount": shown["accepted"], "outputRecordCount": landed,
                                  "failedRecordCount": shown["failed"]},
                "statusSummary": {"status": status if settled else "inProgress", "errors": []},
            },
        }
        return Reply(200, {"items": [item]})

    # -- Platform objects ------------------------------------------------------------------------
    def _platform(self, req: Request, rest: str) -> Reply:
        if rest == "flowservice/flowSpecs" and req.method == "GET":
            return self._flow_specs(req)
        if rest == "flowservice/runs" and req.method == "GET":
            wanted = _property_filter(req.query)
            return self._runs_reply(wanted[1] if wanted and wanted[0] == "flowId" else "")
        for prefix, kind in _KINDS.items():
            if rest == prefix:
                if req.method == "POST":
                    return self._create(kind, req)
                if req.method == "GET":
                    return self._list(kind, req)
            elif rest.startswith(prefix + "/") and req.method == "GET":
                return self._get(kind, rest[len(prefix) + 1:])
        return Reply(404, {"title": "Not Found", "detail": f"no route for {req.method} {rest}"})

    def _flow_specs(self, req: Request) -> Reply:
        wanted = _property_filter(req.query)
        items = [{"id": sid, "name": name, "providerId": PROVIDER_ID, "version": "1.0",
                  "sourceConnectionSpecIds": [STREAMING_SPEC], "targetConnectionSpecIds": [DATALAKE_SPEC],
                  "transformationSpecs": [{"name": "Mapping"}] if "transformation" in name else []}
                 for sid, name in FLOW_SPECS.items()
                 if not wanted or (wanted[0] == "name" and wanted[1] == name)]
        return Reply(200, {"items": items})

    def _list(self, kind: str, req: Request) -> Reply:
        wanted = _property_filter(req.query)
        with self._lock:
            objs = list(self.objects[kind].values())
        if wanted:
            objs = [o for o in objs if str(_get_path(o, wanted[0])) == wanted[1]]
        if kind == "schemas":
            results = [{"$id": o["$id"], "meta:altId": o["meta:altId"], "version": o["version"],
                        "title": o["title"]} for o in objs]
            return Reply(200, {"results": results, "_page": {"count": len(results)}, "_links": {}})
        if kind == "dataSets":
            return Reply(200, {o["id"]: o for o in objs})
        if kind == "mappingSets":
            start = int((req.query.get("start") or ["0"])[0])
            limit = int((req.query.get("limit") or ["50"])[0])
            page = objs[start:start + limit]
            return Reply(200, {"data": page, "_page": {"count": len(page), "start": start, "limit": limit,
                                                       "totalCount": len(objs)}})
        return Reply(200, {"items": objs})

    def _get(self, kind: str, oid: str) -> Reply:
        with self._lock:
            obj = self.objects[kind].get(oid)
            if obj is None and kind == "schemas":  # by $id or meta:altId
                obj = next((o for o in self.objects[kind].values() if oid in (o["$id"], o["meta:altId"])), None)
        if obj is None:
            return Reply(404, {"title": "Not Found", "detail": f"{kind} {oid} not found"})
        if kind == "dataSets":
            return Reply(200, {oid: obj})
        if kind in ("schemas", "mappingSets"):
            return Reply(200, obj)
        return Reply(200, {"items": [obj]})

    def _create(self, kind: str, req: Request) -> Reply:
        try:
            body = req.json()
        except ValueError:
            return Reply(400, {"title": "Bad Request", "detail": "body is not valid JSON"})
        if not isinstance(body, dict):
            return Reply(400, {"title": "Bad Request", "detail": "body must be a JSON object"})
        with self._lock:
            made = getattr(self, f"_make_{kind}")(body)
            if isinstance(made, Reply):
                return made
            self.created[kind] += 1
        if kind == "schemas":
            return Reply(201, made)
        if kind == "dataSets":
            return Reply(201, [f"@/dataSets/{made['id']}"])
        if kind == "mappingSets":
            return Reply(201, {k: made[k] for k in ("id", "version", "createdDate", "modifiedDate",
                                                      "createdBy", "modifiedBy")})
        return Reply(201, {"id": made["id"], "etag": made["etag"]})

    @staticmethod
    def _bad(detail: str) -> Reply:
        return Reply(400, {"title": "Bad Request", "detail": detail})

    def _base(self, body: dict) -> dict:
        now = _now_ms()
        oid = str(uuid.uuid4())
        return {**body, "id": oid, "createdAt": now, "updatedAt": now, "state": "enabled",
                "sandboxName": self.SANDBOX, "imsOrgId": self.ORG, "etag": f'"{uuid.uuid4()}"'}

    def _make_connections(self, body: dict) -> dict | Reply:
        spec = (body.get("connectionSpec") or {}).get("id")
        auth = body.get("auth") or {}
        params = dict(auth.get("params") or {})
        if spec != STREAMING_SPEC:
            return self._bad(f"connectionSpec.id must be {STREAMING_SPEC}")
        if not body.get("name") or auth.get("specName") != "Streaming Connection":
            return self._bad("name and auth.specName 'Streaming Connection' are required")
        if params.get("dataType") not in ("xdm", "raw"):
            return self._bad("auth.params.dataType must be xdm or raw")
        obj = self._base(body)
        inlet_id = hashlib.sha256(obj["id"].encode()).hexdigest()
        params.update(inletId=inlet_id, inletUrl=f"{self.base_url}/collection/{inlet_id}")
        obj["auth"] = {"specName": "Streaming Connection", "params": params}
        self.objects["connections"][obj["id"]] = obj
        self._inlets[inlet_id] = bool(params.get("authenticationRequired"))
        return obj

    def _make_sourceConnections(self, body: dict) -> dict | Reply:  # noqa: N802 - API name
        base = self.objects["connections"].get(body.get("baseConnectionId", ""))
        if base is None:
            return self._bad("baseConnectionId is not a known connection")
        if (body.get("connectionSpec") or {}).get("id") != STREAMING_SPEC or not body.get("name"):
            return self._bad(f"name and connectionSpec.id {STREAMING_SPEC} are required")
        obj = self._base(body)
        bp = base["auth"]["params"]
        obj["params"] = {**(body.get("params") or {}), "sourceId": bp.get("sourceId"),
                         "inletUrl": bp["inletUrl"], "inletId": bp["inletId"], "dataType": bp["dataType"]}
        self.objects["sourceConnections"][obj["id"]] = obj
        return obj

    def _make_schemas(self, body: dict) -> dict | Reply:
        title = body.get("title")
        if not title or body.get("type") != "object" or not body.get("meta:class"):
            return self._bad("title, type object and meta:class are required")
        if any(o["title"] == title for o in self.objects["schemas"].values()):
            return Reply(409, {"title": "Conflict", "detail": f"a schema titled {title!r} exists"})
        key = uuid.uuid4().hex + uuid.uuid4().hex[:16]
        obj = {**body, "$id": f"https://ns.adobe.com/{self.TENANT}/schemas/{key}",
               "meta:altId": f"_{self.TENANT}.schemas.{key}", "meta:resourceType": "schemas",
               "version": "1.0", "meta:containerId": "tenant", "imsOrg": self.ORG,
               "meta:tenantNamespace": f"_{self.TENANT}"}
        obj["refs"] = [p.get("$ref") for p in body.get("allOf") or [] if isinstance(p, dict)]
        self.objects["schemas"][obj["$id"]] = obj
        return obj

    def _schema(self, ref: str) -> dict | None:
        return next((o for o in self.objects["schemas"].values() if ref in (o["$id"], o["meta:altId"])), None)

    def _make_dataSets(self, body: dict) -> dict | Reply:  # noqa: N802 - API name
        ref = (body.get("schemaRef") or {}).get("id", "")
        if not body.get("name") or self._schema(ref) is None:
            return self._bad("name and schemaRef.id of an existing schema are required")
        oid = uuid.uuid4().hex[:24]
        obj = {**body, "id": oid, "imsOrg": self.ORG, "created": _now_ms()}
        self.objects["dataSets"][oid] = obj
        return obj

    def _make_targetConnections(self, body: dict) -> dict | Reply:  # noqa: N802 - API name
        if (body.get("connectionSpec") or {}).get("id") != DATALAKE_SPEC or not body.get("name"):
            return self._bad(f"name and connectionSpec.id {DATALAKE_SPEC} are required")
        if (body.get("params") or {}).get("dataSetId") not in self.objects["dataSets"]:
            return self._bad("params.dataSetId is not a known dataset")
        obj = self._base(body)
        self.objects["targetConnections"][obj["id"]] = obj
        return obj

    def _make_mappingSets(self, body: dict) -> dict | Reply:  # noqa: N802 - API name
        if self._schema(body.get("xdmSchema", "")) is None:
            return self._bad("xdmSchema must be the id of an existing schema")
        mappings = body.get("mappings")
        if not isinstance(mappings, list) or not mappings or not all(
                isinstance(m, dict) and m.get("destinationXdmPath") and m.get("sourceAttribute")
                for m in mappings):
            return self._bad("mappings must list destinationXdmPath/sourceAttribute pairs")
        now = _now_ms()
        obj = {**body, "id": uuid.uuid4().hex, "version": 0, "createdDate": now, "modifiedDate": now,
               "createdBy": self.CLIENT_ID, "modifiedBy": self.CLIENT_ID}
        self.objects["mappingSets"][obj["id"]] = obj
        return obj

    def _make_flows(self, body: dict) -> dict | Reply:
        spec = (body.get("flowSpec") or {}).get("id")
        if spec not in FLOW_SPECS or not body.get("name"):
            return self._bad("name and a known flowSpec.id are required")
        sources = body.get("sourceConnectionIds") or []
        targets = body.get("targetConnectionIds") or []
        if not sources or any(s not in self.objects["sourceConnections"] for s in sources):
            return self._bad("sourceConnectionIds must name existing source connections")
        if not targets or any(t not in self.objects["targetConnections"] for t in targets):
            return self._bad("targetConnectionIds must name existing target connections")
        transformations = body.get("transformations") or []
        if FLOW_SPECS[spec].endswith("transformation"):
            mapping = next((t for t in transformations if t.get("name") == "Mapping"), None)
            if mapping is None or (mapping.get("params") or {}).get("mappingId") not in \
                    self.objects["mappingSets"]:
                return self._bad("transformations must hold a 'Mapping' with an existing mappingId")
        obj = self._base(body)
        self.objects["flows"][obj["id"]] = obj
        return obj

    # -- the dataflow present from the start (so settings() works without provisioning) ---------
    def _make_default_dataflow(self) -> dict[str, str]:
        conn = self._make_connections({
            "name": "simulator default connection", "providerId": PROVIDER_ID,
            "connectionSpec": {"id": STREAMING_SPEC, "version": "1.0"},
            "auth": {"specName": "Streaming Connection",
                     "params": {"sourceId": "default", "dataType": self.message_mode, "name": "default",
                                "authenticationRequired": self.authenticated}},
        })
        assert isinstance(conn, dict)
        source = self._make_sourceConnections({
            "name": "simulator default source", "baseConnectionId": conn["id"],
            "connectionSpec": {"id": STREAMING_SPEC, "version": "1.0"}, "data": {"format": "json"}})
        schema = self._make_schemas({
            "type": "object", "title": "simulator default schema",
            "meta:class": "https://ns.adobe.com/xdm/context/profile",
            "allOf": [{"$ref": "https://ns.adobe.com/xdm/context/profile"}]})
        assert isinstance(source, dict) and isinstance(schema, dict)
        dataset = self._make_dataSets({"name": "simulator default dataset",
                                       "schemaRef": {"id": schema["$id"]}})
        assert isinstance(dataset, dict)
        target = self._make_targetConnections({
            "name": "simulator default target", "connectionSpec": {"id": DATALAKE_SPEC, "version": "1.0"},
            "data": {"format": "parquet_xdm"}, "params": {"dataSetId": dataset["id"]}})
        assert isinstance(target, dict)
        flow = self._make_flows({
            "name": "simulator default dataflow",
            "flowSpec": {"id": "d8a6f005-7eaf-4153-983e-e8574508b877", "version": "1.0"},
            "sourceConnectionIds": [source["id"]], "targetConnectionIds": [target["id"]]})
        assert isinstance(flow, dict)
        return {"inlet_id": conn["auth"]["params"]["inletId"], "flow_id": flow["id"],
                "schema_id": schema["$id"], "dataset_id": dataset["id"]}


DEMO_CASES = [
    DemoCase("AEP: clean NDJSON profiles streamed to the inlet",
             file="events/files/aep/profiles-clean.ndjson",
             key="inbox/aep/profiles-clean.ndjson", expect="SUCCEEDED"),
    DemoCase("AEP: some records refused by the inlet (rejects file re-uploadable)",
             file="events/files/aep/profiles-with-refused.ndjson",
             key="inbox/aep/profiles-with-refused.ndjson", expect="SUCCEEDED_WITH_REJECTS"),
    DemoCase("AEP: CSV profiles", file="events/files/aep/profiles.csv",
             key="inbox/aep/profiles.csv", expect="SUCCEEDED"),
    DemoCase("AEP: JSON array of profiles", file="events/files/aep/profiles.json",
             key="inbox/aep/profiles.json", expect="SUCCEEDED"),
    DemoCase("AEP: the inlet refuses every record", file="events/files/aep/profiles-all-refused.ndjson",
             key="inbox/aep/profiles-all-refused.ndjson", expect="FAILED"),
]
