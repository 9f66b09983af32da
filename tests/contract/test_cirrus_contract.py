"""Cirrus Shield connector against the Cirrus simulator over HTTP (seed 004).

Each test names one branch of the issue: clean, partial (400 with results), all refused,
re-upload of the rejects file, the '+' of datetimes, token cache / re-auth / 401 twice,
5xx, timeouts, scrubbed URLs, batching over several polls, crash and retry, JSON answers,
and every bad input (refused by validate before any vendor call).
"""

from __future__ import annotations

import copy
import json
import logging
import socket
import time
from pathlib import Path

import pytest
import requests
from lxml import etree
from vendor_import.connectors import build_connector, load_settings
from vendor_import.connectors.base import StepContext
from vendor_import.errors import (
    InputError,
    SettingsError,
    VendorAuthError,
    VendorRejectedError,
    VendorUnavailableError,
)
from vendor_import.model import FinalState
from vendor_import.source import BytesSource, FileSource

from local.simulators.base import Fault
from local.simulators.cirrus import DEMO_CASES, INVALID_LOOKUP, PASSWORD, CirrusSimulator

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "events/files/cirrus"


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
@pytest.fixture
def sim():
    simulator = CirrusSimulator().start()
    yield simulator
    simulator.stop()


def make_connector(sim: CirrusSimulator, **overrides):
    doc = sim.settings()
    doc.update(overrides)
    return build_connector("cirrus", load_settings("cirrus", doc))


def accounts(n: int, invalid: frozenset[int] = frozenset(), *, prefix: str = "Acc") -> bytes:
    """n Account records; those whose 1-based number is in ``invalid`` have a bad lookup."""
    records = []
    for i in range(1, n + 1):
        parent = f"<ParentAccount>{'INVALID parent' if i in invalid else 'Holding'}</ParentAccount>"
        records.append(f"  <Account>\n    <Name>{prefix} {i:03d}</Name>\n"
                       f"    <LastAuditDate>2017-06-12 15:40:47+02</LastAuditDate>\n    {parent}\n  </Account>")
    return ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Data>\n" + "\n".join(records) + "\n</Data>\n").encode()


class Recorder:
    """The StepContext hooks: staged reject parts, checkpoints, and injectable crashes."""

    def __init__(self, *, crash_emit_at: int | None = None, crash_checkpoint_at: int | None = None):
        self.parts: dict[str, tuple] = {}
        self.checkpoints: list[dict] = []
        self.emit_calls = 0
        self.checkpoint_calls = 0
        self.crash_emit_at = crash_emit_at
        self.crash_checkpoint_at = crash_checkpoint_at

    def emit(self, part_id, rows, raw=None, fmt=None):
        self.emit_calls += 1
        if self.emit_calls == self.crash_emit_at:
            raise RuntimeError("simulated crash while staging rejects")
        self.parts[part_id] = (list(rows), raw, fmt)

    def checkpoint(self, job):
        self.checkpoint_calls += 1
        if self.checkpoint_calls == self.crash_checkpoint_at:
            raise RuntimeError("simulated crash while saving the cursor")
        self.checkpoints.append(copy.deepcopy(job))

    @property
    def last_job(self) -> dict:
        return copy.deepcopy(self.checkpoints[-1])

    def rows(self):
        return [row for part in sorted(self.parts) for row in self.parts[part][0]]

    def rejects_file(self) -> bytes:
        fmt = next(part[2] for part in self.parts.values())
        body = b"".join(self.parts[p][1] or b"" for p in sorted(self.parts))
        return fmt.header.encode() + body + fmt.footer.encode()


def make_ctx(data: bytes, rec: Recorder | None = None, *, name: str = "accounts.xml",
             options: dict | None = None, time_left=None) -> StepContext:
    rec = rec or Recorder()
    ctx = StepContext(source=BytesSource(data, name=name), options=options or {},
                      checkpoint=rec.checkpoint, emit_rejects=rec.emit)
    if time_left is not None:
        ctx.time_left = time_left
    return ctx


def poll_to_end(conn, ctx: StepContext, progress, *, max_polls: int = 200):
    """Poll as the state machine would until the import is done: (final progress, polls)."""
    polls = 0
    while not progress.done:
        polls += 1
        assert polls <= max_polls, "the poll loop does not end"
        json.dumps(progress.job)  # the job travels in the state machine payload
        progress = conn.poll(progress.job, ctx)
        if not progress.done:
            assert progress.next_wait_seconds == 0
    return progress, polls


