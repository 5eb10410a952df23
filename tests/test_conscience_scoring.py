"""Scoring rules as pure functions (the server only adds a clock)."""

from __future__ import annotations

import pytest

from gridfs.conscience.scoring import ScoringRules, ramp_factor, scores

RULES = ScoringRules(timeout=5.0, ramp_seconds=3.0, full=0.9)
IDLE = {"cpu_idle": 100.0, "io_idle": 100.0, "free_bytes": 1000.0, "total_bytes": 1000.0, "inflight": 0.0}


def score(stats: dict, *, age: float = 100.0, silent_for: float = 0.0, locked: bool = False,
          rules: ScoringRules = RULES) -> tuple[int, int]:
    now = 1000.0
    return scores(stats, now=now, first_seen=now - age, last_seen=now - silent_for, locked=locked, rules=rules)


def test_idle_empty_volume_scores_100() -> None:
    assert score(IDLE) == (100, 100)


def test_scores_in_range_for_any_figures() -> None:
    for cpu in (0, 37.5, 100, 250):
        for io in (0, 50, 100):
            for free in (0, 91, 500, 1000, 5000):
                put, get = score({**IDLE, "cpu_idle": cpu, "io_idle": io, "free_bytes": free})
                assert 0 <= put <= 100 and 0 <= get <= 100
                assert isinstance(put, int) and isinstance(get, int)


def test_busy_but_alive_never_zero() -> None:
    # A 2-core box under load reports 0 % idle: it must still take writes and reads.
    busy = {**IDLE, "cpu_idle": 0.0, "io_idle": 0.0, "free_bytes": 150.0}
    put, get = score(busy, age=0.0)
    assert put >= 1 and get >= 1


def test_full_volume_no_writes_but_reads() -> None:
    put, get = score({**IDLE, "free_bytes": 50.0})
    assert put == 0 and get == 100
    assert score({**IDLE, "free_bytes": 100.0})[0] == 0  # exactly at the threshold counts as full
    assert score({**IDLE, "free_bytes": 101.0})[0] > 0
    # The threshold is configurable.
    assert score({**IDLE, "free_bytes": 50.0}, rules=ScoringRules(full=0.99))[0] > 0


def test_locked_no_writes_but_reads() -> None:
    assert score(IDLE, locked=True) == (0, 100)


def test_silent_scores_zero_for_both() -> None:
    assert score(IDLE, silent_for=5.01) == (0, 0)
    assert score({**IDLE, "free_bytes": 0.0}, silent_for=6, locked=True) == (0, 0)
    assert score(IDLE, silent_for=4.99) == (100, 100)


def test_ramp_from_20_to_100_percent() -> None:
    assert ramp_factor(0.0, 0.0, RULES) == pytest.approx(0.2)
    assert ramp_factor(1.5, 0.0, RULES) == pytest.approx(0.6)
    assert ramp_factor(3.0, 0.0, RULES) == pytest.approx(1.0)
    assert ramp_factor(30.0, 0.0, RULES) == 1.0
    assert score(IDLE, age=0.0) == (20, 20)
    assert score(IDLE, age=1.5) == (60, 60)
    assert score(IDLE, age=3.0) == (100, 100)
    assert ramp_factor(0.0, 0.0, ScoringRules(ramp_seconds=0)) == 1.0


def test_free_space_weighs_most_for_writes() -> None:
    roomy = score({**IDLE, "cpu_idle": 50.0, "free_bytes": 900.0})[0]
    tight = score({**IDLE, "free_bytes": 200.0})[0]
    assert roomy > tight


def test_unknown_capacity_is_not_full() -> None:
    # A service that reports no disk (total 0 or absent) is not a full volume.
    assert score({"cpu_idle": 100.0, "io_idle": 100.0})[0] > 0
    assert score({**IDLE, "total_bytes": 0.0, "free_bytes": 0.0})[0] > 0


def test_invalid_rules_refused() -> None:
    for bad in ({"timeout": 0}, {"full": 0}, {"full": 1.5}, {"ramp_seconds": -1}):
        with pytest.raises(ValueError):
            ScoringRules(**bad)


def test_slow_volume_put_score_drops_not_its_reads() -> None:
    # io_ms_per_mib: what the volume's own chunk writes cost per MiB (the host disk's io_idle is shared by
    # every volume on it, so a volume slow on its own shows only here).
    healthy = score({**IDLE, "io_ms_per_mib": 10.0})
    loaded = score({**IDLE, "io_ms_per_mib": 25.0})
    slow = score({**IDLE, "io_ms_per_mib": 500.0})  # 2 MB/s
    assert healthy[0] >= 95 and loaded[0] >= 75
    assert slow[0] == 1  # floored: alive, but a hundredth of its peers' weight
    assert slow[1] == healthy[1] == 100  # reads still go to it
    assert score({**IDLE, "io_ms_per_mib": 50.0})[0] == 50  # SLOW_MS_PER_MIB halves the score
    # Absent (nothing timed yet, or not a storage server): no penalty.
    assert score(IDLE)[0] == 100
