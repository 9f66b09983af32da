"""Adobe Campaign Standard: trigger the ingestion of an XDM mapping into Experience Platform.

An upload is a *trigger*, not data: it names the XDM mapping to ingest, either in the key
(``inbox/campaign/mapping=<id>/anything.json``, or S3 metadata / console option ``mapping``)
or in a small JSON body ``{"mapping_id": "...", "options": {"max_resubmits": 1}}``. An empty
file is fine when the key names the mapping.

API (seed 001, VENDORS.md section 2):

* ``POST {base}/{organization}/campaign/dataIngestion/xdmIngestion/{mappingId}/ingest``
  answers ``status`` Success (new ``requestId``), In Progress (a request for this mapping is
  already running: we adopt its ``requestId`` and never POST again), or Failed (the mapping is
  "not stopped" / "not published": the user must fix it in Campaign).
* ``GET`` the same URL with the requestId (query ``?requestId=`` by default, or a JSON body
  ``{"requestId": id}`` when ``request_id_in`` is ``body``: the doc is ambiguous) answers In
  Progress, Success (``numRecords``), Failed (``ACP-...`` code in ``info``, maybe a ``batchId``
  to look up in the Platform UI) or Aborted (Campaign asks for a new request: we POST again,
  up to ``max_resubmits`` times).

Auth: an IMS OAuth server-to-server token (``adobe_ims.ImsTokenProvider``), one re-auth on
401 (error_code 401013), 403 (403023 "Profile is not valid") is a provisioning problem.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote

import requests

from ..errors import (
    InputError,
    SettingsError,
    VendorAuthError,
    VendorProtocolError,
    VendorRejectedError,
    VendorThrottledError,
    VendorUnavailableError,
)
from ..http import body_snippet, json_body, request
from ..model import FinalState, Progress, RejectRow
from ..scrub import scrub
from ..settings import Field, validate_fields
from ..units import limit_text
from .adobe_ims import DEFAULT_TOKEN_URL, ImsTokenProvider
from .base import Connector, StepContext, vendor_count

# A mapping id goes into the URL path: letters, digits and _ . : - only (no / ? # % or spaces).
MAPPING_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
ACP_CODE_RE = re.compile(r"\bACP-\d+\b")
TRIGGER_KEYS = ("mapping_id", "options")
MAX_TRIGGER_BYTES = 64 * 1024

STOP_ADVICE = (
    "stop it in Campaign Standard (Administration > Development > Platform > Status of data "
    "export to platform > open the mapping > Stop, then save) so it can be triggered by API, "
    "then upload the trigger again"
)
PUBLISH_ADVICE = (
    "publish it in Campaign Standard (Administration > Development > Platform > XDM mapping "
    "> Publish), stop it (Status of data export to platform > Stop), then upload the trigger again"
)

IMS_FIELDS = (
    Field("token_url", str, default=DEFAULT_TOKEN_URL, doc="Adobe IMS token endpoint (v3)"),
    Field("client_id", str, required=True,
          doc="OAuth Server-to-Server client id (also sent as X-Api-Key)"),
    Field("client_secret", str, required=True, secret=True, doc="OAuth Server-to-Server client secret"),
    Field("scopes", str, required=True,
          doc="comma-separated scopes of the Developer Console credential (not publicly documented "
              "for Campaign Standard: copy them from the credential)"),
)

# options a JSON trigger may carry in "options" (and that key segments / metadata may give)
TRIGGER_OPTION_FIELDS = (
    Field("max_resubmits", int, minimum=0,
          doc="resubmissions after Aborted for this import (overrides the setting)"),
)


class CampaignConnector(Connector):
    vendor = "campaign"
    allow_empty_file = True  # an empty trigger is fine when the key names the mapping
    default_base_url = "https://mc.adobe.io"
    settings_fields = (
        Field("organization", str, required=True,
              doc="Campaign tenant id (not the IMS org): <ORG> in production, <ORG>-mkt-stage on stage"),
        Field("ims", dict, required=True, fields=IMS_FIELDS,
              doc="IMS OAuth server-to-server credential"),
        Field("request_id_in", str, default="query", choices=("query", "body"),
              doc="how the status GET carries the requestId: query (?requestId=) or body (JSON)"),
        Field("max_resubmits", int, default=3, minimum=0,
              doc="how many times an Aborted ingestion is submitted again before the import fails"),
    )
    option_fields = (
        Field("mapping", str, doc="XDM mapping id (key segment mapping=<id>)"),
        Field("mapping_id", str, doc="XDM mapping id (same as mapping)"),
    ) + TRIGGER_OPTION_FIELDS
    max_file_bytes = MAX_TRIGGER_BYTES

    def __init__(self, settings: dict[str, Any], session: requests.Session | None = None):
        super().__init__(settings, session=session)
        ims = settings["ims"]
        token_url = ims.get("token_url") or DEFAULT_TOKEN_URL
        if token_url.startswith("http://") and not settings.get("allow_http"):
            raise SettingsError("setting ims.token_url uses plain http://: use https://, or set allow_http")
        if not token_url.startswith(("https://", "http://")):
            raise SettingsError("setting ims.token_url must start with https://")
        self.organization = settings["organization"].strip().strip("/")
        self.client_id = ims["client_id"]
        self.ims = ImsTokenProvider(self.session, token_url=token_url, client_id=ims["client_id"],
                                    client_secret=ims["client_secret"], scopes=ims["scopes"])

    # -- protocol -----------------------------------------------------------------------------
    def validate(self, ctx: StepContext) -> list[RejectRow]:
        parse_trigger(ctx, default_max_resubmits=self.settings["max_resubmits"])
        return []

    def submit(self, ctx: StepContext) -> Progress:
        trigger = parse_trigger(ctx, default_max_resubmits=self.settings["max_resubmits"])
        job: dict[str, Any] = {
            "mapping_id": trigger["mapping_id"],
            "max_resubmits": trigger["max_resubmits"],
            "request_ids": [],
            "adopted": 0,
            "polls": 0,
        }
        request_id, adopted = self._start_ingestion(job["mapping_id"])
        job["request_ids"].append(request_id)
        job["adopted"] = int(adopted)
        what = ("adopted the ingestion already in progress" if adopted
                else "submitted the ingestion")
        return Progress(job=job, vendor_ref=str(request_id), counts=_counts(job),
                        message=f"Campaign {what} of XDM mapping {job['mapping_id']} "
                                f"(request {request_id}).")

    def poll(self, job: dict[str, Any], ctx: StepContext) -> Progress:
        mapping_id = job["mapping_id"]
        request_id = job["request_ids"][-1]
        body = self._status(mapping_id, request_id)
        job = dict(job, polls=int(job.get("polls", 0)) + 1)
        status = str(body.get("status", "")).strip().lower()
        num_records = vendor_count(body.get("numRecords"))
        batch_id = str(body.get("batchId") or "").strip()
        info = str(body.get("info") or "").strip()

        if status == "in progress":
            return Progress(job=job, vendor_ref=str(request_id), counts=_counts(job),
                            message=f"Campaign is ingesting XDM mapping {mapping_id} "
                                    f"(request {request_id}).")
        if status == "success":
            job["num_records"] = num_records
            counts = _counts(job, **_record_counts(num_records))
            return Progress(job=job, done=True, state=FinalState.SUCCEEDED, vendor_ref=str(request_id),
                            counts=counts, message=_success_message(job, num_records))
        if status == "failed":
            return self._failed(job, request_id, info, batch_id, num_records)
        if status == "aborted":
            return self._aborted(job, ctx, request_id, num_records, info)
        # A word seed 001 does not list ("Queued", "Pending"...): the ingestion may well still be
        # running, so it is not abandoned. Polling goes on until deadline_seconds, and the status
        # message says which word Campaign answered.
        word = scrub(str(body.get("status")))[:80]
        job["unknown_status"] = word
        return Progress(job=job, vendor_ref=str(request_id), counts=_counts(job),
                        message=f"Campaign answered status {word!r} for XDM mapping {mapping_id} (request "
                                f"{request_id}), a word its documentation does not list (Success, Failed, "
                                "Aborted, In Progress): the ingestion may still be running, polling goes on "
                                "until deadline_seconds.")

    # -- outcomes -------------------------------------------------------------------------------
    def _failed(self, job: dict[str, Any], request_id: Any, info: str, batch_id: str,
                num_records: int | None) -> Progress:
        mapping_id = job["mapping_id"]
        code_match = ACP_CODE_RE.search(info)
        # info is "Mapping Id: <id>. ACP-880096 Sync Job failed to upload. Please check ..."
        reason = info[code_match.start():] if code_match else _strip_mapping_prefix(info, mapping_id)
        job["error_code"] = code_match.group(0) if code_match else ""
        job["error_info"] = scrub(reason)[:500]
        if batch_id:
            job["batch_id"] = batch_id
        message = (f"Campaign failed to ingest XDM mapping {mapping_id} (request {request_id}): "
                   f"{job['error_info'] or 'no reason given'}")
        if batch_id:
            message += (f" Batch id {batch_id}: look it up in the Experience Platform UI "
                        "(Monitoring, or the dataset's batches) for the record errors.")
        return Progress(job=job, done=True, state=FinalState.FAILED, vendor_ref=str(request_id),
                        counts=_counts(job, **_record_counts(num_records)),
                        message=message.strip(), error_type="VendorJobFailed")

    def _aborted(self, job: dict[str, Any], ctx: StepContext, request_id: Any,
                 num_records: int | None, info: str = "") -> Progress:
        mapping_id = job["mapping_id"]
        aborted = len(job["request_ids"])
        if aborted > int(job["max_resubmits"]):
            info = scrub(_strip_mapping_prefix(info, mapping_id))[:300]
            return Progress(
                job=job, done=True, state=FinalState.FAILED, vendor_ref=str(request_id),
                counts=_counts(job, **_record_counts(num_records)), error_type="VendorJobFailed",
                message=(f"The ingestion of XDM mapping {mapping_id} was aborted {aborted} times by "
                         f"Campaign (status Aborted{': ' + info if info else ''}; requests "
                         f"{', '.join(map(str, job['request_ids']))}; max_resubmits is "
                         f"{job['max_resubmits']}): check the data ingestion service and the mapping "
                         "status in Campaign, then upload the trigger again."),
            )
        # Campaign says "Please submit a new request". If our POST's answer is lost and the step
        # is retried, the old request is still Aborted, we POST again and Campaign answers
        # "In Progress" with the request we started: adopted, not started twice.
        new_id, _adopted = self._start_ingestion(mapping_id)
        job = dict(job, request_ids=[*job["request_ids"], new_id])
        ctx.checkpoint(job)
        return Progress(
            job=job, vendor_ref=str(new_id), counts=_counts(job),
            message=(f"Campaign aborted request {request_id} of XDM mapping {mapping_id}; "
                     f"submitted it again as request {new_id} (resubmission {aborted} of "
                     f"{job['max_resubmits']})."),
        )

    # -- vendor calls -----------------------------------------------------------------------------
    def _ingest_url(self, mapping_id: str) -> str:
        return (f"{self.settings['base_url']}/{quote(self.organization, safe='')}/campaign/"
                f"dataIngestion/xdmIngestion/{quote(mapping_id, safe='')}/ingest")

    def _start_ingestion(self, mapping_id: str) -> tuple[Any, bool]:
        """POST the ingestion; return (requestId, adopted)."""
        what = f"Campaign ingestion request for XDM mapping {mapping_id}"
        resp = self._call("POST", self._ingest_url(mapping_id), what=what)
        body = self._json_object(resp, what)
        status = str(body.get("status", "")).strip().lower()
        info = str(body.get("info") or "").strip()
        request_id = body.get("requestId")
        if status in ("success", "in progress"):
            if request_id in (None, ""):
                raise VendorProtocolError(f"{what}: Campaign answered {body.get('status')!r} "
                                          "without a requestId")
            return request_id, status == "in progress"
        if status == "failed":
            low = info.lower()
            if "not stopped" in low:
                raise VendorRejectedError(
                    f"{what}: Campaign refused it because the mapping is not stopped: {STOP_ADVICE}."
                )
            if "not published" in low:
                raise VendorRejectedError(
                    f"{what}: Campaign refused it because the mapping is not published: {PUBLISH_ADVICE}."
                )
            raise VendorRejectedError(f"{what}: Campaign refused it: {scrub(info) or 'no reason given'}")
        raise VendorProtocolError(
            f"{what}: unexpected answer from Campaign: {body_snippet(resp, 200)}"
        )

    def _status(self, mapping_id: str, request_id: Any) -> dict[str, Any]:
        what = f"Campaign ingestion status of XDM mapping {mapping_id} (request {request_id})"
        url = self._ingest_url(mapping_id)
        if self.settings["request_id_in"] == "body":
            resp = self._call("GET", url, what=what, data=json.dumps({"requestId": request_id}))
        else:
            resp = self._call("GET", url, what=what, params={"requestId": str(request_id)})
        return self._json_object(resp, what)

    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.ims.token()}",
            "X-Api-Key": self.client_id,
            "Content-Type": "application/json",
            "Cache-Control": "no-cache",
            "Accept": "application/json",
        }

    def _call(self, method: str, url: str, *, what: str, **kwargs: Any) -> requests.Response:
        """One API call with one re-authentication on 401; errors become named errors."""
        resp = request(self.session, method, url, what=what, headers=self._headers(), **kwargs)
        if _is_unauthorized(resp):
            # expired or revoked token: fetch a new one and try once more (a refused call
            # started nothing, so repeating a POST here is safe)
            self.ims.invalidate()
            resp = request(self.session, method, url, what=what, headers=self._headers(), **kwargs)
        self._raise_for_error(resp, what)
        return resp

    def _raise_for_error(self, resp: requests.Response, what: str) -> None:
        body = _safe_json(resp)
        code = resp.status_code
        # Adobe I/O errors: {"error_code": "401013", "message": ...} or {"code": 500, "message": ...}
        error_code = str(body.get("error_code") or "") if isinstance(body, dict) else ""
        body_code = _int(body.get("code")) if isinstance(body, dict) else 0
        message = scrub(str(body.get("message") or "")).strip() if isinstance(body, dict) else ""
        if code < 400 and not error_code and body_code < 400:
            return
        detail = message or body_snippet(resp, 200)
        label = f"{error_code} " if error_code else ""
        if _is_unauthorized(resp):
            raise VendorAuthError(
                f"{what}: Adobe refused the access token twice (HTTP {code}) {label}{detail}. A fresh "
                "token was refused too: check that ims.client_id and ims.scopes belong to the "
                "Developer Console project that has the Campaign API."
            )
        if code == 403 or error_code.startswith("403"):
            hint = ("the technical account is not provisioned for this Campaign instance (IMS "
                    "profile): check that organization is the Campaign tenant id (<ORG>, or "
                    "<ORG>-mkt-stage on stage) and that the credential's product profile includes "
                    "Campaign Standard; Adobe support fixes IMS provisioning"
                    if error_code == "403023" else
                    "check the credential's product profiles and the API user's roles (the "
                    "ingestion needs the SQL function execution role)")
            raise VendorAuthError(f"{what}: Adobe refused access (HTTP {code}) {label}{detail}: {hint}.")
        if code == 429 or body_code == 429:
            raise VendorThrottledError(f"{what}: Adobe is throttling requests (HTTP 429) {detail}")
        if "check your uri" in message.lower():
            # documented: the organization in the URL is not one the credential can reach
            raise VendorRejectedError(
                f"{what}: Adobe I/O answered {body_code or code} \"{message}\": check setting "
                f"organization ({self.organization!r} must be the Campaign tenant id, <ORG> or "
                "<ORG>-mkt-stage, as listed in the Developer Console) and base_url."
            )
        status = code if code >= 400 else body_code
        if status >= 500:
            raise VendorUnavailableError(f"{what}: Campaign failed (HTTP {status}) {label}{detail}")
        raise VendorRejectedError(f"{what}: Campaign refused the request (HTTP {status}) {label}{detail}"
                                  + _request_id_hint(self.settings["request_id_in"], status, resp))

    @staticmethod
    def _json_object(resp: requests.Response, what: str) -> dict[str, Any]:
        body = json_body(resp, what)
        if not isinstance(body, dict):
            raise VendorProtocolError(f"{what}: expected a JSON object, got: {body_snippet(resp, 120)}")
        return body


# -- the trigger --------------------------------------------------------------------------------
def parse_trigger(ctx: StepContext, *, default_max_resubmits: int) -> dict[str, Any]:
    """Read the trigger (key options + optional JSON body) -> {mapping_id, max_resubmits}.

    Raises InputError with what is wrong and how to fix it. No network.
    """
    options = dict(ctx.options or {})
    body = _read_body(ctx)
    body_options: dict[str, Any] = {}
    body_mapping = None
    if body is not None:
        unknown = sorted(set(body) - set(TRIGGER_KEYS))
        if unknown:
            raise InputError(
                f"trigger file {ctx.source.name}: unknown key {unknown[0]!r}; a trigger is "
                '{"mapping_id": "<XDM mapping id>", "options": {"max_resubmits": 3}} '
                "(options optional)"
            )
        body_mapping = body.get("mapping_id")
        if body_mapping is not None and not isinstance(body_mapping, str):
            raise InputError(f"trigger file {ctx.source.name}: mapping_id must be a string, "
                             f"not {type(body_mapping).__name__}")
        raw_options = body.get("options")
        if raw_options is not None and not isinstance(raw_options, dict):
            raise InputError(f"trigger file {ctx.source.name}: options must be a JSON object, "
                             'e.g. {"max_resubmits": 1}')
        body_options = _validate_trigger_options(raw_options or {}, f"trigger file {ctx.source.name}")

    key_mappings = {str(v).strip() for k in ("mapping", "mapping_id")
                    if (v := options.get(k)) not in (None, "")}
    if len(key_mappings) > 1:
        raise InputError(
            f"the key names two different XDM mappings ({', '.join(sorted(key_mappings))}): "
            "give one mapping=<id> segment"
        )
    key_mapping = next(iter(key_mappings), None)
    body_mapping = body_mapping.strip() if isinstance(body_mapping, str) else None
    if key_mapping and body_mapping and key_mapping != body_mapping:
        raise InputError(
            f"the key names XDM mapping {key_mapping!r} but trigger file {ctx.source.name} names "
            f"{body_mapping!r}: remove one of them or make them equal"
        )
    mapping_id = key_mapping or body_mapping
    if not mapping_id:
        raise InputError(
            f"trigger file {ctx.source.name} names no XDM mapping: upload it under "
            "inbox/campaign/mapping=<XDM mapping id>/, or put "
            '{"mapping_id": "<XDM mapping id>"} in the file'
        )
    if not MAPPING_ID_RE.match(mapping_id):
        raise InputError(
            f"XDM mapping id {mapping_id[:80]!r} is not well-formed: use the mapping's id as "
            "shown in Campaign (letters, digits, _ . : -, at most 128 characters, no spaces or /)"
        )

    key_options = _validate_trigger_options(
        {k: v for k, v in options.items() if k in {f.name for f in TRIGGER_OPTION_FIELDS}},
        "the key or metadata",
    )
    merged = {**key_options, **{k: v for k, v in body_options.items() if v is not None}}
    max_resubmits = merged.get("max_resubmits")
    return {
        "mapping_id": mapping_id,
        "max_resubmits": default_max_resubmits if max_resubmits is None else int(max_resubmits),
    }


def _read_body(ctx: StepContext) -> dict[str, Any] | None:
    """The trigger's JSON object, or None when the file is empty (blank)."""
    name = ctx.source.name
    if ctx.source.size > MAX_TRIGGER_BYTES:
        raise InputError(f"trigger file {name} is {ctx.source.size:,} bytes, over "
                         f"{limit_text('the trigger file', MAX_TRIGGER_BYTES)}: a Campaign trigger is a small "
                         f"JSON document naming an XDM mapping")
    with ctx.source.open() as stream:
        raw = stream.read(MAX_TRIGGER_BYTES + 1)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"trigger file {name} is not UTF-8 text (byte {exc.start}): save it as "
                         "UTF-8 JSON") from None
    if not text.strip():
        return None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"trigger file {name} is not valid JSON: {exc.msg} at line {exc.lineno} "
                         f"column {exc.colno}") from None
    if not isinstance(doc, dict):
        raise InputError(f"trigger file {name} must be a JSON object like "
                         '{"mapping_id": "<XDM mapping id>"}, not a JSON ' + _json_kind(doc))
    return doc


