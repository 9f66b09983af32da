"""The submit function (logic/submit_upload.py) to the exact outcome and status record: what a refused
upload's record says about its source and target, which version is read, how an execution is named
without a version, and what an ignored or duplicate event says. Written from the survivors of
`make mutation` (docs/mutation.md); expected values by hand."""

# ruff: noqa: F811 - the router fixture is imported from test_submit_upload and named by each test
from __future__ import annotations

from vendor_import.logic.routing import execution_name

from tests.unit.test_submit_upload import body, executions, router, s3_record, upload  # noqa: F401 - fixture

EMPTY_MESSAGE = "the uploaded file is empty (0 bytes): nothing to import"


def test_a_refused_upload_is_recorded_with_its_whole_source_and_its_target(router):
    key = "inbox/hopex/sub/empty.mgl"
    put = upload(router, key, b"", metadata={"target": "eu"})
    (outcome,) = router.handle_message_body(body(s3_record(router, key, put)))
    assert (outcome.key, outcome.action, outcome.detail) == (key, "rejected", EMPTY_MESSAGE)
    assert outcome.job_id == execution_name(router.account.bucket, key, put["VersionId"])
    (item,) = router.account.status_items()
    assert item["source"] == {"uri": f"s3://{router.account.bucket}/{key}", "bucket": router.account.bucket,
                              "key": key, "version_id": put["VersionId"], "size": 0,
                              "etag": put["ETag"].strip('"')}
    assert (item["target"], item["message"]) == ("eu", EMPTY_MESSAGE)
    assert item["error"] == {"type": "InputError", "message": EMPTY_MESSAGE}


def test_a_duplicate_of_a_refused_upload_says_why_it_was_refused(router):
    key = "inbox/hopex/empty.mgl"
    message = body(s3_record(router, key, upload(router, key, b"")))
    first, = router.handle_message_body(message)
    second, = router.handle_message_body(message)
    assert (second.key, second.action, second.job_id, second.detail) == (key, "duplicate", first.job_id,
                                                                         EMPTY_MESSAGE)


def test_the_event_version_is_the_one_read(router):
    # the version of the event has a bad option in its metadata; the newer version is fine
    key = "inbox/hopex/a.mgl"
    old = upload(router, key, metadata={"validate": "Sometimes"})
    upload(router, key)
    (outcome,) = router.handle_message_body(body(s3_record(router, key, old)))
    assert outcome.action == "rejected"
    assert executions(router) == []


def test_without_a_version_or_an_etag_the_sequencer_names_the_execution(router):
    key = "inbox/hopex/a.mgl"
    upload(router, key)
    record = s3_record(router, key, size=30)
    del record["s3"]["object"]["eTag"]
    (outcome,) = router.handle_message_body(body(record))
    assert outcome.job_id == execution_name(router.account.bucket, key, "0055AED6DCD90281E5")
    assert outcome.action == "started"


def test_a_folder_placeholder_says_so(router):
    (outcome,) = router.handle_message_body(body(s3_record(router, "inbox/hopex/folder/")))
    assert (outcome.key, outcome.action, outcome.detail, outcome.job_id) == (
        "inbox/hopex/folder/", "ignored", "folder placeholder", None)


def test_a_content_encoded_upload_is_not_judged_by_its_stored_size(router):
    key = "inbox/hopex/big.mgl"  # no .gz: the object's Content-Encoding says it is compressed
    put = router.account.s3.put_object(Bucket=router.account.bucket, Key=key, Body=b"x", ContentEncoding="gzip")
    (outcome,) = router.handle_message_body(body(s3_record(router, key, put, size=31 * 1024 * 1024)))
    assert outcome.action == "started"


def test_an_s3_test_event_and_a_message_without_records(router):
    (outcome,) = router.handle_message_body('{"Event": "s3:TestEvent", "Service": "Amazon S3"}')
    assert (outcome.key, outcome.action, outcome.detail, outcome.job_id) == ("", "ignored", "s3:TestEvent", None)
    assert router.handle_message_body("{}") == []


def test_a_started_and_a_duplicate_outcome_name_the_key_and_the_target(router):
    key = "inbox/hopex/a.mgl"
    message = body(s3_record(router, key, upload(router, key, metadata={"target": "eu"})))
    first, = router.handle_message_body(message)
    router.sfn.stop_execution(executionArn=executions(router)[0]["executionArn"])  # ended: a restart is refused
    second, = router.handle_message_body(message)
    assert (first.key, first.action, first.target) == (key, "started", "eu")
    assert (second.key, second.action, second.job_id, second.detail) == (
        key, "duplicate", first.job_id, "an execution for this object version already exists")


def test_the_upload_time_of_the_event_reaches_the_execution_input_for_the_guards_queue_order(router):
    # the vendor guard serves its queue in upload order (logic/guard.py): the execution input carries
    # S3's eventTime as uploaded_at; an event without one starts an execution without it
    import json

    for name, event_time in (("a.mgl", "2026-03-01T10:00:00.123Z"), ("b.mgl", None)):
        key = f"inbox/hopex/{name}"
        record = s3_record(router, key, upload(router, key))
        if event_time:
            record["eventTime"] = event_time
        (outcome,) = router.handle_message_body(body(record))
        assert outcome.action == "started"
    inputs = {e["name"]: json.loads(router.sfn.describe_execution(executionArn=e["executionArn"])["input"])
              for e in executions(router)}
    assert sorted(i["key"] for i in inputs.values() if i.get("uploaded_at") == "2026-03-01T10:00:00.123Z") == [
        "inbox/hopex/a.mgl"]
    assert [i["key"] for i in inputs.values() if "uploaded_at" not in i] == ["inbox/hopex/b.mgl"]
