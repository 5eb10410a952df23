"""Scores from heartbeat figures. Pure functions.

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ScoringRules:
    timeout: float = 5.0  # silent longer than this: score 0
    ramp_seconds: float = 3.0  # a new service ramps from 20 % to 100 % over this
    full: float = 0.90  # used fraction from which a volume takes no new writes


def _clamp(x: float) -> float:
    return max(0.0, min(100.0, x))


def scores(
    stats: dict, *, now: float, first_seen: float, last_seen: float, locked: bool, rules: ScoringRules
) -> tuple[int, int]:
    """(put score, get score)."""
    if now - last_seen > rules.timeout:
        return 0, 0
    cpu = _clamp(float(stats.get("cpu_idle", 100)))
    io = _clamp(float(stats.get("io_idle", 100)))
    total = float(stats.get("total_bytes", 0)) or 1.0
    free_frac = max(0.0, min(1.0, float(stats.get("free_bytes", 0)) / total))
    ramp = min(1.0, 0.2 + 0.8 * max(0.0, now - first_seen) / rules.ramp_seconds) if rules.ramp_seconds else 1.0
    get = max(1, round((0.5 * cpu + 0.5 * io) * ramp))
    if locked or (1.0 - free_frac) >= rules.full:
        return 0, get
    # Free space weighs most: it is what placement must even out over time.
    put = (0.25 * cpu + 0.25 * io + 0.5 * free_frac * 100) * ramp
    # A momentarily busy CPU must not stop all writes on a small box.
    return max(1, round(put)), get
