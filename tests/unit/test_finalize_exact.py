"""Finalize (logic/finalize.py) to the exact field: the error read from a Catch, the vendor read from
a key, the source and times of the record, the usage and cost counted from the jobs table, and the
records of executions that ended without Finalize. Written from the survivors of `make mutation`
(docs/mutation.md); every expected value is worked out by hand."""

from __future__ import annotations

import json

import pytest
from vendor_import.logic.finalize import error_from_catch, iso, vendor_from_key
from vendor_import.model import RejectRow

from tests.unit.test_finalize import ARN, JOB, clock, done_job, execution_event, state_event


# -- pure helpers --------------------------------------------------------------------------------------
@pytest.mark.parametrize("error, expected", [
    (None, (None, None)),
    ({}, (None, None)),
    ({"Error": "VendorAuthError", "Cause": ""}, ("VendorAuthError", "VendorAuthError")),
    ({"Cause": "plain words"}, ("Error", "plain words")),
    ({"Error": "States.Timeout"}, ("States.Timeout", "a step did not finish in time")),
    ({"Error": "States.Timeout", "Cause": "the step ran 900 s"}, ("States.Timeout", "the step ran 900 s")),
    ({"Error": "Lambda.Unknown", "Cause": json.dumps({"errorType": "InputError", "errorMessage": "bad key"})},
     ("InputError", "bad key")),
    ({"Error": "X", "Cause": json.dumps({"message": "from message"})}, ("X", "from message")),
    ({"Error": "X", "Cause": json.dumps({"other": 1})}, ("X", '{"other": 1}')),
    ({"Error": "X", "Cause": json.dumps(["a", "list"])}, ("X", '["a", "list"]')),
])
def test_error_from_catch(error, expected):
    assert error_from_catch(error) == expected


@pytest.mark.parametrize("key, vendor", [
    ("inbox/aep/x.json", "aep"),
    ("inbox/simplemente/flux/a.csv", "simplemente"),
    ("inbox/" + "v" * 40 + "/x", "v" * 40),
    ("inbox/" + "v" * 41 + "/x", "unknown"),
    ("inbox/a_b-c9/x", "a_b-c9"),
    ("inbox/aep", "unknown"),
    ("inbox//x", "unknown"),
    ("inbox/../x", "unknown"),
    ("inbox/AEP/x", "unknown"),
    ("inbox/9aep/x", "unknown"),
    ("outbox/aep/x", "unknown"),
    (42, "unknown"),
    (None, "unknown"),
])
def test_vendor_from_key(key, vendor):
    assert vendor_from_key(key) == vendor


def test_iso_has_microseconds_and_a_z():
    assert iso(0) == "1970-01-01T00:00:00.000000Z"
    assert iso(1714557660.25) == "2024-05-01T10:01:00.250000Z"


# -- the record's source, times and target ---------------------------------------------------------------
def test_a_step_functions_start_time_is_written_with_a_z_and_gives_the_duration(account):
    event = state_event(done_job())
    event["started_at"] = "2024-05-01T10:00:00.500+00:00"
    record = account.finalizer(clock).from_state(event)
    assert record["started_at"] == "2024-05-01T10:00:00.500Z"
    assert record["duration_seconds"] == 59.5


def test_without_a_start_time_the_submit_time_then_now(account):
    event = state_event(done_job(submitted_at="2024-05-01T09:59:00.000Z"))
    event["started_at"] = None
    record = account.finalizer(clock).from_state(event)
    assert (record["started_at"], record["duration_seconds"]) == ("2024-05-01T09:59:00.000Z", 120.0)


def test_an_unreadable_start_time_has_no_duration(account):
    event = state_event(done_job())
    event["started_at"] = "yesterday"
    assert account.finalizer(clock).from_state(event)["duration_seconds"] is None


def test_a_size_of_zero_is_kept_and_a_missing_size_comes_from_the_job(account):
    record = account.finalizer(clock).from_state(state_event(done_job(size=77), size=0))
    assert record["source"]["size"] == 0
    event = state_event(done_job(job_id="j2", size=77))
    del event["input"]["size"]
    assert account.finalizer(clock).from_state(event)["source"]["size"] == 77


def test_a_console_input_with_odd_fields_is_recorded_as_text(account):
    event = state_event(done_job(), key="inbox/hopex/clean.mgl")
    event["input"]["bucket"] = 42
    record = account.finalizer(clock).from_state(event)
    assert record["source"]["bucket"] == "42"
    assert record["source"]["uri"] == "s3://42/inbox/hopex/clean.mgl"
    event = state_event(done_job(job_id="j2"))
    del event["input"]["key"]
    assert account.finalizer(clock).from_state(event)["source"]["uri"] is None


