"""CampaignConnector against the Campaign Standard simulator over HTTP (seed 001)."""

from __future__ import annotations

import json

import pytest
from vendor_import.connectors import build_connector, load_settings
from vendor_import.connectors.base import StepContext
from vendor_import.errors import (
    InputError,
    VendorAuthError,
    VendorImportError,
    VendorRejectedError,
    VendorUnavailableError,
)
from vendor_import.model import FinalState
from vendor_import.source import BytesSource

from local.simulators.base import Fault
from local.simulators.campaign import (
    CLIENT_SECRET,
    UNPROVISIONED_CLIENT_SECRET,
    CampaignSimulator,
)


@pytest.fixture(scope="module")
def server():
    with CampaignSimulator() as simulator:  # one server: stopping one takes half a second
        yield simulator


@pytest.fixture
def sim(server):
    server.reset(polls_before_done=2)
    return server


def make_connector(sim, **overrides):
    settings_doc = sim.settings(client=overrides.pop("client", "default"))
    settings_doc.update(overrides)
    return build_connector("campaign", load_settings("campaign", settings_doc))


def trigger(mapping_id=None, *, options=None, body=None, key_options=None, checkpoints=None):
    if body is None:
        doc = {} if mapping_id is None else {"mapping_id": mapping_id}
        if options:
            doc["options"] = options
        body = json.dumps(doc).encode() if doc else b""
    return StepContext(source=BytesSource(body, name="trigger.json"), options=key_options or {},
                       checkpoint=(checkpoints.append if checkpoints is not None else lambda job: None))


def run(connector, ctx, max_polls=20):
    """validate, submit, then poll until done; returns (submit progress, last progress, all)."""
    connector.validate(ctx)
    first = connector.submit(ctx)
    steps = [first]
    progress = first
    for _ in range(max_polls):
        if progress.done:
            break
        progress = connector.poll(json.loads(json.dumps(progress.job)), ctx)  # as the payload would
        steps.append(progress)
    assert progress.done, "the import did not finish"
    return first, progress, steps


def test_success(sim):
    first, final, steps = run(make_connector(sim), trigger("okProfiles120"))
    assert final.state is FinalState.SUCCEEDED
    assert final.counts == {"records": 120, "accepted": 120, "attempts": 1}
    assert "120 records" in final.message and "okProfiles120" in final.message
    assert final.vendor_ref == first.vendor_ref
    assert len(sim.ingest_posts()) == 1
    assert [p.done for p in steps] == [False, False, False, True]  # 2 x In Progress, then Success


def test_success_mapping_named_by_key_with_empty_trigger(sim):
    _, final, _ = run(make_connector(sim), trigger(body=b"", key_options={"mapping": "okFromKey7"}))
    assert final.state is FinalState.SUCCEEDED
    assert final.counts["records"] == 7
    assert sim.ingest_posts("okFromKey7")


def test_already_in_progress_adopted(sim):
    first, final, _ = run(make_connector(sim), trigger("busyProfiles"))
    assert len(sim.ingest_posts()) == 1  # adopted, never submitted again
    assert first.job["adopted"] == 1 and first.counts["adopted"] == 1
    assert "adopted" in first.message
    assert final.state is FinalState.SUCCEEDED
    assert final.counts["adopted"] == 1 and final.counts["attempts"] == 1
    assert "already in progress" in final.message


def test_submit_rerun_adopts_its_own_running_request(sim):
    connector = make_connector(sim)
    first = connector.submit(trigger("okRerun"))
    again = connector.submit(trigger("okRerun"))  # the state machine retried the step
    assert again.vendor_ref == first.vendor_ref
    assert len(sim.ingestions) == 1


def test_not_stopped(sim):
    with pytest.raises(VendorRejectedError) as exc:
        make_connector(sim).submit(trigger("notstoppedProfiles"))
    message = exc.value.message
    assert "not stopped" in message
    assert "Status of data export to platform" in message and "Stop" in message
    assert len(sim.ingest_posts()) == 1


def test_not_published(sim):
    with pytest.raises(VendorRejectedError) as exc:
        make_connector(sim).submit(trigger("notpublishedProfiles"))
    assert "not published" in exc.value.message and "publish it" in exc.value.message


