"""One vendor step of the state machine: submit or poll, through the vendor's connector.

Returns the job payload the state machine keeps in $.job (small: no records, no secrets):
done, state, wait_seconds, polls, waited_seconds, connector (the connector's own state),
counts, vendor_ref, message, raw_format, source_name, dry_run, target (the vendor target the
import goes to: its settings, connector, token and learned pace are that target's own), usage,
and the executions of the job (``execution``: the current one; ``executions``: their names, see
``continuation``).

Every invocation (retried attempts included) is counted in the jobs table before it does
anything, and its GB-seconds and vendor requests are added when it ends, failed or not: a retried
step's own result is lost with it, its usage is not.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .. import cost, limits, pace
from ..connectors import build_connector, connector_class, validate_options
from ..connectors.base import Connector, StepContext
from ..dal.jobs_table import JobsTable
from ..dal.s3_layout import S3Store, error_key, message_key
from ..errors import (
    InputError,
    VendorAuthError,
    VendorImportError,
    VendorOutage,
    VendorThrottledError,
    VendorUnavailableError,
)
from ..model import FinalState, Progress, RawRejects
from ..polling import bounded_seconds
from ..scrub import scrub
from ..settings import DEFAULT_TARGET
from ..source import MAGIC_BYTES, S3Source, compression_of, plain_name, stage_gunzipped
from ..units import limit_text
from . import continuation, record_count
from .finalize import error_from_catch, iso
from .routing import ImportRequest, build_request, choose_target, parse_console_input

PRESIGN_MAX_SECONDS = 7 * 24 * 3600  # SigV4 presigned URLs cannot outlive 7 days
_SETTLE_REASON_CHARS = 400  # the reason repeated on each NOT_SENT row


class VendorStep:
    def __init__(self, *, vendor: str, settings_loader: Callable[[], dict[str, Any]], s3_client,
                 store: S3Store, jobs: JobsTable, time_left: Callable[[], float] = lambda: 600.0,
                 clock: Callable[[], float] = time.time, connector_cache: dict | None = None, guard=None):
        self.vendor = vendor
        self.guard = guard  # logic/guard.Guard (None: no concurrency limit, e.g. unit tests of a step)
        self.breaker = None  # logic/guard.Breaker (None: no circuit breaker)
        self.settings_loader = settings_loader
        self.s3 = s3_client
        self.store = store
        self.jobs = jobs
        self.time_left = time_left
        self.clock = clock
        self._connectors = connector_cache if connector_cache is not None else {}
        self.presign_s3 = s3_client  # the local runner presigns against its emulated S3 endpoint
        self._execution = ("", "")  # (name, ARN) of the execution running this step
        self._uploaded_at = None  # the S3 event time of the upload: the guard's queue order

    # -- entry -------------------------------------------------------------------------------------
    def run(self, event: dict[str, Any]) -> dict[str, Any]:
        action = event.get("action")
        if action not in ("submit", "poll", "settle"):
            raise InputError(f"unknown action {action!r}: expected submit, poll or settle")
        name = event.get("execution_name") or "local"
        inp = event.get("input")
        previous = (inp.get("job") if isinstance(inp, dict) else None) or {}
        previous = previous if isinstance(previous, dict) else {}
        resuming = action == "submit" and _is_continuation(previous, name)
        # a Submit again after a wait in the vendor guard's queue (logic/guard.py)
        requeued = action == "submit" and not resuming and bool(previous.get("queued")) and bool(previous.get("job_id"))
        # the job id is the first execution's name, kept by every continuation
        job_id = str(previous.get("job_id") or name) if (resuming or requeued or action != "submit") else name
        self._execution = (name, str(event.get("execution_arn") or ""))
        self._uploaded_at = inp.get("uploaded_at") if isinstance(inp, dict) else None
        invocations = self._count_invocation(job_id)
        started = time.perf_counter()
        before = self._requests_so_far()
        try:
            request = self._request(inp)
            # no target in the input (a console start with bucket and key only): the upload's
            # metadata may name one, read at submit with the object's head
            self._target_given = isinstance(inp, dict) and (
                inp.get("target") is not None or isinstance(inp.get("options"), dict) and "target" in inp["options"])
            if resuming:
                result = self.resume(name, previous, invocations)
            elif action == "submit":
                result = self.submit(job_id, request, previous if requeued else None)
            elif action == "settle":
                result = self.settle(job_id, request, previous, inp.get("error"))
            else:
                result = self.poll(job_id, request, previous)
        except Exception as exc:
            _scrub_error(exc)  # its message becomes the execution's error Cause (history, Finalize)
            if isinstance(exc, VendorImportError):
                self._fit_error(job_id, exc)
            raise
        finally:
            seconds = time.perf_counter() - started
            self._record_usage(job_id, seconds, before)
        # what this step cost (the status record adds it up): duration x the function's memory
        result["usage"] = cost.usage_add(previous.get("usage") if (action != "submit" or resuming or requeued)
                                         else None, seconds, cost.memory_mb())
        if action != "settle":  # settling ends the loop: the job keeps its executions as they were
            self._track_execution(result, previous, "poll" if requeued else action, resuming, name, invocations,
                                  event)
        return result

    def resume(self, name: str, job: dict[str, Any], invocations: int | None) -> dict[str, Any]:
        """The first step of a continued execution: no vendor call, the loop goes on where the
        previous execution stopped (same job, same pending wait)."""
        self.jobs.mark_running(job["job_id"], self.vendor, {"current_execution": name,
                                                            "updated_at": iso(self.clock())})
        if self.guard is not None and job.get("target") and not job.get("dry_run"):
            # the slot (or queue place) follows the job into this execution
            execution = job.get("execution") or {}
            self.guard.touch(self.vendor, job["target"], job["job_id"], self._execution[1],
                             index=int(execution.get("index") or 0) + 1)
        return {k: v for k, v in job.items() if k not in ("continue_in_new_execution", "next_execution_name")}

    def _track_execution(self, result: dict[str, Any], previous: dict[str, Any], action: str, resuming: bool,
                         name: str, invocations: int | None, event: dict[str, Any]) -> None:
        """Which execution this is, and whether the loop must go on in a new one."""
        result["continue_in_new_execution"] = False
        result.setdefault("queued", False)  # the Choice reads it (the vendor guard's queue)
        before = (invocations - 1) if invocations is not None else None
        if resuming:
            prior = previous.get("execution") or {}
            result["execution"] = {"index": int(prior.get("index") or 0) + 1, "name": name, "polls": 0,
                                   "invocations_before": before,
                                   "waited_at_start": int(previous.get("waited_seconds") or 0)}
            result["executions"] = continuation.keep_names([*(previous.get("executions") or []), name])
            result["executions_count"] = int(previous.get("executions_count") or 1) + 1
            return
        if action == "submit":
            result["execution"] = {"index": 0, "name": name, "polls": 0, "invocations_before": before,
                                   "waited_at_start": 0}
            result["executions"], result["executions_count"] = [name], 1
            return
        execution = dict(previous.get("execution") or {"index": 0, "name": name, "polls": 0,
                                                       "invocations_before": 0, "waited_at_start": 0})
        execution["polls"] = int(execution.get("polls") or 0) + 1
        result["execution"] = execution
        result["executions"] = previous.get("executions") or [name]
        result["executions_count"] = int(previous.get("executions_count") or 1)
        if result.get("done"):
            return
        age = continuation.seconds_since(event.get("started_at"), self.clock())
        if continuation.should_continue(execution, invocations, waited=int(result.get("waited_seconds") or 0),
                                        wait=int(result.get("wait_seconds") or 0), age_seconds=age):
            result["continue_in_new_execution"] = True
            result["next_execution_name"] = continuation.next_name(result.get("job_id") or name,
                                                                   int(execution.get("index") or 0) + 1)

    def _count_invocation(self, job_id: str) -> int | None:
        try:
            return self.jobs.count_invocation(job_id, self.vendor)
        except Exception:  # noqa: BLE001 - bookkeeping must never fail a vendor step
            return None

    def _requests_so_far(self) -> tuple[int, int]:
        from .. import http

        return http.request_counts()

    def _record_usage(self, job_id: str, seconds: float, before: tuple[int, int]) -> None:
        from .. import http

        requests, retries = (now - then for now, then in zip(http.request_counts(), before, strict=True))
        try:
            self.jobs.add_usage(job_id, seconds * cost.memory_mb() / 1024.0, requests, retries)
        except Exception:  # noqa: BLE001 - bookkeeping must never fail a vendor step
            pass

    def submit(self, job_id: str, request: ImportRequest, previous: dict[str, Any] | None = None) -> dict[str, Any]:
        """Validate and submit, once the vendor guard lets the import in (logic/guard.py): else the
        QUEUED payload (``queued`` true, ``wait_seconds`` before the next Submit). ``previous``:
        the QUEUED payload of the last check (a Submit again after ``Wait in queue``)."""
        head = self._head(request)
        if not getattr(self, "_target_given", False):
            request.target = choose_target(request.key, head.get("Metadata") or {})
        settings = self._settings(request.target)  # an unknown target stops here: no vendor call
        guard_state = self._admit(job_id, request, settings, head, previous or {})
        if guard_state.get("queued"):
            return guard_state["payload"]
        connector = self._connector(settings, request.target)
        source = self._source(request, head["ContentLength"])
        staged = self._decompress(job_id, source, head, connector)
        if staged:
            source = self._staged_source(staged)
        ctx = self._context(job_id, request, source, head.get("Metadata") or {}, poll=0)
        _check_size(connector, source)
        rows = connector.validate(ctx)
        base = {"job_id": job_id, "vendor": self.vendor, "target": request.target, "source_name": source.name,
                "size": source.size, "polls": 0, "waited_seconds": 0, "dry_run": request.dry_run,
                "submitted_at": iso(self.clock())}
        if guard_state.get("guard"):
            base["guard"] = guard_state["guard"]
        if staged:
            base["staged"] = staged
        if not request.dry_run:
            base["pace"] = self._learned_pace(source.size, job_id, request.target)
        if not connector.rejects_are_records:
            base["rejects_are_records"] = False  # Finalize must not count its rejects rows as records
        if type(connector).settle is not Connector.settle:
            base["record_import"] = True  # a failure part-way is settled first (the state machine's Choice)
        if request.dry_run:
            # a record vendor stages its would-be rejects itself (rows and raw records, as the real
            # run would); otherwise the rows returned are the rejects file
            if rows and not self._emitted:
                self.store.stage_rejects(job_id, "dry-run", rows, None)
            fmt = self._emitted_format
            return {**base, "done": True, "state": FinalState.VALIDATED.value, "wait_seconds": 0,
                    "connector": {}, "counts": {"would_reject": len(rows)},
                    "message": _dry_run_message(len(rows)), "vendor_ref": None,
                    "raw_format": _format_dict(fmt) if fmt else None}
        self.jobs.mark_running(job_id, self.vendor, {"state": "RUNNING", "updated_at": iso(self.clock()),
                                                     "source_key": request.key,
                                                     "current_execution": self._execution[0] or job_id,
                                                     "target": request.target})
        progress = self._through_breaker(job_id, request, settings,
                                         {"suspected": (guard_state.get("guard") or {}).get("suspected")},
                                         lambda: connector.submit(ctx),
                                         gate=guard_state.get("gate"))
        if isinstance(progress, dict):  # the vendor went down: the import waits (keeping its slot), then submits
            state = {"checks": 0, "queued_seconds": 0, "paused_seconds": 0, "pause_waited": 0,
                     **(guard_state.get("guard") or {}), "pause_epoch": progress.get("pause_epoch"),
                     "suspected": progress.get("suspected")}
            return self._queued(job_id, request, state, wait=progress["wait_seconds"], paused=True,
                                epoch=progress.get("pause_epoch"))
        # part ids sort in step order ("submit" would sort after "poll-..."): Finalize
        # concatenates the staged rejects in part id order
        progress = record_count.enforce(progress, connector.record_tally(progress.job) if progress.done else None)
        return self._payload(base, progress, job_id, part_id="step-000000", settings=settings)

    def poll(self, job_id: str, request: ImportRequest, job: dict[str, Any]) -> dict[str, Any]:
        target = job.get("target") or request.target  # the one submit chose (metadata included)
        request.target = target
        settings = self._settings(target)
        polls = int(job.get("polls") or 0) + 1
        # a wait spent paused (vendor outage) does not count against deadline_seconds
        was_paused = bool(job.get("paused"))
        waited = int(job.get("waited_seconds") or 0) + (0 if was_paused else int(job.get("wait_seconds") or 0))
        paused_seconds = int(job.get("paused_seconds") or 0) + (int(job.get("wait_seconds") or 0) if was_paused else 0)
        base = {**{k: job.get(k) for k in ("job_id", "vendor", "target", "source_name", "size", "dry_run",
                                            "submitted_at", "raw_format", "pace", "staged",
                                            "rejects_are_records", "record_import")},
                "target": target, "polls": polls, "waited_seconds": waited}
        if was_paused or job.get("paused_seconds"):
            base["paused_seconds"] = paused_seconds
        if job.get("guard"):  # the queue's counters (Finalize counts the checks' states)
            base["guard"] = job["guard"]
        if was_paused:
            from .guard import breaker_settings

            deadline = breaker_settings(settings)[3]
            if paused_seconds >= deadline:
                return self._ended_at_poll(job_id, request, job, {
                    **base, "done": True, "state": FinalState.FAILED.value, "wait_seconds": 0,
                    "connector": job.get("connector") or {}, "counts": job.get("counts") or {},
                    "vendor_ref": job.get("vendor_ref"), "error_type": "VendorOutage",
                    "message": f"the vendor stayed unavailable: this import waited {paused_seconds} s "
                               f"while {self.vendor}/{target} was paused (pause_deadline_seconds = {deadline})"})
            base["pause_epoch"] = job.get("pause_epoch")
            base["pause_waited"] = int(job.get("pause_waited") or 0) + int(job.get("wait_seconds") or 0)
        if waited >= settings["deadline_seconds"]:
            return self._ended_at_poll(job_id, request, job, {
                **base, "done": True, "state": FinalState.TIMED_OUT.value, "wait_seconds": 0,
                "connector": job.get("connector") or {}, "counts": job.get("counts") or {},
                "vendor_ref": job.get("vendor_ref"), "error_type": "DeadlineExceeded",
                "message": f"the vendor job was still running after {waited} s of polling "
                           f"(deadline_seconds = {settings['deadline_seconds']})"
                           + (f"; last vendor status: {job['message']}" if job.get("message") else "")})
        connector = self._connector(settings, target)
        head, source = self._job_source(request, job)
        ctx = self._context(job_id, request, source, head.get("Metadata") or {}, poll=polls)
        # a retried poll resumes from what the failed attempt already checkpointed
        connector_job = self.jobs.load_checkpoint(job_id, polls) or job.get("connector") or {}
        progress = self._through_breaker(job_id, request, settings, {**base, "suspected": job.get("suspected")},
                                         lambda: connector.poll(connector_job, ctx))
        if isinstance(progress, dict):  # paused: ask the vendor nothing until the target resumes
            # a call that failed into the pause may have checkpointed batches it sent: the next poll
            # goes on from there (its own checkpoint number differs), never from before them
            saved = self.jobs.load_checkpoint(job_id, polls) or connector_job
            return {**base, **progress, "connector": saved, "counts": saved.get("counts") or job.get("counts") or {},
                    "vendor_ref": job.get("vendor_ref"), "message": job.get("message")}
        if progress.vendor_ref is None:
            progress.vendor_ref = job.get("vendor_ref")
        # records read = accepted + refused + unconfirmed, or the import ends FAILED
        progress = record_count.enforce(progress, connector.record_tally(progress.job) if progress.done else None)
        return self._payload(base, progress, job_id, part_id=f"step-{polls:06d}", settings=settings)

    def _ended_at_poll(self, job_id: str, request: ImportRequest, job: dict[str, Any],
                       end: dict[str, Any]) -> dict[str, Any]:
        """``end``: the done payload of an import a poll ends without asking the vendor
        (deadline_seconds, or pause_deadline_seconds while paused). The Choice sends it straight to
        Finalize, past the Settle step a failed poll's Catch reaches, so a record import (AEP, Cirrus
        Shield) settles here: every record after its cursor goes to the rejects file (NOT_SENT, or
        UNCONFIRMED for a batch whose answer was lost) and the records read still add up; a
        mismatch fails the import as RecordCountMismatch. File vendors: ``end`` as it is."""
        if not job.get("record_import"):
            return end
        settled = self.settle(job_id, request, job, {"Error": end["error_type"], "Cause": end["message"]})
        if not settled.get("settled"):
            return end  # nothing was left to settle
        out = {**end, "connector": settled["connector"], "counts": settled["counts"],
               "raw_format": settled.get("raw_format") or end.get("raw_format"),
               "message": f"{end['message']}; {settled['settled']}"}
        if settled.get("error_type"):
            out.update(state=FinalState.FAILED.value, error_type=settled["error_type"],
                       message=f"{settled['settled']} (the import had failed: {end['message']})")
        message, message_extra = self._state_message(job_id, out["message"])
        return {**out, "message": message, **message_extra}

    def settle(self, job_id: str, request: ImportRequest, job: dict[str, Any],
               error: dict[str, Any] | None) -> dict[str, Any]:
        """After a poll of a record import failed for good (the state machine's Catch, ``error`` =
        its {"Error", "Cause"}): the connector stages every record no step reported (UNCONFIRMED or
        NOT_SENT, ``Connector.settle``) from the failed attempt's checkpoint, so the rejects file and
        what the vendor accepted make the whole upload. Returns the job payload with the settled
        counts and ``settled`` (the sentence for the status record); ``error_type`` is
        RecordCountMismatch when the records read then do not add up. No vendor call."""
        target = job.get("target") or request.target
        request.target = target
        settings = self._settings(target)
        connector = self._connector(settings, target)
        failed_poll = int(job.get("polls") or 0) + 1  # its checkpoint is newer than $.job's
        connector_job = self.jobs.load_checkpoint(job_id, failed_poll) or job.get("connector")
        if not connector_job:
            return {**job, "settled": ""}  # nothing was left to settle
        head, source = self._job_source(request, job)
        ctx = self._context(job_id, request, source, head.get("Metadata") or {}, poll=failed_poll)
        err_type, err_msg = error_from_catch(error)
        reason = limits.cut(f"not sent: the import stopped before this record ({err_type}: {err_msg})",
                            _SETTLE_REASON_CHARS)
        progress = connector.settle(connector_job, ctx, scrub(reason))
        if progress is None:
            return {**job, "settled": ""}  # nothing was left to settle
        result = {**job, "connector": progress.job, "counts": progress.counts, "settled": scrub(progress.message)}
        if self._emitted_format:
            result["raw_format"] = _format_dict(self._emitted_format)
        tally = connector.record_tally(progress.job) if progress.done else None
        problem = tally.mismatch() if tally is not None else None
        if problem:  # loud: the records of a failed import must add up too
            result["error_type"], result["settled"] = record_count.ERROR_TYPE, problem
        return result

    def _admit(self, job_id: str, request: ImportRequest, settings: dict[str, Any], head: dict[str, Any],
               previous: dict[str, Any]) -> dict[str, Any]:
        """The vendor guard's door (logic/guard.py), before the file is read or the vendor called.
        Returns ``{"queued": True, "payload": <QUEUED payload>}``, or ``{"guard": <the queue's counters,
        None if the import never queued>, "gate": <the breaker's Gate, or None>}``. With no limit and
        no lane (the default for every vendor but Campaign) it writes nothing: one read of the
        target's breaker. Raises VendorOutage once the import has waited ``pause_deadline_seconds``
        on a paused target."""
        prior = previous.get("guard") or {}
        waited = int(previous.get("wait_seconds") or 0)  # the Wait in queue just done
        paused_wait = waited if prior.get("paused") else 0
        state = {"checks": int(prior.get("checks") or 0) + (1 if previous else 0),
                 "queued_seconds": int(prior.get("queued_seconds") or 0) + waited,
                 "paused_seconds": int(prior.get("paused_seconds") or 0) + paused_wait,
                 "pause_epoch": prior.get("pause_epoch"),
                 "pause_waited": int(prior.get("pause_waited") or 0) + paused_wait,
                 "shown": (prior.get("position"), bool(prior.get("paused"))) if previous else None}
        state["suspected"] = prior.get("suspected")
        kept = {k: state[k] for k in ("checks", "queued_seconds", "paused_seconds", "suspected")} if previous else None
        if request.dry_run or self.guard is None:  # a dry run never talks to the vendor
            return {"guard": kept, "gate": None}
        from .guard import breaker_settings, lane_of, limit_of

        deadline = breaker_settings(settings)[3]
        if state["paused_seconds"] >= deadline:
            raise VendorOutage(f"{self.vendor}/{request.target} stayed paused (vendor outage) while this import "
                               f"waited {state['paused_seconds']} s (pause_deadline_seconds = {deadline})")
        options = validate_options(self.vendor, build_request(request.bucket, request.key,
                                                              metadata=head.get("Metadata") or {},
                                                              console_options=request.options).options)
        limit, lane = limit_of(settings), lane_of(self.vendor, options, settings)
        if limit or lane:
            execution = previous.get("execution") or {}
            decision = self.guard.acquire(self.vendor, request.target, job_id, self._execution[1], limit=limit,
                                          lane=lane, uploaded_at=self._uploaded_at,
                                          check_seconds=int(settings.get("queue_check_seconds") or 30),
                                          index=int(execution.get("index") or 0))
            if not decision.acquired:
                return {"queued": True, "payload": self._queued(job_id, request, state, wait=decision.wait_seconds,
                                                                position=decision.position, paused=decision.paused)}
        gate = None
        if self.breaker is not None:
            seen = state["pause_epoch"]
            gate = self.breaker.gate(self.vendor, request.target, job_id,
                                     seen_epoch=-1 if seen is None else int(seen),
                                     waited_in_epoch=state["pause_waited"],
                                     cooldown_default=breaker_settings(settings)[1])
            if gate.action == "wait":
                return {"queued": True, "payload": self._queued(job_id, request, state, wait=gate.wait_seconds,
                                                                paused=True, epoch=gate.epoch)}
        return {"guard": kept, "gate": gate}

    def _queued(self, job_id: str, request: ImportRequest, state: dict[str, Any], *, wait: int,
                position: int | None = None, paused: bool = False, epoch: int | None = None) -> dict[str, Any]:
        """The QUEUED payload ($.job): ``Wait in queue`` for ``wait_seconds``, then Submit again.
        Its waits go to ``guard.queued_seconds`` (and ``paused_seconds`` while the target is paused),
        never to ``waited_seconds``: the vendor's deadline starts at the real submit."""
        guard = {k: state[k] for k in ("checks", "queued_seconds", "paused_seconds")}
        if state.get("suspected"):  # waited once after an outage failure (logic/guard.Breaker.others_failing)
            guard["suspected"] = True
        if paused:
            same = epoch is None or state.get("pause_epoch") is None or int(state["pause_epoch"]) == int(epoch)
            guard.update({"paused": True, "pause_epoch": epoch if epoch is not None else state.get("pause_epoch"),
                          "pause_waited": state["pause_waited"] if same else 0})
        guard["position"] = position
        where = f"{self.vendor}/{request.target}"
        message = (f"paused: {where} is paused (vendor outage); the import waits and submits when it resumes"
                   if paused else f"queued: {position if position is not None and position >= 0 else 'some'} "
                                  f"import(s) of {where} ahead; max_concurrent_imports reached")
        if state.get("shown") != (position, paused):  # the jobs table already says so otherwise
            self._mark_queued(job_id, request, message)
        return {"job_id": job_id, "vendor": self.vendor, "target": request.target,
                "source_name": request.key.rsplit("/", 1)[-1], "polls": 0, "waited_seconds": 0,
                "dry_run": False, "done": False, "state": None, "queued": True,
                "wait_seconds": max(1, int(wait)), "guard": guard, "connector": {}, "counts": {},
                "vendor_ref": None, "message": message}

    def _mark_queued(self, job_id: str, request: ImportRequest, message: str) -> None:
        """State QUEUED in the jobs table (``list``, ``show``), with the message saying why."""
        self.jobs.mark_running(job_id, self.vendor, {"state": "QUEUED", "updated_at": iso(self.clock()),
                                                     "source_key": request.key, "target": request.target,
                                                     "message": message,
                                                     "current_execution": self._execution[0] or job_id})

    def _through_breaker(self, job_id: str, request: ImportRequest, settings: dict[str, Any],
                         job: dict[str, Any], call: Callable[[], Progress], gate=None) -> Progress | dict[str, Any]:
        """One vendor call through the target's circuit breaker (logic/guard.Breaker). Returns the
        call's Progress, or the paused part of a payload (paused, wait_seconds, pause_epoch,
        pause_waited) when the target is paused: the import waits instead of calling the vendor,
        and an outage failure that pauses the target does not fail the import. ``gate``: the one
        the submit's admission already asked for."""
        if self.breaker is None:
            return call()
        from .guard import breaker_settings, limit_of

        threshold, cooldown, max_cooldown, _ = breaker_settings(settings)
        target = request.target
        seen = job.get("pause_epoch")
        if gate is None:
            gate = self.breaker.gate(self.vendor, target, job_id, seen_epoch=-1 if seen is None else int(seen),
                                     waited_in_epoch=int(job.get("pause_waited") or 0), cooldown_default=cooldown)
        if gate.action == "wait":
            waited = int(job.get("pause_waited") or 0) if seen is not None and int(seen) == gate.epoch else 0
            return {"paused": True, "done": False, "state": None, "wait_seconds": gate.wait_seconds,
                    "pause_epoch": gate.epoch, "pause_waited": waited}
        try:
            progress = call()
        except (VendorUnavailableError, VendorThrottledError, VendorAuthError):
            # counted once per import: with a limit, at most that many imports can be failing at once
            limit = limit_of(settings)
            if self.breaker.failed(self.vendor, target, threshold=min(threshold, limit) if limit else threshold,
                                   cooldown=cooldown, max_cooldown=max_cooldown, job_id=job_id):
                return {"paused": True, "done": False, "state": None, "wait_seconds": cooldown,
                        "pause_epoch": None, "pause_waited": 0}
            if not job.get("suspected") and self.breaker.others_failing(self.vendor, target, job_id):
                # other imports fail too, the breaker not open yet: wait one cool-down (while their
                # failures open it) instead of failing; a second failure then fails as before
                return {"paused": True, "done": False, "state": None, "wait_seconds": cooldown,
                        "pause_epoch": None, "pause_waited": 0, "suspected": True}
            raise
        if gate.action == "probe" or gate.failures:
            self.breaker.succeeded(self.vendor, target)
        return progress

    # -- helpers -------------------------------------------------------------------------------------
    def _learned_pace(self, size: int, job_id: str, target: str = DEFAULT_TARGET) -> dict[str, Any] | None:
        """The first wait and poll step from the recent jobs of this vendor's target (a test system
        is not as fast as production; None: static backoff)."""
        try:
            history = self.jobs.recent(self.vendor, pace.HISTORY_SIZE, target=target)
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

    def _settings(self, target: str) -> dict[str, Any]:
        """The settings of one target (InputError naming the known ones for an unknown target)."""
        return self.settings_loader() if target == DEFAULT_TARGET else self.settings_loader(target)

    def _connector(self, settings: dict[str, Any], target: str = DEFAULT_TARGET):
        """The target's connector, cached (with its token) per (vendor, target) while its settings
        are unchanged: a token of one target is never sent to another."""
        key = (self.vendor, target, id(settings))
        conn = self._connectors.get(key)
        if conn is None:  # settings changed: drop this target's old connector (and its token)
            for old in [k for k in self._connectors if k[:2] == (self.vendor, target)]:
                del self._connectors[old]
            conn = self._connectors[key] = build_connector(self.vendor, settings)
            if self.guard is not None:  # a target's documented rates are one budget for all its imports
                from .guard import share_rates

                share_rates(self.vendor, target, conn, settings, self.guard.table.table)
        return conn

    def _source(self, request: ImportRequest, size: int) -> S3Source:
        return S3Source(self.s3, request.bucket, request.key, request.version_id, size=size)

    def _decompress(self, job_id: str, source: S3Source, head: dict[str, Any], connector) -> dict[str, Any] | None:
        """A gzip upload (Content-Encoding gzip, *.gz or the gzip magic number) is decompressed
        once, at submit, into work/<job_id>/source/<name without .gz>: record vendors read it from
        byte offsets (gzip cannot be range-read), HOPEX uploads it and simplement-e fetches it by
        presigned URL. Returns {"key", "size", "name"} of that copy, None for a plain upload.
        Raises InputError for other compressions, invalid gzip or a copy over the vendor's limit."""
        magic = source.first_bytes(MAGIC_BYTES)
        if compression_of(source.name, head.get("ContentEncoding"), magic) != "gzip":
            return None
        name = plain_name(source.name)
        key = f"work/{job_id}/source/{name}"
        limit = connector.max_file_bytes
        size = stage_gunzipped(source, self.s3, self.store.bucket, key, max_bytes=limit,
                               too_large=f"{source.name} decompresses to more than "
                                         f"{limit_text(self.vendor, limit or 0)}: split the file and "
                                         f"upload the parts (each gzip-compressed if you like)")
        return {"key": key, "size": size, "name": name}

    def _job_source(self, request: ImportRequest, job: dict[str, Any]) -> tuple[dict[str, Any], S3Source]:
        """The upload's head (its metadata holds options) and what a step after submit reads: a gzip
        upload's copy that submit decompressed, else the upload at the size submit saw."""
        head = self._head(request)
        if job.get("staged"):
            return head, self._staged_source(job["staged"])
        return head, self._source(request, job.get("size") or head["ContentLength"])

    def _staged_source(self, staged: dict[str, Any]) -> S3Source:
        source = S3Source(self.s3, self.store.bucket, staged["key"], size=staged["size"])
        source.name = staged["name"]
        return source

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
                 poll: int) -> StepContext:
        merged = build_request(request.bucket, request.key, metadata=metadata,
                               console_options=request.options).options
        options = validate_options(self.vendor, merged)

        def presign(expiry: int) -> str:  # the object the vendor reads: the upload or its decompressed copy
            params = {"Bucket": source.bucket, "Key": source.key}
            if source.version_id:
                params["VersionId"] = source.version_id
            return self.presign_s3.generate_presigned_url("get_object", Params=params,
                                                  ExpiresIn=min(int(expiry), PRESIGN_MAX_SECONDS))

        def checkpoint(connector_job: dict[str, Any]) -> None:
            self.jobs.save_checkpoint(job_id, self.vendor, poll, connector_job, iso(self.clock()))

        def emit_rejects(part_id: str, rows, raw: bytes | None = None, fmt: RawRejects | None = None):
            self.store.stage_rejects(job_id, f"part-{part_id}", list(rows or []), raw)
            self._emitted = True
            if fmt is not None:
                self._emitted_format = fmt

        self._emitted_format = None
        self._emitted = False
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
            wait = bounded_seconds(progress.next_wait_seconds, default=0)  # a vendor's hint, bounded
        else:
            wait = pace.wait_for(int(base.get("polls") or 0), int(base.get("waited_seconds") or 0),
                                 settings["poll"], base.get("pace"))
        message, message_extra = self._state_message(job_id, scrub(progress.message))
        return {
            **base,
            "done": bool(progress.done),
            "state": progress.state.value if progress.done and progress.state else None,
            "wait_seconds": wait,
            "connector": progress.job,
            "counts": progress.counts,
            "vendor_ref": progress.vendor_ref,
            "message": message,
            "error_type": progress.error_type,
            "raw_format": raw_format,
            **message_extra,
        }

    def _fit_error(self, job_id: str, exc: VendorImportError) -> None:
        """An error quoting a long vendor text becomes the state's $.error (256 KiB with the
        input): its message travels cut, and whole in S3 for Finalize (``error_key``)."""
        if len(exc.message) <= limits.STATE_TEXT_CHARS:
            return
        try:
            self.store.put_text(error_key(job_id), exc.message)
        except Exception:  # noqa: BLE001 - the cut message still tells what happened
            pass
        exc.message = limits.cut(exc.message, limits.STATE_TEXT_CHARS)
        exc.args = (exc.message,)

    def _state_message(self, job_id: str, message: str) -> tuple[str, dict[str, Any]]:
        """A vendor text can be any length; the state holds 256 KiB: a long message travels cut,
        and whole in S3 for Finalize (``message_key``)."""
        if len(message) <= limits.STATE_TEXT_CHARS:
            return message, {}
        key = message_key(job_id)
        self.store.put_text(key, message)
        return limits.cut(message, limits.STATE_TEXT_CHARS), {"message_key": key}


