"""A byte-rate limiter (token bucket) for background work: rebuild, drain and scrub.

Background jobs share disks and cores with ingest, so they take bytes from a bucket that
refills at ``rate`` bytes per second (holding at most one second's worth, so a pause does
not turn into a burst). A rate of 0 means no limit.

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

MB = 1_000_000


class RateLimiter:
    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], object] = time.sleep) -> None:
        self._rate = max(0.0, float(rate))
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._tokens = self._rate
        self._at = clock()

    @classmethod
    def mb_per_s(cls, rate_mb: float) -> RateLimiter:
        return cls(rate_mb * MB)

    @property
    def rate(self) -> float:
        return self._rate

    def set_rate(self, rate: float) -> None:
        with self._lock:
            # Time gone by so far earned tokens at the old rate, not the new one: without this, a
            # slow job sped up after a pause got a whole second's worth of the new rate at once.
            was = self._rate
            self._refill()
            self._rate = max(0.0, float(rate))
            # Coming from no cap it starts as a new limiter does: a full bucket and no debt left from
            # before the cap was lifted.
            self._tokens = self._rate if was <= 0 else min(self._tokens, self._rate)

    def _refill(self) -> None:
        now = self._clock()
        if self._rate > 0:
            self._tokens = min(self._rate, self._tokens + (now - self._at) * self._rate)
        self._at = now

    def take(self, nbytes: int, stop: threading.Event | None = None) -> None:
        """Wait until ``nbytes`` may go (a request larger than the bucket runs into debt, paid by the
        next ones). Returns early when ``stop`` is set."""
        if self._rate <= 0 or nbytes <= 0:
            return
        with self._lock:
            self._refill()
            self._tokens -= nbytes
            wait = -self._tokens / self._rate if self._tokens < 0 else 0.0
        if wait > 0:
            if stop is not None:
                stop.wait(wait)
            else:
                self._sleep(wait)
