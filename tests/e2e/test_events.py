"""The sample events in events/ (for `sam local invoke -e`), each run through its function in the
local pipeline after replacing the bucket placeholder, end as their documentation says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from local.simulators.hopex import SimJob, judge

pytestmark = pytest.mark.e2e

EVENTS = Path(__file__).resolve().parents[2] / "events"
PLACEHOLDER = "REPLACE-WITH-IMPORT-BUCKET"
VERSION_PLACEHOLDER = "REPLACE-WITH-VERSION-ID"
KEY = "inbox/hopex/clean.mgl"


def load(name: str, bucket: str, version: str | None = None) -> dict:
    text = (EVENTS / name).read_text()
    assert PLACEHOLDER in text
    if version is not None:
        text = text.replace(VERSION_PLACEHOLDER, version)
    return json.loads(text.replace(PLACEHOLDER, bucket))


def invoke(pipe, function: str, event: dict) -> dict:
    resp = pipe.lambda_client.invoke(FunctionName=function, Payload=json.dumps(event).encode())
    payload = json.loads(resp["Payload"].read() or b"null")
    assert "FunctionError" not in resp, payload
    return payload


@pytest.fixture
def uploaded(e2e):
    e2e.put_without_event(KEY, e2e.sample("clean.mgl"))
    return e2e


SAMPLES = ["submit-sqs-upload.json", "vendor-submit.json", "vendor-poll.json", "finalize-succeeded.json",
           "finalize-caught-error.json", "finalize-execution-timed-out.json", "console-start-hopex.json"]


def test_every_sample_event_is_json_and_names_the_bucket_by_the_placeholder():
    for path in EVENTS.glob("*.json"):
        json.loads(path.read_text())
    for name in SAMPLES:
        assert PLACEHOLDER in (EVENTS / name).read_text(), name


def test_submit_sqs_upload_starts_the_import_of_clean_mgl(e2e):
    version = e2e.put_without_event(KEY, e2e.sample("clean.mgl"))["VersionId"]
    event = load("submit-sqs-upload.json", e2e.pipe.bucket, version)
    assert invoke(e2e.pipe, e2e.submit_function, event) == {"batchItemFailures": []}
    result = e2e.pipe._result_for(KEY, {"version": version})
    assert result.execution_status == "SUCCEEDED" and result.state == "SUCCEEDED"
    e2e.one_outcome(job_id=result.job_id)
    assert len(e2e.sim.jobs) == 1


def test_vendor_submit_sends_the_file_to_hopex_and_asks_to_wait(uploaded):
    e2e = uploaded
    job = invoke(e2e.pipe, e2e.vendor_function, load("vendor-submit.json", e2e.pipe.bucket))
    (sim_job,) = e2e.sim.jobs.values()
    assert job["done"] is False
    # the static backoff's first wait, or straight to the end expected from recent jobs
    pace = job.get("pace")
    assert job["wait_seconds"] == ((pace.get("probe_seconds") or pace["expected_seconds"]) if pace else 5)
    assert job["vendor_ref"] == job["connector"]["job_id"] == sim_job.job_id
    assert sim_job.filename == "clean.mgl" and sim_job.validate == "Standard"


def test_vendor_poll_reads_the_job_status_and_ends_succeeded(uploaded):
    e2e = uploaded
    event = load("vendor-poll.json", e2e.pipe.bucket)
    job_id = event["input"]["job"]["connector"]["job_id"]
    content = e2e.sample("clean.mgl")  # HOPEX already has the job the sample polls
    e2e.sim.jobs[job_id] = SimJob(job_id, "clean.mgl", len(content), "Standard", "form", judge(content),
                                  running_polls=0)
    job = invoke(e2e.pipe, e2e.vendor_function, event)
    assert job["done"] is True and job["state"] == "SUCCEEDED"
    assert job["polls"] == 2 and job["waited_seconds"] == 15
    assert len(e2e.import_status_gets()) == 1


def test_finalize_succeeded_writes_the_status_and_notifies(e2e):
    event = load("finalize-succeeded.json", e2e.pipe.bucket)
    record = invoke(e2e.pipe, e2e.finalize_function, event)
    assert record["state"] == "SUCCEEDED" and record["vendor_ref"] == event["input"]["job"]["vendor_ref"]
    stored, message = e2e.one_outcome(job_id=event["execution_name"])
    assert message["attributes"]["state"] == "SUCCEEDED"


def test_finalize_caught_error_is_failed_with_the_error(e2e):
    event = load("finalize-caught-error.json", e2e.pipe.bucket)
    record = invoke(e2e.pipe, e2e.finalize_function, event)
    assert record["state"] == "FAILED"
    assert record["error"]["type"] == "VendorAuthError"
    assert record["message"].startswith("HOPEX UAS token request: UAS refused the credentials")
    e2e.one_outcome(job_id=event["execution_name"])


def test_finalize_execution_timed_out_event_writes_a_timed_out_status(e2e):
    event = load("finalize-execution-timed-out.json", e2e.pipe.bucket)
    record = invoke(e2e.pipe, e2e.finalize_function, event)
    assert record["state"] == "TIMED_OUT" and record["error"]["type"] == "DeadlineExceeded"
    e2e.one_outcome(job_id=event["detail"]["name"])
    assert invoke(e2e.pipe, e2e.finalize_function, event) is None  # delivered twice: nothing more
    e2e.one_outcome(job_id=event["detail"]["name"])


def test_console_start_hopex_input_succeeds(uploaded):
    e2e = uploaded
    result = e2e.pipe.start_console("hopex", load("console-start-hopex.json", e2e.pipe.bucket))
    assert result.state == "SUCCEEDED"
    e2e.one_outcome(job_id=result.job_id)
