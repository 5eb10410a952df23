"""Placement rules: distinct volumes, spread over sites/racks/hosts, weighting by score.

Pure functions, so every draw uses a seeded generator: the tests are exact, never flaky.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest

from gridfs.common.errors import NotEnoughServices, ServiceUnavailable
from gridfs.conscience.placement import distance, select


def grid_of(sites: int, racks: int, hosts: int, vols: int, score: int = 50) -> list[dict]:
    """Conscience-like entries for a regular grid: addr ``sSrRhHvV``, location ``sS.rR.hH.vV``."""
    return [
        {"addr": f"s{s}r{r}h{h}v{v}", "location": f"s{s}.r{r}.h{h}.v{v}", "score_put": score}
        for s in range(sites) for r in range(racks) for h in range(hosts) for v in range(vols)
    ]


def level(picks: list[dict], depth: int) -> Counter[str]:
    """How many picks per site (depth 1), rack (2) or host (3)."""
    return Counter(".".join(p["location"].split(".")[:depth]) for p in picks)


def test_distance_levels() -> None:
    assert distance("a.b.c.d", "a.b.c.d") == 0
    assert distance("a.b.c.d", "a.b.c.e") == 1
    assert distance("a.b.c.d", "a.b.x.d") == 2
    assert distance("a.b.c.d", "a.x.c.d") == 3
    assert distance("a.b.c.d", "x.b.c.d") == 4
    assert distance("a.b.c.d", "x.y.z.w") == 4  # the highest differing level counts
    assert distance("a.b.c.d", "a.b.c.d.e") == 1  # malformed, but still another volume


def test_nine_of_three_hosts_by_three_volumes_uses_every_volume() -> None:
    rng = random.Random(7)
    services = grid_of(1, 1, 3, 3)
    for _ in range(200):
        picks = select(services, 9, rng=rng)
        assert len({p["location"] for p in picks}) == 9
        assert len({p["addr"] for p in picks}) == 9
        assert level(picks, 3) == {"s0.r0.h0": 3, "s0.r0.h1": 3, "s0.r0.h2": 3}


def test_three_of_three_hosts_always_on_three_hosts() -> None:
    rng = random.Random(11)
    services = grid_of(1, 1, 3, 3)
    for _ in range(200):
        picks = select(services, 3, rng=rng)
        assert len(level(picks, 3)) == 3


def test_partial_fill_stays_balanced_over_hosts() -> None:
    # Max-min distance alone would allow 3/2/1 here; the tie-break keeps it 2/2/2.
    rng = random.Random(5)
    services = grid_of(1, 1, 3, 3)
    for _ in range(200):
        assert sorted(level(select(services, 6, rng=rng), 3).values()) == [2, 2, 2]


def test_racks_preferred_over_hosts_and_sites_over_racks() -> None:
    rng = random.Random(3)
    for _ in range(200):
        # 3 racks x 2 hosts: 3 picks land on 3 racks, not merely 3 hosts.
        assert len(level(select(grid_of(1, 3, 2, 2), 3, rng=rng), 2)) == 3
        # 2 sites: 2 picks on 2 sites; 4 picks on 2 sites x 2 racks.
        assert len(level(select(grid_of(2, 2, 2, 2), 2, rng=rng), 1)) == 2
        picks = select(grid_of(2, 2, 2, 2), 4, rng=rng)
        assert level(picks, 1) == {"s0": 2, "s1": 2} and len(level(picks, 2)) == 4
        # More picks than racks: racks filled evenly, each on distinct hosts first.
        picks = select(grid_of(1, 2, 3, 2), 6, rng=rng)
        assert level(picks, 2) == {"s0.r0": 3, "s0.r1": 3} and len(level(picks, 3)) == 6


def test_zero_score_and_avoided_never_picked() -> None:
    rng = random.Random(1)
    services = grid_of(1, 1, 2, 3)
    services[0]["score_put"] = 0
    avoid = {services[1]["addr"], services[4]["addr"]}
    allowed = {s["addr"] for s in services} - avoid - {services[0]["addr"]}
    for _ in range(200):
        picks = select(services, 3, avoid=avoid, rng=rng)
        assert {p["addr"] for p in picks} <= allowed
        assert len({p["addr"] for p in picks}) == 3


def test_same_volume_never_twice() -> None:
    # Two addresses announcing one location, and one address listed twice: one volume each.
    services = [
        {"addr": "a:1", "location": "s.r.h.v1", "score_put": 90},
        {"addr": "a:2", "location": "s.r.h.v1", "score_put": 90},
        {"addr": "b:1", "location": "s.r.h.v2", "score_put": 90},
        {"addr": "b:1", "location": "s.r.h.v2", "score_put": 90},
    ]
    rng = random.Random(2)
    for _ in range(100):
        picks = select(services, 2, rng=rng)
        assert len({p["location"] for p in picks}) == 2
    with pytest.raises(NotEnoughServices):
        select(services, 3, rng=rng)


def test_not_enough_services_says_how_many() -> None:
    services = grid_of(1, 1, 1, 4)
    services[0]["score_put"] = 0
    with pytest.raises(NotEnoughServices) as err:
        select(services, 4, avoid={services[1]["addr"]})
    assert "needs 4" in str(err.value) and "only 2" in str(err.value)
    assert isinstance(err.value, ServiceUnavailable)  # callers may catch the broader class
    with pytest.raises(NotEnoughServices):
        select([], 1)
    assert select([], 0) == []


def test_weighted_by_put_score() -> None:
    rng = random.Random(1)
    pair = [
        {"addr": "a", "location": "s.r.h.a", "score_put": 80},
        {"addr": "b", "location": "s.r.h.b", "score_put": 20},
    ]
    counts = Counter(select(pair, 1, rng=rng)[0]["addr"] for _ in range(5000))
    # Expected 4; +-3 sigma of a binomial(5000, 0.8) is about 3.6-4.5.
    assert 3.3 < counts["a"] / counts["b"] < 4.8


def test_a_laggard_is_passed_over_while_enough_others_remain() -> None:
    """A volume scoring under a tenth of the best (a disk gone slow) takes no chunk while the others suffice,
    and is still used when the stripe needs it; a new volume ramping up (a fifth of its score) is not a
    laggard."""
    rng = random.Random(5)
    services = grid_of(1, 1, 4, 3, score=40)
    services[4]["score_put"] = 3  # the slow one
    services[7]["score_put"] = 8  # brand new: 20 % of 40
    picks = Counter(p["addr"] for _ in range(500) for p in select(services, 9, rng=rng))
    assert picks[services[4]["addr"]] == 0
    assert picks[services[7]["addr"]] > 0
    assert all(services[4]["addr"] in {p["addr"] for p in select(services, 12, rng=rng)} for _ in range(20))


def test_a_hundred_services() -> None:
    # The size the client library meets: must stay cheap (it runs per metachunk).
    rng = random.Random(9)
    services = grid_of(2, 5, 5, 2, score=60)
    for _ in range(50):
        picks = select(services, 9, rng=rng)
        assert len({p["location"] for p in picks}) == 9
        assert sorted(level(picks, 1).values()) in ([4, 5],)
        assert len(level(picks, 2)) == 9  # 10 racks: every pick on its own rack