def run_import(conn, ctx: StepContext, *, max_polls: int = 200):
    conn.validate(ctx)
    progress = conn.submit(ctx)
    assert progress.next_wait_seconds == 0 and not progress.done
    return poll_to_end(conn, ctx, progress, max_polls=max_polls)[0]


def names_sent(sim: CirrusSimulator, *, at_least: int = 0) -> list[str]:
    """Names the simulator decoded (waits for a delayed request still being handled)."""
    deadline = time.monotonic() + 5
    while len(sim.received) < at_least and time.monotonic() < deadline:
        time.sleep(0.05)
    return sim.received_values("Name")


# ----------------------------------------------------------------------------------------------
# outcomes
# ----------------------------------------------------------------------------------------------
def test_clean_import_succeeds(sim):
    rec = Recorder()
    progress = run_import(make_connector(sim), make_ctx(accounts(12), rec))
    assert progress.state is FinalState.SUCCEEDED
    assert progress.counts == {"records": 12, "sent": 12, "accepted": 12, "rejected": 0, "batches": 3}
    assert sorted(names_sent(sim)) == [f"Acc {i:03d}" for i in range(1, 13)]
    assert len(sim.store["Account"]) == 12
    assert rec.parts == {}


def test_partial_400_with_results_succeeds_with_rejects(sim):
    rec = Recorder()
    progress = run_import(make_connector(sim), make_ctx(accounts(12, frozenset({3, 8, 11})), rec))
    assert progress.state is FinalState.SUCCEEDED_WITH_REJECTS
    assert progress.counts["accepted"] == 9 and progress.counts["rejected"] == 3
    assert sorted(rec.parts) == ["000000000001", "000000000006", "000000000011"]  # batch start records
    rows = rec.rows()
    assert [r.record for r in rows] == ["3 Name=Acc 003", "8 Name=Acc 008", "11 Name=Acc 011"]
    assert {r.reason for r in rows} == {INVALID_LOOKUP}
    # the raw rejects file: <Data>, exactly the failed records as in the input + <ErrorMessage>
    fmt = next(iter(rec.parts.values()))[2]
    assert (fmt.header, fmt.footer, fmt.name) == ("<Data>", "</Data>", "accounts.rejects.xml")
    root = etree.fromstring(rec.rejects_file())
    assert root.tag == "Data"
    assert [r.findtext("Name") for r in root] == ["Acc 003", "Acc 008", "Acc 011"]
    assert all(r[-1].tag == "ErrorMessage" and r[-1].text == INVALID_LOOKUP for r in root)
    assert [c.tag for c in root[0]] == ["Name", "LastAuditDate", "ParentAccount", "ErrorMessage"]


def test_all_refused_fails_and_still_writes_the_rejects_file(sim):
    rec = Recorder()
    data = (SAMPLES / "accounts-all-fail.xml").read_bytes()
    progress = run_import(make_connector(sim), make_ctx(data, rec, name="accounts-all-fail.xml"))
    assert progress.state is FinalState.FAILED
    assert progress.counts["accepted"] == 0 and progress.counts["rejected"] == 4
    assert "refused all 4" in progress.message
    assert len(etree.fromstring(rec.rejects_file())) == 4


def test_reupload_of_the_rejects_file_imports_only_those_and_succeeds_once_fixed(sim):
    conn = make_connector(sim)
    first = Recorder()
    run_import(conn, make_ctx(accounts(12, frozenset({2, 9})), first))
    rejects = first.rejects_file()

    sim.received.clear()
    again = Recorder()
    progress = run_import(conn, make_ctx(rejects, again, name="accounts.rejects.xml"))
    assert names_sent(sim) == ["Acc 002", "Acc 009"]  # only what failed
    assert all("ErrorMessage" not in r["fields"] and "Success" not in r["fields"] for r in sim.received)
    assert progress.state is FinalState.FAILED  # still INVALID: refused again, same shape back
    assert [r.findtext("Name") for r in etree.fromstring(again.rejects_file())] == ["Acc 002", "Acc 009"]

    sim.received.clear()
    fixed = rejects.replace(b"INVALID parent", b"Holding")
    progress = run_import(conn, make_ctx(fixed, Recorder(), name="accounts.rejects.xml"))
    assert progress.state is FinalState.SUCCEEDED
    assert progress.counts == {"records": 2, "sent": 2, "accepted": 2, "rejected": 0, "batches": 1}
    assert names_sent(sim) == ["Acc 002", "Acc 009"]
    assert len(sim.store["Account"]) == 12


