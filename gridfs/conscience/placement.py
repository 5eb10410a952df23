"""Placement: weighted random choice by put score under distance rules.

A location is ``site.rack.host.volume``. The chunks of one stripe never land twice on
one volume (same location string, or same service address), and are spread as far
apart as the grid allows: greedily, each pick is restricted to the candidates farthest
(by :func:`distance`) from everything already picked (ties broken towards the least
crowded host, rack, site), then drawn at random weighted by ``score_put``. Weighting
by score, rather than taking the best, spreads the load and keeps every client from
piling onto the same momentarily best server. A candidate far below the best (a disk that
has become slow) is passed over entirely while enough others remain.

Runs in the client on a cached service list: pure, no I/O, O(count x services).

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence

from gridfs.common.errors import NotEnoughServices

LOCATION_DEPTH = 4  # site, rack, host, volume
LAGGARD_FRACTION = 0.1  # a candidate under this fraction of the best score is passed over if others suffice

# Shared default generator; callers that need reproducible draws pass their own.
_RNG = random.Random()


def _parts(location: str) -> tuple[str, ...]:
    return tuple(location.split("."))


def _distance(pa: Sequence[str], pb: Sequence[str]) -> int:
    # Any difference past the volume level (a malformed, longer location) still means
    # another volume: only identical locations are at distance 0.
    for depth in range(max(len(pa), len(pb), LOCATION_DEPTH)):
        x = pa[depth] if depth < len(pa) else ""
        y = pb[depth] if depth < len(pb) else ""
        if x != y:
            return max(1, LOCATION_DEPTH - depth)
    return 0


def distance(loc_a: str, loc_b: str) -> int:
    """How far apart two locations are: 4 other site, 3 other rack, 2 other host,
    1 other volume, 0 the same volume."""
    return _distance(_parts(loc_a), _parts(loc_b))


def _volume_key(svc: dict) -> str:
    # A service without a location is its own volume: only its address identifies it.
    return svc.get("location") or f"?.?.?.{svc['addr']}"


def _avoided(svc: dict, avoid: Collection[str]) -> bool:
    return svc["addr"] in avoid or svc.get("id", svc["addr"]) in avoid


def _without_laggards(usable: list[dict], count: int) -> list[dict]:
    """The candidates without those scoring under LAGGARD_FRACTION of the best, when enough volumes remain.

    Weighting alone still gives a volume at score 1 among peers at 30 about one stripe in 40, and each
    such chunk holds its whole object at the slow disk's pace (seconds for 8 MiB at 2 MB/s): a write
    waits for its slowest chunk. A new volume ramping up (20 % of its score) stays above the line."""
    best = max((float(s["score_put"]) for s in usable), default=0.0)
    strong = [s for s in usable if float(s["score_put"]) >= best * LAGGARD_FRACTION]
    return strong if len({_volume_key(s) for s in strong}) >= count else usable


def _why_not(services: list[dict], usable: list[dict], avoid: set[str]) -> str:
    """\"9 known: 1 silent, 7 full\": why the others take no writes, as the conscience lists them."""
    reasons: dict[str, int] = {}
    taken = {id(s) for s in usable}
    for svc in services:
        if id(svc) in taken:
            continue
        why = ("avoided" if _avoided(svc, avoid) else "silent" if svc.get("up") is False
               else "locked" if svc.get("locked") else "full" if svc.get("full")
               else "scored 0" if not (svc.get("score_put") or 0) > 0 else "on a volume already counted")
        reasons[why] = reasons.get(why, 0) + 1
    return ", ".join([f"{len(services)} known", *(f"{n} {why}" for why, n in reasons.items())])


def select(
    services: list[dict],
    count: int,
    *,
    avoid: Collection[str] = (),
    rng: random.Random | None = None,
) -> list[dict]:
    """Pick ``count`` services on distinct volumes, spread over sites, racks, hosts.

    ``services`` are conscience entries (``id``, ``addr``, ``location``, ``score_put``); those
    with a put score of 0, or whose id or address is in ``avoid``, are never picked. Returns the picked
    entries themselves, in pick order. Raises NotEnoughServices when fewer than ``count``
    distinct volumes are usable.
    """
    if count < 0:
        raise ValueError(f"cannot place {count} chunks")
    rng = rng or _RNG
    avoid = set(avoid)
    # One candidate per address (the first seen), so a duplicated entry cannot be picked twice.
    seen_addrs: set[str] = set()
    usable: list[dict] = []
    for svc in services:
        addr = svc["addr"]
        if _avoided(svc, avoid) or addr in seen_addrs or not (svc.get("score_put") or 0) > 0:
            continue
        seen_addrs.add(addr)
        usable.append(svc)
    volumes = {_volume_key(s) for s in usable}
    if len(volumes) < count:
        raise NotEnoughServices(
            f"placement needs {count} services on distinct volumes but only {len(volumes)} can take writes "
            f"now ({_why_not(services, usable, avoid)})"
        )

    usable = _without_laggards(usable, count)
    keys = [_volume_key(s) for s in usable]
    parts = [_parts(k) for k in keys]
    # crowding[i][d - 1]: how many picks so far are at distance d (1 same host, 2 same rack,
    # 3 same site) from candidate i. The lexicographically smallest vector is the farthest
    # candidate (largest minimum distance) and, among equally far ones, the one with the
    # fewest picks at that closest level: 6 picks on 3 hosts x 3 volumes give 2 per host,
    # never 3/2/1, which plain max-min distance would allow.
    crowding = [[0] * (LOCATION_DEPTH - 1) for _ in usable]
    alive = [True] * len(usable)
    chosen: list[dict] = []
    while len(chosen) < count:
        candidates = [i for i in range(len(usable)) if alive[i]]
        if not candidates:  # cannot happen after the count check; kept as a guard
            raise NotEnoughServices(f"placement needs {count} distinct volumes, found only {len(chosen)}")
        best = min(crowding[i] for i in candidates)
        pool = [i for i in candidates if crowding[i] == best]
        (pick,) = rng.choices(pool, weights=[float(usable[i]["score_put"]) for i in pool])
        chosen.append(usable[pick])
        for i in candidates:
            if keys[i] == keys[pick]:
                alive[i] = False  # same volume as a pick: never a second chunk there
                continue
            d = _distance(parts[i], parts[pick])
            if d < LOCATION_DEPTH:
                crowding[i][d - 1] += 1
    return chosen
