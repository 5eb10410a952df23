"""The client library against a live local grid: every operation, every policy, bad input."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
import requests
from conftest import held_chunks, run_grid_cli

from gridfs.cli.local import LocalGrid
from gridfs.client import GridClient
from gridfs.common.config import GridConfig
from gridfs.common.errors import (
    AlreadyExists,
    BadRequest,
    ContainerNotEmpty,
    Forbidden,
    InvalidName,
    InvalidRange,
    NoSuchContainer,
    NoSuchObject,
    Unauthorized,
)

POLICIES = ["SINGLE", "TWOCOPIES", "THREECOPIES", "EC21", "EC42", "EC63", "EC42-ISAL", "EC63-ISAL"]


@pytest.fixture(scope="module")
def client(local_grid: LocalGrid) -> GridClient:
    c = GridClient(local_grid.config_path)
    c.create_bucket("lib", exist_ok=True)
    return c


@pytest.mark.parametrize("policy", POLICIES)
def test_round_trip_and_odd_ranges_for_every_policy(client: GridClient, policy: str) -> None:
    # Bigger than one metachunk for every policy, with a tail that needs padding.
    data = os.urandom(client.config.chunk_size * 2 + 12345)
    info = client.put("lib", f"rt/{policy}", data, policy=policy)
    assert info.size == len(data) and info.policy == policy
    assert client.get("lib", f"rt/{policy}") == data
    for offset, length in [(0, 1), (1, 7), (client.config.chunk_size - 3, 10), (len(data) - 5, 5), (777, 3_000_001)]:
        assert client.get("lib", f"rt/{policy}", offset=offset, length=length) == data[offset : offset + length]
    assert client.get("lib", f"rt/{policy}", offset=len(data)) == b""
    with pytest.raises(InvalidRange):
        client.get("lib", f"rt/{policy}", offset=len(data) + 1)


@pytest.mark.parametrize("policy", ["EC63", "EC63-ISAL"])
def test_degraded_reads_rebuild_from_parity(client: GridClient, policy: str) -> None:
    data = os.urandom(client.config.chunk_size * 7 + 999)
    client.put("lib", f"degraded/{policy}", data, policy=policy)
    for mc in client.head("lib", f"degraded/{policy}", chunks=True).metachunks:
        for chunk in [c for c in mc.chunks if c.sub in (0, 4, 7)]:  # two data chunks and one parity chunk
            client.io.chunks.delete(chunk.url)
    assert client.get("lib", f"degraded/{policy}") == data
    assert client.get("lib", f"degraded/{policy}", offset=12345, length=3_000_000) == data[12345 : 12345 + 3_000_000]


def test_put_from_file_iterator_and_empty(client: GridClient, tmp_path: Path) -> None:
    data = os.urandom(5 << 20)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    assert client.put_file("lib", "src/file", path).size == len(data)
    with open(path, "rb") as f:
        assert client.put("lib", "src/fileobj", f).size == len(data)
    pieces = (data[i : i + 100_003] for i in range(0, len(data), 100_003))
    info = client.put("lib", "src/iter", pieces)
    assert info.size == len(data)
    for key in ("src/file", "src/fileobj", "src/iter"):
        assert client.get("lib", key) == data
    assert client.put("lib", "src/empty", b"").size == 0
    assert client.get("lib", "src/empty") == b""
    out = tmp_path / "out.bin"
    client.get_file("lib", "src/iter", out)
    assert out.read_bytes() == data
    assert b"".join(bytes(p) for p in client.get_stream("lib", "src/iter", offset=3, length=4 << 20)) == data[
        3 : 3 + (4 << 20)
    ]


def test_get_into_a_pipe_or_device_writes_into_it_and_leaves_it_in_place(client: GridClient, local_grid: LocalGrid,
                                                                          tmp_path: Path) -> None:
    """A download goes to a temporary file renamed over the target, so that a failed one leaves nothing
    behind; but `grid get KEY /dev/null` renamed a regular file over /dev/null. A target that exists and is
    not a regular file (a FIFO here, a device) is written into, and stays what it was."""
    import stat
    import threading

    data = os.urandom(3 << 20)
    client.put("lib", "to/pipe", data)
    for via_cli in (False, True):
        fifo = tmp_path / f"pipe-{via_cli}"
        os.mkfifo(fifo)
        got: list[bytes] = []
        reader = threading.Thread(target=lambda f=fifo, out=got: out.append(f.read_bytes()), daemon=True)
        reader.start()  # a daemon: if the FIFO is renamed over, it waits on the old one for ever
        if via_cli:
            run_grid_cli(local_grid.config_path, "get", "lib/to/pipe", str(fifo), timeout=60)
        else:
            client.get_file("lib", "to/pipe", fifo)
        reader.join(timeout=10)
        assert stat.S_ISFIFO(os.stat(fifo).st_mode), "the FIFO was replaced by a file"
        assert got == [data]
        assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_small_objects_get_copies_by_size_rule(client: GridClient) -> None:
    small, large = client.config.policy_for_size(1000), client.config.default_policy
    assert small != large
    assert client.put("lib", "rule/small", b"x" * 1000).policy == small
    assert client.put("lib", "rule/large", os.urandom(2 << 20)).policy == large
    # Streams of unknown length are peeked up to the rule's limit.
    assert client.put("lib", "rule/stream-small", iter([b"x" * 600, b"y" * 400])).policy == small
    big = os.urandom(3 << 20)
    info = client.put("lib", "rule/stream-large", (big[i : i + 65536] for i in range(0, len(big), 65536)))
    assert info.policy == large and client.get("lib", "rule/stream-large") == big


def test_listing_with_delimiter_and_pages(client: GridClient) -> None:
    client.create_bucket("listing")
    keys = sorted([f"a/{i:03d}" for i in range(30)] + ["b/x", "b/y/z", "c", "a.txt"])
    for k in keys:
        client.put("listing", k, b"v")
    flat = [o.key for o in client.iter_list("listing")]
    assert flat == keys
    page = client.list("listing", delimiter="/", max_keys=1000)
    assert page.prefixes == ["a/", "b/"] and [o.key for o in page.objects] == ["a.txt", "c"]
    first = client.list("listing", prefix="a/", max_keys=10)
    assert first.truncated and [o.key for o in first.objects] == keys[1:11]
    second = client.list("listing", prefix="a/", max_keys=10, token=first.next_token)
    assert [o.key for o in second.objects] == keys[11:21]


def test_multipart_is_assembled_without_copying(client: GridClient, local_grid: LocalGrid) -> None:
    parts = [os.urandom(5 << 20), os.urandom(3 << 20), os.urandom(777)]
    upload = client.create_multipart("lib", "mp/obj", policy="EC42")
    infos = [client.upload_part("lib", "mp/obj", upload.upload_id, n + 1, p) for n, p in enumerate(parts)]
    urls = {c.url for part in infos for mc in part.metachunks for c in mc.chunks}
    info = client.complete_multipart("lib", "mp/obj", upload.upload_id, [(i.part_number, i.etag) for i in infos])
    whole = b"".join(parts)
    assert info.size == len(whole)
    assert client.get("lib", "mp/obj") == whole
    edge = len(parts[0]) - 10
    assert client.get("lib", "mp/obj", offset=edge, length=20) == whole[edge : edge + 20]
    located = client.head("lib", "mp/obj", chunks=True)
    assert {c.url for mc in located.metachunks for c in mc.chunks} == urls, "the parts' chunks were copied"
    assert [mc.pos for mc in located.metachunks] == list(range(len(located.metachunks)))


def test_multipart_abort_and_bad_parts(client: GridClient) -> None:
    from gridfs.common.errors import InvalidPart, NoSuchUpload

    upload = client.create_multipart("lib", "mp/aborted")
    part = client.upload_part("lib", "mp/aborted", upload.upload_id, 1, b"abc")
    with pytest.raises(InvalidPart):
        client.complete_multipart("lib", "mp/aborted", upload.upload_id, [(1, "not-the-etag")])
    with pytest.raises(InvalidPart):
        client.complete_multipart("lib", "mp/aborted", upload.upload_id, [(2, "")])
    assert [p.part_number for p in client.list_parts("lib", upload.upload_id)] == [part.part_number]
    client.abort_multipart("lib", "mp/aborted", upload.upload_id)
    with pytest.raises(NoSuchUpload):
        client.list_parts("lib", upload.upload_id)
    assert not client.exists("lib", "mp/aborted")


def test_part_of_an_unknown_upload_is_refused_before_any_chunk_is_written(client: GridClient,
                                                                          local_grid: LocalGrid) -> None:
    from gridfs.common.errors import NoSuchUpload

    def bytes_received() -> float:
        cfg = local_grid.config()
        total = 0.0
        for svc in local_grid.services(cfg):
            if svc.type == "rawx":
                text = requests.get(f"{svc.url}/metrics", headers={"X-Grid-Secret": cfg.secret}, timeout=5).text
                total += sum(float(v) for v in re.findall(r"^grid_rawx_bytes_in_total (\S+)$", text, re.M))
        return total

    before = bytes_received()
    with pytest.raises(NoSuchUpload):
        client.upload_part("lib", "mp/nowhere", "A" * 32, 1, os.urandom(300_000))
    assert bytes_received() == before, "chunks were sent for an upload that does not exist"


def test_copy_links_chunks_and_survives_source_delete(client: GridClient, local_grid: LocalGrid) -> None:
    data = os.urandom(9 << 20)
    src = client.put("lib", "cp/src", data, policy="EC21", properties={"team": "lake"})
    dst = client.copy("lib", "cp/src", "lib", "cp/dst")
    assert dst.properties == {"team": "lake"}
    src_urls = {c.url for mc in client.head("lib", "cp/src", chunks=True).metachunks for c in mc.chunks}
    dst_urls = {c.url for mc in client.head("lib", "cp/dst", chunks=True).metachunks for c in mc.chunks}
    assert not src_urls & dst_urls
    client.delete("lib", "cp/src")
    assert client.get("lib", "cp/dst") == data
    assert src.version


def test_rename_moves_no_data(client: GridClient) -> None:
    client.put("lib", "mv/a", b"hello")
    before = client.head("lib", "mv/a", chunks=True)
    client.rename("lib", "mv/a", "mv/b")
    after = client.head("lib", "mv/b", chunks=True)
    def urls(info: object) -> list[str]:
        return [c.url for mc in info.metachunks for c in mc.chunks]  # type: ignore[attr-defined]

    assert urls(after) == urls(before)
    assert not client.exists("lib", "mv/a")
    assert client.get("lib", "mv/b") == b"hello"


def test_versioning(client: GridClient) -> None:
    client.create_bucket("versions", versioning=True)
    v1 = client.put("versions", "k", b"one")
    v2 = client.put("versions", "k", b"two")
    assert v2.version > v1.version
    assert client.get("versions", "k") == b"two"
    assert client.get("versions", "k", version=v1.version) == b"one"
    marker = client.delete("versions", "k")
    assert marker["delete_marker"]
    assert not client.exists("versions", "k")
    listed = client.list_versions("versions")["versions"]
    assert [(v.delete_marker, v.is_latest) for v in listed] == [(True, True), (False, False), (False, False)]
    client.delete("versions", "k", version=marker["version"])
    assert client.get("versions", "k") == b"two"


def test_deleted_objects_chunks_are_reaped_by_the_event_agent(client: GridClient, local_grid: LocalGrid) -> None:
    info = client.put("lib", "reap/me", os.urandom(3 << 20), policy="THREECOPIES")
    urls = [c.url for mc in client.head("lib", "reap/me", chunks=True).metachunks for c in mc.chunks]
    ids = {u.rsplit("/", 1)[1] for u in urls}

    def present() -> set[str]:
        return set(held_chunks(local_grid.data)) & ids

    assert present() == ids and info.size
    client.delete("lib", "reap/me")
    deadline = time.monotonic() + 10
    while present() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not present(), "the event agent did not delete the chunks of a deleted object"


def test_buckets_and_bad_names(client: GridClient) -> None:
    for bad in ["UP", "ab", "../x", "a..b", "-ab", "x" * 64, "a\x00b", "a/b"]:
        with pytest.raises(InvalidName):
            client.create_bucket(bad)
    client.create_bucket("tmp-bucket")
    with pytest.raises(AlreadyExists):
        client.create_bucket("tmp-bucket")
    client.put("tmp-bucket", "x", b"1")
    with pytest.raises(ContainerNotEmpty):
        client.delete_bucket("tmp-bucket")
    client.delete("tmp-bucket", "x")
    client.delete_bucket("tmp-bucket")
    with pytest.raises(NoSuchContainer):
        client.put("tmp-bucket", "x", b"1")
    with pytest.raises(NoSuchObject):
        client.get("lib", "does/not/exist")
    with pytest.raises(BadRequest):
        client.put("lib", "p", b"1", policy="NOPE")


def test_keys_with_path_tricks(client: GridClient, local_grid: LocalGrid) -> None:
    for key in ["../../etc/passwd", "a/../b", "./x", "/lead", "sp ace/ünï"]:
        client.put("lib", key, key.encode())
        assert client.get("lib", key) == key.encode()
    assert not list(local_grid.data.rglob("passwd"))
    for bad in ["nul\x00key", "x" * 1025, ""]:
        with pytest.raises(InvalidName):
            client.put("lib", bad, b"1")
    assert client.put("lib", "y" * 1024, b"ok").size == 2


def test_wrong_or_missing_secret_is_refused(local_grid: LocalGrid, tmp_path: Path) -> None:
    cfg = local_grid.config()
    for secret, error in [("wrong", Forbidden), ("", Unauthorized)]:
        bad = GridConfig.from_dict({**cfg.to_dict(), "namespace": {**cfg.to_dict()["namespace"], "secret": secret}})
        with pytest.raises(error):
            GridClient(bad).list_buckets()


def test_cli_errors_are_clear_and_nonzero(local_grid: LocalGrid, tmp_path: Path) -> None:
    missing = run_grid_cli(local_grid.config_path, "get", "nosuchbucket/key", str(tmp_path / "o"), check=False)
    assert missing.returncode == 1 and b"nosuchbucket" in missing.stderr
    assert not (tmp_path / "o").exists()
    bad = run_grid_cli(local_grid.config_path, "mb", "Bad_Name", check=False)
    assert bad.returncode == 1 and b"invalid bucket name" in bad.stderr
    usage = run_grid_cli(local_grid.config_path, "frobnicate", check=False)
    assert usage.returncode == 2