def test_sample_files_end_as_the_demo_cases_say(sim):
    conn = make_connector(sim)
    for case in DEMO_CASES:
        options = dict(seg.split("=", 1) for seg in case.key.split("/")[2:-1]) | case.metadata
        progress = run_import(conn, make_ctx((ROOT / case.file).read_bytes(), options=options,
                                             name=Path(case.file).name))
        assert progress.state.value == case.expect, case.title


# ----------------------------------------------------------------------------------------------
# request shape: options, body encoding, the '+'
# ----------------------------------------------------------------------------------------------
def test_plus_of_datetimes_arrives_because_the_body_is_form_encoded(sim):
    run_import(make_connector(sim), make_ctx(accounts(3)))
    assert sim.received_values("LastAuditDate") == ["2017-06-12 15:40:47+02"] * 3
    post = sim.requests_to("/RestApi/DataAction/Account", "POST")[0]
    assert post.header("Content-Type") == "application/x-www-form-urlencoded"
    assert post.body.startswith(b"=%3CData%3E")  # unnamed field: ASP.NET [FromBody] string


def test_an_unencoded_body_would_lose_the_plus(sim):
    """Control for the test above: the simulator decodes like ASP.NET, so a raw '+' is a space."""
    conn = make_connector(sim)
    xml = "<Data><Account><Name>raw</Name><LastAuditDate>2017-06-12 15:40:47+02</LastAuditDate></Account></Data>"
    requests.post(f"{sim.base_url}/RestApi/DataAction/Account",
                  params={"authToken": conn._token(), "action": "upsert", "matchingFieldName": "Name"},
                  data=("=" + xml).encode(), headers={"Content-Type": "application/x-www-form-urlencoded"},
                  timeout=5)
    assert sim.received_values("LastAuditDate") == ["2017-06-12 15:40:47 02"]


def test_named_body_field_when_the_server_expects_xmldata():
    with CirrusSimulator(body_field="xmlData") as named:
        progress = run_import(make_connector(named, body_field="xmlData"), make_ctx(accounts(2)))
        assert progress.state is FinalState.SUCCEEDED
        assert named.requests_to("DataAction", "POST")[0].body.startswith(b"xmlData=%3CData%3E")


def test_400_without_results_is_rejected_with_the_vendor_message():
    with CirrusSimulator(body_field="xmlData") as named:
        rec = Recorder()
        conn = make_connector(named)  # sends the unnamed field this server does not bind
        ctx = make_ctx(accounts(2), rec)
        progress = conn.submit(ctx)
        with pytest.raises(VendorRejectedError, match="HTTP 400.*The xmlData parameter is empty"):
            conn.poll(progress.job, ctx)
        assert rec.last_job["inflight"] == []  # refused, not applied


def test_options_from_key_segments_reach_the_url(sim):
    data = accounts(2).replace(b"Account>", b"Object>")
    options = {"object": "Account", "action": "UPDATE", "matching_field": "Name", "use_external_id": "false"}
    run_import(make_connector(sim), make_ctx(data, options=options))
    query = sim.requests_to("/RestApi/DataAction/Account", "POST")[0].query
    assert query["action"] == ["update"]
    assert query["matchingFieldName"] == ["Name"]
    assert query["useExternalId"] == ["false"]


def test_settings_objects_give_per_object_defaults(sim):
    contacts = (b"<Data><Contact><LastName>Johnson</LastName><Email>s@x.io</Email>"
                b"<Account>Test Account 1</Account></Contact></Data>")
    objects = {"Contact": {"action": "insert", "matching_field": "Email", "use_external_id": False}}
    progress = run_import(make_connector(sim, objects=objects), make_ctx(contacts, name="contacts.xml"))
    assert progress.state is FinalState.SUCCEEDED
    query = sim.requests_to("/RestApi/DataAction/Contact", "POST")[0].query
    assert (query["action"], query["matchingFieldName"], query["useExternalId"]) == (
        ["insert"], ["Email"], ["false"])


