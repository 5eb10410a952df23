"""grid-distcp with a webhdfs:// source: a lake kept in grid A is read through A's WebHDFS gateway (fsspec's
``webhdfs`` client, a real WebHDFS server and client pair) and backed up into grid B (grid://), under mpirun.
Then -update copies nothing, a changed file is copied again, and -update -verify finds the one whose bytes
changed behind an unchanged size and modification time."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import xxhash

from grid_distcp.lakegen import generate
from gridfs.cli.local import LocalGrid
from gridfs.client import GridClient
from tests.test_distcp import distcp, log_lines, report

MiB = 1 << 20


@pytest.fixture(scope="module")
def grids(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalGrid, LocalGrid]]:
    """Grid A (with its WebHDFS gateway, as `grid up` starts it) and grid B, in two folders."""
    a = LocalGrid(tmp_path_factory.mktemp("grid-a"))
    b = LocalGrid(tmp_path_factory.mktemp("grid-b"))
    a.up(nodes=1, volumes=3, s3_port=None)
    try:
        b.up(nodes=1, volumes=3, s3_port=None, webhdfs_port=None)
        try:
            yield a, b
        finally:
            b.down()
    finally:
        a.down()


def digest(client: GridClient, bucket: str, key: str) -> str:
    h = xxhash.xxh3_128()
    for block in client.get_stream(bucket, key):
        h.update(block)
    return h.hexdigest()


def assert_same(source: GridClient, backup: GridClient, files: list[str]) -> None:
    stored = {o.key for o in backup.iter_list("backup") if not isinstance(o, str)}
    assert stored == {f"lake/{rel}" for rel in files}
    for rel in files:
        assert digest(backup, "backup", f"lake/{rel}") == digest(source, "lake", f"data/{rel}"), rel


def test_backup_from_webhdfs_then_update_then_verify(grids: tuple[LocalGrid, LocalGrid], tmp_path: Path) -> None:
    a, b = grids
    lake = tmp_path / "lake"
    files = sorted(generate(str(lake), small=40, small_size=32 << 10, medium=3, medium_size=4 * MiB, big=1,
                            big_size=40 * MiB))
    source, backup = GridClient(a.config_path), GridClient(b.config_path)
    source.create_bucket("lake")
    for rel in files:
        source.put_file("lake", f"data/{rel}", lake / rel)
    webhdfs = a.config().extra["webhdfs"]["url"]  # webhdfs://127.0.0.1:PORT, recorded by grid up
    src = f"{webhdfs}/lake/data"

    # The 40 MiB file goes as 8 MiB parts, each read by OPEN at its offset.
    first = distcp(b, tmp_path, src, "grid://backup/lake", "-split-size", "16", "-part-size", "8", ranks=2,
                   name="first")
    assert first.returncode == 0, first.stdout + first.stderr
    assert report(tmp_path, "first")["files_copied"] == report(tmp_path, "first")["files_verified"] == len(files)
    parts = [r for r in log_lines(tmp_path, "first") if r["status"] == "PART"]
    big = next(rel for rel in files if rel.startswith("events/"))
    size = (lake / big).stat().st_size
    assert {r["path"] for r in parts} == {big} and len(parts) == -(-size // (8 * MiB))
    assert sorted(tuple(r["range"]) for r in parts)[-1][1] == size
    assert_same(source, backup, files)

    again = distcp(b, tmp_path, src, "grid://backup/lake", "-update", ranks=2, name="again")
    assert again.returncode == 0, again.stdout + again.stderr
    assert report(tmp_path, "again")["files_copied"] == 0

    # A file rewritten in grid A (a new size, a new modification time) is copied again, alone.
    changed = files[0]
    source.put("lake", f"data/{changed}", os.urandom(5000))
    update = distcp(b, tmp_path, src, "grid://backup/lake", "-update", ranks=2, name="update")
    assert update.returncode == 0, update.stdout + update.stderr
    assert [r["path"] for r in log_lines(tmp_path, "update") if r["status"] == "COPY"] == [changed]
    assert_same(source, backup, files)

    # Other bytes behind the same size, and the old modification time put back with SETTIMES: -update trusts
    # the listing, -update -verify reads both sides and copies the file again.
    sneaky = files[5]
    path = f"/lake/data/{sneaky}"
    http = webhdfs.replace("webhdfs://", "http://") + "/webhdfs/v1"
    before = requests.get(http + path, params={"op": "GETFILESTATUS"}, timeout=30).json()["FileStatus"]
    old = source.get("lake", f"data/{sneaky}")
    source.put("lake", f"data/{sneaky}", bytes(x ^ 0xFF for x in old))
    reset = requests.put(http + path, params={"op": "SETTIMES", "modificationtime": before["modificationTime"]},
                         timeout=30)
    assert reset.status_code == 200, reset.text
    trusting = distcp(b, tmp_path, src, "grid://backup/lake", "-update", ranks=2, name="trusting")
    assert trusting.returncode == 0 and report(tmp_path, "trusting")["files_copied"] == 0
    checking = distcp(b, tmp_path, src, "grid://backup/lake", "-update", "-verify", ranks=2, name="checking")
    assert checking.returncode == 0, checking.stdout + checking.stderr
    checked = report(tmp_path, "checking")
    assert (checked["files_copied"], checked["files_verified"], checked["files_failed"]) == (1, len(files), 0)
    assert [r["path"] for r in log_lines(tmp_path, "checking") if r["status"] == "COPY"] == [sneaky]
    assert_same(source, backup, files)
