"""AEP connector against the AEP simulator over HTTP: one test per branch of the issue.

These tests drive the /collection/batch path: raw records with the opt-in ``raw_batch`` (the
simulator built with ``raw_on_batch=True``, an inlet that takes them), and XDM envelopes. The
documented default path for raw records (one per request to /collection/{inlet}) is in
test_aep_single.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from vendor_import.connectors import build_connector, load_settings
from vendor_import.connectors.base import StepContext
from vendor_import.errors import InputError, VendorAuthError, VendorUnavailableError
from vendor_import.model import FinalState
from vendor_import.source import BytesSource, FileSource

from local.simulators.aep import AepSimulator
from local.simulators.base import Fault, Reply

FILES = Path(__file__).resolve().parents[2] / "events" / "files" / "aep"


class Crash(Exception):
    """Stands for the Lambda dying right after a checkpoint was persisted."""


class Run:
    """Drives one import like the state machine: submit, then poll until done; collects the
    staged reject parts (by part id, as Finalize does) and the checkpoints."""

    def __init__(self, connector, source, *, options=None, batches_per_step=None, crash_at=None):
        self.connector = connector
        self.source = source
        self.options = options or {}
        self.parts: dict[str, tuple] = {}
        self.checkpoints: list[dict] = []
        self.batches_per_step = batches_per_step
        self.crash_at = crash_at  # raise Crash after this many checkpoints
        self.steps = 0

    def ctx(self) -> StepContext:
        calls = {"n": 0}

        def time_left() -> float:  # a budget counted in batches started, not seconds
            calls["n"] += 1
            return 600.0 if self.batches_per_step is None or calls["n"] <= self.batches_per_step else 0.0

        return StepContext(source=self.source, options=self.options, time_left=time_left,
                           checkpoint=self._checkpoint, emit_rejects=self._emit)

    def _checkpoint(self, job):
        self.checkpoints.append(json.loads(json.dumps(job)))
        if self.crash_at is not None and len(self.checkpoints) >= self.crash_at:
            self.crash_at = None
            raise Crash()

    def _emit(self, part_id, rows, raw=None, fmt=None):
        self.parts[part_id] = (rows, raw, fmt)

    def submit(self):
        return self.connector.submit(self.ctx())

    def finish(self, progress, max_steps=500):
        while not progress.done:
            assert self.steps < max_steps, "the import does not end"
            self.steps += 1
            progress = self.connector.poll(progress.job, self.ctx())
        return progress

    def all(self):
        return self.finish(self.submit())

    @property
    def rows(self):
        return [row for pid in sorted(self.parts) for row in self.parts[pid][0]]

    @property
    def raw(self) -> bytes:
        return b"".join(self.parts[pid][1] or b"" for pid in sorted(self.parts))


@pytest.fixture
def sim():
    with AepSimulator(raw_on_batch=True) as s:
        yield s


def connector_for(sim, **overrides):
    doc = sim.settings()
    doc.update(overrides)
    return build_connector("aep", load_settings("aep", doc))


def ndjson(records) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


def people(n, start=1, **extra):
    return [{"id": f"R{i:05d}", "name": f"person {i}", **extra} for i in range(start, start + n)]


def fail_requests_holding(sim, marker: bytes, times: int, reply: Reply) -> None:
    """The next ``times`` requests whose body holds ``marker`` get ``reply``; the rest go through."""
    failing = {"left": times}
    handle = sim.handle

    def flaky(req):
        if marker in req.body and failing["left"]:
            failing["left"] -= 1
            return reply
        return handle(req)

    sim.handle = flaky


def a_failing_first_step(sim, records, marker: bytes, times: int, reply: Reply, match: str | None = None,
                         **settings):
    """Requests holding ``marker`` fail ``times`` times: the first sending step raises
    VendorUnavailableError (its retries spent). Returns the run and its submit progress."""
    fail_requests_holding(sim, marker, times, reply)
    conn = connector_for(sim, **settings)
    run = Run(conn, BytesSource(ndjson(records), "flaky.ndjson"))
    start = run.submit()
    with pytest.raises(VendorUnavailableError, match=match):
        conn.poll(start.job, run.ctx())
    return run, start


def batch_requests(sim):
    return sim.requests_to("/collection/batch/", "POST")


def test_clean_ndjson_all_accepted(sim):
    run = Run(connector_for(sim), FileSource(str(FILES / "profiles-clean.ndjson")))
    done = run.all()
    assert done.state == FinalState.SUCCEEDED
    assert done.counts["records"] == done.counts["sent"] == done.counts["accepted"] == 20
    assert done.counts["rejected"] == 0 and not run.parts
    assert set(sim.accepted_ids().values()) == {1} and len(sim.accepted_ids()) == 20
    req = batch_requests(sim)[0]
    assert req.header("x-adobe-flow-id") == sim.settings()["flow_id"]
    assert req.header("Content-Type") == "application/json"
    assert set(json.loads(req.body)) == {"messages"}
    assert done.vendor_ref == sim.settings()["flow_id"]


def test_some_refused_rejects_file_is_reuploadable(sim):
    run = Run(connector_for(sim), FileSource(str(FILES / "profiles-with-refused.ndjson")))
    done = run.all()
    assert done.state == FinalState.SUCCEEDED_WITH_REJECTS
    assert (done.counts["accepted"], done.counts["rejected"]) == (17, 3)
    assert [(r.record, r.code) for r in run.rows] == [
        ("record 4 (line 4)", "400"), ("record 11 (line 11)", "400"), ("record 17 (line 17)", "400")]
    assert all("Message has unknown xdm format" in r.reason for r in run.rows)
    fmt = next(iter(run.parts.values()))[2]
    assert fmt.name == "profiles-with-refused.rejected.ndjson" and fmt.content_type == "application/x-ndjson"
    refused = [json.loads(line) for line in run.raw.decode().splitlines()]
    originals = {r["id"]: r for r in map(json.loads, (FILES / "profiles-with-refused.ndjson").read_text().splitlines())}
    # exactly the refused records, as they were sent: no reason or status inside them
    assert [r["id"] for r in refused] == ["P0004", "P0011", "P0017"]
    assert all(r == originals[r["id"]] for r in refused)
    # the user fixes the rejects file and drops it back in the inbox
    fixed = run.raw.replace(b"INVALID-address", b"fixed@example.com")
    again = Run(connector_for(sim), BytesSource(fixed, "profiles-with-refused.rejected.ndjson")).all()
    assert again.state == FinalState.SUCCEEDED and again.counts["accepted"] == 3
    assert sim.accepted_ids() == {f"P{i:04d}": 1 for i in range(1, 21)}


def test_throttled_then_accepted_nothing_lost_or_duplicated(sim):
    sim.inject(Fault(status=429, retry_after=1, match="/collection/batch"),
               Fault(status=429, match="/collection/batch"))
    sim.fail_messages(429, count=7)  # per-message throttling inside a 207
    records = people(300)
    run = Run(connector_for(sim, max_messages_per_request=50, concurrency=3), BytesSource(ndjson(records), "p.ndjson"))
    done = run.all()
    assert done.state == FinalState.SUCCEEDED
    assert sim.accepted_ids() == {r["id"]: 1 for r in records}
    assert done.counts["accepted"] == 300 and done.counts["retries"] >= 3
    statuses_seen = len(batch_requests(sim))
    assert statuses_seen == 6 + 2 + 1  # 6 batches, 2 whole-request 429 retries, 1 resend of the 7 messages


def test_503_is_retried_at_least_three_times(sim):
    sim.inject(*[Fault(status=503, match="/collection/batch") for _ in range(3)])
    run = Run(connector_for(sim), FileSource(str(FILES / "profiles-clean.ndjson")))
    done = run.all()
    assert done.state == FinalState.SUCCEEDED
    assert len(batch_requests(sim)) == 4
    assert done.counts["requests"] == 4 and done.counts["retries"] == 3
    assert len(sim.accepted_ids()) == 20


def test_503_beyond_the_retries_fails_the_step_and_the_retried_step_sends_the_rest_once(sim):
    conn = connector_for(sim, max_retries=3)
    sim.inject(*[Fault(status=503, match="/collection/batch") for _ in range(4)])
    run = Run(conn, FileSource(str(FILES / "profiles-clean.ndjson")))
    start = run.submit()
    with pytest.raises(VendorUnavailableError, match="HTTP 503.*gave up after 4 attempts"):
        conn.poll(start.job, run.ctx())
    done = run.finish(start)  # the state machine retries the step with the same job
    assert done.state == FinalState.SUCCEEDED
    assert set(sim.accepted_ids().values()) == {1} and len(sim.accepted_ids()) == 20


def test_oversize_record_refused_locally_not_sent(sim):
    records = people(5)
    records[2]["blob"] = "x" * 2000
    run = Run(connector_for(sim, max_record_bytes=1000), BytesSource(ndjson(records), "big.ndjson"))
    done = run.all()
    assert done.state == FinalState.SUCCEEDED_WITH_REJECTS
    assert (done.counts["sent"], done.counts["accepted"], done.counts["rejected"]) == (4, 4, 1)
    (row,) = run.rows
    assert row.code == "oversize" and row.record == "record 3 (line 3)"
    assert "over AEP's 1 KB limit (1,000 bytes) for one record" in row.reason
    assert "R00003" not in sim.accepted_ids()
    assert not any(b"xxxxxxxxxx" in r.body for r in batch_requests(sim))
    assert json.loads(run.raw)["id"] == "R00003"  # still in the rejects file, to fix and re-upload


def test_413_splits_the_batch_and_refuses_a_single_message_too_large(sim):
    sim.max_body_bytes = 2_000
    records = people(40)
    records[7]["blob"] = "y" * 2_500  # alone over the inlet's limit
    run = Run(connector_for(sim), BytesSource(ndjson(records), "p.ndjson"))
    done = run.all()
    assert done.state == FinalState.SUCCEEDED_WITH_REJECTS
    assert done.counts["accepted"] == 39
    (row,) = run.rows
    assert row.code == "413" and row.record == "record 8 (line 8)"
    assert sim.accepted_ids() == {r["id"]: 1 for r in records if r["id"] != "R00008"}
    assert any(r.body and len(r.body) > 2_000 for r in batch_requests(sim))  # first try was whole


def test_auth_failure_bad_credentials():
    with AepSimulator(authenticated=True, raw_on_batch=True) as sim:
        doc = sim.settings()
        doc["ims"]["client_secret"] = "wrong-secret"
        conn = build_connector("aep", load_settings("aep", doc))
        with pytest.raises(VendorAuthError, match="refused the client credentials"):
            Run(conn, FileSource(str(FILES / "profiles-clean.ndjson"))).submit()
        assert not batch_requests(sim)


def test_auth_unauthenticated_client_on_an_authenticated_inlet():
    with AepSimulator(authenticated=True, raw_on_batch=True) as sim:
        conn = connector_for(sim, authenticated=False)
        with pytest.raises(VendorAuthError, match="set authenticated to true"):
            Run(conn, FileSource(str(FILES / "profiles-clean.ndjson"))).all()


def test_auth_expired_token_reauthenticates_once():
    with AepSimulator(authenticated=True, raw_on_batch=True) as sim:
        conn = connector_for(sim)
        run = Run(conn, FileSource(str(FILES / "profiles-clean.ndjson")))
        start = run.submit()
        sim.expire_tokens()  # the cached token is refused: 403, then a new token
        done = run.finish(start)
        assert done.state == FinalState.SUCCEEDED and len(sim.accepted_ids()) == 20
        reqs = batch_requests(sim)
        assert len(reqs) == 2 and reqs[0].header("Authorization") != reqs[1].header("Authorization")
        assert reqs[1].header("x-gw-ims-org-id") == AepSimulator.ORG
        assert sim.token_requests == 2
        state = json.dumps(done.job) + json.dumps(done.counts) + done.message
        assert AepSimulator.CLIENT_SECRET not in state and "sim-aep-token" not in state


def test_file_continued_over_several_steps_with_a_tiny_time_budget(sim):
    records = people(500)
    conn = connector_for(sim, max_messages_per_request=20, concurrency=3)
    run = Run(conn, BytesSource(ndjson(records), "many.ndjson"), batches_per_step=3)
    progress = run.submit()
    assert progress.next_wait_seconds == 0 and not progress.done
    offsets = []
    while not progress.done:
        progress = conn.poll(progress.job, run.ctx())
        run.steps += 1
        offsets.append(progress.job["offset"])
        if not progress.done:
            assert progress.next_wait_seconds == 0
    assert run.steps >= 8  # 25 batches, at most 3 per step
    assert offsets == sorted(offsets)
    assert sim.accepted_ids() == {r["id"]: 1 for r in records}
    assert progress.counts["records"] == progress.counts["accepted"] == 500
    assert len(json.dumps(progress.job)) < 8192


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_json_array_and_csv_continued_over_several_steps(sim, fmt):
    records = people(150)
    if fmt == "json":
        data = json.dumps(records, indent=2).encode()
    else:
        data = ("id,name\n" + "".join(f'{r["id"]},"{r["name"]}, with ""quotes""\nand a newline"\n'
                                      for r in records)).encode()
    conn = connector_for(sim, max_messages_per_request=15, concurrency=2)
    run = Run(conn, BytesSource(data, f"steps.{fmt}"), batches_per_step=2)
    done = run.all()
    assert run.steps >= 5
    assert sim.accepted_ids() == {r["id"]: 1 for r in records}
    assert done.counts["records"] == done.counts["accepted"] == 150
    if fmt == "csv":
        first = next(r for r in sim.accepted if r["id"] == records[0]["id"])  # 2 requests in flight
        assert first["name"] == 'person 1, with "quotes"\nand a newline'


def test_crash_mid_step_then_resume_from_checkpoint_no_duplicates(sim):
    records = people(200)
    records[33]["name"] = "INVALID"
    records[65]["name"] = "INVALID"  # in the batch whose checkpoint is the last before the crash
    conn = connector_for(sim, max_messages_per_request=10, concurrency=1)
    run = Run(conn, BytesSource(ndjson(records), "crash.ndjson"), crash_at=7)
    start = run.submit()
    with pytest.raises(Crash):
        conn.poll(start.job, run.ctx())
    resumed = run.checkpoints[-1]  # what the state store holds after the crash
    assert resumed["offset"] > 0
    done = run.finish(type(start)(job=resumed))
    assert sim.accepted_ids() == {r["id"]: 1 for r in records if r["name"] != "INVALID"}
    assert done.counts["records"] == 200 and done.counts["rejected"] == 2
    assert [row.record for row in run.rows] == ["record 34 (line 34)", "record 66 (line 66)"]


def test_failed_batch_with_concurrency_retried_step_sends_each_record_once(sim):
    records = people(120)
    # the batch holding R00042 fails until its retries are exhausted
    run, start = a_failing_first_step(sim, records, b'"R00042"', 6, Reply(500, {"error": "processing error"}),
                                      max_messages_per_request=10, concurrency=4, max_retries=3)
    saved = run.checkpoints[-1]
    assert saved["done"], "batches completed after the failed one are remembered"
    done = run.finish(type(start)(job=saved))
    assert done.state == FinalState.SUCCEEDED
    assert sim.accepted_ids() == {r["id"]: 1 for r in records}
    assert done.counts["records"] == done.counts["accepted"] == 120


def test_json_array_reader_end_to_end(sim):
    run = Run(connector_for(sim), FileSource(str(FILES / "profiles.json")))
    done = run.all()
    assert done.state == FinalState.SUCCEEDED and done.counts["accepted"] == 10
    expected = json.loads((FILES / "profiles.json").read_text())
    assert sim.accepted == expected


def test_csv_reader_end_to_end(sim):
    run = Run(connector_for(sim), FileSource(str(FILES / "profiles.csv")))
    done = run.all()
    assert done.state == FinalState.SUCCEEDED and done.counts["accepted"] == 8
    by_id = {r["id"]: r for r in sim.accepted}
    assert by_id["P0002"]["note"] == "COBOL, compilers"
    assert by_id["P0004"]["note"] == 'said "goto considered harmful"'
    assert by_id["P0005"]["note"] == "substitution\nprinciple"
    assert "note" not in by_id["P0003"]  # an empty cell is an absent value


def test_format_option_overrides_the_extension(sim):
    data = b'[{"id": "A1"}, {"id": "A2"}]'
    run = Run(connector_for(sim), BytesSource(data, "export.txt"), options={"format": "json"})
    assert run.all().counts["accepted"] == 2
    with pytest.raises(InputError, match="format=ndjson"):
        Run(connector_for(sim), BytesSource(data, "export.txt")).submit()


def test_xdm_mode_sends_the_envelope():
    with AepSimulator(message_mode="xdm") as sim:
        run = Run(connector_for(sim), FileSource(str(FILES / "profiles-clean.ndjson")))
        assert run.all().state == FinalState.SUCCEEDED
        message = json.loads(batch_requests(sim)[0].body)["messages"][0]
        settings = sim.settings()
        ref = {"id": settings["schema_id"], "contentType": "application/vnd.adobe.xed-full+json;version=1"}
        assert message["header"] == {"schemaRef": ref, "imsOrgId": AepSimulator.ORG,
                                     "datasetId": settings["dataset_id"], "flowId": settings["flow_id"]}
        assert message["body"]["xdmMeta"] == {"schemaRef": ref}
        assert message["body"]["xdmEntity"]["id"] == "P0001"
        assert len(sim.accepted_ids()) == 20


def test_verify_flow_runs_reports_ingested_and_failed(sim):
    records = people(10)
    records[4]["name"] = "FAILVALIDATION"  # accepted by the inlet, fails in the dataset
    conn = connector_for(sim, verify_flow_runs=True)
    run = Run(conn, BytesSource(ndjson(records), "verify.ndjson"))
    done = run.all()
    assert done.state == FinalState.SUCCEEDED_WITH_REJECTS
    assert (done.counts["accepted"], done.counts["ingested"], done.counts["failed_ingestion"]) == (10, 9, 1)
    assert "9 records ingested and 1 failed" in done.message
    assert done.job["verify_polls"] >= 2  # the first answer had not settled
    runs = sim.requests_to("/flowservice/runs", "GET")
    assert runs and runs[0].query["property"] == [f"flowId=={sim.settings()['flow_id']}"]
    assert runs[0].header("x-api-key") == AepSimulator.CLIENT_ID and runs[0].header("x-sandbox-name") == "prod"


def test_pacing_keeps_under_the_inlet_rate_limit():
    with AepSimulator(max_requests_per_second=25, raw_on_batch=True) as sim:
        records = people(60)
        conn = connector_for(sim, max_messages_per_request=3, concurrency=8, max_requests_per_second=10)
        done = Run(conn, BytesSource(ndjson(records), "paced.ndjson")).all()
        assert done.counts["accepted"] == 60
        assert done.counts["requests"] == 20 and done.counts["retries"] == 0  # never answered 429


def test_validate_is_local_and_lists_would_be_rejects(sim):
    data = b'{"id": "ok"}\n{"id": \n\n[1, 2]\n{"id": "big", "x": "' + b"z" * 500 + b'"}\n'
    conn = connector_for(sim, max_record_bytes=200)
    rows = conn.validate(Run(conn, BytesSource(data, "v.ndjson")).ctx())
    assert [(r.record, r.code) for r in rows] == [
        ("record 2 (line 2)", "invalid_json"), ("record 3 (line 4)", "not_object"),
        ("record 4 (line 5)", "oversize")]
    assert sim.requests == []  # no vendor call: usable for dry runs
    with pytest.raises(InputError, match="empty"):
        conn.validate(Run(conn, BytesSource(b"", "e.ndjson")).ctx())
    with pytest.raises(InputError, match="no records"):
        conn.validate(Run(conn, BytesSource(b"\n\n", "e.ndjson")).ctx())
