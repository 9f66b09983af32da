"""Vendor guard: a burst of uploads to one HOPEX target through the local runner (real template in
embedded moto, real handlers, HOPEX simulator), on a virtual clock.

    .venv/bin/python bench/vendor_guard.py [--uploads 100] [--limit 3] [--job-seconds 600] [--phases burst,outage,aep]

Every upload is made at once; the target has ``max_concurrent_imports = --limit`` (an opt-in here:
no vendor document states a limit, so the default is none). The simulator's jobs last
``--job-seconds`` of virtual time, on ``VirtualClock``: a discrete-event clock that stands still
while any execution runs a step (the local pipeline's steps take turns in one process; in AWS
they run side by side in a fraction of a job) and jumps to the end of the earliest Wait when all
of them wait. So the run takes as long as its steps, and the pipeline's own overhead never counts
as vendor time.

Measured: the most jobs the simulator ran at once, the status records and SNS messages per import
(exactly one each), how far the vendor's start order strays from the upload order, and the total
time against ``uploads / limit`` job lengths (the best any schedule can do).
Then the outage run (``outage_run``): the vendor down for --outage-seconds while
--outage-uploads imports are queued or running.
Last line: ``vendor guard: max concurrent <N> (limit <L>), <K>/<T> ended once, outage alerts <A>``.
"""

from __future__ import annotations

import collections
import sys
import tempfile
import time

from _common import Report, parser, table


class VirtualClock:
    """Vendor time as in AWS, where the steps of concurrent imports run side by side in a fraction
    of a job: a discrete-event clock over the local runner. It stands still while any running
    execution runs a step (a handler, or the Step Functions interpreter between states: here they
    take turns in one process), and when every running execution waits in a Wait state it jumps
    to the end of the earliest wait. A Wait of W seconds lasts exactly W seconds of this clock. So
    the local pipeline's own overhead, however slow the machine, never counts as vendor time, and
    the guard's own cost does (a slot left idle while the next import sleeps until its check).
    ``time_scale`` is not used: the run takes as long as its steps. Installed over moto's
    execution worker and Wait state (``install``)."""

    def __init__(self, time_scale: float = 0.0):
        import threading

        self._cond = threading.Condition()
        self.active = 0  # executions running
        self.ends: dict[int, float] = {}  # waits in progress: their end on this clock
        self.virtual = 0.0

    def _step(self) -> None:  # under the lock: every running execution waits: time jumps
        if self.active and len(self.ends) >= self.active:
            self.virtual = max(self.virtual, min(self.ends.values()))
            self._cond.notify_all()

    def __call__(self) -> float:
        with self._cond:
            return self.virtual

    def install(self) -> None:
        from moto.stepfunctions.parser.asl.component.state.wait.wait_function import wait_function
        from moto.stepfunctions.parser.backend import execution_worker

        clock = self
        worker = execution_worker.ExecutionWorker
        run, wait = worker._execution_logic, wait_function.WaitFunction._wait_interval

        def _execution_logic(self):
            with clock._cond:
                clock.active += 1
            try:
                return run(self)
            finally:
                with clock._cond:
                    clock.active -= 1
                    clock._step()

        def _wait_interval(self, env, wait_seconds):
            wait(self, env, 0)  # the runner's own bookkeeping, without its wall-clock sleep
            key = id(env) ^ id(self) ^ int(time.monotonic_ns())
            with clock._cond:
                end = clock.virtual + max(0.0, float(wait_seconds))
                clock.ends[key] = end
                try:
                    while clock.virtual < end:
                        clock._step()
                        if clock.virtual < end:
                            clock._cond.wait(0.05)
                finally:
                    del clock.ends[key]

        worker._execution_logic = _execution_logic
        wait_function.WaitFunction._wait_interval = _wait_interval
        self._restore = lambda: (setattr(worker, "_execution_logic", run),
                                 setattr(wait_function.WaitFunction, "_wait_interval", wait))

    def uninstall(self) -> None:
        getattr(self, "_restore", lambda: None)()


def hopex_simulator(job_seconds: float, clock: VirtualClock):
    """A HOPEX simulator whose jobs last ``job_seconds`` on ``clock`` (no extra running polls)."""
    from local.simulators.hopex import HopexSimulator

    sim = HopexSimulator()
    sim.record_bodies = False
    sim.start()
    sim.running_polls = 0
    sim.job_seconds = job_seconds
    sim.clock = clock
    return sim


