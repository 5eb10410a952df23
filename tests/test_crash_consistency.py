"""Crashes of the meta2 service in the middle of writes and deletes lose nothing and leak nothing.

The meta2 service is SIGKILLed (through failpoints) inside a change's transaction, before
it commits, and right after it committed the change and its events, before it answered.
A watcher restarts it each time. Once the event agent has drained the outboxes, the chunk
files on disk must be exactly the chunks of the live objects: a chunk of a deleted or
replaced version left behind is a lost delete event, a chunk of a live object gone is an
event for a change that did not happen (or a client that deleted what it had committed).
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from gridfs.cli.local import LocalGrid
from gridfs.client.grid import GridClient
from gridfs.common.errors import CommitOutcomeUnknown, NoSuchObject
from gridfs.common.failpoints import arm
from tests.conftest import Restarter, drained, held_chunks

KEYS = [f"k{i}" for i in range(6)]


def test_meta2_killed_around_commits_loses_and_leaks_nothing(crashing_grid: tuple[LocalGrid, Path]) -> None:
    grid, points = crashing_grid
    cfg = grid.config()
    client = GridClient(cfg)
    client.create_bucket("crash", policy="TWOCOPIES")
    rng = random.Random(9)
    model: dict[str, bytes] = {}
    unknown = 0
    restarter = Restarter(grid)
    restarter.start()
    try:
        for i in range(40):
            if i % 3 == 0:
                arm(points, rng.choice(["meta2.before_commit", "meta2.after_commit"]))
            key = rng.choice(KEYS)
            try:
                if key in model and rng.random() < 0.35:
                    client.delete("crash", key)
                    model.pop(key)
                else:
                    data = rng.randbytes(rng.randrange(1, 300_000))
                    client.put("crash", key, data)
                    model[key] = data
            except CommitOutcomeUnknown:
                unknown += 1  # allowed by the protocol, but a restart this quick should settle every answer
            assert not list(points.iterdir()), "every change reaches meta2: an armed failpoint fires"
    finally:
        restarter.stop.set()
        restarter.join()
    assert restarter.deaths >= 8, f"the failpoints fired only {restarter.deaths} times"
    assert unknown == 0

    for key in KEYS:
        if key in model:
            assert client.get("crash", key) == model[key], key
        else:
            with pytest.raises(NoSuchObject):
                client.head("crash", key)
    live = {c.url.rsplit("/", 1)[-1] for key in model
            for mc in client.head("crash", key, chunks=True).metachunks for c in mc.chunks}
    deadline = time.monotonic() + 60
    while not drained(grid, cfg.secret) or set(held_chunks(grid.data)) != live:
        on_disk = set(held_chunks(grid.data))
        assert live <= on_disk, f"chunks of live objects were deleted: {sorted(live - on_disk)[:4]}"
        assert time.monotonic() < deadline, f"chunks of dead versions left behind: {sorted(on_disk - live)[:4]}"
        time.sleep(0.2)
    print(f"meta2 killed {restarter.deaths} times in 40 writes and deletes; {len(model)} live objects, "
          f"{len(live)} chunks on disk, none leaked, none lost")