def test_the_options_are_recorded_only_when_there_are_some(account):
    record = account.finalizer(clock).from_state(state_event(done_job(), options={"dry_run": "false"}))
    assert record["options"] == {"dry_run": "false"}
    assert "options" not in account.finalizer(clock).from_state(state_event(done_job(job_id="j2"), options={}))


@pytest.mark.parametrize("job_target, input_target, key, expected", [
    ("eu", "us", "inbox/hopex/target=fr/x.mgl", "eu"),
    (None, "us", "inbox/hopex/target=fr/x.mgl", "us"),
    (None, None, "inbox/hopex/target=fr/x.mgl", "fr"),
    ("Bad Name!", None, "inbox/hopex/x.mgl", "default"),
    (None, None, "inbox/hopex/x.mgl", "default"),
])
def test_the_target_is_the_steps_then_the_inputs_then_the_keys(account, job_target, input_target, key, expected):
    extra = {"target": input_target} if input_target else {}
    record = account.finalizer(clock).from_state(state_event(done_job(target=job_target), key=key, **extra))
    assert record["target"] == expected


def test_vendor_seconds_is_the_wait_of_a_success_only(account):
    assert account.finalizer(clock).from_state(state_event(done_job()))["vendor_seconds"] == 35
    failed = state_event(done_job(job_id="j2", state="FAILED", message="no"))
    assert account.finalizer(clock).from_state(failed)["vendor_seconds"] is None
    no_wait = state_event(done_job(job_id="j3", waited_seconds=0))
    assert account.finalizer(clock).from_state(no_wait)["vendor_seconds"] is None


def test_continued_executions_are_listed_as_arns(account):
    job = done_job(executions=[JOB, "next-1"], executions_count=7)
    record = account.finalizer(clock).from_state(state_event(job))
    prefix = ARN.rsplit(":", 1)[0]
    assert record["executions"] == [f"{prefix}:{JOB}", f"{prefix}:next-1"]
    assert record["executions_count"] == 7
    # 2 + 3 x 3 polls + 1 + 0 retries + 4 x 6 continuations
    assert record["cost"]["state_transitions"] == 36


# -- usage and cost from the jobs table ----------------------------------------------------------------
def test_without_earlier_attempts_in_the_table_nothing_is_a_retry(account):
    job = done_job(usage={"lambda_invocations": 3, "lambda_gb_seconds": 1.5})
    record = account.finalizer(clock).from_state(state_event(job))
    # Submit + 2 polls counted in the payload, this Finalize makes 4; the table saw 1 (this one)
    assert record["cost"]["lambda_invocations"] == 4
    assert record["cost"]["state_transitions"] == 12  # 2 + 3 x 3 polls + 1
    assert (record["cost"]["retries"], record["cost"]["vendor_requests"]) == (0, None)
    assert 1.5 <= record["cost"]["lambda_gb_seconds"] < 2.5


def seven_attempts(account):
    for _ in range(6):
        account.jobs.count_invocation(JOB, "hopex")
    account.jobs.add_usage(JOB, 9.0, requests=10, retries=2)


def test_attempts_the_table_counted_beyond_the_payloads_are_retried_steps(account):
    seven_attempts(account)
    job = done_job(usage={"lambda_invocations": 4, "lambda_gb_seconds": 1.5},
                   counts={"polls": 3, "requests": 8, "retries": 1})
    record = account.finalizer(clock).from_state(state_event(job))
    # 7 attempts in the table (this Finalize included), 5 in the payload: 2 retried steps
    assert record["cost"]["lambda_invocations"] == 7
    assert record["cost"]["state_transitions"] == 14  # 2 + 9 + 1 + 2 retries
    assert record["cost"]["retries"] == 4  # 2 HTTP retries + 2 retried steps
    assert record["cost"]["vendor_requests"] == 10
    assert record["counts"] == {"polls": 3, "requests": 10, "retries": 4, "rejected": 0}
    assert 9.0 <= record["cost"]["lambda_gb_seconds"] < 10.0


