"""Polling cost: polls, Step Functions transitions, notice delay and dollars per import, for vendor
jobs lasting 30 s, 5 min, 1 h and 6 h.

    .venv/bin/python bench/polling_cost.py [--imports 30] [--jitter 0.05] [--poll-step-seconds 0.3]

Three schedules: the static backoff of the settings (first 5 s, x2, capped at 300 s), the learned
pace (``pace.learn`` over the vendor's finished jobs, through the vendor step's own
``_learned_pace``: probes included), and the fixed 60 s loop of the AWS Step Functions "Job
Poller" sample. The learned pace is run as a sequence of ``--imports`` imports of one vendor whose
jobs last the duration +/- ``--jitter``: each import learns from the ones before it and records
what the poll loop saw (``vendor_seconds`` = the time until noticed), as Finalize does. The first
imports have no history (static backoff): "without history" and "with history" are reported apart.

Dollars: ``cost.estimate`` at its list prices (Standard workflow transitions, arm64 Lambda
GB-seconds and requests), with stated step durations (vendor submit ``--submit-step-seconds``,
each poll ``--poll-step-seconds``, Finalize ``--finalize-step-seconds``) at 1,024 MB.
"""

from __future__ import annotations

import inspect
import math
import random
import sys
import types
from typing import Any

from _common import Report, parser, table

DURATIONS = [("30 s", 30), ("5 min", 300), ("1 h", 3600), ("6 h", 21600)]
DEFAULT_POLL = {"first_wait_seconds": 5, "max_wait_seconds": 300, "factor": 2.0}
MEMORY_MB = 1024


class _History:
    """Stands in for the jobs table: recent(vendor, n) newest first."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def recent(self, vendor: str, limit: int = 20) -> list[dict[str, Any]]:
        return self.items[:limit]


def learned_pace(history: _History, size: int, job_id: str) -> dict[str, Any] | None:
    """The vendor step's own choice of pace (probes included), else pace.learn."""
    from vendor_import import pace

    try:
        from vendor_import.logic.vendor_step import VendorStep

        chooser = VendorStep._learned_pace
    except (ImportError, AttributeError):
        chooser = None
    if chooser is None:
        wants_id = "job_id" in inspect.signature(pace.learn).parameters
        recent = history.recent("bench", pace.HISTORY_SIZE)
        return pace.learn(recent, size, job_id) if wants_id else pace.learn(recent, size)
    step = types.SimpleNamespace(jobs=history, vendor="bench")
    if "job_id" in inspect.signature(chooser).parameters:
        return chooser(step, size, job_id)
    return chooser(step, size)


def fixed_loop(duration: float, every: int = 60) -> tuple[int, float]:
    polls = max(1, math.ceil(duration / every))
    return polls, polls * every - duration


