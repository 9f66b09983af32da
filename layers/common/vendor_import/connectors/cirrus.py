"""Cirrus Shield DataAction connector (seed 004, VENDORS.md section 5).

An upload is an XML ``<Data>`` file of records of one object type. It is sent to
``POST {base}/RestApi/DataAction/{object}?authToken&action&matchingFieldName&useExternalId``
in batches; the poll loop is the cursor:

* ``validate`` streams the whole file (lxml iterparse, entities never expanded) and refuses
  what cannot be imported; records missing the matching field are would-be rejects.
* ``submit`` checks the head of the file, resolves the options, signs in, and returns
  ``next_wait_seconds=0``: nothing is sent yet.
* ``poll`` opens the file at the saved byte offset and sends batches while the Lambda has
  time left, up to ``concurrency`` DataAction calls in flight (worker threads over one kept-alive
  session), paced by ``self.pacer.acquire(1)`` per call (a local token bucket under
  ``max_calls_per_second``, or the vendor guard's limiter shared by the target). The main thread
  reads, parses and serializes; the workers post and read the answers.

Exactly-once sending: before a batch is posted the job is checkpointed with that batch marked
in ``inflight`` (a list: one mark per batch in flight, saved together when several start at
once). When its answer comes, its rejects are staged (``ctx.emit_rejects``), its range joins
``done`` and the committed cursor (``offset``, ``next_record``) moves over the contiguous done
prefix, as AEP's cursor does; a range answered ahead of an earlier batch waits in ``done`` and a
retried step skips it. If the step dies before an answer is saved, the retried step finds the
mark and, rather than sending the batch again, reports its records as UNCONFIRMED rejects (the
user checks them and re-uploads the rejects file); so does every other mark left in flight.
``resend_unconfirmed`` re-sends instead, for upsert and update only (idempotent). When the vendor
answered an error (401, 429, 5xx, 400 without results) or the connection was never opened, the
batch is known not applied: its mark is cleared and the retry sends it normally. A failed batch
stops new ones; the batches still in flight are awaited and saved before the error is raised.

Body encoding: ``application/x-www-form-urlencoded`` with ``"=" + quote_plus(xml)``, an
unnamed field (ASP.NET Web API ``[FromBody] string``), so a datetime's ``+`` survives.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from itertools import islice
from typing import Any, BinaryIO
from urllib.parse import quote

import requests
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError

from .. import http
from ..errors import (
    InputError,
    SettingsError,
    VendorAuthError,
    VendorImportError,
    VendorOutcomeUnknownError,
    VendorProtocolError,
    VendorRejectedError,
    VendorThrottledError,
    VendorUnavailableError,
)
from ..logic.record_count import RecordTally
from ..model import CODE_NOT_SENT, FinalState, Progress, RawRejects, RejectRow
from ..scrub import register_secret, scrub
from ..settings import Field, validate_fields
from . import cirrus_xml as cx
from .base import Connector, StepContext
from .call_pacing import TokenBucket

ACTIONS = ("insert", "update", "upsert", "delete")
IDEMPOTENT_ACTIONS = ("upsert", "update")
FORM = "application/x-www-form-urlencoded"
_IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")

CODE_REFUSED = "REFUSED"
_SETTLE_PART_RECORDS = 500  # records per rejects part when a failed import lists the rest of its file
CODE_UNCONFIRMED = "UNCONFIRMED"
CODE_MISSING_FIELD = "MISSING_MATCHING_FIELD"
UNCONFIRMED_REASON = (
    "outcome unknown: the import stopped after sending this record and before saving Cirrus "
    "Shield's answer, so it was not sent again; check it in Cirrus Shield, then re-upload this "
    "file if it is missing"
)

# Per-object defaults ("objects": {"Account": {...}}): every field optional, they layer.
OBJECT_FIELDS = (
    Field("action", str, choices=ACTIONS, doc="insert, update, upsert or delete"),
    Field("matching_field", str, doc="the field Cirrus Shield treats as unique (matchingFieldName)"),
    Field("use_external_id", bool, doc="lookup fields carry the parent's External Id (true) or Id"),
)
DEFAULT_FIELDS = (
    # no built-in action or matching field: the DataAction page requires both on every call and
    # documents no default (an upload that names neither, with no settings default, is refused)
    Field("action", str, choices=ACTIONS, doc="action when no option/object says"),
    Field("matching_field", str, doc="matchingFieldName when no option/object says"),
    Field("use_external_id", bool, default=True, doc="useExternalId when no option/object says"),
)


class CirrusConnector(Connector):
    vendor = "cirrus"
    settings_fields = (
        Field("username", str, required=True, doc="Cirrus Shield user the import signs in as"),
        Field("password", str, required=True, secret=True, doc="that user's password"),
        Field("batch_size", int, default=10, minimum=1,
              doc="records per DataAction call: 10, as the published C# sample sends (no limit is "
                  "documented; larger is an opt-in)"),
        Field("concurrency", int, default=1, minimum=1,
              doc="DataAction calls in flight at a time (at most 16): 1, as every published client "
                  "sends; Cirrus Shield documents no limit, so more is an opt-in"),
        Field("max_calls_per_second", (int, float), default=0, minimum=0,
              doc="pace DataAction calls under this rate (0: no pacing; Cirrus Shield documents no rate)"),
        Field("safety_margin_seconds", (int, float), default=30, minimum=0,
              doc="a poll stops sending when the Lambda has less time left than this"),
        Field("body_field", str, default="",
              doc="form field name of the XML: '' sends '=<xml>' (ASP.NET [FromBody]); or xmlData"),
        Field("accept", str, default="application/xml",
              doc="Accept header of DataAction calls (application/json asks for JSON answers)"),
        Field("token_ttl_seconds", int, default=3600, minimum=0,
              doc="sign in again after this many seconds (0: only when a call answers 401)"),
        Field("max_record_bytes", int, default=1_000_000, minimum=1024,
              doc="largest single record accepted (bytes)"),
        Field("resend_unconfirmed", bool, default=False,
              doc="re-send a batch whose answer was lost (upsert/update only) instead of "
                  "reporting its records as UNCONFIRMED"),
        Field("defaults", dict, default=None, fields=DEFAULT_FIELDS,
              doc="action, matching_field, use_external_id for objects not listed in objects"),
        Field("objects", dict, default=None,
              doc='per-object defaults, e.g. {"Account": {"action": "upsert", "matching_field": "Name"}}'),
    )
    option_fields = (
        Field("object", str, doc="Cirrus Shield object name (default: the record element name)"),
        Field("action", str, choices=ACTIONS, doc="insert, update, upsert or delete"),
        Field("matching_field", str, doc="matchingFieldName"),
        Field("use_external_id", bool, doc="useExternalId (true/false)"),
    )
    max_file_bytes = None  # streamed: memory does not depend on the file size

    def __init__(self, settings: dict[str, Any], session: requests.Session | None = None):
        if int(settings.get("concurrency") or 1) > MAX_CONCURRENCY:  # the job state lists each batch in flight
            raise SettingsError(f"setting concurrency must be at most {MAX_CONCURRENCY}")
        # one kept-alive connection per call in flight
        pool = max(10, int(settings.get("concurrency") or 1))
        super().__init__(settings, session=session or http.new_session(settings, pool_size=pool))
        # the pacing of DataAction calls: acquire(n calls); the vendor guard may put a limiter
        # shared by every import to this target in its place
        self.pacer = TokenBucket(settings.get("max_calls_per_second"))
        self._token_lock = threading.Lock()  # workers share the token (one sign-in at a time)
        objects = settings.get("objects") or {}
        if not isinstance(objects, dict):
            raise SettingsError("setting objects must be an object: {\"Account\": {...}}")
        self.objects = {name: validate_fields(value, OBJECT_FIELDS, f"objects.{name}.")
                        for name, value in objects.items()}
        self.defaults = settings.get("defaults") or validate_fields({}, DEFAULT_FIELDS, "defaults.")
        self._token_value: str | None = None
        self._token_at = 0.0

    # ============================================================================================
    # validate / submit / poll
    # ============================================================================================
    def validate(self, ctx: StepContext) -> list[RejectRow]:
        """Local checks only, no vendor call. The whole file is streamed twice, with flat
        memory: lxml iterparse (well-formedness, the matching field of each record), then the
        byte reader the import itself uses (root, record boundaries and sizes, one type)."""
        head, first = self._read_head(ctx)
        params = self._resolve(ctx.options, first.tag)
        with ctx.source.open(0) as stream:
            summary = cx.check_document(stream, first.tag, params["matching_field"])
        scanned = 0
        field_name = params["matching_field"]
        reason = f"the matching field <{field_name}> is missing or empty"
        job = {**params, "record_tag": first.tag}
        pending: list[cx.RecordChunk] = []
        with ctx.source.open(head.body_offset) as stream:
            reader = cx.RecordReader(stream, offset=head.body_offset,
                                     max_record_bytes=self.settings["max_record_bytes"])
            for chunk in reader.records(head):
                _check_same_type(chunk, first.tag)
                scanned += 1
                if ctx.dry_run:
                    pending.append(chunk)
                    if len(pending) >= int(self.settings["batch_size"]):
                        self._emit_would_be(head, pending, job, reason, ctx)
                        pending = []
        if pending:
            self._emit_would_be(head, pending, job, reason, ctx)
        if scanned != summary.records:  # both readers must agree, or the cursor would be wrong
            raise InputError(f"the file's record structure is ambiguous ({summary.records} records "
                             f"parsed, {scanned} delimited): simplify the markup between records")
        rows = [RejectRow(str(n), reason, CODE_MISSING_FIELD) for n in summary.missing_matching_field]
        if summary.missing_total > len(rows):
            rows.append(RejectRow("...", f"and {summary.missing_total - len(rows)} more records "
                                         f"without <{field_name}>", CODE_MISSING_FIELD))
        return rows

    def _emit_would_be(self, head: cx.Head, batch: list[cx.RecordChunk], job: dict[str, Any], reason: str,
                       ctx: StepContext) -> None:
        """Dry run: the records of one would-be batch that Cirrus Shield would refuse for a missing
        matching field, staged as the real run stages a batch's rejects (same part id, record
        label and re-uploadable XML with <ErrorMessage>)."""
        rows, raw = [], []
        for chunk, element in zip(batch, self._record_elements(head, batch, job), strict=True):
            if not cx.field_value(element, job["matching_field"]):
                rows.append(RejectRow(self._record_label(chunk, element, job), reason, CODE_MISSING_FIELD))
                raw.append(cx.reject_xml(element, reason))
        if rows:
            ctx.emit_rejects(_part_id(batch[0].number), rows, _raw_part(raw), self._raw_format(ctx))

    def submit(self, ctx: StepContext) -> Progress:
        head, first = self._read_head(ctx)
        params = self._resolve(ctx.options, first.tag)
        self._token()  # wrong credentials fail the import now, before any record is sent
        job = {
            **params,
            "record_tag": first.tag,
            "offset": head.body_offset,  # where the next record is searched from
            "next_record": 1,
            "inflight": [],  # marks of the batches posted and not yet answered
            "done": [],  # [start, end, first, last] of batches answered ahead of the cursor
            "counts": {"records": 0, "sent": 0, "accepted": 0, "rejected": 0, "batches": 0},
        }
        return Progress(
            job=job, next_wait_seconds=0, counts=dict(job["counts"]),
            message=f"Sending {first.tag} records to Cirrus Shield ({self._describe(job)}).",
        )

    def poll(self, job: dict[str, Any], ctx: StepContext) -> Progress:
        job = json.loads(json.dumps(job))  # our own copy: the caller's stays as it was
        job["inflight"] = _marks(job)
        job.setdefault("done", [])
        head = self._head_only(ctx)
        force_emit: set[int] = set()
        if job["inflight"]:
            force_emit = self._settle_inflight(job, ctx, head)
        # a batch may take up to timeout_seconds: never start one that could outlive the run
        margin = max(float(self.settings["safety_margin_seconds"]), float(self.settings["timeout_seconds"]))
        concurrency = int(self.settings["concurrency"])
        pending: dict[Future, _Batch] = {}
        started, exhausted, stopped = 0, False, False
        error: VendorImportError | None = None
        dirty = False  # batches completed since the last checkpoint
        with ctx.source.open(job["offset"]) as stream, _executor(concurrency) as pool:
            batches = self._batches(stream, head, job)
            while True:
                new: list[_Batch] = []
                # the window: concurrency batches in flight, and the completed ranges waiting for an
                # earlier batch stay few (they travel in the job state)
                while not (exhausted or stopped or error) and len(pending) + len(new) < concurrency \
                        and len(job["done"]) + len(pending) + len(new) < 2 * concurrency:
                    # always make progress: at least one batch per poll, then only with time left
                    if started and ctx.time_left() <= margin:
                        stopped = True
                        break
                    try:
                        chunks = next(batches, None)
                        if chunks is None:
                            exhausted = True
                            break
                        new.append(self._prepare(head, chunks, job))
                    except VendorImportError as exc:  # a bad record: settle what is in flight first
                        error = exc
                        break
                    started += 1
                if new:  # exactly once: every batch is marked in flight in the checkpoint before it is sent
                    job["inflight"].extend(batch.mark for batch in new)
                if new or dirty:
                    ctx.checkpoint(job)
                    dirty = False
                for batch in new:
                    self.pacer.acquire(1)
                    pending[pool.submit(self._post_batch, job, batch.body, len(batch.chunks), batch.what)] = batch
                if not pending:
                    break
                finished, _ = wait(list(pending), return_when=FIRST_COMPLETED)
                for future in sorted(finished, key=lambda f: pending[f].first):
                    batch = pending.pop(future)
                    try:
                        results = future.result()
                    except VendorImportError as exc:
                        error = error or self._failed(job, batch, exc)
                        dirty = True
                        continue
                    self._complete(job, ctx, head, batch, results, batch.first in force_emit)
                    dirty = True
            if dirty:
                ctx.checkpoint(job)
        if error is not None:
            raise error
        if exhausted and not job["inflight"] and not job["done"]:
            return self._finish(job)
        return self._progress(job)

    # ============================================================================================
    # Batches
    # ============================================================================================
    def _batches(self, stream: BinaryIO, head: cx.Head, job: dict[str, Any]) -> Iterator[list[cx.RecordChunk]]:
        """Runs of up to batch_size records from the committed cursor, skipping (and cut at) the
        ranges completed ahead of it (job["done"]), so those are never sent again."""
        reader = cx.RecordReader(stream, offset=job["offset"], max_record_bytes=self.settings["max_record_bytes"])
        batch_size = int(self.settings["batch_size"])
        batch: list[cx.RecordChunk] = []
        for chunk, completed in _against_done(reader.records(head, job["next_record"]), job["done"]):
            if completed:  # completed in an earlier step
                if batch:
                    yield batch
                    batch = []
                continue
            batch.append(chunk)
            if len(batch) >= batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    def _prepare(self, head: cx.Head, chunks: list[cx.RecordChunk], job: dict[str, Any]) -> _Batch:
        """The batch's payload: the records' bytes as written when they stand alone (parsed only if
        refused, for the rejects), else parsed and serialized (namespaces, re-uploaded result fields)."""
        for chunk in chunks:
            _check_same_type(chunk, job["record_tag"])
        first, last = chunks[0].number, chunks[-1].number
        what = f"Cirrus Shield {job['action']} of {job['object']} records {first}-{last}"
        raw = cx.raw_payload(head, chunks)
        if raw is not None:
            return _Batch(chunks, None, raw, what)
        elements = self._record_elements(head, chunks, job)
        return _Batch(chunks, elements, cx.payload_xml(elements), what)

    def _failed(self, job: dict[str, Any], batch: _Batch, exc: VendorImportError) -> VendorImportError:
        """The error a failed batch raises once the batches still in flight are settled. A batch the
        vendor did not apply loses its mark (the retry sends it); a lost answer keeps it (the retry
        reports it UNCONFIRMED)."""
        if exc.detail.get("outcome") != "unknown":
            job["inflight"] = [m for m in job["inflight"] if m["first"] != batch.first]
            return exc
        if not exc.transient:
            # an answer that cannot be read is a lost answer: the retried step reports the batch
            # UNCONFIRMED and goes on with the rest of the file (failing here would leave every later
            # record unsent)
            return VendorOutcomeUnknownError(f"{exc.message}; the batch may have reached Cirrus Shield",
                                          detail=exc.detail)
        return exc

    def _complete(self, job: dict[str, Any], ctx: StepContext, head: cx.Head, batch: _Batch,
                  results: list[cx.RecordResult], force_emit: bool) -> None:
        """Stage a batch's rejects, count it and move it from in flight to done (no checkpoint here:
        the caller saves once for the batches completed together)."""
        rows: list[RejectRow] = []
        raw: list[str] = []
        for index, (chunk, result) in enumerate(zip(batch.chunks, results, strict=True)):
            if not result.success:
                element = batch.elements[index] if batch.elements else self._record_element(head, chunk, job)
                reason = result.error or "Cirrus Shield refused the record (no ErrorMessage)"
                rows.append(RejectRow(self._record_label(chunk, element, job), reason, CODE_REFUSED))
                raw.append(cx.reject_xml(element, reason))
        # the vendor's words for a status record's error: the first refusal in the file (batches
        # complete out of order)
        if rows and batch.first < job.get("first_refusal_at", batch.first + 1):
            job["first_refusal"] = f"record {rows[0].record}: {rows[0].reason}"[:300]
            job["first_refusal_at"] = batch.first
        if rows or force_emit:
            ctx.emit_rejects(_part_id(batch.first), rows, _raw_part(raw), self._raw_format(ctx))
        self._advance(job, batch.chunks, accepted=len(batch.chunks) - len(rows), rejected=len(rows))

    def _settle_inflight(self, job: dict[str, Any], ctx: StepContext, head: cx.Head) -> set[int]:
        """A previous attempt posted these batches and stopped before saving their answers. Report
        their records as UNCONFIRMED (nothing is sent twice) or, if allowed, send them again
        (returns the first record of each batch to send again: its rejects part is rewritten)."""
        marks = sorted(job["inflight"], key=lambda m: m["first"])
        if self.settings["resend_unconfirmed"] and job["action"] in IDEMPOTENT_ACTIONS:
            job["inflight"] = []
            return {int(m["first"]) for m in marks}
        self._report_unconfirmed(job, ctx, head)
        return set()

    def _report_unconfirmed(self, job: dict[str, Any], ctx: StepContext, head: cx.Head) -> None:
        """Every batch marked in flight becomes UNCONFIRMED rejects, read again at its own start."""
        for mark in sorted(job["inflight"], key=lambda m: m["first"]):
            with ctx.source.open(mark["start"]) as stream:
                reader = cx.RecordReader(stream, offset=mark["start"],
                                         max_record_bytes=self.settings["max_record_bytes"])
                batch = list(islice(reader.records(head, mark["first"]), int(mark["count"])))
            if not batch or batch[0].number != mark["first"] or len(batch) != mark["count"] \
                    or batch[-1].end != mark["end"]:
                raise VendorProtocolError("the saved cursor does not match the file: the upload changed "
                                          "during the import; upload it again as a new file")
            rows, raw = [], []
            for chunk in batch:
                element = self._record_element(head, chunk, job)
                rows.append(RejectRow(self._record_label(chunk, element, job), UNCONFIRMED_REASON,
                                      CODE_UNCONFIRMED))
                raw.append(cx.reject_xml(element, UNCONFIRMED_REASON))
            ctx.emit_rejects(_part_id(batch[0].number), rows, _raw_part(raw), self._raw_format(ctx))
            self._advance(job, batch, accepted=0, rejected=len(batch))
            job["counts"]["unconfirmed"] = job["counts"].get("unconfirmed", 0) + len(batch)
        ctx.checkpoint(job)

    def settle(self, job: dict[str, Any], ctx: StepContext, reason: str) -> Progress:
        """The rest of the file after a failure for good: the batches still marked in flight are
        UNCONFIRMED (their answer was lost: never sent again), then each record after the committed
        cursor that no batch completed goes to the rejects, NOT_SENT with ``reason``, in the
        re-uploadable XML. No request is sent. Part ids are the first record numbers, so a retried
        settle rewrites its parts."""
        job = json.loads(json.dumps(job))
        job["inflight"] = _marks(job)
        job.setdefault("done", [])
        head = self._head_only(ctx)
        self._report_unconfirmed(job, ctx, head)
        counts = job["counts"]
        counts.setdefault("not_sent", 0)
        last = int(job["next_record"]) - 1
        rows: list[RejectRow] = []
        raw: list[str] = []
        first = 0
        complete, problem = True, ""

        def emit() -> None:
            if rows:
                ctx.emit_rejects(_part_id(first), rows, _raw_part(raw), self._raw_format(ctx))
                rows.clear()
                raw.clear()

        try:
            with ctx.source.open(job["offset"]) as stream:
                reader = cx.RecordReader(stream, offset=job["offset"],
                                         max_record_bytes=self.settings["max_record_bytes"])
                for chunk, completed in _against_done(reader.records(head, job["next_record"]), job["done"]):
                    if completed:
                        last = chunk.number
                        continue  # completed by an earlier step
                    element = self._record_element(head, chunk, job)
                    first = first if rows else chunk.number
                    rows.append(RejectRow(self._record_label(chunk, element, job), reason, CODE_NOT_SENT))
                    raw.append(cx.reject_xml(element, reason))
                    counts["not_sent"] += 1
                    last = chunk.number
                    if len(rows) >= _SETTLE_PART_RECORDS:
                        emit()
                        if ctx.time_left() < float(self.settings["safety_margin_seconds"]):
                            complete = False
                            break
        except VendorImportError as exc:  # a record that cannot be read: the rest is not listed
            complete, problem = False, exc.message
        emit()
        job["done"], job["next_record"] = [], last + 1
        ctx.checkpoint(job)
        message = (f"{counts['not_sent']} {job['object']} records not sent (NOT_SENT in the rejects file: "
                   f"upload it again once the cause is fixed)") if counts["not_sent"] else ""
        if not complete:
            after = f"the records after record {last} are not listed ({problem or 'no time left'})"
            message = f"{message}; {after}" if message else after
        return Progress(job=job, done=complete, counts=dict(counts), message=message)

    @staticmethod
    def _advance(job: dict[str, Any], batch: list[cx.RecordChunk], *, accepted: int, rejected: int) -> None:
        """Count a finished batch, list its range as done and move the committed cursor over the
        contiguous done prefix (the shape of AEP's cursor: ranges completed ahead wait in done)."""
        counts = job["counts"]
        counts["records"] += len(batch)
        counts["sent"] += len(batch)
        counts["accepted"] += accepted
        counts["rejected"] += rejected
        counts["batches"] += 1
        first = batch[0].number
        job["inflight"] = [m for m in job["inflight"] if m["first"] != first]
        job["done"].append([batch[0].start, batch[-1].end, first, batch[-1].number])
        job["done"].sort(key=lambda d: d[2])
        while job["done"] and job["done"][0][2] == job["next_record"]:
            _start, end, _first, last = job["done"].pop(0)
            job["offset"], job["next_record"] = end, last + 1

    @staticmethod
    def _record_elements(head: cx.Head, batch: list[cx.RecordChunk], job: dict[str, Any]) -> list:
        for chunk in batch:
            _check_same_type(chunk, job["record_tag"])
        elements = cx.parse_records(head, batch)
        # a re-uploaded rejects file carries <ErrorMessage> (and maybe <Success>): never send them
        return [cx.drop_result_fields(element) if cx.has_result_fields(chunk.data) else element
                for chunk, element in zip(batch, elements, strict=True)]

    @staticmethod
    def _record_element(head: cx.Head, chunk: cx.RecordChunk, job: dict[str, Any]):
        _check_same_type(chunk, job["record_tag"])
        element = cx.parse_record(head, chunk)
        # a re-uploaded rejects file carries <ErrorMessage> (and maybe <Success>): never send them
        return cx.drop_result_fields(element) if cx.has_result_fields(chunk.data) else element

    @staticmethod
    def _record_label(chunk: cx.RecordChunk, element, job: dict[str, Any]) -> str:
        value = cx.field_value(element, job["matching_field"])
        return f"{chunk.number} {job['matching_field']}={value}" if value else str(chunk.number)

    def _raw_format(self, ctx: StepContext) -> RawRejects:
        stem = re.sub(r"\.xml$", "", ctx.source.name or "upload", flags=re.I)
        return RawRejects(f"{stem}.rejects.xml", "application/xml", header="<Data>", footer="</Data>")

    # ============================================================================================
    # Progress
    # ============================================================================================
    def _progress(self, job: dict[str, Any]) -> Progress:
        counts = job["counts"]
        return Progress(job=job, next_wait_seconds=0, counts=dict(counts),
                        message=f"{counts['sent']} {job['object']} records sent so far "
                                f"({counts['accepted']} accepted, {counts['rejected']} refused).")

    def _finish(self, job: dict[str, Any]) -> Progress:
        counts = job["counts"]
        total, accepted, rejected = counts["records"], counts["accepted"], counts["rejected"]
        obj = job["object"]
        if rejected == 0:
            state = FinalState.SUCCEEDED
            message = f"Cirrus Shield accepted all {total} {obj} records ({self._describe(job)})."
        elif accepted == 0:
            state = FinalState.FAILED
            first = job.get("first_refusal") or "no ErrorMessage"
            message = (f"Cirrus Shield refused all {total} {obj} records (first: {first}): the rejects "
                       f"file holds each with its ErrorMessage; fix them and drop it back in the inbox.")
        else:
            state = FinalState.SUCCEEDED_WITH_REJECTS
            message = (f"Cirrus Shield accepted {accepted} of {total} {obj} records and refused "
                       f"{rejected}: fix them in the rejects file and drop it back in the inbox.")
        if counts.get("unconfirmed"):
            message += f" {counts['unconfirmed']} records have an unknown outcome (UNCONFIRMED)."
        return Progress(job=job, done=True, state=state, counts=dict(counts), message=message,
                        error_type="VendorRefusedAll" if state is FinalState.FAILED else None)

    @staticmethod
    def record_tally(job: dict[str, Any]) -> RecordTally:
        """read: the reader's number of the last record passed; UNCONFIRMED records are counted
        in ``rejected`` too (they are in the rejects file)."""
        c = job["counts"]
        unconfirmed = int(c.get("unconfirmed", 0))
        return RecordTally(read=int(job["next_record"]) - 1, accepted=c["accepted"],
                           refused_by_vendor=c["rejected"] - unconfirmed, refused_locally=0,
                           unconfirmed=unconfirmed, not_sent=int(c.get("not_sent", 0)))

    @staticmethod
    def _describe(job: dict[str, Any]) -> str:
        return (f"{job['action']} on {job['object']} matching {job['matching_field']}, "
                f"useExternalId={'true' if job['use_external_id'] else 'false'}")

    # ============================================================================================
    # Reading the head, resolving options
    # ============================================================================================
    def _head_only(self, ctx: StepContext) -> cx.Head:
        with ctx.source.open(0) as stream:
            return cx.RecordReader(stream, max_record_bytes=self.settings["max_record_bytes"]).read_head()

    def _read_head(self, ctx: StepContext) -> tuple[cx.Head, cx.RecordChunk]:
        """The root and the first record (parsed: a broken first record fails here)."""
        if ctx.source.size == 0:
            raise InputError("the file is empty (0 bytes): upload an XML <Data> file of records")
        with ctx.source.open(0) as stream:
            reader = cx.RecordReader(stream, max_record_bytes=self.settings["max_record_bytes"])
            head = reader.read_head()
            first = next(reader.records(head), None)
        if first is None:
            raise InputError("the file holds no record: <Data> is empty")
        cx.parse_record(head, first)
        return head, first

    def _resolve(self, options: dict[str, Any] | None, record_tag: str) -> dict[str, Any]:
        """object, action, matching_field, use_external_id: the option (key segment, metadata,
        console), else the settings' objects.<object>, else the settings' defaults."""
        from . import validate_options

        known = {f.name for f in self.option_fields}
        given = {k: v for k, v in (options or {}).items() if k in known and v not in (None, "")}
        if isinstance(given.get("action"), str):
            given["action"] = given["action"].strip().lower()
        opts = validate_options(self.vendor, given)
        obj = (opts.get("object") or record_tag.rsplit(":", 1)[-1]).strip()
        if not _IDENTIFIER.match(obj):
            raise InputError(f"object name {obj!r} is not a Cirrus Shield object name: use letters, "
                             f"digits and _ (option object=...)")
        per_object = self.objects.get(obj) or next(
            (v for k, v in self.objects.items() if k.lower() == obj.lower()), {})

        def pick(name: str) -> Any:
            for source in (opts, per_object, self.defaults):
                if source.get(name) is not None:
                    return source[name]
            return None

        params = {"object": obj, "action": pick("action"), "matching_field": pick("matching_field"),
                  "use_external_id": bool(pick("use_external_id"))}
        for name, example in (("action", "action=upsert"), ("matching_field", "matching_field=Name")):
            if params[name] is None:
                raise InputError(
                    f"no {name} for {obj} records: Cirrus Shield's DataAction needs it on every call and has "
                    f"no default; give it in the key (inbox/cirrus/{example}/...), as S3 metadata, or in the "
                    f"settings (objects.{obj}.{name} or defaults.{name})")
        if not params["matching_field"] or not _IDENTIFIER.match(params["matching_field"]):
            raise InputError(f"matching field {params['matching_field']!r} is not a field name: give "
                             f"it as option matching_field=<Field> or in the settings' objects.{obj}")
        return params

    # ============================================================================================
    # HTTP: token and DataAction
    # ============================================================================================
    def _token(self) -> str:
        ttl = int(self.settings["token_ttl_seconds"])
        with self._token_lock:
            if self._token_value and (ttl == 0 or time.monotonic() - self._token_at < ttl):
                return self._token_value
            return self._sign_in()

    def _drop_token(self, used: str) -> None:
        with self._token_lock:
            if self._token_value == used:  # not already renewed by another worker
                self._token_value = None

    def _sign_in(self) -> str:
        what = "Cirrus Shield sign-in"
        self._token_value = None
        resp = http.request(
            self.session, "GET", f"{self.settings['base_url']}/RestApi/AuthToken",
            params={"Username": self.settings["username"], "password": self.settings["password"]},
            headers={"Accept": "application/json"}, what=what,
        )
        if resp.status_code == 404:
            raise VendorAuthError(f"{what}: Cirrus Shield does not know the user in the settings "
                                  f"(HTTP 404): check the username setting")
        http.raise_for_status(resp, what)
        token = resp.text.strip().strip('"').strip()
        if not token or any(c in token for c in "<>{} \n"):
            raise VendorProtocolError(f"{what}: expected a token string, got: {http.body_snippet(resp, 80)}")
        register_secret(token)
        self._token_value, self._token_at = token, time.monotonic()
        return token

    def _post_batch(self, job: dict[str, Any], xml: str | bytes, count: int, what: str) -> list[cx.RecordResult]:
        url = f"{self.settings['base_url']}/RestApi/DataAction/{quote(job['object'], safe='')}"
        quoted = cx.form_quote_bytes(xml) if isinstance(xml, bytes) else cx.form_quote(xml).encode("ascii")
        body = self.settings["body_field"].encode("ascii") + b"=" + quoted
        headers = {"Content-Type": FORM, "Accept": self.settings["accept"]}
        for attempt in (1, 2):
            token = self._token()
            params = {"authToken": token, "action": job["action"],
                      "matchingFieldName": job["matching_field"],
                      "useExternalId": "true" if job["use_external_id"] else "false"}
            try:
                resp = http.request(self.session, "POST", url, params=params, data=body,
                                    headers=headers, what=what)
            except VendorUnavailableError as exc:
                if _never_sent(exc.__context__):
                    raise
                raise VendorOutcomeUnknownError(
                    f"{exc.message}; the batch may have reached Cirrus Shield", detail={"outcome": "unknown"}
                ) from None
            if resp.status_code == 401 and attempt == 1:
                self._drop_token(token)  # expired or revoked: sign in once more
                continue
            return self._read_answer(resp, count, what)
        raise AssertionError("unreachable")

    def _read_answer(self, resp: requests.Response, count: int, what: str) -> list[cx.RecordResult]:
        code = resp.status_code
        if code in (401, 403):
            raise VendorAuthError(f"{what}: Cirrus Shield refused the token even after signing in "
                                  f"again (HTTP {code}): check the user's API rights")
        if code == 429:
            raise VendorThrottledError(f"{what}: Cirrus Shield is throttling requests (HTTP 429)")
        if code >= 500:
            raise VendorUnavailableError(f"{what}: Cirrus Shield failed (HTTP {code}) {http.body_snippet(resp)}")
        try:
            results, message = cx.parse_results(resp.content, resp.headers.get("Content-Type", ""))
        except cx.ResponseFormatError as exc:
            raise VendorProtocolError(f"{what}: {exc}", detail={"outcome": "unknown"}) from None
        if code == 400 and not results:
            text = scrub(message) if message else http.body_snippet(resp)
            raise VendorRejectedError(f"{what}: Cirrus Shield refused the batch (HTTP 400): {text}")
        if code >= 300 and not (code == 400 and results):
            http.raise_for_status(resp, what)
            raise VendorProtocolError(f"{what}: unexpected HTTP {code}")
        if results is None:
            raise VendorProtocolError(f"{what}: the answer has no per-record results: "
                                      f"{http.body_snippet(resp, 120)}", detail={"outcome": "unknown"})
        if len(results) != count:
            raise VendorProtocolError(f"{what}: {count} records sent but {len(results)} results "
                                      f"answered; cannot tell which failed", detail={"outcome": "unknown"})
        return results


MAX_CONCURRENCY = 16


@dataclass
class _Batch:
    """A run of records ready to post: their chunks, parsed elements and the payload."""

    chunks: list[cx.RecordChunk]
    elements: list | None  # parsed records (None: sent as written, parsed only if refused)
    body: str | bytes  # the <Data> payload (bytes: as written in the file)
    what: str

    @property
    def first(self) -> int:
        return self.chunks[0].number

    @property
    def mark(self) -> dict[str, int]:
        """What the checkpoint keeps of a batch in flight: enough to find its records again."""
        return {"first": self.first, "count": len(self.chunks), "start": self.chunks[0].start,
                "end": self.chunks[-1].end}


class _Inline:
    """The executor of concurrency 1: the call runs at once in this thread (no thread handoff)."""

    def __enter__(self) -> _Inline:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    @staticmethod
    def submit(fn, *args: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args))
        except BaseException as exc:  # noqa: BLE001 - delivered through the future, as a pool does
            future.set_exception(exc)
        return future