def test_the_attempt_whose_error_was_caught_is_not_a_retry(account):
    seven_attempts(account)
    job = done_job(usage={"lambda_invocations": 4, "lambda_gb_seconds": 1.5}, counts={"polls": 3})
    record = account.finalizer(clock).from_state(
        state_event(job, error={"Error": "VendorUnavailableError", "Cause": "down"}))
    # 2 + 9 + 1 + 1 retry + the failed poll's Wait, Poll and the Choice its Catch goes to
    assert record["cost"]["state_transitions"] == 2 + 9 + 1 + 1 + 3
    assert record["cost"]["retries"] == 3
    assert record["counts"] == {"polls": 3, "rejected": 0}  # the connector counted no requests nor retries


def test_counts_larger_than_the_tables_are_kept(account):
    seven_attempts(account)
    job = done_job(usage={"lambda_invocations": 4}, counts={"requests": 50, "retries": 9})
    record = account.finalizer(clock).from_state(state_event(job))
    assert (record["counts"]["requests"], record["counts"]["retries"]) == (50, 9)


# -- executions that ended without Finalize ----------------------------------------------------------------
@pytest.mark.parametrize("status, state, error_type", [
    ("TIMED_OUT", "TIMED_OUT", "DeadlineExceeded"),
    ("ABORTED", "FAILED", "ExecutionAborted"),
    # not a documented type: InternalError, the name in front of the message (errors.documented_error)
    ("FAILED", "FAILED", "InternalError"),
])
def test_an_execution_ended_without_finalize_says_how(account, status, state, error_type):
    record = account.finalizer(clock).from_execution_event(execution_event(status))
    assert (record["state"], record["error"]["type"], record["message"]) == (
        state, error_type, f"the execution ended {status} before finalizing")
    assert record["started_at"] == "2024-05-01T10:00:00.000000Z"
    assert record["execution_arn"] == ARN


def test_a_console_start_with_a_json_string_is_an_input_error(account):
    event = execution_event("FAILED")
    event["detail"]["input"] = json.dumps("inbox/hopex/clean.mgl")
    record = account.finalizer(clock).from_execution_event(event)
    assert record["error"] == {"type": "InputError", "message": 'the execution input must be a JSON object like '
                                                                '{"bucket": "...", "key": "inbox/<vendor>/..."}'}
    assert (record["vendor"], record["source"]["key"]) == ("hopex", None)


def test_a_lambda_cause_gives_the_message_of_an_ended_execution(account):
    cause = json.dumps({"errorType": "VendorUnavailableError", "errorMessage": "HOPEX is down"})
    record = account.finalizer(clock).from_execution_event(execution_event("FAILED", error="States.TaskFailed",
                                                                           cause=cause))
    assert record["error"] == {"type": "VendorUnavailableError", "message": "HOPEX is down"}
    assert record["message"] == "HOPEX is down"


def test_an_ended_continued_execution_is_recorded_under_the_first_executions_job(account):
    event = execution_event("TIMED_OUT", name="next-execution")
    event["detail"]["input"] = json.dumps({"bucket": "unit-import-bucket", "key": "inbox/hopex/clean.mgl",
                                           "job": {"job_id": JOB, "executions": [JOB, "next-execution"],
                                                   "executions_count": 2, "other": "x"}})
    record = account.finalizer(clock).from_execution_event(event)
    assert record["job_id"] == JOB
    assert record["executions_count"] == 2
    assert [arn.rsplit(":", 1)[1] for arn in record["executions"]] == [JOB, "next-execution"]


@pytest.mark.parametrize("state, default", [
    ("FAILED", "the import failed"),
    ("TIMED_OUT", "the vendor job did not finish before the deadline"),
    ("VALIDATED", "dry run: the file passed the local checks; nothing was sent"),
])
def test_the_default_message_of_each_end(account, state, default):
    record = account.finalizer(clock).from_state(state_event(done_job(state=state, message="")))
    assert record["message"] == default


def test_the_default_message_of_a_success_with_rejects(account):
    account.store.stage_rejects(JOB, "step-000001", [RejectRow("1", "bad", "E1")], None)
    record = account.finalizer(clock).from_state(state_event(done_job(message="")))
    assert (record["state"], record["message"]) == (
        "SUCCEEDED_WITH_REJECTS", "the vendor imported the file and rejected some records")


def test_an_execution_event_after_a_failed_publish_sends_the_written_record(account):
    finalizer = account.finalizer(clock)
    publish = finalizer.notifier.publish
    finalizer.notifier.publish = lambda record: (_ for _ in ()).throw(RuntimeError("SNS throttled"))
    with pytest.raises(RuntimeError):
        finalizer.from_state(state_event(done_job(state="FAILED", message="HOPEX failed")))
    finalizer.notifier.publish = publish
    record = finalizer.from_execution_event(execution_event("FAILED", error="States.TaskFailed"))
    assert (record["job_id"], record["state"], record["message"]) == (JOB, "FAILED", "HOPEX failed")
    (message,) = account.messages()
    assert (message["body"]["job_id"], message["body"]["message"]) == (JOB, "HOPEX failed")


