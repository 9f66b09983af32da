"""The submit function's logic: one S3 upload event -> one execution, or a FAILED status."""

from __future__ import annotations

import json
from urllib.parse import quote_plus

import pytest
from vendor_import.errors import InputError
from vendor_import.logic.routing import execution_name
from vendor_import.logic.submit_upload import UploadRouter

HOPEX_LIMIT = 30 * 1024 * 1024
PASS_MACHINE = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}})
ROLE = "arn:aws:iam::123456789012:role/unit-sfn"


@pytest.fixture
def router(account, aws):
    sfn = aws["stepfunctions"]
    arn = sfn.create_state_machine(name="unit-hopex-import", definition=PASS_MACHINE, roleArn=ROLE)["stateMachineArn"]
    r = UploadRouter(sfn_client=sfn, s3_client=account.s3, state_machines={"hopex": arn},
                     finalizer=account.finalizer())
    r.account = account
    r.machine_arn = arn
    return r


def upload(router, key, body=b".Create .\"Org-Unit\" \"Sales\"\n", metadata=None):
    return router.account.s3.put_object(Bucket=router.account.bucket, Key=key, Body=body, Metadata=metadata or {})


def s3_record(router, key, put=None, *, size=None, version=None):
    """An S3 ObjectCreated notification record as S3 writes it (key URL-encoded with +)."""
    obj = {"key": quote_plus(key, safe="/"), "size": size, "eTag": "0123abcd", "sequencer": "0055AED6DCD90281E5"}
    if put is not None:
        obj["eTag"] = put["ETag"].strip('"')
        obj["versionId"] = put.get("VersionId")
        obj["size"] = size if size is not None else len(router.account.read(key))
    if version is not None:
        obj["versionId"] = version
    return {"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
            "eventName": "ObjectCreated:Put",
            "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": router.account.bucket,
                                                        "arn": f"arn:aws:s3:::{router.account.bucket}"},
                   "object": obj}}


def body(*records):
    return json.dumps({"Records": list(records)})


def executions(router):
    return router.sfn.list_executions(stateMachineArn=router.machine_arn)["executions"]


# -- ignored -------------------------------------------------------------------------------------------------

def test_s3_test_event_is_ignored(router):
    test_event = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2024-05-01T10:00:00.000Z",
                  "Bucket": router.account.bucket, "RequestId": "R", "HostId": "H"}
    (outcome,) = router.handle_message_body(json.dumps(test_event))
    assert outcome.action == "ignored"
    assert executions(router) == [] and router.account.status_items() == []


def test_folder_placeholder_key_is_ignored(router):
    upload(router, "inbox/hopex/new folder/", b"")
    (outcome,) = router.handle_message_body(body(s3_record(router, "inbox/hopex/new folder/", size=0)))
    assert (outcome.action, outcome.key) == ("ignored", "inbox/hopex/new folder/")
    assert executions(router) == [] and router.account.status_items() == [] and router.account.messages() == []


def test_message_that_is_not_json_is_an_input_error(router):
    with pytest.raises(InputError, match="not JSON"):
        router.handle_message_body("<xml/>")


def test_record_without_bucket_or_key_is_an_input_error(router):
    record = s3_record(router, "inbox/hopex/a.mgl")
    del record["s3"]["object"]["key"]
    with pytest.raises(InputError, match="without bucket or object key"):
        router.handle_message_body(body(record))


# -- started -------------------------------------------------------------------------------------------------------

def test_upload_starts_one_execution_named_after_the_object_version(router):
    key = "inbox/hopex/validate=AtEnd/Sales team (v2).mgl"
    put = upload(router, key, metadata={"validate": "Never"})  # metadata wins over the key
    (outcome,) = router.handle_message_body(body(s3_record(router, key, put)))
    assert outcome.action == "started"
    assert outcome.job_id == execution_name(router.account.bucket, key, put["VersionId"])
    (execution,) = executions(router)
    assert execution["name"] == outcome.job_id
    desc = router.sfn.describe_execution(executionArn=execution["executionArn"])
    assert json.loads(desc["input"]) == {
        "bucket": router.account.bucket, "key": key, "version_id": put["VersionId"],
        "etag": put["ETag"].strip('"'), "size": len(router.account.read(key)),
        "options": {"validate": "Never"}}
    assert router.account.status_items() == []


def test_every_record_of_a_message_is_routed(router):
    puts = {k: upload(router, k) for k in ("inbox/hopex/a.mgl", "inbox/hopex/b.mgl")}
    outcomes = router.handle_message_body(body(*(s3_record(router, k, p) for k, p in puts.items())))
    assert [o.action for o in outcomes] == ["started", "started"]
    assert len(executions(router)) == 2


def test_duplicate_event_while_the_import_runs_starts_nothing_new(router):
    # StartExecution with the same name and input as a running execution is idempotent
    key = "inbox/hopex/a.mgl"
    message = body(s3_record(router, key, upload(router, key)))
    first, = router.handle_message_body(message)
    second, = router.handle_message_body(message)
    assert second.job_id == first.job_id
    assert len(executions(router)) == 1


def test_duplicate_event_after_the_import_ended_is_a_duplicate(router):
    key = "inbox/hopex/a.mgl"
    message = body(s3_record(router, key, upload(router, key)))
    first, = router.handle_message_body(message)
    router.sfn.stop_execution(executionArn=executions(router)[0]["executionArn"])
    second, = router.handle_message_body(message)
    assert (first.action, second.action) == ("started", "duplicate")
    assert second.job_id == first.job_id
    assert len(executions(router)) == 1


