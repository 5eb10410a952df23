"""User functions against a real grid: a runner per node, the event agent routing to them.

The functions under test other than the shipped examples are kept in the grid as source
(``--source``), as an operator's module not installed on the nodes would be.
"""

from __future__ import annotations

import json
import os
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from gridfs.cli.local import LocalGrid, pid_alive
from gridfs.client import GridClient
from gridfs.common.errors import BadRequest
from gridfs.common.http import SECRET_HEADER, JsonClient
from gridfs.conscience.client import ConscienceClient
from gridfs.functions.dispatch import RUNNER_TYPE, node_of
from gridfs.functions.registry import FunctionRegistry, FunctionSpec, seal, unseal
from gridfs.storage.client import parse_chunk_url
from tests.conftest import run_grid_cli, wait_for

MAX_ATTEMPTS = 3
SOURCE = textwrap.dedent("""
    import os
    import time

    def record(event, client):
        print(event["type"], event["data"]["bucket"], event["data"]["key"])

    def fail(event, client):
        raise RuntimeError(f"refusing {event['data']['key']}")

    def slow(event, client):
        print("pid", os.getpid(), flush=True)
        time.sleep(60)

    def hog(event, client):
        blocks = [bytearray(64 * 1024 * 1024) for _ in range(32)]  # 2 GiB, touched page by page
        print(len(blocks))
""")


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalGrid]:
    """Two nodes of two volumes, a runner each; the agent polls, retries and refreshes quickly."""
    grid = LocalGrid(tmp_path_factory.mktemp("fngrid"))
    grid.up(nodes=2, volumes=2, s3_port=None, webhdfs_port=None, functions=True, settings={
        "events": {"poll_interval": 0.05, "retry_base": 0.2, "retry_max": 0.4, "max_attempts": MAX_ATTEMPTS},
        "functions": {"refresh": 0.3}})
    try:
        yield grid
    finally:
        grid.down()


@pytest.fixture(scope="module")
def source_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fnsrc") / "userfns.py"
    path.write_text(SOURCE)
    return path


@pytest.fixture(scope="module")
def client(grid: LocalGrid) -> GridClient:
    return GridClient(grid.config_path)


def agent(grid: LocalGrid) -> JsonClient:
    return JsonClient(next(s.url for s in grid.services() if s.name == "events"), grid.config().secret)


def cli(grid: LocalGrid, *args: str, check: bool = True) -> Any:
    return run_grid_cli(grid.config_path, *args, check=check, text=True)


def register(grid: LocalGrid, spec: FunctionSpec) -> None:
    """Register and wait until the agent has subscribed it (it reads the registry every 0.3 s)."""
    FunctionRegistry(GridClient(grid.config_path)).add(spec)
    wait_for(f"the agent to subscribe {spec.name}", lambda: any(
        f"function:{spec.name}" in names for names in agent(grid).call("GET", "/v1/status")["handlers"].values()), 10)


def calls(grid: LocalGrid, name: str) -> list[dict[str, Any]]:
    return agent(grid).call("GET", f"/v1/functions/{name}/calls", params={"limit": 100})["calls"]


def dead_letters(grid: LocalGrid, name: str) -> list[dict[str, Any]]:
    dead = json.loads(cli(grid, "events", "--dead", "--json").stdout)
    return [d for d in dead if d["handler"] == f"function:{name}"]


def idle(grid: LocalGrid) -> bool:
    """Every outbox empty and no retry pending: the agent has handled everything written so far."""
    cfg = grid.config()
    rows = [r for t in ("meta1", "meta2") for r in ConscienceClient(cfg.conscience_url, cfg.secret).services(t)]
    pending = [e for r in rows for e in JsonClient(f"http://{r['addr']}", cfg.secret).call(
        "GET", "/v1/outbox", params={"limit": 10})["events"]]
    return not pending and agent(grid).call("GET", "/v1/status")["retries"] == 0


def first_chunk_node(grid: LocalGrid, client: GridClient, bucket: str, key: str) -> str:
    """``site.rack.host`` of the storage server holding the object's first chunk."""
    cfg = grid.config()
    rawx = {r["id"]: r["location"] for r in ConscienceClient(cfg.conscience_url, cfg.secret).services("rawx")}
    first = min(client.head(bucket, key, chunks=True).metachunks[0].chunks, key=lambda c: c.sub)
    return node_of(rawx[parse_chunk_url(first.url).service])


