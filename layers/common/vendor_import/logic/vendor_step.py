"""One vendor step of the state machine: submit or poll, through the vendor's connector.

Returns the job payload the state machine keeps in $.job (small: no records, no secrets):
done, state, wait_seconds, polls, waited_seconds, connector (the connector's own state),
counts, vendor_ref, message, raw_format, source_name, dry_run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .. import cost, pace
from ..connectors import build_connector, connector_class, validate_options
from ..connectors.base import StepContext
from ..dal.jobs_table import JobsTable
from ..dal.s3_layout import S3Store
from ..errors import InputError
from ..model import FinalState, Progress, RawRejects
from ..scrub import scrub
from ..source import S3Source
from .finalize import iso
from .routing import ImportRequest, build_request, parse_console_input

PRESIGN_MAX_SECONDS = 7 * 24 * 3600  # SigV4 presigned URLs cannot outlive 7 days


class VendorStep:
    def __init__(self, *, vendor: str, settings_loader: Callable[[], dict[str, Any]], s3_client,
                 store: S3Store, jobs: JobsTable, time_left: Callable[[], float] = lambda: 600.0,
                 clock: Callable[[], float] = time.time, connector_cache: dict | None = None):
        self.vendor = vendor
        self.settings_loader = settings_loader
        self.s3 = s3_client
        self.store = store
        self.jobs = jobs
        self.time_left = time_left
        self.clock = clock
        self._connectors = connector_cache if connector_cache is not None else {}
        self.presign_s3 = s3_client  # the local runner presigns against its emulated S3 endpoint

    # -- entry -------------------------------------------------------------------------------------
    def run(self, event: dict[str, Any]) -> dict[str, Any]:
        action = event.get("action")
        if action not in ("submit", "poll"):
            raise InputError(f"unknown action {action!r}: expected submit or poll")
        job_id = event.get("execution_name") or "local"
        started = time.perf_counter()
        request = self._request(event.get("input"))
        previous = (event.get("input") or {}).get("job") or {}
        try:
            result = self.submit(job_id, request) if action == "submit" else self.poll(job_id, request, previous)
        except Exception as exc:
            _scrub_error(exc)  # its message becomes the execution's error Cause (history, Finalize)
            raise
        # what this step cost (the status record adds it up): duration x the function's memory
        result["usage"] = cost.usage_add(previous.get("usage") if action == "poll" else None,
                                         time.perf_counter() - started, cost.memory_mb())
        return result

    def submit(self, job_id: str, request: ImportRequest) -> dict[str, Any]:
        settings = self.settings_loader()
        connector = self._connector(settings)
        head = self._head(request)
        source = self._source(request, head["ContentLength"])
        ctx = self._context(job_id, request, source, head.get("Metadata") or {}, poll=0, settings=settings)
        _check_size(connector, source)
        rows = connector.validate(ctx)
        base = {"job_id": job_id, "vendor": self.vendor, "source_name": source.name,
                "size": source.size, "polls": 0, "waited_seconds": 0, "dry_run": request.dry_run,
                "submitted_at": iso(self.clock())}
        if not request.dry_run:
            base["pace"] = self._learned_pace(source.size, job_id)
        if request.dry_run:
            if rows:
                self.store.stage_rejects(job_id, "dry-run", rows, None)
            return {**base, "done": True, "state": FinalState.VALIDATED.value, "wait_seconds": 0,
                    "connector": {}, "counts": {"would_reject": len(rows)},
                    "message": _dry_run_message(len(rows)), "vendor_ref": None, "raw_format": None}
        self.jobs.mark_running(job_id, self.vendor, {"state": "RUNNING", "updated_at": iso(self.clock()),
                                                     "source_key": request.key})
        progress = connector.submit(ctx)
        # part ids sort in step order ("submit" would sort after "poll-..."): Finalize
        # concatenates the staged rejects in part id order
        return self._payload(base, progress, job_id, part_id="step-000000", settings=settings)

    def poll(self, job_id: str, request: ImportRequest, job: dict[str, Any]) -> dict[str, Any]:
        settings = self.settings_loader()
        polls = int(job.get("polls") or 0) + 1
        waited = int(job.get("waited_seconds") or 0) + int(job.get("wait_seconds") or 0)
        base = {**{k: job.get(k) for k in ("job_id", "vendor", "source_name", "size", "dry_run",
                                            "submitted_at", "raw_format", "pace")},
                "polls": polls, "waited_seconds": waited}
        if waited >= settings["deadline_seconds"]:
            return {**base, "done": True, "state": FinalState.TIMED_OUT.value, "wait_seconds": 0,
                    "connector": job.get("connector") or {}, "counts": job.get("counts") or {},
                    "vendor_ref": job.get("vendor_ref"),
                    "message": f"the vendor job was still running after {waited} s of polling "
                               f"(deadline_seconds = {settings['deadline_seconds']})"}
        connector = self._connector(settings)
        head = self._head(request)
        source = self._source(request, job.get("size") or head["ContentLength"])
        ctx = self._context(job_id, request, source, head.get("Metadata") or {}, poll=polls, settings=settings)
        # a retried poll resumes from what the failed attempt already checkpointed
        connector_job = self.jobs.load_checkpoint(job_id, polls) or job.get("connector") or {}
        progress = connector.poll(connector_job, ctx)
        if progress.vendor_ref is None:
            progress.vendor_ref = job.get("vendor_ref")
        return self._payload(base, progress, job_id, part_id=f"step-{polls:06d}", settings=settings)

    # -- helpers -------------------------------------------------------------------------------------
    def _learned_pace(self, size: int, job_id: str) -> dict[str, Any] | None:
        """The first wait and poll step from this vendor's recent jobs (None: static backoff)."""
        try:
            history = self.jobs.recent(self.vendor, pace.HISTORY_SIZE)
        except Exception:  # noqa: BLE001 - no history is never a reason to fail an import
            return None
        return pace.learn(history, size, job_id)

    def _request(self, inp: Any) -> ImportRequest:
        req = parse_console_input(inp)
        if req.vendor != self.vendor:
            raise InputError(
                f"key {req.key!r} is routed to vendor {req.vendor!r} but this is the {self.vendor} "
                f"state machine: start the {req.vendor} one, or use a key under inbox/{self.vendor}/"
            )
        return req

    def _connector(self, settings: dict[str, Any]):
        key = (self.vendor, id(settings))
        conn = self._connectors.get(key)
        if conn is None:  # settings changed: drop this vendor's old connector (and its token)
            for old in [k for k in self._connectors if k[0] == self.vendor]:
                del self._connectors[old]
            conn = self._connectors[key] = build_connector(self.vendor, settings)
        return conn

    def _source(self, request: ImportRequest, size: int) -> S3Source:
        return S3Source(self.s3, request.bucket, request.key, request.version_id, size=size)

    def _head(self, request: ImportRequest) -> dict[str, Any]:
        """One HeadObject per step: the size and the metadata (options) of the upload."""
        kwargs = {"Bucket": request.bucket, "Key": request.key}
        if request.version_id:
            kwargs["VersionId"] = request.version_id
        try:
            return self.s3.head_object(**kwargs)
        except Exception as exc:  # noqa: BLE001 - botocore raises many shapes for "not there"
            code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
            if code in ("404", "NoSuchKey", "NoSuchBucket", "NoSuchVersion", "403", "AccessDenied"):
                raise InputError(
                    f"cannot read s3://{request.bucket}/{request.key}"
                    f"{' version ' + request.version_id if request.version_id else ''}: "
                    f"it does not exist or is not readable ({code})"
                ) from None
            raise

    def _context(self, job_id: str, request: ImportRequest, source: S3Source, metadata: dict[str, str], *,
                 poll: int, settings: dict[str, Any]) -> StepContext:
        merged = build_request(request.bucket, request.key, metadata=metadata,
                               console_options=request.options).options
        options = validate_options(self.vendor, merged)

        def presign(expiry: int) -> str:
            params = {"Bucket": request.bucket, "Key": request.key}
            if request.version_id:
                params["VersionId"] = request.version_id
            return self.presign_s3.generate_presigned_url("get_object", Params=params,
                                                  ExpiresIn=min(int(expiry), PRESIGN_MAX_SECONDS))

        def checkpoint(connector_job: dict[str, Any]) -> None:
            self.jobs.save_checkpoint(job_id, self.vendor, poll, connector_job, iso(self.clock()))

        def emit_rejects(part_id: str, rows, raw: bytes | None = None, fmt: RawRejects | None = None):
            self.store.stage_rejects(job_id, f"part-{part_id}", list(rows or []), raw)
            if fmt is not None:
                self._emitted_format = fmt

        self._emitted_format = None
        return StepContext(source=source, options=options, presign=presign, time_left=self.time_left,
                           checkpoint=checkpoint, emit_rejects=emit_rejects, dry_run=request.dry_run,
                           job_id=job_id)

    def _payload(self, base: dict[str, Any], progress: Progress, job_id: str, *, part_id: str,
                 settings: dict[str, Any]) -> dict[str, Any]:
        if progress.rejects or progress.raw_rejects:
            self.store.stage_rejects(job_id, part_id, progress.rejects, progress.raw_rejects)
        fmt = progress.raw_rejects_format or self._emitted_format
        raw_format = _format_dict(fmt) if fmt else base.get("raw_format")
        if progress.done:
            wait = 0
        elif progress.next_wait_seconds is not None:
            wait = max(0, int(progress.next_wait_seconds))
        else:
            wait = pace.wait_for(int(base.get("polls") or 0), int(base.get("waited_seconds") or 0),
                                 settings["poll"], base.get("pace"))
        return {
            **base,
            "done": bool(progress.done),
            "state": progress.state.value if progress.done and progress.state else None,
            "wait_seconds": wait,
            "connector": progress.job,
            "counts": progress.counts,
            "vendor_ref": progress.vendor_ref,
            "message": scrub(progress.message),
            "error_type": progress.error_type,
            "raw_format": raw_format,
        }


