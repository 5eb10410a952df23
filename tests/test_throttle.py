"""The token bucket that caps background work (rebuild, drain, scrub): on a fake clock whose sleeps
advance it, so the arithmetic is checked exactly and fast; plus one real-clock run with threads."""

from __future__ import annotations

import threading
import time

import pytest

from gridfs.common.throttle import MB, RateLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def limiter(rate: float) -> tuple[RateLimiter, FakeClock]:
    clock = FakeClock()
    return RateLimiter(rate, clock=clock, sleep=clock.sleep), clock


def test_long_run_holds_the_rate() -> None:
    lim, clock = limiter(1000)
    start = clock.now
    for _ in range(100):
        lim.take(250)
    # 25,000 bytes at 1,000 B/s: 25 s, less the one second's worth the bucket starts with.
    assert clock.now - start == pytest.approx(24.0)


def test_a_pause_earns_at_most_one_second() -> None:
    lim, clock = limiter(1000)
    lim.take(1000)  # the starting bucket
    clock.now += 3600  # an hour idle
    lim.take(1000)
    assert clock.slept == []  # one second's worth is there
    lim.take(1000)
    assert clock.slept == [pytest.approx(1.0)]  # but not two


def test_a_large_request_runs_into_debt_the_next_ones_pay() -> None:
    lim, clock = limiter(1000)
    lim.take(5000)
    assert clock.slept == [pytest.approx(4.0)]
    lim.take(1000)
    assert clock.slept[-1] == pytest.approx(1.0)


def test_zero_means_no_limit() -> None:
    lim, clock = limiter(0)
    for _ in range(1000):
        lim.take(10 * MB)
    assert clock.slept == []
    assert RateLimiter.mb_per_s(0).rate == 0
    assert RateLimiter.mb_per_s(2.5).rate == 2.5 * MB
    assert RateLimiter(-5).rate == 0  # a negative rate is no cap, not a crash


def test_set_rate_counts_time_gone_by_at_the_old_rate() -> None:
    lim, clock = limiter(100)
    lim.take(100)  # bucket empty
    clock.now += 0.5  # earns 50 bytes at 100 B/s
    lim.set_rate(1000)
    lim.take(50)
    assert clock.slept == []
    lim.take(100)  # the bucket is empty now: 100 bytes at the new rate
    assert clock.slept == [pytest.approx(0.1)]


def test_set_rate_down_drops_what_the_smaller_bucket_cannot_hold() -> None:
    lim, clock = limiter(1000)
    lim.set_rate(10)
    lim.take(20)  # 10 in the bucket, 10 of debt
    assert clock.slept == [pytest.approx(1.0)]


def test_lifting_then_setting_a_cap_starts_afresh() -> None:
    lim, clock = limiter(1000)
    lim.take(10_000)  # 9 s of debt
    lim.set_rate(0)
    lim.take(10 * MB)  # no cap: no wait
    lim.set_rate(1000)
    slept = len(clock.slept)
    lim.take(1000)  # a full bucket, the old debt forgotten
    assert len(clock.slept) == slept


def test_stop_ends_a_wait_early() -> None:
    lim = RateLimiter(1000)
    lim.take(1000)
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    t0 = time.monotonic()
    lim.take(100_000, stop)  # would wait 100 s
    assert time.monotonic() - t0 < 5


def test_threads_share_one_bucket() -> None:
    """Four threads taking from one limiter get the rate between them, not each."""
    lim = RateLimiter(200_000)
    lim.take(200_000)  # empty the starting bucket
    t0 = time.monotonic()

    def work() -> None:
        for _ in range(10):
            lim.take(5_000)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    assert elapsed >= 0.95  # 200,000 bytes at 200,000 B/s, however many threads ask
    assert elapsed < 5