def test_failed_with_batch(sim):
    _, final, _ = run(make_connector(sim), trigger("fail96Profiles"))
    assert final.state is FinalState.FAILED
    batch_id = final.job["batch_id"]
    assert batch_id.startswith("01SIMBATCH")
    assert batch_id in final.message
    assert "ACP-880096" in final.message and "Platform UI" in final.message
    assert final.job["error_code"] == "ACP-880096"
    assert final.counts["records"] == 0


def test_fail56(sim):
    _, final, _ = run(make_connector(sim), trigger("fail56Profiles"))
    assert final.state is FinalState.FAILED
    assert "ACP-880056 Failed to fetch the record from the database." in final.message
    assert "batch_id" not in final.job and "Batch id" not in final.message
    assert final.job["error_code"] == "ACP-880056"
    assert final.counts == {"records": 0, "accepted": 0, "attempts": 1}


def test_aborted_then_resubmitted_then_success(sim):
    checkpoints = []
    _, final, steps = run(make_connector(sim), trigger("abort1Profiles", checkpoints=checkpoints))
    assert len(sim.ingest_posts()) == 2
    assert final.state is FinalState.SUCCEEDED
    assert final.counts["attempts"] == 2
    assert len(final.job["request_ids"]) == 2
    assert final.vendor_ref == str(final.job["request_ids"][-1])
    assert "1 resubmission" in final.message
    assert any("aborted" in p.message for p in steps)
    assert checkpoints and len(checkpoints[-1]["request_ids"]) == 2  # saved right after the POST


def test_aborted_too_often_fails_after_max_resubmits(sim):
    _, final, _ = run(make_connector(sim, max_resubmits=3), trigger("abortallProfiles"))
    assert len(sim.ingest_posts()) == 3 + 1
    assert final.state is FinalState.FAILED
    assert "aborted 4 times" in final.message
    assert final.counts["attempts"] == 4 and len(final.job["request_ids"]) == 4


def test_max_resubmits_from_trigger_options(sim):
    _, final, _ = run(make_connector(sim), trigger("abortallProfiles", options={"max_resubmits": 1}))
    assert len(sim.ingest_posts()) == 2
    assert final.state is FinalState.FAILED and "aborted 2 times" in final.message


def test_token_cached(sim):
    run(make_connector(sim), trigger("okProfiles"))
    assert sim.token_calls == 1
    assert len(sim.requests_to("/ims/token/v3", "POST")) == 1
    assert len(sim.requests_to("/ingest")) == 4  # 1 POST + 3 GETs with the same token


def test_headers(sim):
    connector = make_connector(sim)
    connector.submit(trigger("okHeaders"))
    post = sim.ingest_posts()[0]
    assert post.header("Authorization").startswith("Bearer sim-at-")
    assert post.header("X-Api-Key") == "sim-campaign-client"
    assert post.header("Content-Type") == "application/json"
    assert post.header("Cache-Control") == "no-cache"
    token_call = sim.requests_to("/ims/token/v3")[0]
    assert "grant_type=client_credentials" in token_call.body.decode()
    assert "scope=openid%2CAdobeID" in token_call.body.decode()


def test_reauth_on_401_once(sim):
    connector = make_connector(sim)
    progress = connector.submit(trigger("okProfiles"))
    sim.revoke_tokens()  # the cached token expired at Adobe
    progress = connector.poll(progress.job, trigger("okProfiles"))
    assert sim.token_calls == 2
    gets = sim.requests_to("/ingest", "GET")
    assert len(gets) == 2  # refused once, then accepted with the fresh token
    assert gets[0].header("Authorization") != gets[1].header("Authorization")
    assert not progress.done


def test_401_twice_is_auth_error(sim):
    connector = make_connector(sim)
    sim.reject_all_tokens = True
    with pytest.raises(VendorAuthError) as exc:
        connector.submit(trigger("okProfiles"))
    assert "401013" in exc.value.message
    assert len(sim.ingest_posts()) == 2 and sim.token_calls == 2


