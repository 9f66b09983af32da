"""Adobe Experience Platform streaming ingestion: records streamed to an HTTP API inlet (seed 003).

An upload (NDJSON, JSON array or CSV) is read as a stream and sent by one of two paths:

* raw records (``message_mode: raw``, the default): one record per request,
  ``POST {base_url}/collection/{inlet_id}`` with header ``x-adobe-flow-id``, the one raw path
  Adobe documents (seed 003, "Affichage des données brutes à ingérer"). The inlet answers 200
  ``{"inletId", "xactionId", "receivedTimeMs"}``; a 400 refuses the record. Up to
  ``single_concurrency`` requests are in flight, paced under ``max_requests_per_second`` (the
  inlet's documented 1,000 requests/s, streaming-ingestion overview).
* XDM envelopes (``message_mode: xdm``), or raw records with the opt-in ``raw_batch: true``
  (undocumented: Adobe shows /collection/batch with XDM envelopes only):
  ``POST {base_url}/collection/batch/{inlet_id}`` ``{"messages": [...]}`` in batches of at most
  ``max_request_bytes`` (the inlet answers 413 over 1 MB). The inlet answers 207 with one result
  per message, in order: ``xactionId`` = accepted, ``statusCode`` + ``message`` = refused
  (streaming-multiple-messages.md). A raw batch refused whole for its shape ("unknown xdm
  format") fails the import with a VendorRejectedError naming ``raw_batch``.

The import is a cursor loop: ``submit`` checks the upload and starts; each ``poll`` sends the
next slice of the file until ``ctx.time_left()`` drops under ``time_margin_seconds`` and asks to
be polled again at once (``next_wait_seconds=0``). Several batches are in flight at a time
(``concurrency`` worker threads over one kept-alive session), paced by a token bucket under
``max_requests_per_second`` and ``max_messages_per_second``.

Exactly-once bookkeeping: a batch covers a contiguous byte range of the file. When a batch
completes, its rejects are staged (``ctx.emit_rejects``, part id = its start offset) and then
``ctx.checkpoint(job)`` records it: the committed ``offset`` moves over the completed prefix, and
batches completed ahead of an unfinished one are listed in ``job["done"]`` so a retried step
skips them. A hard crash can resend only the batches that were in flight at that instant.

What the 207 proves: the inlet received the message. Records that later fail XDM validation or
mapping land in failed batches of the dataset, not here; ``verify_flow_runs`` reads the flow
runs afterwards to report how many were ingested or failed.
"""

from __future__ import annotations

import copy
import json
import random
import threading
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests

from ..errors import (
    InputError,
    SettingsError,
    VendorAuthError,
    VendorImportError,
    VendorProtocolError,
    VendorRejectedError,
    VendorThrottledError,
    VendorUnavailableError,
)
from ..http import body_snippet, direct_post, json_body, new_session, note_retry, raise_for_status, request
from ..logic.record_count import RecordTally
from ..model import CODE_NOT_SENT, FinalState, Progress, RawRejects, RejectRow
from ..scrub import scrub
from ..settings import Field
from ..units import limit_text
from .adobe_ims import DEFAULT_TOKEN_URL, ImsTokenProvider
from .aep_records import Item, Position, detect_format, read_csv_header, read_items
from .base import Connector, StepContext, vendor_count

DEFAULT_SCOPES = "openid,AdobeID,read_organizations,additional_info.projectedProductContext,session"
XDM_CONTENT_TYPE = "application/vnd.adobe.xed-full+json;version=1"
# {"messages":[ ... ]} around the comma-joined messages
_WRAPPER_BYTES = len(b'{"messages":[]}')
# statusCodes of a message (or a whole request) worth sending again
_RETRYABLE = frozenset({429, 500, 502, 503, 504})
# a batch also closes after this many locally refused records (keeps one reject part small)
_MAX_LOCAL_PER_BATCH = 1000
# single-message path: records per bookkeeping batch (one worker sends them one request at a time)
_SINGLE_BATCH_MESSAGES = 50
# the documented answer of a batch inlet to a message that is not an XDM envelope
_SHAPE_REFUSAL = "unknown xdm format"
# validate() lists at most this many would-be rejects
_MAX_VALIDATE_ROWS = 10_000

IMS_FIELDS = (
    Field("token_url", str, default=DEFAULT_TOKEN_URL, doc="Adobe IMS token endpoint (v3)"),
    Field("client_id", str, doc="OAuth Server-to-Server client id (also the x-api-key)"),
    Field("client_secret", str, secret=True, doc="OAuth Server-to-Server client secret"),
    Field("scopes", str, default=DEFAULT_SCOPES, doc="comma-separated scopes of the credential"),
)


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


@dataclass
class _Batch:
    """A contiguous byte range of the file: the messages to send and the records refused locally."""

    start: int
    end: int = 0
    end_number: int = 0
    end_line: int = 1
    messages: list[tuple[Item, bytes]] = field(default_factory=list)
    local: list[tuple[Item, str, str]] = field(default_factory=list)  # (item, code, reason)
    size: int = _WRAPPER_BYTES
    items: int = 0
    body: bytes | None = None  # the request body, joined by the main thread (see _send_slice)


@dataclass
class _Outcome:
    accepted: int = 0
    refused: list[tuple[Item, str, str]] = field(default_factory=list)
    requests: int = 0
    retries: int = 0


# the pacer lets a request go up to this early rather than sleep (at 10,000 messages/s: 50 messages)
_SLEEP_TOLERANCE = 0.005
# burst tolerated by the connector's pacer: one 500-message request at 10,000 messages/s (a one-second
# burst let up to twice the limit into a second: 429s at an inlet counting per second, bench/)
_BURST_SECONDS = 0.05


