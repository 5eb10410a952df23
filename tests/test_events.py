"""The event agent against a real grid: retries, dead letters, a crash between handling and ack.

The handlers ``probe`` and ``picky`` below are loaded by the agent process itself (the
grid's services get this folder on PYTHONPATH and grid.toml names them in
``[events.handlers]``); they talk to the test through files named by environment variables.
"""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from conftest import run_grid_cli

from gridfs.cli.local import LocalGrid, pid_alive
from gridfs.client import GridClient
from gridfs.common.config import GridConfig
from gridfs.common.failpoints import arm
from gridfs.common.http import JsonClient
from gridfs.conscience.client import ConscienceClient
from tests.conftest import held_chunks, volume_holds, wait_for

T = TypeVar("T")
LOG_ENV, FLAG_ENV = "GRID_TEST_EVENTS_LOG", "GRID_TEST_EVENTS_FLAG"


# -- handlers run by the agent ----------------------------------------------------------


def probe(event: dict[str, Any]) -> None:
    """Records every event it is given, one JSON line each (so re-deliveries show)."""
    with open(os.environ[LOG_ENV], "a") as f:
        f.write(json.dumps(event) + "\n")


def picky(event: dict[str, Any]) -> None:
    """Fails for objects named poison/... until the flag file exists, then records them."""
    key = event["data"].get("key", "")
    if not key.startswith("poison/"):
        return
    flag = Path(os.environ[FLAG_ENV])
    if not flag.exists():
        raise RuntimeError(f"refusing {key} until {flag} exists")
    with open(flag.with_suffix(".done"), "a") as f:
        f.write(key + "\n")


# -- helpers ----------------------------------------------------------------------------



def seen(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def outboxes(grid: LocalGrid) -> list[dict[str, Any]]:
    """What every meta1 and meta2 service still holds in its outboxes (not acked yet)."""
    cfg = grid.config()
    rows = [row for t in ("meta1", "meta2") for row in ConscienceClient(cfg.conscience_url, cfg.secret).services(t)]
    assert rows, "no meta1 or meta2 service registered"
    return [e for row in rows for e in JsonClient(f"http://{row['addr']}", cfg.secret).call(
        "GET", "/v1/outbox", params={"limit": 100})["events"]]


def service(grid: LocalGrid, name: str) -> Any:
    return next(s for s in grid.services() if s.name == name)


def agent_api(grid: LocalGrid) -> JsonClient:
    return JsonClient(service(grid, "events").url, grid.config().secret)


def sigkill(grid: LocalGrid, name: str) -> None:
    pid = service(grid, name).pid
    os.kill(pid, signal.SIGKILL)
    wait_for(f"{name} to die", lambda: not pid_alive(pid), 10)


def chunk_ids(client: GridClient, bucket: str, key: str) -> set[str]:
    """The chunk ids (last part of either URL form) of an object's current version."""
    return {c.url.rsplit("/", 1)[-1] for mc in client.head(bucket, key, chunks=True).metachunks for c in mc.chunks}


def on_disk(grid: LocalGrid, ids: set[str]) -> set[str]:
    return set(held_chunks(grid.data)) & ids


@pytest.fixture
def start_grid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., LocalGrid]]:
    """Starts a grid whose agent has ``[events]`` settings and the handlers of this module."""
    grids: list[LocalGrid] = []
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("GRID_FAILPOINT_DIR", str(tmp_path / "failpoints"))
    monkeypatch.setenv(LOG_ENV, str(tmp_path / "seen.jsonl"))
    monkeypatch.setenv(FLAG_ENV, str(tmp_path / "picky.flag"))
    (tmp_path / "failpoints").mkdir()

    def start(nodes: int = 3, volumes: int = 1, **events: Any) -> LocalGrid:
        cfg = GridConfig()
        cfg.extra["events"] = events
        cfg.save(tmp_path / "grid" / "grid.toml")
        grid = LocalGrid(tmp_path / "grid")
        grids.append(grid)
        grid.up(nodes=nodes, volumes=volumes, s3_port=None)
        return grid

    yield start
    for grid in grids:
        grid.down()


