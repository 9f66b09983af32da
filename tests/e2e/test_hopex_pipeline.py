"""HOPEX imports through the whole local pipeline: S3 upload -> queue -> submit function -> state
machine (the real ASL) -> vendor function <-> simulator -> finalize -> DynamoDB, S3, SNS.

Every test ends with its one-outcome check: exactly one status record, one status JSON and one
SNS message for its import, whatever failed on the way."""

from __future__ import annotations

import csv
import io
import json

import pytest

from local.simulators.base import Fault
from local.simulators.hopex import PASSWORD

pytestmark = pytest.mark.e2e

HOPEX_LIMIT = 30 * 1024 * 1024
CLEAN = b'.Create ."Org-Unit" "Sales Department"\n.Validate\n'


# -- outcomes of the vendor job ------------------------------------------------------------------------------

def test_happy_path_clean_file_succeeds(e2e):
    key = e2e.key()
    result = e2e.pipe.import_file(e2e.sample("clean.mgl"), key)
    assert result.state == "SUCCEEDED" and result.execution_status == "SUCCEEDED"
    record, message = e2e.one_outcome(job_id=result.job_id, key=key)
    (sim_job,) = e2e.sim.jobs.values()
    assert record["vendor"] == "hopex" and record["vendor_ref"] == sim_job.job_id
    assert record["source"]["uri"] == f"s3://{e2e.pipe.bucket}/{key}" and record["source"]["version_id"]
    assert record["polls"] == 3 and record["counts"]["rejected"] == 0
    assert record["rejects"] == {"csv_uri": None, "raw_uri": None, "rows": 0}
    assert record["error"] is None
    assert message["subject"] == f"[hopex] SUCCEEDED: {key.rsplit('/', 1)[-1]}"
    assert len(e2e.sim.requests_to("/import", "POST")) == 1 and sim_job.validate == "Standard"
    assert json.loads(result.status_path.read_text()) == record


def test_rejected_lines_end_succeeded_with_rejects_files(e2e):
    result = e2e.pipe.import_file(e2e.sample("with-rejects.mgl"), e2e.key())
    assert result.state == "SUCCEEDED_WITH_REJECTS"
    record, message = e2e.one_outcome(job_id=result.job_id)
    assert record["counts"]["rejected"] == 2 and record["rejects"]["rows"] == 2
    assert message["attributes"]["state"] == "SUCCEEDED_WITH_REJECTS"
    names = sorted(p.name for p in result.rejects_paths)
    assert names == sorted([f"{e2e.name}.mgl.rejects.csv", f"{e2e.name}.mgl.rejects.txt"])
    copied = {p.suffix: p.read_bytes() for p in result.rejects_paths}
    rows = list(csv.reader(io.StringIO(copied[".csv"].decode())))
    assert rows[0] == ["record", "code", "reason"] and len(rows) == 3
    assert 'unknown metaclass "INVALID-Widget"' in rows[1][2]
    (sim_job,) = e2e.sim.jobs.values()
    assert copied[".txt"] == sim_job.outcome.rejects.encode()
    assert record["rejects"]["csv_uri"].startswith(f"s3://{e2e.pipe.bucket}/rejects/hopex/{result.job_id}/")


def test_vendor_failure_is_failed_with_the_vendor_message(e2e):
    result = e2e.pipe.import_file(e2e.sample("fails.mgl"), e2e.key())
    assert result.state == "FAILED"
    record, _ = e2e.one_outcome(job_id=result.job_id)
    assert "Import aborted at line" in record["message"] and "FAIL-JOB" in record["message"]
    # HOPEX's own verdict and words: TERMINATED, reason ERROR, its errmsg
    assert record["error"]["type"] == "VendorJobFailed"
    assert "reason 'ERROR'" in record["error"]["message"] and "Import aborted at line" in record["error"]["message"]
    assert record["vendor_ref"] in e2e.sim.jobs


def test_never_ending_job_is_timed_out_at_the_deadline(e2e, static_polling):
    e2e.pipe.set_settings("hopex", e2e.sim.settings(deadline_seconds=30))
    result = e2e.pipe.import_file(b'.Create ."Org-Unit" "NEVER-ENDS"\n', e2e.key())
    assert result.state == "TIMED_OUT"
    record, _ = e2e.one_outcome(job_id=result.job_id)
    assert "deadline_seconds = 30" in record["message"]
    assert record["error"]["type"] == "DeadlineExceeded"
    # the vendor's last word before the deadline
    assert f"last vendor status: HOPEX import job {record['vendor_ref']}" in record["error"]["message"]
    assert "is running" in record["error"]["message"]
    assert record["waited_seconds"] >= 30
    assert record["vendor_ref"] in e2e.sim.jobs