def test_missing_matching_field_is_a_would_be_reject_and_refused_by_the_vendor(sim):
    data = b"<Data><Account><Name>A</Name></Account><Account><Phone>1</Phone></Account></Data>"
    rec = Recorder()
    conn = make_connector(sim)
    ctx = make_ctx(data, rec)
    would_be = conn.validate(ctx)
    assert [(r.record, r.code) for r in would_be] == [("2", "MISSING_MATCHING_FIELD")]
    assert sim.requests == []  # validate (dry runs) never calls the vendor
    progress = run_import(conn, ctx)
    assert progress.state is FinalState.SUCCEEDED_WITH_REJECTS
    assert [r.record for r in rec.rows()] == ["2"]


# ----------------------------------------------------------------------------------------------
# answers: JSON, <Object>, casing
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("batch_size", [1, 5])
def test_json_answers_are_parsed(sim, batch_size):
    rec = Recorder()
    conn = make_connector(sim, accept="application/json", batch_size=batch_size)
    progress = run_import(conn, make_ctx(accounts(6, frozenset({4})), rec))
    assert sim.requests_to("DataAction", "POST")[0].header("Accept") == "application/json"
    assert progress.state is FinalState.SUCCEEDED_WITH_REJECTS
    assert [(r.record, r.reason) for r in rec.rows()] == [("4 Name=Acc 004", INVALID_LOOKUP)]


def test_object_result_elements_with_capitalised_success():
    with CirrusSimulator(result_element="Object", success_values=("True", "False")) as other:
        rec = Recorder()
        progress = run_import(make_connector(other), make_ctx(accounts(6, frozenset({1, 6})), rec))
        assert progress.counts["accepted"] == 4
        assert [r.record for r in rec.rows()] == ["1 Name=Acc 001", "6 Name=Acc 006"]


# ----------------------------------------------------------------------------------------------
# auth
# ----------------------------------------------------------------------------------------------
def test_token_is_cached_across_batches_and_imports(sim):
    conn = make_connector(sim)
    run_import(conn, make_ctx(accounts(12)))
    run_import(conn, make_ctx(accounts(3, prefix="Other")))
    assert sim.tokens_issued == 1
    assert len(sim.requests_to("/RestApi/AuthToken")) == 1
    token_body = sim.requests_to("DataAction")[0].query["authToken"][0]
    assert '"' not in token_body  # the JSON quotes were stripped


def test_expired_token_is_renewed_once_on_401():
    with CirrusSimulator(token_max_uses=2) as expiring:
        progress = run_import(make_connector(expiring), make_ctx(accounts(15)))
        assert progress.state is FinalState.SUCCEEDED
        assert expiring.tokens_issued == 2
        assert sorted(names_sent(expiring)) == [f"Acc {i:03d}" for i in range(1, 16)]  # each once


def test_401_twice_is_an_auth_error(sim):
    rec = Recorder()
    conn = make_connector(sim)
    ctx = make_ctx(accounts(3), rec)
    progress = conn.submit(ctx)
    sim.inject(Fault(status=401, match="DataAction"), Fault(status=401, match="DataAction"))
    with pytest.raises(VendorAuthError, match="even after signing in again"):
        conn.poll(progress.job, ctx)
    assert sim.tokens_issued == 2  # one re-auth, not more
    assert rec.last_job["inflight"] == []


def test_wrong_password_and_unknown_user_are_auth_errors(sim):
    with pytest.raises(VendorAuthError, match="HTTP 401"):
        make_connector(sim, password="not-the-password").submit(make_ctx(accounts(1)))
    with pytest.raises(VendorAuthError, match="HTTP 404"):
        make_connector(sim, username="nobody@cirrus.local").submit(make_ctx(accounts(1)))


# ----------------------------------------------------------------------------------------------
# transient failures, secrets in URLs
# ----------------------------------------------------------------------------------------------
def test_5xx_is_unavailable_and_the_retry_sends_the_batch_once(sim):
    rec = Recorder()
    conn = make_connector(sim)
    ctx = make_ctx(accounts(7), rec)
    progress = conn.submit(ctx)
    sim.inject(Fault(status=503, match="DataAction"))
    with pytest.raises(VendorUnavailableError, match="HTTP 503"):
        conn.poll(progress.job, ctx)
    assert rec.last_job["inflight"] == []  # the vendor answered an error: not applied
    progress, _ = poll_to_end(conn, ctx, conn.poll(rec.last_job, ctx))
    assert progress.state is FinalState.SUCCEEDED
    assert sorted(names_sent(sim)) == [f"Acc {i:03d}" for i in range(1, 8)]


