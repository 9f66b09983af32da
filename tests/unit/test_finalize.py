"""Finalize against moto S3, DynamoDB and SNS: rejects, status record, one SNS message."""

from __future__ import annotations

import csv
import io
import json

import pytest
from vendor_import.dal.s3_layout import status_key
from vendor_import.model import RejectRow

JOB = "hopex-clean-mgl-0123456789abcdef0123456789abcdef"
ARN = f"arn:aws:states:us-east-1:123456789012:execution:s3-vendor-import-hopex-import:{JOB}"
SM_ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:s3-vendor-import-hopex-import"
STARTED = "2024-05-01T10:00:00.000Z"
NOW = 1714557660.0  # 2024-05-01T10:01:00Z


def clock():
    return NOW


def state_event(job=None, error=None, *, key="inbox/hopex/clean.mgl", **inp_extra):
    inp = {"bucket": "unit-import-bucket", "key": key, "version_id": "v1", "etag": "e1", "size": 120, **inp_extra}
    if job is not None:
        inp["job"] = job
    if error is not None:
        inp["error"] = error
    return {"input": inp, "execution_name": JOB, "execution_arn": ARN, "started_at": STARTED,
            "state_machine_arn": SM_ARN}


def done_job(state="SUCCEEDED", **extra):
    return {"job_id": JOB, "vendor": "hopex", "source_name": "clean.mgl", "size": 120, "polls": 3,
            "waited_seconds": 35, "dry_run": False, "submitted_at": STARTED, "done": True, "state": state,
            "wait_seconds": 0, "connector": {"job_id": "J-1"}, "counts": {"polls": 3}, "vendor_ref": "J-1",
            "message": "HOPEX imported clean.mgl without rejects (job J-1).", "error_type": None,
            "raw_format": None, **extra}


def execution_event(status="TIMED_OUT", *, name=JOB, key="inbox/hopex/clean.mgl", error=None, cause=None):
    return {
        "version": "0", "source": "aws.states", "detail-type": "Step Functions Execution Status Change",
        "detail": {"executionArn": ARN, "stateMachineArn": SM_ARN, "name": name, "status": status,
                   "startDate": 1714557600000, "stopDate": 1714557660000,
                   "input": json.dumps({"bucket": "unit-import-bucket", "key": key}),
                   "error": error, "cause": cause},
    }


# -- the status record ---------------------------------------------------------------------------------------

def test_status_record_fields_for_a_success(account):
    record = account.finalizer(clock).from_state(state_event(done_job()))
    assert record["job_id"] == JOB
    assert record["vendor"] == "hopex"
    assert record["state"] == "SUCCEEDED"
    assert record["message"] == "HOPEX imported clean.mgl without rejects (job J-1)."
    assert record["source"] == {"uri": "s3://unit-import-bucket/inbox/hopex/clean.mgl", "bucket": "unit-import-bucket",
                                "key": "inbox/hopex/clean.mgl", "version_id": "v1", "size": 120, "etag": "e1"}
    assert record["vendor_ref"] == "J-1"
    assert record["counts"] == {"polls": 3, "rejected": 0}
    assert record["error"] is None
    assert record["execution_arn"] == ARN
    assert record["started_at"] == STARTED
    assert record["finished_at"] == "2024-05-01T10:01:00.000000Z"
    assert record["duration_seconds"] == 60.0
    assert (record["polls"], record["waited_seconds"]) == (3, 35)
    assert record["dry_run"] is False
    assert record["rejects"] == {"csv_uri": None, "raw_uri": None, "rows": 0}
    assert record["status_uri"] == f"s3://unit-import-bucket/{status_key('hopex', JOB)}"


def test_status_record_is_written_to_dynamodb_and_to_s3(account):
    record = account.finalizer(clock).from_state(state_event(done_job()))
    (item,) = account.status_items()
    assert {k: v for k, v in item.items() if k != "notified_at"} == record
    assert item["notified_at"] == "2024-05-01T10:01:00.000000Z"
    assert json.loads(account.read(record["status_uri"])) == record


def test_one_sns_message_with_vendor_and_state_attributes(account):
    record = account.finalizer(clock).from_state(state_event(done_job()))
    (message,) = account.messages()
    assert message["attributes"] == {"vendor": "hopex", "target": "default", "state": "SUCCEEDED", "dry_run": "false"}
    assert message["subject"] == "[hopex] SUCCEEDED: clean.mgl"
    assert message["body"] == record


