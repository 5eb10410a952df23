"""The storage server as a real process: chunk API, checksums, bad input, quota, links."""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import crc32c
import pytest
import requests
import xxhash

from gridfs.common.config import GridConfig
from gridfs.common.errors import AlreadyExists, ChecksumMismatch, NoSuchChunk, VolumeFull
from gridfs.common.service import SpawnedService, spawn_service
from gridfs.storage.client import ChunkClient, chunk_url, legacy_chunk_url
from gridfs.storage.store import _supports_direct

ID = "A" * 64


def h(data: bytes) -> str:
    return xxhash.xxh3_64_hexdigest(data)


def stored(vol: Path) -> list[Path]:
    """Files in the volume's chunk folders, whole or temporary (``service.id`` sits above them)."""
    return [p for p in vol.glob("*/*") if p.is_file()]


@pytest.fixture(params=["direct", "buffered"])
def rawx(grid_config: GridConfig, tmp_path: Path,
         request: pytest.FixtureRequest) -> Iterator[tuple[SpawnedService, Path]]:
    """A storage server keeping every chunk in a file of its own (these tests look at the files; packed
    chunks: tests/test_batch.py), once writing and reading them straight to and from the disk (O_DIRECT,
    the default) and once through the page cache (``--buffered-writes``, whose large reads go out with
    sendfile)."""
    vol = tmp_path / "vol"
    svc = spawn_service("gridfs.storage", ["--config", str(grid_config.path), "--volume", str(vol),
                                           "--location", "s.r.h.v", "--max-bytes", str(64 << 20),
                                           "--pack-below", "0",
                                           *(["--buffered-writes"] if request.param == "buffered" else [])],
                        tmp_path / "run", "rawx")
    yield svc, vol
    svc.stop()


def test_round_trip_ranges_head_delete(rawx: tuple[SpawnedService, Path], grid_config: GridConfig) -> None:
    svc, vol = rawx
    c = ChunkClient(grid_config.secret)
    data = os.urandom((8 << 20) + 333)
    url = legacy_chunk_url(svc.addr, ID)
    c.put(url, data, chunk_hash=h(data), headers={"X-Grid-Content-Path": "a/b"})
    assert (vol / ID[:3] / ID).stat().st_size == len(data)
    assert bytes(c.get(url)) == data
    for off, n in [(0, 1), (1, 1 << 20), ((1 << 20) - 1, 2), (len(data) - 7, 7), (5_000_001, 3_000_000)]:
        assert bytes(c.get(url, offset=off, length=n)) == data[off : off + n]
    buf = bytearray(100)
    assert bytes(c.get(url, offset=10, length=100, into=memoryview(buf))) == data[10:110]
    assert c.head(url)["x-grid-chunk-hash"] == h(data)
    with pytest.raises(AlreadyExists):
        c.put(url, data, chunk_hash=h(data))
    c.delete(url)
    with pytest.raises(NoSuchChunk):
        c.get(url)


def test_secret_required(rawx: tuple[SpawnedService, Path], grid_config: GridConfig) -> None:
    svc, _ = rawx
    assert requests.get(f"{svc.url}/chunk/{ID}", timeout=5).status_code == 401
    assert requests.get(f"{svc.url}/chunk/{ID}", headers={"X-Grid-Secret": "no"}, timeout=5).status_code == 403
    assert requests.get(f"{svc.url}/health", timeout=5).status_code == 200
    # /metrics too, unless grid.toml says [metrics] public = true (tests/test_metrics.py)
    assert requests.get(f"{svc.url}/metrics", timeout=5).status_code == 401
    metrics = requests.get(f"{svc.url}/metrics", headers={"X-Grid-Secret": grid_config.secret}, timeout=5)
    assert "grid_rawx_chunks" in metrics.text


@pytest.mark.parametrize("bad", ["..%2F..%2Fetc%2Fpasswd", "a" * 64, "A" * 63, "%00" + "A" * 63, "A" * 65])
def test_bad_chunk_ids_never_reach_the_disk(rawx: tuple[SpawnedService, Path], grid_config: GridConfig,
                                             tmp_path: Path, bad: str) -> None:
    svc, vol = rawx
    r = requests.put(f"{svc.url}/chunk/{bad}", data=b"x", timeout=5,
                     headers={"X-Grid-Secret": grid_config.secret, "X-Grid-Chunk-Hash": h(b"x")})
    assert r.status_code in (400, 404)
    assert not stored(vol)
    assert not (tmp_path / "etc").exists()


def test_hash_mismatch_keeps_nothing(rawx: tuple[SpawnedService, Path], grid_config: GridConfig) -> None:
    svc, vol = rawx
    with pytest.raises(ChecksumMismatch):
        ChunkClient(grid_config.secret).put(legacy_chunk_url(svc.addr, ID), b"data", chunk_hash=h(b"other"))
    assert not stored(vol)