PHASES = {"burst", "outage", "aep"}


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--uploads", type=int, default=100, help="uploads at once in the burst phase (default 100)")
    p.add_argument("--limit", type=int, default=3, help="max_concurrent_imports of the target")
    p.add_argument("--job-seconds", type=float, default=600.0, help="virtual length of each vendor job")
    p.add_argument("--time-scale", type=float, default=0.02, help="wall seconds per virtual second")
    p.add_argument("--queue-check-seconds", type=int, default=30, help="queue_check_seconds of the target")
    p.add_argument("--outage-uploads", type=int, default=50, help="imports queued or running during the outage")
    p.add_argument("--outage-seconds", type=float, default=600.0, help="virtual seconds the vendor is down")
    p.add_argument("--outage-job-seconds", type=float, default=60.0, help="job length in the outage run")
    p.add_argument("--aep-records", type=int, default=20_000, help="1 KB records per AEP import (3 at once)")
    p.add_argument("--phases", default="burst,outage,aep",
                   help="which parts to run, comma-separated, of burst (about 16 min at the defaults), outage "
                        "(about 2 min) and aep (about 2 min)")
    args = p.parse_args(argv)
    phases = set(args.phases.split(","))
    if phases - PHASES or not phases:
        p.error(f"unknown phase(s) {', '.join(sorted(phases - PHASES)) or '(none)'}: give some of "
                f"{', '.join(sorted(PHASES))}")
    report = Report("vendor_guard", args)
    most, ended_once, alerts = burst_run(args, report) if "burst" in phases else (0, 0, [])
    if "outage" in phases:
        alerts = alerts + outage_run(args, report)[0]
    if "aep" in phases:
        aep_run(args, report)
    report.finish()
    print(f"vendor guard: max concurrent {most} (limit {args.limit}), "
          f"{ended_once}/{args.uploads if 'burst' in phases else 0} ended once, outage alerts {len(alerts)}")
    return 0


def burst_run(args, report: Report) -> tuple[int, int, list]:
    """--uploads uploads at once to one HOPEX target with max_concurrent_imports --limit."""
    from local.runner import LocalPipeline

    virtual = VirtualClock(args.time_scale)
    sim = hopex_simulator(args.job_seconds, virtual)
    # polls every 5-30 virtual s: the end of a 600 s job is seen within 30 s; the next in line checks
    # for a free slot every 10 s
    settings = sim.settings(max_concurrent_imports=args.limit, queue_check_seconds=args.queue_check_seconds,
                            poll={"first_wait_seconds": 5, "max_wait_seconds": 30, "factor": 2.0})
    try:
        with tempfile.TemporaryDirectory() as out, \
                LocalPipeline(settings={"hopex": settings}, time_scale=args.time_scale, out_dir=out,
                              execution_timeout=args.uploads * args.job_seconds * args.time_scale * 3 + 120) as pipe:
            virtual.install()
            uploads = [(f'CREATE Application "Guard {i}"\n'.encode(), f"inbox/hopex/guard-bench/{i:04d}.mgl")
                       for i in range(args.uploads)]
            start = virtual()
            results = pipe.import_many(uploads)
            total = virtual() - start
            messages = pipe.drain_messages()
    finally:
        virtual.uninstall()
        sim.stop()
    per_job = collections.Counter(m["body"].get("job_id") for m in messages if m["body"].get("job_id"))
    outage = [m for m in messages if (m.get("attributes") or {}).get("state") in ("PAUSED", "RESUMED")]
    ended_once = sum(1 for r in results if r.record and r.ok and per_job.get(r.job_id) == 1)
    starts = [int(name.split(".")[0]) for name in sim.job_starts]
    stray = max((abs(pos - idx) for pos, idx in enumerate(starts)), default=0)
    ideal = args.uploads / args.limit * args.job_seconds
    states = collections.Counter(r.state for r in results)
    rows = [["uploads", args.uploads], ["max_concurrent_imports", args.limit],
            ["most jobs at once (simulator)", sim.max_concurrent_jobs],
            ["final states", ", ".join(f"{k} {v}" for k, v in sorted(states.items()))],
            ["ended once (1 status record, 1 SNS message)", f"{ended_once}/{args.uploads}"],
            ["jobs the vendor started", len(starts)],
            ["start order: most places from upload order", stray],
            ["total virtual s", round(total)], ["uploads / limit x job length", round(ideal)],
            ["total / ideal", round(total / ideal, 3)]]
    print(table(rows, ["", ""], title=f"Burst: {args.uploads} uploads at once to one HOPEX target, "
                                      f"jobs of {args.job_seconds:g} virtual s, time scale {args.time_scale:g}"))
    report.figures.update({"uploads": args.uploads, "limit": args.limit, "max_concurrent": sim.max_concurrent_jobs,
                           "ended_once": ended_once, "stray": stray, "total_virtual_s": total,
                           "ideal_virtual_s": ideal, "states": dict(states), "outage_alerts": len(outage)})
    report.check("most jobs at once", sim.max_concurrent_jobs, args.limit)
    report.check("imports ended once", ended_once, args.uploads, higher_is_better=True)
    report.check("start order: places from upload order", stray, args.limit)
    report.check("total time / (uploads / limit x job length)", round(total / ideal, 3), 1.15)
    return sim.max_concurrent_jobs, ended_once, outage