def test_sns_subject_stays_within_sns_limits(account):
    key = "inbox/hopex/" + "é" * 150 + ".mgl"
    account.finalizer(clock).from_state(state_event(done_job(), key=key))
    (message,) = account.messages()
    assert len(message["subject"]) <= 100 and message["subject"].isascii()


def test_default_message_when_the_vendor_gave_none(account):
    record = account.finalizer(clock).from_state(state_event(done_job(message="")))
    assert record["message"] == "the vendor imported the file"


def test_finished_dry_run_is_marked_in_record_and_message(account):
    record = account.finalizer(clock).from_state(
        state_event(done_job(state="VALIDATED", dry_run=True, message="dry run: ok"), dry_run=True))
    assert record["state"] == "VALIDATED" and record["dry_run"] is True
    (message,) = account.messages()
    assert message["attributes"]["dry_run"] == "true"
    assert message["subject"].startswith("[hopex] VALIDATED (dry run)")


# -- rejects ------------------------------------------------------------------------------------------------------

def stage(account, part, rows, raw=None):
    account.store.stage_rejects(JOB, part, [RejectRow(*r) for r in rows], raw)


def test_rejects_parts_are_concatenated_in_part_order_with_header_and_footer(account):
    stage(account, "part-000000000000200", [("3", "bad three", "E3")], b"<r>3</r>\n")
    stage(account, "part-000000000000000", [("1", "bad one", "E1")], b"<r>1</r>\n")
    stage(account, "part-000000000000100", [("2", "bad, two \"quoted\"", "E2")], b"<r>2</r>\n")
    job = done_job(raw_format={"name": "clean.mgl.rejects.xml", "content_type": "application/xml",
                               "header": "<Data>\n", "footer": "</Data>\n"})
    record = account.finalizer(clock).from_state(state_event(job))
    rejects = record["rejects"]
    assert rejects["csv_uri"] == f"s3://unit-import-bucket/rejects/hopex/{JOB}/clean.mgl.rejects.csv"
    assert rejects["raw_uri"] == f"s3://unit-import-bucket/rejects/hopex/{JOB}/clean.mgl.rejects.xml"
    rows = list(csv.reader(io.StringIO(account.read(rejects["csv_uri"]).decode())))
    assert rows == [["record", "code", "reason"], ["1", "E1", "bad one"], ["2", "E2", 'bad, two "quoted"'],
                    ["3", "E3", "bad three"]]
    assert account.read(rejects["raw_uri"]) == b"<Data>\n<r>1</r>\n<r>2</r>\n<r>3</r>\n</Data>\n"
    head = account.s3.head_object(Bucket=account.bucket, Key=rejects["raw_uri"].split("/", 3)[3])
    assert head["ContentType"] == "application/xml"
    assert rejects["rows"] == 3 and record["counts"]["rejected"] == 3


def test_rejects_csv_without_raw_part(account):
    stage(account, "step-000003", [("7", "unknown metaclass", "")])
    record = account.finalizer(clock).from_state(state_event(done_job()))
    assert record["rejects"]["raw_uri"] is None
    assert account.read(record["rejects"]["csv_uri"]) == b"record,code,reason\n7,,unknown metaclass\n"


def test_raw_rejects_without_a_format_are_named_after_the_upload(account):
    stage(account, "step-000003", [("1", "x", "")], b"line 1: x\n")
    record = account.finalizer(clock).from_state(state_event(done_job()))
    assert record["rejects"]["raw_uri"].endswith(f"/{JOB}/clean.mgl.rejects")


def test_reject_reason_with_a_line_break_still_counts_as_one_row(account):
    stage(account, "step-000003", [("1", "first line\nsecond line", "E"), ("2", "x\r\ny", "E")])
    record = account.finalizer(clock).from_state(state_event(done_job()))
    assert record["rejects"]["rows"] == 2
    rows = list(csv.reader(io.StringIO(account.read(record["rejects"]["csv_uri"]).decode())))
    assert len(rows) == 3


def test_succeeded_becomes_succeeded_with_rejects_when_rows_exist(account):
    stage(account, "step-000003", [("1", "x", "")])
    record = account.finalizer(clock).from_state(state_event(done_job()))
    assert record["state"] == "SUCCEEDED_WITH_REJECTS"
    (message,) = account.messages()
    assert message["attributes"]["state"] == "SUCCEEDED_WITH_REJECTS"


def test_failed_stays_failed_even_with_rejects(account):
    stage(account, "step-000003", [("1", "x", "")])
    record = account.finalizer(clock).from_state(state_event(done_job(state="FAILED", message="HOPEX failed")))
    assert record["state"] == "FAILED" and record["rejects"]["rows"] == 1


