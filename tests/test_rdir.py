"""The reverse index (rdir): it follows the directory through the event agent, it can be
rebuilt from the volumes, it refuses hostile input, and what it raises gets repaired.

One grid for the module (its damage is repaired by each test before it ends); the truth
every test compares the index with is the directory, read object version by version.
"""

from __future__ import annotations

import json
import os
import signal
import urllib.parse
from collections.abc import Iterator

import pytest
from conftest import corrupt_chunk, lose_chunk, rawx_of, run_grid_cli, volume, volume_holds, wait_for

from gridfs.admin.repair import Repairer
from gridfs.cli.local import LocalGrid
from gridfs.client import GridClient
from gridfs.common.errors import GridError
from gridfs.common.http import JsonClient
from gridfs.conscience.client import ConscienceClient
from gridfs.rdir.client import RdirClient
from gridfs.rdir.reindex import reindex
from gridfs.storage.client import parse_chunk_url

Index = dict[str, dict[str, dict]]  # volume -> chunk id -> entry


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalGrid]:
    g = LocalGrid(tmp_path_factory.mktemp("rdir") / "grid")
    # Quick retries: the degraded-write test waits for a repair that fails until a server is back.
    g.up(nodes=3, volumes=3, s3_port=None, webhdfs_port=None, settings={
        "events": {"retry_base": 0.2, "retry_max": 1.0, "poll_interval": 0.05},
        "heal": {"scrub_rate": 0, "index": True, "repair": True}})
    try:
        yield g
    finally:
        g.down()


@pytest.fixture(scope="module")
def client(grid: LocalGrid) -> GridClient:
    return GridClient(grid.config_path)


@pytest.fixture(scope="module")
def rdir(grid: LocalGrid) -> RdirClient:
    return RdirClient.for_grid(grid.config())


def rawx_ids(grid: LocalGrid) -> list[str]:
    cfg = grid.config()
    return sorted(s["id"] for s in ConscienceClient(cfg.conscience_url, cfg.secret).services("rawx"))


def expected(client: GridClient, buckets: list[str]) -> Index:
    """What the index must hold for ``buckets``: every chunk of every object version, by volume."""
    out: Index = {}
    for bucket in buckets:
        for v in client.list_versions(bucket)["versions"]:
            if v.delete_marker:
                continue
            info = client.head(bucket, v.key, version=v.version, chunks=True)
            for mc in info.metachunks:
                for c in mc.chunks:
                    ref = parse_chunk_url(c.url)
                    out.setdefault(ref.service, {})[ref.chunk_id] = {
                        "chunk_id": ref.chunk_id, "container": f"{client.account}/{bucket}", "key": info.key,
                        "version": info.version, "content_id": info.content_id, "pos": f"{mc.pos}.{c.sub}",
                        "size": c.size}
    return out


def fetch_all(rdir: RdirClient, vol: str, limit: int = 1000) -> list[dict]:
    entries, marker = rdir.fetch(vol, "", limit)
    while marker:
        page, marker = rdir.fetch(vol, marker, limit)
        entries += page
    return entries


def indexed(rdir: RdirClient, volumes: list[str], buckets: list[str]) -> Index:
    containers = {f"default/{b}" for b in buckets}
    out: Index = {}
    for vol in volumes:
        for e in fetch_all(rdir, vol):
            if e["container"] in containers:
                out.setdefault(vol, {})[e["chunk_id"]] = e
    return out


def wait_indexed(grid: LocalGrid, client: GridClient, rdir: RdirClient, buckets: list[str]) -> Index:
    want = expected(client, buckets)
    assert want, "the test wrote nothing"
    wait_for("the index to match the directory", lambda: indexed(rdir, rawx_ids(grid), buckets) == want, 20)
    return want


