"""logic/continuation.py at its exact edges (written from the survivors of `make mutation`; every
expected figure is worked out by hand in the comment beside it, from the AWS quotas the module cites)."""

from __future__ import annotations

import hashlib

from vendor_import.logic import continuation

DAY = 86_400


def test_the_budgets_follow_the_quotas():
    assert continuation.HISTORY_BUDGET == 24_500  # 25,000 events - 500 reserve
    assert continuation.EXECUTION_SECONDS_BUDGET == 6 * DAY  # 7-day timeout - 1 day


def test_history_events_counts_five_plus_six_a_poll_plus_three_an_attempt():
    assert continuation.history_events(0, 1) == 8
    assert continuation.history_events(10, 11) == 5 + 60 + 33


def test_the_history_bound_is_exact():
    # 2,700 polls, 2,761 attempts: 5 + 16,200 + 8,283 = 24,488; + 9 for the next poll = 24,497 <= 24,500
    execution = {"polls": 2_700, "invocations_before": 0, "waited_at_start": 0}
    assert not continuation.should_continue(execution, 2_761, waited=0, wait=1, age_seconds=0)
    # one attempt more: 24,491 + 9 = 24,500, still not over
    assert not continuation.should_continue(execution, 2_762, waited=0, wait=1, age_seconds=0)
    # two more: 24,494 + 9 = 24,503 > 24,500
    assert continuation.should_continue(execution, 2_763, waited=0, wait=1, age_seconds=0)


def test_attempts_before_this_execution_are_not_counted_in_its_history():
    # 100 attempts before it; 2,862 so far: 2,762 in this execution -> 24,500, not over
    execution = {"polls": 2_700, "invocations_before": 100, "waited_at_start": 0}
    assert not continuation.should_continue(execution, 2_862, waited=0, wait=1, age_seconds=0)
    assert continuation.should_continue(execution, 2_863, waited=0, wait=1, age_seconds=0)


def test_at_least_one_attempt_per_step_is_counted():
    # attempts reported lower than the steps that ran (polls + 1): polls + 1 is used
    # 2,728 polls: 5 + 16,368 + 3 x 2,729 = 24,560 > 24,500 even though only 5 attempts are reported
    execution = {"polls": 2_728, "invocations_before": 0, "waited_at_start": 0}
    assert continuation.should_continue(execution, 5, waited=0, wait=1, age_seconds=0)
    # 2,718 polls: 5 + 16,308 + 8,157 = 24,470; + 9 = 24,479: not over
    assert not continuation.should_continue({**execution, "polls": 2_718}, 5, waited=0, wait=1, age_seconds=0)


def test_unknown_attempts_assume_a_retry_for_every_step():
    # 1,500 polls, 2 x 1,501 attempts assumed: 5 + 9,000 + 9,006 = 18,011; + 9: not over
    assert not continuation.should_continue({"polls": 1_500}, None, waited=0, wait=1, age_seconds=0)
    # 1,800 polls: 5 + 10,800 + 10,806 = 21,611 ; 2,100 polls: 5 + 12,600 + 12,606 = 25,211 > 24,500
    assert continuation.should_continue({"polls": 2_100}, None, waited=0, wait=1, age_seconds=0)
    # with the attempts known (2,101), the same 2,100 polls stay: 5 + 12,600 + 6,303 + 9 = 18,917
    assert not continuation.should_continue({"polls": 2_100}, 2_101, waited=0, wait=1, age_seconds=0)


def test_the_age_bound_is_exact_and_counts_from_this_executions_start():
    execution = {"polls": 1, "invocations_before": 0, "waited_at_start": DAY}
    # waited 7 days in all, 6 of them in this execution: 6 days + a 0 s wait is not over 6 days
    assert not continuation.should_continue(execution, 2, waited=7 * DAY, wait=0, age_seconds=0)
    assert continuation.should_continue(execution, 2, waited=7 * DAY, wait=1, age_seconds=0)
    # the real age counts when it is the larger
    assert not continuation.should_continue(execution, 2, waited=0, wait=60, age_seconds=6 * DAY - 60)
    assert continuation.should_continue(execution, 2, waited=0, wait=61, age_seconds=6 * DAY - 60)


def test_seconds_since_the_execution_start():
    start = 1_714_557_600.0  # 2024-05-01T10:00:00Z
    assert continuation.seconds_since("2024-05-01T10:00:00Z", start + 90) == 90.0
    assert continuation.seconds_since("2024-05-01T10:00:00.500+00:00", start + 90) == 89.5
    assert continuation.seconds_since("2024-05-01T10:00:00Z", start - 5) == 0.0  # clock skew: not negative
    assert continuation.seconds_since("yesterday", start) == 0.0
    assert continuation.seconds_since(None, start) == 0.0


def test_next_name_is_the_job_digest_and_index():
    digest = hashlib.sha256(b"job-1\n3").hexdigest()
    assert continuation.next_name("job-1", 3) == f"job-1-{digest[:12]}-3"


def test_next_name_keeps_60_characters_of_the_job_and_80_in_all():
    job = "j" * 70
    digest = hashlib.sha256(f"{job}\n7".encode()).hexdigest()[:12]
    assert continuation.next_name(job, 7) == "j" * 60 + f"-{digest}-7"  # 60 + 1 + 12 + 2 = 75
    long_index = 10 ** 7  # 60 + 1 + 12 + 1 + 8 = 82 characters: cut to 80
    digest = hashlib.sha256(f"{job}\n{long_index}".encode()).hexdigest()[:12]
    assert continuation.next_name(job, long_index) == ("j" * 60 + f"-{digest}-{long_index}")[:80]
    assert len(continuation.next_name(job, long_index)) == 80


def test_keep_names_keeps_up_to_100_then_the_first_and_last_50():
    hundred = [f"n{i}" for i in range(100)]
    assert continuation.keep_names(hundred) == hundred
    names = [f"n{i}" for i in range(101)]
    assert continuation.keep_names(names) == names[:50] + names[51:]


def test_keep_names_keeps_a_short_list_as_it_is():
    assert continuation.keep_names(["a", "b", "c"]) == ["a", "b", "c"]


def test_unknown_attempts_count_two_per_step_exactly():
    # 2,040 polls, 2 x 2,041 attempts: 5 + 12,240 + 12,246 + 9 = 24,500: not over
    assert not continuation.should_continue({"polls": 2_040}, None, waited=0, wait=1, age_seconds=0)
    # 2,041 polls: 5 + 12,246 + 12,252 + 9 = 24,512: over
    assert continuation.should_continue({"polls": 2_041}, None, waited=0, wait=1, age_seconds=0)


def test_at_least_polls_plus_one_attempts_exactly():
    # 2,721 polls, 5 attempts reported: 2,722 counted: 5 + 16,326 + 8,166 + 9 = 24,506: over
    assert continuation.should_continue({"polls": 2_721}, 5, waited=0, wait=1, age_seconds=0)