def _validate_trigger_options(options: dict[str, Any], where: str) -> dict[str, Any]:
    coerced = {}
    for k, v in options.items():
        if isinstance(v, str) and k == "max_resubmits":
            try:
                v = int(v.strip())
            except ValueError:
                raise InputError(f"option max_resubmits in {where} must be a whole number, "
                                 f"not {v[:40]!r}") from None
        coerced[k] = v
    try:
        return validate_fields(coerced, TRIGGER_OPTION_FIELDS, "option ")
    except SettingsError as exc:
        raise InputError(f"{exc.message.replace('setting option ', 'option ')} (in {where})") from None


# -- helpers -------------------------------------------------------------------------------------
def _counts(job: dict[str, Any], **extra: int) -> dict[str, int]:
    counts = dict(extra)
    counts["attempts"] = len(job.get("request_ids", []))
    if job.get("adopted"):
        counts["adopted"] = 1
    return counts


def _success_message(job: dict[str, Any], num_records: int | None) -> str:
    request_ids = job["request_ids"]
    notes = []
    if job.get("adopted"):
        notes.append("adopted an ingestion that was already in progress")
    if len(request_ids) > 1:
        resubmits = len(request_ids) - 1
        plural = "s" if resubmits > 1 else ""
        notes.append(f"after {resubmits} resubmission{plural} of aborted request{plural} "
                     f"{', '.join(map(str, request_ids[:-1]))}")
    note = f"; {'; '.join(notes)}" if notes else ""
    if num_records is None:
        return (f"Campaign reported the ingestion of XDM mapping {job['mapping_id']} into Experience Platform "
                f"a success (request {request_ids[-1]}{note}) without a record count: numRecords was missing "
                "or not a number, so the count is unknown.")
    return (f"Campaign ingested {num_records} record{'s' if num_records != 1 else ''} of XDM mapping "
            f"{job['mapping_id']} into Experience Platform (request {request_ids[-1]}{note}).")


