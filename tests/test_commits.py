"""Commits whose answer is lost: nothing acknowledged is lost, no chunk of a committed object is deleted.

Real processes: a grid whose services run with GRID_FAILPOINT_DIR set, so a test can kill
the meta2 service after it applied a commit and before it answered. Each test uses a
bucket of its own in one grid, and leaves the grid running.
"""

from __future__ import annotations

import os
import pickle
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from gridfs.cli.local import LocalGrid, LocalService, pid_alive
from gridfs.client.grid import GridClient
from gridfs.common.errors import CommitOutcomeUnknown, OperationFenced, ServiceUnavailable
from gridfs.common.failpoints import ENV, arm
from gridfs.common.http import SECRET_HEADER, JsonClient
from gridfs.directory.client import DirectoryClient
from gridfs.directory.model import ObjectInfo
from tests.conftest import Held, held_chunks, wait_for

META2 = "meta2-1"


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalGrid, Path]]:
    """A 3 x 1 grid (THREECOPIES) whose services arm failpoints from the returned folder."""
    root = tmp_path_factory.mktemp("commits")
    failpoints = root / "failpoints"
    failpoints.mkdir()
    local = LocalGrid(root / "grid")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(ENV, str(failpoints))
        local.up(nodes=3, volumes=1, s3_port=None)
        try:
            yield local, failpoints
        finally:
            local.down()


def client_of(local: LocalGrid, *, timeout: float = 30.0, retry_for: float = 15.0) -> GridClient:
    client = GridClient(local.config_path)
    client.directory = DirectoryClient(client.config.directory_url, client.config.secret,
                                       timeout=timeout, retry_for=retry_for)
    return client


def service(local: LocalGrid, name: str) -> LocalService:
    return next(s for s in local.services() if s.name == name)



def chunk_id(url: str) -> str:
    return url.rsplit("/", 1)[-1]


def on_disk(local: LocalGrid) -> dict[str, Held]:
    """Every chunk of the grid (a file or packed), by chunk id."""
    return held_chunks(local.data)


def content_id_of(held: Held) -> str:
    """The content id a chunk was written for (its back-reference)."""
    return held.ref["content_id"]


def live_chunks(client: GridClient, bucket: str, key: str) -> set[str]:
    info = client.head(bucket, key, chunks=True)
    return {chunk_id(c.url) for mc in info.metachunks for c in mc.chunks}


# -- the directory dies after applying a commit, before answering ------------------------------


@pytest.mark.parametrize("restart", ["while-retrying", "after-giving-up"])
def test_meta2_killed_after_commit_keeps_the_new_version_whole(grid: tuple[LocalGrid, Path], restart: str) -> None:
    local, failpoints = grid
    retrying = restart == "while-retrying"
    client = client_of(local, timeout=5.0, retry_for=15.0 if retrying else 1.0)
    bucket = f"killed-{restart}"
    client.create_bucket(bucket)
    old, new = os.urandom(200_000), os.urandom(1_500_000)
    client.put(bucket, "k", old)  # acknowledged
    victim = service(local, META2)
    arm(failpoints, "meta2.after_commit", "kill")

    def restart_when_dead() -> None:
        wait_for("dead", lambda: not pid_alive(victim.pid))
        local.restart(META2)

    if retrying:  # the restart lands while put() is still retrying its commit
        restarter = threading.Thread(target=restart_when_dead)
        restarter.start()
        try:
            client.put(bucket, "k", new)
        except CommitOutcomeUnknown:
            pass  # allowed: what matters is that nothing was deleted
        finally:
            restarter.join()
    else:  # put() gives up first: the outcome is unknown, so its chunks must stay
        with pytest.raises(CommitOutcomeUnknown, match="kept"):
            client.put(bucket, "k", new)
        restart_when_dead()
    assert not (failpoints / "meta2.after_commit").exists(), "the failpoint never fired"
    assert client.get(bucket, "k") == new
    live = live_chunks(client, bucket, "k")
    assert live <= set(on_disk(local)), "a chunk of the committed object was deleted"


