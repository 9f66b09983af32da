"""Finalize: the one place an import ends. Rejects to S3, status record to DynamoDB and S3,
one SNS message. Knows nothing of vendors: everything vendor-shaped was staged by the steps."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from typing import Any

from .. import cost, limits
from ..dal.jobs_table import JobsTable
from ..dal.notifier import Notifier
from ..dal.s3_layout import S3Store, error_key, rejects_prefix, status_key
from ..errors import documented_error
from ..model import FinalState
from ..scrub import scrub, scrub_obj
from ..settings import DEFAULT_TARGET, TARGET_NAME
from .record_count import ERROR_TYPE as RECORD_COUNT_MISMATCH

_VENDOR_ID = re.compile(r"[a-z][a-z0-9_-]{0,39}")

# fields never cut to fit a size limit (identifiers, not texts)
_IDENTITY = frozenset({"job_id", "vendor", "state", "status_uri", "execution_arn", "uri", "bucket", "key",
                       "version_id", "etag", "csv_uri", "raw_uri", "type"})

# Step Functions error names that mean "the vendor never finished in time".
_TIMEOUT_ERRORS = {"States.Timeout"}


def iso(ts: float | None = None) -> str:
    return datetime.fromtimestamp(ts if ts is not None else time.time(), UTC).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ")


def error_from_catch(error: dict[str, Any] | None) -> tuple[str | None, str | None]:
    """(error type, user message) from a Catch's $.error ({"Error", "Cause"})."""
    if not error:
        return None, None
    name = error.get("Error") or "Error"
    cause = error.get("Cause") or ""
    message = cause
    try:
        parsed = json.loads(cause)
        if isinstance(parsed, dict):
            message = parsed.get("errorMessage") or parsed.get("message") or cause
            name = parsed.get("errorType") or name
    except (ValueError, TypeError):
        pass
    if name in _TIMEOUT_ERRORS and not message:
        message = "a step did not finish in time"
    return scrub(name), scrub(message or name)


