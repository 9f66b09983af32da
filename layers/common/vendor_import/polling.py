"""The static backoff schedule of the poll loop (a vendor may override it per poll)."""

from __future__ import annotations

from typing import Any


def next_wait(poll_number: int, poll: dict[str, Any]) -> int:
    """Seconds to wait before poll ``poll_number`` (0 = the first poll after submit)."""
    first = int(poll.get("first_wait_seconds", 5))
    cap = int(poll.get("max_wait_seconds", 300))
    factor = float(poll.get("factor", 2.0))
    try:
        wait = first * (factor ** max(0, poll_number))
    except OverflowError:  # thousands of polls (long jobs, record vendors): far past the cap
        wait = cap
    return int(max(1, min(cap, round(wait))))
