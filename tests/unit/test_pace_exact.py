"""Exact values of the learned pace (pace.py), written by hand: the boundaries the mutation run
(`make mutation`) showed untested."""

from __future__ import annotations

from vendor_import.pace import learn, percentile, simulate, wait_for

STATIC = {"first_wait_seconds": 5, "factor": 2.0}


def done(seconds, size=None, state="SUCCEEDED"):
    return {"state": state, "vendor_seconds": seconds, "source": {"size": size}}


def test_percentile_at_both_ends_and_in_the_middle():
    assert percentile([4, 1, 3, 2], 1.0) == 4  # the largest, not the one before
    assert percentile([5, 1, 3], 0.0) == 1  # the smallest
    assert percentile([40, 10, 30, 20], 0.5) == 20  # ceil(0.5 * 4) = 2nd value
    assert percentile([40, 10, 30, 20], 0.25) == 10


def test_jobs_finished_with_rejects_count_and_the_pace_is_exact():
    history = [done(100, state="SUCCEEDED_WITH_REJECTS"), done(300, state="SUCCEEDED_WITH_REJECTS"),
               done(200, state="SUCCEEDED_WITH_REJECTS")]
    assert learn(history, None) == {"expected_seconds": 100, "step_seconds": 5, "samples": 3}


def test_a_failed_job_is_skipped_not_the_end_of_the_history():
    history = [done(999, state="FAILED"), done(7), done(9), done(8)]
    assert learn(history, None) == {"expected_seconds": 7, "step_seconds": 1, "samples": 3}


def test_similar_size_is_within_four_times_either_way_bounds_included():
    history = [done(10, 250), done(20, 4000), done(30, 1000), done(1000, 10**6), done(2000, 10**6), done(3000, 10**6)]
    assert learn(history, 1000) == {"expected_seconds": 10, "step_seconds": 1, "samples": 3}


def test_too_few_similar_jobs_fall_back_to_every_job():
    history = [done(10, 1000), done(20, 1000), done(300, 10**6), done(400, 10**6), done(500, 10**6)]
    assert learn(history, 1000) == {"expected_seconds": 20, "step_seconds": 1, "samples": 5}


def test_one_job_in_five_probes_by_its_id():
    history = [done(1), done(1), done(1)]
    # sha256("job-7") % 5 == 0, sha256("job-2") % 5 == 1
    assert learn(history, None, "job-7") == {"expected_seconds": 1, "step_seconds": 1, "samples": 3,
                                             "probe_seconds": 1}
    assert "probe_seconds" not in learn(history, None, "job-2")
    assert "probe_seconds" not in learn(history, None)


def test_waits_with_a_probe_then_the_expected_end_then_a_fraction():
    pace = {"expected_seconds": 100, "step_seconds": 5, "probe_seconds": 80}
    assert wait_for(0, 0, STATIC, pace) == 80
    assert wait_for(1, 30, STATIC, pace) == 50
    assert wait_for(1, 79, STATIC, pace) == 1
    assert wait_for(2, 99, STATIC, pace) == 1
    assert wait_for(2, 100, STATIC, pace) == 5  # at the expected end: one step
    assert wait_for(9, 2000, {**STATIC, "max_wait_seconds": 60}, pace) == 60  # 5 % of 2000 = 100, capped
    assert wait_for(9, 10_000, STATIC, pace) == 300  # 5 % = 500, capped at the 300 s default


def test_simulate_counts_polls_and_the_notice_delay():
    assert simulate(10, STATIC) == (2, 5)  # waits 5 then 10: noticed at 15 s


def test_past_the_expected_end_one_step_then_five_percent_of_the_wait():
    pace = {"expected_seconds": 100, "step_seconds": 10}
    assert wait_for(3, 101, STATIC, pace) == 10  # within one step of the expected end
    assert wait_for(3, 110, STATIC, pace) == 5  # one step past it: 5 % of 110 s
    assert wait_for(3, 25, STATIC, {"expected_seconds": 10, "step_seconds": 1}) == 1  # 5 % of 25 s, at least 1


# -- a pace with missing or odd fields (it comes from the payload and the jobs table) -------------------
POLL_10_MIN = {"first_wait_seconds": 5, "max_wait_seconds": 600, "factor": 2.0}


def test_without_an_expected_end_the_wait_is_five_percent_of_the_time_waited():
    # expected 0: 1,000 s waited is past it by more than a step: 5 % of 1,000 s
    assert wait_for(3, 1_000, POLL_10_MIN, {"step_seconds": 5}) == 50
    assert wait_for(0, 0, POLL_10_MIN, {"step_seconds": 5}) == 5  # at the (zero) expected end: one step


def test_a_missing_step_is_one_second_and_a_zero_step_too():
    assert wait_for(3, 100, POLL_10_MIN, {"expected_seconds": 100}) == 1
    assert wait_for(3, 100, POLL_10_MIN, {"expected_seconds": 100, "step_seconds": 0}) == 1


def test_a_probe_that_is_not_a_number_is_no_probe():
    # no probe: 10 s waited, the expected end at 100 s is 90 s away
    assert wait_for(1, 10, POLL_10_MIN, {"expected_seconds": 100, "step_seconds": 5, "probe_seconds": "soon"}) == 90


def test_a_probe_later_than_a_day_is_kept():
    # the probe at 100,000 s (more than one wait's 86,400 s bound) is 10,000 s away
    assert wait_for(5, 90_000, POLL_10_MIN, {"expected_seconds": 200_000, "step_seconds": 5,
                                             "probe_seconds": 100_000}) == 10_000
