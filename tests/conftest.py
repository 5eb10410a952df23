"""Fixtures shared by the test suite: real service processes on 127.0.0.1."""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
import requests

from gridfs.common.config import GridConfig

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
