"""polling.next_wait at its edges (written from the survivors of `make mutation`; expected waits
worked out by hand from first * factor ** n, capped at max_wait_seconds, at least 1 s)."""

from __future__ import annotations

from vendor_import.polling import next_wait


def test_a_zero_cap_is_one_second():
    assert next_wait(0, {"max_wait_seconds": 0}) == 1
    assert next_wait(3, {"max_wait_seconds": 0}) == 1


def test_the_first_wait_is_capped_too():
    assert next_wait(0, {"first_wait_seconds": 5, "max_wait_seconds": 3}) == 3


def test_without_a_factor_or_with_a_bad_one_the_wait_doubles():
    assert next_wait(1, {"first_wait_seconds": 5}) == 10
    assert next_wait(2, {"first_wait_seconds": 5, "factor": "fast"}) == 20


def test_a_small_factor_rounds_to_whole_seconds():
    assert next_wait(1, {"first_wait_seconds": 1, "factor": 1.2}) == 1  # 1.2 s
    assert next_wait(4, {"first_wait_seconds": 1, "factor": 1.2}) == 2  # 2.07 s