def _record_counts(num_records: int | None) -> dict[str, int]:
    """records/accepted when Campaign gave a count; nothing (unknown) when it did not."""
    return {} if num_records is None else {"records": num_records, "accepted": num_records}


def _strip_mapping_prefix(info: str, mapping_id: str) -> str:
    """'Mapping Id: m1. Something broke' -> 'Something broke'."""
    return re.sub(rf"^Mapping Id:\s*{re.escape(mapping_id)}\.?\s*", "", info, flags=re.I).strip()


def _is_unauthorized(resp: requests.Response) -> bool:
    if resp.status_code == 401:
        return True
    body = _safe_json(resp)
    return isinstance(body, dict) and str(body.get("error_code") or "").startswith("401")


def _safe_json(resp: requests.Response) -> Any:
    if not resp.content:
        return None
    try:
        return resp.json()
    except ValueError:
        return None


def _request_id_hint(mode: str, status: int, resp: requests.Response) -> str:
    if resp.request is None or resp.request.method != "GET" or status not in (400, 404, 405):
        return ""
    other = "body" if mode == "query" else "query"
    return (f" (the status call sends the requestId as {mode}; if Campaign does not find it, "
            f"try setting request_id_in to {other})")


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _json_kind(doc: Any) -> str:
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}.get(
        type(doc), "null")