def test_rejects_of_another_job_are_not_mixed_in(account):
    account.store.stage_rejects("another-job", "step-000001", [RejectRow("1", "not mine")], b"other")
    record = account.finalizer(clock).from_state(state_event(done_job()))
    assert record["rejects"] == {"csv_uri": None, "raw_uri": None, "rows": 0}


# -- errors ---------------------------------------------------------------------------------------------------------

def test_error_from_a_catch_cause_json(account):
    cause = json.dumps({"errorMessage": "HOPEX UAS token request: UAS refused the credentials",
                        "errorType": "VendorAuthError", "stackTrace": ["  File app.py"]})
    record = account.finalizer(clock).from_state(
        state_event(error={"Error": "VendorAuthError", "Cause": cause}))
    assert record["state"] == "FAILED"
    assert record["message"] == "HOPEX UAS token request: UAS refused the credentials"
    assert record["error"] == {"type": "VendorAuthError",
                               "message": "HOPEX UAS token request: UAS refused the credentials"}


def test_error_cause_that_is_not_json_is_the_message(account):
    record = account.finalizer(clock).from_state(
        state_event(error={"Error": "Lambda.Unknown", "Cause": "The function timed out after 900 seconds"}))
    # a name outside the documented list: InternalError, the original name in front of the message
    assert record["error"] == {"type": "InternalError",
                               "message": "Lambda.Unknown: The function timed out after 900 seconds"}


def test_caught_states_timeout_is_timed_out(account):
    record = account.finalizer(clock).from_state(state_event(error={"Error": "States.Timeout", "Cause": ""}))
    assert record["state"] == "TIMED_OUT"
    assert record["error"] == {"type": "DeadlineExceeded", "message": "a step did not finish in time"}


def test_caught_error_keeps_what_the_last_poll_knew(account):
    job = {**done_job(), "done": False, "state": None, "vendor_ref": "J-77", "counts": {"sent": 40}}
    record = account.finalizer(clock).from_state(
        state_event(job, error={"Error": "VendorUnavailableError", "Cause": "{\"errorMessage\": \"down\"}"}))
    assert record["state"] == "FAILED" and record["vendor_ref"] == "J-77" and record["counts"]["sent"] == 40


def test_a_settled_import_keeps_its_error_and_says_what_was_not_sent(account):
    job = {**done_job(), "done": False, "state": None, "counts": {"accepted": 10, "not_sent": 20},
           "settled": "20 records not sent (NOT_SENT in the rejects file: upload it again once the cause is fixed)"}
    record = account.finalizer(clock).from_state(
        state_event(job, error={"Error": "VendorUnavailableError", "Cause": "{\"errorMessage\": \"down\"}"}))
    assert record["state"] == "FAILED" and record["counts"]["not_sent"] == 20
    assert record["error"] == {"type": "VendorUnavailableError", "message": "down"}
    assert record["message"] == ("down; 20 records not sent (NOT_SENT in the rejects file: upload it again once "
                                 "the cause is fixed)")


def test_records_that_do_not_add_up_when_settled_fail_loudly_with_the_import_error_kept(account):
    job = {**done_job(), "done": False, "state": None, "error_type": "RecordCountMismatch",
           "settled": "record count mismatch: 30 records read from the file, but ..."}
    record = account.finalizer(clock).from_state(
        state_event(job, error={"Error": "VendorUnavailableError", "Cause": "{\"errorMessage\": \"down\"}"}))
    assert record["error"] == {
        "type": "RecordCountMismatch",
        "message": "record count mismatch: 30 records read from the file, but ... (the import had failed: down)"}


def test_a_settle_step_that_failed_still_finalizes_with_the_import_error(account):
    event = state_event({**done_job(), "done": False, "state": None},
                        error={"Error": "VendorAuthError", "Cause": "{\"errorMessage\": \"token revoked\"}"},
                        settle_error={"Error": "Lambda.Unknown", "Cause": "out of memory"})
    record = account.finalizer(clock).from_state(event)
    assert record["error"] == {"type": "VendorAuthError", "message": "token revoked"}
    assert record["message"] == ("token revoked; the records not sent could not all be listed "
                                 "(Lambda.Unknown: out of memory)")


def test_secrets_in_the_error_are_scrubbed(account):
    cause = json.dumps({"errorMessage": "GET https://h/x?authToken=s3cr3tT0ken failed: Authorization: Bearer abc.def"})
    record = account.finalizer(clock).from_state(state_event(error={"Error": "VendorRejectedError", "Cause": cause}))
    text = json.dumps(record) + json.dumps(account.messages())
    assert "s3cr3tT0ken" not in text and "abc.def" not in text


