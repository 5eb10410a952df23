"""The conscience as a real process: registration, secret, validation, scores, locks,
silence, ramp-up, persistence, and the cached service list of the client library.

The conscience runs with ``--timeout 1 --ramp 1`` so silence and ramp-up take about a
second each instead of the production 5 s and 3 s.
"""

from __future__ import annotations

import json
import pickle
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from gridfs.common.config import GridConfig
from gridfs.common.errors import BadRequest, NotEnoughServices, NotFound, ServiceUnavailable
from gridfs.common.service import SpawnedService, spawn_service
from gridfs.conscience.client import CachedServices, ConscienceClient
from gridfs.conscience.placement import select
from tests.conftest import wait_for

Starter = Callable[..., SpawnedService]


@pytest.fixture
def start_conscience(grid_config: GridConfig, tmp_path: Path) -> Iterator[Starter]:
    """Start a conscience (extra CLI options allowed); every one started is stopped at the end."""
    started: list[SpawnedService] = []

    def start(*extra: str) -> SpawnedService:
        svc = spawn_service("gridfs.conscience", ["--config", str(grid_config.path), *extra],
                            tmp_path / "run", "conscience")
        started.append(svc)
        return svc

    yield start
    for svc in started:
        svc.stop()


@pytest.fixture
def proc(start_conscience: Starter) -> SpawnedService:
    return start_conscience("--timeout", "1", "--ramp", "1")


@pytest.fixture
def conscience(proc: SpawnedService, grid_config: GridConfig) -> ConscienceClient:
    return ConscienceClient(proc.url, grid_config.secret)


def beat(c: ConscienceClient, addr: str, free: float = 0.5, loc: str = "s.r.h.v", kind: str = "rawx") -> None:
    c.heartbeat({"type": kind, "addr": addr, "location": loc, "tags": {"volume": f"/v/{addr}"},
                 "stats": {"cpu_idle": 90, "io_idle": 80, "free_bytes": free * 1000, "total_bytes": 1000,
                           "inflight": 2}})


def by_addr(c: ConscienceClient, kind: str | None = "rawx") -> dict[str, dict]:
    return {s["addr"]: s for s in c.services(kind)}


def test_register_list_and_filter_by_type(conscience: ConscienceClient) -> None:
    assert conscience.services() == []
    beat(conscience, "127.0.0.1:1001", loc="s1.r1.h1.v1")
    beat(conscience, "127.0.0.1:1002", loc="s1.r1.h1.v2")
    beat(conscience, "127.0.0.1:2001", loc="s1.r1.h1.m", kind="meta2")
    assert set(by_addr(conscience, None)) == {"127.0.0.1:1001", "127.0.0.1:1002", "127.0.0.1:2001"}
    assert set(by_addr(conscience, "rawx")) == {"127.0.0.1:1001", "127.0.0.1:1002"}
    assert set(by_addr(conscience, "meta2")) == {"127.0.0.1:2001"}
    assert conscience.services("nosuchtype") == []
    s = by_addr(conscience)["127.0.0.1:1001"]
    assert set(s) == {"id", "type", "addr", "location", "tags", "stats", "score_put", "score_get", "locked",
                      "first_seen", "last_seen", "up", "full"}
    assert s["id"] == "127.0.0.1:1001"  # a heartbeat without an id: known by its address
    assert (s["type"], s["location"], s["tags"], s["locked"], s["up"]) == (
        "rawx", "s1.r1.h1.v1", {"volume": "/v/127.0.0.1:1001"}, False, True)
    assert s["stats"] == {"cpu_idle": 90, "io_idle": 80, "free_bytes": 500, "total_bytes": 1000, "inflight": 2}
    assert abs(s["last_seen"] - time.time()) < 5 and s["first_seen"] <= s["last_seen"]
    for svc in conscience.services():
        assert isinstance(svc["score_put"], int) and 0 < svc["score_put"] <= 100
        assert isinstance(svc["score_get"], int) and 0 < svc["score_get"] <= 100
    conscience.forget("127.0.0.1:1002")
    assert set(by_addr(conscience)) == {"127.0.0.1:1001"}
    with pytest.raises(NotFound):
        conscience.forget("127.0.0.1:1002")