def test_crc32c_instead_of_xxh3_is_verified_and_answered_with_the_kept_hash(
        rawx: tuple[SpawnedService, Path], grid_config: GridConfig) -> None:
    """What the Java connector sends (no xxh3 in the JDK): the server checks the CRC32C, keeps the xxh3_64
    it computes, and answers it so the client can record it in the chunk record."""
    svc, vol = rawx
    data = os.urandom((1 << 20) + 17)
    headers = {"X-Grid-Secret": grid_config.secret, "X-Grid-Chunk-Crc32c": f"{crc32c.crc32c(data):08x}"}
    r = requests.put(f"{svc.url}/chunk/{ID}", data=data, headers=headers, timeout=5)
    assert r.status_code == 201, r.text
    assert r.json() == {"chunk_id": ID, "size": len(data), "hash": h(data)}
    c = ChunkClient(grid_config.secret)
    assert bytes(c.get(legacy_chunk_url(svc.addr, ID))) == data  # reads verify the kept xxh3_64
    assert c.head(legacy_chunk_url(svc.addr, ID))["x-grid-chunk-hash"] == h(data)

    other = "B" * 64
    wrong = {**headers, "X-Grid-Chunk-Crc32c": f"{crc32c.crc32c(data) ^ 1:08x}"}
    r = requests.put(f"{svc.url}/chunk/{other}", data=data, headers=wrong, timeout=5)
    assert (r.status_code, r.json()["error"]["code"]) == (422, "ChecksumMismatch")
    for bad in ({}, {"X-Grid-Chunk-Crc32c": "xyz"}, {"X-Grid-Chunk-Crc32c": "0" * 16}):
        r = requests.put(f"{svc.url}/chunk/{other}", data=data, timeout=5,
                         headers={"X-Grid-Secret": grid_config.secret, **bad})
        assert (r.status_code, r.json()["error"]["code"]) == (400, "BadRequest"), bad
    # Both declared: the xxh3_64 is what counts, as for every other client.
    both = {**wrong, "X-Grid-Chunk-Hash": h(data)}
    assert requests.put(f"{svc.url}/chunk/{other}", data=data, headers=both, timeout=5).status_code == 201
    assert sorted(p.name for p in stored(vol)) == [ID, other]


def test_body_cut_off_mid_way_leaves_no_file(rawx: tuple[SpawnedService, Path], grid_config: GridConfig) -> None:
    svc, vol = rawx
    host, port = svc.addr.split(":")
    with socket.create_connection((host, int(port))) as s:
        s.sendall((f"PUT /chunk/{ID} HTTP/1.1\r\nHost: x\r\nX-Grid-Secret: {grid_config.secret}\r\n"
                   f"X-Grid-Chunk-Hash: {'0' * 16}\r\nContent-Length: {1 << 20}\r\n\r\n").encode())
        s.sendall(os.urandom(1 << 19))
    time.sleep(0.5)
    assert not stored(vol)
    with pytest.raises(NoSuchChunk):
        ChunkClient(grid_config.secret).get(legacy_chunk_url(svc.addr, ID))


def test_corrupt_chunk_is_refused_and_logged(rawx: tuple[SpawnedService, Path], grid_config: GridConfig) -> None:
    svc, vol = rawx
    c = ChunkClient(grid_config.secret)
    data = os.urandom(3 << 20)
    url = legacy_chunk_url(svc.addr, ID)
    c.put(url, data, chunk_hash=h(data))
    path = vol / ID[:3] / ID
    with open(path, "r+b") as f:
        f.seek((2 << 20) + 5)
        f.write(b"\x00\xff\x00")
    with pytest.raises(ChecksumMismatch):
        c.get(url)
    with pytest.raises(ChecksumMismatch):
        c.get(url, offset=(2 << 20) + 1, length=10)
    assert bytes(c.get(url, offset=0, length=1 << 20)) == data[: 1 << 20]  # untouched blocks still serve
    # Ranges large enough to go out with sendfile (buffered volume): verified all the same, the right bytes.
    with pytest.raises(ChecksumMismatch):
        c.get(url, offset=(1 << 20) + 7, length=3 << 19)
    assert bytes(c.get(url, offset=7, length=(2 << 20) - 7)) == data[7 : 2 << 20]
    assert "corrupt" in svc.log_path.read_text() and ID in svc.log_path.read_text()