def test_meta2_paused_while_commit_pending_loses_nothing(grid: tuple[LocalGrid, Path]) -> None:
    """The issue's SIGSTOP repro, scaled down: the client times out, the directory resumes later."""
    local, _ = grid
    client = client_of(local, timeout=1.0, retry_for=1.0)
    bucket = "paused"
    client.create_bucket(bucket)
    old, new = os.urandom(200_000), os.urandom(1_500_000)
    client.put(bucket, "k", old)  # acknowledged
    before = set(on_disk(local))
    paused = service(local, META2)

    def pause() -> dict[str, str]:  # every chunk is stored; the commit is next
        os.kill(paused.pid, signal.SIGSTOP)
        return {}

    try:
        with pytest.raises(CommitOutcomeUnknown):
            client.put(bucket, "k", new, before_commit=pause)
        written = {cid: p for cid, p in on_disk(local).items() if cid not in before}
    finally:
        os.kill(paused.pid, signal.SIGCONT)
    assert written and set(written) <= set(on_disk(local)), "the client deleted chunks of an unknown commit"
    (op_id,) = {content_id_of(p) for p in written.values()}
    settled = client_of(local).directory.resolve_op(client.account, bucket, op_id)
    expected = new if settled["state"] == "applied" else old
    assert client.get(bucket, "k") == expected
    live = live_chunks(client, bucket, "k")
    assert live <= set(on_disk(local))
    if settled["state"] == "applied":
        assert live == set(written)


# -- replay and fencing, straight at the directory ------------------------------------------------


def test_replayed_commit_applies_once_and_reports_no_live_chunk_as_garbage(grid: tuple[LocalGrid, Path]) -> None:
    local, _ = grid
    client = client_of(local)
    bucket = "replayed"
    client.create_bucket(bucket)
    client.put(bucket, "k", os.urandom(100_000))
    old = live_chunks(client, bucket, "k")
    data = os.urandom(300_000)
    policy = client.choose_policy(bucket, None, len(data))
    writer, result = client._write(bucket, "k", data, policy, None)  # chunks stored, not committed
    record = ObjectInfo(account=client.account, bucket=bucket, key="k", content_id=writer.headers["X-Grid-Content-Id"],
                        size=result.size, policy=policy.name, chunk_method=policy.chunk_method, hash=result.hash,
                        metachunks=result.metachunks)
    hops = client.locate(bucket, "k")
    url = f"{hops['meta2']['addr']}/v1/meta2/{hops['cid']}/commit"
    body = {"object": record.to_dict(), "if_none_match": False, "op_id": record.content_id}
    first, second = (requests.post(url, json=body, headers={SECRET_HEADER: client.config.secret}, timeout=30)
                     for _ in range(2))
    assert first.status_code == second.status_code == 200
    first, second = first.json(), second.json()
    assert "replayed" not in first and second["replayed"] is True
    assert second["object"] == first["object"]
    new = {chunk_id(c.url) for mc in record.metachunks for c in mc.chunks}
    assert live_chunks(client, bucket, "k") == new
    assert {chunk_id(u) for u in second["garbage"]} == old  # the replaced version's, never the live one's
    assert len(client.list_versions(bucket, prefix="k")["versions"]) == 1
    # The client's own path: the same commit again is answered, not applied.
    again, _garbage = client.directory.commit_object(client.account, bucket, record)
    assert again.to_dict() == ObjectInfo.from_dict(first["object"]).to_dict()
    settled = client.directory.resolve_op(client.account, bucket, record.content_id)
    assert settled["state"] == "applied" and settled["result"]["object"] == first["object"]
    # The replaced version's chunks go (event agent); the live version's stay.
    wait_for("deleted", lambda: not old & set(on_disk(local)))
    assert new <= set(on_disk(local))
    assert client.get(bucket, "k") == data


