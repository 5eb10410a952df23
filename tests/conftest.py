"""Fixtures shared by the test suite: real service processes on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
import requests

from gridfs.common.config import GridConfig
from gridfs.common.failpoints import ENV

if TYPE_CHECKING:
    from gridfs.cli.local import LocalGrid, LocalService
    from gridfs.client.grid import GridClient


@pytest.fixture
def grid_config(tmp_path: Path) -> GridConfig:
    """A namespace config with a fresh secret; services are added by each test."""
    cfg = GridConfig(secret=secrets.token_hex(16))
    cfg.save(tmp_path / "grid.toml")
    return cfg


def run_grid_cli(config: Path, *args: str, check: bool = True, **kwargs: object) -> subprocess.CompletedProcess:
    """Run the real ``grid`` command line against a grid."""
    proc = subprocess.run(
        [sys.executable, "-m", "gridfs.cli.main", "--config", str(config), *args],
        capture_output=True,
        **kwargs,  # type: ignore[arg-type]
    )
    if check and proc.returncode:
        raise AssertionError(f"grid {' '.join(args)} exited {proc.returncode}: {proc.stderr!r}")
    return proc


@pytest.fixture(scope="module")
def local_grid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalGrid]:
    """A running 3-node x 3-volume grid shared by a module's tests (not to be damaged)."""
    from gridfs.cli.local import LocalGrid

    grid = LocalGrid(tmp_path_factory.mktemp("grid"))
    grid.up(nodes=3, volumes=3)
    try:
        yield grid
    finally:
        grid.down()


@pytest.fixture(scope="module")
def s3_grid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalGrid]:
    """A small grid (one node, three volumes) with one S3 gateway worker, shared by a module of S3 tests."""
    from gridfs.cli.local import LocalGrid

    grid = LocalGrid(tmp_path_factory.mktemp("s3grid"))
    grid.up(nodes=1, volumes=3, s3_port=0, s3_workers=1, webhdfs_port=None)
    try:
        yield grid
    finally:
        grid.down()


@pytest.fixture(scope="module")
def s3_endpoint(s3_grid: LocalGrid) -> str:
    """The URL of ``s3_grid``'s S3 gateway."""
    return s3_grid.config().extra["s3"]["url"]


@pytest.fixture
def fresh_grid(tmp_path: Path) -> Iterator[LocalGrid]:
    """A grid of its own for a test that kills, locks or fills services."""
    from gridfs.cli.local import LocalGrid

    grid = LocalGrid(tmp_path / "grid")
    grid.up(nodes=3, volumes=3)
    try:
        yield grid
    finally:
        grid.down()


def chunk_files(data: Path) -> dict[Path, tuple[int, int]]:
    """Every chunk file under a grid's volumes -> (inode, mtime_ns); packed chunks are not files (see
    ``stored_chunks``)."""
    out = {}
    for path in data.glob("node*/vol*/*/*"):
        if path.is_file() and ".tmp-" not in path.name and path.parent.name != "packs":
            st = path.stat()
            out[path] = (st.st_ino, st.st_mtime_ns)
    return out


@dataclass(frozen=True)
class Held:
    """A chunk found on a volume: in a file of its own or packed (gridfs.storage.packs)."""

    volume: Path
    identity: tuple  # (inode, mtime_ns) of a file, ("pack", number, offset) of a packed chunk: unchanged = unmoved
    ref: dict  # its back-reference (object path, content id, position...)
    path: Path | None = None  # the file, for a chunk that has one


def held_chunks(data: Path) -> dict[str, Held]:
    """Every chunk under a grid's volumes, by chunk id, whether in a file or in a pack."""
    out = {}
    for path, ident in chunk_files(data).items():
        try:
            ref = json.loads(os.getxattr(path, "user.grid.ref." + path.name))
        except (OSError, ValueError):
            ref = {}
        out[path.name] = Held(path.parent.parent, ident, ref, path)
    for db in data.glob("node*/vol*/packs/index.db"):
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            for chunk_id, pack, offset, ref in conn.execute("SELECT chunk_id, pack, offset, ref FROM chunks"):
                out[chunk_id] = Held(db.parent.parent, ("pack", pack, offset), json.loads(ref))
    return out


def _packed_place(volume: Path, chunk_id: str) -> tuple[Path, int, int] | None:
    """(pack file, offset, size) of a packed chunk, None when the volume packs no such chunk."""
    db = volume / "packs" / "index.db"
    if not db.exists():
        return None
    with contextlib.closing(sqlite3.connect(db)) as conn:
        row = conn.execute("SELECT pack, offset, size FROM chunks WHERE chunk_id = ?", (chunk_id,)).fetchone()
    return None if row is None else (volume / "packs" / f"{row[0]:08d}.pack", row[1], row[2])


def chunk_size(volume: Path, chunk_id: str) -> int:
    """The size of a chunk a volume holds, in a file or packed."""
    path = volume / chunk_id[:3] / chunk_id
    if path.is_file():
        return path.stat().st_size
    place = _packed_place(volume, chunk_id)
    if place is None:
        raise FileNotFoundError(f"{chunk_id} is not on {volume}")
    return place[2]