def test_secret_required_except_health(conscience: ConscienceClient) -> None:
    url = conscience.url
    r = requests.get(f"{url}/v1/services", timeout=5)
    assert r.status_code == 401 and r.json()["error"]["code"] == "Unauthorized"
    r = requests.get(f"{url}/v1/services", headers={"X-Grid-Secret": "wrong"}, timeout=5)
    assert r.status_code == 403 and r.json()["error"]["code"] == "Forbidden"
    r = requests.post(f"{url}/v1/heartbeat", json={}, timeout=5)
    assert r.status_code == 401
    assert requests.get(f"{url}/health", timeout=5).status_code == 200
    beat(conscience, "127.0.0.1:1001")
    # Its metrics list every service's address: behind the secret unless [metrics] public = true.
    assert requests.get(f"{url}/metrics", timeout=5).status_code == 401
    metrics = requests.get(f"{url}/metrics", headers={"X-Grid-Secret": conscience.http.secret}, timeout=5)
    assert metrics.status_code == 200
    assert 'grid_conscience_score_put{addr="127.0.0.1:1001"' in metrics.text
    assert "grid_conscience_heartbeats_total 1.0" in metrics.text


MALFORMED: list[object] = [
    {"type": "rawx"},
    {"type": "rawx", "addr": "127.0.0.1:1", "location": "a.b", "stats": {}},
    {"type": "rawx", "addr": "127.0.0.1:1", "location": "a.b.c.d.e", "stats": {}},
    {"type": "rawx", "addr": "127.0.0.1:1", "location": "a.b.c.d/", "stats": {}},
    {"type": "rawx", "addr": "127.0.0.1:1", "location": "a..c.d", "stats": {}},
    {"type": "RAWX!", "addr": "127.0.0.1:1", "location": "a.b.c.d", "stats": {}},
    {"type": 7, "addr": "127.0.0.1:1", "location": "a.b.c.d", "stats": {}},
    {"type": "rawx", "addr": 12, "location": "a.b.c.d", "stats": {}},
    {"type": "rawx", "addr": "no-port", "location": "a.b.c.d", "stats": {}},
    {"type": "rawx", "addr": "127.0.0.1:99999", "location": "a.b.c.d", "stats": {}},
    {"type": "rawx", "addr": "127.0.0.1:1", "location": "a.b.c.d"},
    {"type": "rawx", "addr": "127.0.0.1:1", "location": "a.b.c.d", "stats": []},
    {"type": "rawx", "addr": "127.0.0.1:1", "location": "a.b.c.d", "stats": {"cpu_idle": "lots"}},
    {"type": "rawx", "addr": "127.0.0.1:1", "location": "a.b.c.d", "stats": {"cpu_idle": True}},
    {"type": "rawx", "addr": "127.0.0.1:1", "location": "a.b.c.d", "stats": {"free_bytes": -1}},
    {"type": "rawx", "addr": "127.0.0.1:1", "location": "a.b.c.d", "stats": {}, "tags": ["x"]},
    ["not", "an", "object"],
]


def test_malformed_heartbeat_refused(conscience: ConscienceClient) -> None:
    # One process for every case: a conscience per case would cost more than the checks.
    for body in MALFORMED:
        with pytest.raises(BadRequest):
            conscience.http.call("POST", "/v1/heartbeat", body=body)
            pytest.fail(f"accepted {body!r}")
    assert conscience.services() == []


def test_non_json_bodies_refused(conscience: ConscienceClient) -> None:
    headers = {"X-Grid-Secret": conscience.http.secret, "Content-Type": "application/json"}
    for path in ("/v1/heartbeat", "/v1/lock"):
        r = requests.post(f"{conscience.url}{path}", data=b"{not json", headers=headers, timeout=5)
        assert r.status_code == 400 and r.json()["error"]["code"] == "BadRequest"
    r = requests.post(f"{conscience.url}/v1/heartbeat", data=b'{"stats": {"cpu_idle": NaN}, "type": "rawx", '
                      b'"addr": "127.0.0.1:1", "location": "a.b.c.d"}', headers=headers, timeout=5)
    assert r.status_code == 400


