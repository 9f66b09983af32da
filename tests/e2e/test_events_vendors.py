"""Every vendor's sample events (events/<kind>-<vendor>.json, for `sam local invoke -e` and the
Step Functions console) run through their function in the local pipeline; the console experience
(bad input, re-run, output); and the observability of one import (JSON logs with the job id as
correlation id, EMF metrics per vendor)."""

from __future__ import annotations

import io
import json
import logging

import pytest

from local.simulators import SIMULATORS
from local.template_deploy import ROOT

pytestmark = pytest.mark.e2e

EVENTS = ROOT / "events"
PLACEHOLDER = "REPLACE-WITH-IMPORT-BUCKET"
VERSION_PLACEHOLDER = "REPLACE-WITH-VERSION-ID"
VENDORS = tuple(SIMULATORS)
LOGICAL = {"hopex": "Hopex", "campaign": "Campaign", "aep": "Aep", "simplemente": "Simplemente", "cirrus": "Cirrus"}
SAMPLE_FILES = {  # the sample file each vendor's events name
    "hopex": "events/files/hopex/clean.mgl", "campaign": "events/files/campaign/success.json",
    "aep": "events/files/aep/profiles-clean.ndjson", "simplemente": "events/files/simplemente/articles-clean.csv",
    "cirrus": "events/files/cirrus/accounts-clean.xml",
}


def load(name: str, bucket: str, version: str | None = None) -> dict:
    text = (EVENTS / name).read_text()
    assert PLACEHOLDER in text, name
    if version is not None:
        text = text.replace(VERSION_PLACEHOLDER, version)
    return json.loads(text.replace(PLACEHOLDER, bucket))


def put_without_event(pipe, key: str, body: bytes) -> str:
    """Upload as a user would before invoking by hand: the upload's own queue message is dropped.
    Returns the version the upload created."""
    version = pipe.s3.put_object(Bucket=pipe.bucket, Key=key, Body=body)["VersionId"]
    while msgs := pipe.sqs.receive_message(QueueUrl=pipe.queue_url, MaxNumberOfMessages=10).get("Messages", []):
        for m in msgs:
            pipe.sqs.delete_message(QueueUrl=pipe.queue_url, ReceiptHandle=m["ReceiptHandle"])
    return version


def invoke(pipe, function: str, event: dict) -> dict:
    resp = pipe.lambda_client.invoke(FunctionName=function, Payload=json.dumps(event).encode())
    payload = json.loads(resp["Payload"].read() or b"null")
    assert "FunctionError" not in resp, payload
    return payload


def sample(vendor: str) -> bytes:
    return (ROOT / SAMPLE_FILES[vendor]).read_bytes()


def s3_object(event: dict) -> dict:
    return json.loads(event["Records"][0]["body"])["Records"][0]["s3"]["object"]


def test_every_vendor_has_an_event_for_every_function_route():
    for vendor in VENDORS:
        for kind in ("submit-sqs-upload", "vendor-submit", "console-start"):
            assert (EVENTS / f"{kind}-{vendor}.json").is_file(), f"{kind}-{vendor}.json"
    for path in EVENTS.glob("*-*.json"):
        json.loads(path.read_text())


@pytest.mark.parametrize("vendor", VENDORS)
def test_submit_sqs_upload_event_imports_the_sample(pipe, sims, vendor):
    key = s3_object(load(f"submit-sqs-upload-{vendor}.json", pipe.bucket))["key"]
    version = put_without_event(pipe, key, sample(vendor))
    event = load(f"submit-sqs-upload-{vendor}.json", pipe.bucket, version)
    obj = s3_object(event)
    assert obj["key"].startswith(f"inbox/{vendor}/") and obj["size"] == len(sample(vendor))
    assert obj["versionId"] == version
    assert invoke(pipe, pipe.submit_function, event) == {"batchItemFailures": []}
    result = pipe._result_for(obj["key"], {"version": version})
    assert (result.execution_status, result.state) == ("SUCCEEDED", "SUCCEEDED"), result.record


