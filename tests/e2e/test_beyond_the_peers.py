"""Beyond the peers: dry runs for every vendor (not a single vendor call), polling that learns
each vendor's pace from the jobs table, and the cost of every import in its status record."""

from __future__ import annotations

import importlib
import json
import statistics

import pytest

from local import moto_seams
from local.simulators import SIMULATORS
from local.template_deploy import ROOT

pytestmark = pytest.mark.e2e

VENDORS = tuple(SIMULATORS)


def first_success_case(vendor: str):
    module = importlib.import_module(SIMULATORS[vendor].split(":")[0])
    return next(c for c in module.DEMO_CASES if c.expect == "SUCCEEDED")


def dry_key(key: str, tag: str) -> str:
    """inbox/<vendor>/rest -> inbox/<vendor>/dry-run/rest, with a unique file name."""
    _, vendor, rest = key.split("/", 2)
    folder, _, name = rest.rpartition("/")
    folder = f"{folder}/" if folder else ""
    return f"inbox/{vendor}/dry-run/{folder}{tag}-{name}"


def drop_queued_events(pipe) -> None:
    while msgs := pipe.sqs.receive_message(QueueUrl=pipe.queue_url, MaxNumberOfMessages=10).get("Messages"):
        for m in msgs:
            pipe.sqs.delete_message(QueueUrl=pipe.queue_url, ReceiptHandle=m["ReceiptHandle"])


def message_for(pipe, job_id: str) -> list[dict]:
    return [m for m in pipe.drain_messages() if m["body"].get("job_id") == job_id]


@pytest.mark.parametrize("vendor", VENDORS)
def test_dry_run_key_segment_validates_without_a_single_vendor_call(pipe, sims, vendor):
    sim = sims[vendor]
    sim.requests.clear()
    case = first_success_case(vendor)
    result = pipe.import_file(ROOT / case.file, dry_key(case.key, "dryseg"), case.metadata or None)
    assert result.state == "VALIDATED", result.record
    assert result.record["dry_run"] is True
    assert "nothing was sent" in result.record["message"]
    assert sim.requests == [], f"{vendor} simulator saw {[r.path for r in sim.requests]}"
    [msg] = message_for(pipe, result.job_id)
    assert "(dry run)" in msg["subject"]
    assert msg["attributes"] == {"vendor": vendor, "target": "default", "state": "VALIDATED", "dry_run": "true"}


@pytest.mark.parametrize("vendor", ["cirrus", "aep"])
def test_dry_run_by_metadata_flag_and_console_flag(pipe, sims, vendor):
    sim = sims[vendor]
    sim.requests.clear()
    case = first_success_case(vendor)
    folder, name = case.key.rsplit("/", 1)
    key = f"{folder}/meta-flag-{name}"
    by_metadata = pipe.import_file(ROOT / case.file, key, {**(case.metadata or {}), "dry-run": "true"})
    assert by_metadata.state == "VALIDATED"
    console_key = f"{folder}/console-flag-{name}"
    pipe.s3.put_object(Bucket=pipe.bucket, Key=console_key, Body=(ROOT / case.file).read_bytes())
    drop_queued_events(pipe)  # only the console start imports it
    sim.requests.clear()
    by_console = pipe.start_console(vendor, {"bucket": pipe.bucket, "key": console_key, "dry_run": True})
    assert by_console.state == "VALIDATED"
    assert sim.requests == []


def test_dry_run_reports_the_would_be_rejects(pipe, sims):
    sim = sims["aep"]
    sim.requests.clear()
    body = b'{"id": "1", "name": "ok"}\n{"id": "2", "name": \n{"id": "3", "name": "ok"}\n'
    result = pipe.import_file(body, "inbox/aep/dry-run/would-reject.ndjson")
    assert result.state == "VALIDATED"
    assert result.record["counts"]["would_reject"] == 1
    assert result.record["rejects"]["rows"] == 1 and result.record["rejects"]["csv_uri"]
    assert "1 record(s) would be rejected" in result.record["message"]
    assert sim.requests == []


def test_polling_learns_the_vendor_pace_from_recent_jobs(pipe, sims):
    """Jobs lasting 300 vendor-seconds: with the static schedule (5, 10, 20, 40, 80, 160 s) an
    import needs 6 polls; once the jobs table holds a few of them, imports are polled 1-2 times on
    average and the end is noticed within 10 % of the job's length. Job lengths are measured on
    the runner's virtual clock (nominal Wait seconds), so the figures do not depend on the load."""
    sim = sims["hopex"]
    sim.running_polls, sim.job_seconds, sim.clock = 0, 300, moto_seams.virtual_clock
    body = b"* learned pace\n" + b"ADD Application 'x'\n" * 20_000  # a size class of its own
    try:
        records = []
        for i in range(9):
            result = pipe.import_file(body, f"inbox/hopex/pace/job-{i:02d}.mgl")
            assert result.state == "SUCCEEDED", result.record
            records.append(result.record)
    finally:
        sim.reset()
    first, learned = records[0], records[-4:]
    avg_polls = statistics.mean(r["polls"] for r in learned)
    assert avg_polls <= 2.0, [(r["polls"], r["waited_seconds"]) for r in records]
    for r in learned:
        assert 300 <= r["waited_seconds"] <= 330, r["waited_seconds"]  # noticed within 10 % of 300 s
        assert r["vendor_seconds"] == r["waited_seconds"]
    print(f"polls per import: static {first['polls']}, learned {avg_polls:.1f} "
          f"(waited {[r['waited_seconds'] for r in learned]})")


def test_status_record_and_sns_message_carry_the_cost_of_the_import(pipe, sims):
    case = first_success_case("hopex")
    result = pipe.import_file(ROOT / case.file, "inbox/hopex/cost/cost-check.mgl")
    cost = result.record["cost"]
    polls = result.record["polls"]
    assert cost["state_transitions"] == 2 + 3 * polls + 1
    assert cost["lambda_invocations"] == polls + 2  # submit + polls + finalize
    assert cost["lambda_gb_seconds"] > 0
    expected = (cost["state_transitions"] * cost["prices_usd"]["state_transition"]
                + cost["lambda_gb_seconds"] * cost["prices_usd"]["lambda_gb_second"]
                + cost["lambda_invocations"] * cost["prices_usd"]["lambda_request"])
    assert cost["usd"] == pytest.approx(expected, abs=1e-8)  # rounded to 1e-8 USD
    [msg] = message_for(pipe, result.job_id)
    assert msg["body"]["cost"] == json.loads(json.dumps(cost))