def _executor(concurrency: int):
    if concurrency == 1:
        return _Inline()
    # imported here: concurrency 1 (the default) never loads the thread pool module (cold start)
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="cirrus-send")


def _marks(job: dict[str, Any]) -> list[dict[str, int]]:
    """The in-flight marks of a saved job. A job saved before concurrency held one mark or None
    (its batch started at the cursor)."""
    marks = job.get("inflight")
    if not marks:
        return []
    if isinstance(marks, dict):
        return [{"start": job["offset"], **marks}]
    return list(marks)


def _check_same_type(chunk: cx.RecordChunk, record_tag: str) -> None:
    if chunk.tag != record_tag:
        raise InputError(f"mixed object types: record {chunk.number} is <{chunk.tag}> but record 1 is "
                         f"<{record_tag}>; put each object type in its own file")


def _never_sent(exc: BaseException | None) -> bool:
    """True when the connection was never opened (the request cannot have reached the vendor)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(exc, requests.exceptions.ConnectionError):
        reason = getattr(exc.args[0], "reason", None) if exc.args else None
        return isinstance(reason, (NewConnectionError, ConnectTimeoutError, NameResolutionError))
    return False


def _against_done(chunks: Iterator[cx.RecordChunk], done: list) -> Iterator[tuple[cx.RecordChunk, bool]]:
    """Each record with whether a batch answered ahead of the cursor holds it (``job["done"]``:
    ``[start, end, first, last]`` ranges): such records are never sent or listed again."""
    ahead = deque(sorted(done, key=lambda d: d[2]))
    for chunk in chunks:
        while ahead and chunk.number > ahead[0][3]:
            ahead.popleft()
        yield chunk, bool(ahead) and chunk.number >= ahead[0][2]


def _part_id(first_record: int) -> str:
    return f"{first_record:012d}"


def _raw_part(records: list[str]) -> bytes:
    """One staged part of the rejects file (b"" rewrites a retried batch's part as empty)."""
    return ("\n" + "\n".join(records) + "\n").encode("utf-8") if records else b""
