"""The directory as real processes (meta0, meta1, meta2 services): listing at scale, versioning,
events in the outbox, hops, bad input, crashes."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from gridfs.cli.local import LocalGrid
from gridfs.common.errors import InvalidName, NoSuchContainer, NoSuchObject
from gridfs.common.names import container_id
from gridfs.directory.client import DirectoryClient
from gridfs.directory.model import ChunkInfo, Metachunk, ObjectInfo
from tests.conftest import run_grid_cli

A = "acct"


@pytest.fixture
def directory(tmp_path: Path) -> Iterator[tuple[DirectoryClient, LocalGrid]]:
    """A small grid whose event agent is stopped, so the outboxes keep what the directory wrote."""
    grid = LocalGrid(tmp_path / "grid")
    cfg = grid.up(nodes=1, volumes=1, s3_port=None, meta2=2)
    grid._stop_all([s for s in grid.services() if s.type == "events"])
    try:
        yield DirectoryClient(cfg.directory_url, cfg.secret), grid
    finally:
        grid.down()


def url_of(grid: LocalGrid, name: str) -> str:
    return next(s.url for s in grid.services() if s.name == name)


def outbox(grid: LocalGrid, secret: str) -> list[dict]:
    """Every event waiting in the outboxes of the meta1 and meta2 services, oldest first per database."""
    events = []
    for svc in grid.services():
        if svc.type in ("meta1", "meta2"):
            page = requests.get(f"{svc.url}/v1/outbox?limit=10000", headers={"X-Grid-Secret": secret}, timeout=5)
            events += page.json()["events"]
    return events


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


def test_listing_100k_objects_in_pages(directory: tuple[DirectoryClient, LocalGrid]) -> None:
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


def test_versioning_states_and_events(directory: tuple[DirectoryClient, LocalGrid]) -> None:
    d, grid = directory
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
    events = outbox(grid, d.secret)
    kinds = [e["type"] for e in events]
    assert kinds.count("container.new") == 1 and kinds.count("content.new") == 5
    deleted = [u for e in events if e["type"] == "content.deleted" for u in e["data"]["chunks"]]
    assert deleted == ["http://h:1/chunk/1", "http://h:1/chunk/2", "http://h:1/chunk/4", "http://h:1/chunk/5"]
    assert v1.version < result["version"]


def test_hops_are_real(directory: tuple[DirectoryClient, LocalGrid]) -> None:
    """meta0 -> meta1 -> meta2 are separate services named by id; containers spread over 2 meta2."""
    d, grid = directory
    h = {"X-Grid-Secret": d.secret}
    meta0, meta1 = url_of(grid, "meta0"), url_of(grid, "meta1")
    meta1_id = requests.get(f"{meta1}/health", timeout=5).json()["id"]
    for prefix in ("0000", "ABCD", "FFFF"):
        hop = requests.get(f"{meta0}/v1/meta0/{prefix}", headers=h, timeout=5).json()
        assert hop == {"prefix": prefix, "meta1": meta1_id, "addr": meta1}
    assert requests.get(f"{meta0}/v1/meta0/10000", headers=h, timeout=5).status_code == 400
    meta2_ids = {requests.get(f"{url_of(grid, n)}/health", timeout=5).json()["id"] for n in ("meta2-1", "meta2-2")}
    homes = set()
    for i in range(12):
        d.create_container(A, f"hop{i}")
        d.commit_object(A, f"hop{i}", obj("x", "http://h:1/chunk/9"))
        where = d.locate(A, f"hop{i}", "x")
        assert where["prefix"] == where["cid"][:4] and where["meta1"] == {"id": meta1_id, "addr": meta1}
        homes.add(where["meta2"]["id"])
        record = requests.get(f"{meta1}/v1/meta1/{where['cid']}", headers=h, timeout=5).json()
        assert record["meta2"] == where["meta2"]["id"] and record["meta2_addr"] == where["meta2"]["addr"]
    assert homes == meta2_ids, "meta1 spreads new containers over both meta2 services by score"
    wide = {**os.environ, "COLUMNS": "250"}  # rich cuts lines to 80 columns when not on a terminal
    shown = run_grid_cli(grid.config_path, "--account", A, "locate", "hop0/x", env=wide).stdout.decode()
    hop0 = d.locate(A, "hop0", "x")
    assert meta1_id in shown and hop0["meta2"]["id"] in shown and hop0["cid"][:4] in shown
    listed = run_grid_cli(grid.config_path, "--account", A, "locate", "--json", "hop0/x").stdout.decode()
    assert json.loads(listed)["meta2"]["id"] in meta2_ids


def test_bad_input_on_the_wire(directory: tuple[DirectoryClient, LocalGrid], tmp_path: Path) -> None:
    d, grid = directory
    h = {"X-Grid-Secret": d.secret}
    meta1, meta2 = url_of(grid, "meta1"), url_of(grid, "meta2-1")
    assert requests.get(f"{meta1}/v1/meta1?account={A}", timeout=5).status_code == 401
    assert requests.get(f"{meta1}/v1/meta1?account={A}", headers={"X-Grid-Secret": "x"}, timeout=5).status_code == 403
    for cid in ("..%2F..%2Fx", "0" * 63, "g" * 64):
        assert requests.get(f"{meta2}/v1/meta2/{cid}/list", headers=h, timeout=5).status_code in (400, 404)
    assert requests.post(f"{meta1}/v1/meta1/{'0' * 64}", data=b"{not json", headers=h, timeout=5).status_code == 400
    cid = container_id(A, "bkt")
    assert requests.post(f"{meta2}/v1/meta2/{cid}/commit", json={"op_id": "../../etc", "object": {}}, headers=h,
                         timeout=5).status_code == 400
    d.create_container(A, "bkt")
    with pytest.raises(InvalidName):
        d.commit_object(A, "bkt", obj("a\x00b"))
    with pytest.raises(NoSuchContainer):
        d.get_object(A, "nope", "k")
    assert not [p for p in tmp_path.rglob("*") if ".." in p.name]


def test_acknowledged_commit_survives_kill_9(directory: tuple[DirectoryClient, LocalGrid]) -> None:
    d, grid = directory
    d.create_container(A, "bkt")
    d.commit_object(A, "bkt", obj("acked", "http://h:1/chunk/7"))
    name = next(s.name for s in grid.services() if s.type == "meta2" and
                s.url == d.locate(A, "bkt", "acked")["meta2"]["addr"])
    pid = next(s.pid for s in grid.services() if s.name == name)
    os.kill(pid, signal.SIGKILL)
    grid.restart(name)
    found = DirectoryClient(d.url, d.secret).get_object(A, "bkt", "acked")
    assert found.metachunks[0].chunks[0].url == "http://h:1/chunk/7"


def test_records_travel_as_asdict_made_them_and_share_nothing_with_the_dict() -> None:
    """``to_dict`` builds its dict without dataclasses.asdict's deep copies (a small object's commit paid
    0.18 ms for them): the same dict, and no list or dict shared with the record."""
    import dataclasses

    from gridfs.directory.model import ChunkInfo, ContainerInfo, Metachunk, ObjectInfo, PartInfo

    chunks = [ChunkInfo(url=f"rawx://rawx-0123456789abcdef/{'A' * 63}{i}", sub=i, size=10 + i, hash="ab" * 8)
              for i in range(9)]
    obj = ObjectInfo(account="acct", bucket="bkt", key="k é", version=7, properties={"a": "1", "b": "2"},
                     metachunks=[Metachunk(pos=0, offset=0, size=90, chunks=chunks, missing=[3, 4]),
                                 Metachunk(pos=1, offset=90, size=5)])
    part = PartInfo(upload_id="u" * 16, part_number=2, size=5, metachunks=obj.metachunks)
    box = ContainerInfo(account="acct", bucket="bkt", cid="C" * 64, properties={"x": "y"})
    for record in (obj, part, box):
        assert record.to_dict() == dataclasses.asdict(record)
        assert json.loads(json.dumps(record.to_dict())) == dataclasses.asdict(record)
    d = obj.to_dict()
    d["properties"]["a"] = "changed"
    d["metachunks"][0]["missing"].append(9)
    d["metachunks"][0]["chunks"][0]["size"] = -1
    assert obj.properties["a"] == "1" and obj.metachunks[0].missing == [3, 4] and chunks[0].size == 10
    assert ObjectInfo.from_dict(obj.to_dict()) == obj
