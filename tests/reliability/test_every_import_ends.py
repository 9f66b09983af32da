"""Every import ends, nothing is lost, nothing is sent twice.

The run: more than 200 imports across the five vendors, with the simulators injecting faults at
random (5xx, 429 with Retry-After, slow answers, dropped connections, malformed bodies) and
functions crashing at random (tests/reliability/chaos_run.py says how). It runs in two child
processes side by side (one local pipeline per process; two cores), each a share of the imports.

Every import must end in a final state with exactly one status record, one status JSON and one
SNS message, and no upload event may be left in the dead-letter queue. For the record vendors
(Cirrus Shield, AEP): every record of the file is accepted by the vendor or listed in the rejects
(accepted + refused = records in the file), and none reaches the vendor twice (counted by record
id at the simulator). Cirrus reports a batch whose answer was lost as UNCONFIRMED rejects instead
of sending it again: those count as refused; each of their records reached the vendor at most once.

The deterministic tests below pin the mechanisms the run relies on, one at a time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from local.simulators.base import Fault

from .helpers import (
    ROOT,
    accepted_at_vendor,
    assert_one_outcome,
    make_sample,
    outcomes_by_job,
    received,
    report,
)

pytestmark = pytest.mark.e2e

SHARES = 2
IMPORTS_PER_VENDOR_PER_SHARE = 21  # 2 x 5 x 21 = 210 imports
FINAL = {"SUCCEEDED", "SUCCEEDED_WITH_REJECTS", "FAILED", "TIMED_OUT"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Both shares, started together; their figures, merged."""
    tmp = tmp_path_factory.mktemp("chaos")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "layers" / "common"), str(ROOT)])}
    procs = []
    for share in range(SHARES):
        out = tmp / f"share{share}.json"
        cmd = [sys.executable, "-m", "tests.reliability.chaos_run", "--share", str(share),
               "--imports-per-vendor", str(IMPORTS_PER_VENDOR_PER_SHARE), "--out", str(out)]
        procs.append((subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True), out))
    shares = []
    for proc, out in procs:
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
        shares.append(json.loads(Path(out).read_text()))
    merged = {"imports": [i for s in shares for i in s["imports"]],
              "seconds": max(s["seconds"] for s in shares)}
    for name in ("faults_injected", "state_machine_retries", "failed_step_attempts", "queue_redeliveries",
                 "dlq_depth"):
        merged[name] = sum(s[name] for s in shares)
    merged["crashes"] = dict(sum((Counter(s["crashes"]) for s in shares), Counter()))
    return merged


def record_figures(imp: dict) -> tuple[int, int, int, int]:
    """(accepted, refused, lost, received twice) of one record-vendor import."""
    counts = imp["counts"]
    twice = sum(1 for n in imp["received"].values() if n > 1)
    if not imp["received"] and imp["state"] == "FAILED":
        return 0, 0, 0, twice  # failed before sending anything: the whole file is to upload again
    # records an import that failed part-way never sent are in its rejects file too (NOT_SENT)
    accepted, refused = counts.get("accepted", 0), counts.get("rejected", 0) + counts.get("not_sent", 0)
    lost = imp["records"] - accepted - len(imp["rejects_codes"])
    if refused != len(imp["rejects_codes"]):
        lost = max(lost, imp["records"] - accepted - refused, 1)
    return accepted, refused, lost, twice


def test_more_than_200_imports_under_faults_and_crashes_all_end_once(run):
    imports = run["imports"]
    assert len(imports) >= 200
    assert [i["key"] for i in imports if i["state"] not in FINAL] == []
    assert [(i["key"], i["problem"]) for i in imports if i["problem"]] == []
    assert run["dlq_depth"] == 0
    assert run["faults_injected"] > 0 and sum(run["crashes"].values()) > 0
    states = Counter(i["state"] for i in imports)
    report("every import ends (tests/reliability/test_every_import_ends.py)",
           f"{len(imports)} imports ({SHARES} processes of {len(imports) // SHARES}) in {run['seconds']} s",
           f"faults injected at random by the simulators: {run['faults_injected']}",
           f"crashes: {run['crashes']}",
           f"failed step attempts: {run['failed_step_attempts']}, retried by the state machine: "
           f"{run['state_machine_retries']}, upload events delivered again by the queue: {run['queue_redeliveries']}",
           f"final states: {dict(states)}; every import: 1 status record, 1 status JSON, 1 SNS message; "
           f"dead-letter queue: {run['dlq_depth']}")


def test_record_vendors_lose_nothing_and_send_nothing_twice(run):
    totals = Counter()
    for imp in run["imports"]:
        if "records" not in imp:
            continue
        accepted, refused, lost, twice = record_figures(imp)
        assert lost == 0, imp
        assert twice == 0, imp
        # what the vendor accepted is what the status record says was accepted (UNCONFIRMED
        # records may have been accepted too, once: they are reported, not resent)
        unconfirmed = imp["rejects_codes"].count("UNCONFIRMED")
        assert accepted <= sum(imp["accepted_at_vendor"].values()) <= accepted + unconfirmed, imp
        if not imp["received"] and imp["state"] == "FAILED":
            totals.update(failed_before_sending=1, not_sent=imp["records"])
        else:
            totals.update(imports=1, records=imp["records"], accepted=accepted, refused=refused,
                          unconfirmed=unconfirmed, lost=lost, twice=twice)
    assert totals["imports"] >= 70
    report("every import ends (tests/reliability/test_every_import_ends.py)",
           f"record vendors (AEP, Cirrus): {totals['imports']} imports sent {totals['records']} records: "
           f"{totals['accepted']} accepted + {totals['refused']} refused "
           f"({totals['unconfirmed']} of them UNCONFIRMED); lost: {totals['lost']}, "
           f"received twice: {totals['twice']}; {totals['failed_before_sending']} more imports FAILED "
           f"before sending any of their {totals['not_sent']} records (the whole file is to upload again)")