def test_new_version_of_the_same_key_starts_a_second_import(router):
    key = "inbox/hopex/a.mgl"
    first, = router.handle_message_body(body(s3_record(router, key, upload(router, key))))
    second, = router.handle_message_body(body(s3_record(router, key, upload(router, key))))
    assert (first.action, second.action) == ("started", "started")
    assert first.job_id != second.job_id


# -- rejected: FAILED status, no execution -----------------------------------------------------------------------------

def assert_rejected(router, outcome, says):
    assert outcome.action == "rejected"
    assert executions(router) == []
    (item,) = router.account.status_items()
    assert item["job_id"] == outcome.job_id
    assert item["state"] == "FAILED"
    assert item["error"]["type"] == "InputError"
    assert says in item["message"]
    (message,) = router.account.messages()
    assert message["body"]["job_id"] == outcome.job_id
    assert message["attributes"]["state"] == "FAILED"
    return item, message


def test_unknown_vendor_is_failed_without_execution(router):
    key = "inbox/nobody/file.csv"
    outcome, = router.handle_message_body(body(s3_record(router, key, upload(router, key))))
    item, message = assert_rejected(router, outcome, "unknown vendor 'nobody'")
    assert item["vendor"] == "nobody" and message["attributes"]["vendor"] == "nobody"
    assert "hopex" in item["message"]  # the message lists the vendors to use instead


def test_known_vendor_without_a_state_machine_is_failed(router):
    key = "inbox/cirrus/accounts.xml"
    outcome, = router.handle_message_body(body(s3_record(router, key, upload(router, key))))
    assert_rejected(router, outcome, "unknown vendor 'cirrus'")


def test_key_outside_inbox_is_failed(router):
    key = "elsewhere/file.mgl"
    outcome, = router.handle_message_body(body(s3_record(router, key, upload(router, key))))
    item, _ = assert_rejected(router, outcome, "is not under inbox/")
    assert item["vendor"] == "unknown"


def test_oversize_hopex_file_is_failed_without_execution(router):
    key = "inbox/hopex/huge.mgl"
    put = upload(router, key)  # the event announces the size: no 30 MB body needed
    outcome, = router.handle_message_body(body(s3_record(router, key, put, size=HOPEX_LIMIT + 1)))
    item, _ = assert_rejected(router, outcome,
                              "the uploaded file is 31,457,281 bytes, over HOPEX's 30 MB limit (31,457,280 bytes)")
    assert item["source"]["size"] == HOPEX_LIMIT + 1


def test_a_gzip_upload_is_not_judged_by_its_compressed_size(router):
    # an incompressible file can be larger gzipped than plain: the vendor step checks the
    # decompressed bytes against the limit
    key = "inbox/hopex/huge.mgl.gz"
    put = upload(router, key)
    outcome, = router.handle_message_body(body(s3_record(router, key, put, size=HOPEX_LIMIT + 1)))
    assert outcome.action == "started"


def test_hopex_file_of_exactly_30_mb_is_started(router):
    key = "inbox/hopex/limit.mgl"
    outcome, = router.handle_message_body(body(s3_record(router, key, upload(router, key), size=HOPEX_LIMIT)))
    assert outcome.action == "started"


def test_empty_file_is_failed(router):
    key = "inbox/hopex/empty.mgl"
    outcome, = router.handle_message_body(body(s3_record(router, key, upload(router, key, b""))))
    assert_rejected(router, outcome, "empty (0 bytes)")


def test_event_without_a_size_is_checked_with_the_size_s3_reports(router):
    key = "inbox/hopex/empty-no-size.mgl"
    put = upload(router, key, b"")
    record = s3_record(router, key, put)
    del record["s3"]["object"]["size"]
    outcome, = router.handle_message_body(body(record))
    item, _ = assert_rejected(router, outcome, "empty (0 bytes)")
    assert item["source"]["size"] == 0


def test_bad_option_in_the_key_is_failed_naming_the_option(router):
    key = "inbox/hopex/validate=Sometimes/file.mgl"
    outcome, = router.handle_message_body(body(s3_record(router, key, upload(router, key))))
    assert_rejected(router, outcome, "option validate must be one of Never, Standard, AtEnd, AtEndOnSuccess")


def test_near_miss_of_an_option_is_failed_with_did_you_mean(router):
    key = "inbox/hopex/valdate=AtEnd/file.mgl"
    outcome, = router.handle_message_body(body(s3_record(router, key, upload(router, key))))
    assert_rejected(router, outcome, "key folder 'valdate=AtEnd' is not an option: did you mean validate?")


def test_partition_folders_route_to_an_execution_not_a_failure(router):
    key = "inbox/hopex/year=2026/month=11/day=30/file.mgl"
    outcome, = router.handle_message_body(body(s3_record(router, key, upload(router, key))))
    assert outcome.action == "started"
    (execution,) = executions(router)
    described = router.sfn.describe_execution(executionArn=execution["executionArn"])
    assert "options" not in json.loads(described["input"])  # no option came from the folders


def test_object_deleted_before_routing_is_failed(router):
    key = "inbox/hopex/gone.mgl"
    record = s3_record(router, key, size=10)
    outcome, = router.handle_message_body(body(record))
    assert_rejected(router, outcome, "was deleted before it could be imported")


def test_duplicate_event_of_a_rejected_upload_is_notified_once(router):
    key = "inbox/nobody/file.csv"
    message = body(s3_record(router, key, upload(router, key)))
    first, = router.handle_message_body(message)
    second, = router.handle_message_body(message)
    assert (first.action, second.action) == ("rejected", "duplicate")
    assert len(router.account.status_items()) == 1
    assert len(router.account.messages()) == 1