def test_vendor_error_type_reported_by_the_connector_is_kept(account):
    record = account.finalizer(clock).from_state(
        state_event(done_job(state="FAILED", message="mapping unknown", error_type="VendorRejectedError")))
    assert record["error"] == {"type": "VendorRejectedError", "message": "mapping unknown"}


def test_console_start_without_a_key_is_recorded_under_the_state_machines_vendor(account):
    event = state_event(error={"Error": "InputError", "Cause": json.dumps(
        {"errorType": "InputError", "errorMessage": 'input field "key" is missing'})})
    del event["input"]["key"]
    record = account.finalizer(clock).from_state(event)
    assert record["vendor"] == "hopex"
    assert record["message"] == 'input field "key" is missing'
    (message,) = account.messages()
    assert message["attributes"]["vendor"] == "hopex"


# -- EventBridge: executions that ended without Finalize --------------------------------------------------------------

def test_execution_timed_out_event_writes_a_status_when_none_exists(account):
    record = account.finalizer(clock).from_execution_event(execution_event("TIMED_OUT"))
    assert record["state"] == "TIMED_OUT"
    assert record["vendor"] == "hopex"
    assert record["error"] == {"type": "DeadlineExceeded", "message": "the execution ended TIMED_OUT before finalizing"}
    assert record["started_at"] == "2024-05-01T10:00:00.000000Z"
    assert record["source"]["key"] == "inbox/hopex/clean.mgl"
    assert [i["state"] for i in account.status_items()] == ["TIMED_OUT"]
    assert len(account.messages()) == 1


def test_execution_aborted_event_is_failed_with_the_cause(account):
    record = account.finalizer(clock).from_execution_event(
        execution_event("ABORTED", error="LocalRunnerTimeout", cause="still running"))
    assert (record["state"], record["error"], record["message"]) == (
        "FAILED", {"type": "InternalError", "message": "LocalRunnerTimeout: still running"}, "still running")


def test_execution_aborted_without_an_error_name_is_execution_aborted(account):
    record = account.finalizer(clock).from_execution_event(execution_event("ABORTED"))
    assert (record["state"], record["error"]) == (
        "FAILED", {"type": "ExecutionAborted", "message": "the execution ended ABORTED before finalizing"})


def test_execution_event_for_an_execution_already_finalized_does_nothing(account):
    finalizer = account.finalizer(clock)
    first = finalizer.from_state(state_event(done_job(state="FAILED", message="HOPEX failed")))
    account.messages()
    assert finalizer.from_execution_event(execution_event("FAILED", error="States.TaskFailed")) is None
    assert account.status_items()[0]["state"] == first["state"] == "FAILED"
    assert account.messages() == []


def test_execution_event_carries_staged_rejects_into_the_record(account):
    stage(account, "step-000001", [("1", "x", "")])
    record = account.finalizer(clock).from_execution_event(execution_event("TIMED_OUT"))
    assert record["rejects"]["rows"] == 1


# -- idempotency --------------------------------------------------------------------------------------------------

def test_sns_is_published_once_even_when_finalize_runs_twice(account):
    finalizer = account.finalizer(clock)
    first = finalizer.from_state(state_event(done_job()))
    second = finalizer.from_state(state_event(done_job()))
    assert first == second
    assert len(account.messages()) == 1
    (item,) = account.status_items()
    assert item["state"] == "SUCCEEDED" and item["notified_at"]


def test_sns_is_published_once_when_the_event_rule_fires_after_a_retried_finalize(account):
    finalizer = account.finalizer(clock)
    finalizer.from_state(state_event(done_job(state="FAILED", message="x")))
    finalizer.from_state(state_event(done_job(state="FAILED", message="x")))
    finalizer.from_execution_event(execution_event("FAILED"))
    assert len(account.messages()) == 1


def test_a_failed_publish_is_retried_by_the_next_finalize(account):
    finalizer = account.finalizer(clock)
    publish = finalizer.notifier.publish
    finalizer.notifier.publish = lambda record: (_ for _ in ()).throw(RuntimeError("SNS throttled"))
    with pytest.raises(RuntimeError):
        finalizer.from_state(state_event(done_job()))
    finalizer.notifier.publish = publish
    finalizer.from_state(state_event(done_job()))
    assert len(account.messages()) == 1