class _Pacer:
    """Two token buckets (requests/s and messages/s) as a GCRA: bursts up to ``burst_seconds``
    worth, then callers are spaced. Reservations are made under a lock; the sleep happens outside it.

    An inlet that counts per second answers 429 when one second holds more than its limit; a
    burst tolerance of B seconds lets up to (1 + B) x the rate into one second (after an idle
    moment, or when a late sender catches up), so the connector keeps B small."""

    def __init__(self, requests_per_second: float, messages_per_second: float, burst_seconds: float = 1.0):
        self._lock = threading.Lock()
        self._rates = (float(requests_per_second), float(messages_per_second))
        self._burst = float(burst_seconds)
        self._tat = [0.0, 0.0]  # theoretical arrival time of each bucket

    def assume_busy(self) -> None:
        """Start as if the tolerated burst had just been used: no initial burst. A step follows
        the previous one at once (which may have sent at the full rate)."""
        now = time.monotonic()
        with self._lock:
            self._tat = [max(tat, now + self._burst) for tat in self._tat]

    def acquire(self, messages: int) -> float:
        now = time.monotonic()
        with self._lock:
            waits = []
            for i, amount in enumerate((1, messages)):
                rate = self._rates[i]
                tat = max(self._tat[i], now) + amount / rate
                self._tat[i] = tat
                waits.append(tat - self._burst - now)
        delay = max(0.0, *waits)
        if delay > _SLEEP_TOLERANCE:  # a few ms early is not worth a sleep (nor a thread switch)
            time.sleep(delay)
        return delay


class _DirectPost:
    """POST on the one-record path through the session adapter's own urllib3 pool, without the
    per-call work of ``requests.Session.request`` (environment proxy lookup, cookies, hooks:
    about 450 us of CPU per call here, against 210 us for the pool itself; bench/aep_throughput.py).
    Same pool and TLS verification (requests' ``get_connection_with_tls_context``), same timeout;
    no redirect is followed and urllib3 retries nothing (the connector retries). Not used when the
    environment sets a proxy for the inlet (requests' path honours it)."""

    def __init__(self, session: requests.Session, url: str):
        adapter = session.get_adapter(url)
        prepared = requests.Request("POST", url).prepare()
        self.pool = adapter.get_connection_with_tls_context(prepared, session.verify, cert=session.cert)
        self.session = session
        parts = urlsplit(url)
        self.url = url
        self.path = parts.path + (f"?{parts.query}" if parts.query else "")
        self.headers = dict(session.headers)

    @staticmethod
    def usable(session: requests.Session, url: str) -> bool:
        return not (session.trust_env and requests.utils.get_environ_proxies(url))

    def post(self, body: bytes, headers: dict[str, str], what: str) -> requests.Response:
        """The answer as a ``requests.Response``, under http.request's rules (whole-call timeout,
        bounded answer, no redirect, certificate errors not retried)."""
        return direct_post(self.session, self.pool, self.url, self.path, body, {**self.headers, **headers},
                           what=what)


