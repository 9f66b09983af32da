"""One share of the "every import ends" run, in a process of its own (one LocalPipeline per
process; two shares run side by side to use two cores). test_every_import_ends.py starts it:

    python -m tests.reliability.chaos_run --share 0 --imports-per-vendor 21 --out share0.json

It deploys the template into its own moto, starts the five simulators with random faults, uploads
every sample at once, and while they run crashes functions at random:

* the submit function raises (the queue delivers the batch again);
* the finalize function raises (the state machine retries it; past its retries the
  execution-ended rule finalizes);
* a vendor function's process dies (``Lambda.Unknown``) before its step, and for Cirrus Shield
  also in the middle of a step, at a checkpoint: before posting a batch, or after the answer and
  before the cursor was saved (the retried step reports that batch UNCONFIRMED);
* the HOPEX, Campaign and simplement-e functions also raise (an unexpected error: caught into
  Finalize, the import ends FAILED).

It writes what it saw (per import: state, outcome documents, counts, what the simulator received)
as JSON; the test makes the assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
for _path in (ROOT / "layers" / "common", ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from tests.reliability.helpers import (  # noqa: E402 - after the path set-up
    VENDORS,
    accepted_at_vendor,
    import_many,
    make_sample,
    outcomes_by_job,
    received,
)

RECORD_VENDORS = ("aep", "cirrus")


def samples_for(share: int, per_vendor: int, seed: int):
    rng = random.Random(seed * 1000 + share)
    out = []
    for vendor in VENDORS:
        for n in range(per_vendor):
            tag = f"chaos{share}-{vendor}-{n:03d}"
            if vendor in RECORD_VENDORS:
                out.append(make_sample(vendor, tag, records=rng.randint(3, 14), invalid=rng.choice([0, 0, 1, 2])))
            else:
                out.append(make_sample(vendor, tag, records=3, invalid=rng.choice([0, 0, 1]),
                                       variant=rng.choice(["ok", "ok", "ok", "rejects", "fail"])))
    rng.shuffle(out)
    return out


class Crasher:
    """Arms crashes at random while the run is on (see the module docstring)."""

    def __init__(self, pipe, rng: random.Random, every: float, checkpoint_death_rate: float):
        self.pipe, self.rng, self.every = pipe, rng, every
        self.checkpoint_death_rate = checkpoint_death_rate
        fns = pipe.deployment.functions
        self.raise_in = [fns["SubmitFunction"], fns["FinalizeFunction"], fns["HopexFunction"],
                         fns["CampaignFunction"], fns["SimplementeFunction"]]
        self.die_in = [fns[f"{v.capitalize()}Function"] for v in VENDORS]
        self.armed: Counter[str] = Counter()
        self.mid_step_deaths = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="crasher")
        self._lock = threading.Lock()

    def _run(self) -> None:
        lambdas = self.pipe.lambdas
        while not self._stop.wait(self.every):
            if self.rng.random() < 0.5:
                fn, knob, kind = self.rng.choice(self.raise_in), lambdas.crash_next, "raised"
            else:
                fn, knob, kind = self.rng.choice(self.die_in), lambdas.die_next, "died"
            if not knob.get(fn):
                knob[fn] = 1
                self.armed[kind] += 1

    def _checkpoint_death(self, original):
        from local.moto_seams import LambdaDied

        crasher = self

        def save_checkpoint(table_self, *args, **kwargs):
            if (os.environ.get("VENDOR") == "cirrus" and not crasher._stop.is_set()
                    and crasher.rng.random() < crasher.checkpoint_death_rate):
                with crasher._lock:
                    crasher.mid_step_deaths += 1
                raise LambdaDied("injected: the function's process died at a checkpoint")
            return original(table_self, *args, **kwargs)

        return save_checkpoint

    def __enter__(self):
        from vendor_import.dal.jobs_table import JobsTable

        self._original = JobsTable.save_checkpoint
        JobsTable.save_checkpoint = self._checkpoint_death(self._original)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        from vendor_import.dal.jobs_table import JobsTable

        self._stop.set()
        self._thread.join(5)
        JobsTable.save_checkpoint = self._original
        lambdas = self.pipe.lambdas
        self.left = sum(lambdas.crash_next.values()) + sum(lambdas.die_next.values())
        lambdas.crash_next.clear()
        lambdas.die_next.clear()


def history_figures(pipe, vendor: str, job_id: str) -> tuple[int, int]:
    """(state machine retries, failed Lambda attempts) of one execution."""
    sm = pipe.state_machine_arn(vendor)
    arn = sm.replace(":stateMachine:", ":execution:") + ":" + job_id
    try:
        events = pipe.sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    except pipe.sfn.exceptions.ExecutionDoesNotExist:
        return 0, 0
    types = [e["type"] for e in events]
    failed = sum(1 for t in types if t in ("LambdaFunctionFailed", "LambdaFunctionTimedOut"))
    retries = sum(1 for a, b in zip(types, types[1:], strict=False)
                  if a in ("LambdaFunctionFailed", "LambdaFunctionTimedOut") and b == "LambdaFunctionScheduled")
    return retries, failed


def rejects_codes(pipe, record: dict[str, Any]) -> list[str]:
    import csv
    import io

    uri = (record.get("rejects") or {}).get("csv_uri")
    if not uri:
        return []
    key = uri.split("/", 3)[3]
    text = pipe.s3.get_object(Bucket=pipe.bucket, Key=key)["Body"].read().decode("utf-8")
    return [row["code"] for row in csv.DictReader(io.StringIO(text))]


def outcome_problem(found: dict[str, list]) -> str | None:
    records, documents, messages = found["records"], found["documents"], found["messages"]
    if (len(records), len(documents), len(messages)) != (1, 1, 1):
        return f"{len(records)} status records, {len(documents)} status JSON, {len(messages)} SNS messages"
    record, document, message = records[0], documents[0], messages[0]
    if not record.get("notified_at"):
        return "status record never marked notified"
    if not (document == message["body"] == {k: v for k, v in record.items() if k != "notified_at"}):
        return "status record, status JSON and SNS message differ"
    return None


def run(share: int, per_vendor: int, seed: int, fault_rate: float, crash_every: float,
        checkpoint_death_rate: float) -> dict[str, Any]:
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "CRITICAL")
    import logging

    logging.disable(logging.CRITICAL)  # injected failures log tracebacks; the figures say it all

    from local.runner import LocalPipeline
    from local.simulators import simulator_class

    sims = {v: simulator_class(v)(seed=seed + i) for i, v in enumerate(VENDORS)}
    sims["hopex"].running_polls = 1
    sims["campaign"].polls_before_done = 1
    for sim in sims.values():
        sim.start()
    try:
        settings = {v: s.settings() for v, s in sims.items()}
        settings["simplemente"]["poll"] = {"first_wait_seconds": 1, "max_wait_seconds": 4, "factor": 1.5}
        with LocalPipeline(settings=settings, simulators=sims, execution_timeout=180) as pipe:
            samples = samples_for(share, per_vendor, seed)
            for sim in sims.values():
                sim.random_fault_rate = fault_rate
            started = time.perf_counter()
            with Crasher(pipe, random.Random(seed + share), crash_every, checkpoint_death_rate) as crasher:
                results = import_many(pipe, [(s.key, s.body, None) for s in samples])
            for sim in sims.values():
                sim.random_fault_rate = 0.0
            seconds = time.perf_counter() - started
            return collect(pipe, sims, samples, results, crasher, seconds)
    finally:
        for sim in sims.values():
            sim.stop()


def collect(pipe, sims, samples, results, crasher, seconds) -> dict[str, Any]:
    by_key = {r.key: r for r in results}
    found = outcomes_by_job(pipe, [r.job_id for r in results])
    submit_fn = pipe.deployment.functions["SubmitFunction"]
    imports = []
    sfn_retries = failed_attempts = 0
    for sample in samples:
        result = by_key.get(sample.key)
        entry: dict[str, Any] = {"vendor": sample.vendor, "key": sample.key,
                                 "state": result.state if result else "MISSING",
                                 "execution_status": result.execution_status if result else None}
        if result is None:
            entry["problem"] = "no result"
            imports.append(entry)
            continue
        entry["job_id"] = result.job_id
        entry["problem"] = outcome_problem(found[result.job_id])
        record = found[result.job_id]["records"][0] if found[result.job_id]["records"] else {}
        entry["counts"] = record.get("counts") or {}
        entry["error"] = record.get("error")
        retries, failed = history_figures(pipe, sample.vendor, result.job_id)
        sfn_retries += retries
        failed_attempts += failed
        if sample.vendor in RECORD_VENDORS:
            entry["records"] = len(sample.ids)
            entry["rejects_codes"] = rejects_codes(pipe, record) if record else []
            entry["received"] = received(sims, sample)
            entry["accepted_at_vendor"] = accepted_at_vendor(sims, sample)
        imports.append(entry)
    invocations = pipe.lambdas.invocations
    return {
        "imports": imports,
        "seconds": round(seconds, 1),
        "faults_injected": sum(sim.random_faults_injected for sim in sims.values()),
        "crashes": {**crasher.armed, "mid_step_deaths": crasher.mid_step_deaths, "armed_not_used": crasher.left},
        "state_machine_retries": sfn_retries,
        "failed_step_attempts": failed_attempts,
        "queue_redeliveries": sum(1 for i in invocations if i["function"] == submit_fn and i["errored"]),
        "dlq_depth": pipe.dlq_depth(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--share", type=int, default=0)
    parser.add_argument("--imports-per-vendor", type=int, default=21)
    parser.add_argument("--seed", type=int, default=20261122)
    parser.add_argument("--fault-rate", type=float, default=0.1)
    parser.add_argument("--crash-every", type=float, default=1.5, help="seconds between two armed crashes")
    parser.add_argument("--checkpoint-death-rate", type=float, default=0.01)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    figures = run(args.share, args.imports_per_vendor, args.seed, args.fault_rate, args.crash_every,
                  args.checkpoint_death_rate)
    Path(args.out).write_text(json.dumps(figures, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
