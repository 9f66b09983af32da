"""Adobe Campaign Standard XDM ingestion triggers through the whole local pipeline (issue 4):
S3 upload -> queue -> submit function -> state machine (the real ASL) -> campaign function <->
Campaign + IMS simulator over HTTP -> finalize -> DynamoDB, S3, SNS.

The pipeline is the e2e package's one deployment (tests/e2e/conftest.py ``pipe``): two local
pipelines cannot live in one process at once, so this module adds the campaign settings to it.
Each test uses its own S3 keys; the simulator forgets its ingestions and faults before each test.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from vendor_import.connectors.campaign import PUBLISH_ADVICE, STOP_ADVICE

from local.simulators.campaign import CLIENT_SECRET, CampaignSimulator

pytestmark = pytest.mark.e2e

VENDOR = "campaign"  # for the vendor_sim fixture (conftest.py)

ROOT = Path(__file__).resolve().parents[2]
FILES = ROOT / "events" / "files" / "campaign"


# -- fixtures -------------------------------------------------------------------------------------------

@pytest.fixture
def campaign(pipe, vendor_sim, request):
    campaign_sim = vendor_sim  # shared by the e2e package (conftest.py), its settings already in place

    def reset():
        with campaign_sim._state_lock:
            tokens = dict(campaign_sim.tokens)
        campaign_sim.reset()
        with campaign_sim._state_lock:
            campaign_sim.tokens.update(tokens)  # a server does not forget tokens between imports

    reset()
    yield Campaign(pipe, campaign_sim, request.node.name)
    reset()


class Campaign:
    def __init__(self, pipe, sim: CampaignSimulator, test_name: str):
        self.pipe = pipe
        self.sim = sim
        self.name = re.sub(r"[^A-Za-z0-9_-]+", "-", test_name)[:60]

    def key(self, segments: str = "") -> str:
        return f"inbox/campaign/{segments}{self.name}.json"

    def trigger(self, mapping_id: str, **options) -> bytes:
        doc: dict = {"mapping_id": mapping_id}
        if options:
            doc["options"] = options
        return json.dumps(doc).encode()

    def status_gets(self) -> list:
        return self.sim.requests_to("/ingest", "GET")

    def one_outcome(self, result, *, state: str) -> dict:
        """The final state, and exactly one status record, status JSON and SNS message."""
        assert result.state == state, result.record
        record = result.record
        assert record["job_id"] == result.job_id and record["vendor"] == "campaign"
        assert record["source"]["key"] == result.key and record.get("notified_at")
        document = json.loads(self.pipe.s3.get_object(
            Bucket=self.pipe.bucket, Key=f"status/campaign/{result.job_id}.json")["Body"].read())
        messages = [m for m in self.pipe.drain_messages() if m["body"]["job_id"] == result.job_id]
        assert len(messages) == 1, messages
        (message,) = messages
        assert document == message["body"] == {k: v for k, v in record.items() if k != "notified_at"}
        assert message["subject"] == f"[campaign] {state}: {result.key.rsplit('/', 1)[-1]}"
        assert message["attributes"] == {"vendor": "campaign", "target": "default", "state": state, "dry_run": "false",
                                         **({"error_type": record["error"]["type"]} if record["error"] else {})}
        text = json.dumps(message)
        assert CLIENT_SECRET not in text and not any(t in text for t in self.sim.tokens)
        assert record["rejects"] == {"csv_uri": None, "raw_uri": None, "rows": 0}  # Campaign has none
        return record


# -- Success --------------------------------------------------------------------------------------------

def test_success_reports_the_number_of_records_ingested(campaign):
    result = campaign.pipe.import_file(FILES / "success.json", campaign.key())
    record = campaign.one_outcome(result, state="SUCCEEDED")
    (ingestion,) = campaign.sim.ingestions.values()
    assert record["counts"] == {"records": 120, "accepted": 120, "rejected": 0, "attempts": 1}
    assert record["vendor_ref"] == str(ingestion.request_id)
    assert record["message"] == (f"Campaign ingested 120 records of XDM mapping okProfiles120 into Experience "
                                 f"Platform (request {ingestion.request_id}).")
    assert len(campaign.sim.ingest_posts("okProfiles120")) == 1
    assert len(campaign.status_gets()) == 3 and record["polls"] == 3  # In Progress twice, then Success
    assert all(r.query["requestId"] == [str(ingestion.request_id)] for r in campaign.status_gets())


def test_mapping_named_by_the_key_with_an_empty_trigger_file(campaign):
    result = campaign.pipe.import_file(b"", campaign.key(segments="mapping=okProfiles42/"))
    record = campaign.one_outcome(result, state="SUCCEEDED")
    assert record["counts"]["records"] == 42
    assert len(campaign.sim.ingest_posts("okProfiles42")) == 1


def test_ingestion_already_in_progress_is_adopted_not_started_again(campaign):
    result = campaign.pipe.import_file(FILES / "busy.json", campaign.key())
    record = campaign.one_outcome(result, state="SUCCEEDED")
    assert len(campaign.sim.ingest_posts()) == 1  # the one POST answered In Progress: adopted
    (ingestion,) = campaign.sim.ingestions.values()  # the one someone else started
    assert record["vendor_ref"] == str(ingestion.request_id)
    assert record["counts"] == {"records": 15, "accepted": 15, "rejected": 0, "attempts": 1, "adopted": 1}
    assert "adopted an ingestion that was already in progress" in record["message"]


# -- the mapping is not ready -----------------------------------------------------------------------------

@pytest.mark.parametrize(("file", "advice"), [("not-stopped.json", STOP_ADVICE),
                                              ("not-published.json", PUBLISH_ADVICE)])
def test_mapping_not_stopped_or_not_published_is_failed_telling_what_to_do(campaign, file, advice):
    result = campaign.pipe.import_file(FILES / file, campaign.key())
    record = campaign.one_outcome(result, state="FAILED")
    assert record["error"]["type"] == "VendorRejectedError"
    what = "not stopped" if "stopped" in file else "not published"
    assert f"Campaign refused it because the mapping is {what}: {advice}." in record["message"]
    assert "upload the trigger again" in record["message"]
    assert len(campaign.sim.ingest_posts()) == 1 and campaign.status_gets() == []
    assert campaign.sim.ingestions == {}


# -- Failed and Aborted ------------------------------------------------------------------------------------

def test_failed_ingestion_gives_the_batch_id_to_look_up(campaign):
    result = campaign.pipe.import_file(FILES / "failed-batch.json", campaign.key())
    record = campaign.one_outcome(result, state="FAILED")
    (ingestion,) = campaign.sim.ingestions.values()
    batch_id = f"01SIMBATCH{ingestion.request_id}"
    assert record["message"] == (
        f"Campaign failed to ingest XDM mapping fail96Profiles (request {ingestion.request_id}): ACP-880096 "
        f"Sync Job failed to upload. Please check the error in the Platform UI. Batch id {batch_id}: look it "
        f"up in the Experience Platform UI (Monitoring, or the dataset's batches) for the record errors.")
    # the vendor's verdict, in its own words
    assert record["error"] == {"type": "VendorJobFailed", "message": record["message"]}
    assert record["vendor_ref"] == str(ingestion.request_id)
    assert len(campaign.sim.ingest_posts()) == 1


def test_failed_ingestion_without_records_says_why(campaign):
    result = campaign.pipe.import_file(FILES / "failed-no-records.json", campaign.key())
    record = campaign.one_outcome(result, state="FAILED")
    assert "ACP-880056 Failed to fetch the record from the database." in record["message"]
    assert "Batch id" not in record["message"]
    assert record["error"]["type"] == "VendorJobFailed"
    assert "ACP-880056 Failed to fetch the record from the database." in record["error"]["message"]
    assert record["counts"] == {"records": 0, "accepted": 0, "rejected": 0, "attempts": 1}


def test_aborted_then_resubmitted_then_succeeds(campaign):
    result = campaign.pipe.import_file(FILES / "aborted-then-success.json", campaign.key())
    record = campaign.one_outcome(result, state="SUCCEEDED")
    first, second = sorted(campaign.sim.ingestions)
    assert [i.attempt for i in campaign.sim.ingestions.values()] == [1, 2]
    assert len(campaign.sim.ingest_posts("abort1Profiles")) == 2
    assert record["vendor_ref"] == str(second)
    assert record["counts"] == {"records": 15, "accepted": 15, "rejected": 0, "attempts": 2}
    assert f"after 1 resubmission of aborted request {first}" in record["message"]


def test_aborted_more_often_than_max_resubmits_is_failed(campaign):
    # max_resubmits from a key segment: the first request and one resubmission
    result = campaign.pipe.import_file(campaign.trigger("abortallProfiles"),
                                       campaign.key(segments="max_resubmits=1/"))
    record = campaign.one_outcome(result, state="FAILED")
    first, second = sorted(campaign.sim.ingestions)
    assert len(campaign.sim.ingest_posts()) == 2
    assert record["message"] == (
        f"The ingestion of XDM mapping abortallProfiles was aborted 2 times by Campaign (status Aborted: "
        f"Ingestion request aborted due to some issue with data ingestion service. Please submit a new request; "
        f"requests {first}, {second}; max_resubmits is 1): check the data ingestion service and the mapping status in "
        f"Campaign, then upload the trigger again.")
    assert record["counts"]["attempts"] == 2


def test_aborted_always_with_the_settings_max_resubmits(campaign):
    result = campaign.pipe.import_file(FILES / "aborted-always.json", campaign.key())
    record = campaign.one_outcome(result, state="FAILED")
    assert len(campaign.sim.ingest_posts()) == 4  # max_resubmits 3 in the settings
    assert "aborted 4 times" in record["message"]
    assert record["error"]["type"] == "VendorJobFailed"
    assert "Ingestion request aborted due to some issue with data ingestion service" in record["error"]["message"]


# -- credentials ------------------------------------------------------------------------------------------------

def test_wrong_client_secret_is_failed_with_an_auth_error_and_nothing_triggered(campaign):
    settings = campaign.sim.settings()
    wrong = "wrong-campaign-secret-e2e"
    campaign.pipe.set_settings("campaign", {**settings, "ims": {**settings["ims"], "client_secret": wrong}})
    result = campaign.pipe.import_file(FILES / "success.json", campaign.key())
    record = campaign.one_outcome(result, state="FAILED")
    assert record["error"]["type"] == "VendorAuthError"
    assert "Adobe IMS refused the client credentials (HTTP 401)" in record["message"]
    assert "ims.client_secret" in record["message"]
    assert campaign.sim.ingest_posts() == [] and campaign.sim.ingestions == {}
    assert wrong not in json.dumps(record)


def test_access_token_refused_even_after_a_fresh_one_is_failed_with_an_auth_error(campaign):
    campaign.sim.reject_all_tokens = True
    result = campaign.pipe.import_file(FILES / "success.json", campaign.key())
    record = campaign.one_outcome(result, state="FAILED")
    assert record["error"]["type"] == "VendorAuthError"
    assert "Adobe refused the access token twice (HTTP 401) 401013" in record["message"]
    assert len(campaign.sim.ingest_posts()) == 2  # refused, new token, refused again
    assert campaign.sim.ingestions == {}


def test_expired_token_is_renewed_once_and_the_import_succeeds(campaign):
    result = campaign.pipe.import_file(FILES / "success.json", campaign.key(segments="first/"))
    campaign.one_outcome(result, state="SUCCEEDED")
    campaign.sim.revoke_tokens()
    calls = campaign.sim.token_calls
    result = campaign.pipe.import_file(FILES / "aborted-then-success.json", campaign.key(segments="second/"))
    campaign.one_outcome(result, state="SUCCEEDED")
    assert campaign.sim.token_calls == calls + 1


def test_unprovisioned_technical_account_is_failed_with_the_provisioning_hint(campaign):
    campaign.pipe.set_settings("campaign", campaign.sim.settings(client="unprovisioned"))
    result = campaign.pipe.import_file(FILES / "success.json", campaign.key())
    record = campaign.one_outcome(result, state="FAILED")
    assert record["error"]["type"] == "VendorAuthError"
    assert "403023" in record["message"] and "Adobe support fixes IMS provisioning" in record["message"]
    assert campaign.sim.ingestions == {}


def test_trigger_without_a_well_formed_mapping_id_is_failed_before_any_call(campaign):
    result = campaign.pipe.import_file(FILES / "bad-mapping-id.json", campaign.key())
    record = campaign.one_outcome(result, state="FAILED")
    assert record["error"]["type"] == "InputError"
    assert "XDM mapping id 'my mapping/../x' is not well-formed" in record["message"]
    assert campaign.sim.requests == []