def test_quota_full_volume_refuses_writes_but_serves_reads(rawx: tuple[SpawnedService, Path],
                                                           grid_config: GridConfig) -> None:
    svc, _ = rawx
    c = ChunkClient(grid_config.secret)
    big = os.urandom(60 << 20)
    c.put(legacy_chunk_url(svc.addr, ID), big, chunk_hash=h(big))
    more = os.urandom(8 << 20)
    with pytest.raises(VolumeFull):
        c.put(legacy_chunk_url(svc.addr, "B" * 64), more, chunk_hash=h(more))
    assert bytes(c.get(legacy_chunk_url(svc.addr, ID), offset=0, length=10)) == big[:10]
    info = requests.get(f"{svc.url}/info", headers={"X-Grid-Secret": grid_config.secret}, timeout=5).json()
    assert info["free_bytes"] == (64 << 20) - len(big)


def test_link_shares_data(rawx: tuple[SpawnedService, Path], grid_config: GridConfig) -> None:
    svc, vol = rawx
    c = ChunkClient(grid_config.secret)
    data = os.urandom(1000)
    url = legacy_chunk_url(svc.addr, ID)
    c.put(url, data, chunk_hash=h(data))
    new = c.link(url, "C" * 64)
    assert new == chunk_url((vol / "service.id").read_text(), "C" * 64)  # the link names the service id
    assert (vol / ID[:3] / ID).stat().st_nlink == 2
    c.delete(url)
    assert bytes(c.get(legacy_chunk_url(svc.addr, "C" * 64))) == data


