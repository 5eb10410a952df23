"""The directory as a real process: listing at scale, versioning, events, hops, bad input."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from gridfs.common.config import GridConfig
from gridfs.common.errors import InvalidName, NoSuchContainer, NoSuchObject
from gridfs.common.service import SpawnedService, spawn_service
from gridfs.directory.client import DirectoryClient
from gridfs.directory.model import ChunkInfo, Metachunk, ObjectInfo

A = "acct"


@pytest.fixture
def directory(grid_config: GridConfig, tmp_path: Path) -> Iterator[tuple[DirectoryClient, SpawnedService]]:
    svc = spawn_service("gridfs.directory", ["--config", str(grid_config.path), "--data", str(tmp_path / "dir")],
                        tmp_path / "run", "directory")
    yield DirectoryClient(svc.url, grid_config.secret), svc
    svc.stop()


def obj(key: str, url: str = "") -> ObjectInfo:
    chunks = [ChunkInfo(url=url, sub=0, size=1, hash="0" * 16)] if url else []
    return ObjectInfo(account=A, bucket="bkt", key=key, size=1, policy="SINGLE", chunk_method="copies/n=1",
                      metachunks=[Metachunk(pos=0, offset=0, size=1, chunks=chunks)] if url else [])


def model_listing(keys: list[str], prefix: str, delimiter: str, start_after: str) -> list[tuple[str, str]]:
    """S3 semantics, computed independently: ("K", key) and ("P", common prefix) in order."""
    out: list[tuple[str, str]] = []
    for key in sorted(keys):
        if not key.startswith(prefix) or key <= start_after:
            continue
        cut = key.find(delimiter, len(prefix)) if delimiter else -1
        if cut >= 0:
            common = key[: cut + len(delimiter)]
            if not out or out[-1] != ("P", common):
                out.append(("P", common))
        else:
            out.append(("K", key))
    return out


def paged(d: DirectoryClient, bucket: str, prefix: str, delimiter: str, start_after: str,
          max_keys: int) -> list[tuple[str, str]]:
    got: list[tuple[str, str]] = []
    token = ""
    while True:
        page = d.list_objects(A, bucket, prefix=prefix, delimiter=delimiter, start_after=start_after, token=token,
                              max_keys=max_keys)
        entries = sorted([("K", o.key) for o in page.objects] + [("P", p) for p in page.prefixes], key=lambda e: e[1])
        assert len(entries) <= max_keys
        got += entries
        if not page.truncated:
            return got
        assert entries, "a truncated page must make progress"
        token = page.next_token


def test_listing_100k_objects_in_pages(directory: tuple[DirectoryClient, SpawnedService]) -> None:
    d, _ = directory
    d.create_container(A, "big")
    keys = [f"d{i % 37:02d}/s{i % 11}/f{i:06d}" for i in range(99_000)]
    keys += [f"u/ünïcødé/{i}" for i in range(500)] + [f"runs//x{i}" for i in range(300)]
    keys += [f"top{i}" for i in range(200)]
    for i in range(0, len(keys), 5000):
        batch = [ObjectInfo(account=A, bucket="big", key=k, size=len(k)) for k in keys[i : i + 5000]]
        d.commit_objects(A, "big", batch)
    assert d.get_container(A, "big").objects == 100_000
    cases = [("", "", ""), ("", "/", ""), ("d07/", "/", ""), ("d07/s3/", "", ""), ("u/", "/", ""),
             ("runs/", "/", ""), ("d1", "/", "d12"), ("", "/", "d20/zzz"), ("d05/s1/f0", "", "d05/s1/f001000")]
    for prefix, delimiter, start_after in cases:
        expected = model_listing(keys, prefix, delimiter, start_after)
        assert paged(d, "big", prefix, delimiter, start_after, 1000) == expected, (prefix, delimiter, start_after)
    assert paged(d, "big", "d03/", "/", "", 1) == model_listing(keys, "d03/", "/", "")
    first = d.list_objects(A, "big", max_keys=0)
    assert first.objects == [] and first.prefixes == []


def test_versioning_states_and_events(directory: tuple[DirectoryClient, SpawnedService]) -> None:
    d, _ = directory
    d.create_container(A, "bkt")
    v1, g = d.commit_object(A, "bkt", obj("k", "http://h:1/chunk/1"))
    assert g == []
    _, g = d.commit_object(A, "bkt", obj("k", "http://h:1/chunk/2"))
    assert g == ["http://h:1/chunk/1"], "an overwrite without versioning makes the old chunks garbage"
    d.set_container(A, "bkt", versioning="enabled")
    d.commit_object(A, "bkt", obj("k", "http://h:1/chunk/3"))
    assert len(d.list_versions(A, "bkt")["versions"]) == 2
    d.set_container(A, "bkt", versioning="suspended")
    _, g = d.commit_object(A, "bkt", obj("k", "http://h:1/chunk/4"))
    assert g == ["http://h:1/chunk/2"], "suspended: a put replaces the null version only"
    _, g = d.commit_object(A, "bkt", obj("k", "http://h:1/chunk/5"))
    assert g == ["http://h:1/chunk/4"]
    result, g = d.delete_object(A, "bkt", "k")
    assert result["delete_marker"] and g == ["http://h:1/chunk/5"]
    with pytest.raises(NoSuchObject):
        d.get_object(A, "bkt", "k")
    kept = next(v for v in d.list_versions(A, "bkt")["versions"] if not v.delete_marker)
    assert d.get_object(A, "bkt", "k", version=kept.version).key == "k"
    events = d.events()["events"]
    kinds = [e["type"] for e in events]
    assert kinds[0] == "container.new" and kinds.count("content.new") == 5
    deleted = [u for e in events if e["type"] == "content.deleted" for u in e["data"]["chunks"]]
    assert deleted == ["http://h:1/chunk/1", "http://h:1/chunk/2", "http://h:1/chunk/4", "http://h:1/chunk/5"]
    assert v1.version < result["version"]


def test_hops_are_real(directory: tuple[DirectoryClient, SpawnedService], grid_config: GridConfig) -> None:
    d, svc = directory
    h = {"X-Grid-Secret": grid_config.secret}
    for prefix in ("0000", "ABCD", "FFFF"):
        assert requests.get(f"{svc.url}/v1/meta0/{prefix}", headers=h, timeout=5).json()["meta1"] == svc.url
    assert requests.get(f"{svc.url}/v1/meta0/10000", headers=h, timeout=5).status_code == 400
    d.create_container(A, "hop")
    d.commit_object(A, "hop", obj("x", "http://h:1/chunk/9"))
    where = d.locate(A, "hop", "x")
    assert where["prefix"] == where["cid"][:4] and where["meta2"] == svc.url


def test_bad_input_on_the_wire(directory: tuple[DirectoryClient, SpawnedService], grid_config: GridConfig,
                               tmp_path: Path) -> None:
    d, svc = directory
    h = {"X-Grid-Secret": grid_config.secret}
    assert requests.get(f"{svc.url}/v1/meta1?account={A}", timeout=5).status_code == 401
    assert requests.get(f"{svc.url}/v1/meta1?account={A}", headers={"X-Grid-Secret": "x"}, timeout=5).status_code == 403
    for cid in ("..%2F..%2Fx", "0" * 63, "g" * 64):
        assert requests.get(f"{svc.url}/v1/meta2/{cid}/list", headers=h, timeout=5).status_code in (400, 404)
    assert requests.post(f"{svc.url}/v1/meta1/{'0' * 64}", data=b"{not json", headers=h, timeout=5).status_code == 400
    d.create_container(A, "bkt")
    with pytest.raises(InvalidName):
        d.commit_object(A, "bkt", obj("a\x00b"))
    with pytest.raises(NoSuchContainer):
        d.get_object(A, "nope", "k")
    assert not [p for p in tmp_path.rglob("*") if ".." in p.name]


def test_acknowledged_commit_survives_kill_9(grid_config: GridConfig, tmp_path: Path) -> None:
    args = ["--config", str(grid_config.path), "--data", str(tmp_path / "dir")]
    svc = spawn_service("gridfs.directory", args, tmp_path / "run", "directory")
    d = DirectoryClient(svc.url, grid_config.secret)
    d.create_container(A, "bkt")
    d.commit_object(A, "bkt", obj("acked", "http://h:1/chunk/7"))
    os.kill(svc.process.pid, signal.SIGKILL)
    svc.process.wait()
    port = svc.url.rsplit(":", 1)[1]
    again = spawn_service("gridfs.directory", [*args, "--port", port], tmp_path / "run", "directory2")
    try:
        found = DirectoryClient(again.url, grid_config.secret).get_object(A, "bkt", "acked")
        assert found.metachunks[0].chunks[0].url == "http://h:1/chunk/7"
    finally:
        again.stop()