# -- transient vendor trouble --------------------------------------------------------------------------------

def test_one_503_on_a_poll_is_retried_and_the_import_succeeds(e2e):
    e2e.sim.inject(Fault(status=503, match="/import/job/"))
    result = e2e.pipe.import_file(CLEAN, e2e.key())
    assert result.state == "SUCCEEDED"
    e2e.one_outcome(job_id=result.job_id)
    assert len(e2e.import_status_gets()) == 4  # 2 RUNNING + TERMINATED + the retried one
    assert len(e2e.sim.requests_to("/import", "POST")) == 1


def test_vendor_down_for_a_whole_poll_is_retried_by_the_state_machine(e2e):
    e2e.sim.inject(*[Fault(status=503, match="/import/job/")] * 3)  # more than the HTTP retries
    result = e2e.pipe.import_file(CLEAN, e2e.key())
    assert result.state == "SUCCEEDED"
    e2e.one_outcome(job_id=result.job_id)
    polls = e2e.invocations(e2e.vendor_function, "poll")
    assert [p["errored"] for p in polls].count(True) == 1


def test_429_on_a_poll_is_retried_with_backoff_and_the_import_succeeds(e2e):
    # a status GET answered 429 is retried by the HTTP layer in the same step (README "Retry
    # budget": Retry-After honoured up to 30 s), so no step fails
    e2e.sim.inject(Fault(status=429, retry_after=1, match="/import/job/"))
    result = e2e.pipe.import_file(CLEAN, e2e.key())
    assert result.state == "SUCCEEDED"
    record, _ = e2e.one_outcome(job_id=result.job_id)
    assert [p["errored"] for p in e2e.invocations(e2e.vendor_function, "poll")].count(True) == 0
    assert len(e2e.import_status_gets()) == record["polls"] + 1  # the throttled GET, then its retry
    assert record["cost"]["retries"] == 1
    assert len(e2e.sim.requests_to("/import", "POST")) == 1


def test_429_on_submit_is_retried_without_a_second_import(e2e):
    e2e.sim.inject(Fault(status=429, match="/import"))
    result = e2e.pipe.import_file(CLEAN, e2e.key())
    assert result.state == "SUCCEEDED"
    e2e.one_outcome(job_id=result.job_id)
    assert len(e2e.sim.jobs) == 1  # the throttled POST created nothing; the retry created one job


# -- duplicates and re-uploads -------------------------------------------------------------------------------

def test_duplicate_s3_event_starts_one_execution_and_one_vendor_import(e2e):
    key = e2e.key()
    e2e.pipe.upload(CLEAN, key)
    received = e2e.pipe.sqs.receive_message(QueueUrl=e2e.pipe.queue_url, MaxNumberOfMessages=10)["Messages"]
    (original,) = [m for m in received if key.rsplit("/", 1)[-1] in m["Body"]]
    for m in received:
        e2e.pipe.sqs.change_message_visibility(QueueUrl=e2e.pipe.queue_url, ReceiptHandle=m["ReceiptHandle"],
                                               VisibilityTimeout=0)
    e2e.pipe.sqs.send_message(QueueUrl=e2e.pipe.queue_url, MessageBody=original["Body"])  # S3 delivers twice
    outcomes = e2e.pipe.pump_queue()
    assert [o["key"] for o in outcomes] == [key, key]
    result = e2e.pipe._result_for(key, outcomes[-1])
    assert result.state == "SUCCEEDED"
    e2e.one_outcome(job_id=result.job_id, key=key)
    executions = e2e.pipe.sfn.list_executions(stateMachineArn=e2e.pipe.state_machine_arn("hopex"))["executions"]
    assert [x["name"] for x in executions].count(result.job_id) == 1
    assert len(e2e.sim.requests_to("/import", "POST")) == 1
    # and once more after the import ended: still nothing new
    e2e.pipe.sqs.send_message(QueueUrl=e2e.pipe.queue_url, MessageBody=original["Body"])
    e2e.pipe.pump_queue()
    assert len(e2e.sim.requests_to("/import", "POST")) == 1
    e2e.one_outcome(job_id=result.job_id, key=key)


def test_reupload_of_the_same_key_and_content_is_a_second_import(e2e):
    key = e2e.key()
    first = e2e.pipe.import_file(CLEAN, key)
    second = e2e.pipe.import_file(CLEAN, key)  # same bytes, new S3 version
    assert (first.state, second.state) == ("SUCCEEDED", "SUCCEEDED")
    assert first.job_id != second.job_id
    assert first.record["source"]["version_id"] != second.record["source"]["version_id"]
    assert len(e2e.sim.requests_to("/import", "POST")) == 2
    e2e.one_outcome(job_id=first.job_id)
    e2e.one_outcome(job_id=second.job_id)


