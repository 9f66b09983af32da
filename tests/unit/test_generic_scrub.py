"""The generic secret scrubbing of the vendor step and of Finalize, tested with a throw-away
connector that scrubs nothing: a future connector that forgets to scrub its messages must still
not put a secret in the step payload (Step Functions history), in an error's Cause, in the status
record (DynamoDB, S3) or in the SNS message.

Each connector also scrubs its own messages; these tests do not rely on that, so removing the
step's or Finalize's scrubbing fails here even while every real connector still scrubs."""

from __future__ import annotations

import json

import pytest
from vendor_import.connectors import load_settings
from vendor_import.connectors.base import Connector
from vendor_import.errors import VendorRejectedError
from vendor_import.logic.vendor_step import VendorStep
from vendor_import.model import FinalState, Progress

KEY = "inbox/hopex/leaky.mgl"
PASSWORD = "leaky-settings-password-7Q"  # a secret field of the settings: registered when they load
BEARER = "eyJleaky.bearer.token"
SIGNATURE = "leakysignature0123456789"
# the shapes scrub knows: a registered secret, an Authorization header, a credential in a query
LEAK = (f"vendor said: password {PASSWORD} refused; Authorization: Bearer {BEARER}; "
        f"see https://vendor.example/job/7?X-Amz-Signature={SIGNATURE}&page=2")
SECRETS = (PASSWORD, BEARER, SIGNATURE)


def settings():
    return load_settings("hopex", {
        "vendor": "hopex", "base_url": "https://hopex.invalid", "environment_id": "e", "repository_id": "r",
        "profile_id": "p", "auth": {"type": "basic", "username": "u", "password": PASSWORD}})


class LeakyConnector(Connector):
    """Puts every secret it knows into whatever it returns or raises: scrubs nothing."""

    vendor = "hopex"

    def __init__(self, settings, *, fail=False):
        super().__init__(settings)
        self.fail = fail

    def submit(self, ctx):
        if self.fail:
            raise VendorRejectedError(LEAK)
        return Progress(job={"ref": "7"}, message=LEAK, vendor_ref=f"job 7 {LEAK}")

    def poll(self, job, ctx):
        return Progress(job=job, done=True, state=FinalState.SUCCEEDED, message=LEAK, vendor_ref=f"job 7 {LEAK}",
                        counts={"records": 1, "accepted": 1, "rejected": 0})


def step(account, connector, s):
    account.s3.put_object(Bucket=account.bucket, Key=KEY, Body=b'.Create ."Org-Unit" "Sales"\n')
    return VendorStep(vendor="hopex", settings_loader=lambda: s, s3_client=account.s3, store=account.store,
                      jobs=account.jobs, connector_cache={("hopex", "default", id(s)): connector})


def event(account, action, job=None):
    inp = {"bucket": account.bucket, "key": KEY}
    if job is not None:
        inp["job"] = job
    return {"action": action, "input": inp, "execution_name": "leaky-1"}


def assert_clean(text: str, where: str):
    for secret in SECRETS:
        assert secret not in text, f"{where} holds {secret!r}"
    assert "***" in text, f"{where}: the masked text is gone altogether"


def test_the_step_payload_masks_what_the_connector_left_in_its_message(account):
    s = settings()
    job = step(account, LeakyConnector(s), s).run(event(account, "submit"))
    assert_clean(job["message"], "payload message")


def test_an_error_the_connector_raises_reaches_step_functions_masked(account):
    s = settings()
    with pytest.raises(VendorRejectedError) as caught:
        step(account, LeakyConnector(s, fail=True), s).run(event(account, "submit"))
    assert_clean(str(caught.value), "str(error)")  # what Lambda reports as errorMessage
    assert_clean(caught.value.message, "error.message")


def test_the_status_record_and_sns_message_mask_what_the_connector_left(account):
    s = settings()
    vendor_step = step(account, LeakyConnector(s), s)
    job = vendor_step.run(event(account, "submit"))
    job = vendor_step.run(event(account, "poll", job))
    assert job["done"] is True
    record = account.finalizer().from_state({"input": {"bucket": account.bucket, "key": KEY, "job": job},
                                             "execution_name": "leaky-1"})
    assert record["state"] == "SUCCEEDED"
    assert_clean(json.dumps(record), "returned record")
    assert_clean(json.dumps(account.status_items(), default=str), "DynamoDB status item")
    assert_clean(account.read(record["status_uri"]).decode(), "S3 status record")
    (message,) = account.messages()
    assert_clean(json.dumps(message), "SNS message")


def test_finalize_masks_an_error_cause_whatever_raised_it(account):
    """A Cause the step did not raise through VendorStep (the Lambda runtime, a timeout, an
    unscrubbed exception of another function) is masked by Finalize itself."""
    cause = json.dumps({"errorType": "VendorRejectedError", "errorMessage": LEAK})
    record = account.finalizer().from_state({
        "input": {"bucket": account.bucket, "key": KEY, "job": {"vendor": "hopex"},
                  "error": {"Error": "VendorRejectedError", "Cause": cause}},
        "execution_name": "leaky-2"})
    assert record["state"] == "FAILED" and record["error"]["type"] == "VendorRejectedError"
    assert_clean(json.dumps(record), "returned record")
    (message,) = account.messages()
    assert_clean(json.dumps(message), "SNS message")


def test_finalize_masks_the_cause_of_an_execution_that_ended_without_it(account):
    settings()  # registers the password, as loading the settings does (the test no longer leans on the tests before it)
    record = account.finalizer().from_execution_event({"detail": {
        "name": "leaky-3", "status": "FAILED", "error": "States.Runtime", "cause": LEAK,
        "input": json.dumps({"bucket": account.bucket, "key": KEY})}})
    assert_clean(json.dumps(record), "returned record")
    (message,) = account.messages()
    assert_clean(json.dumps(message), "SNS message")