def frame(rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(rows)
    return pd.DataFrame({"id": np.arange(rows), "value": rng.normal(size=rows), "tag": rng.choice(["a", "b"], rows)})


# -- tests ------------------------------------------------------------------------------


def test_parquet_written_with_pandas_gets_its_summary_and_an_index(grid: LocalGrid, client: GridClient) -> None:
    client.create_bucket("lake")
    for name, run, on in (("pq-summary", "parquet_summary", "created"), ("pq-index", "parquet_index",
                                                                         "created,deleted")):
        cli(grid, "function", "add", name, "--on", on, "--bucket", "lake", "--prefix", "tables/",
            "--run", f"gridfs.functions.examples:{run}")
    wait_for("the agent to subscribe both", lambda: {"function:pq-summary", "function:pq-index"} <= {
        n for names in agent(grid).call("GET", "/v1/status")["handlers"].values() for n in names}, 10)

    options = {"config": str(grid.config_path)}
    sizes = {"tables/a.parquet": 1000, "tables/b.parquet": 2500, "tables/sub/c.parquet": 40}
    for key, rows in sizes.items():
        frame(rows).to_parquet(f"grid://lake/{key}", storage_options=options, row_group_size=1000)
    frame(7).to_parquet("grid://lake/elsewhere/d.parquet", storage_options=options)

    for key, rows in sizes.items():
        props = wait_for(f"the summary of {key}", lambda k=key: (p := client.head("lake", k).properties).get(
            "parquet.rows") and p, 30)
        assert props["parquet.rows"] == str(rows)
        assert props["parquet.row_groups"] == str(-(-rows // 1000))
        assert props["parquet.schema"].startswith("id: int64, value: double, tag: ")

    def index() -> dict[str, Any]:
        try:
            return json.loads(client.get("lake", "_parquet_index/tables.json"))["files"]
        except Exception:  # not written yet
            return {}

    files = wait_for("the footer index of all three", lambda: len(i := index()) == 3 and i, 30)
    assert {k: f["rows"] for k, f in files.items()} == sizes
    assert files["tables/b.parquet"]["row_groups"] == [1000, 1000, 500]
    assert [c["name"] for c in files["tables/a.parquet"]["columns"]] == ["id", "value", "tag"]

    client.delete("lake", "tables/a.parquet")
    wait_for("the index to drop a deleted file", lambda: set(index()) == {"tables/b.parquet", "tables/sub/c.parquet"},
             30)
    wait_for("the agent to be idle", lambda: idle(grid), 30)
    assert "parquet.rows" not in client.head("lake", "elsewhere/d.parquet").properties  # outside the prefix
    summaries = calls(grid, "pq-summary")
    assert all(c["ok"] for c in summaries), summaries
    # Each call ran on the node of the object's first chunk (one runner per node, the agent routes).
    ran_on = {c["target"]: node_of(c["node"]) for c in summaries if c["target"].endswith(".parquet")}
    for key in ("tables/b.parquet", "tables/sub/c.parquet"):
        assert ran_on[f"lake/{key}"] == first_chunk_node(grid, client, "lake", key)


def test_only_matching_events_call_a_function_on_the_node_of_the_first_chunk(
    grid: LocalGrid, client: GridClient, source_file: Path
) -> None:
    source = source_file.read_text()
    register(grid, FunctionSpec("on-new", ("created",), "userfns:record", bucket="match", prefix="in/", source=source))
    register(grid, FunctionSpec("on-del", ("deleted",), "userfns:record", bucket="match", prefix="in/", source=source))
    for bucket in ("match", "other"):
        client.create_bucket(bucket)
    client.put("other", "in/a", b"another bucket")
    client.put("match", "out/b", b"another prefix")
    client.put("match", "in/a", b"matches")
    client.set_properties("match", "in/a", {"colour": "blue"})  # updated: not subscribed
    client.put("match", "in/c", b"first")
    client.put("match", "in/c", b"second")  # created again; the replaced chunks' content.deleted is no deletion
    client.delete("match", "out/b")
    client.delete("match", "in/a")
    GridClient(grid.config_path, account="acct2").create_bucket("match")
    GridClient(grid.config_path, account="acct2").put("match", "in/z", b"another account")

    wait_for("the deletion's call", lambda: calls(grid, "on-del"), 30)
    wait_for("the agent to be idle", lambda: idle(grid), 30)
    new, deleted = calls(grid, "on-new"), calls(grid, "on-del")
    assert sorted(c["target"] for c in new) == ["match/in/a", "match/in/c", "match/in/c"]
    assert [(c["event"], c["target"]) for c in deleted] == [("content.deleted", "match/in/a")]
    assert all(c["ok"] for c in new + deleted)
    latest = [c for c in new if c["target"] == "match/in/c"][-1]  # one object's calls run in order
    assert latest["stderr"] == "content.new match in/c\n"

    assert node_of(latest["node"]) == first_chunk_node(grid, client, "match", "in/c")
    cfg = grid.config()
    runners = ConscienceClient(cfg.conscience_url, cfg.secret).services(RUNNER_TYPE)
    assert sorted(node_of(r["location"]) for r in runners) == ["site1.rack1.node1", "site1.rack1.node2"]


def test_a_failing_function_is_retried_then_a_dead_letter(grid: LocalGrid, client: GridClient,
                                                           source_file: Path) -> None:
    register(grid, FunctionSpec("fails", ("created",), "userfns:fail", bucket="bad", source=source_file.read_text()))
    client.create_bucket("bad")
    client.put("bad", "x", b"poison")
    dead = wait_for("a dead letter", lambda: dead_letters(grid, "fails"), 30)
    assert dead[0]["attempts"] == MAX_ATTEMPTS
    assert dead[0]["error"] == "FunctionFailed: RuntimeError: refusing x"
    assert dead[0]["event"]["data"]["key"] == "x"
    logged = calls(grid, "fails")
    assert len(logged) == MAX_ATTEMPTS and not any(c["ok"] for c in logged)
    assert "RuntimeError: refusing x" in logged[-1]["stderr"]  # the traceback is kept
    wide = {**os.environ, "COLUMNS": "300"}  # rich wraps the table to the terminal's width
    assert "function:fails" in run_grid_cli(grid.config_path, "events", "--dead", text=True, env=wide).stdout

    # Removed, its replayed dead letter is dropped rather than failing again.
    cli(grid, "function", "remove", "fails")
    wait_for("the agent to drop fails", lambda: not any("function:fails" in names for names in agent(grid).call(
        "GET", "/v1/status")["handlers"].values()), 10)
    cli(grid, "events", "--retry", str(dead[0]["id"]))
    wait_for("the replay to be dropped", lambda: not dead_letters(grid, "fails") and idle(grid), 10)
    assert len(calls(grid, "fails")) == MAX_ATTEMPTS


def test_calls_past_their_time_or_memory_limit_are_stopped(grid: LocalGrid, client: GridClient,
                                                           source_file: Path) -> None:
    source = source_file.read_text()
    register(grid, FunctionSpec("slow", ("created",), "userfns:slow", bucket="limits", prefix="slow/", timeout=1.0,
                                source=source))
    register(grid, FunctionSpec("hog", ("created",), "userfns:hog", bucket="limits", prefix="hog/", memory_mb=256,
                                source=source))
    client.create_bucket("limits")
    started = time.monotonic()
    client.put("limits", "slow/1", b"takes a minute")
    client.put("limits", "hog/1", b"takes 2 GiB")
    slow = wait_for("the slow call's dead letter", lambda: dead_letters(grid, "slow"), 30)
    hog = wait_for("the hog's dead letter", lambda: dead_letters(grid, "hog"), 30)
    assert time.monotonic() - started < 20  # three calls of a 60 s sleep did not run out
    assert slow[0]["error"] == "FunctionFailed: Timeout: stopped after its time limit of 1 s"
    assert hog[0]["error"] == "FunctionFailed: MemoryError: over the memory limit of 256 MiB"
    pids = [int(c["stderr"].split()[1]) for c in calls(grid, "slow")]
    assert len(pids) == MAX_ATTEMPTS
    assert not any(pid_alive(p) for p in pids)  # killed, not left sleeping
    # The runners count each call by outcome, behind the namespace secret.
    secret = grid.config().secret
    scraped = [requests.get(f"{s.url}/metrics", headers={SECRET_HEADER: secret}, timeout=5).text
               for s in grid.services() if s.type == "functions"]
    samples = [(s.labels, s.value) for text in scraped for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "grid_function_calls_total"]
    counted = {(lab["function"], lab["outcome"]): 0.0 for lab, _ in samples}
    for lab, v in samples:
        counted[(lab["function"], lab["outcome"])] += v
    assert counted[("slow", "timeout")] == MAX_ATTEMPTS and counted[("hog", "memory")] == MAX_ATTEMPTS, counted
    assert all(requests.get(f"{s.url}/metrics", timeout=5).status_code == 401
               for s in grid.services() if s.type == "functions")


def test_cli_add_list_logs_remove(grid: LocalGrid, client: GridClient, source_file: Path) -> None:
    bad = cli(grid, "function", "add", "evil", "--on", "created", "--run", "os;import shutil:rmtree", check=False)
    assert bad.returncode == 1 and "--run must be module.path:function" in bad.stderr
    bad = cli(grid, "function", "add", "evil", "--on", "moved", "--run", "a:b", check=False)
    assert bad.returncode == 1 and "--on must be among" in bad.stderr

    cli(grid, "function", "add", "cli-fn", "--on", "created", "--on", "updated", "--bucket", "clib",
        "--run", "userfns:record", "--source", str(source_file), "--timeout", "5", "--memory", "300")
    again = cli(grid, "function", "add", "cli-fn", "--on", "created", "--run", "userfns:record", check=False)
    assert again.returncode == 1 and "already exists" in again.stderr
    listed = {f["name"]: f for f in json.loads(cli(grid, "function", "list", "--json").stdout)}
    assert listed["cli-fn"]["on"] == ["created", "updated"] and listed["cli-fn"]["bucket"] == "clib"
    assert listed["cli-fn"]["timeout"] == 5 and listed["cli-fn"]["memory_mb"] == 300 and listed["cli-fn"]["source"]
    assert "cli-fn" in cli(grid, "function", "list").stdout

    wait_for("the agent to subscribe cli-fn", lambda: "function:cli-fn" in agent(grid).call(
        "GET", "/v1/status")["handlers"].get("content.updated", []), 10)
    client.create_bucket("clib")
    client.put("clib", "k", b"v")
    client.set_properties("clib", "k", {"a": "b"})
    wait_for("two calls", lambda: len(calls(grid, "cli-fn")) == 2, 30)
    logs = json.loads(cli(grid, "function", "logs", "cli-fn", "--json").stdout)
    assert [c["event"] for c in logs] == ["content.new", "content.updated"] and all(c["ok"] for c in logs)
    text = cli(grid, "function", "logs", "cli-fn", "--stderr").stdout
    assert "content.updated clib/k" in text and "content.updated clib k" in text

    cli(grid, "function", "remove", "cli-fn")
    assert "cli-fn" not in {f["name"] for f in json.loads(cli(grid, "function", "list", "--json").stdout)}
    wait_for("the agent to drop cli-fn", lambda: not any("function:cli-fn" in names for names in agent(grid).call(
        "GET", "/v1/status")["handlers"].values()), 10)
    client.put("clib", "k2", b"after removal")
    wait_for("the agent to be idle", lambda: idle(grid), 30)
    assert len(calls(grid, "cli-fn")) == 2
    missing = cli(grid, "function", "logs", "cli-fn", check=False)
    assert missing.returncode == 1 and "no function named" in missing.stderr


def test_only_entries_signed_with_the_namespace_secret_run(grid: LocalGrid, tmp_path: Path) -> None:
    spec = FunctionSpec("forged", ("created",), "userfns:record", source="import os\ndef record(e, c): os.remove('x')")
    forged = seal(spec, "not-the-secret")
    with pytest.raises(BadRequest, match="not signed"):
        unseal(forged, grid.config().secret)
    cfg = grid.config()
    runner = ConscienceClient(cfg.conscience_url, cfg.secret).services(RUNNER_TYPE)[0]
    with pytest.raises(BadRequest, match="not signed"):
        JsonClient(f"http://{runner['addr']}", cfg.secret).call("POST", "/v1/call", body={
            "entry": forged, "event": {"type": "content.new", "data": {}}})
    # An entry written into the registry's bucket without the secret's signature is ignored.
    registry = FunctionRegistry(GridClient(grid.config_path))
    registry.add(FunctionSpec("placeholder", ("created",), "a:b"))
    registry.client.put("functions", "forged", json.dumps(forged).encode())
    assert "forged" not in {s.name for s in registry.list()}
    registry.remove("placeholder")
    registry.client.delete("functions", "forged")


def test_a_node_added_gets_its_runner(grid: LocalGrid) -> None:
    started = grid.add_node(volumes=1)
    assert sorted(s.type for s in started) == ["functions", "rawx"]
    cfg = grid.config()
    runners = ConscienceClient(cfg.conscience_url, cfg.secret).services(RUNNER_TYPE)
    assert "site1.rack1.node3" in {node_of(r["location"]) for r in runners}