def test_an_execution_event_without_a_status_is_a_failure(account):
    event = execution_event("FAILED")
    del event["detail"]["status"]
    record = account.finalizer(clock).from_execution_event(event)
    assert (record["state"], record["message"]) == ("FAILED", "the execution ended FAILED before finalizing")


def test_an_execution_input_that_is_not_json_is_no_input(account):
    event = execution_event("FAILED")
    event["detail"]["input"] = "{not json"
    record = account.finalizer(clock).from_execution_event(event)
    # not an InputError: nothing says the user typed it; the key is unknown, the vendor is the machine's
    assert record["error"] == {"type": "InternalError",
                               "message": "ExecutionFailed: the execution ended FAILED before finalizing"}
    assert (record["vendor"], record["source"]["key"]) == ("hopex", None)


def test_a_carried_job_that_is_not_an_object_is_ignored(account):
    event = execution_event("TIMED_OUT")
    event["detail"]["input"] = json.dumps({"bucket": "unit-import-bucket", "key": "inbox/hopex/clean.mgl",
                                           "job": "not an object"})
    record = account.finalizer(clock).from_execution_event(event)
    assert (record["job_id"], record["state"]) == (JOB, "TIMED_OUT")


def test_an_execution_event_without_a_name_is_recorded_as_unknown(account):
    event = execution_event("TIMED_OUT")
    del event["detail"]["name"]
    assert account.finalizer(clock).from_execution_event(event)["job_id"] == "unknown"


def caught(job):
    return state_event(job, error={"Error": "VendorUnavailableError", "Cause": "down"})


def test_a_caught_error_reports_the_counts_the_failed_step_checkpointed(account):
    account.jobs.save_checkpoint(JOB, "hopex", 4, {"cursor": 120, "counts": {"sent": 50, "accepted": 48}},
                                 "2024-05-01T10:00:30.000Z")
    job = done_job(done=False, state=None, counts={"sent": 40, "polls": 3})
    record = account.finalizer(clock).from_state(caught(job))
    assert record["counts"] == {"sent": 50, "accepted": 48, "polls": 3, "rejected": 0}


def test_a_continued_executions_caught_error_reports_the_counts_checkpointed_under_its_job(account):
    # the vendor step checkpoints under the job id (the first execution's name), whichever execution runs
    account.jobs.save_checkpoint(JOB, "hopex", 4, {"cursor": 120, "counts": {"sent": 50, "accepted": 48}},
                                 "2024-05-01T10:00:30.000Z")
    job = done_job(done=False, state=None, counts={"sent": 40, "polls": 3})
    record = account.finalizer(clock).from_state({**caught(job), "execution_name": f"{JOB}-c-2"})
    assert record["job_id"] == JOB
    assert record["counts"] == {"sent": 50, "accepted": 48, "polls": 3, "rejected": 0}


def test_a_checkpoint_without_counts_leaves_the_last_steps_counts(account):
    account.jobs.save_checkpoint(JOB, "hopex", 4, {"cursor": 120}, "2024-05-01T10:00:30.000Z")
    job = done_job(done=False, state=None, counts={"sent": 40})
    assert account.finalizer(clock).from_state(caught(job))["counts"] == {"sent": 40, "rejected": 0}


def test_checkpointed_counts_apply_to_a_job_that_had_none(account):
    account.jobs.save_checkpoint(JOB, "hopex", 1, {"counts": {"sent": 7}}, "2024-05-01T10:00:30.000Z")
    job = done_job(done=False, state=None, counts=None)
    assert account.finalizer(clock).from_state(caught(job))["counts"] == {"sent": 7, "rejected": 0}


# -- the rejects files ----------------------------------------------------------------------------------
def test_raw_rejects_without_a_format_are_bytes_named_after_the_upload_without_its_folder(account):
    account.store.stage_rejects(JOB, "part-1", [RejectRow("1", "bad", "E1")], b"r1\n")
    account.store.stage_rejects(JOB, "part-2", [RejectRow("2", "bad", "E2")], b"r2\n")
    record = account.finalizer(clock).from_state(state_event(done_job(source_name="sub/dir/x.mgl")))
    assert record["rejects"] == {"csv_uri": f"s3://unit-import-bucket/rejects/hopex/{JOB}/x.mgl.rejects.csv",
                                 "raw_uri": f"s3://unit-import-bucket/rejects/hopex/{JOB}/x.mgl.rejects", "rows": 2}
    assert account.read(record["rejects"]["raw_uri"]) == b"r1\nr2\n"
    head = account.s3.head_object(Bucket=account.bucket, Key=f"rejects/hopex/{JOB}/x.mgl.rejects")
    assert head["ContentType"] == "application/octet-stream"
    csv_head = account.s3.head_object(Bucket=account.bucket, Key=f"rejects/hopex/{JOB}/x.mgl.rejects.csv")
    assert csv_head["ContentType"] == "text/csv"