def test_index_follows_writes_overwrites_deletes_renames_multipart_and_repairs(
        grid: LocalGrid, client: GridClient, rdir: RdirClient) -> None:
    client.create_bucket("follow")
    client.create_bucket("follow-versioned", versioning=True)
    client.put("follow", "ec", os.urandom(300_000), policy="EC63")
    client.put("follow", "small", b"first" * 100)
    client.put("follow", "small", b"second" * 100)  # overwrite: the first one's chunks leave the index
    client.put("follow", "gone", b"x" * 1000)
    client.delete("follow", "gone")
    client.rename("follow", "ec", "dir/moved é")  # same chunks, new key and version
    up = client.create_multipart("follow", "multi", policy="EC63")
    parts = [client.upload_part("follow", "multi", up.upload_id, n, os.urandom(70_000)) for n in (1, 2)]
    client.complete_multipart("follow", "multi", up.upload_id, [p.part_number for p in parts])
    client.put("follow-versioned", "v", b"one" * 500)
    client.put("follow-versioned", "v", b"two" * 500)
    client.delete("follow-versioned", "v")  # a delete marker: both versions keep their chunks
    buckets = ["follow", "follow-versioned"]
    want = wait_indexed(grid, client, rdir, buckets)
    keys = {e["key"] for entries in want.values() for e in entries.values()}
    assert keys == {"dir/moved é", "small", "multi", "v"}
    assert sum(len(e) for e in want.values()) == 9 + 3 + 2 * 9 + 2 * 3

    # A repair: one chunk file of the renamed object disappears; the repair's events move its entry.
    info = client.head("follow", "dir/moved é", chunks=True)
    lost = info.metachunks[0].chunks[4]
    lose_chunk(volume(rawx_of(grid, lost.url)), parse_chunk_url(lost.url).chunk_id)
    assert Repairer(client, "follow").repair("dir/moved é").rebuilt == ["0.4"]
    want = wait_indexed(grid, client, rdir, buckets)
    lost_ref = parse_chunk_url(lost.url)
    assert lost_ref.chunk_id not in want.get(lost_ref.service, {})
    new = client.head("follow", "dir/moved é", chunks=True).metachunks[0].chunks
    assert any(want[parse_chunk_url(c.url).service][parse_chunk_url(c.url).chunk_id]["pos"] == "0.4" for c in new)

    # Totals follow too: volumes() counts what fetch lists.
    totals = {v["volume"]: (v["chunks"], v["bytes"]) for v in rdir.volumes()}
    for vol in rawx_ids(grid):
        entries = fetch_all(rdir, vol, limit=3)
        assert totals.get(vol, (0, 0)) == (len(entries), sum(e["size"] for e in entries)) == (
            rdir.count(vol), totals.get(vol, (0, 0))[1])


def test_reindex_from_the_volumes_gives_the_same_entries(
        grid: LocalGrid, client: GridClient, rdir: RdirClient) -> None:
    client.create_bucket("reindex")
    client.put("reindex", "ec", os.urandom(200_000), policy="EC63")
    client.put("reindex", "copies", b"c" * 3000)
    client.rename("reindex", "copies", "renamed")  # the chunks' back-references still say "copies"
    up = client.create_multipart("reindex", "multi", policy="EC63")
    for n in (1, 2):  # the parts' chunks carry positions within the part, the object renumbers them
        client.upload_part("reindex", "multi", up.upload_id, n, os.urandom(50_000))
    client.complete_multipart("reindex", "multi", up.upload_id, [1, 2])
    wait_indexed(grid, client, rdir, ["reindex"])
    volumes = rawx_ids(grid)
    before = {vol: fetch_all(rdir, vol) for vol in volumes}
    first, rest = volumes[0], volumes[1:]
    for vol in volumes:
        rdir.drop(vol)
        assert rdir.count(vol) == 0 and fetch_all(rdir, vol) == []
    for vol in rest:
        assert reindex(grid.config(), vol) == len(before[vol])
    # The operator's way: grid reindex SERVICE.
    out = run_grid_cli(grid.config_path, "reindex", first, "--json", "--data", str(grid.data))
    assert json.loads(out.stdout) == {first: len(before[first])}
    assert {vol: fetch_all(rdir, vol) for vol in volumes} == before


