"""The static backoff of the poll loop."""

from __future__ import annotations

from vendor_import.polling import MAX_WAIT_SECONDS, bounded_seconds, next_wait

DEFAULTS = {"first_wait_seconds": 5, "max_wait_seconds": 300, "factor": 2.0}


def test_first_wait_is_the_first_wait_setting():
    assert next_wait(0, DEFAULTS) == 5
    assert next_wait(0, {**DEFAULTS, "first_wait_seconds": 42}) == 42


def test_missing_settings_use_the_documented_defaults():
    assert [next_wait(n, {}) for n in range(4)] == [5, 10, 20, 40]


def test_wait_grows_by_the_factor():
    assert [next_wait(n, {**DEFAULTS, "factor": 3.0}) for n in range(4)] == [5, 15, 45, 135]


def test_wait_is_capped_at_max_wait():
    waits = [next_wait(n, DEFAULTS) for n in range(12)]
    assert waits == sorted(waits)
    assert max(waits) == 300 and waits[-1] == 300


def test_factor_one_polls_at_a_steady_pace():
    assert {next_wait(n, {**DEFAULTS, "factor": 1.0}) for n in range(10)} == {5}


def test_wait_is_at_least_one_second():
    assert next_wait(0, {"first_wait_seconds": 0, "max_wait_seconds": 0}) == 1


def test_negative_poll_numbers_count_as_the_first():
    assert next_wait(-3, DEFAULTS) == 5


def test_very_many_polls_stay_at_the_cap_instead_of_overflowing():
    # a week-long job or a record vendor sending thousands of slices reaches poll numbers where
    # factor ** n no longer fits a float
    assert next_wait(1100, DEFAULTS) == 300
    assert next_wait(100_000, {**DEFAULTS, "factor": 10.0}) == 300


def test_the_long_hopex_job_of_issue_13_stays_at_the_cap():
    # 72,000 s polled with max_wait_seconds 60: poll 1,022 used to raise OverflowError
    # (5 * 2.0 ** 1021 is inf, round(inf) cannot become an int)
    settings = {**DEFAULTS, "max_wait_seconds": 60}
    assert next_wait(1021, settings) == 60
    assert next_wait(1022, settings) == 60
    waited, polls = 0, 0
    while waited < 72_000:
        waited += next_wait(polls, settings)
        polls += 1
    # 5 + 10 + 20 + 40 = 75 s in 4 polls, then 60 s waits: (72,000 - 75) / 60 = 1,198.75 -> 1,199 more
    assert polls == 1_203
    assert waited == 75 + 1_199 * 60 == 72_015


def test_every_factor_and_poll_number_gives_a_whole_number_of_seconds_within_the_cap():
    for factor in (1.0, 1.0000001, 1.5, 2.0, 10.0, 1e300, float("inf"), float("nan")):
        for n in (0, 1, 2, 1_021, 1_100, 10**6, 10**18):
            wait = next_wait(n, {**DEFAULTS, "factor": factor})
            assert isinstance(wait, int) and 1 <= wait <= 300, (factor, n, wait)


def test_unbounded_inputs_are_bounded():
    assert bounded_seconds(float("inf")) == MAX_WAIT_SECONDS
    assert bounded_seconds(float("-inf")) == 0
    assert bounded_seconds(float("nan"), default=7) == 7
    assert bounded_seconds("garbage") == MAX_WAIT_SECONDS
    assert bounded_seconds(10**400) == MAX_WAIT_SECONDS
    assert next_wait(3, {"first_wait_seconds": 10**400, "max_wait_seconds": 10**400, "factor": 2.0}) == MAX_WAIT_SECONDS


def test_the_cap_is_the_max_wait_setting_and_300_s_without_it():
    assert [next_wait(n, {**DEFAULTS, "max_wait_seconds": 60}) for n in range(6)] == [5, 10, 20, 40, 60, 60]
    assert [next_wait(n, {"first_wait_seconds": 5}) for n in (6, 7, 30)] == [300, 300, 300]