def test_403_unprovisioned(sim):
    with pytest.raises(VendorAuthError) as exc:
        make_connector(sim, client="unprovisioned").submit(trigger("okProfiles"))
    message = exc.value.message
    assert "403023" in message and "Profile is not valid" in message
    assert "organization" in message and "provision" in message
    assert len(sim.ingest_posts()) == 1  # 403 is not retried


def test_bad_client_secret(sim):
    ims = dict(sim.settings()["ims"], client_secret="wrong-secret-1234")
    with pytest.raises(VendorAuthError) as exc:
        make_connector(sim, ims=ims).submit(trigger("okProfiles"))
    assert "invalid_client" in exc.value.message
    assert "wrong-secret-1234" not in exc.value.message
    assert not sim.ingest_posts()


def test_request_id_in_body_mode(sim):
    sim.reset(polls_before_done=1, require_request_id_in="body")
    _, final, _ = run(make_connector(sim, request_id_in="body"), trigger("okBody3"))
    assert final.state is FinalState.SUCCEEDED and final.counts["records"] == 3
    get = sim.requests_to("/ingest", "GET")[0]
    assert json.loads(get.body) == {"requestId": final.job["request_ids"][0]}
    assert "requestId" not in get.query


def test_request_id_in_query_mode(sim):
    sim.reset(polls_before_done=1, require_request_id_in="query")
    _, final, _ = run(make_connector(sim), trigger("okQuery"))
    assert final.state is FinalState.SUCCEEDED
    get = sim.requests_to("/ingest", "GET")[0]
    assert get.query["requestId"] == [str(final.job["request_ids"][0])] and not get.body


def test_request_id_in_wrong_mode_says_which_setting(sim):
    sim.reset(polls_before_done=1, require_request_id_in="body")
    connector = make_connector(sim, request_id_in="query")
    progress = connector.submit(trigger("okWrongMode"))
    with pytest.raises(VendorRejectedError) as exc:
        connector.poll(progress.job, trigger("okWrongMode"))
    assert "request_id_in to body" in exc.value.message


def test_wrong_organization(sim):
    with pytest.raises(VendorRejectedError) as exc:
        make_connector(sim, organization="notmyorg").submit(trigger("okProfiles"))
    assert "Check your URI" in exc.value.message and "organization" in exc.value.message


def test_poll_after_transient_error_is_safe_to_rerun(sim):
    connector = make_connector(sim)
    progress = connector.submit(trigger("okRetry"))
    sim.inject(Fault(status=500, match="/ingest"))  # urllib3 retries 502-504 only, not 500
    with pytest.raises(VendorUnavailableError):
        connector.poll(progress.job, trigger("okRetry"))
    for _ in range(5):  # the state machine re-runs the step with the same job
        progress = connector.poll(progress.job, trigger("okRetry"))
        if progress.done:
            break
    assert progress.state is FinalState.SUCCEEDED
    assert len(sim.ingest_posts()) == 1


def test_validate_makes_no_call(sim):
    connector = make_connector(sim)
    connector.validate(trigger("okProfiles"))
    with pytest.raises(InputError):
        connector.validate(trigger(body=b"{not json"))
    assert not sim.requests


def test_no_secret_in_messages(sim):
    texts = []
    scenarios = [("okProfiles", {}), ("busyP", {}), ("fail96P", {}), ("fail56P", {}),
                 ("abortallP", {}), ("notstoppedP", {}), ("okP", {"client": "unprovisioned"})]
    for mapping_id, overrides in scenarios:
        try:
            _, final, steps = run(make_connector(sim, **overrides), trigger(mapping_id))
            texts += [p.message for p in steps] + [json.dumps(p.to_dict(), default=str) for p in steps]
        except VendorImportError as exc:
            texts.append(exc.message)
    sim.reject_all_tokens = True
    with pytest.raises(VendorAuthError) as exc:
        make_connector(sim).submit(trigger("okProfiles"))
    texts.append(exc.value.message)
    joined = "\n".join(texts)
    assert len(texts) > 20
    for secret in (CLIENT_SECRET, UNPROVISIONED_CLIENT_SECRET, *sim.tokens):
        assert secret not in joined
    assert "sim-at-" not in joined