def test_hostile_volume_ids_and_bad_bodies_get_clear_4xx(grid: LocalGrid, rdir: RdirClient) -> None:
    cfg = grid.config()
    http = JsonClient(f"http://{rdir.address_for('')}", cfg.secret, retry_for=0)

    def refused(method: str, path: str, status: int, words: str, **kwargs: object) -> None:
        with pytest.raises(GridError) as err:
            http.call(method, path, **kwargs)  # type: ignore[arg-type]
        assert err.value.status == status and words in str(err.value), (path, str(err.value))

    for vol in ("..", "../../etc/passwd", "Rawx-UPPER", "a", "x" * 200, "vol\x00ume", "rawx-é"):
        refused("GET", f"/v1/rdir/v/{urllib.parse.quote(vol, safe='')}/count", 400, "invalid service id")
    vol = "rawx-hostile0000"
    good = {"chunk_id": "A" * 64, "container": "acct/bkt", "key": "k", "version": 1, "content_id": "C",
            "pos": "0.1", "size": 5}
    push = f"/v1/rdir/v/{vol}/push"
    for body, words in (
        ([good], "JSON object"), ({"entries": good}, "JSON list"), ({"entries": [{"chunk_id": "A" * 64}]}, "lacks"),
        ({"entries": [{**good, "chunk_id": "../x"}]}, "invalid chunk id"),
        ({"entries": [{**good, "size": -1}]}, "size"), ({"entries": [{**good, "version": "1"}]}, "version"),
        ({"entries": [{**good, "pos": "1"}]}, "pos"), ({"entries": [{**good, "container": "nobucket"}]}, "container"),
        ({"entries": [{**good, "key": "a\x00b"}]}, "NUL"), ({"entries": [good, 7]}, "JSON object"),
    ):
        refused("POST", push, 400, words, body=body)
    refused("POST", f"/v1/rdir/v/{vol}/delete", 400, "invalid chunk id", body={"chunk_ids": ["nope"]})
    refused("GET", f"/v1/rdir/v/{vol}/fetch", 400, "marker", params={"marker": "[1, 2"})
    refused("GET", f"/v1/rdir/v/{vol}/fetch", 400, "limit", params={"limit": "many"})
    refused("PUT", f"/v1/rdir/v/{vol}/job", 400, "JSON object", body=["running"])
    refused("POST", f"/v1/rdir/v/{vol}/report", 400, "kind",
            body={"findings": [{"chunk_id": "A" * 64, "kind": "weird"}]})
    refused("POST", "/v1/rdir/apply", 400, "map volume ids", body={"push": [good]})
    refused("POST", "/v1/rdir/apply", 400, "invalid service id", body={"push": {"../x": [good]}})
    with pytest.raises(GridError) as err:
        JsonClient(http.base_url, "wrong", retry_for=0).call("GET", "/v1/rdir/volumes")
    assert err.value.status == 403
    # Refused input left nothing behind: no volume was created, no entry stored.
    assert vol not in {v["volume"] for v in rdir.volumes()}
    assert not list((grid.data / "rdir" / "volumes").glob("*hostile*"))

    # Paging is exact across awkward keys, versions and page sizes; the marker is opaque but stable.
    keys = ["b", "a", "a/b", "é", "a b", "\u4e2d", "A", "a" * 1024]
    entries = [{**good, "chunk_id": f"{i:064X}", "key": keys[i % len(keys)], "version": i % 3}
               for i in range(60)]
    rdir.push(vol, entries)
    rdir.push(vol, entries[:10])  # idempotent
    order = sorted(entries, key=lambda e: (e["container"], e["key"], e["version"], e["chunk_id"]))
    for limit in (1, 7, 60, 1000):
        assert fetch_all(rdir, vol, limit) == order
    rdir.delete(vol, [e["chunk_id"] for e in entries[:30]] * 2)
    assert rdir.count(vol) == 30
    rdir.drop(vol)
    assert rdir.count(vol) == 0 and vol not in {v["volume"] for v in rdir.volumes()}