def test_full_volume_takes_no_writes_but_serves_reads(conscience: ConscienceClient) -> None:
    beat(conscience, "127.0.0.1:1001", free=0.05, loc="s.r.h.a")
    beat(conscience, "127.0.0.1:1002", free=0.5, loc="s.r.h.b")
    s = by_addr(conscience)
    assert s["127.0.0.1:1001"]["score_put"] == 0 and s["127.0.0.1:1001"]["score_get"] > 0
    assert s["127.0.0.1:1002"]["score_put"] > 0


def test_lock_and_unlock(conscience: ConscienceClient) -> None:
    beat(conscience, "127.0.0.1:1001")
    conscience.lock("127.0.0.1:1001")
    s = by_addr(conscience)["127.0.0.1:1001"]
    assert (s["score_put"], s["locked"]) == (0, True) and s["score_get"] > 0
    beat(conscience, "127.0.0.1:1001")  # heartbeats do not unlock
    assert by_addr(conscience)["127.0.0.1:1001"]["score_put"] == 0
    conscience.unlock("127.0.0.1:1001")
    s = by_addr(conscience)["127.0.0.1:1001"]
    assert s["score_put"] > 0 and not s["locked"]
    with pytest.raises(NotFound):
        conscience.lock("127.0.0.1:9")
    with pytest.raises(NotFound):
        conscience.unlock("127.0.0.1:9")
    with pytest.raises(BadRequest):
        conscience.http.call("POST", "/v1/lock", body={"address": "127.0.0.1:1001"})


def test_silent_service_drops_to_zero_and_comes_back(conscience: ConscienceClient, proc: SpawnedService) -> None:
    beat(conscience, "127.0.0.1:1001")
    time.sleep(1.3)  # past the 1 s timeout
    s = by_addr(conscience)["127.0.0.1:1001"]
    assert (s["score_put"], s["score_get"], s["up"]) == (0, 0, False)
    beat(conscience, "127.0.0.1:1001")
    s = by_addr(conscience)["127.0.0.1:1001"]
    assert s["score_put"] > 0 and s["score_get"] > 0 and s["up"]
    log = proc.log_path.read_text()
    assert "new rawx service 127.0.0.1:1001" in log
    assert "127.0.0.1:1001 at s.r.h.v went silent" in log
    assert "127.0.0.1:1001 at s.r.h.v is back" in log


def test_a_frozen_conscience_does_not_count_its_own_stall_as_silence(conscience: ConscienceClient,
                                                                      proc: SpawnedService) -> None:
    """A conscience that did not run (a blocked fsync, a starved machine; here SIGSTOP) read no heartbeats
    meanwhile: right after it thaws, the services that were up are still up and take writes (listing them
    silent made every write of a loaded grid fail with NotEnoughServices). A service that stays quiet still
    goes silent one timeout later, and one silent before the freeze stays silent."""
    beat(conscience, "127.0.0.1:1009", loc="s.r.h.z")
    time.sleep(1.3)  # 1009 is silent before the freeze
    beat(conscience, "127.0.0.1:1001")
    proc.process.send_signal(signal.SIGSTOP)
    try:
        time.sleep(2.5)  # 2.5 timeouts frozen
    finally:
        proc.process.send_signal(signal.SIGCONT)
    s = by_addr(conscience)
    assert s["127.0.0.1:1001"]["up"] and s["127.0.0.1:1001"]["score_put"] > 0, s["127.0.0.1:1001"]
    assert not s["127.0.0.1:1009"]["up"] and s["127.0.0.1:1009"]["score_put"] == 0
    assert "the conscience did not run for" in proc.log_path.read_text()
    # And once 1001 has really been quiet for a timeout of the conscience's running time, it is silent.
    def silent_1001() -> dict | None:
        row = by_addr(conscience)["127.0.0.1:1001"]
        return None if row["up"] else row

    s = wait_for("127.0.0.1:1001 to go silent one timeout after the thaw", silent_1001, timeout=5)
    assert (s["score_put"], s["up"]) == (0, False)