def outage_run(args, report: Report) -> tuple[list[str], int, int, int]:
    """The vendor answers 503 to everything from virtual second 30 for --outage-seconds while
    --outage-uploads imports are queued or running: one PAUSED and one RESUMED message, no import
    FAILED for the outage, every import ends; failed probes within the cool-down backoff's bound."""
    import math
    import threading

    from vendor_import.dal.guard_table import GuardTable

    from local.runner import LocalPipeline

    virtual = VirtualClock(args.time_scale)
    sim = hopex_simulator(args.outage_job_seconds, virtual)
    cooldown = 60
    settings = sim.settings(max_concurrent_imports=args.limit, queue_check_seconds=args.queue_check_seconds,
                            breaker_failures=5, breaker_cooldown_seconds=cooldown,
                            poll={"first_wait_seconds": 5, "max_wait_seconds": 30, "factor": 2.0})
    stop = threading.Event()

    def outage() -> None:
        while not stop.is_set() and virtual() < 30:
            stop.wait(0.01)
        sim.down = True
        while not stop.is_set() and virtual() < 30 + args.outage_seconds:
            stop.wait(0.01)
        sim.down = False

    try:
        with tempfile.TemporaryDirectory() as out, \
                LocalPipeline(settings={"hopex": settings}, time_scale=args.time_scale, out_dir=out,
                              execution_timeout=args.outage_uploads * 600 * args.time_scale + 600) as pipe:
            virtual.install()
            watcher = threading.Thread(target=outage, daemon=True)
            watcher.start()
            uploads = [(f'CREATE Application "Outage {i}"\n'.encode(), f"inbox/hopex/guard-outage/{i:04d}.mgl")
                       for i in range(args.outage_uploads)]
            results = pipe.import_many(uploads)
            stop.set()
            watcher.join()
            messages = pipe.drain_messages()
            breaker = GuardTable(pipe.table).read("guard#hopex#default")["breaker"]
    finally:
        virtual.uninstall()
        sim.down = False
        sim.stop()
    alerts = [m["attributes"]["state"] for m in messages if m["attributes"].get("state") in ("PAUSED", "RESUMED")]
    failed_outage = sum(1 for r in results if ((r.record or {}).get("error") or {}).get("type") in (
        "VendorOutage", "VendorUnavailableError"))
    ended = sum(1 for r in results if r.record and r.state != "MISSING")
    probes = int(breaker.get("probes") or 0)
    # failed probes: one per cool-down, the cool-down doubling from 60 s: n with 60 x (2^n - 1) < outage
    bound = math.ceil(math.log2(args.outage_seconds / cooldown + 1))
    print()
    print(table([["imports", args.outage_uploads], ["vendor down (virtual s)", args.outage_seconds],
                 ["refused while down", sim.refused_while_down], ["messages", ", ".join(alerts) or "-"],
                 ["FAILED for the outage", failed_outage], ["ended", f"{ended}/{args.outage_uploads}"],
                 ["failed probes", probes], ["failed probes bound", bound],
                 ["final states", ", ".join(f"{k} {v}" for k, v in sorted(collections.Counter(
                     r.state for r in results).items()))]],
                ["", ""], title="Outage: the vendor down while imports are queued or running"))
    report.figures.update({"outage_alerts": alerts, "outage_failed": failed_outage, "outage_ended": ended,
                           "outage_failed_probes": probes})
    report.check("PAUSED messages", alerts.count("PAUSED"), 1)
    report.check("PAUSED messages (at least)", alerts.count("PAUSED"), 1, higher_is_better=True)
    report.check("RESUMED messages", alerts.count("RESUMED"), 1)
    report.check("RESUMED messages (at least)", alerts.count("RESUMED"), 1, higher_is_better=True)
    report.check("imports FAILED for the outage", failed_outage, 0)
    report.check("imports ended", ended, args.outage_uploads, higher_is_better=True)
    report.check("failed probes", probes, bound)
    return alerts, failed_outage, ended, probes