class AepConnector(Connector):
    vendor = "aep"
    settings_fields = (
        Field("inlet_id", str, required=True,
              doc="the streaming inlet id (auth.params.inletId of the HTTP API connection)"),
        Field("flow_id", str, required=True, doc="the dataflow id, sent as header x-adobe-flow-id"),
        Field("message_mode", str, default="raw", choices=("raw", "xdm"),
              doc="raw: each record is sent as it is; xdm: wrapped in the XDM header/body envelope"),
        Field("raw_batch", bool, default=False,
              doc="raw mode: send records as {\"messages\": [...]} to /collection/batch/{inlet} (not documented "
                  "by Adobe; opt in only if your inlet accepts it). Default: one record per request to "
                  "/collection/{inlet}, as documented (seed 003)"),
        Field("single_concurrency", int, default=50, minimum=1,
              doc="single-message path: requests in flight (1,000 requests/s at 50 ms per request)"),
        Field("schema_id", str, doc="xdm mode: $id of the target XDM schema"),
        Field("schema_content_type", str, default=XDM_CONTENT_TYPE, doc="xdm mode: schemaRef.contentType"),
        Field("dataset_id", str, doc="xdm mode: the target dataset id"),
        Field("ims_org_id", str, doc="IMS organization id (...@AdobeOrg)"),
        Field("sandbox_name", str, default="prod", doc="sandbox of the Platform API calls"),
        Field("authenticated", bool, default=False,
              doc="the inlet was created with authenticationRequired: send an IMS bearer token"),
        Field("ims", dict, default=None, fields=IMS_FIELDS,
              doc="IMS credentials (authenticated inlets and verify_flow_runs)"),
        Field("api_key", str, doc="x-api-key of Platform API calls (default: ims.client_id)"),
        Field("platform_base_url", str, default="https://platform.adobe.io",
              doc="Platform API root (flow runs)"),
        Field("verify_flow_runs", bool, default=False,
              doc="after sending, poll the dataflow's runs and report ingested/failed counts"),
        Field("verify_timeout_seconds", int, default=3600, minimum=0,
              doc="stop waiting for the flow runs to account for every record after this long"),
        Field("max_request_bytes", int, default=1_000_000, minimum=1024,
              doc="largest request body, envelope included (the inlet answers 413 over 1 MB)"),
        Field("max_record_bytes", int, default=1_000_000, minimum=16,
              doc="largest single message; larger records are refused locally, never sent"),
        Field("max_messages_per_request", int, default=500, minimum=1, doc="messages per request"),
        Field("concurrency", int, default=8, minimum=1, doc="requests in flight at a time"),
        Field("max_requests_per_second", float, default=1000.0, minimum=0.01,
              doc="pacing of requests (the inlet allows 1000/s)"),
        Field("max_messages_per_second", float, default=10000.0, minimum=0.01,
              doc="pacing of messages (the inlet allows 10000/s)"),
        Field("max_retries", int, default=5, minimum=3, maximum=10,
              why_maximum="the retry budget of a step (README)",
              doc="retries of a request answered 429/5xx or not answered, and of a message refused "
                  "with a retryable statusCode"),
        Field("retry_base_seconds", float, default=0.5, minimum=0.0, doc="first backoff delay"),
        Field("retry_max_seconds", float, default=8.0, minimum=0.0, doc="cap of one backoff delay"),
        Field("time_margin_seconds", int, default=60, minimum=0,
              doc="a step stops sending when less than this is left of the Lambda run"),
    )
    option_fields = (
        Field("format", str, choices=("ndjson", "json", "csv"),
              doc="the upload format (default: from the file extension)"),
        Field("delimiter", str, doc="CSV delimiter, one character (default ',', tab for .tsv)"),
    )
    max_file_bytes = None  # streamed: any size, continued over as many steps as needed

    def __init__(self, settings: dict[str, Any], session: requests.Session | None = None):
        pool = max(10, int(settings.get("concurrency") or 8), int(settings.get("single_concurrency") or 50))
        session = session or new_session(settings, pool_size=pool)
        super().__init__(settings, session=session)
        s = settings
        self.inlet_url = f"{s['base_url']}/collection/batch/{s['inlet_id']}"
        self.single_url = f"{s['base_url']}/collection/{s['inlet_id']}"
        # raw records go one per request to /collection/{inlet} unless raw_batch opts in
        self.single = s["message_mode"] == "raw" and not s.get("raw_batch")
        self._direct = _DirectPost(self.session, self.single_url) \
            if self.single and _DirectPost.usable(self.session, self.single_url) else None
        self.platform_url = (s.get("platform_base_url") or "https://platform.adobe.io").rstrip("/")
        self._check_settings()
        self.ims: ImsTokenProvider | None = None
        ims = s.get("ims") or {}
        if ims.get("client_id") and ims.get("client_secret"):
            self.ims = ImsTokenProvider.from_settings(self.session, ims)
        self._xdm_prefix, self._xdm_suffix = self._xdm_envelope()
        self._pacer = _Pacer(s["max_requests_per_second"], s["max_messages_per_second"], burst_seconds=_BURST_SECONDS)
        self._rng = random.Random()

    def _check_settings(self) -> None:
        s = self.settings
        if s["message_mode"] == "xdm":
            for name in ("schema_id", "dataset_id", "ims_org_id"):
                if not s.get(name):
                    raise SettingsError(f"missing setting {name}: message_mode xdm needs schema_id, "
                                        "dataset_id and ims_org_id for the XDM envelope")
        for name in ("concurrency", "single_concurrency"):
            if s[name] > 64:  # the job state lists up to ~2 x concurrency completed ranges
                raise SettingsError(f"setting {name} must be at most 64")
        needs_ims = [n for n in ("authenticated", "verify_flow_runs") if s.get(n)]
        ims = s.get("ims") or {}
        if needs_ims and not (ims.get("client_id") and ims.get("client_secret")):
            raise SettingsError(f"missing setting ims.client_id/ims.client_secret: {needs_ims[0]} is true "
                                "and needs an IMS OAuth Server-to-Server credential")
        if s.get("verify_flow_runs") and not s.get("ims_org_id"):
            raise SettingsError("missing setting ims_org_id: verify_flow_runs calls the Platform API")
        for name, url in (("platform_base_url", self.platform_url),
                          ("ims.token_url", (s.get("ims") or {}).get("token_url") or "")):
            if url.startswith("http://") and not s["allow_http"]:
                raise SettingsError(f"setting {name} uses plain http://: use https://, or set allow_http")

    def _xdm_envelope(self) -> tuple[bytes, bytes]:
        """Pre-encoded parts of the XDM envelope around the record (encoded once, not per record)."""
        s = self.settings
        if s["message_mode"] != "xdm":
            return b"", b""
        ref = {"id": s["schema_id"], "contentType": s["schema_content_type"]}
        header = {"schemaRef": ref, "imsOrgId": s["ims_org_id"], "datasetId": s["dataset_id"],
                  "flowId": s["flow_id"]}
        prefix = b'{"header":' + _dumps(header) + b',"body":{"xdmMeta":' + _dumps({"schemaRef": ref}) + \
            b',"xdmEntity":'
        return prefix, b"}}"

    def encode(self, record: dict) -> bytes:
        """The message sent for one record (raises ValueError for NaN/Infinity)."""
        body = _dumps(record)
        if self._xdm_prefix:
            return self._xdm_prefix + body + self._xdm_suffix
        return body

    # -- the file ----------------------------------------------------------------------------------
    def _format(self, ctx: StepContext) -> tuple[str, str]:
        default = "\t" if ctx.source.name.lower().endswith(".tsv") else ","
        delimiter = str(ctx.options.get("delimiter") or default)
        if len(delimiter) != 1:
            raise InputError(f"option delimiter={delimiter!r} must be a single character")
        return detect_format(ctx.source.name, ctx.source, ctx.options.get("format")), delimiter

    @property
    def _read_limit(self) -> int:
        # records a bit over the limit are still read, so they can go into the rejects file
        return self.settings["max_record_bytes"] * 2 + 65536

    def _items(self, ctx: StepContext, fmt: str, delimiter: str, position: Position | None = None):
        return read_items(ctx.source, fmt, position, max_item_bytes=self._read_limit, delimiter=delimiter)

    def _check(self, item: Item) -> tuple[bytes | None, str, str]:
        """The message for an item, or why it is refused locally: (message, code, reason)."""
        if item.error:
            return None, item.code, item.error
        assert item.record is not None
        where = f"record {item.number} (line {item.line})"
        if not item.record:
            return None, "empty", f"{where}: the record is empty (no field has a value)"
        raw = item.raw
        try:
            if raw is not None:
                # NDJSON: the record as written is valid JSON (it parsed, no NaN): send it as is
                message = self._xdm_prefix + raw + self._xdm_suffix if self._xdm_prefix else raw
            else:
                message = self.encode(item.record)
        except ValueError:
            return None, "invalid_json", f"{where}: NaN or Infinity is not valid JSON"
        limit = min(self.settings["max_record_bytes"], self.settings["max_request_bytes"] - _WRAPPER_BYTES)
        if len(message) > limit:
            return None, "oversize", (f"{where}: the message is {len(message):,} bytes, over "
                                      f"{limit_text('aep', limit)} for one record; it was not sent")
        return message, "", ""

    def record_tally(self, job: dict[str, Any]) -> RecordTally:
        """read: the reader's number of the last record committed (or listed as not sent);
        refused locally: read, not sent."""
        c = job["counts"]
        local = c["records"] - c["sent"]
        return RecordTally(read=int(job["number"]), accepted=c["accepted"],
                           refused_by_vendor=c["rejected"] - local, refused_locally=local,
                           not_sent=int(c.get("not_sent", 0)))

    def settle(self, job: dict[str, Any], ctx: StepContext, reason: str) -> Progress:
        """The rest of the file after a failure for good: from the committed cursor, skipping the
        batches completed ahead of it, each record goes to the rejects as it was written, NOT_SENT
        with ``reason`` (or with its own reason if the local checks refuse it: counted as refused
        locally, as a sending step would). No request is sent. Part ids are the records' offsets,
        so a retried settle rewrites its parts."""
        job = json.loads(json.dumps(job))
        if job.get("phase") != "send":
            return Progress(job=job, counts=_public_counts(job), message="")  # every record was sent
        counts = job["counts"]
        counts.setdefault("not_sent", 0)
        position = Position(job["offset"], job["number"], job["line"])
        part: list[tuple[Item, str, str]] = []
        complete, problem = True, ""
        items = self._items(ctx, job["format"], job["delimiter"], position)
        try:
            for item, completed in _against_done(items, job["done"]):
                if completed:
                    job["number"] = max(job["number"], item.number)  # committed by an earlier step
                    continue
                message, code, local_reason = self._check(item)
                if message is None:  # refused locally, as the sending step would have
                    part.append((item, code, local_reason))
                    counts["records"] += 1
                    counts["rejected"] += 1
                else:
                    part.append((item, CODE_NOT_SENT, reason))
                    counts["not_sent"] += 1
                job["number"], job["line"], job["offset"] = item.number, item.next_line, item.end
                if len(part) >= _MAX_LOCAL_PER_BATCH:
                    self._emit_refused(part, ctx)
                    part = []
                    if ctx.time_left() < self.settings["time_margin_seconds"]:
                        complete = False
                        break
        except VendorImportError as exc:  # the rest of the file cannot be read
            complete, problem = False, exc.message
        if part:
            self._emit_refused(part, ctx)
        job["done"] = []
        ctx.checkpoint(copy.deepcopy(job))
        return Progress(job=job, done=complete, counts=_public_counts(job),
                        message=_settled_message(counts["not_sent"], complete, job["number"], problem))

    # -- protocol ----------------------------------------------------------------------------------
    def validate(self, ctx: StepContext) -> list[RejectRow]:
        """Every local check of the sending steps. A dry run also stages its would-be rejects as
        the real run does (``ctx.emit_rejects``, same part ids, rows and raw records), so it
        writes the same rejects files; the list returned is capped at 10,000 rows."""
        if ctx.source.size == 0:
            raise InputError(f"{ctx.source.name} is empty: upload a file with at least one record")
        fmt, delimiter = self._format(ctx)
        rows: list[RejectRow] = []
        records = good = extra = 0
        margin = self.settings["time_margin_seconds"]
        part: list[tuple[Item, str, str]] = []
        for item in self._items(ctx, fmt, delimiter):
            records += 1
            message, code, reason = self._check(item)
            if message is not None:
                good += 1
                continue
            if len(rows) < _MAX_VALIDATE_ROWS:
                rows.append(RejectRow(_record_ref(item), reason, code))
            else:
                extra += 1
            if ctx.dry_run:
                part.append((item, code, reason))
                if len(part) >= _MAX_LOCAL_PER_BATCH:
                    self._emit_refused(part, ctx)
                    part = []
            if records % 10_000 == 0 and ctx.time_left() < margin and not ctx.dry_run:
                break  # the sending steps check every record again
        if part:
            self._emit_refused(part, ctx)
        if records == 0:
            raise InputError(f"{ctx.source.name} holds no records: {_format_hint(fmt)}")
        if good == 0:
            first = rows[0].reason if rows else ""
            raise InputError(f"{ctx.source.name}: none of its {records:,} records can be sent; the first "
                             f"problem: {first}")
        if extra:
            rows.append(RejectRow("...", f"{extra:,} more records would be refused (not listed)", "more"))
        return rows

    def submit(self, ctx: StepContext) -> Progress:
        fmt, delimiter = self._format(ctx)
        if ctx.source.size == 0:
            raise InputError(f"{ctx.source.name} is empty: upload a file with at least one record")
        if fmt == "csv":
            read_csv_header(ctx.source, self._read_limit, delimiter)  # a bad header fails now
        if self.settings["authenticated"]:
            self._bearer()  # bad credentials fail before anything is sent
        job = {
            "phase": "send", "format": fmt, "delimiter": delimiter,
            "offset": 0, "number": 0, "line": 1, "done": [],
            "counts": {"records": 0, "sent": 0, "accepted": 0, "rejected": 0, "requests": 0, "retries": 0},
            "started_ms": int(time.time() * 1000), "steps": 0,
        }
        return Progress(job=job, vendor_ref=self.settings["flow_id"], next_wait_seconds=0,
                        counts=_public_counts(job),
                        message=f"sending {ctx.source.name} ({fmt}, {ctx.source.size:,} bytes) to the "
                                f"AEP streaming inlet {self.settings['inlet_id']}")

    def poll(self, job: dict[str, Any], ctx: StepContext) -> Progress:
        if job.get("phase") == "verify":
            return self._verify(job, ctx)
        return self._send_slice(job, ctx)

    # -- sending -----------------------------------------------------------------------------------
    def _batches(self, ctx: StepContext, job: dict[str, Any]):
        """Batches from the committed offset, closed before a batch completed ahead (job["done"])
        so they are skipped, not resent."""
        s = self.settings
        per_batch = _SINGLE_BATCH_MESSAGES if self.single else s["max_messages_per_request"]
        position = Position(job["offset"], job["number"], job["line"])
        # batch ranges are contiguous: each starts where the previous one ended
        batch = _Batch(job["offset"], job["offset"], job["number"], job["line"])
        for item, completed in _against_done(self._items(ctx, job["format"], job["delimiter"], position),
                                             job["done"]):
            if completed:
                if batch.items:
                    batch.end = completed[0]  # up to the completed range (only blank text between)
                    yield batch
                start, end, number, line = completed
                batch = _Batch(end, end, number, line)
                continue  # completed in an earlier step
            message, code, reason = self._check(item)
            if message is not None and batch.messages and (
                    batch.size + len(message) + 1 > s["max_request_bytes"]
                    or len(batch.messages) >= per_batch):
                yield batch
                batch = _Batch(batch.end, batch.end, batch.end_number, batch.end_line)
            batch.items += 1
            batch.end, batch.end_number, batch.end_line = item.end, item.number, item.next_line
            if message is None:
                batch.local.append((item, code, reason))
                if len(batch.local) >= _MAX_LOCAL_PER_BATCH:
                    yield batch
                    batch = _Batch(batch.end, batch.end, batch.end_number, batch.end_line)
            else:
                if item.raw is not None:
                    item.record = None  # the raw text stands for it from here (memory in flight)
                batch.messages.append((item, message))
                batch.size += len(message) + (1 if len(batch.messages) > 1 else 0)
        if batch.items:
            yield batch

    def _send_slice(self, job: dict[str, Any], ctx: StepContext) -> Progress:
        s = self.settings
        margin = s["time_margin_seconds"]
        job = json.loads(json.dumps(job))  # our own copy: the caller's stays as it was
        job["steps"] = job.get("steps", 0) + 1
        self._pacer.assume_busy()
        batches = self._batches(ctx, job)
        inflight: dict[Future, _Batch] = {}
        exhausted = stopped = False
        started = 0  # batches taken in this step
        error: BaseException | None = None
        workers = s["single_concurrency"] if self.single else s["concurrency"]
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="aep-send") as pool:
            while True:
                completed: list[tuple[_Batch, _Outcome]] = []
                while not (stopped or exhausted) and len(inflight) + len(completed) < workers:
                    # always make progress: at least one batch per step (a margin as long as the
                    # Lambda run would otherwise loop forever without sending anything)
                    if ctx.time_left() < margin and started:
                        stopped = True
                        break
                    try:
                        batch = next(batches, None)
                    except VendorImportError as exc:  # the rest of the file cannot be read
                        error, stopped = exc, True
                        break
                    started += 1
                    if batch is None:
                        exhausted = True
                    elif batch.messages:
                        if not self.single:
                            # joined here, not in the worker: large buffers come from one malloc arena
                            # (per-thread arenas keep freed ~1 MB bodies: peak memory grows with threads)
                            batch.body = _body(batch.messages)
                            # paced here: batches leave in file order, spaced (a worker only paces retries)
                            self._pacer.acquire(len(batch.messages))
                        inflight[pool.submit(self._send_batch, batch, ctx)] = batch
                    else:
                        completed.append((batch, _Outcome()))  # only records refused locally
                if inflight and not completed:
                    finished, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
                    for future in finished:
                        batch = inflight.pop(future)
                        try:
                            completed.append((batch, future.result()))
                        except VendorImportError as exc:  # this batch stays unsent: retried later
                            sent = getattr(exc, "sent_prefix", None)
                            if sent is not None:  # single messages: what went before is done
                                completed.append(_prefix(batch, *sent))
                            error, stopped = error or exc, True
                if completed:
                    self._commit(job, completed, ctx)
                if not inflight and (stopped or exhausted):
                    break
        if error is not None:
            raise error
        finished_sending = exhausted and not job["done"]
        if not finished_sending:
            return Progress(job=job, vendor_ref=s["flow_id"], next_wait_seconds=0,
                            counts=_public_counts(job), message=self._progress_message(job, ctx))
        job["send_ended_ms"] = int(time.time() * 1000)
        if s["verify_flow_runs"] and job["counts"]["accepted"]:
            job["phase"], job["verify_polls"] = "verify", 0
            return Progress(job=job, vendor_ref=s["flow_id"], counts=_public_counts(job),
                            message=self._sent_message(job) + "; waiting for the dataflow runs")
        return self._final(job)

    def _commit(self, job: dict[str, Any], completed: list[tuple[_Batch, _Outcome]],
                ctx: StepContext) -> None:
        """Stage the rejects of the newly completed batches, count them, then checkpoint: the
        committed offset moves over the contiguous completed prefix; batches completed ahead of
        an unfinished one wait in job["done"] (a retried step skips them)."""
        counts = job["counts"]
        for batch, outcome in sorted(completed, key=lambda pair: pair[0].start):
            self._emit(batch, outcome, ctx)
            refused = batch.local + outcome.refused
            if refused and not job.get("first_refusal"):  # the inlet's words for the status record's error
                item, code, reason = min(refused, key=lambda r: r[0].number)
                job["first_refusal"] = scrub(f"{_record_ref(item)}: {code} {reason}")[:300]
            counts["records"] += batch.items
            counts["sent"] += len(batch.messages)
            counts["accepted"] += outcome.accepted
            counts["rejected"] += len(batch.local) + len(outcome.refused)
            counts["requests"] += outcome.requests
            counts["retries"] += outcome.retries
            job["done"].append([batch.start, batch.end, batch.end_number, batch.end_line])
        job["done"].sort()
        while job["done"] and job["done"][0][0] <= job["offset"]:
            _start, end, number, line = job["done"].pop(0)
            if end > job["offset"]:
                job["offset"], job["number"], job["line"] = end, number, line
        ctx.checkpoint(copy.deepcopy(job))

    def _emit(self, batch: _Batch, outcome: _Outcome, ctx: StepContext) -> None:
        # part id: the batch's start offset (a retried batch rewrites its part, whatever it refuses)
        self._emit_refused(batch.local + outcome.refused, ctx, batch.start)

    @staticmethod
    def _emit_refused(refused: list[tuple[Item, str, str]], ctx: StepContext, part: int | None = None) -> None:
        """Stage refused records: one CSV row each, and the record itself in the re-uploadable
        ``<name>.rejected.ndjson`` when it could be read. Part id: the first record's offset."""
        if not refused:
            return
        refused = sorted(refused, key=lambda r: r[0].number)
        rows = [RejectRow(_record_ref(item), scrub(reason), code) for item, code, reason in refused]
        lines = []
        for item, _code, _reason in refused:
            if item.raw is not None:
                text = item.raw.decode("utf-8")
            elif item.text is not None:  # as written (NaN, not an object, not JSON)
                text = item.text
            else:
                text = _dumps(item.record).decode("utf-8") if item.record is not None else None
            if text is not None:
                lines.append(text + "\n")
        stem = ctx.source.name.rsplit(".", 1)[0] or "upload"
        fmt = RawRejects(name=f"{stem}.rejected.ndjson", content_type="application/x-ndjson")
        part_id = f"{refused[0][0].start if part is None else part:015d}"
        ctx.emit_rejects(part_id, rows, "".join(lines).encode("utf-8"), fmt)

    def _send_batch(self, batch: _Batch, ctx: StepContext) -> _Outcome:
        """Send one batch (worker thread). Batch path: one request, split on 413, messages refused
        with a retryable statusCode resent, the rest refused. Single path: one request per message,
        in order; when one fails for good the error carries ``sent_prefix`` (how many went before
        and their outcome) so those are committed, not sent again."""
        if not self.single:
            return self._send_group(batch.messages, _Outcome(), ctx, batch)
        outcome = _Outcome()
        for index, pair in enumerate(batch.messages):
            try:
                self._send_group([pair], outcome, ctx)
            except VendorImportError as exc:
                if index:
                    exc.sent_prefix = (index, outcome)  # type: ignore[attr-defined]
                raise
        return outcome

    def _send_group(self, messages: list[tuple[Item, bytes]], outcome: _Outcome, ctx: StepContext,
                    batch: _Batch | None = None) -> _Outcome:
        single = self.single
        groups: deque[tuple[list[tuple[Item, bytes]], int]] = deque([(messages, 0)])
        while groups:
            group, attempt = groups.popleft()
            body = None
            if batch is not None and group is batch.messages:  # joined and paced by the main thread, once
                body, batch.body = batch.body, None
            responses = self._post(group, outcome, ctx, body, paced=body is not None, single=single)
            if responses is None:  # 413: the body is too large for the inlet
                if len(group) == 1:
                    outcome.refused.append((group[0][0], "413", "the inlet refused the message as too "
                                            "large (HTTP 413); make the record smaller"))
                else:
                    half = len(group) // 2
                    groups.appendleft((group[half:], attempt))
                    groups.appendleft((group[:half], attempt))
                continue
            self._check_shape(group, responses)
            again = []
            for (item, message), answer in zip(group, responses, strict=True):
                status = answer.get("statusCode") if isinstance(answer, dict) else None
                if status is None or (isinstance(status, int) and status < 300):
                    outcome.accepted += 1
                    continue
                text = str(answer.get("message") or f"refused with statusCode {status}")
                if _as_int(status) in _RETRYABLE and attempt < self.settings["max_retries"]:
                    again.append((item, message))
                else:
                    if _as_int(status) in _RETRYABLE:
                        text += f" (still refused after {attempt + 1} attempts; re-upload the rejects file)"
                    outcome.refused.append((item, str(status), text))
            if again:
                outcome.retries += 1
                time.sleep(self._backoff(attempt, None))
                groups.append((again, attempt + 1))
        return outcome

    def _check_shape(self, group: list[tuple[Item, bytes]], responses: list[Any]) -> None:
        """Raw records on /collection/batch (the opt-in raw_batch): an inlet that follows Adobe's
        documents refuses each bare record with "Message has unknown xdm format". When it refuses
        every message of a request that way, the shape is wrong, not the records: stop, and say
        which setting to change."""
        if self.settings["message_mode"] != "raw" or self.single or not responses:
            return
        texts = [str(a.get("message") or "") for a in responses
                 if isinstance(a, dict) and _as_int(a.get("statusCode")) == 400]
        if len(texts) == len(group) and all(_SHAPE_REFUSAL in t.lower() for t in texts):
            raise VendorRejectedError(
                f"AEP inlet {self.settings['inlet_id']} refused all {len(group)} raw records of a "
                f"/collection/batch request for their shape (400 {scrub(texts[0])[:200]}): Adobe documents "
                "/collection/batch for XDM envelopes only. Set raw_batch to false (the default: one record "
                "per request to /collection/{inlet}, as documented), or use an xdm connection with "
                "message_mode xdm")

    def _post(self, group: list[tuple[Item, bytes]], outcome: _Outcome,
              ctx: StepContext, body: bytes | None = None, paced: bool = False,
              single: bool = False) -> list[Any] | None:
        """POST one request; retry 429/5xx/no answer with exponential backoff; re-auth once on
        401/403. Returns the per-message responses, or None on 413. ``single``: the one message of
        ``group`` to /collection/{inlet}: 200 accepts it, 400 refuses it."""
        s = self.settings
        what = f"AEP inlet {s['inlet_id']} {'request' if single else 'batch request'}"
        url = self.single_url if single else self.inlet_url
        if body is None:
            body = group[0][1] if single else _body(group)
        reauthed = False
        attempt = 0
        while True:
            retry_after: str | None = None
            if not paced:
                self._pacer.acquire(len(group))
            paced = False  # a retry is paced again
            headers = {"Content-Type": "application/json", "x-adobe-flow-id": s["flow_id"]}
            token = None
            if s["authenticated"]:
                token = self._bearer()
                headers["Authorization"] = f"Bearer {token}"
                if s.get("ims_org_id"):
                    headers["x-gw-ims-org-id"] = s["ims_org_id"]
            outcome.requests += 1
            failure: VendorImportError
            try:
                if single and self._direct is not None:
                    resp = self._direct.post(body, headers, what)
                else:
                    resp = request(self.session, "POST", url, what=what, data=body, headers=headers)
            except VendorUnavailableError as exc:
                failure = exc
            else:
                code = resp.status_code
                if single and code == 400:  # the record is refused
                    return [{"statusCode": 400, "message": _problem(resp)}]
                if single and code in (200, 201, 202):
                    # documented: 200 {"inletId", "xactionId", "receivedTimeMs"}; without the
                    # xactionId the answer is unreadable: treated as not delivered, like a bad 207
                    xaction = _xaction_id(resp)
                    if xaction:
                        return [{"xactionId": xaction}]
                    failure = VendorUnavailableError(
                        f"{what}: HTTP {code} without the documented xactionId: {body_snippet(resp, 200)}")
                elif code in (200, 207):
                    try:
                        return self._responses(resp, len(group), what)
                    except VendorProtocolError as exc:  # unreadable: treated as not delivered
                        failure = VendorUnavailableError(exc.message)
                elif code == 413:
                    return None
                elif code in (401, 403):
                    if token is not None and not reauthed:
                        reauthed = True
                        self._reauth(token)
                        continue
                    hint = ("the token was refused again after a new one was fetched: check the IMS "
                            "credential's access to this sandbox" if s["authenticated"] else
                            "the inlet requires authentication: set authenticated to true and give ims "
                            "credentials")
                    raise VendorAuthError(f"{what}: HTTP {code} {body_snippet(resp, 200)}; {hint}")
                elif code == 429 or code >= 500:
                    failure = (VendorThrottledError if code == 429 else VendorUnavailableError)(
                        f"{what}: HTTP {code} {body_snippet(resp, 200)}")
                    retry_after = resp.headers.get("Retry-After")
                else:
                    if code == 404:
                        raise VendorRejectedError(f"{what}: HTTP 404: unknown inlet; check inlet_id "
                                                  f"({body_snippet(resp, 200)})")
                    if code == 400 and s["message_mode"] == "raw":  # the whole batch refused
                        raise VendorRejectedError(
                            f"{what}: HTTP 400 {body_snippet(resp, 200)}: the inlet refused the batch of raw "
                            "records; Adobe documents /collection/batch for XDM envelopes only. Set raw_batch "
                            "to false (the default: one record per request to /collection/{inlet})")
                    raise_for_status(resp, what)
                    raise VendorProtocolError(f"{what}: unexpected HTTP {code} {body_snippet(resp, 200)}")
            if attempt >= s["max_retries"]:
                raise type(failure)(f"{failure.message} (gave up after {attempt + 1} attempts)")
            delay = self._backoff(attempt, retry_after)
            if ctx.time_left() - delay < s["time_margin_seconds"] / 2:
                raise failure  # no time left in this run: the state machine retries the step
            outcome.retries += 1
            note_retry()  # counted for the status record even if this batch never completes
            time.sleep(delay)
            attempt += 1

    @staticmethod
    def _responses(resp: requests.Response, expected: int, what: str) -> list[Any]:
        body = json_body(resp, what)
        responses = body.get("responses") if isinstance(body, dict) else None
        if not isinstance(responses, list) or len(responses) != expected:
            got = len(responses) if isinstance(responses, list) else "no"
            raise VendorProtocolError(f"{what}: expected {expected} responses in the 207 body, got {got}")
        return responses

    def _backoff(self, attempt: int, retry_after: str | None) -> float:
        s = self.settings
        delay = min(s["retry_max_seconds"], s["retry_base_seconds"] * (2 ** min(attempt, 30)))  # bounded
        delay = delay / 2 + self._rng.random() * delay / 2  # jitter: workers do not retry in step
        if retry_after:
            try:
                delay = max(delay, min(float(retry_after), s["retry_max_seconds"]))
            except ValueError:
                pass
        return delay

    # -- auth ---------------------------------------------------------------------------------------
    def _bearer(self) -> str:
        if self.ims is None:
            raise SettingsError("missing setting ims: an IMS credential is needed for this call")
        return self.ims.token()

    def _reauth(self, failed_token: str) -> None:
        """Forget the token once, however many workers saw it refused at the same time."""
        assert self.ims is not None
        with _REAUTH_LOCK:
            if self.ims.token() == failed_token:
                self.ims.invalidate()

    def _platform_headers(self) -> dict[str, str]:
        s = self.settings
        ims = s.get("ims") or {}
        return {
            "Authorization": f"Bearer {self._bearer()}",
            "x-api-key": s.get("api_key") or ims.get("client_id") or "",
            "x-gw-ims-org-id": s.get("ims_org_id") or "",
            "x-sandbox-name": s["sandbox_name"],
            "Accept": "application/json",
        }

    # -- verification through the flow runs --------------------------------------------------------
    def _verify(self, job: dict[str, Any], ctx: StepContext) -> Progress:
        s = self.settings
        job = dict(job)
        job["verify_polls"] = job.get("verify_polls", 0) + 1
        what = "AEP flow runs request"
        url = f"{self.platform_url}/data/foundation/flowservice/runs"
        params = {"property": f"flowId=={s['flow_id']}"}
        resp = request(self.session, "GET", url, what=what, params=params, headers=self._platform_headers())
        if resp.status_code in (401, 403):
            self.ims.invalidate()  # type: ignore[union-attr]
            resp = request(self.session, "GET", url, what=what, params=params,
                           headers=self._platform_headers())
        raise_for_status(resp, what)
        body = json_body(resp, what)
        items = body.get("items") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise VendorProtocolError(f"{what}: expected an items list")
        ingested = failed = uncounted = 0
        for run in items:
            # a run without a readable time cannot be told to be ours: left out, like an older one
            if not isinstance(run, dict) or (vendor_count(run.get("updatedAt") or run.get("createdAt")) or 0) < \
                    job["started_ms"]:
                continue  # a run that ended before this import started
            summary = (run.get("metrics") or {}).get("recordSummary") or {}
            out, bad = vendor_count(summary.get("outputRecordCount")), vendor_count(summary.get("failedRecordCount"))
            if out is None or bad is None:
                uncounted += 1  # a count AEP did not give is unknown, never 0
                continue
            ingested += out
            failed += bad
        job["counts"]["ingested"], job["counts"]["failed_ingestion"] = ingested, failed
        if uncounted:
            job["counts"]["uncounted_runs"] = uncounted
        accepted = job["counts"]["accepted"]
        waited = time.time() - job.get("send_ended_ms", job["started_ms"]) / 1000
        if ingested + failed < accepted and waited < s["verify_timeout_seconds"]:
            return Progress(job=job, vendor_ref=s["flow_id"], counts=_public_counts(job),
                            message=f"{self._sent_message(job)}; the flow runs show {ingested:,} ingested "
                                    f"and {failed:,} failed so far")
        return self._final(job)

    # -- messages -----------------------------------------------------------------------------------
    def _final(self, job: dict[str, Any]) -> Progress:
        c = job["counts"]
        message = self._sent_message(job)
        state = FinalState.SUCCEEDED_WITH_REJECTS if c["rejected"] else FinalState.SUCCEEDED
        if "ingested" in c:
            message += (f"; the dataflow runs show {c['ingested']:,} records ingested and "
                        f"{c['failed_ingestion']:,} failed")
            if c.get("uncounted_runs"):
                message += (f" ({_plural(c['uncounted_runs'], 'run')} gave no record count: "
                            "those records are not counted)")
            if c["failed_ingestion"]:
                state = FinalState.SUCCEEDED_WITH_REJECTS
                message += " (failed records are in the dataset's failed batches, not in the rejects file)"
            elif c["ingested"] < c["accepted"]:
                message += " (the runs had not accounted for every record when verification stopped)"
        else:
            message += "; accepted by the inlet is not yet in the dataset: check the dataflow's runs"
        error_type = None
        if c["accepted"] == 0 and c["records"]:
            state, error_type = FinalState.FAILED, "VendorRefusedAll"
            message = (f"the inlet accepted none of the {c['records']:,} records (first: "
                       f"{job.get('first_refusal') or 'no reason given'}); see the rejects file")
        return Progress(job=job, done=True, state=state, vendor_ref=self.settings["flow_id"],
                        counts=_public_counts(job), message=message, error_type=error_type)

    def _sent_message(self, job: dict[str, Any]) -> str:
        c = job["counts"]
        local = c["records"] - c["sent"]
        text = (f"sent {c['sent']:,} of {c['records']:,} records to AEP inlet {self.settings['inlet_id']} "
                f"in {_plural(c['requests'], 'request')}: {c['accepted']:,} accepted, "
                f"{c['rejected'] - local:,} refused by the inlet")
        if local:
            text += f", {local:,} refused locally"
        return text

    def _progress_message(self, job: dict[str, Any], ctx: StepContext) -> str:
        share = job["offset"] / ctx.source.size if ctx.source.size else 1.0
        c = job["counts"]
        return (f"sending: {share:.0%} of the file done after {_plural(job['steps'], 'step')}; "
                f"{c['sent']:,} records "
                f"sent so far, {c['accepted']:,} accepted, {c['rejected']:,} refused")