def test_timeout_is_unavailable_and_the_batch_is_reported_not_resent(sim):
    rec = Recorder()
    conn = make_connector(sim, timeout_seconds=1)
    ctx = make_ctx(accounts(7), rec)
    progress = conn.submit(ctx)
    sim.inject(Fault(delay=1.5, match="DataAction"))
    with pytest.raises(VendorUnavailableError, match="may have reached Cirrus Shield") as err:
        conn.poll(progress.job, ctx)
    assert err.value.transient
    data = accounts(7)
    assert rec.last_job["inflight"] == [{"first": 1, "count": 5, "start": data.index(b"<Account>"),
                                         "end": data.index(b"</Account>", data.index(b"Acc 005")) + 10}]
    progress, _ = poll_to_end(conn, ctx, conn.poll(rec.last_job, ctx))
    assert sorted(names_sent(sim, at_least=7)) == [f"Acc {i:03d}" for i in range(1, 8)]  # nothing twice
    time.sleep(0.2)
    assert len(names_sent(sim)) == 7
    assert progress.state is FinalState.SUCCEEDED_WITH_REJECTS
    assert progress.counts["unconfirmed"] == 5
    assert [r.code for r in rec.rows()] == ["UNCONFIRMED"] * 5


def test_resend_unconfirmed_resends_an_upsert_batch_whose_answer_was_lost(sim):
    rec = Recorder()
    conn = make_connector(sim, timeout_seconds=1, resend_unconfirmed=True)
    ctx = make_ctx(accounts(3, frozenset({2})), rec)
    progress = conn.submit(ctx)
    sim.inject(Fault(delay=1.5, match="DataAction"))
    with pytest.raises(VendorUnavailableError):
        conn.poll(progress.job, ctx)
    progress = conn.poll(rec.last_job, ctx)
    assert progress.state is FinalState.SUCCEEDED_WITH_REJECTS
    assert progress.counts["accepted"] == 2
    assert names_sent(sim, at_least=6).count("Acc 001") == 2  # resent on purpose: upsert is idempotent
    assert [r.code for r in rec.rows()] == ["REFUSED"]


def test_connection_refused_is_unavailable_and_not_counted_as_sent(sim):
    rec = Recorder()
    conn = make_connector(sim)
    ctx = make_ctx(accounts(3), rec)
    progress = conn.submit(ctx)
    sim.stop()
    conn.session.close()  # drop the kept-alive connection the stopped server still serves
    with pytest.raises(VendorUnavailableError, match="cannot reach"):
        conn.poll(progress.job, ctx)
    assert rec.last_job["inflight"] == []  # never left this machine: the retry sends it


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_urls_with_password_or_token_are_scrubbed_from_errors_and_logs(sim, caplog):
    caplog.set_level(logging.DEBUG)
    # sign-in against a closed port: the requests error names the URL with the password
    doc = sim.settings() | {"base_url": f"http://127.0.0.1:{closed_port()}"}
    with pytest.raises(VendorUnavailableError) as err:
        build_connector("cirrus", load_settings("cirrus", doc)).submit(make_ctx(accounts(1)))
    assert PASSWORD not in str(err.value) and "password=***" in str(err.value)
    # a DataAction timeout: the URL carries the token
    rec = Recorder()
    conn = make_connector(sim, timeout_seconds=1)
    ctx = make_ctx(accounts(6, frozenset({1})), rec)
    progress = conn.submit(ctx)
    token = conn._token()
    sim.inject(Fault(drop=True, match="DataAction"))
    with pytest.raises(VendorUnavailableError) as err:
        conn.poll(progress.job, ctx)
    progress, _ = poll_to_end(conn, ctx, conn.poll(rec.last_job, ctx))
    texts = [str(err.value), repr(err.value), json.dumps(progress.to_dict(), default=str),
             json.dumps(rec.checkpoints), *(r.getMessage() for r in caplog.records),
             *(r.reason for r in rec.rows())]
    assert any("/RestApi/DataAction/Account?authToken=***" in t for t in texts[3:])  # urllib3 logged it
    for text in texts:
        assert token not in text and PASSWORD not in text


