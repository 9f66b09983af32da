"""Pacing of vendor calls behind one small interface: an object with ``acquire(n)``.

``acquire(n)`` takes ``n`` tokens (for Cirrus Shield: ``n`` DataAction calls), sleeping until the
rate allows them, and returns the seconds slept. A connector gets a local ``TokenBucket``; a
limiter shared by every import to one ``(vendor, target)`` (the vendor guard) can stand in for it,
as long as it has the same method (``connector.pacer = shared``).
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Pacer(Protocol):
    def acquire(self, n: int = 1) -> float: ...


class TokenBucket:
    """``rate`` tokens per second with a burst of ``burst`` tokens, thread-safe. A rate of ``None``
    or 0 never waits (no limit). The next free moment is reserved under the lock and the sleep
    happens outside it, so callers are spaced in the order they asked."""

    def __init__(self, rate: float | None, burst: float = 1.0):
        self.rate = float(rate or 0)
        self.burst = max(1.0, float(burst))
        self._lock = threading.Lock()
        self._next = 0.0  # monotonic time when the bucket is empty again

    def acquire(self, n: int = 1) -> float:
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        with self._lock:
            self._next = max(self._next, now) + n / self.rate
            delay = self._next - self.burst / self.rate - now
        if delay > 0:
            time.sleep(delay)
            return delay
        return 0.0