class Finalizer:
    def __init__(self, store: S3Store, jobs: JobsTable, notifier: Notifier, clock=time.time):
        self.store = store
        self.jobs = jobs
        self.notifier = notifier
        self.clock = clock
        self.guard = None  # logic/guard.Guard: whatever ends an import frees its slot

    def from_state(self, event: dict[str, Any]) -> dict[str, Any]:
        """Finalize called by the state machine (success, vendor failure or caught error)."""
        inp = event.get("input") or {}
        job = inp.get("job") or {}
        # a continued execution has its own name: the job id is the first execution's, under which
        # the vendor step keeps the slot, the checkpoint and the whole text of a long error
        job_id = job.get("job_id") or event.get("execution_name") or "unknown"
        vendor = job.get("vendor") or _vendor_from(inp.get("key"), event.get("state_machine_arn"))
        self._release(job_id, vendor, inp)
        err_type, err_msg = error_from_catch(inp.get("error"))
        if err_type:
            state = FinalState.TIMED_OUT if err_type in _TIMEOUT_ERRORS else FinalState.FAILED
            if err_msg and err_msg.endswith(limits.MARKER_TAIL):  # cut for the state: whole in S3
                err_msg = self.store.get_text(error_key(job_id)) or err_msg
            message = err_msg
            job = self._with_checkpoint_counts(job_id, job)
            if job.get("error_type") == RECORD_COUNT_MISMATCH:  # found when the rest was settled
                err_type, err_msg = RECORD_COUNT_MISMATCH, f"{job.get('settled')} (the import had failed: {err_msg})"
                message = err_msg
            elif job.get("settled"):  # the records it did not send are in the rejects file
                message = f"{err_msg}; {job['settled']}"
            if inp.get("settle_error"):
                _type, why = error_from_catch(inp["settle_error"])
                message = f"{message}; the records not sent could not all be listed ({_type}: {why})"
        else:
            state = FinalState(job.get("state") or FinalState.FAILED.value)
            message = job.get("message") or ""
            if job.get("message_key"):  # too long for the state: the step kept it whole in S3
                message = self.store.get_text(job["message_key"]) or message
            if job.get("error_type"):
                err_type, err_msg = job["error_type"], message
        return self.record(
            job_id=job_id, vendor=vendor, inp=inp, job=job, state=state, message=message, error_type=err_type,
            error_message=err_msg, execution_arn=event.get("execution_arn"),
            started_at=event.get("started_at"), caught_error=bool(inp.get("error")),
        )

    def _release(self, job_id: str, vendor: str, inp: dict[str, Any], arn: str | None = None) -> None:
        """Free the import's vendor-guard slot or queue place (logic/guard.py), first thing: with
        ``arn`` only if it is still that execution's. The target is the step's, else the one the
        jobs table noted when the import queued or started (a Submit that failed after choosing a
        target from the upload's metadata), else the input's."""
        if self.guard is None:
            return
        job = inp.get("job") if isinstance(inp.get("job"), dict) else {}
        target = job.get("target")
        if not target:
            try:
                target = (self.jobs.get(job_id) or {}).get("target")
            except Exception:  # noqa: BLE001 - the guard's reclaim frees it otherwise
                target = None
        self.guard.release(vendor, target or _target_of(job, inp), job_id, arn=arn)

    def _with_checkpoint_counts(self, job_id: str, job: dict[str, Any]) -> dict[str, Any]:
        """A step that failed after checkpointing progress (a record vendor's cursor): the counts
        it saved are newer than those of the last step that returned. The status record must say
        what reached the vendor."""
        raw = (self.jobs.get(job_id) or {}).get("checkpoint_job")
        try:
            saved = json.loads(raw) if raw else None
        except (ValueError, TypeError):
            return job
        counts = saved.get("counts") if isinstance(saved, dict) else None
        if not isinstance(counts, dict):
            return job
        return {**job, "counts": {**(job.get("counts") or {}), **counts}}

    def from_execution_event(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """EventBridge 'Execution Status Change' for an execution that ended without Finalize
        (execution timeout, abort, Finalize itself failing): write the status if none exists."""
        detail = event.get("detail") or {}
        try:
            inp = json.loads(detail.get("input") or "{}")
        except ValueError:
            inp = {}
        carried = (inp.get("job") if isinstance(inp, dict) else None) or {}
        carried = carried if isinstance(carried, dict) else {}
        # a continued execution's input carries the job: its id is the first execution's name
        job_id = carried.get("job_id") or detail.get("name") or "unknown"
        existing = self.jobs.get(job_id)
        if existing and existing.get("state") in {s.value for s in FinalState}:
            if existing.get("notified_at"):
                return None
            # Finalize wrote the status record, then failed (publishing): the record and the
            # vendor's reason in it stand; only the message is still owed
            self._notify(job_id, existing)
            return existing
        current = (existing or {}).get("current_execution")
        if current and detail.get("name") and current != detail.get("name"):
            return None  # the job went on in a newer execution: that one ends it
        status = detail.get("status", "FAILED")
        state = FinalState.TIMED_OUT if status == "TIMED_OUT" else FinalState.FAILED
        err_type = detail.get("error") or f"Execution{status.title().replace('_', '')}"
        # a Lambda error's cause is JSON with a stack trace: the message is its errorMessage
        if detail.get("cause"):
            err_type, message = error_from_catch({"Error": err_type, "Cause": detail["cause"]})
        else:
            err_type, message = scrub(err_type), f"the execution ended {status} before finalizing"
        if not isinstance(inp, dict) and status == "FAILED":
            # a console start with a JSON string or array: the first state's Catch cannot add
            # $.error to it, so the execution fails there; say what was wrong with the input
            err_type = "InputError"
            message = 'the execution input must be a JSON object like {"bucket": "...", "key": "inbox/<vendor>/..."}'
        started = detail.get("startDate")
        inp = inp if isinstance(inp, dict) else {}
        # only if the slot is still this execution's (a continued poll loop took it along)
        self._release(job_id, _vendor_from(inp.get("key"), detail.get("stateMachineArn")), inp,
                      arn=detail.get("executionArn"))
        return self.record(
            job_id=job_id, vendor=_vendor_from(inp.get("key"), detail.get("stateMachineArn")), inp=inp,
            job={k: carried[k] for k in ("executions", "executions_count") if k in carried},
            state=state, message=message, error_type=err_type, execution_arn=detail.get("executionArn"),
            started_at=iso(started / 1000) if isinstance(started, (int, float)) else started,
        )

    def record(self, *, job_id: str, vendor: str, inp: dict[str, Any], job: dict[str, Any],
               state: FinalState, message: str, error_type: str | None = None,
               error_message: str | None = None, execution_arn: str | None = None,
               started_at: str | None = None, caught_error: bool = False) -> dict[str, Any]:
        """Assemble rejects, write the status record everywhere, notify once. Idempotent."""
        existing = self.jobs.get(job_id)
        if existing and existing.get("notified_at") and existing.get("state") == state.value:
            # a retried Finalize whose first run completed: the same record, written once
            existing.pop("notified_at", None)
            return existing
        try:
            invocations = self.jobs.count_invocation(job_id, vendor)  # this Finalize attempt counts too
        except Exception:  # noqa: BLE001 - bookkeeping never costs a status record
            invocations = None
        step_started = time.perf_counter()
        now = self.clock()
        rejects = self._assemble_rejects(vendor, job_id, job)
        counts = dict(job.get("counts") or {})
        if rejects.get("rows") is not None and job.get("rejects_are_records") is not False:
            # rows of the rejects CSV are records for every vendor but simplement-e (messages)
            counts.setdefault("rejected", rejects["rows"])
        used = _usage_from_table(existing)
        if invocations is not None:
            used["invocations"] = invocations
        if used["requests"] is not None and "requests" in counts:
            # a connector that counts its requests (AEP) counted those of completed batches only:
            # every request of every attempt, retried ones included, is what really happened
            counts["requests"] = max(used["requests"], int(counts.get("requests") or 0))
        if state == FinalState.SUCCEEDED and rejects.get("rows"):
            state = FinalState.SUCCEEDED_WITH_REJECTS
        error = _error_for(state, error_type, error_message, message)
        bucket = _text(inp.get("bucket"))  # a console input may hold anything: {"key": 42}
        key = _text(inp.get("key"))
        record: dict[str, Any] = {
            "job_id": job_id,
            "vendor": vendor,
            "target": _target_of(job, inp),
            "state": state.value,
            "dry_run": bool(inp.get("dry_run") or job.get("dry_run")),
            "message": message or _default_message(state),
            "source": {
                "uri": f"s3://{bucket}/{key}" if bucket and key else None,
                "bucket": bucket, "key": key,
                "version_id": inp.get("version_id"),
                "size": inp["size"] if inp.get("size") is not None else job.get("size"),  # 0 is a size
                "etag": inp.get("etag"),
            },
            "vendor_ref": job.get("vendor_ref"),
            "counts": counts,
            "rejects": rejects,
            "error": error,
            "execution_arn": execution_arn,
            "started_at": _iso_z(started_at) or job.get("submitted_at") or iso(now),
            "finished_at": iso(now),
            "updated_at": iso(now),
            "polls": int(job.get("polls") or 0),
            "waited_seconds": int(job.get("waited_seconds") or 0),
        }
        if isinstance(inp.get("options"), dict) and inp["options"]:
            # the import's options (key segments, metadata and console merged): resubmit applies
            # again those that still fit the rejects file
            record["options"] = inp["options"]
        record["duration_seconds"] = _duration(record["started_at"], now)
        # how long the vendor took, as the poll loop saw it: the history polling learns from
        record["vendor_seconds"] = (record["waited_seconds"] or None) if state in (
            FinalState.SUCCEEDED, FinalState.SUCCEEDED_WITH_REJECTS) else None
        usage = cost.usage_add(job.get("usage"), time.perf_counter() - step_started, cost.memory_mb())
        # steps that ran (their result reached the payload) and every attempt that really happened
        step_retries = 0
        if used["invocations"] is not None:
            failed_attempts = max(0, used["invocations"] - int(usage["lambda_invocations"]))
            # the attempt whose error was caught into Finalize was the last, not a retry
            step_retries = max(0, failed_attempts - 1) if caught_error else failed_attempts
            usage["lambda_invocations"] = max(int(usage["lambda_invocations"]), used["invocations"])
            usage["lambda_gb_seconds"] = round(max(float(usage["lambda_gb_seconds"]), used["gb_seconds"]
                                                   + (time.perf_counter() - step_started) * cost.memory_mb() / 1024), 6)
        retries = (used["retries"] or 0) + step_retries  # HTTP retries + retried steps
        if "retries" in counts:
            counts["retries"] = max(int(counts.get("retries") or 0), retries)
        continuations = max(0, int(job.get("executions_count") or 1) - 1)
        # the vendor guard: Wait in queue + Submit + Choice per check of a QUEUED import
        queue_checks = int((job.get("guard") or {}).get("checks") or 0) if isinstance(job.get("guard"), dict) else 0
        failure_states = 0
        if caught_error and job.get("polls") is not None:
            # a poll that failed: its Wait, its Poll and the Choice its Catch goes to (a failed submit
            # has no job yet and goes straight to Finalize)
            failure_states += 3
        if "settled" in job or inp.get("settle_error"):
            failure_states += 1  # the record import's Settle step
        record["cost"] = cost.estimate(usage, record["polls"], step_retries, continuations=continuations,
                                       queue_checks=queue_checks, failure_states=failure_states)
        # every vendor request and retry of the import (all vendors; counts has them where the
        # connector counts them too)
        record["cost"]["vendor_requests"] = used["requests"] if used["requests"] is not None else None
        record["cost"]["retries"] = retries
        if job.get("executions"):
            prefix = (execution_arn or "").rsplit(":", 1)[0]
            record["executions"] = [f"{prefix}:{name}" if prefix else name for name in job["executions"]]
            record["executions_count"] = int(job.get("executions_count") or len(job["executions"]))
        identity = {name: record[name] for name in ("job_id", "source", "execution_arn")}
        record = scrub_obj(record)
        # identifiers stay as they are: a secret value that happens to be part of a file name
        # must not re-key the record (it would be written under another job id)
        record.update(identity)
        record["status_uri"] = self.store.uri(status_key(vendor, job_id))
        # the S3 status JSON keeps every text whole; DynamoDB (400 KB an item), the SNS message
        # (256 KiB) and this function's state output (256 KiB) get long texts cut with a marker
        self.store.put_json(status_key(vendor, job_id), record)
        compact = limits.shrink(record, limits.RECORD_BUDGET, keep=_IDENTITY)
        self.jobs.put_status(compact)
        self._notify(job_id, compact)
        return compact

    def _notify(self, job_id: str, record: dict[str, Any]) -> None:
        if self.jobs.claim_notification(job_id, iso(self.clock())):
            try:
                self.notifier.publish(record)
            except Exception:
                self.jobs.release_notification(job_id)
                raise

    def _assemble_rejects(self, vendor: str, job_id: str, job: dict[str, Any]) -> dict[str, Any]:
        csv_keys, raw_keys = self.store.staged_parts(job_id)
        out: dict[str, Any] = {"csv_uri": None, "raw_uri": None, "rows": 0}
        if not csv_keys and not raw_keys:
            return out
        prefix = rejects_prefix(vendor, job_id)
        base = (job.get("source_name") or "upload").rsplit("/", 1)[-1]
        if csv_keys:
            dest = f"{prefix}{base}.rejects.csv"
            self.store.concatenate(dest, csv_keys, head=self.store.header_csv(), content_type="text/csv")
            out["csv_uri"] = self.store.uri(dest)
            out["rows"] = self.store.count_rows(csv_keys)
        if raw_keys:
            fmt = job.get("raw_format") or {}
            dest = f"{prefix}{fmt.get('name') or base + '.rejects'}"
            self.store.concatenate(
                dest, raw_keys, head=(fmt.get("header") or "").encode(),
                tail=(fmt.get("footer") or "").encode(),
                content_type=fmt.get("content_type") or "application/octet-stream",
            )
            out["raw_uri"] = self.store.uri(dest)
        return out


def _error_for(state: FinalState, error_type: str | None, error_message: str | None,
               message: str) -> dict[str, str] | None:
    """The record's ``error``: None for a success, else {"type", "message"} with a type from
    errors.ERROR_TYPES (a FAILED record without a named error is a failure the vendor reported;
    a TIMED_OUT one passed the deadline). The message is the vendor's words where it gave any."""
    if state not in (FinalState.FAILED, FinalState.TIMED_OUT):
        return None
    if not error_type:
        error_type = "DeadlineExceeded" if state is FinalState.TIMED_OUT else "VendorJobFailed"
    error_type, error_message = documented_error(error_type, error_message or message or _default_message(state))
    return {"type": error_type, "message": error_message}


def _usage_from_table(item: dict[str, Any] | None) -> dict[str, Any]:
    """What the jobs table counted for every attempt (None where it has nothing)."""
    item = item or {}

    def number(name: str, kind=int):
        value = item.get(name)
        return None if value is None else kind(value)

    return {"invocations": number("usage_invocations"), "gb_seconds": number("usage_gb_seconds", float) or 0.0,
            "requests": number("usage_requests"), "retries": number("usage_retries")}


def _text(value: Any) -> str | None:
    """A field of the execution input as text (None stays None)."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value)


def _target_of(job: dict[str, Any], inp: dict[str, Any]) -> str:
    """The import's target: the one the vendor step chose, else the execution input's, else the
    key's ``target=`` folder; a malformed name (the InputError says so) or none: ``default``."""
    from .routing import target_from_key

    key = inp.get("key")
    for found in (job.get("target"), inp.get("target"), target_from_key(key) if isinstance(key, str) else None):
        if isinstance(found, str) and TARGET_NAME.fullmatch(found):
            return found
    return DEFAULT_TARGET


def vendor_from_key(key: Any) -> str:
    """The vendor segment of ``inbox/<vendor>/...``, if it is a plain vendor id: an empty, dot or
    odd segment ("inbox//x", "inbox/../x") gives "unknown" (it names S3 keys and an SNS attribute)."""
    if isinstance(key, str) and key.startswith("inbox/") and key.count("/") >= 2:
        segment = key.split("/")[1]
        if _VENDOR_ID.fullmatch(segment):
            return segment
    return "unknown"


def _vendor_from(key: Any, state_machine_arn: Any) -> str:
    """The key's vendor; for an input without a usable key (a console start with a typo), the
    vendor of the state machine (``<stack>-<vendor>-import``), so subscribers filtering on
    vendor still hear about it."""
    vendor = vendor_from_key(key)
    if vendor == "unknown" and isinstance(state_machine_arn, str):
        name = state_machine_arn.rsplit(":", 1)[-1]
        if name.endswith("-import"):
            vendor = name[: -len("-import")].rsplit("-", 1)[-1] or "unknown"
    return vendor


def _default_message(state: FinalState) -> str:
    return {
        FinalState.SUCCEEDED: "the vendor imported the file",
        FinalState.SUCCEEDED_WITH_REJECTS: "the vendor imported the file and rejected some records",
        FinalState.FAILED: "the import failed",
        FinalState.TIMED_OUT: "the vendor job did not finish before the deadline",
        FinalState.VALIDATED: "dry run: the file passed the local checks; nothing was sent",
    }[state]


def _duration(started_at: str, now: float) -> float | None:
    try:
        start = datetime.fromisoformat(started_at.replace("Z", "+00:00")).timestamp()
    except (ValueError, AttributeError):
        return None
    return round(max(0.0, now - start), 3)


def _iso_z(value: str | None) -> str | None:
    """Step Functions gives '...+00:00'; status records use one format: '...Z'."""
    if isinstance(value, str) and value.endswith("+00:00"):
        return value[: -len("+00:00")] + "Z"
    return value
