"""The static backoff schedule of the poll loop (a vendor may override it per poll), and the
bounds every wait of the loop obeys.

Arithmetic is bounded: the backoff is compared with its cap in log space, so no poll number and
no valid setting makes ``factor ** n`` overflow, and no infinite or NaN value is ever turned into
an int (``bounded_seconds``).
"""

from __future__ import annotations

import math
from typing import Any

# The longest single wait of the loop, whatever a setting, a learned pace or a vendor's hint
# asks: a day. Far below the state machine's execution timeout (7 days, statemachines/
# import.asl.json), and continuation starts a fresh execution before that timeout anyway.
MAX_WAIT_SECONDS = 86_400


def bounded_seconds(value: Any, *, low: int = 0, high: int = MAX_WAIT_SECONDS, default: int | None = None) -> int:
    """``value`` as whole seconds within [low, high]: +inf gives ``high``, -inf ``low``, NaN and
    non-numbers ``default`` (``high`` when not given). Never raises."""
    if isinstance(value, int) and not isinstance(value, bool):  # exact, however large
        return max(low, min(high, value))
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        number = math.nan
    if math.isnan(number):
        return high if default is None else max(low, min(high, default))
    if number >= high:
        return high
    if number <= low:
        return low
    return int(round(number))


def next_wait(poll_number: int, poll: dict[str, Any]) -> int:
    """Seconds to wait before poll ``poll_number`` (0 = the first poll after submit):
    ``first * factor ** n`` capped at ``max_wait_seconds``, at least 1 s."""
    cap = bounded_seconds(poll.get("max_wait_seconds", 300), low=1)
    first = bounded_seconds(poll.get("first_wait_seconds", 5), low=1, high=cap)
    try:
        factor = float(poll.get("factor", 2.0))
    except (TypeError, ValueError, OverflowError):
        factor = 2.0
    n = max(0, int(poll_number))
    if n == 0 or first >= cap:
        return first
    if not math.isfinite(factor):
        return cap  # an infinite factor reaches the cap at the second poll
    if factor <= 1.0:
        return first  # factor 1: a steady pace
    # log space: n * log(factor) >= log(cap / first) means the cap is reached (no overflow)
    if n * math.log(factor) >= math.log(cap / first):
        return cap
    return bounded_seconds(first * factor ** n, low=1, high=cap)