def test_listing_says_why_a_service_takes_no_writes(conscience: ConscienceClient) -> None:
    beat(conscience, "127.0.0.1:1001", loc="s.r.h.a")
    beat(conscience, "127.0.0.1:1002", loc="s.r.h.b", free=0.05)
    beat(conscience, "127.0.0.1:1003", loc="s.r.h.c")
    conscience.lock("127.0.0.1:1003")
    s = by_addr(conscience)
    assert [(s[a]["full"], s[a]["locked"], s[a]["score_put"] > 0) for a in sorted(s)] == [
        (False, False, True), (True, False, False), (False, True, False)]
    with pytest.raises(NotEnoughServices, match=r"only 1 can take writes now \(3 known, 1 full, 1 locked\)"):
        select(list(s.values()), 2)


def test_new_service_ramps_up(conscience: ConscienceClient) -> None:
    beat(conscience, "127.0.0.1:1001", loc="s.r.h.a")
    time.sleep(1.1)  # 1001 is past its 1 s ramp
    beat(conscience, "127.0.0.1:1001", loc="s.r.h.a")
    beat(conscience, "127.0.0.1:1002", loc="s.r.h.b")  # identical figures, brand new
    s = by_addr(conscience)
    old, new = s["127.0.0.1:1001"], s["127.0.0.1:1002"]
    assert new["score_put"] < old["score_put"] / 2 and new["score_get"] < old["score_get"] / 2
    assert new["score_put"] > 0
    time.sleep(1.1)  # 1002 is past its ramp too
    beat(conscience, "127.0.0.1:1001", loc="s.r.h.a")
    beat(conscience, "127.0.0.1:1002", loc="s.r.h.b")
    s = by_addr(conscience)
    assert s["127.0.0.1:1002"]["score_put"] == s["127.0.0.1:1001"]["score_put"] == old["score_put"]
    assert s["127.0.0.1:1002"]["score_get"] == s["127.0.0.1:1001"]["score_get"]


def test_cached_services_refresh_after_ttl(conscience: ConscienceClient) -> None:
    cache = CachedServices(conscience, ttl=0.3)
    assert cache.get() == []
    beat(conscience, "127.0.0.1:1001")
    assert cache.get() == []  # within the ttl: the cached answer
    time.sleep(0.35)
    assert [s["addr"] for s in cache.get()] == ["127.0.0.1:1001"]
    beat(conscience, "127.0.0.1:1002", loc="s.r.h.w")
    assert len(cache.get()) == 1
    cache.invalidate()
    assert len(cache.get()) == 2
    cache.get().clear()  # callers get a copy
    assert len(cache.get()) == 2
    clone = pickle.loads(pickle.dumps(cache))
    assert clone.ttl == 0.3 and len(clone.get()) == 2


def test_cached_services_survive_a_short_conscience_outage(
    conscience: ConscienceClient, proc: SpawnedService
) -> None:
    beat(conscience, "127.0.0.1:1001")
    tolerant = CachedServices(conscience, ttl=0.0, max_stale=60)
    strict = CachedServices(conscience, ttl=0.0, max_stale=0)
    assert len(tolerant.get()) == len(strict.get()) == 1
    proc.stop()
    assert [s["addr"] for s in tolerant.get()] == ["127.0.0.1:1001"]
    with pytest.raises(ServiceUnavailable):
        strict.get()


def test_restart_keeps_locks_and_registry(start_conscience: Starter, grid_config: GridConfig,
                                          tmp_path: Path) -> None:
    data = tmp_path / "conscience-data"
    first = start_conscience("--data", str(data), "--timeout", "1", "--ramp", "1")
    c = ConscienceClient(first.url, grid_config.secret)
    beat(c, "127.0.0.1:1001", loc="s.r.h.a")
    beat(c, "127.0.0.1:1002", loc="s.r.h.b")
    c.lock("127.0.0.1:1001")
    before = by_addr(c)
    first.stop()
    assert (data / "conscience.json").exists()

    second = start_conscience("--data", str(data), "--timeout", "1", "--ramp", "1")
    c = ConscienceClient(second.url, grid_config.secret)
    after = by_addr(c)
    assert set(after) == {"127.0.0.1:1001", "127.0.0.1:1002"}
    assert after["127.0.0.1:1001"]["locked"] and not after["127.0.0.1:1002"]["locked"]
    for addr in after:
        assert abs(after[addr]["first_seen"] - before[addr]["first_seen"]) < 0.05
    beat(c, "127.0.0.1:1001", loc="s.r.h.a")
    s = by_addr(c)["127.0.0.1:1001"]
    assert s["up"] and s["score_put"] == 0 and s["score_get"] > 0  # still locked


