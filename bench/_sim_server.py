"""A vendor simulator in its own process, for benchmarks (started by _common.SimulatorProcess).

    python bench/_sim_server.py aep --latency 0.05 --cpu 1 --options '{"max_body_bytes": 1000000}'

Prints the simulator's settings document as one JSON line, then answers ``stats`` lines on
stdin with one JSON line of counters; stops when stdin closes. Request bodies are not kept
(``record_bodies = False``), so its memory stays flat however much is sent.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from _common import cpu_seconds, peak_rss_mb, pin


class _CountingSink(list):
    """Stands in for the simulator's request log: counts requests, keeps none."""

    count = 0

    def append(self, item) -> None:  # noqa: ANN001 - any request
        self.count += 1


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("vendor")
    p.add_argument("--latency", type=float, default=0.0)
    p.add_argument("--cpu", type=int, default=1)
    p.add_argument("--options", default="{}")
    args = p.parse_args()
    pin(args.cpu)
    from local.simulators import simulator_class

    sim = simulator_class(args.vendor)(latency=args.latency, **json.loads(args.options))
    sim.record_bodies = False
    sim.requests = _CountingSink()
    sim.start()
    print(json.dumps(sim.settings()), flush=True)
    try:
        for line in sys.stdin:
            if line.strip() == "stats":
                stats = {"requests": sim.requests.count, "cpu_seconds": cpu_seconds(), "peak_rss_mb": peak_rss_mb()}
                for name in ("batch_requests", "messages_accepted", "messages_refused", "data_actions",
                             "records_received", "refused_429", "max_concurrent_jobs"):
                    if hasattr(sim, name):
                        stats[name] = getattr(sim, name)
                print(json.dumps(stats), flush=True)
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
