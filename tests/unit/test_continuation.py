"""When the poll loop goes on in a new execution (logic/continuation.py): pure functions.
The event model itself is checked against moto's real histories in tests/e2e/test_long_jobs.py."""

from __future__ import annotations

from vendor_import.logic import continuation
from vendor_import.polling import next_wait

DAY = 86_400


def run_static_loop(job_seconds: int, poll: dict) -> tuple[int, list[int]]:
    """The vendor step's decisions for a job that ends after ``job_seconds`` (no retries):
    (polls, events per execution) as the executions of statemachines/import.asl.json hold them."""
    invocations, polls, waited = 1, 0, 0  # the submit step
    wait = next_wait(0, poll)
    execution = {"polls": 0, "invocations_before": 0, "waited_at_start": 0}
    sizes = []
    while True:
        polls += 1
        invocations += 1
        waited += wait
        execution["polls"] += 1
        if waited >= job_seconds:  # done: Finalize (5 events) and ExecutionSucceeded
            sizes.append(continuation.history_events(execution["polls"],
                                                     invocations - execution["invocations_before"]) + 6)
            return polls, sizes
        wait = next_wait(polls, poll)
        if continuation.should_continue(execution, invocations, waited=waited, wait=wait, age_seconds=0):
            # Continue task 5 + Succeed 2 + ExecutionSucceeded 1
            sizes.append(continuation.history_events(execution["polls"],
                                                     invocations - execution["invocations_before"]) + 8)
            invocations += 1  # the next execution's first step resumes the job
            execution = {"polls": 0, "invocations_before": invocations - 1, "waited_at_start": waited}


def test_the_30_day_job_polled_every_30_s_fits_in_executions_under_the_history_quota():
    polls, sizes = run_static_loop(30 * DAY, {"first_wait_seconds": 5, "max_wait_seconds": 30, "factor": 2.0})
    # 5 + 10 + 20 = 35 s in 3 polls, then 30 s waits: (2,592,000 - 35) / 30 = 86,398.8 -> 86,399 more
    assert polls == 86_402
    # continue when 8 + 9p + 9 > 24,500: p = 2,721 polls per execution -> ceil(86,402 / 2,721) = 32
    assert len(sizes) == 32
    assert sizes[:-1] == [8 + 9 * 2_721 + 8] * 31 == [24_505] * 31
    assert sizes[-1] == 8 + 9 * (86_402 - 31 * 2_721) + 6
    assert max(sizes) < continuation.HISTORY_LIMIT


def test_every_valid_poll_setting_keeps_each_execution_under_both_limits():
    for poll in ({"first_wait_seconds": 1, "max_wait_seconds": 1, "factor": 1.0},
                 {"first_wait_seconds": 1, "max_wait_seconds": DAY, "factor": 1.0000001}):
        polls, sizes = run_static_loop(3 * DAY, poll)
        assert max(sizes) < continuation.HISTORY_LIMIT


def test_an_execution_stops_before_its_7_day_timeout_whatever_the_history():
    execution = {"polls": 5, "invocations_before": 0, "waited_at_start": 0}
    assert not continuation.should_continue(execution, 6, waited=5 * DAY, wait=DAY, age_seconds=0)
    assert continuation.should_continue(execution, 6, waited=6 * DAY, wait=1, age_seconds=0)
    assert continuation.should_continue(execution, 6, waited=0, wait=DAY, age_seconds=5.5 * DAY)  # real time


def test_retried_attempts_count_three_events_each():
    # 100 polls, 101 steps and 20 retried attempts: 5 + 600 + 3 x 121
    assert continuation.history_events(100, 121) == 968
    execution = {"polls": 2_700, "invocations_before": 0, "waited_at_start": 0}
    # 2,700 polls: 5 + 16,200 + 3 x invocations, + 9 for the next iteration, against 24,500
    assert not continuation.should_continue(execution, 2_701, waited=0, wait=1, age_seconds=0)  # 24,317
    assert not continuation.should_continue(execution, 2_701 + 61, waited=0, wait=1, age_seconds=0)  # 24,500
    assert continuation.should_continue(execution, 2_701 + 62, waited=0, wait=1, age_seconds=0)  # 24,503


def test_continuation_names_are_unique_valid_and_at_most_80_characters():
    job = "hopex-" + "x" * 38 + "-" + "0123456789abcdef" * 2  # 76 characters, as execution_name makes
    names = {continuation.next_name(job, i) for i in range(1, 2_000)}
    assert len(names) == 1_999
    assert all(len(n) <= 80 and n.startswith(job[:60]) for n in names)
    kept = continuation.keep_names([f"n{i}" for i in range(500)])
    assert kept[:2] == ["n0", "n1"] and kept[-1] == "n499" and len(kept) == 100