def test_services_alive_at_a_crash_stay_writable_after_the_restart(start_conscience: Starter,
                                                                   grid_config: GridConfig, tmp_path: Path) -> None:
    """Heartbeats are saved at most every few seconds; the saved last_seen of a service that beat
    until the crash may be older than the timeout. It must not be listed silent (no writes placed)
    until its next heartbeat: the restart itself is the conscience's silence, not the service's."""
    data = tmp_path / "conscience-data"
    first = start_conscience("--data", str(data), "--timeout", "1", "--ramp", "0.1")
    c = ConscienceClient(first.url, grid_config.secret)
    for _ in range(8):  # the first beat is saved at once, the next ones are not (flushed every 5 s)
        beat(c, "127.0.0.1:1001", loc="s.r.h.a")
        time.sleep(0.2)
    first.process.kill()
    first.process.wait()
    second = start_conscience("--data", str(data), "--timeout", "1", "--ramp", "0.1")
    s = by_addr(ConscienceClient(second.url, grid_config.secret))["127.0.0.1:1001"]
    assert s["up"] and s["score_put"] > 0, s


def test_corrupt_state_file_is_set_aside(start_conscience: Starter, grid_config: GridConfig,
                                         tmp_path: Path) -> None:
    data = tmp_path / "conscience-data"
    data.mkdir()
    (data / "conscience.json").write_text("{half a file")
    svc = start_conscience("--data", str(data))
    assert ConscienceClient(svc.url, grid_config.secret).services() == []
    assert list(data.glob("conscience.json.corrupt-*"))


# -- service ids ----------------------------------------------------------------------------

A, B, C = "rawx-00000000000000aa", "rawx-00000000000000bb", "rawx-00000000000000cc"


def beat_id(c: ConscienceClient, service_id: str, addr: str, loc: str = "s.r.h.v") -> None:
    c.heartbeat({"type": "rawx", "id": service_id, "addr": addr, "location": loc,
                 "stats": {"free_bytes": 500, "total_bytes": 1000}})


def by_id(c: ConscienceClient) -> dict[str, dict]:
    return {s["id"]: s for s in c.services("rawx")}


def test_registry_is_keyed_by_service_id(conscience: ConscienceClient, proc: SpawnedService) -> None:
    beat_id(conscience, A, "127.0.0.1:1001", loc="s.r.h.a")
    beat_id(conscience, B, "127.0.0.1:1002", loc="s.r.h.b")
    rows = by_id(conscience)
    assert {k: r["addr"] for k, r in rows.items()} == {A: "127.0.0.1:1001", B: "127.0.0.1:1002"}
    conscience.lock(A)
    first_seen = rows[A]["first_seen"]

    beat_id(conscience, A, "127.0.0.1:1003", loc="s.r.h.a")  # A restarted on another port: the same entry
    rows = by_id(conscience)
    assert set(rows) == {A, B}
    assert (rows[A]["addr"], rows[A]["locked"], rows[A]["first_seen"]) == ("127.0.0.1:1003", True, first_seen)
    assert "moved from address 127.0.0.1:1001 to 127.0.0.1:1003" in proc.log_path.read_text()

    conscience.lock(B)
    beat_id(conscience, C, "127.0.0.1:1002", loc="s.r.h.c")  # another server now answers at B's address
    assert {k: r["addr"] for k, r in by_id(conscience).items()} == {A: "127.0.0.1:1003", C: "127.0.0.1:1002"}
    assert not by_id(conscience)[C]["locked"]
    beat_id(conscience, B, "127.0.0.1:1004", loc="s.r.h.b")  # B back elsewhere: still locked
    assert by_id(conscience)[B]["locked"] and by_id(conscience)[B]["addr"] == "127.0.0.1:1004"
    conscience.forget(B)

    conscience.unlock("127.0.0.1:1003")  # by address
    assert not by_id(conscience)[A]["locked"]
    conscience.lock("127.0.0.1:1002")
    conscience.forget(C)  # by id, with its lock
    assert set(by_id(conscience)) == {A}
    with pytest.raises(NotFound):
        conscience.forget(C)
    with pytest.raises(NotFound):
        conscience.lock("rawx-00000000000000dd")
    beat_id(conscience, C, "127.0.0.1:1002", loc="s.r.h.c")
    assert not by_id(conscience)[C]["locked"]
    with pytest.raises(BadRequest):
        beat_id(conscience, "Not An Id!", "127.0.0.1:1004")


