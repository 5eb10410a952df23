"""Placement: weighted random choice by put score under distance rules.

A location is ``site.rack.host.volume``. Never two chunks of one stripe on the same
volume; among the candidates, prefer those farthest from what is already chosen
(another site, then rack, then host), then draw by score.

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import random
from collections.abc import Collection

from gridfs.common.errors import NotEnoughServices


def distance(a: str, b: str) -> int:
    """4: other site, 3: other rack, 2: other host, 1: other volume, 0: same volume."""
    pa, pb = a.split("."), b.split(".")
    for depth, (x, y) in enumerate(zip(pa, pb, strict=False)):
        if x != y:
            return 4 - depth
    return 0


def select(
    services: list[dict], count: int, *, avoid: Collection[str] = (), rng: random.Random | None = None
) -> list[dict]:
    rng = rng or random
    usable = [s for s in services if s.get("score_put", 0) > 0 and s["addr"] not in avoid]
    locations = {s.get("location") or s["addr"] for s in usable}
    if len(locations) < count:
        raise NotEnoughServices(
            f"placement needs {count} distinct volumes, only {len(locations)} can take writes now"
        )
    chosen: list[dict] = []
    while len(chosen) < count:
        taken = {s.get("location") or s["addr"] for s in chosen}
        pool = [s for s in usable if (s.get("location") or s["addr"]) not in taken]
        if chosen:
            far = {id(s): min(distance(s.get("location", s["addr"]), c.get("location", c["addr"])) for c in chosen)
                   for s in pool}
            best = max(far.values())
            pool = [s for s in pool if far[id(s)] == best]
        chosen.append(rng.choices(pool, weights=[s["score_put"] for s in pool])[0])
    return chosen
