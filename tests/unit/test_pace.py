"""Learned polling pace: pure functions, no AWS."""

from __future__ import annotations

import pytest
from vendor_import import pace

STATIC = {"first_wait_seconds": 5, "max_wait_seconds": 300, "factor": 2.0}


def history(*seconds, state="SUCCEEDED", size=None):
    return [{"state": state, "vendor_seconds": s, "source": {"size": size}} for s in seconds]


def test_no_history_means_the_static_backoff():
    assert pace.learn([], 100) is None
    assert pace.learn(history(100, 100), 100) is None  # fewer than MIN_SAMPLES
    assert pace.wait_for(0, 0, STATIC, None) == 5
    assert pace.wait_for(3, 35, STATIC, None) == 40


def test_failed_and_unmeasured_jobs_are_not_history():
    items = history(100, 100, 100, state="FAILED") + [{"state": "SUCCEEDED", "vendor_seconds": None}]
    assert pace.learn(items, None) is None


def test_low_percentile_of_upper_bounds_ignores_loose_bounds():
    learned = pace.learn(history(315, 300, 302, 301, 620, 615), None)
    assert 300 <= learned["expected_seconds"] <= 302


def test_similar_sizes_are_preferred_when_there_are_enough():
    items = history(10, 10, 10, size=1_000) + history(600, 600, 600, size=50_000_000)
    assert pace.learn(items, 40_000_000)["expected_seconds"] == 600
    assert pace.learn(items, 2_000)["expected_seconds"] == 10


def test_probe_imports_wait_less_than_expected():
    items = history(100, 100, 100, 100)
    probes = [j for j in (f"job-{i}" for i in range(50)) if pace.learn(items, None, j).get("probe_seconds")]
    assert 0 < len(probes) < 25  # about one in PROBE_EVERY
    learned = pace.learn(items, None, probes[0])
    assert learned["probe_seconds"] == int(100 * pace.PROBE_FACTOR) and learned["expected_seconds"] == 100
    # a probe costs one extra poll: early, then at the expected end
    assert pace.simulate(100, STATIC, learned) == (2, 0)
    assert pace.simulate(70, STATIC, learned) == (1, 10)


@pytest.mark.parametrize("duration", [30, 300, 3600, 21600])
def test_stable_history_polls_once_and_notices_within_ten_percent(duration):
    learned = pace.learn(history(*(duration * f for f in (1.0, 1.01, 1.02, 1.3))), None)
    polls, delay = pace.simulate(duration, STATIC, learned)
    static_polls, _ = pace.simulate(duration, STATIC)
    assert polls == 1 < static_polls
    assert delay <= 0.1 * duration


@pytest.mark.parametrize("duration", [300, 3600, 21600])
def test_a_job_slower_than_expected_is_still_noticed_within_ten_percent(duration):
    learned = pace.learn(history(duration, duration, duration), None)
    polls, delay = pace.simulate(duration * 1.5, STATIC, learned)
    assert delay <= 0.1 * duration * 1.5
    # past the expected end the waits grow with the time waited, up to poll.max_wait_seconds
    overrun = duration * 0.5
    assert polls <= 2 + overrun / min(STATIC["max_wait_seconds"], duration * pace.NOTICE_FRACTION) + 1


def test_damaged_history_and_paces_never_give_an_unbounded_wait():
    from vendor_import.polling import MAX_WAIT_SECONDS

    items = history(float("inf"), float("nan"), "x", 100, 100, 100)
    assert pace.learn(items, None)["expected_seconds"] == 100  # the three bad items are skipped
    huge = {"expected_seconds": 30 * 86_400, "step_seconds": 10**400, "probe_seconds": float("nan")}
    assert pace.wait_for(0, 0, STATIC, huge) == MAX_WAIT_SECONDS  # a 30-day expectation: in day-long waits
    assert pace.wait_for(40, 30 * 86_400 + 1, STATIC, huge) == MAX_WAIT_SECONDS
    # both clamp to the same bound: the end is "just expected", so the next wait is the 1 s step
    assert pace.wait_for(5, 10**30, STATIC, {"expected_seconds": float("inf"), "step_seconds": 1}) == 1
