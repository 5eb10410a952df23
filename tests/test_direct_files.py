"""Upload sources read straight from the disk (gridfs.common.fileio.SourceFile): a large file that is not in
the page cache is read with O_DIRECT, a cached one through the cache, and either way every byte arrives,
whatever the buffers, offsets and tails; `grid put` and grid-distcp read their sources this way. Large
downloads are written straight to the disk (SinkFile, `grid get`), with the same care for every byte.

Real files on the test's file system; `grid put`, `grid get` and the client library against a local grid.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import run_grid_cli

from gridfs.cli.local import LocalGrid
from gridfs.client import GridClient
from gridfs.common.fileio import DIRECT_READ_MIN, DIRECT_WRITE_MIN, SinkFile, SourceFile, cached
from gridfs.storage.store import _supports_direct

SIZE = DIRECT_READ_MIN + 3 * 4096 + 123  # whole blocks and a tail that is not one


def written(path: Path, size: int = SIZE, *, evicted: bool) -> bytes:
    """A file of random bytes, out of the page cache if ``evicted`` (clean pages are dropped on request)."""
    data = np.random.default_rng(size).bytes(size)
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        if evicted:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        else:
            os.pread(fd, size, 0)
    finally:
        os.close(fd)
    return data


def read_all(f: SourceFile, step: int, aligned: bool = True) -> bytes:
    """Everything ``f`` gives, read ``step`` bytes at a time into a page-aligned buffer (or one byte past)."""
    buf = mmap.mmap(-1, step + 4096)
    view = memoryview(buf)[: step] if aligned else memoryview(buf)[1 : step + 1]
    out = bytearray()
    while n := f.readinto(view):
        out += view[:n]
    return bytes(out)


@pytest.fixture
def direct_ok(tmp_path: Path) -> bool:
    return _supports_direct(tmp_path)


def test_a_large_file_out_of_the_cache_is_read_straight_from_the_disk(tmp_path: Path, direct_ok: bool) -> None:
    data = written(tmp_path / "cold", evicted=True)
    with SourceFile(tmp_path / "cold") as f:  # its probe found the first page out of the cache
        assert f.direct is direct_ok  # tmpfs and the like refuse O_DIRECT: the cache then
        assert read_all(f, 1 << 20) == data  # the tail (not a whole block) comes too
    # From an offset: a whole block is read direct, any other offset through the cache.
    written(tmp_path / "cold", evicted=True)
    with SourceFile(tmp_path / "cold", offset=8192) as f:
        assert f.direct is direct_ok
        assert read_all(f, 1 << 20) == data[8192:]
    with SourceFile(tmp_path / "cold", offset=100) as f:
        assert not f.direct
        assert read_all(f, 1 << 20) == data[100:]


def test_a_cached_or_small_file_is_read_through_the_cache(tmp_path: Path) -> None:
    data = written(tmp_path / "warm", evicted=False)
    with SourceFile(tmp_path / "warm") as f:
        assert not f.direct  # memory is faster than any disk
        assert f.read() == data
    small = written(tmp_path / "small", DIRECT_READ_MIN - 4096, evicted=True)
    with SourceFile(tmp_path / "small") as f:
        assert not f.direct  # read-ahead is worth the copy for small files
        assert f.read() == small


def test_an_unaligned_buffer_turns_a_direct_read_to_the_cache_and_loses_nothing(tmp_path: Path,
                                                                               direct_ok: bool) -> None:
    data = written(tmp_path / "cold", evicted=True)
    with SourceFile(tmp_path / "cold") as f:
        assert f.direct is direct_ok
        first = read_all_once(f, 1 << 20)
        rest = read_all(f, 1 << 20, aligned=False)
        assert not f.direct
    assert first + rest == data


def read_all_once(f: SourceFile, step: int) -> bytes:
    buf = mmap.mmap(-1, step)
    n = f.readinto(buf)
    return bytes(buf[:n])


def test_grid_put_of_a_file_out_of_the_cache_stores_it_exactly(local_grid: LocalGrid, tmp_path: Path) -> None:
    """`grid put` of a large cold file (read with O_DIRECT into the client's pooled buffers), EC and copies."""
    data = written(tmp_path / "cold.bin", evicted=True)
    run_grid_cli(local_grid.config_path, "mb", "cold-sources")
    for policy in ("EC63", "THREECOPIES"):
        written(tmp_path / "cold.bin", evicted=True)
        run_grid_cli(local_grid.config_path, "put", str(tmp_path / "cold.bin"), f"cold-sources/{policy}",
                     "--policy", policy)
        with GridClient(local_grid.config_path) as c:
            assert c.get("cold-sources", policy) == data


def pieces_of(data: bytes, step: int) -> list[memoryview]:
    """``data`` in page-aligned buffers of ``step`` bytes (the last one shorter), as a download yields it."""
    out = []
    for off in range(0, len(data), step):
        buf = mmap.mmap(-1, step)
        n = min(step, len(data) - off)
        buf[:n] = data[off : off + n]
        out.append(memoryview(buf)[:n])
    return out


def sink(path: Path, size: int, pieces: list) -> bool:
    """Write ``pieces`` to a new file through SinkFile; whether it began writing straight to the disk."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        out = SinkFile(fd, size)
        started = out.direct
        for piece in pieces:
            out.write(piece)
        return started
    finally:
        os.close(fd)


def test_a_large_download_is_written_straight_to_the_disk(tmp_path: Path, direct_ok: bool) -> None:
    data = np.random.default_rng(1).bytes(SIZE)
    assert sink(tmp_path / "out", SIZE, pieces_of(data, 1 << 20)) is direct_ok
    fd = os.open(tmp_path / "out", os.O_RDONLY)
    try:
        assert cached(fd, 0) is not direct_ok  # written past the cache: nothing of it is there
    finally:
        os.close(fd)
    assert (tmp_path / "out").read_bytes() == data
    # Pieces that are not aligned (bytes) or not whole blocks go through the cache, the rest as before.
    mixed = [bytes(p) if i % 3 == 1 else p for i, p in enumerate(pieces_of(data, (1 << 20) + 512))]
    sink(tmp_path / "mixed", SIZE, mixed)
    assert (tmp_path / "mixed").read_bytes() == data
    small = data[: DIRECT_WRITE_MIN - 1]
    assert not sink(tmp_path / "small", len(small), pieces_of(small, 1 << 20))
    assert (tmp_path / "small").read_bytes() == small


def test_a_download_refused_straight_writes_goes_through_the_cache_and_loses_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file system that takes O_DIRECT but refuses a write with EINVAL: that piece, and the rest, through the
    cache from the same offset."""
    import errno
    import fcntl

    from gridfs.common import fileio

    real_write, calls, refused = os.write, [], []

    def refusing(fd: int, data: object) -> int:
        calls.append(fd)
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT and len(calls) > 3:
            refused.append(fd)
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_write(fd, data)

    monkeypatch.setattr(fileio.os, "write", refusing)
    data = np.random.default_rng(2).bytes(SIZE)
    direct = sink(tmp_path / "out", SIZE, pieces_of(data, 2 << 20))
    monkeypatch.undo()
    assert (tmp_path / "out").read_bytes() == data
    assert refused == [] if not direct else len(refused) == 1  # refused once, then never asked again


def test_grid_get_of_a_large_object_writes_it_straight_to_the_disk(local_grid: LocalGrid, tmp_path: Path,
                                                                   direct_ok: bool) -> None:
    data = written(tmp_path / "big.bin", evicted=False)
    run_grid_cli(local_grid.config_path, "mb", "direct-downloads")
    run_grid_cli(local_grid.config_path, "put", str(tmp_path / "big.bin"), "direct-downloads/big")
    run_grid_cli(local_grid.config_path, "get", "direct-downloads/big", str(tmp_path / "back.bin"))
    fd = os.open(tmp_path / "back.bin", os.O_RDONLY)
    try:
        assert cached(fd, 0) is not direct_ok
    finally:
        os.close(fd)
    assert (tmp_path / "back.bin").read_bytes() == data
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []


def test_pooled_buffers_are_not_shared_with_a_forked_child() -> None:
    """The client's buffers are anonymous maps (page-aligned, for O_DIRECT); a process that forks with some in
    its pool (the S3 gateway forks its workers) must not share them: each process's writes stay its own."""
    from gridfs.client.buffers import BufferPool

    pool = BufferPool()
    buf = pool.acquire(1 << 20)
    buf[:] = 1
    pool.release(buf)
    pid = os.fork()
    if pid == 0:  # the child takes the same pooled buffer and writes all of it
        try:
            child = pool.acquire(1 << 20)
            child[:] = 2
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert int(pool.acquire(1 << 20).max()) == 1