def test_status_record_replaces_the_running_checkpoint(account):
    jobs = account.jobs
    jobs.mark_running(JOB, "hopex", {"state": "RUNNING", "updated_at": STARTED, "source_key": "k"})
    jobs.save_checkpoint(JOB, "hopex", 2, {"cursor": 10}, STARTED)
    account.finalizer(clock).from_state(state_event(done_job()))
    (item,) = account.status_items()
    assert item["state"] == "SUCCEEDED"
    assert "checkpoint_job" not in item and "checkpoint_poll" not in item
    assert jobs.recent("hopex")[0]["job_id"] == JOB


# -- every FAILED / TIMED_OUT record says why, with a documented type -------------------------------------------------

def test_a_vendor_failure_without_a_named_error_is_vendor_job_failed(account):
    record = account.finalizer(clock).from_state(
        state_event(done_job(state="FAILED", message="HOPEX import job J-1 of clean.mgl failed: reason 'ERROR'")))
    assert record["error"] == {"type": "VendorJobFailed",
                               "message": "HOPEX import job J-1 of clean.mgl failed: reason 'ERROR'"}
    (message,) = account.messages()
    assert message["attributes"]["error_type"] == "VendorJobFailed"
    assert message["body"]["error"] == record["error"]


def test_a_timed_out_job_is_deadline_exceeded(account):
    record = account.finalizer(clock).from_state(
        state_event(done_job(state="TIMED_OUT", message="still running after 90 s")))
    assert (record["state"], record["error"]) == (
        "TIMED_OUT", {"type": "DeadlineExceeded", "message": "still running after 90 s"})


def test_documented_error_types_are_one_list():
    from vendor_import.errors import ERROR_TYPES, documented_error

    assert list(ERROR_TYPES) == [
        "InputError", "SettingsError", "VendorAuthError", "VendorRejectedError", "VendorUnavailableError",
        "VendorThrottledError", "VendorOutcomeUnknownError", "VendorProtocolError", "VendorJobFailed",
        "VendorRefusedAll", "VendorSilent",
        "DeadlineExceeded", "RecordCountMismatch", "RedirectRefused", "ResponseTooLarge", "VendorOutage",
        "ExecutionAborted", "InternalError"]
    assert documented_error("KeyError", "'x'") == ("InternalError", "KeyError: 'x'")
    assert documented_error("States.Timeout", "") == ("DeadlineExceeded",
                                                      "States.Timeout: a step or the execution did not finish in time")


# -- a job that went on in new executions (issue 13, part 2) -------------------------------------------------
NEXT = f"{JOB[:60]}-0123456789ab-1"


def continued_event(status="TIMED_OUT", *, name=NEXT):
    event = execution_event(status, name=name)
    event["detail"]["executionArn"] = ARN.rsplit(":", 1)[0] + ":" + name
    event["detail"]["input"] = json.dumps({"bucket": "unit-import-bucket", "key": "inbox/hopex/clean.mgl",
                                           "job": {"job_id": JOB, "executions": [JOB, NEXT],
                                                   "executions_count": 2}})
    return event


def test_an_execution_that_is_no_longer_the_jobs_current_one_is_not_finalized(account):
    account.jobs.mark_running(JOB, "hopex", {"state": "RUNNING", "current_execution": NEXT})
    # the first execution ended (say it was stopped) after the job went on in NEXT
    assert account.finalizer(clock).from_execution_event(execution_event("ABORTED")) is None
    assert [i["state"] for i in account.status_items()] == ["RUNNING"] and account.messages() == []


def test_the_current_continued_execution_ending_abnormally_finalizes_the_original_job(account):
    account.jobs.mark_running(JOB, "hopex", {"state": "RUNNING", "current_execution": NEXT})
    record = account.finalizer(clock).from_execution_event(continued_event("TIMED_OUT"))
    assert record["job_id"] == JOB  # one job, one record, whatever execution ended it
    assert record["state"] == "TIMED_OUT"
    assert record["executions_count"] == 2
    assert record["executions"] == [ARN, ARN.rsplit(":", 1)[0] + ":" + NEXT]
    assert [(i["job_id"], i["state"]) for i in account.status_items()] == [(JOB, "TIMED_OUT")]


def test_finalize_in_a_continued_execution_writes_the_original_jobs_record(account):
    event = state_event(done_job(executions=[JOB, NEXT], executions_count=2))
    event["execution_name"], event["execution_arn"] = NEXT, ARN.rsplit(":", 1)[0] + ":" + NEXT
    record = account.finalizer(clock).from_state(event)
    assert record["job_id"] == JOB and record["execution_arn"].endswith(NEXT)
    assert record["cost"]["state_transitions"] == 2 + 3 * 3 + 1 + 4  # one continuation