_REAUTH_LOCK = threading.Lock()


def _body(group: list[tuple[Item, bytes]]) -> bytes:
    return b'{"messages":[' + b",".join(m for _, m in group) + b"]}"


def _xaction_id(resp: requests.Response) -> str | None:
    try:
        body = resp.json()
    except ValueError:
        return None
    value = body.get("xactionId") if isinstance(body, dict) else None
    return str(value) if value else None


def _problem(resp: requests.Response) -> str:
    """The reason of a refused single message: the problem body's report.message (the shape of
    the inlet's documented 401), else its message / detail / title, else the body."""
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        report = body.get("report") if isinstance(body.get("report"), dict) else {}
        for text in (report.get("message"), body.get("message"), body.get("detail"), body.get("title")):
            if text:
                return scrub(str(text))[:500]
    return f"refused with HTTP {resp.status_code} {body_snippet(resp, 200)}".strip()


def _prefix(batch: _Batch, sent: int, outcome: _Outcome) -> tuple[_Batch, _Outcome]:
    """The part of a single-path batch that was sent before a request failed for good: its first
    ``sent`` messages and the records refused locally among them (a contiguous range)."""
    cut = batch.messages[sent][0]
    messages = batch.messages[:sent]
    local = [entry for entry in batch.local if entry[0].number < cut.number]
    last = max([item for item, _ in messages] + [entry[0] for entry in local], key=lambda item: item.number)
    part = _Batch(batch.start, last.end, last.number, last.next_line, messages=messages, local=local,
                  items=len(messages) + len(local))
    return part, outcome