# -- tests ------------------------------------------------------------------------------


def test_deletions_on_a_dead_server_wait_on_the_retry_list_while_other_events_flow(
    start_grid: Callable[..., LocalGrid], tmp_path: Path
) -> None:
    grid = start_grid(nodes=3, volumes=2, retry_base=0.2, retry_max=0.5, max_attempts=100000,
                      handlers={"*": ["test_events:probe"]})
    client = GridClient(grid.config_path)
    client.create_bucket("bkt")
    victim = service(grid, "rawx-node1-vol1")
    volume = Path(victim.args[victim.args.index("--volume") + 1])
    chunks = {}
    for i in range(12):
        client.put("bkt", f"k{i}", os.urandom(4096), policy="THREECOPIES")
        chunks[f"k{i}"] = chunk_ids(client, "bkt", f"k{i}")
    stranded = {k for k, ids in chunks.items() if any(volume_holds(volume, c) for c in ids)}
    elsewhere = set(chunks) - stranded
    assert stranded and elsewhere, f"12 objects of 3 copies on 6 servers: {len(stranded)} touch {victim.name}"

    client.put("bkt", "keep", b"renamed after the deletes")

    sigkill(grid, victim.name)
    for key in chunks:
        client.delete("bkt", key)
    client.rename("bkt", "keep", "after")  # a later event of the same container
    log = tmp_path / "seen.jsonl"

    def deleted_keys() -> set[str]:
        return {e["data"]["key"] for e in seen(log) if e["type"] == "content.deleted"}

    # Every deletion was handled (the failures are on the retry list), later events went on,
    # and the chunks on live servers are gone, those on the dead one still there.
    wait_for("every delete event and the later put", lambda: deleted_keys() >= set(chunks) and any(
        e["type"] == "content.new" and e["data"]["key"] == "after" for e in seen(log)))
    on_victim = {c for k in stranded for c in chunks[k] if volume_holds(volume, c)}
    everything = set().union(*chunks.values())
    wait_for("the chunks on live servers to be deleted", lambda: on_disk(grid, everything) == on_victim)
    status = wait_for("the failed deletions on the retry list",
                      lambda: (s := agent_api(grid).call("GET", "/v1/status"))["retries"] == len(stranded) and s)
    assert status["dead"] == 0 and status["failures"] >= len(stranded)
    assert any(s["id"] and not s["error"] for s in status["sources"]), status["sources"]

    grid.restart(victim.name)
    wait_for("the retried deletions once the server is back", lambda: not on_disk(grid, everything))
    wait_for("an empty retry list", lambda: agent_api(grid).call("GET", "/v1/status")["retries"] == 0)
    assert client.get("bkt", "after") == b"renamed after the deletes"


