"""Polling that learns each vendor's pace.

What a finished import tells us is an upper bound of its vendor's job length: the waited seconds
when the poll first saw it done (``vendor_seconds`` in the status record). The first wait of a new
import is a low percentile of those bounds for the vendor's recent jobs of a similar size: tight
bounds dominate, loose ones (from the static backoff) are ignored. After that expected end, each
wait is a small fraction of the time waited so far, so the end is noticed within that fraction of
the job's length. One import in PROBE_EVERY (by job id) first waits less than expected: a job that
ends at its first poll only gives an upper bound, and probes keep the bounds tight when a vendor
gets faster. Without enough history the static backoff of ``polling.next_wait`` applies.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from typing import Any

from .polling import MAX_WAIT_SECONDS, bounded_seconds, next_wait

MIN_SAMPLES = 3
HISTORY_SIZE = 20
SIZE_RATIO = 4.0  # "similar size": within x4 either way
PERCENTILE = 0.25  # of upper bounds: close to the true length once a few bounds are tight
NOTICE_FRACTION = 0.05  # after the expected end, wait 5 % of the time waited so far
# One import in PROBE_EVERY waits only PROBE_FACTOR of the expected duration first: a job that
# finishes at its first poll records only an upper bound of its duration, so without probes a
# vendor that became faster would keep being polled at its old, slower pace.
PROBE_EVERY = 5
PROBE_FACTOR = 0.8


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    idx = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[idx]


def learn(history: Iterable[dict[str, Any]], size: int | None, job_id: str = "") -> dict[str, Any] | None:
    """A pace from finished jobs (items of the jobs table): None when history is too thin."""
    samples: list[tuple[float, int | None]] = []
    for item in history:
        seconds = item.get("vendor_seconds")
        if item.get("state") not in ("SUCCEEDED", "SUCCEEDED_WITH_REJECTS") or not seconds:
            continue
        try:
            seconds = float(seconds)
        except (TypeError, ValueError, OverflowError):
            continue
        if not math.isfinite(seconds) or seconds <= 0:
            continue  # a damaged history item must not turn into an infinite wait
        samples.append((seconds, (item.get("source") or {}).get("size")))
    samples_s = [s for s, _ in samples]
    if size:  # prefer jobs of a similar size when there are enough of them
        similar = [s for s, sz in samples if sz and size / SIZE_RATIO <= sz <= size * SIZE_RATIO]
        samples_s = similar if len(similar) >= MIN_SAMPLES else samples_s
    if len(samples_s) < MIN_SAMPLES:
        return None
    expected = percentile(samples_s, PERCENTILE)
    pace = {"expected_seconds": int(math.ceil(expected)),
            "step_seconds": max(1, int(math.ceil(expected * NOTICE_FRACTION))),
            "samples": len(samples_s)}
    if job_id and int(hashlib.sha256(job_id.encode()).hexdigest(), 16) % PROBE_EVERY == 0:
        pace["probe_seconds"] = max(1, int(pace["expected_seconds"] * PROBE_FACTOR))
    return pace


def wait_for(poll_number: int, waited: int, poll_settings: dict[str, Any], pace: dict[str, Any] | None) -> int:
    """Seconds to wait before poll ``poll_number`` (0 = first) having waited ``waited`` so far:
    1 to ``polling.MAX_WAIT_SECONDS`` (a longer expectation is reached in several waits)."""
    static = next_wait(poll_number, poll_settings)
    if not pace:
        return static
    # bounded: a pace comes from the payload and the jobs table, whatever they hold
    big = 10 * MAX_WAIT_SECONDS * 366
    waited = bounded_seconds(waited, high=big)
    expected = bounded_seconds(pace.get("expected_seconds"), high=big, default=0)
    step = bounded_seconds(pace.get("step_seconds"), low=1, default=1)
    probe = bounded_seconds(pace.get("probe_seconds") or 0, high=big, default=0)
    if waited < probe:
        return bounded_seconds(probe - waited, low=1)  # a probe looks a little early once...
    if waited < expected:
        return bounded_seconds(expected - waited, low=1)  # ...then (like every import) at the expected end
    # past it: a fraction of the time waited so far (notice delay < NOTICE_FRACTION of the job)
    cap = bounded_seconds(poll_settings.get("max_wait_seconds", 300), low=1)
    return max(1, step if waited < expected + step else min(cap, int(waited * NOTICE_FRACTION)))


def simulate(duration: float, poll_settings: dict[str, Any], pace: dict[str, Any] | None = None,
             max_polls: int = 100_000) -> tuple[int, float]:
    """(polls, notice delay) for a vendor job lasting ``duration`` seconds after submit."""
    waited = 0
    for n in range(max_polls):
        waited += wait_for(n, waited, poll_settings, pace)
        if waited >= duration:
            return n + 1, waited - duration
    raise RuntimeError("the poll loop did not notice the end within max_polls")