def usd(polls: int, args) -> float:
    from vendor_import import cost

    usage = None
    for seconds in [args.submit_step_seconds] + [args.poll_step_seconds] * polls + [args.finalize_step_seconds]:
        usage = cost.usage_add(usage, seconds, MEMORY_MB)
    return cost.estimate(usage, polls)["usd"]


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--imports", type=int, default=30, help="imports in each learned sequence")
    p.add_argument("--jitter", type=float, default=0.05, help="spread of job durations (+/- fraction)")
    p.add_argument("--submit-step-seconds", type=float, default=1.0)
    p.add_argument("--poll-step-seconds", type=float, default=0.3)
    p.add_argument("--finalize-step-seconds", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args(argv)
    report = Report("polling_cost", args)
    from vendor_import import cost, pace

    rows, figures = [], []
    worst = {"learned_polls_6h": 0, "learned_delay_pct": 0.0, "static_polls_6h": 0, "static_delay_pct": 0.0}
    size = 5_000_000
    for label, duration in DURATIONS:
        rng = random.Random(f"{args.seed}-{duration}")
        draws = [duration * (1 + rng.uniform(-args.jitter, args.jitter)) for _ in range(args.imports)]
        history = _History()
        seq = []  # (had history, polls, delay, duration)
        for i, d in enumerate(draws):
            job_id = f"bench-{label.replace(' ', '')}-{i:04d}"  # probes are chosen by job id
            chosen = learned_pace(history, size, job_id)
            polls, delay = pace.simulate(d, DEFAULT_POLL, chosen)
            seq.append((chosen is not None, polls, delay, d, bool(chosen and chosen.get("probe"))))
            history.items.insert(0, {"job_id": job_id, "vendor": "bench", "state": "SUCCEEDED",
                                     "vendor_seconds": int(round(d + delay)), "source": {"size": size},
                                     "polls": polls})
        static = [pace.simulate(d, DEFAULT_POLL, None) for d in draws]
        fixed = [fixed_loop(d) for d in draws]
        learned = [s for s in seq if s[0]]
        cold = [s for s in seq if not s[0]]

        def summary(name: str, runs: list[tuple[int, float, float]], label: str = label) -> dict[str, Any]:
            polls = [r[0] for r in runs]
            pct = [r[1] / r[2] * 100 for r in runs]
            mean_polls = sum(polls) / len(polls)
            fig = {"duration": label, "schedule": name, "imports": len(runs), "polls_mean": mean_polls,
                   "polls_max": max(polls), "transitions_mean": cost.transitions(round(mean_polls)),
                   "delay_mean_s": sum(r[1] for r in runs) / len(runs), "delay_max_pct": max(pct),
                   "delay_mean_pct": sum(pct) / len(pct),
                   "usd_per_import": sum(usd(n, args) for n in polls) / len(polls)}
            figures.append(fig)
            rows.append([label, name, len(runs), mean_polls, max(polls), cost.transitions(max(polls)),
                         fig["delay_mean_s"], f"{fig['delay_mean_pct']:.1f}%", f"{fig['delay_max_pct']:.1f}%",
                         f"{fig['usd_per_import']:.6f}", fig["usd_per_import"] * 1000])
            return fig

        s = summary("static backoff (no history)", [(p_, dl, d) for (p_, dl), d in zip(static, draws, strict=True)])
        if cold:
            summary("learned: first imports (no history yet)", [(p_, dl, d) for _, p_, dl, d, _ in cold])
        lf = summary("learned: with history", [(p_, dl, d) for _, p_, dl, d, _ in learned]) if learned else None
        probes = [s_ for s_ in learned if s_[4]]
        if probes:
            summary("  of which probes", [(p_, dl, d) for _, p_, dl, d, _ in probes])
        summary("fixed 60 s loop (Job Poller sample)", [(p_, dl, d) for (p_, dl), d in zip(fixed, draws, strict=True)])
        worst["static_delay_pct"] = max(worst["static_delay_pct"], s["delay_max_pct"])
        if lf:
            worst["learned_delay_pct"] = max(worst["learned_delay_pct"], lf["delay_max_pct"])
        if duration == 21600:
            worst["static_polls_6h"] = s["polls_max"]
            worst["learned_polls_6h"] = lf["polls_max"] if lf else s["polls_max"]
    print(table(rows, ["job", "schedule", "imports", "polls mean", "polls max", "transitions (max)",
                       "delay mean s", "delay mean", "delay max", "USD/import", "USD/1000 imports"],
                title=f"Polling: {args.imports} imports per duration, durations +/-{args.jitter:.0%}; "
                      f"static = first {DEFAULT_POLL['first_wait_seconds']} s, x{DEFAULT_POLL['factor']:g}, cap "
                      f"{DEFAULT_POLL['max_wait_seconds']} s"))
    print(f"\nUSD at list prices (cost.DEFAULT_PRICES: {cost.DEFAULT_PRICES['state_transition']} per transition, "
          f"{cost.DEFAULT_PRICES['lambda_gb_second']} per GB-s); steps: submit {args.submit_step_seconds} s, "
          f"poll {args.poll_step_seconds} s, finalize {args.finalize_step_seconds} s at {MEMORY_MB} MB "
          f"(stated, not measured in AWS). Transitions = cost.transitions(polls).")
    report.figures["rows"] = figures
    report.figures["worst"] = worst
    report.check("polls for a 6 h job, learned pace (max)", worst["learned_polls_6h"], 10)
    report.check("notice delay / job length, learned pace (max)", round(worst["learned_delay_pct"], 1), 10,
                 unit="%")
    report.check("polls for a 6 h job, static backoff (no history)", worst["static_polls_6h"], 10)
    report.check("notice delay / job length, static backoff (max)", round(worst["static_delay_pct"], 1), 10,
                 unit="%")
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