def test_rejects_of_a_job_without_a_source_name_are_named_upload(account):
    account.store.stage_rejects(JOB, "part-1", [RejectRow("1", "bad", "E1")], None)
    job = done_job()
    del job["source_name"]
    record = account.finalizer(clock).from_state(state_event(job))
    assert record["rejects"]["csv_uri"] == f"s3://unit-import-bucket/rejects/hopex/{JOB}/upload.rejects.csv"


def test_rows_of_a_vendor_whose_rejects_are_messages_are_not_counted_as_records(account):
    account.store.stage_rejects(JOB, "part-1", [RejectRow("", "a message", "")], None)
    record = account.finalizer(clock).from_state(state_event(done_job(rejects_are_records=False)))
    assert record["rejects"]["rows"] == 1
    assert "rejected" not in record["counts"]


# -- the vendor guard's slot: whatever ends an import frees it (Finalizer._release) ------------------------------

def _guarded(account):
    """A finalizer with a real guard (moto DynamoDB); ``holders(target)`` lists who holds a slot."""
    from vendor_import.dal.guard_table import GuardTable
    from vendor_import.logic.guard import Guard

    from ..conftest import JOBS_TABLE

    finalizer = account.finalizer(clock)
    table = GuardTable(account.dynamodb.Table(JOBS_TABLE))
    finalizer.guard = Guard(table, describe=lambda arn: "RUNNING", clock=clock)

    def holders(target="default", vendor="hopex"):
        return sorted(table.read(f"guard#{vendor}#{target}")["holders"])

    return finalizer, holders


def test_an_ended_execution_frees_its_slot_on_the_target_named_in_its_key(account):
    finalizer, holders = _guarded(account)
    finalizer.guard.acquire("hopex", "prod", JOB, ARN, limit=2)
    finalizer.guard.acquire("hopex", "default", JOB, ARN, limit=2)  # the same job id on another target stays
    event = execution_event("ABORTED", key="inbox/hopex/target=prod/clean.mgl")
    assert finalizer.from_execution_event(event)["state"] == "FAILED"
    assert (holders("prod"), holders("default")) == ([], [JOB])


def test_an_ended_execution_without_a_usable_key_frees_the_slot_of_its_state_machines_vendor(account):
    finalizer, holders = _guarded(account)
    finalizer.guard.acquire("hopex", "default", JOB, ARN, limit=2)
    record = finalizer.from_execution_event(execution_event("ABORTED", key="typo/clean.mgl"))
    assert record["vendor"] == "hopex" and holders() == []


def test_an_ended_execution_does_not_free_a_slot_its_continued_execution_holds(account):
    finalizer, holders = _guarded(account)
    finalizer.guard.acquire("hopex", "default", JOB, ARN + "-c-1", limit=2)  # the poll loop went on
    finalizer.from_execution_event(execution_event("ABORTED"))
    assert holders() == [JOB]


def test_an_ended_continued_execution_frees_the_slot_it_holds_under_the_first_executions_job_id(account):
    finalizer, holders = _guarded(account)
    arn = ARN.rsplit(":", 1)[0] + ":next-execution"
    finalizer.guard.acquire("hopex", "default", JOB, arn, limit=2)
    event = execution_event("TIMED_OUT", name="next-execution")
    event["detail"]["executionArn"] = arn
    event["detail"]["input"] = json.dumps({"bucket": "unit-import-bucket", "key": "inbox/hopex/clean.mgl",
                                           "job": {"job_id": JOB, "executions": [JOB, "next-execution"],
                                                   "executions_count": 150}})
    record = finalizer.from_execution_event(event)
    assert holders() == []
    # the count carried wins over the names kept (an execution keeps the last 100 names only)
    assert (record["job_id"], record["executions_count"]) == (JOB, 150)
    assert record["error"] == {"type": "DeadlineExceeded", "message": "the execution ended TIMED_OUT before finalizing"}