def test_a_finding_becomes_an_event_that_gets_the_chunk_repaired_and_closes(
        grid: LocalGrid, client: GridClient, rdir: RdirClient) -> None:
    client.create_bucket("findings")
    data = os.urandom(400_000)
    client.put("findings", "obj", data, policy="EC63")
    wait_indexed(grid, client, rdir, ["findings"])
    info = client.head("findings", "obj", chunks=True)
    bad = info.metachunks[0].chunks[7]  # a parity chunk
    ref = parse_chunk_url(bad.url)
    corrupt_chunk(volume(rawx_of(grid, bad.url)), ref.chunk_id, offset=100, length=64)
    # What the scrubber sends; the ref is the chunk's back-reference (the index entry is preferred).
    rdir.report(ref.service, [{"chunk_id": ref.chunk_id, "kind": "corrupt", "detail": "block 0 hash mismatch",
                               "ref": {"container": "default/findings", "path": "obj"}}])
    assert [f["chunk_id"] for f in rdir.findings(ref.service)] == [ref.chunk_id]
    wait_for("the finding to close", lambda: not rdir.findings(ref.service), 30)
    assert {v["volume"]: v["findings"] for v in rdir.volumes()}.get(ref.service, 0) == 0
    now = client.head("findings", "obj", chunks=True)
    assert ref.chunk_id not in {parse_chunk_url(c.url).chunk_id for c in now.metachunks[0].chunks}
    assert sorted(c.sub for c in now.metachunks[0].chunks) == list(range(9))
    assert client.get("findings", "obj") == data
    wait_indexed(grid, client, rdir, ["findings"])


def test_false_alarms_and_findings_on_unreferenced_chunks_close(
        grid: LocalGrid, client: GridClient, rdir: RdirClient) -> None:
    """A finding whose chunk reads back whole (a passing fault) closes and keeps its index entry; one
    whose object was deleted meanwhile closes too. Either left open would keep grid health degraded."""
    client.create_bucket("alarms")
    client.put("alarms", "whole", os.urandom(300_000), policy="EC63")
    client.put("alarms", "gone", os.urandom(300_000), policy="EC63")
    wait_indexed(grid, client, rdir, ["alarms"])
    whole = parse_chunk_url(client.head("alarms", "whole", chunks=True).metachunks[0].chunks[2].url)
    gone = parse_chunk_url(client.head("alarms", "gone", chunks=True).metachunks[0].chunks[3].url)
    client.delete("alarms", "gone")
    for ref, key in ((whole, "whole"), (gone, "gone")):
        rdir.report(ref.service, [{"chunk_id": ref.chunk_id, "kind": "corrupt", "detail": "read error",
                                   "ref": {"container": "default/alarms", "path": key}}])
    for ref in (whole, gone):
        wait_for(f"the finding on {ref.chunk_id} to close",
                 lambda ref=ref: ref.chunk_id not in {f["chunk_id"] for f in rdir.findings(ref.service)}, 30)
    still = client.head("alarms", "whole", chunks=True)
    assert whole.chunk_id in {parse_chunk_url(c.url).chunk_id for c in still.metachunks[0].chunks}
    assert whole.chunk_id in {e["chunk_id"] for e in fetch_all(rdir, whole.service)}
    wait_indexed(grid, client, rdir, ["alarms"])