def test_fenced_commit_is_refused_and_its_chunks_deleted(grid: tuple[LocalGrid, Path]) -> None:
    local, _ = grid
    client = client_of(local)
    bucket = "fenced"
    client.create_bucket(bucket)
    old = os.urandom(100_000)
    client.put(bucket, "k", old)
    before = set(on_disk(local))

    def fence_first() -> dict[str, str]:  # as if a lost commit had been settled before it arrived
        written = {content_id_of(p) for cid, p in on_disk(local).items() if cid not in before}
        (op_id,) = written
        assert client.directory.resolve_op(client.account, bucket, op_id)["state"] == "fenced"
        return {}

    with pytest.raises(OperationFenced):
        client.put(bucket, "k", os.urandom(300_000), before_commit=fence_first)
    assert set(on_disk(local)) <= before, "the chunks of a refused commit were left behind"
    assert client.get(bucket, "k") == old


# -- what JsonClient retries ----------------------------------------------------------------------


@pytest.fixture
def silent_server() -> Iterator[tuple[str, list[socket.socket]]]:
    """A TCP listener that accepts connections and never answers (a hung service)."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.05)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}", accepted
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    listener.close()


def test_post_without_op_id_is_sent_once(silent_server: tuple[str, list[socket.socket]]) -> None:
    url, accepted = silent_server
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable):
        JsonClient(url, "s", timeout=0.3, retry_for=5.0).call("POST", "/x", body={})
    assert time.monotonic() - started < 2.0 and len(accepted) == 1


def test_idempotent_calls_are_retried_for_a_bounded_time(silent_server: tuple[str, list[socket.socket]]) -> None:
    url, accepted = silent_server
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable):
        JsonClient(url, "s", timeout=0.2, retry_for=1.5).call("POST", "/x", body={"op_id": "x" * 8}, idempotent=True)
    took = time.monotonic() - started
    assert 1.5 <= took < 3.5 and len(accepted) >= 3


def test_refused_connections_are_retried_until_the_budget_ends() -> None:
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]  # closed below: nothing listens there any more
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable, match="not answering"):
        JsonClient(f"http://127.0.0.1:{port}", "s", retry_for=1.0).call("POST", "/x", body={})
    assert 1.0 <= time.monotonic() - started < 3.0


def test_json_client_is_picklable_and_fork_safe(grid: tuple[LocalGrid, Path]) -> None:
    """A forked child never talks on its parent's pooled connections; an unpickled client makes its own."""
    local, _ = grid
    cfg = local.config()
    client = JsonClient(cfg.conscience_url, cfg.secret)
    assert client.call("GET", "/v1/services", params={"type": "rawx"})
    parents = client._pool
    pid = os.fork()
    if pid == 0:  # child: exit code 0 only if the call worked on a pool of its own
        ok = False
        try:
            ok = bool(client.call("GET", "/v1/services", params={"type": "rawx"})) and client._pool is not parents
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert client.call("GET", "/v1/services", params={"type": "rawx"})  # the parent's pool still works
    copy = pickle.loads(pickle.dumps(client))
    assert copy.call("GET", "/v1/services", params={"type": "rawx"})


def test_a_kept_connection_past_descriptor_1023_is_still_checked_and_reused(
        grid: tuple[LocalGrid, Path]) -> None:
    """A service holding more than 1023 descriptors (databases, chunk files, connections) still calls its
    peers: the idle check of a kept connection must not use select(2), which refuses such descriptors."""
    import resource

    local, _ = grid
    cfg = local.config()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]  # the next sockets get numbers past 1023
    try:
        client = JsonClient(cfg.conscience_url, cfg.secret)
        for _ in range(3):  # the first call connects, the next ones check and reuse that connection
            assert client.call("GET", "/v1/services", params={"type": "rawx"})
        assert client._pool is not None and client._pool.get().sock.fileno() > 1023
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