def test_a_handler_that_always_fails_ends_in_the_dead_letters_and_is_replayed(
    start_grid: Callable[..., LocalGrid], tmp_path: Path
) -> None:
    grid = start_grid(retry_base=0.05, retry_max=0.2, max_attempts=3,
                      handlers={"content.new": ["test_events:picky"], "*": ["test_events:probe"]})
    client = GridClient(grid.config_path)
    client.create_bucket("bkt")
    client.put("bkt", "poison/1", b"x")
    client.put("bkt", "fine/1", b"y")
    api = agent_api(grid)

    dead = wait_for("a dead letter", lambda: api.call("GET", "/v1/dead")["dead"])
    assert len(dead) == 1
    assert dead[0]["handler"] == "test_events:picky" and dead[0]["attempts"] == 3
    assert dead[0]["event"]["data"]["key"] == "poison/1" and "refusing poison/1" in dead[0]["error"]
    # The failing handler held up neither the other handler of the same event nor later events.
    probed = {(e["type"], e["data"].get("key")) for e in seen(tmp_path / "seen.jsonl")}
    assert {("content.new", "poison/1"), ("content.new", "fine/1")} <= probed
    status = api.call("GET", "/v1/status")
    assert (status["retries"], status["dead"]) == (0, 1)

    shown = run_grid_cli(grid.config_path, "events", "--dead", env={**os.environ, "COLUMNS": "250"}).stdout.decode()
    assert "test_events:picky" in shown and "poison/1" in shown and "refusing" in shown, shown
    listed = json.loads(run_grid_cli(grid.config_path, "events", "--dead", "--json").stdout)
    assert [d["id"] for d in listed] == [dead[0]["id"]]

    (tmp_path / "picky.flag").touch()
    replay = run_grid_cli(grid.config_path, "events", "--retry").stdout.decode()
    assert "1 dead letters back" in replay, replay
    wait_for("the replay to succeed", lambda: (tmp_path / "picky.done").exists())
    assert (tmp_path / "picky.done").read_text() == "poison/1\n"  # only picky ran, once
    status = wait_for("an empty retry list", lambda: (s := api.call("GET", "/v1/status"))["retries"] == 0 and s)
    assert status["dead"] == 0
    assert "0 retries pending, 0 dead letters" in run_grid_cli(grid.config_path, "events").stdout.decode()
    assert Counter((e["type"], e["data"].get("key")) for e in seen(tmp_path / "seen.jsonl"))[
        ("content.new", "poison/1")] == 1, "a retry of picky must not run probe again"


def test_an_agent_killed_after_handling_and_before_acking_gets_the_batch_again(
    start_grid: Callable[..., LocalGrid], tmp_path: Path
) -> None:
    grid = start_grid(handlers={"*": ["test_events:probe"]})
    log = tmp_path / "seen.jsonl"
    client = GridClient(grid.config_path)
    client.create_bucket("bkt")
    wait_for("the agent to handle and ack container.new",
             lambda: any(e["type"] == "container.new" for e in seen(log)) and not outboxes(grid))

    # A backlog written while the agent is down: puts, overwrites and deletes.
    sigkill(grid, "events")
    data = {f"k{i}": os.urandom(2048) for i in range(6)}
    dropped: set[str] = set()
    for key, body in data.items():
        client.put("bkt", key, body, policy="THREECOPIES")
    for key in ("k0", "k1", "k2"):
        dropped |= chunk_ids(client, "bkt", key)
        data[key] = os.urandom(3000)
        client.put("bkt", key, data[key], policy="THREECOPIES")
    for key in ("k3", "k4", "k5"):
        dropped |= chunk_ids(client, "bkt", key)
        client.delete("bkt", key)
        del data[key]
    live = set().union(*(chunk_ids(client, "bkt", k) for k in data))

    # The restarted agent handles the whole backlog, then dies before acking it.
    handled_before = len(seen(log))
    arm(tmp_path / "failpoints", "events.after_handle")
    grid.restart("events")
    pid = service(grid, "events").pid
    wait_for("the failpoint to kill the agent", lambda: not pid_alive(pid))
    batch = seen(log)[handled_before:]
    first = Counter((e["db"], e["id"]) for e in batch)
    deletes = [e for e in batch if e["type"] == "content.deleted"]
    assert len(deletes) == 6 and all(n == 1 for n in first.values()), first
    assert not on_disk(grid, dropped), "handled before the crash: the chunks were already deleted"

    # Restarted once more, it gets the same events again; deleting twice changes nothing.
    grid.restart("events")
    wait_for("the batch delivered again", lambda: all(
        n >= 2 for key, n in Counter((e["db"], e["id"]) for e in seen(log)).items() if key in first))
    wait_for("every outbox acked", lambda: not outboxes(grid))
    assert on_disk(grid, live) == live and not on_disk(grid, dropped)
    for key, body in data.items():
        assert client.get("bkt", key) == body
    status = agent_api(grid).call("GET", "/v1/status")
    assert (status["retries"], status["dead"]) == (0, 0)