def test_stale_temp_files_are_removed_at_start(grid_config: GridConfig, tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    (vol / "AAA").mkdir(parents=True)
    stale = vol / "AAA" / f"{ID}.tmp-1234"
    stale.write_bytes(b"half")
    svc = spawn_service("gridfs.storage", ["--config", str(grid_config.path), "--volume", str(vol),
                                           "--location", "s.r.h.v"], tmp_path / "run", "rawx")
    try:
        assert not stale.exists()
    finally:
        svc.stop()


def test_service_id_is_written_once_on_the_volume_and_kept_on_any_port(grid_config: GridConfig,
                                                                        tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    args = ["--config", str(grid_config.path), "--volume", str(vol), "--location", "s.r.h.v"]
    first = spawn_service("gridfs.storage", args, tmp_path / "run", "rawx")
    try:
        service_id = (vol / "service.id").read_text()
        assert re.fullmatch(r"rawx-[0-9a-f]{16}", service_id)
        info = requests.get(f"{first.url}/info", headers={"X-Grid-Secret": grid_config.secret}, timeout=5).json()
        assert info["id"] == service_id
    finally:
        first.stop()
    second = spawn_service("gridfs.storage", args, tmp_path / "run", "rawx")
    try:
        info = requests.get(f"{second.url}/info", headers={"X-Grid-Secret": grid_config.secret}, timeout=5).json()
        assert info["id"] == (vol / "service.id").read_text() == service_id
        assert not list(vol.glob(".service.id.*")), "a temporary id file was left behind"
    finally:
        second.stop()


def test_request_naming_another_service_id_is_refused_and_stores_nothing(
    rawx: tuple[SpawnedService, Path], grid_config: GridConfig
) -> None:
    svc, vol = rawx
    data = os.urandom(3 << 20)
    headers = {"X-Grid-Secret": grid_config.secret, "X-Grid-Chunk-Hash": h(data), "X-Grid-Service-Id": "rawx-other"}
    r = requests.put(f"{svc.url}/chunk/{ID}", data=data, headers=headers, timeout=5)
    assert r.status_code == 421 and r.json()["error"]["code"] == "WrongService"
    assert not stored(vol)
    headers["X-Grid-Service-Id"] = (vol / "service.id").read_text()
    assert requests.put(f"{svc.url}/chunk/{ID}", data=data, headers=headers, timeout=5).status_code == 201


def test_a_reader_leaving_mid_send_costs_the_server_nothing(rawx: tuple[SpawnedService, Path],
                                                            grid_config: GridConfig) -> None:
    """A large GET goes out with sendfile from the open chunk file (buffered volume) or from a pooled
    buffer (direct): a client that reads a little and hangs up must leave no file open and no buffer
    held behind it, and the server serves the next reader whole."""
    svc, _ = rawx
    c = ChunkClient(grid_config.secret)
    data = os.urandom(24 << 20)  # more than the socket buffers take at once: the send is cut mid-file
    url = legacy_chunk_url(svc.addr, ID)
    c.put(url, data, chunk_hash=h(data))
    fds = Path(f"/proc/{svc.process.pid}/fd")
    assert bytes(c.get(url)) == data  # one whole read first: the server's lasting descriptors are open
    before = len(list(fds.iterdir()))
    host, port = svc.addr.rsplit(":", 1)
    for _ in range(5):
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(f"GET /chunk/{ID} HTTP/1.1\r\nHost: x\r\nX-Grid-Secret: {grid_config.secret}\r\n\r\n".encode())
            assert sock.recv(1 << 16).startswith(b"HTTP/1.1 200")
    deadline = time.monotonic() + 10
    while len(list(fds.iterdir())) > before and time.monotonic() < deadline:
        time.sleep(0.1)  # the server notices the hang-ups as its sends fail
    assert len(list(fds.iterdir())) <= before
    assert bytes(c.get(url)) == data


@pytest.mark.parametrize("buffered", [False, True])
def test_chunks_go_straight_to_the_disk_but_their_tail_and_ranges_stay_exact(
        grid_config: GridConfig, tmp_path: Path, buffered: bool) -> None:
    """Chunk files are written with O_DIRECT from the request's (page-aligned) buffer: every whole 4 KiB
    block of the chunk, and its last partial block through the page cache; ``--buffered-writes`` writes
    all of it through the cache. Either way the file holds exactly the bytes sent, and reads verify."""
    vol = tmp_path / "vol"
    svc = spawn_service("gridfs.storage", ["--config", str(grid_config.path), "--volume", str(vol),
                                           "--location", "s.r.h.v", "--pack-below", "0",
                                           *(["--buffered-writes"] if buffered else [])], tmp_path / "run", "rawx")
    try:
        c = ChunkClient(grid_config.secret)
        sizes = [(3 << 20) + 777, 4096 * 5, 4095, (1 << 20) + 1]
        bodies = {f"{i:064X}": os.urandom(n) for i, n in enumerate(sizes)}
        for cid, body in bodies.items():
            c.put(legacy_chunk_url(svc.addr, cid), body, chunk_hash=h(body))
        io = requests.get(f"{svc.url}/info", headers={"X-Grid-Secret": grid_config.secret}, timeout=5).json()["io"]
        assert io["bytes_written"] == sum(sizes)
        # A file system that refuses O_DIRECT (probed by the server at start) is written through the cache.
        straight = not buffered and _supports_direct(vol)
        assert io["direct_bytes_written"] == (sum(n - n % 4096 for n in sizes) if straight else 0)
        for cid, body in bodies.items():
            assert (vol / cid[:3] / cid).read_bytes() == body
            url = legacy_chunk_url(svc.addr, cid)
            assert bytes(c.get(url)) == body
            assert bytes(c.get(url, offset=len(body) - 5, length=5)) == body[-5:]
    finally:
        svc.stop()


def test_a_volume_refusing_an_o_direct_write_falls_back_to_the_cache_and_loses_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Some file systems take O_DIRECT at open (and the start-up probe's one block) but refuse a later write
    or read with EINVAL: the chunk is written (read) again through the page cache, whole, and so is every
    later one."""
    import errno
    import fcntl
    import mmap

    from gridfs.storage import store

    def aligned(n: int) -> tuple[memoryview, bytes]:
        buf = mmap.mmap(-1, 4 << 20)  # page-aligned, as the server's pooled buffers are
        body = os.urandom(n)
        buf[:n] = body
        return memoryview(buf)[:n], body

    (tmp_path / "vol").mkdir()
    (tmp_path / "vol" / ".direct-probe-0badf00d").write_bytes(b"")  # left by a server killed while probing
    vol = store.Volume(tmp_path / "vol")
    assert vol.direct and not list((tmp_path / "vol").glob(".direct-probe-*"))
    view, first = aligned(3 << 20)
    vol.put("F" * 64, view, h(first), {})  # straight to the disk, before any refusal
    assert vol.io.counts["direct_bytes_written"] == 3 << 20
    real_open, real_write = os.open, os.write

    def opening(path: object, flags: int, *args: object) -> int:
        if flags & os.O_DIRECT and not flags & os.O_WRONLY:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, *args)

    def writing(fd: int, data: object) -> int:
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_write(fd, data)

    monkeypatch.setattr(store.os, "open", opening)
    got, _, _ = vol.read("F" * 64, buffers=store.BufferPool())  # refused straight: through the cache, whole
    assert bytes(got) == first and not vol.direct
    vol.direct = True  # and now the writes
    monkeypatch.setattr(store.os, "write", writing)
    bodies = {}
    for i, n in enumerate([(2 << 20) + 5, 3 << 20]):
        view, body = aligned(n)
        cid = f"{i:064X}"
        vol.put(cid, view, h(body), {})
        bodies[cid] = body
    assert not vol.direct
    assert vol.io.counts["direct_bytes_written"] == 3 << 20  # none since the refusals
    for cid, body in bodies.items():
        assert (tmp_path / "vol" / cid[:3] / cid).read_bytes() == body
        got, size, _ = vol.read(cid)
        assert bytes(got) == body and size == len(body)