# -- uploads refused before any vendor call ------------------------------------------------------------------

def test_unknown_vendor_prefix_is_failed_without_an_execution(e2e):
    key = e2e.key(".csv", vendor="nobody")
    result = e2e.pipe.import_file(b"a,b\n", key)
    assert result.state == "FAILED" and result.execution_status is None
    record, message = e2e.one_outcome(job_id=result.job_id, key=key)
    assert "unknown vendor 'nobody'" in record["message"]
    assert message["attributes"]["vendor"] == "nobody"
    assert e2e.sim.requests == []


def test_oversize_file_is_failed_without_a_vendor_call(e2e):
    key = e2e.key()
    result = e2e.pipe.import_file(b"-" * (HOPEX_LIMIT + 1), key)
    assert result.state == "FAILED"
    record, _ = e2e.one_outcome(job_id=result.job_id, key=key)
    assert "bytes, over HOPEX's 30 MB limit (31,457,280 bytes): split the file" in record["message"]
    assert record["source"]["size"] == HOPEX_LIMIT + 1
    assert e2e.sim.requests == []


def test_empty_file_is_failed_without_a_vendor_call(e2e):
    result = e2e.pipe.import_file(b"", e2e.key())
    assert result.state == "FAILED"
    record, _ = e2e.one_outcome(job_id=result.job_id)
    assert "empty" in record["message"] and record["error"]["type"] == "InputError"
    assert e2e.sim.requests == []


def test_dry_run_segment_validates_without_a_vendor_call(e2e):
    result = e2e.pipe.import_file(CLEAN, e2e.key(segments="dry-run/"))
    assert result.state == "VALIDATED"
    record, message = e2e.one_outcome(job_id=result.job_id)
    assert record["dry_run"] is True and message["attributes"]["dry_run"] == "true"
    assert e2e.sim.requests == []


def test_options_from_key_and_metadata_reach_the_vendor(e2e):
    by_key = e2e.pipe.import_file(CLEAN, e2e.key(segments="validate=AtEnd/"))
    by_meta = e2e.pipe.import_file(CLEAN, e2e.key(segments="validate=AtEnd/m/"), metadata={"validate": "Never"})
    assert (by_key.state, by_meta.state) == ("SUCCEEDED", "SUCCEEDED")
    assert sorted(j.validate for j in e2e.sim.jobs.values()) == ["AtEnd", "Never"]
    e2e.one_outcome(job_id=by_key.job_id)
    record, _ = e2e.one_outcome(job_id=by_meta.job_id)
    assert "validate=Never" in record["message"]


# -- console starts ------------------------------------------------------------------------------------------

def test_console_start_with_bucket_and_key_succeeds(e2e):
    key = e2e.key()
    e2e.put_without_event(key, CLEAN)
    result = e2e.pipe.start_console("hopex", {"bucket": e2e.pipe.bucket, "key": key})
    assert result.state == "SUCCEEDED"
    record, _ = e2e.one_outcome(job_id=result.job_id, key=key)
    assert record["source"]["version_id"] is None  # the latest version was imported
    assert len(e2e.sim.requests_to("/import", "POST")) == 1


def test_console_start_without_key_is_failed_naming_the_field(e2e):
    result = e2e.pipe.start_console("hopex", {"bucket": e2e.pipe.bucket})
    assert result.state == "FAILED"
    record, message = e2e.one_outcome(job_id=result.job_id)
    assert 'input field "key" is missing' in record["message"]
    assert record["error"]["type"] == "InputError"
    assert record["vendor"] == "hopex" and message["attributes"]["vendor"] == "hopex"
    assert e2e.sim.requests == []


def test_console_start_with_a_missing_object_is_failed_naming_it(e2e):
    key = e2e.key()
    result = e2e.pipe.start_console("hopex", {"bucket": e2e.pipe.bucket, "key": key})
    assert result.state == "FAILED"
    record, _ = e2e.one_outcome(job_id=result.job_id)
    assert f"cannot read s3://{e2e.pipe.bucket}/{key}: it does not exist" in record["message"]
    assert e2e.sim.requests == []


def test_console_start_of_another_vendors_key_is_failed(e2e):
    result = e2e.pipe.start_console("hopex", {"bucket": e2e.pipe.bucket, "key": e2e.key(".xml", vendor="cirrus")})
    assert result.state == "FAILED"
    record, _ = e2e.one_outcome(job_id=result.job_id)
    assert "this is the hopex state machine" in record["message"]


# -- crashes -------------------------------------------------------------------------------------------------