# ----------------------------------------------------------------------------------------------
# the cursor: batches over several polls, crash and retry
# ----------------------------------------------------------------------------------------------
def test_tiny_time_budget_sends_one_batch_per_poll_and_each_record_once(sim):
    ctx = make_ctx(accounts(23), time_left=lambda: 1.0)
    conn = make_connector(sim)
    conn.validate(ctx)
    progress, polls = poll_to_end(conn, ctx, conn.submit(ctx))
    assert len(sim.requests_to("DataAction", "POST")) == 5
    assert polls in (5, 6)
    assert sorted(names_sent(sim)) == [f"Acc {i:03d}" for i in range(1, 24)]
    assert progress.counts["records"] == 23


def test_time_budget_is_checked_before_each_batch(sim):
    budget = iter([600, 600, 3, 600, 600, 600, 600])
    ctx = make_ctx(accounts(23), time_left=lambda: next(budget))
    conn = make_connector(sim)
    progress = conn.poll(conn.submit(ctx).job, ctx)
    assert not progress.done and progress.counts["sent"] == 15  # 3 batches, then 3 s left: stop
    progress = conn.poll(progress.job, ctx)
    assert progress.done and progress.counts["sent"] == 23


@pytest.mark.parametrize(
    ("crash", "unconfirmed"),
    [
        ({"crash_emit_at": 2}, 5),  # batch 2 answered, its rejects not staged: outcome lost
        # checkpoints: 1 marks batch 1; 2 saves its answer and marks batch 2; 3 saves batch 2's answer...
        ({"crash_checkpoint_at": 3}, 5),  # batch 2 answered and staged, cursor not saved
        ({"crash_checkpoint_at": 2}, 5),  # batch 1 answered, not saved; batch 2 never posted: simply sent
    ],
)
def test_crash_mid_step_then_retry_from_the_checkpoint_sends_nothing_twice(sim, crash, unconfirmed):
    rec = Recorder(**crash)
    conn = make_connector(sim)
    ctx = make_ctx(accounts(12, frozenset({3, 8, 11})), rec)
    progress = conn.submit(ctx)
    with pytest.raises(RuntimeError, match="simulated crash"):
        conn.poll(progress.job, ctx)
    # the retried step starts from the saved job
    progress, _ = poll_to_end(conn, ctx, conn.poll(rec.last_job, ctx))
    sent = names_sent(sim)
    assert len(sent) == len(set(sent))  # nothing twice
    assert progress.counts["records"] == 12  # nothing skipped
    assert progress.counts["accepted"] + progress.counts["rejected"] == 12
    assert progress.counts.get("unconfirmed", 0) == unconfirmed
    assert len(rec.rows()) == 3 - (1 if unconfirmed else 0) + unconfirmed
    assert sorted(rec.parts) == ["000000000001", "000000000006", "000000000011"]


# ----------------------------------------------------------------------------------------------
# concurrency: several batches in flight, each marked before it is sent
# ----------------------------------------------------------------------------------------------
def unconfirmed_numbers(rec: Recorder) -> list[int]:
    return [int(r.record.split()[0]) for r in rec.rows() if r.code == "UNCONFIRMED"]


def test_concurrent_batches_send_each_record_once_and_finish(sim):
    rec = Recorder()
    conn = make_connector(sim, concurrency=3)
    progress = run_import(conn, make_ctx(accounts(23, frozenset({4, 17})), rec))
    assert progress.state is FinalState.SUCCEEDED_WITH_REJECTS
    assert sorted(names_sent(sim)) == [f"Acc {i:03d}" for i in range(1, 24)]
    assert len(sim.requests_to("DataAction", "POST")) == 5
    assert progress.counts == {"records": 23, "sent": 23, "accepted": 21, "rejected": 2, "batches": 5}
    assert [r.record for r in rec.rows()] == ["4 Name=Acc 004", "17 Name=Acc 017"]
    assert progress.job["inflight"] == [] and progress.job["done"] == []
    # the first checkpoint marks the first three batches before any is sent
    assert [m["first"] for m in rec.checkpoints[0]["inflight"]] == [1, 6, 11]
    assert len(sim.requests_to("DataAction")) == 5


