"""AEP connector, default settings, against the AEP simulator over HTTP: raw records go one per
request to POST /collection/{inlet} with x-adobe-flow-id, the one raw path Adobe documents
(seed 003, "Affichage des données brutes à ingérer"); a documented inlet refuses bare records on
/collection/batch, and the opt-in raw_batch then fails naming the setting to change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from vendor_import.errors import VendorRejectedError, VendorUnavailableError
from vendor_import.model import FinalState
from vendor_import.source import BytesSource, FileSource

from local.simulators.aep import AepSimulator
from local.simulators.base import Fault, Reply

from .test_aep_contract import Run, a_failing_first_step, connector_for, ndjson, people

FILES = Path(__file__).resolve().parents[2] / "events" / "files" / "aep"
UNKNOWN_FORMAT = "Message has unknown xdm format"


@pytest.fixture
def sim():
    with AepSimulator() as s:  # a documented inlet: no raw records on /collection/batch
        yield s


def single_requests(sim, inlet: str):
    return sim.requests_to(f"/collection/{inlet}", "POST")


def test_default_settings_send_each_raw_record_alone_to_the_documented_endpoint(sim):
    inlet, flow = sim.settings()["inlet_id"], sim.settings()["flow_id"]
    assert "raw_batch" not in sim.settings()  # the example/default settings, nothing opted in
    run = Run(connector_for(sim), FileSource(str(FILES / "profiles-clean.ndjson")))
    done = run.all()
    assert done.state == FinalState.SUCCEEDED
    assert done.counts["records"] == done.counts["accepted"] == done.counts["requests"] == 20
    assert sim.requests_to("/collection/batch/") == []
    reqs = single_requests(sim, inlet)
    assert len(reqs) == 20
    assert {r.path for r in reqs} == {f"/collection/{inlet}"}
    assert {r.header("x-adobe-flow-id") for r in reqs} == {flow}
    assert {r.header("Content-Type") for r in reqs} == {"application/json"}
    lines = (FILES / "profiles-clean.ndjson").read_bytes().splitlines()
    assert sorted(r.body for r in reqs) == sorted(line.strip() for line in lines if line.strip())  # as written
    assert set(sim.accepted_ids().values()) == {1} and len(sim.accepted_ids()) == 20


def test_a_refused_record_is_a_reject_with_the_inlets_words(sim):
    run = Run(connector_for(sim), FileSource(str(FILES / "profiles-with-refused.ndjson")))
    done = run.all()
    assert done.state == FinalState.SUCCEEDED_WITH_REJECTS
    assert done.counts["rejected"] >= 1 and done.counts["accepted"] + done.counts["rejected"] == done.counts["records"]
    assert {row.code for row in run.rows} == {"400"}
    assert all(UNKNOWN_FORMAT in row.reason for row in run.rows)
    refused = [json.loads(line)["id"] for line in run.raw.splitlines()]
    assert len(refused) == done.counts["rejected"] and not set(refused) & set(sim.accepted_ids())


def test_a_documented_inlet_refuses_raw_records_on_batch_and_the_error_names_the_setting(sim):
    run = Run(connector_for(sim, raw_batch=True), FileSource(str(FILES / "profiles-clean.ndjson")))
    start = run.submit()
    with pytest.raises(VendorRejectedError) as caught:
        run.connector.poll(start.job, run.ctx())
    text = caught.value.message
    assert "Set raw_batch to false" in text and UNKNOWN_FORMAT in text and "/collection/batch" in text
    assert sim.accepted == []


def test_an_inlet_refusing_a_whole_raw_batch_with_400_names_the_setting(sim):
    sim.inject(Fault(status=400, match="/collection/batch"))
    run = Run(connector_for(sim, raw_batch=True), FileSource(str(FILES / "profiles-clean.ndjson")))
    start = run.submit()
    with pytest.raises(VendorRejectedError, match="Set raw_batch to false"):
        run.connector.poll(start.job, run.ctx())


def test_503_and_429_on_single_requests_are_retried(sim):
    inlet = sim.settings()["inlet_id"]
    sim.inject(Fault(status=503, match="/collection/"), Fault(status=429, match="/collection/"))
    done = Run(connector_for(sim, single_concurrency=1), FileSource(str(FILES / "profiles-clean.ndjson"))).all()
    assert done.state == FinalState.SUCCEEDED
    assert (done.counts["requests"], done.counts["retries"]) == (22, 2)
    assert len(single_requests(sim, inlet)) == 22 and len(sim.accepted_ids()) == 20


def test_a_request_failing_for_good_mid_batch_then_the_retried_step_sends_each_record_once(sim):
    records = people(120)
    # max_retries 3: the first attempt and its 3 retries fail
    run, start = a_failing_first_step(sim, records, b'"R00030"', 4, Reply(503, {"title": "Service Unavailable"}),
                                      match="gave up after 4 attempts", max_retries=3, single_concurrency=4,
                                      retry_base_seconds=0.0)
    # records 1-29 were accepted before R00030 failed: the checkpoint says so
    assert run.checkpoints[-1]["counts"]["accepted"] >= 29
    done = run.finish(type(start)(job=run.checkpoints[-1]))
    assert done.state == FinalState.SUCCEEDED
    assert sim.accepted_ids() == {r["id"]: 1 for r in records}  # nothing twice, nothing skipped
    assert done.counts["records"] == done.counts["accepted"] == 120


def test_413_on_a_single_record_is_a_reject(sim):
    sim.max_body_bytes = 500
    records = people(5)
    records[1]["blob"] = "y" * 600
    run = Run(connector_for(sim), BytesSource(ndjson(records), "p.ndjson"))
    done = run.all()
    assert done.state == FinalState.SUCCEEDED_WITH_REJECTS
    (row,) = run.rows
    assert (row.record, row.code) == ("record 2 (line 2)", "413")
    assert sim.accepted_ids() == {r["id"]: 1 for r in records if r["id"] != "R00002"}


def test_pacing_keeps_single_requests_under_the_inlet_rate():
    with AepSimulator(max_requests_per_second=25) as sim:
        conn = connector_for(sim, single_concurrency=8, max_requests_per_second=10)
        done = Run(conn, BytesSource(ndjson(people(30)), "paced.ndjson")).all()
        assert done.counts["accepted"] == 30
        assert done.counts["requests"] == 30 and done.counts["retries"] == 0  # never answered 429


def test_authenticated_inlet_gets_the_bearer_token_on_each_single_request():
    with AepSimulator(authenticated=True) as sim:
        done = Run(connector_for(sim), FileSource(str(FILES / "profiles-clean.ndjson"))).all()
        assert done.state == FinalState.SUCCEEDED
        reqs = single_requests(sim, sim.settings()["inlet_id"])
        assert len(reqs) == 20 and all(r.header("Authorization").startswith("Bearer ") for r in reqs)
        assert {r.header("x-gw-ims-org-id") for r in reqs} == {AepSimulator.ORG}


def test_a_slow_or_dropped_single_request_is_retried_with_the_timeout_and_nothing_is_lost(sim):
    """The one-record path posts through the session's urllib3 pool directly: its transport
    failures are the same named errors, retried by the connector."""
    sim.inject(Fault(delay=1.5, match="/collection/"), Fault(drop=True, match="/collection/"))
    conn = connector_for(sim, timeout_seconds=1, single_concurrency=1)
    assert conn._direct is not None  # the direct path is the one under test
    done = Run(conn, FileSource(str(FILES / "profiles-clean.ndjson"))).all()
    assert done.state == FinalState.SUCCEEDED and done.counts["retries"] == 2
    assert len(sim.accepted_ids()) == 20


def test_a_single_request_to_a_closed_port_is_vendor_unavailable(sim):
    conn = connector_for(sim, base_url="http://127.0.0.1:9", max_retries=3, retry_base_seconds=0.0)
    run = Run(conn, BytesSource(ndjson(people(1)), "one.ndjson"))
    start = run.submit()
    with pytest.raises(VendorUnavailableError, match="cannot reach the vendor.*gave up after 4 attempts"):
        conn.poll(start.job, run.ctx())


def test_an_environment_proxy_keeps_the_requests_path(sim, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("NO_PROXY", "")
    assert connector_for(sim)._direct is None


def test_a_200_without_the_documented_xaction_id_is_not_counted_accepted_and_is_sent_again(sim):
    sim.inject(Fault(malformed=True, match="/collection/"), Fault(malformed=True, match="/collection/"))
    done = Run(connector_for(sim, single_concurrency=1, retry_base_seconds=0.0),
               FileSource(str(FILES / "profiles-clean.ndjson"))).all()
    assert done.state == FinalState.SUCCEEDED
    assert (done.counts["accepted"], done.counts["requests"], done.counts["retries"]) == (20, 22, 2)
    assert len(sim.accepted_ids()) == 20 and set(sim.accepted_ids().values()) == {1}