def _scrub_error(exc: BaseException) -> None:
    """Mask secrets in a raised error's message, in place (the type and traceback stay): Lambda
    reports str(exc) to Step Functions, whatever connector raised it."""
    exc.args = tuple(scrub(a) if isinstance(a, str) else a for a in exc.args)
    if isinstance(getattr(exc, "message", None), str):
        exc.message = scrub(exc.message)


def _check_size(connector, source) -> None:
    if source.size == 0 and not connector.allow_empty_file:
        raise InputError(f"{source.name} is empty (0 bytes): nothing to import")
    limit = connector.max_file_bytes
    if limit is not None and source.size > limit:
        raise InputError(
            f"{source.name} is {source.size:,} bytes, over the {connector.vendor} limit of "
            f"{limit:,} bytes: split the file and upload the parts"
        )


def _format_dict(fmt: RawRejects) -> dict[str, Any]:
    return {"name": fmt.name, "content_type": fmt.content_type, "header": fmt.header,
            "footer": fmt.footer}


def _dry_run_message(n: int) -> str:
    if n:
        return f"dry run: {n} record(s) would be rejected; nothing was sent to the vendor"
    return "dry run: the file passed every local check; nothing was sent to the vendor"


def precheck(vendor: str, size: int, options: dict[str, Any]) -> None:
    """Cheap checks the submit function runs before starting an execution."""
    cls = connector_class(vendor)
    if size == 0 and not cls.allow_empty_file:
        raise InputError("the uploaded file is empty (0 bytes): nothing to import")
    if cls.max_file_bytes is not None and size > cls.max_file_bytes:
        raise InputError(
            f"the uploaded file is {size:,} bytes, over the {vendor} limit of "
            f"{cls.max_file_bytes:,} bytes: split the file and upload the parts"
        )
    validate_options(vendor, options)
