"""The conscience as a real process, and placement rules."""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from gridfs.common.config import GridConfig
from gridfs.common.errors import BadRequest, NotEnoughServices, NotFound
from gridfs.common.service import spawn_service
from gridfs.conscience.client import CachedServices, ConscienceClient
from gridfs.conscience.placement import distance, select


@pytest.fixture
def conscience(grid_config: GridConfig, tmp_path: Path) -> Iterator[ConscienceClient]:
    svc = spawn_service("gridfs.conscience", ["--config", str(grid_config.path), "--timeout", "1", "--ramp", "1"],
                        tmp_path / "run", "conscience")
    yield ConscienceClient(svc.url, grid_config.secret)
    svc.stop()


def beat(c: ConscienceClient, addr: str, free: float = 0.5, loc: str = "s.r.h.v") -> None:
    c.heartbeat({"type": "rawx", "addr": addr, "location": loc,
                 "stats": {"cpu_idle": 90, "io_idle": 90, "free_bytes": free * 1000, "total_bytes": 1000}})


def by_addr(c: ConscienceClient) -> dict[str, dict]:
    return {s["addr"]: s for s in c.services("rawx")}


def test_scores_full_locked_silent_and_ramp(conscience: ConscienceClient) -> None:
    beat(conscience, "127.0.0.1:1", loc="s.r.h.a")
    time.sleep(1.1)
    beat(conscience, "127.0.0.1:1", loc="s.r.h.a")
    beat(conscience, "127.0.0.1:2", loc="s.r.h.b")
    s = by_addr(conscience)
    assert s["127.0.0.1:2"]["score_put"] < s["127.0.0.1:1"]["score_put"], "a new service should ramp up"
    beat(conscience, "127.0.0.1:3", free=0.05, loc="s.r.h.c")
    s = by_addr(conscience)
    assert s["127.0.0.1:3"]["score_put"] == 0 and s["127.0.0.1:3"]["score_get"] > 0
    conscience.lock("127.0.0.1:1")
    assert by_addr(conscience)["127.0.0.1:1"]["score_put"] == 0
    conscience.unlock("127.0.0.1:1")
    assert by_addr(conscience)["127.0.0.1:1"]["score_put"] > 0
    with pytest.raises(NotFound):
        conscience.lock("127.0.0.1:9")
    time.sleep(1.3)  # silent past the 1 s timeout
    s = by_addr(conscience)["127.0.0.1:1"]
    assert (s["score_put"], s["score_get"], s["up"]) == (0, 0, False)


def test_bad_heartbeats_and_secret(conscience: ConscienceClient, grid_config: GridConfig) -> None:
    for body in [{"type": "rawx"}, {"type": "rawx", "addr": "x:1", "location": "a.b"},
                 {"type": "RAWX!", "addr": "x:1", "location": "a.b.c.d", "stats": {}},
                 {"type": "rawx", "addr": "x:1", "location": "a.b.c.d", "stats": {"cpu_idle": "lots"}}]:
        with pytest.raises(BadRequest):
            conscience.heartbeat(body)
    assert requests.get(f"{conscience.url}/v1/services", timeout=5).status_code == 401
    assert requests.get(f"{conscience.url}/v1/services", headers={"X-Grid-Secret": "x"}, timeout=5).status_code == 403


def test_cached_services_refresh(conscience: ConscienceClient) -> None:
    cache = CachedServices(conscience, ttl=0.3)
    assert cache.get() == []
    beat(conscience, "127.0.0.1:5")
    assert cache.get() == []
    time.sleep(0.35)
    assert [s["addr"] for s in cache.get()] == ["127.0.0.1:5"]


def grid_of(sites: int, racks: int, hosts: int, vols: int, score: int = 50) -> list[dict]:
    return [{"addr": f"{s}{r}{h}{v}", "location": f"s{s}.r{r}.h{h}.v{v}", "score_put": score}
            for s in range(sites) for r in range(racks) for h in range(hosts) for v in range(vols)]


def test_placement_spreads_over_hosts_then_volumes() -> None:
    rng = random.Random(7)
    services = grid_of(1, 1, 3, 3)
    for _ in range(200):
        picks = select(services, 9, rng=rng)
        assert len({p["location"] for p in picks}) == 9
        assert Counter(p["location"].split(".")[2] for p in picks) == {"h0": 3, "h1": 3, "h2": 3}
        assert len({p["location"].split(".")[2] for p in select(services, 3, rng=rng)}) == 3


def test_placement_prefers_racks_and_sites() -> None:
    rng = random.Random(3)
    assert len({p["location"].split(".")[1] for p in select(grid_of(1, 3, 2, 2), 3, rng=rng)}) == 3
    assert len({p["location"].split(".")[0] for p in select(grid_of(2, 2, 2, 2), 2, rng=rng)}) == 2
    assert distance("a.b.c.d", "a.b.c.e") == 1 and distance("a.b.c.d", "x.b.c.d") == 4


def test_placement_skips_zero_and_avoided_and_weights_by_score() -> None:
    rng = random.Random(1)
    services = grid_of(1, 1, 1, 4)
    services[0]["score_put"] = 0
    for _ in range(100):
        picks = select(services, 2, avoid={services[1]["addr"]}, rng=rng)
        assert {p["addr"] for p in picks} <= {services[2]["addr"], services[3]["addr"]}
    with pytest.raises(NotEnoughServices):
        select(services, 3, avoid={services[1]["addr"]})
    pair = [{"addr": "a", "location": "s.r.h.a", "score_put": 80},
            {"addr": "b", "location": "s.r.h.b", "score_put": 20}]
    counts = Counter(select(pair, 1, rng=rng)[0]["addr"] for _ in range(5000))
    assert 3.3 < counts["a"] / counts["b"] < 4.8