def aep_run(args, report: Report) -> None:
    """3 AEP imports at once to one inlet (the simulator enforces the documented 1,000 requests/s and
    10,000 messages/s per inlet, answering 429 over them), each in its own process as in Lambda:
    each paced at the inlet's whole rate on its own (before the guard), against all three taking
    from the target's one budget per second (logic/guard.SharedRate, in a DynamoDB table served
    by moto's server, as the jobs table in AWS)."""
    import threading
    from pathlib import Path

    import boto3
    from _common import SimulatorProcess
    from _drive import run_import_child
    from _files import write_ndjson
    from moto.server import ThreadedMotoServer

    limits = {"max_messages_per_second": 10_000, "max_requests_per_second": 1_000}
    rows, figures = [], {}
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    endpoint = f"http://127.0.0.1:{server._server.server_port}"
    boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bench",
                 aws_secret_access_key="bench").create_table(
        TableName="jobs", KeySchema=[{"AttributeName": "job_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "job_id", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "profiles.ndjson"
            n = write_ndjson(path, args.aep_records * 1024)
            for label, shared in (("each at the inlet's whole rate (no guard)", False),
                                  ("one budget per second for the target (guard)", True)):
                with SimulatorProcess("aep", latency=0.02, cpu=1, **limits) as sim:
                    doc = {**sim.settings, **limits, "time_margin_seconds": 5, "timeout_seconds": 30}
                    results: list = [None] * 3

                    def one(i: int, doc=doc, results=results, shared=shared) -> None:
                        try:
                            results[i] = run_import_child("aep", doc, str(path), cpu=i % 2,
                                                          shared_table=f"{endpoint}|jobs" if shared else "")
                        except Exception as exc:  # noqa: BLE001 - an import that gave up (429 after its retries)
                            results[i] = {"counts": {}, "error": str(exc)[-300:]}

                    threads = [threading.Thread(target=one, args=(i,)) for i in range(3)]
                    started = time.perf_counter()
                    for t in threads:
                        t.start()
                    for t in threads:
                        t.join()
                    wall = time.perf_counter() - started
                    refused = int(sim.stats().get("refused_429") or 0)
                failed = sum(1 for r in results if r.get("error"))
                accepted = sum(int(r["counts"].get("accepted") or 0) for r in results)
                rows.append([label, 3, failed, f"{accepted}/{3 * n}", round(wall, 1), round(accepted / wall),
                             refused])
                figures["shared" if shared else "unshared"] = {"wall": wall, "accepted": accepted,
                                                               "responses_429": refused, "imports_failed": failed}
    finally:
        server.stop()
    print()
    print(table(rows, ["AEP, one inlet", "imports", "failed", "accepted", "wall s", "rec/s together", "429 answers"],
                title=f"AEP: 3 imports of {n:,} records at once to one inlet (limits 1,000 requests/s, "
                      f"10,000 messages/s)"))
    report.figures["aep"] = figures
    report.check("AEP 429 answers, 3 imports sharing one inlet", figures["shared"]["responses_429"], 0)
    report.check("AEP records accepted, 3 imports sharing one inlet", figures["shared"]["accepted"], 3 * n,
                 higher_is_better=True)


if __name__ == "__main__":
    sys.exit(main())