def test_a_degraded_write_is_repaired_without_an_operator(
        grid: LocalGrid, client: GridClient, rdir: RdirClient) -> None:
    client.create_bucket("degraded")
    victim = next(s for s in grid.services() if s.type == "rawx")
    os.kill(victim.pid, signal.SIGKILL)  # before the conscience notices: EC63 still places on all 9
    data = os.urandom(500_000)
    try:
        written = client.put("degraded", "obj", data, policy="EC63")
    finally:
        grid.restart(victim.name)
    assert written.metachunks[0].missing, "the write should have been short of one position"

    def whole() -> bool:
        mc = client.head("degraded", "obj", chunks=True).metachunks[0]
        return not mc.missing and sorted(c.sub for c in mc.chunks) == list(range(9))

    wait_for("the content.degraded event to get the object repaired", whole, 45)
    assert client.get("degraded", "obj") == data
    wait_indexed(grid, client, rdir, ["degraded"])


def test_an_rdir_outage_holds_up_no_other_handler_and_the_index_catches_up(
        grid: LocalGrid, client: GridClient, rdir: RdirClient) -> None:
    client.create_bucket("outage")
    first = client.put("outage", "obj", b"first" * 1000)
    wait_indexed(grid, client, rdir, ["outage"])
    rdir_svc = next(s for s in grid.services() if s.type == "rdir")
    os.kill(rdir_svc.pid, signal.SIGKILL)
    try:
        client.put("outage", "obj", b"second" * 1000)  # the first one's chunks become garbage
        client.put("outage", "other", os.urandom(200_000), policy="EC63")
        old = [(volume(rawx_of(grid, c.url)), parse_chunk_url(c.url).chunk_id)
               for mc in first.metachunks for c in mc.chunks]
        assert all(volume_holds(v, cid) for v, cid in old)
        # The reaper handles the same content.deleted event the indexer fails on: it must not wait.
        wait_for("the reaper to delete the overwritten chunks", lambda: not any(volume_holds(*o) for o in old), 10)
    finally:
        grid.restart(rdir_svc.name)
    wait_indexed(grid, client, rdir, ["outage"])


def test_a_repair_started_before_another_moved_a_chunk_is_refused(client: GridClient) -> None:
    """Two repairs of one object (a drain and a scrub finding, say) read the same record; the first
    moves a chunk off a server. The second must not commit: it would bring back the chunk the first
    dropped, which the reaper is deleting, and leave the object a chunk short without telling anyone."""
    from gridfs.admin.repair import Relocation, Repairer
    from gridfs.common.errors import PreconditionFailed

    client.create_bucket("cas")
    data = os.urandom(300 << 10)
    client.put("cas", "obj", data, policy="THREECOPIES")
    before = client.head("cas", "obj", chunks=True)
    first, second = (parse_chunk_url(c.url).service for c in before.metachunks[0].chunks[:2])
    moved = Repairer(client, "cas").repair("obj", relocate=Relocation(frozenset({first}), readable=True))
    assert moved.moved, "the first relocation moved nothing"
    with pytest.raises(PreconditionFailed):
        Repairer(client, "cas").repair("obj", relocate=Relocation(frozenset({second}), readable=True), info=before)
    after = client.head("cas", "obj", chunks=True)
    services = [parse_chunk_url(c.url).service for c in after.metachunks[0].chunks]
    assert first not in services and second in services and len(set(services)) == 3
    assert client.get("cas", "obj") == data


def test_status_shows_every_volume_with_its_index_and_health_is_ok(grid: LocalGrid) -> None:
    env = {**os.environ, "COLUMNS": "250"}
    out = run_grid_cli(grid.config_path, "status", "--data", str(grid.data), env=env).stdout.decode()
    assert "storage volumes" in out
    for vol in rawx_ids(grid):
        # The volume table's row starts with the volume (the services table's with the type).
        line = next((ln for ln in out.splitlines() if ln.startswith(f"│ {vol} ")), None)
        assert line is not None and " up " in line, (vol, out)
        assert ".0 " not in line, f"a count shown as a float: {line}"
    health = run_grid_cli(grid.config_path, "health", check=False)
    assert health.returncode == 0 and health.stdout.decode().startswith("OK"), health