def test_crash_with_three_batches_in_flight_reports_them_all_unconfirmed_and_resends_none(sim):
    sim.latency = 0.2  # the three calls are still in flight when the step dies
    rec = Recorder(crash_checkpoint_at=2)  # 1 marks batches 1-3; 2 would save the first answers
    conn = make_connector(sim, concurrency=3)
    ctx = make_ctx(accounts(12, frozenset({3})), rec)
    progress = conn.submit(ctx)
    with pytest.raises(RuntimeError, match="simulated crash"):
        conn.poll(progress.job, ctx)
    assert [m["first"] for m in rec.last_job["inflight"]] == [1, 6, 11]
    progress = conn.poll(rec.last_job, ctx)  # the retried step
    assert progress.done and progress.state is FinalState.FAILED  # nothing known accepted
    assert sorted(names_sent(sim)) == [f"Acc {i:03d}" for i in range(1, 13)]  # each once, none resent
    assert len(sim.requests_to("DataAction", "POST")) == 3
    assert unconfirmed_numbers(rec) == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    assert progress.counts == {"records": 12, "sent": 12, "accepted": 0, "rejected": 12, "batches": 3,
                               "unconfirmed": 12}
    assert sorted(rec.parts) == ["000000000001", "000000000006", "000000000011"]


def test_crash_mid_flight_then_the_rest_of_the_file_is_sent_once(sim):
    sim.latency = 0.2
    rec = Recorder(crash_checkpoint_at=2)  # 1 marks batches 1-2; 2 would save an answer and mark batch 3
    conn = make_connector(sim, concurrency=2)
    ctx = make_ctx(accounts(17, frozenset({12})), rec)
    progress = conn.submit(ctx)
    with pytest.raises(RuntimeError, match="simulated crash"):
        conn.poll(progress.job, ctx)
    progress, _ = poll_to_end(conn, ctx, conn.poll(rec.last_job, ctx))
    assert sorted(names_sent(sim)) == [f"Acc {i:03d}" for i in range(1, 18)]
    assert len(sim.requests_to("DataAction", "POST")) == 4  # batch 3 was marked but never posted: sent once
    assert unconfirmed_numbers(rec) == list(range(1, 11))
    assert [(r.record, r.code) for r in rec.rows() if r.code != "UNCONFIRMED"] == [("12 Name=Acc 012", "REFUSED")]
    assert progress.counts == {"records": 17, "sent": 17, "accepted": 6, "rejected": 11, "batches": 4,
                               "unconfirmed": 10}
    assert conn.record_tally(progress.job).read == 17


def test_retry_settles_every_mark_and_skips_batches_answered_ahead(sim):
    """A saved job (written by hand): records 1-5 answered, 6-10 in flight, 11-15 answered ahead
    of them, 16-17 not started. The retry reports 6-10 UNCONFIRMED and sends only 16-17."""
    data = accounts(17, frozenset({16}))
    start = [data.index(f"<Name>Acc {i:03d}<".encode()) - len(b"<Account>\n    ") for i in range(1, 18)]
    end = [data.index(b"</Account>", s) + len(b"</Account>") for s in start]
    conn = make_connector(sim, concurrency=4)
    rec = Recorder()
    ctx = make_ctx(data, rec)
    job = {**conn.submit(ctx).job, "offset": end[4], "next_record": 6,
           "inflight": [{"first": 6, "count": 5, "start": start[5], "end": end[9]}],
           "done": [[start[10], end[14], 11, 15]],
           "counts": {"records": 10, "sent": 10, "accepted": 10, "rejected": 0, "batches": 2}}
    progress = conn.poll(job, ctx)
    assert progress.done and progress.state is FinalState.SUCCEEDED_WITH_REJECTS
    assert names_sent(sim) == ["Acc 016", "Acc 017"]
    assert unconfirmed_numbers(rec) == [6, 7, 8, 9, 10]
    assert [(r.record, r.code) for r in rec.rows() if r.code != "UNCONFIRMED"] == [("16 Name=Acc 016", "REFUSED")]
    assert progress.counts == {"records": 17, "sent": 17, "accepted": 11, "rejected": 6, "batches": 4,
                               "unconfirmed": 5}
    assert progress.job["offset"] == end[16] and progress.job["next_record"] == 18