def test_finalize_frees_the_slot_on_the_steps_target_for_the_steps_job(account):
    finalizer, holders = _guarded(account)
    for target in ("prod", "default"):
        finalizer.guard.acquire("hopex", target, JOB, ARN, limit=2)
    finalizer.from_state(state_event(done_job(target="prod")))
    assert (holders("prod"), holders("default")) == ([], [JOB])


def test_finalize_of_a_failed_submit_frees_the_slot_on_the_target_the_jobs_table_noted(account):
    # the submit chose "prod" from the upload's metadata, queued (the jobs table says so), then failed:
    # $.job is empty, the input names no target
    finalizer, holders = _guarded(account)
    for target in ("prod", "default"):
        finalizer.guard.acquire("hopex", target, JOB, ARN, limit=2)
    account.jobs.mark_running(JOB, "hopex", {"state": "QUEUED", "target": "prod"})
    record = finalizer.from_state(state_event(error={"Error": "VendorAuthError", "Cause": "denied"}))
    assert record["state"] == "FAILED"
    assert (holders("prod"), holders("default")) == ([], [JOB])


def test_finalize_without_a_noted_target_frees_the_slot_on_the_inputs_target(account):
    finalizer, holders = _guarded(account)
    for target in ("prod", "default"):
        finalizer.guard.acquire("hopex", target, JOB, ARN, limit=2)
    finalizer.from_state(state_event(error={"Error": "InputError", "Cause": "bad"}, target="prod"))
    assert (holders("prod"), holders("default")) == ([], [JOB])


def test_finalize_whose_jobs_table_cannot_be_read_still_frees_the_inputs_target(account):
    finalizer, holders = _guarded(account)
    finalizer.guard.acquire("hopex", "prod", JOB, ARN, limit=2)

    def unreadable(job_id):
        raise RuntimeError("DynamoDB is throttling")

    finalizer.jobs.get = unreadable
    with pytest.raises(RuntimeError):  # the record itself needs the table: the state's Retry runs it again
        finalizer.from_state(state_event(error={"Error": "InputError", "Cause": "bad"},
                                         key="inbox/hopex/target=prod/clean.mgl"))
    assert holders("prod") == []  # but the slot was freed first


def test_finalize_of_an_input_without_a_job_id_frees_the_slot_of_the_execution_name(account):
    finalizer, holders = _guarded(account)
    finalizer.guard.acquire("hopex", "default", JOB, ARN, limit=2)
    finalizer.from_state(state_event(error={"Error": "InputError", "Cause": "bad"}))  # no $.job at all
    assert holders() == []


def test_finalize_of_a_key_without_a_vendor_frees_the_slot_of_its_state_machines_vendor(account):
    finalizer, holders = _guarded(account)
    finalizer.guard.acquire("hopex", "default", JOB, ARN, limit=2)
    finalizer.from_state(state_event(error={"Error": "InputError", "Cause": "bad"}, key="typo/clean.mgl"))
    assert holders() == []


def test_the_keys_vendor_wins_over_the_state_machines(account):
    # a console start of the hopex state machine with a cirrus key: the record, its message and the slot
    # freed are the key's vendor's (the vendor step refuses such an input; this is the record of how it ended)
    finalizer, holders = _guarded(account)
    finalizer.guard.acquire("cirrus", "default", JOB, ARN, limit=2)
    record = finalizer.from_execution_event(execution_event("ABORTED", key="inbox/cirrus/a.xml"))
    assert (record["vendor"], record["job_id"]) == ("cirrus", JOB)
    assert holders(vendor="cirrus") == []


@pytest.mark.parametrize("arn, vendor", [
    ("arn:aws:states:us-east-1:123456789012:stateMachine:s3-vendor-import-hopex-import", "hopex"),
    # a stack name without a dash: the name alone is read, not the ARN's region (us-east-1)
    ("arn:aws:states:us-east-1:123456789012:stateMachine:cirrus-import", "cirrus"),
    ("arn:aws:states:us-east-1:123456789012:stateMachine:-import", "unknown"),
    ("arn:aws:states:us-east-1:123456789012:stateMachine:s3-vendor-import-aep", "unknown"),
    (None, "unknown"),
])
def test_without_a_usable_key_the_vendor_is_the_state_machines(arn, vendor):
    from vendor_import.logic.finalize import _vendor_from

    assert _vendor_from("typo/a.xml", arn) == vendor
    assert _vendor_from("inbox/simplemente/a.txt", arn) == "simplemente"


