"""Drain and removal of a storage volume: ``grid drain`` moves every chunk off it while a reader
loops over the objects (none of its reads may fail), the volume ends empty once the garbage is
reaped, and only then does ``grid service remove`` take it out of the grid.

Real processes: a 3 x 3 grid, a few hundred small objects (three copies, by the size rule; half of
them written by ``put_many``, so packed) and some EC42 ones (6 of the 9 volumes: a drained chunk
still finds a volume of its own).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading

import xxhash

from gridfs.cli.local import LocalGrid
from gridfs.client import GridClient
from gridfs.common.errors import GridError
from gridfs.conscience.client import ConscienceClient
from gridfs.rdir.client import RdirClient
from gridfs.storage.client import parse_chunk_url
from tests.conftest import chunk_files, run_grid_cli, stored_chunks, volume, wait_for

BUCKET = "drain"
EC = "drain-ec"


def digest(data: bytes) -> str:
    return xxhash.xxh3_128_hexdigest(data)


def test_drain_moves_everything_off_a_volume_while_reads_go_on(fresh_grid: LocalGrid) -> None:
    cfg = fresh_grid.config()
    svc = next(s for s in fresh_grid.services(cfg) if s.name == "rawx-node1-vol1")
    sid = (volume(svc) / "service.id").read_text().strip()
    rng = random.Random(3)
    objects: dict[tuple[str, str], str] = {}
    with GridClient(cfg) as client:
        client.create_bucket(BUCKET)
        client.create_bucket(EC, policy="EC42")
        batched = []
        for i in range(250):
            data = rng.randbytes(rng.randint(1 << 10, 12 << 10))
            if i % 2:  # half of them packed on the volumes, through the batch API
                batched.append((f"small/{i:03d}", data))
            else:
                client.put(BUCKET, f"small/{i:03d}", data)
            objects[(BUCKET, f"small/{i:03d}")] = digest(data)
        client.put_many(BUCKET, batched)
        for i in range(20):
            data = rng.randbytes(rng.randint(200 << 10, 400 << 10))
            client.put(EC, f"ec/{i:02d}", data)
            objects[(EC, f"ec/{i:02d}")] = digest(data)

        def on_volume() -> int:
            return sum(parse_chunk_url(c.url).service == sid for bucket, key in objects
                       for mc in client.head(bucket, key, chunks=True).metachunks for c in mc.chunks)

        held = on_volume()
        assert held > 50, f"only {held} chunks on {sid}: the drain would prove little"
        rdir = RdirClient.for_grid(cfg)
        wait_for(f"the reverse index to list the {held} chunks of {sid}", lambda: rdir.count(sid) == held, timeout=20)

        refused = run_grid_cli(fresh_grid.config_path, "service", "remove", svc.name, check=False)
        assert refused.returncode == 1 and b"holds" in refused.stderr, refused.stderr

        errors: list[str] = []
        loops = [0]
        done = threading.Event()

        def reader() -> None:
            with GridClient(cfg) as mine:
                while not done.is_set():
                    for (bucket, key), want in objects.items():
                        try:
                            if digest(mine.get(bucket, key)) != want:
                                errors.append(f"{bucket}/{key}: wrong bytes")
                        except GridError as exc:
                            errors.append(f"{bucket}/{key}: {exc}")
                    loops[0] += 1

        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        try:
            wait_for("the reader's first loop", lambda: loops[0] >= 1, timeout=30)
            start = loops[0]
            # A rate cap stretches the drain over several of the reader's loops.
            drain = subprocess.run([sys.executable, "-m", "gridfs.cli.main", "--config", str(fresh_grid.config_path),
                                    "drain", svc.name, "--rate", "0.5", "--batch", "40", "--json"],
                                   capture_output=True, timeout=60)
            during = loops[0] - start
            assert drain.returncode == 0, drain.stderr
            record = json.loads(drain.stdout)
            assert record["kind"] == "drain" and record["state"] == "done", record
            assert record["chunks_done"] == held and record["lost"] == 0, record
            # The garbage event of each move deletes the chunk left on the volume.
            wait_for(f"{sid} to be empty", lambda: not stored_chunks(cfg, svc) and not [
                p for p in chunk_files(fresh_grid.data) if volume(svc) in p.parents], timeout=30, every=0.2)
        finally:
            done.set()
            thread.join(60)
        assert during >= 1, "the reader did not loop over the objects once during the drain"
        assert not errors, f"{len(errors)} failed reads during the drain: {errors[:5]}"
        assert on_volume() == 0
        assert not [p for p in (volume(svc) / "packs").glob("*.pack") if p.stat().st_size], "a pack left behind"
        assert rdir.count(sid) == 0
        for (bucket, key), want in objects.items():
            assert digest(client.get(bucket, key)) == want, f"{bucket}/{key}"

    run_grid_cli(fresh_grid.config_path, "service", "remove", svc.name)
    assert sid not in {s.get("id") for s in ConscienceClient(cfg.conscience_url, cfg.secret).services("rawx")}
    assert svc.name not in {s.name for s in fresh_grid.services()}
    assert sid not in {v["volume"] for v in rdir.volumes()}