@pytest.mark.parametrize("vendor", VENDORS)
def test_vendor_submit_event_submits_the_sample_to_the_vendor(pipe, sims, vendor):
    event = load(f"vendor-submit-{vendor}.json", pipe.bucket)
    put_without_event(pipe, event["input"]["key"], sample(vendor))
    sims[vendor].requests.clear()
    job = invoke(pipe, pipe.deployment.functions[f"{LOGICAL[vendor]}Function"], event)
    assert job["vendor"] == vendor and job["job_id"] == event["execution_name"]
    assert job["state"] in (None, "SUCCEEDED") and job["error_type"] is None, job
    assert isinstance(job["wait_seconds"], int) and job["wait_seconds"] >= 0
    if vendor in ("aep", "cirrus"):  # record vendors send the records from the polls on, right away
        assert job["done"] is False and job["wait_seconds"] == 0
    else:
        assert sims[vendor].requests, "the vendor was called"


@pytest.mark.parametrize("vendor", VENDORS)
def test_console_start_event_succeeds_and_the_output_is_the_status_record(pipe, sims, vendor):
    execution_input = load(f"console-start-{vendor}.json", pipe.bucket)
    put_without_event(pipe, execution_input["key"], sample(vendor))
    result = pipe.start_console(vendor, execution_input)
    assert result.state == "SUCCEEDED", result.record
    arn = result.record["execution_arn"]
    output = json.loads(pipe.sfn.describe_execution(executionArn=arn)["output"])
    assert output == {k: v for k, v in result.record.items() if k != "notified_at"}


# -- the console experience --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("bad_input", "says"), [
    ({}, 'input field "bucket" is missing'),
    ({"bucket": "B"}, 'input field "key" is missing'),
    ({"bucket": "B", "key": ""}, 'input field "key" must be a non-empty string'),
    ({"bucket": "B", "key": "inbox/hopex/x.mgl", "options": "validate=AtEnd"},
     'input field "options" must be an object'),
    ({"bucket": "B", "key": "inbox/hopex/x.mgl", "dry_run": "yes"}, 'input field "dry_run" must be true or false'),
    ({"bucket": "B", "key": "inbox/hopex/x.mgl", "version_id": 3}, 'input field "version_id" must be a string'),
    (json.dumps("inbox/hopex/x.mgl"), "the execution input must be a JSON object"),
    (json.dumps(["B", "inbox/hopex/x.mgl"]), "the execution input must be a JSON object"),
])
def test_a_bad_console_input_fails_in_the_first_state_naming_the_field(pipe, sims, bad_input, says):
    if isinstance(bad_input, dict) and bad_input.get("bucket") == "B":
        bad_input = {**bad_input, "bucket": pipe.bucket}
    sims["hopex"].requests.clear()
    result = pipe.start_console("hopex", bad_input)
    assert result.state == "FAILED"
    assert says in result.record["message"] and result.record["error"]["type"] == "InputError"
    history = pipe.sfn.get_execution_history(executionArn=result.record["execution_arn"])["events"]
    entered = [e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e]
    # a JSON string or array as input: the first state's Catch cannot add $.error to it, so the
    # execution fails right there and the EventBridge rule finalizes it
    assert entered in (["Submit to vendor", "Finalize import"], ["Submit to vendor"])
    assert sims["hopex"].requests == []


def test_a_failed_import_re_run_from_the_console_with_the_same_input_succeeds(pipe, sims):
    hopex = sims["hopex"]
    key = "inbox/hopex/console-rerun/clean.mgl"
    put_without_event(pipe, key, sample("hopex"))
    good = hopex.settings()
    pipe.set_settings("hopex", {**good, "auth": {**good["auth"], "password": "wrong-password"}})
    try:
        first = pipe.start_console("hopex", {"bucket": pipe.bucket, "key": key})
    finally:
        pipe.set_settings("hopex", good)
    assert first.state == "FAILED" and first.record["error"]["type"] == "VendorAuthError"
    again = pipe.start_console("hopex", {"bucket": pipe.bucket, "key": key})  # the same input, fixed settings
    assert again.state == "SUCCEEDED"
    assert again.job_id != first.job_id
    records = {r["job_id"]: r for r in (pipe.table.get_item(Key={"job_id": j})["Item"]
                                        for j in (first.job_id, again.job_id))}
    assert {r["state"] for r in records.values()} == {"FAILED", "SUCCEEDED"}


