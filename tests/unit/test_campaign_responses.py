"""CampaignConnector: how each Adobe answer maps to a named error or a state (no simulator)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import responses
from vendor_import.connectors import build_connector, load_settings
from vendor_import.connectors.base import StepContext
from vendor_import.errors import (
    SettingsError,
    VendorProtocolError,
    VendorRejectedError,
    VendorThrottledError,
    VendorUnavailableError,
)
from vendor_import.model import FinalState
from vendor_import.source import BytesSource

BASE = "https://mc.example.test"
TOKEN_URL = "https://ims.example.test/ims/token/v3"
INGEST = f"{BASE}/acme/campaign/dataIngestion/xdmIngestion/m1/ingest"


def connector(**overrides):
    doc = {"vendor": "campaign", "base_url": BASE, "organization": "acme",
           "ims": {"token_url": TOKEN_URL, "client_id": "cid", "client_secret": "unit-secret-77",
                   "scopes": "openid"}}
    doc.update(overrides)
    return build_connector("campaign", load_settings("campaign", doc))


def ctx():
    return StepContext(source=BytesSource(b'{"mapping_id": "m1"}', name="t.json"))


def job():
    return {"mapping_id": "m1", "max_resubmits": 3, "request_ids": [7], "adopted": 0, "polls": 0}


@pytest.fixture
def api():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(responses.POST, TOKEN_URL, json={"access_token": "at", "expires_in": 86399})
        yield rsps


def status_reply(api, body, status=200):
    api.add(responses.GET, re.compile(re.escape(INGEST) + r".*"), json=body, status=status)


@pytest.mark.parametrize(
    ("status", "body", "error", "text"),
    [
        (502, {"code": 502, "message": "Oops. Something went wrong. Check your URI and try again."},
         VendorRejectedError, "check setting organization"),
        (500, {"code": 500, "message": "Oops. Something went wrong. Check your URI and try again."},
         VendorRejectedError, "'acme' must be the Campaign tenant id"),
        (500, {"code": 500, "message": "Internal failure"}, VendorUnavailableError, "Internal failure"),
        (200, {"code": 500, "message": "Internal failure"}, VendorUnavailableError, "HTTP 500"),
        (429, {"error_code": "429001", "message": "Too many requests"}, VendorThrottledError, "throttling"),
        (400, {"error_code": "400100", "message": "Bad thing"}, VendorRejectedError, "400100 Bad thing"),
        (200, {"status": "Failed", "info": "Unable to submit: licence exhausted"}, VendorRejectedError,
         "licence exhausted"),
        (200, {"status": "Weird"}, VendorProtocolError, "unexpected answer"),
        (200, {"status": "Success"}, VendorProtocolError, "without a requestId"),
    ],
)
def test_submit_errors(api, status, body, error, text):
    api.add(responses.POST, INGEST, json=body, status=status)
    with pytest.raises(error, match=text):
        connector().submit(ctx())


def test_submit_non_json(api):
    api.add(responses.POST, INGEST, body="<html>gateway</html>")
    with pytest.raises(VendorProtocolError, match="expected JSON"):
        connector().submit(ctx())


def test_poll_failed_without_acp_code(api):
    status_reply(api, {"batchId": "", "info": "Mapping Id: m1. Something else broke", "numRecords": 0,
                       "requestId": 7, "status": "Failed"})
    progress = connector().poll(job(), ctx())
    assert progress.state is FinalState.FAILED
    assert progress.message.endswith("(request 7): Something else broke")
    assert progress.job["error_code"] == ""


@pytest.mark.parametrize("word", ["Queued", "Paused", "Pending"])
def test_poll_unknown_status_keeps_polling_and_says_the_word(api, word):
    status_reply(api, {"requestId": 7, "status": word})
    progress = connector().poll(job(), ctx())
    assert not progress.done
    assert progress.message == (
        f"Campaign answered status '{word}' for XDM mapping m1 (request 7), a word its documentation does "
        "not list (Success, Failed, Aborted, In Progress): the ingestion may still be running, polling "
        "goes on until deadline_seconds.")


@pytest.mark.parametrize("body", [{}, {"numRecords": None}, {"numRecords": "many"}, {"numRecords": -1}])
def test_success_without_a_count_says_the_count_is_unknown(api, body):
    status_reply(api, {"batchId": "", "info": "", "requestId": 7, "status": "Success", **body})
    progress = connector().poll(job(), ctx())
    assert progress.state is FinalState.SUCCEEDED
    assert "records" not in progress.counts and "accepted" not in progress.counts
    assert progress.message == (
        "Campaign reported the ingestion of XDM mapping m1 into Experience Platform a success (request 7) "
        "without a record count: numRecords was missing or not a number, so the count is unknown.")


@pytest.mark.parametrize(("given", "count"), [("1,234", 1234), ("1 234 567", 1234567), (15.0, 15), ("0", 0)])
def test_success_count_as_the_vendor_wrote_it(api, given, count):
    status_reply(api, {"batchId": "", "info": "", "requestId": 7, "status": "Success", "numRecords": given})
    progress = connector().poll(job(), ctx())
    assert progress.counts["records"] == count and progress.counts["accepted"] == count


def test_poll_not_found_hints_at_request_id_in(api):
    status_reply(api, {"code": 404, "message": "not found"}, status=404)
    with pytest.raises(VendorRejectedError, match="try setting request_id_in to body"):
        connector().poll(job(), ctx())


def test_poll_status_is_case_insensitive(api):
    status_reply(api, {"batchId": "", "info": "", "numRecords": "12", "requestId": 7, "status": "SUCCESS"})
    progress = connector().poll(job(), ctx())
    assert progress.state is FinalState.SUCCEEDED and progress.counts["records"] == 12


def test_body_mode_sends_json_body(api):
    status_reply(api, {"requestId": 7, "status": "In Progress"})
    connector(request_id_in="body").poll(job(), ctx())
    get = [c.request for c in api.calls if c.request.method == "GET"][0]
    assert json.loads(get.body) == {"requestId": 7} and "requestId" not in get.url


def test_job_state_stays_small_and_secret_free(api):
    status_reply(api, {"batchId": "b" * 40, "info": "Mapping Id: m1. ACP-880096 " + "x" * 5000,
                       "numRecords": 0, "requestId": 7, "status": "Failed"})
    progress = connector().poll(job(), ctx())
    dumped = json.dumps(progress.job)
    assert len(dumped) < 1000 and "unit-secret-77" not in dumped and '"at"' not in dumped


def test_http_token_url_needs_allow_http():
    with pytest.raises(SettingsError, match="ims.token_url"):
        connector(ims={"token_url": "http://ims.local/ims/token/v3", "client_id": "c",
                       "client_secret": "s3cret", "scopes": "openid"})


def test_scopes_are_required():
    with pytest.raises(SettingsError, match="missing setting ims.scopes"):
        connector(ims={"client_id": "c", "client_secret": "s3cret"})


def test_example_settings_validate():
    with open(Path(__file__).parents[2] / "events/settings/campaign.example.json") as f:
        settings = load_settings("campaign", json.load(f))
    assert settings["request_id_in"] == "query" and settings["max_resubmits"] == 3
    assert settings["ims"]["token_url"] == "https://ims-na1.adobelogin.com/ims/token/v3"