# -- the mechanisms, one at a time -----------------------------------------------------------------------------

def cirrus_outcome(pipe, sims, sample, result, *, not_received: int = 0):
    record = assert_one_outcome(outcomes_by_job(pipe, [result.job_id])[result.job_id], result.job_id)
    seen = received(sims, sample)
    assert len(seen) == len(sample.ids) - not_received and set(seen.values()) == {1}, seen  # once, at most
    assert record["counts"]["accepted"] + record["counts"]["rejected"] == len(sample.ids)
    return record


def test_garbled_cirrus_answer_is_reported_unconfirmed_and_the_rest_is_sent(pipe, sims, request):
    sample = make_sample("cirrus", request.node.name, records=12)
    # the simulator garbles its answer without applying the batch: the connector cannot know,
    # so it must neither send those records again nor count them as accepted
    sims["cirrus"].inject(Fault(malformed=True, match="DataAction"))
    result = pipe.import_file(sample.body, sample.key)
    assert result.state == "SUCCEEDED_WITH_REJECTS", result.record
    record = cirrus_outcome(pipe, sims, sample, result, not_received=5)
    assert record["counts"]["unconfirmed"] == 5  # the first batch (batch_size 5)
    assert record["counts"]["accepted"] == sum(accepted_at_vendor(sims, sample).values()) == 7


def test_cirrus_function_dying_after_an_answer_reports_that_batch_unconfirmed(pipe, sims, request, monkeypatch):
    from vendor_import.dal.jobs_table import JobsTable

    from local.moto_seams import LambdaDied

    sample = make_sample("cirrus", request.node.name, records=12, invalid=1)
    calls = Counter()
    original = JobsTable.save_checkpoint

    def save_checkpoint(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # 1 marks batch 1; 2 saves its answer, marks batch 2; 3: batch 2 answered, not saved
            raise LambdaDied("injected: died at a checkpoint")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(JobsTable, "save_checkpoint", save_checkpoint)
    result = pipe.import_file(sample.body, sample.key)
    monkeypatch.undo()
    assert result.state == "SUCCEEDED_WITH_REJECTS", result.record
    record = cirrus_outcome(pipe, sims, sample, result)
    assert record["counts"]["unconfirmed"] == 5
    assert record["counts"]["rejected"] == 1 + 5  # the INVALID record of batch 1, batch 2 unconfirmed


def test_a_record_import_that_fails_half_way_reports_what_reached_the_vendor(pipe, sims, request, monkeypatch):
    from vendor_import.dal.jobs_table import JobsTable

    from local.moto_seams import LambdaDied

    sample = make_sample("cirrus", request.node.name, records=12, invalid=1)
    function = pipe.deployment.functions["CirrusFunction"]
    calls = Counter()
    original = JobsTable.save_checkpoint

    def save_checkpoint(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # batch 2 answered, cursor not saved; then every retry dies too
            pipe.lambdas.die_next[function] = 3
            raise LambdaDied("injected: died at a checkpoint")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(JobsTable, "save_checkpoint", save_checkpoint)
    result = pipe.import_file(sample.body, sample.key)
    monkeypatch.undo()
    pipe.lambdas.die_next.clear()
    assert result.state == "FAILED" and result.record["error"]["type"] == "InternalError"
    assert result.record["error"]["message"].startswith("Lambda.Unknown: ")
    record = assert_one_outcome(outcomes_by_job(pipe, [result.job_id])[result.job_id], result.job_id)
    # batch 1 (records 1-5, one refused) was checkpointed: the status record says so; the settle step
    # then reports batch 2 (6-10, posted, its answer never saved) UNCONFIRMED and 11-12 NOT_SENT
    counts = record["counts"]
    assert (counts["sent"], counts["accepted"], counts["rejected"], counts["unconfirmed"], counts["not_sent"]) == (
        10, 4, 1 + 5, 5, 2)
    assert record["rejects"]["rows"] == 1 + 5 + 2


@pytest.mark.parametrize("vendor", ["aep", "cirrus", "hopex"])
def test_vendor_function_dying_between_steps_is_retried_from_its_checkpoint(pipe, sims, vendor, request,
                                                                             monkeypatch):
    sample = make_sample(vendor, request.node.name, records=9, invalid=1)
    function = pipe.deployment.functions[f"{vendor.capitalize()}Function"]
    first = len(pipe.lambdas.invocations)
    invoke = pipe.lambdas.invoke

    def die_after_submit(fn, event):
        out = invoke(fn, event)
        parsed = json.loads(event or "{}") if isinstance(event, (str, bytes)) else event
        if fn.function_name == function and parsed.get("action") == "submit":
            pipe.lambdas.die_next[function] = 1  # the first poll dies before doing anything
        return out

    monkeypatch.setattr(pipe.lambdas, "invoke", die_after_submit)
    result = pipe.import_file(sample.body, sample.key)
    monkeypatch.undo()
    assert result.state in ("SUCCEEDED", "SUCCEEDED_WITH_REJECTS"), result.record
    mine = [i for i in pipe.lambdas.invocations[first:] if i["function"] == function]
    assert [i["action"] for i in mine if i["errored"]] == ["poll"]
    record = assert_one_outcome(outcomes_by_job(pipe, [result.job_id])[result.job_id], result.job_id)
    if vendor != "hopex":
        seen = received(sims, sample)
        assert set(seen) == set(sample.ids) and set(seen.values()) == {1}, seen
        assert record["counts"]["accepted"] + record["counts"]["rejected"] == len(sample.ids)