# -- observability of one import --------------------------------------------------------------------------------

@pytest.fixture
def observed(pipe, monkeypatch, capsys):
    """INFO logs of every function (one JSON handler: the functions share a logger in this process)
    and EMF metrics enabled, both captured."""
    from aws_lambda_powertools import Logger

    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    probe = Logger(service="s3-vendor-import")
    handler = probe.registered_handler
    stream = io.StringIO()
    # not setStream: it flushes the old stream, which may be the capture of an earlier test, closed since
    old_stream, handler.stream = handler.stream, stream
    shared = logging.getLogger("s3-vendor-import")
    old_level = shared.level
    shared.setLevel(logging.INFO)
    capsys.readouterr()
    try:
        yield lambda: ([json.loads(line) for line in stream.getvalue().splitlines() if line.strip()],
                       [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line])
    finally:
        handler.stream = old_stream
        shared.setLevel(old_level)


def test_every_log_line_of_an_import_is_json_with_its_job_id_and_metrics_go_per_vendor(pipe, sims, observed):
    key = "inbox/cirrus/object=Account/action=upsert/matching_field=Name/observed/accounts-clean.xml"
    result = pipe.import_file(ROOT / SAMPLE_FILES["cirrus"], key)
    assert result.state == "SUCCEEDED"
    logs, emf = observed()
    messages = {line["message"] for line in logs}
    assert {"upload routed", "vendor step", "import finalized"} <= messages
    assert [line for line in logs if line.get("correlation_id") != result.job_id] == []
    assert all(line["service"] == "s3-vendor-import" for line in logs)
    assert {line["vendor"] for line in logs if line["message"] == "vendor step"} == {"cirrus"}

    def value(doc, name):
        v = doc[name]
        return v[0] if isinstance(v, list) else v

    assert all(doc["vendor"] == "cirrus" and doc["service"] == "s3-vendor-import" for doc in emf)
    assert all(doc["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "S3VendorImport" for doc in emf)
    started = [d for d in emf if "ImportsStarted" in d]
    ended = [d for d in emf if "ImportsSucceeded" in d]
    assert len(started) == 1 and len(ended) == 1, emf
    assert value(ended[0], "RecordsSent") == result.record["counts"]["sent"] == 12
    assert value(ended[0], "RecordsRefused") == 0
    assert value(ended[0], "Polls") == result.record["polls"]
    assert value(ended[0], "DurationSeconds") == result.record["duration_seconds"]


def test_a_bad_upload_ends_in_the_submit_function_with_its_failed_metric(pipe, sims, observed):
    result = pipe.import_file(b"", "inbox/cirrus/observed/empty.xml")
    assert result.state == "FAILED"
    logs, emf = observed()
    assert [d["vendor"] for d in emf if "ImportsFailed" in d] == ["cirrus"]
    assert not [d for d in emf if "ImportsStarted" in d]
    routed = [line for line in logs if line["message"] == "upload routed"]
    assert routed and all(line["correlation_id"] == result.job_id and line["action"] == "rejected"
                          for line in routed)


def test_sam_local_invoke_commands_in_the_docs_name_existing_events():
    import re

    docs = (ROOT / "docs" / "operations.md").read_text()
    named = set(re.findall(r"-e (events/[\w./-]+\.json)", docs))
    assert {f"events/{k}-{v}.json" for v in VENDORS for k in ("submit-sqs-upload", "vendor-submit")} <= named
    for path in named:
        assert (ROOT / path).is_file(), path
    for vendor in VENDORS:  # the console inputs shown are the sample files
        shown = re.search(rf"<!-- console:{vendor} -->\s*```json\s*(\{{.*?\}})\s*```", docs, re.S)
        assert shown, vendor
        assert json.loads(shown.group(1)) == json.loads((EVENTS / f"console-start-{vendor}.json").read_text()
                                                        .replace(PLACEHOLDER, "<ImportBucketName>"))


