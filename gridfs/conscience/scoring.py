"""Scores from heartbeat figures. Pure functions, no clock and no I/O: the caller passes
``now`` so the server, the tests and any offline tool compute the same numbers.

A score is an integer 0-100, separately for writes (put) and reads (get):

- put: (25 % CPU idle + 25 % IO idle + 50 % free fraction of the volume) x slowness factor.
  Free space weighs most because it is what placement must even out over time; CPU and IO
  idle steer writes away from a momentarily busy server. IO idle is the host disk's, shared
  by every volume on it, so a volume slow on its own does not show there: the storage server
  reports ``io_ms_per_mib``, the milliseconds its chunk writes and reads have been taking per
  MiB, disk calls and waits only (gridfs/storage/iostats.py), and the put score is multiplied by
  ``1 / (1 + (io_ms_per_mib / SLOW_MS_PER_MIB) ** 2)``. At SLOW_MS_PER_MIB (50 ms per MiB, about
  20 MB/s) that halves the score; healthy volumes here measure 5-25 ms per MiB under a full
  ingest (page cache, fsync, a shared CPU) and keep 80-99 % of it, a 150 MB/s HDD about 90 %;
  one at 2 MB/s (500 ms per MiB) keeps 1 %, floored at 1 against 30-100 for its peers, so
  weighted-random placement seldom picks it while enough others are there. Squared so that the
  ordinary spread between healthy volumes matters little while a slow one drops out. A service
  that reports no figure (nothing timed yet, or not a storage server) is not penalised.
- get: 50 % CPU idle + 50 % IO idle; space does not matter for reads.
- put is 0 when the service is locked, its volume is past the fullness threshold, or it
  has been silent past the timeout; get is 0 only when silent (a full or locked volume
  still serves reads).
- a live service never scores 0 because it is busy: both scores are floored at 1, or a
  loaded 2-core box would stop taking writes altogether.
- a new service ramps from 20 % to 100 % of its score over ``ramp_seconds`` after it
  was first seen, so a fresh volume does not take every write of a busy grid at once.

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

# Stat names a heartbeat may carry, with the value assumed when one is absent.
# Absent idle figures count as idle: a service that cannot measure load is not penalised.
STAT_DEFAULTS: dict[str, float] = {
    "cpu_idle": 100.0,
    "io_idle": 100.0,
    "free_bytes": 0.0,
    "total_bytes": 0.0,
    "inflight": 0.0,
}
# Stats only some services send (a storage server once it has timed its volume): scored when present,
# never shown filled in for services that do not report them.
OPTIONAL_STATS: dict[str, float] = {
    "io_ms_per_mib": 0.0,
}

RAMP_START = 0.2  # a brand-new service gets this fraction of its score
PUT_WEIGHTS = (0.25, 0.25, 0.5)  # cpu idle, io idle, free fraction
GET_WEIGHTS = (0.5, 0.5)  # cpu idle, io idle
SLOW_MS_PER_MIB = 50.0  # a volume this slow per MiB keeps half its put score (see the module docstring)


@dataclass(frozen=True)
class ScoringRules:
    timeout: float = 5.0  # silent longer than this (seconds): put and get score 0
    ramp_seconds: float = 3.0  # a new service ramps from 20 % to 100 % over this
    full: float = 0.90  # used fraction from which a volume takes no new writes

    def __post_init__(self) -> None:
        if not (self.timeout > 0 and self.ramp_seconds >= 0 and 0 < self.full <= 1):
            raise ValueError(f"invalid scoring rules {self}: need timeout > 0, ramp >= 0, 0 < full <= 1")


def _pct(x: float) -> float:
    return max(0.0, min(100.0, x))


def used_fraction(stats: Mapping[str, float]) -> float | None:
    """Used fraction of the volume, or None when the service reports no capacity
    (``total_bytes`` absent or 0: not a storage service, space does not apply)."""
    total = float(stats.get("total_bytes", 0.0))
    if total <= 0:
        return None
    free = max(0.0, min(total, float(stats.get("free_bytes", 0.0))))
    return 1.0 - free / total


def is_silent(now: float, last_seen: float, rules: ScoringRules) -> bool:
    return now - last_seen > rules.timeout


def is_full(stats: Mapping[str, float], rules: ScoringRules) -> bool:
    used = used_fraction(stats)
    return used is not None and used >= rules.full


def ramp_factor(now: float, first_seen: float, rules: ScoringRules) -> float:
    """RAMP_START right after registration, 1.0 once ``ramp_seconds`` have passed."""
    if rules.ramp_seconds <= 0:
        return 1.0
    age = max(0.0, now - first_seen)
    return min(1.0, RAMP_START + (1.0 - RAMP_START) * age / rules.ramp_seconds)


def slowness_factor(stats: Mapping[str, float]) -> float:
    """What a volume's own cost per MiB leaves of its put score: 1 when fast or unmeasured, toward 0 when slow."""
    ms = max(0.0, float(stats.get("io_ms_per_mib", OPTIONAL_STATS["io_ms_per_mib"])))
    return 1.0 / (1.0 + (ms / SLOW_MS_PER_MIB) ** 2) if math.isfinite(ms) else 0.0


def raw_scores(stats: Mapping[str, float]) -> tuple[float, float]:
    """(put, get) from the figures alone, 0-100, before locks, silence and ramp."""
    cpu = _pct(float(stats.get("cpu_idle", STAT_DEFAULTS["cpu_idle"])))
    io = _pct(float(stats.get("io_idle", STAT_DEFAULTS["io_idle"])))
    used = used_fraction(stats)
    # Unknown capacity: the space term is neutral rather than best or worst.
    free_pct = 50.0 if used is None else 100.0 * (1.0 - used)
    wc, wi, wf = PUT_WEIGHTS
    gc, gi = GET_WEIGHTS
    return (wc * cpu + wi * io + wf * free_pct) * slowness_factor(stats), gc * cpu + gi * io


def _floor1(x: float) -> int:
    # round() may give 0 for a score of 0.4; a live service must stay selectable.
    return max(1, min(100, round(x))) if math.isfinite(x) else 1


def scores(
    stats: Mapping[str, float],
    *,
    now: float,
    first_seen: float,
    last_seen: float,
    locked: bool,
    rules: ScoringRules = ScoringRules(),  # frozen: sharing the default is safe
) -> tuple[int, int]:
    """(put score, get score), integers 0-100."""
    if is_silent(now, last_seen, rules):
        return 0, 0
    put, get = raw_scores(stats)
    ramp = ramp_factor(now, first_seen, rules)
    get_score = _floor1(get * ramp)
    if locked or is_full(stats, rules):
        return 0, get_score
    return _floor1(put * ramp), get_score