def test_a_continued_executions_finalize_frees_the_slot_of_the_first_executions_job_id(account):
    finalizer, holders = _guarded(account)
    finalizer.guard.acquire("hopex", "default", JOB, ARN, limit=2)
    event = {**state_event(done_job()), "execution_name": "next-execution"}
    finalizer.from_state(event)
    assert holders() == []


def test_finalize_frees_the_slot_of_the_jobs_vendor_when_nothing_else_names_it(account):
    finalizer, holders = _guarded(account)
    finalizer.guard.acquire("hopex", "default", JOB, ARN, limit=2)
    event = state_event(done_job(), key="typo/clean.mgl")
    del event["state_machine_arn"]
    record = finalizer.from_state(event)
    assert record["vendor"] == "hopex" and holders() == []


# -- texts too long for the state: the step kept them whole in S3 --------------------------------------------------

LONG_REASON = "HOPEX refused the file: " + "; ".join(["the object type is unknown"] * 400)  # 11,222 characters


def _status_json(account, vendor="hopex"):
    return json.loads(account.read(f"status/{vendor}/{JOB}.json"))


def test_a_caught_error_cut_for_the_state_is_read_whole_from_s3(account):
    from vendor_import import limits

    account.s3.put_object(Bucket=account.bucket, Key=f"work/{JOB}/error.txt", Body=LONG_REASON.encode())
    cut = limits.cut(LONG_REASON, 1_000)
    error = {"Error": "VendorRejectedError", "Cause": json.dumps({"errorMessage": cut})}
    account.finalizer(clock).from_state(state_event(done_job(), error=error))
    status = _status_json(account)
    assert status["error"] == {"type": "VendorRejectedError", "message": LONG_REASON}
    assert status["message"] == LONG_REASON


def test_a_continued_executions_cut_error_is_read_whole_from_its_jobs_text(account):
    from vendor_import import limits

    account.s3.put_object(Bucket=account.bucket, Key=f"work/{JOB}/error.txt", Body=LONG_REASON.encode())
    error = {"Error": "VendorRejectedError", "Cause": json.dumps({"errorMessage": limits.cut(LONG_REASON, 1_000)})}
    account.finalizer(clock).from_state({**state_event(done_job(), error=error), "execution_name": f"{JOB}-c-2"})
    assert _status_json(account)["error"] == {"type": "VendorRejectedError", "message": LONG_REASON}


def test_a_cut_error_whose_whole_text_is_gone_keeps_the_cut_text(account):
    from vendor_import import limits

    cut = limits.cut(LONG_REASON, 1_000)
    error = {"Error": "VendorRejectedError", "Cause": json.dumps({"errorMessage": cut})}
    account.finalizer(clock).from_state(state_event(done_job(), error=error))
    assert _status_json(account)["error"] == {"type": "VendorRejectedError", "message": cut}


def test_an_error_that_only_mentions_the_marker_elsewhere_is_not_looked_up(account):
    # only a text that ends with the marker was cut; S3 is not read for another
    account.s3.put_object(Bucket=account.bucket, Key=f"work/{JOB}/error.txt", Body=b"another text")
    text = "characters cut: the whole text is in the status JSON in S3] said the vendor, oddly"
    account.finalizer(clock).from_state(state_event(done_job(), error={"Error": "VendorRejectedError", "Cause": text}))
    assert _status_json(account)["error"] == {"type": "VendorRejectedError", "message": text}


def test_a_final_message_kept_in_s3_is_the_records_message(account):
    from vendor_import import limits

    account.s3.put_object(Bucket=account.bucket, Key=f"work/{JOB}/message.txt", Body=LONG_REASON.encode())
    job = done_job("FAILED", message=limits.cut(LONG_REASON, 1_000), message_key=f"work/{JOB}/message.txt",
                   error_type="VendorRejectedError")
    account.finalizer(clock).from_state(state_event(job))
    status = _status_json(account)
    assert status["message"] == LONG_REASON
    assert status["error"] == {"type": "VendorRejectedError", "message": LONG_REASON}


# -- the record's fields that a test had not pinned (make mutation, run 13) ---------------------------------------

@pytest.mark.parametrize("inp_dry, job_dry, expected", [(True, None, True), (None, True, True), (None, None, False),
                                                        (False, False, False)])
def test_a_dry_run_is_one_the_input_or_the_job_says_so(account, inp_dry, job_dry, expected):
    event = state_event(done_job(state="VALIDATED", dry_run=job_dry), dry_run=inp_dry)
    assert account.finalizer(clock).from_state(event)["dry_run"] is expected