def _is_continuation(job: dict[str, Any], execution_name: str) -> bool:
    """The input of an execution started by ``Continue in a new execution`` for this name."""
    return bool(job.get("continue_in_new_execution")) and job.get("next_execution_name") == execution_name \
        and bool(job.get("job_id"))


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
            f"{source.name} is {source.size:,} bytes, over {limit_text(connector.vendor, limit)}: "
            f"split the file and upload the parts"
        )


def _format_dict(fmt: RawRejects) -> dict[str, Any]:
    return {"name": fmt.name, "content_type": fmt.content_type, "header": fmt.header,
            "footer": fmt.footer}


def _dry_run_message(n: int) -> str:
    if n:
        return f"dry run: {n} record(s) would be rejected; nothing was sent to the vendor"
    return "dry run: the file passed every local check; nothing was sent to the vendor"


def precheck(vendor: str, size: int, options: dict[str, Any], compressed: bool) -> None:
    """Cheap checks the submit function runs before starting an execution. A compressed upload's
    size says nothing of its decompressed size, which the vendor step checks."""
    cls = connector_class(vendor)
    if size == 0 and not cls.allow_empty_file:
        raise InputError("the uploaded file is empty (0 bytes): nothing to import")
    if not compressed and cls.max_file_bytes is not None and size > cls.max_file_bytes:
        raise InputError(
            f"the uploaded file is {size:,} bytes, over {limit_text(vendor, cls.max_file_bytes)}: "
            f"split the file and upload the parts"
        )
    validate_options(vendor, options)