def test_service_that_starts_sending_its_id_keeps_its_lock_and_age(conscience: ConscienceClient) -> None:
    beat(conscience, "127.0.0.1:1001")  # from before ids: known by its address
    conscience.lock("127.0.0.1:1001")
    before = by_addr(conscience)["127.0.0.1:1001"]
    beat_id(conscience, A, "127.0.0.1:1001")
    (row,) = conscience.services("rawx")
    assert (row["id"], row["addr"], row["locked"], row["first_seen"]) == (A, "127.0.0.1:1001", True,
                                                                          before["first_seen"])


def test_state_file_keeps_ids_and_files_from_before_ids_load(start_conscience: Starter, grid_config: GridConfig,
                                                             tmp_path: Path) -> None:
    data = tmp_path / "conscience-data"
    data.mkdir()
    now = time.time()
    (data / "conscience.json").write_text(json.dumps({"version": 1, "locked": ["127.0.0.1:1001"], "services": [
        {"type": "rawx", "addr": "127.0.0.1:1001", "location": "s.r.h.a", "tags": {}, "stats": {},
         "first_seen": now - 100, "last_seen": now - 1}]}))
    first = start_conscience("--data", str(data))
    c = ConscienceClient(first.url, grid_config.secret)
    (old,) = c.services()
    assert (old["id"], old["addr"], old["locked"]) == ("127.0.0.1:1001", "127.0.0.1:1001", True)
    beat_id(c, B, "127.0.0.1:1002", loc="s.r.h.b")
    first.stop()

    saved = json.loads((data / "conscience.json").read_text())
    assert saved["version"] == 2 and {s["id"] for s in saved["services"]} == {"127.0.0.1:1001", B}
    second = start_conscience("--data", str(data))
    rows = by_id(ConscienceClient(second.url, grid_config.secret))
    assert set(rows) == {"127.0.0.1:1001", B}
    assert rows[B]["addr"] == "127.0.0.1:1002" and rows["127.0.0.1:1001"]["locked"]


def test_cached_services_resolve_ids_and_report_silent_ones_down(conscience: ConscienceClient) -> None:
    cache = CachedServices(conscience, ttl=3600)
    assert cache.get() == []
    beat_id(conscience, A, "127.0.0.1:1001")
    assert cache.addr_of(A) == "127.0.0.1:1001"  # an unknown id refreshes the list at once, ttl or not
    beat_id(conscience, A, "127.0.0.1:1005")
    assert cache.addr_of(A) == "127.0.0.1:1001"  # cached...
    cache.invalidate()  # ...until a request to it fails
    assert cache.addr_of(A) == "127.0.0.1:1005"
    with pytest.raises(ServiceUnavailable):
        cache.addr_of(B)
    assert not cache.is_down(A) and not cache.is_down(B)  # unknown is not down: the read is tried

    deadline = time.monotonic() + 10
    while by_id(conscience)[A]["up"]:  # silent past the conscience's 1 s timeout
        assert time.monotonic() < deadline, "the conscience never reported a silent service down"
        time.sleep(0.1)
    assert not cache.is_down(A)  # the cached list still says up
    cache.invalidate()
    assert cache.is_down(A) and cache.is_down("127.0.0.1:1005")  # by id, or by the address of an old URL
    clone = pickle.loads(pickle.dumps(cache))
    assert clone.is_down(A) and clone.addr_of(A) == "127.0.0.1:1005"