def _record_ref(item: Item) -> str:
    return f"record {item.number} (line {item.line})"


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def _as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _against_done(items, done: list):
    """Each item with the range of ``job["done"]`` (``[start, end, number, line]``: a batch completed
    ahead of the committed offset) that holds it, else None: such items are never sent or listed again."""
    ahead = deque(sorted(tuple(d) for d in done))
    for item in items:
        while ahead and item.start >= ahead[0][1]:
            ahead.popleft()
        yield item, ahead[0] if ahead and item.start >= ahead[0][0] else None


def _settled_message(not_sent: int, complete: bool, number: int, problem: str) -> str:
    """What the status record says of the records a failed import did not send."""
    text = (f"{_plural(not_sent, 'record')} not sent (NOT_SENT in the rejects file: upload it again once "
            f"the cause is fixed)") if not_sent else ""
    if not complete:
        after = f"the records after record {number:,} are not listed"
        text = f"{text}; {after}" if text else after
        text += f" ({problem})" if problem else " (no time left to read the rest of the file)"
    return text


def _public_counts(job: dict[str, Any]) -> dict[str, int]:
    return dict(job["counts"])


def _format_hint(fmt: str) -> str:
    return {
        "ndjson": "expected one JSON object per line",
        "json": "expected a JSON array of objects, e.g. [{\"id\": 1}]",
        "csv": "expected a header line and at least one data row",
    }[fmt]