def test_vendor_function_crash_during_polling_still_ends_with_one_status_record(e2e):
    handle = e2e.sim.handle

    def crash_on_next_step(req):  # once HOPEX has the job, the function dies on its next run
        if req.method == "POST" and req.path.endswith("/import"):
            e2e.pipe.lambdas.crash_next[e2e.vendor_function] = 1
        return handle(req)

    e2e.sim.handle = crash_on_next_step
    try:
        result = e2e.pipe.import_file(CLEAN, e2e.key())
    finally:
        del e2e.sim.handle
    assert result.state == "FAILED"
    record, _ = e2e.one_outcome(job_id=result.job_id)
    assert record["error"]["type"] == "InternalError" and "injected crash" in record["message"]
    assert record["error"]["message"].startswith("RuntimeError: ")
    assert record["vendor_ref"] in e2e.sim.jobs  # what the submit step learnt survives the crash
    assert [p["errored"] for p in e2e.invocations(e2e.vendor_function, "poll")] == [True]


def test_finalize_crash_is_retried_and_still_notifies_once(e2e):
    e2e.pipe.lambdas.crash_next[e2e.finalize_function] = 2
    result = e2e.pipe.import_file(CLEAN, e2e.key())
    assert result.state == "SUCCEEDED" and result.execution_status == "SUCCEEDED"
    e2e.one_outcome(job_id=result.job_id)


def test_finalize_failing_every_retry_is_finalized_by_the_execution_ended_rule(e2e):
    e2e.pipe.lambdas.crash_next[e2e.finalize_function] = 5  # the first try and its 4 retries
    result = e2e.pipe.import_file(CLEAN, e2e.key())
    assert result.execution_status == "FAILED"
    assert result.state == "FAILED"
    record, _ = e2e.one_outcome(job_id=result.job_id)
    assert "injected crash" in record["message"]


def test_submit_function_crash_is_redelivered_by_the_queue(e2e):
    e2e.pipe.lambdas.crash_next[e2e.submit_function] = 1
    result = e2e.pipe.import_file(CLEAN, e2e.key())
    assert result.state == "SUCCEEDED"
    e2e.one_outcome(job_id=result.job_id)
    assert [i["errored"] for i in e2e.invocations(e2e.submit_function)][-2:] == [True, False]


def test_upload_event_failing_every_delivery_lands_in_the_dead_letter_queue(e2e):
    key = e2e.key()
    e2e.pipe.lambdas.crash_next[e2e.submit_function] = 5  # maxReceiveCount
    try:
        e2e.pipe.upload(CLEAN, key)
        assert e2e.pipe.pump_queue() == []
        assert e2e.pipe.dlq_depth() == 1
        assert [r for r in e2e.records() if r["source"]["key"] == key] == []  # the DLQ alarm tells instead
        assert e2e.sim.requests == []
    finally:
        e2e.drop_messages(e2e.pipe.dlq_url)


# -- credentials and secrets ---------------------------------------------------------------------------------

def test_wrong_credentials_fail_with_vendor_auth_error(e2e):
    settings = e2e.sim.settings()
    wrong = "wrong-Pa55word-for-e2e"
    e2e.pipe.set_settings("hopex", {**settings, "auth": {**settings["auth"], "password": wrong}})
    result = e2e.pipe.import_file(CLEAN, e2e.key())
    assert result.state == "FAILED"
    record, message = e2e.one_outcome(job_id=result.job_id)
    assert record["error"]["type"] == "VendorAuthError"
    assert "UAS refused the credentials" in record["message"]
    assert e2e.sim.jobs == {}
    assert wrong not in json.dumps([record, message])


def test_refused_token_echoed_by_the_vendor_is_not_written_anywhere(e2e):
    e2e.sim.accept_tokens = False  # every call 401, with the Authorization header echoed back
    result = e2e.pipe.import_file(CLEAN, e2e.key())
    assert result.state == "FAILED"
    record, message = e2e.one_outcome(job_id=result.job_id)
    assert record["error"]["type"] == "VendorAuthError"
    assert e2e.sim.tokens  # tokens were issued (and refused): they must not appear
    e2e.assert_no_secret(record, message)


def test_no_secret_in_any_status_record_status_json_or_message(e2e):
    # runs last in this module: every import above has written its record by now (and this one)
    result = e2e.pipe.import_file(e2e.sample("with-rejects.mgl"), e2e.key())
    e2e.one_outcome(job_id=result.job_id)
    records, documents = e2e.records(), e2e.status_documents()
    assert len(documents) == len(records) >= 1
    assert e2e.pipe.issued_tokens or e2e.sim.tokens
    e2e.assert_no_secret(records, documents, e2e.pipe.messages)
    assert PASSWORD not in json.dumps(e2e.pipe.messages)
