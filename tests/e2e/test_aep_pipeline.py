"""Adobe Experience Platform streaming imports through the whole local pipeline (issue 6): S3
upload -> queue -> submit function -> state machine (the real ASL) -> aep function <-> AEP
simulator (inlet, IMS, Flow Service) over HTTP -> finalize -> DynamoDB, S3, SNS; and the
provision-aep CLI entry against the same simulator.

The pipeline is the e2e package's one deployment (tests/e2e/conftest.py ``pipe``): two local
pipelines cannot live in one process at once, so this module adds the aep settings to it. Each
test uses its own S3 keys; the simulator forgets what it received before each test, so "each
record exactly once" is counted per test.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from pathlib import Path

import pytest

from local.simulators.aep import AepSimulator
from local.simulators.base import Fault

pytestmark = pytest.mark.e2e

VENDOR = "aep"  # for the vendor_sim fixture (conftest.py)

ROOT = Path(__file__).resolve().parents[2]
FILES = ROOT / "events" / "files" / "aep"
UNKNOWN_FORMAT = "Message has unknown xdm format"


# -- fixtures -------------------------------------------------------------------------------------------

@pytest.fixture
def aep(pipe, vendor_sim, request):
    aep_sim = vendor_sim  # shared by the e2e package (conftest.py), its settings already in place

    def reset():
        with aep_sim._lock, aep_sim._inlet_lock:
            aep_sim.requests.clear()
            aep_sim._faults.clear()
            aep_sim.end_outage()
            aep_sim._message_failures.clear()
            aep_sim.accepted.clear()
            aep_sim.refused.clear()
            aep_sim.batch_requests = 0

    reset()
    yield Aep(pipe, aep_sim, request.node.name)
    reset()


class Aep:
    def __init__(self, pipe, sim: AepSimulator, test_name: str):
        self.pipe = pipe
        self.sim = sim
        self.name = re.sub(r"[^A-Za-z0-9_-]+", "-", test_name)[:60]
        self.function = pipe.deployment.functions["AepFunction"]
        self._first_invocation = len(pipe.lambdas.invocations)

    def key(self, suffix: str = ".ndjson", segments: str = "") -> str:
        return f"inbox/aep/{segments}{self.name}{suffix}"

    def settings(self, **changes) -> None:
        self.pipe.set_settings("aep", {**self.sim.settings(), **changes})

    def batch_posts(self) -> list:
        return self.sim.requests_to("/collection/batch/", "POST")

    def inlet_posts(self) -> list:
        """Every request to the inlet: /collection/{inlet} (the default) and /collection/batch/{inlet}."""
        return self.sim.requests_to("/collection/", "POST")

    def polls(self) -> list[dict]:
        return [i for i in self.pipe.lambdas.invocations[self._first_invocation:]
                if i["function"] == self.function and i["action"] == "poll"]

    def one_outcome(self, result, *, state: str) -> dict:
        """The final state, and exactly one status record, status JSON and SNS message."""
        assert result.state == state, result.record
        record = result.record
        assert record["job_id"] == result.job_id and record["vendor"] == "aep"
        assert record["source"]["key"] == result.key and record.get("notified_at")
        document = json.loads(self.pipe.s3.get_object(
            Bucket=self.pipe.bucket, Key=f"status/aep/{result.job_id}.json")["Body"].read())
        messages = [m for m in self.pipe.drain_messages() if m["body"]["job_id"] == result.job_id]
        assert len(messages) == 1, messages
        (message,) = messages
        assert document == message["body"] == {k: v for k, v in record.items() if k != "notified_at"}
        assert message["subject"] == f"[aep] {state}: {result.key.rsplit('/', 1)[-1]}"
        assert message["attributes"] == {"vendor": "aep", "target": "default", "state": state, "dry_run": "false",
                                         **({"error_type": record["error"]["type"]} if record["error"] else {})}
        assert AepSimulator.CLIENT_SECRET not in json.dumps(message)
        return record


def ids_in(data: bytes) -> list[str]:
    return [json.loads(line)["id"] for line in data.decode().splitlines() if line.strip()]


def rejects(result) -> tuple[list[list[str]], bytes]:
    """(CSV rows without the header, the <name>.rejected.ndjson bytes)."""
    stem = result.key.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    by_name = {p.name: p for p in result.rejects_paths}
    assert sorted(by_name) == sorted([f"{result.key.rsplit('/', 1)[-1]}.rejects.csv", f"{stem}.rejected.ndjson"])
    rows = list(csv.reader(io.StringIO(by_name[f"{result.key.rsplit('/', 1)[-1]}.rejects.csv"].read_text())))
    assert rows[0] == ["record", "code", "reason"]
    return rows[1:], by_name[f"{stem}.rejected.ndjson"].read_bytes()


def profiles(count: int, prefix: str = "S") -> bytes:
    return "".join(json.dumps({"id": f"{prefix}{n:05d}", "email": f"user{n}@example.com", "firstName": "Test",
                               "lastName": f"User {n}"}) + "\n" for n in range(1, count + 1)).encode()


# -- outcomes --------------------------------------------------------------------------------------------

def test_clean_ndjson_is_streamed_and_succeeds(aep):
    data = (FILES / "profiles-clean.ndjson").read_bytes()
    result = aep.pipe.import_file(data, aep.key())
    record = aep.one_outcome(result, state="SUCCEEDED")
    inlet = aep.sim.settings()["inlet_id"]
    assert record["counts"] == {"records": 20, "sent": 20, "accepted": 20, "rejected": 0, "requests": 20,
                                "retries": 0}
    assert record["message"] == (f"sent 20 of 20 records to AEP inlet {inlet} in 20 requests: 20 accepted, 0 refused "
                                 "by the inlet; accepted by the inlet is not yet in the dataset: check the "
                                 "dataflow's runs")
    assert record["vendor_ref"] == aep.sim.settings()["flow_id"]
    assert record["rejects"] == {"csv_uri": None, "raw_uri": None, "rows": 0}
    # default settings: one record per request to /collection/{inlet}, as Adobe documents (seed 003)
    posts = aep.inlet_posts()
    assert len(posts) == 20 and {p.path for p in posts} == {f"/collection/{inlet}"}
    assert {p.header("x-adobe-flow-id") for p in posts} == {aep.sim.settings()["flow_id"]}
    assert aep.sim.accepted_ids() == Counter(ids_in(data))
    assert aep.sim.accepted[0] == json.loads(data.splitlines()[0])  # raw mode: the record as it is


def test_refused_records_end_with_a_rejects_file_that_can_be_reuploaded(aep):
    data = (FILES / "profiles-with-refused.ndjson").read_bytes()
    result = aep.pipe.import_file(data, aep.key())
    record = aep.one_outcome(result, state="SUCCEEDED_WITH_REJECTS")
    refused = [json.loads(line)["id"] for line in data.decode().splitlines() if "INVALID" in line]
    assert len(refused) == 3
    assert record["counts"] == {"records": 20, "sent": 20, "accepted": 17, "rejected": 3, "requests": 20,
                                "retries": 0}
    assert record["rejects"]["rows"] == 3
    rows, raw = rejects(result)
    assert [r[1] for r in rows] == ["400"] * 3 and all(UNKNOWN_FORMAT in r[2] for r in rows)
    assert [r[0] for r in rows] == [f"record {int(i[1:])} (line {int(i[1:])})" for i in refused]
    assert ids_in(raw) == refused  # the records themselves, no reason inside: re-uploadable

    # fix them and drop the rejects file back in the inbox: only those records are sent
    with aep.sim._inlet_lock:
        aep.sim.accepted.clear()
    again = aep.pipe.import_file(raw.replace(b"INVALID", b"fixed"), aep.key(".rejected.ndjson"))
    record = aep.one_outcome(again, state="SUCCEEDED")
    assert record["counts"]["records"] == 3 and record["counts"]["accepted"] == 3
    assert aep.sim.accepted_ids() == Counter(refused)


def test_every_record_refused_is_failed(aep):
    result = aep.pipe.import_file(FILES / "profiles-all-refused.ndjson", aep.key())
    record = aep.one_outcome(result, state="FAILED")
    assert record["message"] == (
        f"the inlet accepted none of the 3 records (first: record 1 (line 1): 400 "
        f"inletId: [{aep.sim.settings()['inlet_id']}] "
        f"imsOrgId: [{AepSimulator.ORG}] {UNKNOWN_FORMAT}); see the rejects file")
    assert record["error"] == {"type": "VendorRefusedAll", "message": record["message"]}
    rows, raw = rejects(result)
    assert len(rows) == 3 and len(ids_in(raw)) == 3
    assert aep.sim.accepted == []


def test_throttled_requests_and_messages_are_retried_nothing_lost_or_duplicated(aep):
    aep.settings(single_concurrency=2)
    aep.sim.inject(Fault(status=429, retry_after=1, match="/collection/"),
                   Fault(status=429, match="/collection/"), Fault(status=503, match="/collection/"))
    aep.sim.fail_messages(429, 1)  # and one message answers 429 (at most 4 failures: under max_retries 5)
    data = (FILES / "profiles-clean.ndjson").read_bytes()
    result = aep.pipe.import_file(data, aep.key())
    record = aep.one_outcome(result, state="SUCCEEDED")
    counts = record["counts"]
    assert (counts["records"], counts["sent"], counts["accepted"], counts["rejected"]) == (20, 20, 20, 0)
    assert counts["retries"] == 4 and counts["requests"] == len(aep.inlet_posts()) == 20 + 4
    accepted = aep.sim.accepted_ids()
    assert accepted == Counter(ids_in(data)) and set(accepted.values()) == {1}


def test_oversize_record_is_refused_locally_with_a_reason_and_never_sent(aep):
    aep.settings(max_record_bytes=1024)
    big = {"id": "BIG1", "email": "big@example.com", "note": "x" * 5000}
    data = (json.dumps({"id": "OK1", "email": "a@example.com"}) + "\n" + json.dumps(big) + "\n"
            + json.dumps({"id": "OK2", "email": "b@example.com"}) + "\n").encode()
    result = aep.pipe.import_file(data, aep.key())
    record = aep.one_outcome(result, state="SUCCEEDED_WITH_REJECTS")
    assert record["counts"] == {"records": 3, "sent": 2, "accepted": 2, "rejected": 1, "requests": 2,
                                "retries": 0}
    assert record["message"].startswith(f"sent 2 of 3 records to AEP inlet {aep.sim.settings()['inlet_id']} in "
                                        "2 requests: 2 accepted, 0 refused by the inlet, 1 refused locally")
    rows, raw = rejects(result)
    assert rows == [["record 2 (line 2)", "oversize",
                     f"record 2 (line 2): the message is {len(json.dumps(big)):,} bytes, over AEP's 1 KB limit "
                     "(1,024 bytes) for one record; it was not sent"]]
    assert json.loads(raw) == big
    assert aep.sim.accepted_ids() == Counter(["OK1", "OK2"])
    assert all(b"BIG1" not in r.body for r in aep.inlet_posts())


def test_csv_file_is_streamed_as_records(aep):
    data = (FILES / "profiles.csv").read_bytes()
    result = aep.pipe.import_file(data, aep.key(".csv"))
    record = aep.one_outcome(result, state="SUCCEEDED")
    rows = list(csv.DictReader(io.StringIO(data.decode())))
    assert record["counts"]["records"] == record["counts"]["accepted"] == len(rows) == 8
    assert aep.sim.accepted_ids() == Counter(r["id"] for r in rows)
    assert aep.sim.accepted[1]["note"] == "COBOL, compilers"


def test_json_array_file_is_streamed_as_records(aep):
    data = (FILES / "profiles.json").read_bytes()
    result = aep.pipe.import_file(data, aep.key(".json"))
    record = aep.one_outcome(result, state="SUCCEEDED")
    array = json.loads(data)
    assert record["counts"]["records"] == record["counts"]["accepted"] == len(array) == 10
    assert aep.sim.accepted == array


def test_large_file_is_continued_over_several_steps_each_record_once(aep):
    # a step stops sending when less than time_margin_seconds is left of its Lambda run: with a
    # margin of the whole run (900 s) and one sender, each step sends one batch (50 records, one request each)
    aep.settings(time_margin_seconds=900, single_concurrency=1)
    data = profiles(500)
    result = aep.pipe.import_file(data, aep.key())
    record = aep.one_outcome(result, state="SUCCEEDED")
    assert record["counts"] == {"records": 500, "sent": 500, "accepted": 500, "rejected": 0, "requests": 500,
                                "retries": 0}
    polls = aep.polls()
    assert len(polls) == 11 and not any(p["errored"] for p in polls)  # 10 sending steps, then the end
    assert record["polls"] == 11
    accepted = aep.sim.accepted_ids()
    assert accepted == Counter(ids_in(data)) and set(accepted.values()) == {1}


# -- credentials -------------------------------------------------------------------------------------------------

def test_authenticated_inlet_with_a_bad_secret_is_failed_before_anything_is_sent(aep):
    with AepSimulator(authenticated=True) as secured:
        settings = secured.settings()
        wrong = "wrong-aep-secret-e2e"
        aep.pipe.set_settings("aep", {**settings, "ims": {**settings["ims"], "client_secret": wrong}})
        result = aep.pipe.import_file(FILES / "profiles-clean.ndjson", aep.key())
        record = aep.one_outcome(result, state="FAILED")
        assert record["error"]["type"] == "VendorAuthError"
        assert "Adobe IMS refused the client credentials (HTTP 401)" in record["message"]
        assert secured.requests_to("/collection/") == [] and secured.accepted == []
        assert wrong not in json.dumps(record)


def test_authenticated_inlet_without_a_token_is_failed_with_the_setting_to_change(aep):
    with AepSimulator(authenticated=True) as secured:
        aep.pipe.set_settings("aep", {**secured.settings(), "authenticated": False})
        result = aep.pipe.import_file(FILES / "profiles-clean.ndjson", aep.key())
        record = aep.one_outcome(result, state="FAILED")
        assert record["error"]["type"] == "VendorAuthError"
        assert "HTTP 401" in record["message"] and "set authenticated to true" in record["message"]
        assert secured.accepted == []


def test_authenticated_inlet_with_good_credentials_succeeds(aep):
    with AepSimulator(authenticated=True) as secured:
        aep.pipe.set_settings("aep", secured.settings())
        data = (FILES / "profiles-clean.ndjson").read_bytes()
        result = aep.pipe.import_file(data, aep.key())
        aep.one_outcome(result, state="SUCCEEDED")
        assert secured.accepted_ids() == Counter(ids_in(data))
        assert all(r.header("Authorization").startswith("Bearer ") for r in secured.requests_to("/collection/"))


# -- provisioning ---------------------------------------------------------------------------------------------------

def test_provisioning_twice_creates_nothing_new_and_prints_the_same_ids(aep, tmp_path, capsys):
    from local.cli import main

    path = tmp_path / "aep-provision.json"
    path.write_text(json.dumps(aep.sim.provision_settings(names={"connection": f"{aep.name} connection",
                                                                 "dataflow": f"{aep.name} dataflow"},
                                                          schema={"title": f"{aep.name} schema"},
                                                          dataset={"name": f"{aep.name} dataset"})))
    before = aep.sim.new_objects()
    assert main(["provision-aep", "--settings", str(path)]) == 0
    first = capsys.readouterr()
    created = aep.sim.new_objects() - before
    assert created >= 7  # connection, source, schema, dataset, target, mapping, dataflow
    assert main(["provision-aep", "--settings", str(path)]) == 0
    second = capsys.readouterr()
    assert aep.sim.new_objects() - before == created  # nothing new the second time
    one, two = json.loads(first.out), json.loads(second.out)
    assert one["objects"] == two["objects"] and one["settings"] == two["settings"]
    assert two["created"] in ([], {}) and one["created"]
    assert "nothing to wait for" in second.err
    assert AepSimulator.CLIENT_SECRET not in first.out + first.err + second.out + second.err

    # the printed settings are a working inlet
    aep.pipe.set_settings("aep", {**aep.sim.settings(), **two["settings"]})
    data = (FILES / "profiles-clean.ndjson").read_bytes()
    result = aep.pipe.import_file(data, aep.key())
    aep.one_outcome(result, state="SUCCEEDED")
    assert aep.sim.accepted_ids() == Counter(ids_in(data))
    assert {r.path.rsplit("/", 1)[-1] for r in aep.inlet_posts()} == {two["settings"]["inlet_id"]}


# -- the documented raw path is the default; raw on /collection/batch is an opt-in ------------------------------

def test_opting_in_to_raw_batches_against_a_documented_inlet_fails_naming_the_setting(aep):
    aep.settings(raw_batch=True)  # the simulator follows Adobe's documents: no raw records on /collection/batch
    result = aep.pipe.import_file((FILES / "profiles-clean.ndjson").read_bytes(), aep.key())
    record = aep.one_outcome(result, state="FAILED")
    assert record["error"]["type"] == "VendorRejectedError"
    assert "Set raw_batch to false" in record["error"]["message"]
    assert UNKNOWN_FORMAT in record["error"]["message"]  # the inlet's own words
    assert aep.sim.accepted == [] and len(aep.batch_posts()) >= 1


# -- a failure part-way through the file: nothing lost ----------------------------------------------------

def profile_file(fmt: str, count: int) -> tuple[bytes, str]:
    """The same ``count`` profiles S00001... written as NDJSON, CSV or a JSON array, and the suffix."""
    records = [{"id": f"S{n:05d}", "email": f"user{n}@example.com"} for n in range(1, count + 1)]
    if fmt == "csv":
        return ("id,email\n" + "".join(f"{r['id']},{r['email']}\n" for r in records)).encode(), ".csv"
    if fmt == "json":
        return json.dumps(records, indent=1).encode(), ".json"
    return "".join(json.dumps(r) + "\n" for r in records).encode(), ".ndjson"


def test_an_outage_that_pauses_the_inlet_part_way_resumes_from_the_records_already_sent(aep, no_wait):
    # 10 records land, then the inlet answers 503 until 12 requests were refused: the poll that sent
    # them fails into the circuit breaker (1 failure opens it), the target pauses, the probe after the
    # cool-down finds the inlet back and the import goes on after record 10: each record sent once
    aep.settings(single_concurrency=1, retry_base_seconds=0.01, retry_max_seconds=0.02, breaker_failures=1,
                 breaker_cooldown_seconds=30)
    before = len(aep.pipe.drain_messages())
    aep.sim.fail_from(10, Fault(status=503, match="/collection/"), refusals=12)
    try:
        result = aep.pipe.import_file(profile_file("ndjson", 30)[0], aep.key(".ndjson"))
        states = [m["attributes"].get("state") for m in aep.pipe.drain_messages()[before:]]
    finally:  # the PAUSED / RESUMED messages name no import: later tests read every message as an import's
        aep.pipe.messages[:] = [m for m in aep.pipe.drain_messages() if "job_id" in m["body"]]
    record = aep.one_outcome(result, state="SUCCEEDED")
    assert (record["counts"]["records"], record["counts"]["accepted"]) == (30, 30)
    assert [s for s in states if s in ("PAUSED", "RESUMED")] == ["PAUSED", "RESUMED"]
    assert aep.sim.accepted_ids() == Counter(f"S{n:05d}" for n in range(1, 31))


def test_an_outage_that_outlasts_the_pause_deadline_lists_every_record_not_sent(aep, no_wait):
    # 10 records land, then the inlet answers 503 for good: the poll that sent them fails into the
    # breaker (1 failure opens it), the probes after each cool-down fail too, and once the import has
    # waited pause_deadline_seconds paused it ends FAILED (VendorOutage) at a poll, without the Catch:
    # the 20 records after its cursor must still be in the rejects file, NOT_SENT
    aep.settings(single_concurrency=1, retry_base_seconds=0.01, retry_max_seconds=0.02, breaker_failures=1,
                 breaker_cooldown_seconds=30, pause_deadline_seconds=60)
    aep.sim.fail_from(10, Fault(status=503, match="/collection/"))
    try:
        result = aep.pipe.import_file(profile_file("ndjson", 30)[0], aep.key(".ndjson"))
    finally:  # the PAUSED messages name no import: later tests read every message as an import's
        aep.pipe.messages[:] = [m for m in aep.pipe.drain_messages() if "job_id" in m["body"]]
    record = aep.one_outcome(result, state="FAILED")
    assert record["error"]["type"] == "VendorOutage"
    counts = record["counts"]
    assert (counts["records"], counts["accepted"], counts["not_sent"]) == (10, 10, 20)
    assert record["message"].endswith(
        "; 20 records not sent (NOT_SENT in the rejects file: upload it again once the cause is fixed)")
    rows, raw = rejects(result)
    assert [(r[0], r[1]) for r in rows] == [(f"record {n} (line {n})", "NOT_SENT") for n in range(11, 31)]
    assert all(r[2].startswith("not sent: the import stopped before this record (VendorOutage: ") for r in rows)
    assert ids_in(raw) == [f"S{n:05d}" for n in range(11, 31)]
    assert aep.sim.accepted_ids() == Counter(f"S{n:05d}" for n in range(1, 11))


@pytest.mark.parametrize("fmt", ["ndjson", "csv", "json"])
def test_an_inlet_down_part_way_leaves_every_unsent_record_in_the_rejects_file_to_upload_again(aep, no_wait, fmt):
    aep.settings(single_concurrency=1, retry_base_seconds=0.01, retry_max_seconds=0.02)
    aep.sim.fail_from(10, Fault(status=503, match="/collection/"))  # 10 records land, then the inlet is down
    data, suffix = profile_file(fmt, 30)
    result = aep.pipe.import_file(data, aep.key(suffix))
    record = aep.one_outcome(result, state="FAILED")
    assert record["error"]["type"] == "VendorUnavailableError"
    counts = record["counts"]
    assert (counts["records"], counts["sent"], counts["accepted"], counts["rejected"], counts["not_sent"]) == (
        10, 10, 10, 0, 20)
    assert record["message"].endswith(
        "; 20 records not sent (NOT_SENT in the rejects file: upload it again once the cause is fixed)")
    assert record["rejects"]["rows"] == 20
    # Submit + Choice, Wait + Poll + Choice per poll, the failed poll's 2 attempts (Wait, Poll, the Choice of
    # its Catch, 1 retry), Settle, Finalize; Lambda runs: submit, polls, 2 failed attempts, settle, finalize
    polls = record["polls"]
    assert record["cost"]["state_transitions"] == 2 + 3 * polls + (3 + 1) + 1 + 1
    assert record["cost"]["lambda_invocations"] == 1 + polls + 2 + 1 + 1
    rows, raw = rejects(result)
    # the line each record starts on: NDJSON n, CSV n + 1 (the header), the indented array 4 n - 2
    line = {"ndjson": lambda n: n, "csv": lambda n: n + 1, "json": lambda n: 4 * n - 2}[fmt]
    assert [r[0] for r in rows] == [f"record {n} (line {line(n)})" for n in range(11, 31)]
    assert {r[1] for r in rows} == {"NOT_SENT"}
    assert all(r[2].startswith("not sent: the import stopped before this record (VendorUnavailableError: ")
               for r in rows)
    sent_ids = [f"S{n:05d}" for n in range(1, 11)]
    assert aep.sim.accepted_ids() == Counter(sent_ids)
    assert ids_in(raw) == [f"S{n:05d}" for n in range(11, 31)]

    # the inlet is back: the rejects file dropped in the inbox sends exactly the rest, once
    aep.sim.end_outage()
    again = aep.pipe.import_file(raw, aep.key(".rejected.ndjson"))
    assert aep.one_outcome(again, state="SUCCEEDED")["counts"]["accepted"] == 20
    assert aep.sim.accepted_ids() == Counter(f"S{n:05d}" for n in range(1, 31))