def test_without_a_start_or_submit_time_the_record_starts_now_on_its_clock(account):
    event = state_event(done_job(submitted_at=None))
    event["started_at"] = None
    record = account.finalizer(clock).from_state(event)
    assert (record["started_at"], record["finished_at"], record["duration_seconds"]) == (
        "2024-05-01T10:01:00.000000Z", "2024-05-01T10:01:00.000000Z", 0.0)
    assert _status_json(account)["updated_at"] == "2024-05-01T10:01:00.000000Z"


def test_a_job_without_polls_records_none(account):
    job = done_job()
    del job["polls"]
    assert account.finalizer(clock).from_state(state_event(job))["polls"] == 0


def test_an_invocation_count_that_fails_costs_no_retry_and_keeps_the_record(account):
    finalizer = account.finalizer(clock)

    def throttled(job_id, vendor):
        raise RuntimeError("ProvisionedThroughputExceededException")

    finalizer.jobs.count_invocation = throttled
    job = done_job(usage={"lambda_invocations": 3, "lambda_gb_seconds": 1.5})
    record = finalizer.from_state(state_event(job, error={"Error": "VendorUnavailableError", "Cause": "down"}))
    assert record["state"] == "FAILED"
    assert (record["cost"]["retries"], record["cost"]["lambda_invocations"]) == (0, 4)


def test_a_caught_error_at_the_only_attempt_is_no_retry(account):
    # the table counted exactly the payload's steps and this Finalize: the failed attempt was the last one
    for _ in range(4):
        account.jobs.count_invocation(JOB, "hopex")
    job = done_job(usage={"lambda_invocations": 4, "lambda_gb_seconds": 1.5}, counts={"polls": 3})
    record = account.finalizer(clock).from_state(
        state_event(job, error={"Error": "VendorUnavailableError", "Cause": "down"}))
    assert record["cost"]["retries"] == 0


def test_a_connector_that_counted_no_requests_keeps_zero_when_the_table_saw_none(account):
    account.jobs.add_usage(JOB, 1.0, requests=0, retries=0)
    job = done_job(counts={"polls": 3, "requests": 0})
    assert account.finalizer(clock).from_state(state_event(job))["counts"]["requests"] == 0


@pytest.mark.parametrize("guard, transitions", [
    ({"checks": 2, "queued_seconds": 60}, 12 + 3 * 2),  # each check: Wait in queue, Submit, Choice
    ({"queued_seconds": 0}, 12),  # never queued
    ("checks=2", 12),  # not the step's counters: nothing counted
    (None, 12),
])
def test_each_check_of_a_queued_import_costs_three_states(account, guard, transitions):
    record = account.finalizer(clock).from_state(state_event(done_job(guard=guard)))
    assert record["cost"]["state_transitions"] == transitions  # 2 + 3 x 3 polls + 1, then the queue's


@pytest.mark.parametrize("extra, settle_error, transitions", [
    ({"settled": "2 records not sent"}, None, 12 + 3 + 1),  # the failed poll's Wait, Poll, Choice; Settle
    ({"settled": ""}, None, 12 + 3 + 1),  # Settle ran and found nothing left
    ({}, {"Error": "Lambda.Unknown", "Cause": "out of memory"}, 12 + 3 + 1),  # Settle ran and failed
    ({}, None, 12 + 3),  # a file vendor: no Settle step
])
def test_a_settle_step_costs_one_state(account, extra, settle_error, transitions):
    job = done_job(done=False, state=None, **extra)
    error = {"Error": "VendorUnavailableError", "Cause": "down"}
    event = state_event(job, error=error, **({"settle_error": settle_error} if settle_error else {}))
    assert account.finalizer(clock).from_state(event)["cost"]["state_transitions"] == transitions


def test_the_retries_a_connector_counted_below_the_tables_become_the_tables(account):
    account.jobs.add_usage(JOB, 1.0, requests=5, retries=3)
    record = account.finalizer(clock).from_state(state_event(done_job(counts={"polls": 3, "retries": 0})))
    assert record["counts"]["retries"] == 3 and record["cost"]["retries"] == 3


def test_the_steps_target_wins_over_the_one_the_jobs_table_noted(account):
    finalizer, holders = _guarded(account)
    for target in ("prod", "eu"):
        finalizer.guard.acquire("hopex", target, JOB, ARN, limit=2)
    account.jobs.mark_running(JOB, "hopex", {"state": "RUNNING", "target": "eu"})
    finalizer.from_state(state_event(done_job(target="prod")))
    assert (holders("prod"), holders("eu")) == ([], [JOB])