def test_a_batch_refused_with_503_while_others_are_in_flight_is_the_only_one_sent_again(sim):
    rec = Recorder()
    conn = make_connector(sim, concurrency=3)
    ctx = make_ctx(accounts(15), rec)
    progress = conn.submit(ctx)
    sim.inject(Fault(status=503, match="DataAction"))  # whichever of the three calls comes first
    with pytest.raises(VendorUnavailableError, match="HTTP 503"):
        conn.poll(progress.job, ctx)
    saved = rec.last_job
    assert saved["inflight"] == []  # the answers of the other two were awaited and saved
    assert saved["counts"]["records"] == 10
    progress = conn.poll(saved, ctx)
    assert progress.done and progress.state is FinalState.SUCCEEDED
    assert sorted(names_sent(sim)) == [f"Acc {i:03d}" for i in range(1, 16)]
    assert len(sim.requests_to("DataAction", "POST")) == 4  # three, then the refused one again


def test_the_pacer_is_asked_once_per_call(sim):
    calls = []

    class Shared:  # what a limiter shared by every import to the target looks like
        def acquire(self, n=1):
            calls.append(n)
            return 0.0

    conn = make_connector(sim, concurrency=2)
    conn.pacer = Shared()
    run_import(conn, make_ctx(accounts(12)))
    assert calls == [1, 1, 1]


def test_concurrency_above_16_is_a_settings_error(sim):
    with pytest.raises(SettingsError, match="at most 16"):
        make_connector(sim, concurrency=17)


# ----------------------------------------------------------------------------------------------
# bad input: InputError from validate, before any vendor call
# ----------------------------------------------------------------------------------------------
BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<Data><Account><Name>&lol9;</Name></Account></Data>"""


def external_entity(sim) -> bytes:
    return (f'<?xml version="1.0"?>\n<!DOCTYPE Data [<!ENTITY xxe SYSTEM "{sim.base_url}/leak">]>\n'
            f"<Data><Account><Name>&xxe;</Name></Account></Data>").encode()


BAD_INPUTS = {
    "not xml": (b"Name,Address\nAcme,Paris\n", "not XML"),
    "wrong root": (b"<Accounts><Account><Name>A</Name></Account></Accounts>", "root element is <Accounts>"),
    "mixed object types": (b"<Data><Account><Name>A</Name></Account><Contact><Name>B</Name></Contact></Data>",
                           "mixed object types: record 2 is <Contact>"),
    "billion laughs": (BILLION_LAUGHS, "DOCTYPE"),
    "external entity": (None, "DOCTYPE"),
    "undeclared entity": (b"<Data><Account><Name>&xxe;</Name></Account></Data>", "xxe"),
    "empty data": (b"<?xml version=\"1.0\"?>\n<Data/>\n", "no record"),
    "data without records": (b"<Data>\n  <!-- nothing -->\n</Data>", "no record"),
    "zero bytes": (b"", "0 bytes"),
    "invalid utf-8": (b"<Data><Account><Name>A</Name></Account><Account><Name>caf\xe9</Name></Account></Data>",
                      "UTF-8"),
    "not well-formed": (b"<Data><Account><Name>A</Account></Data>", "not well-formed"),
    "truncated": (b"<Data><Account><Name>A</Name></Account><Account><Na", "not well-formed"),
    "text between records": (b"<Data><Account><Name>A</Name></Account>oops<Account><Name>B</Name></Account></Data>",
                             "text outside any record"),
    "latin-1 declared": (b'<?xml version="1.0" encoding="ISO-8859-1"?><Data><Account/></Data>', "UTF-8"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_refused_before_any_vendor_call(sim, case):
    data, message = BAD_INPUTS[case]
    if data is None:
        data = external_entity(sim)
    conn = make_connector(sim)
    with pytest.raises(InputError, match=message):
        conn.validate(make_ctx(data))
    assert sim.requests == []  # no vendor call, no entity fetched


@pytest.mark.parametrize("case", ["not xml", "wrong root", "billion laughs", "empty data", "zero bytes"])
def test_submit_checks_the_head_too(sim, case):
    with pytest.raises(InputError):
        make_connector(sim).submit(make_ctx(BAD_INPUTS[case][0]))
    assert sim.requests == []


def test_sample_files_validate_cleanly(sim):
    conn = make_connector(sim)
    for sample in sorted(SAMPLES.glob("*.xml")):
        assert conn.validate(StepContext(source=FileSource(str(sample)))) == []
    assert sim.requests == []