def volume_holds(volume: Path, chunk_id: str) -> bool:
    """Whether a volume holds a chunk, in a file or packed."""
    return (volume / chunk_id[:3] / chunk_id).is_file() or _packed_place(volume, chunk_id) is not None


def lose_chunk(volume: Path, chunk_id: str) -> None:
    """Make a chunk vanish from a volume behind its server's back (a lost file, or a lost pack index row)."""
    path = volume / chunk_id[:3] / chunk_id
    if path.is_file():
        path.unlink()
        return
    assert _packed_place(volume, chunk_id) is not None, f"{chunk_id} is not on {volume}"
    with contextlib.closing(sqlite3.connect(volume / "packs" / "index.db")) as conn, conn:
        conn.execute("DELETE FROM chunks WHERE chunk_id = ?", (chunk_id,))


def corrupt_chunk(volume: Path, chunk_id: str, offset: int | None = None, length: int = 1) -> None:
    """Flip ``length`` bytes of a chunk at ``offset`` (default: its middle) where they lie on the disk."""
    path = volume / chunk_id[:3] / chunk_id
    if path.is_file():
        base, size = 0, path.stat().st_size
    else:
        place = _packed_place(volume, chunk_id)
        assert place is not None, f"{chunk_id} is not on {volume}"
        path, base, size = place
    at = base + (size // 2 if offset is None else offset)
    with open(path, "r+b") as f:
        f.seek(at)
        raw = f.read(length)
        f.seek(at)
        f.write(bytes(b ^ 0xFF for b in raw))


def stored_chunks(cfg: GridConfig, svc: LocalService) -> int:
    """How many chunks a storage server holds, in files and in packs (its own count)."""
    from gridfs.common.http import SECRET_HEADER

    r = requests.get(f"http://{svc.addr}/info", headers={SECRET_HEADER: cfg.secret}, timeout=10)
    r.raise_for_status()
    return int(r.json()["chunks"])


def volume(svc: LocalService) -> Path:
    """The volume folder of a local storage server."""
    return Path(svc.args[svc.args.index("--volume") + 1])


def rawx_of(grid: LocalGrid, url: str) -> LocalService:
    """The local storage server a chunk URL names: by service id, or by address for an old-form URL."""
    from gridfs.storage.client import parse_chunk_url

    ref = parse_chunk_url(url)
    for svc in grid.services():
        if svc.type == "rawx" and (ref.addr == svc.addr if ref.service_id is None
                                   else (volume(svc) / "service.id").read_text() == ref.service_id):
            return svc
    raise AssertionError(f"no storage server of the grid holds {url}")


T = TypeVar("T")


def wait_for(what: str, check: Callable[[], T], timeout: float = 30.0, every: float = 0.05) -> T:
    """Poll ``check`` until it returns something true and return that; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)
    return value


def file_digest(path: Path, algorithm: Callable[[], Any]) -> str:
    """Hex digest of a local file, read in 8 MiB blocks (``algorithm``: hashlib.sha256, xxhash.xxh3_128...)."""
    h = algorithm()
    with open(path, "rb") as f:
        while block := f.read(8 << 20):
            h.update(block)
    return h.hexdigest()


def object_digest(client: GridClient, bucket: str, key: str, algorithm: Callable[[], Any]) -> str:
    """Hex digest of an object, streamed from the grid."""
    h = algorithm()
    for block in client.get_stream(bucket, key):
        h.update(block)
    return h.hexdigest()


@pytest.fixture
def crashing_grid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[LocalGrid, Path]]:
    """A grid whose services (and those restarted during the test) honour failpoints armed in ``points``."""
    from gridfs.cli.local import LocalGrid

    points = tmp_path / "failpoints"
    points.mkdir()
    monkeypatch.setenv(ENV, str(points))
    grid = LocalGrid(tmp_path / "grid")
    grid.up(nodes=3, volumes=2, s3_port=None)
    try:
        yield grid, points
    finally:
        grid.down()


class Restarter(threading.Thread):
    """Starts the meta2 service again whenever it dies, and counts the deaths."""

    def __init__(self, grid: LocalGrid) -> None:
        super().__init__(daemon=True)
        self.grid, self.deaths, self.stop = grid, 0, threading.Event()

    def run(self) -> None:
        from gridfs.cli.local import pid_alive

        while not self.stop.wait(0.05):
            for svc in self.grid.services():
                if svc.type == "meta2" and not pid_alive(svc.pid):
                    self.deaths += 1
                    self.grid.restart(svc.name)


def drained(grid: LocalGrid, secret: str) -> bool:
    for svc in grid.services():
        if svc.type in ("meta1", "meta2"):
            page = requests.get(f"{svc.url}/v1/outbox", headers={"X-Grid-Secret": secret}, timeout=5).json()
            if page["events"]:
                return False
    return True
