"""Group commit in the directory: concurrent changes of one container share a transaction (one fsync),
a refused change rolls back alone, and a meta2 killed right after a group's commit (every answer lost) or
inside it (nothing applied) loses no acknowledged object and applies every retried change once."""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from gridfs.cli.local import LocalGrid
from gridfs.client.grid import GridClient
from gridfs.common.errors import AlreadyExists
from gridfs.common.failpoints import arm
from tests.conftest import Restarter, drained, held_chunks, wait_for


def meta2_counts(grid: LocalGrid) -> tuple[float, float]:
    """(changes applied, transactions committed) over every meta2 service of the grid."""
    changes = transactions = 0.0
    for svc in grid.services():
        if svc.type == "meta2":
            text = requests.get(f"{svc.url}/metrics", headers={"X-Grid-Secret": grid.config().secret}, timeout=5).text
            changes += sum(float(v) for v in re.findall(r"^grid_meta2_changes_total (\S+)$", text, re.M))
            transactions += sum(float(v) for v in re.findall(r"^grid_meta2_transactions_total (\S+)$", text, re.M))
    return changes, transactions


def put_all(client: GridClient, bucket: str, items: dict[str, bytes], threads: int = 16) -> dict[str, object]:
    """Put every item at once; each key's outcome (its record, or the exception)."""
    def one(key: str) -> object:
        try:
            return client.put(bucket, key, items[key], if_none_match=key.startswith("taken"))
        except Exception as exc:  # the outcome is what the test looks at
            return exc

    with ThreadPoolExecutor(threads) as pool:
        return dict(zip(items, pool.map(one, items), strict=True))


def test_concurrent_commits_share_transactions_and_a_refusal_stays_alone(crashing_grid: tuple[LocalGrid, Path],
                                                                        ) -> None:
    grid, _ = crashing_grid
    client = GridClient(grid.config())
    client.create_bucket("group", policy="TWOCOPIES")
    client.put("group", "taken", b"first")
    before = meta2_counts(grid)
    items = {f"k{i}": os.urandom(1000 + i) for i in range(120)}
    items |= {"taken": b"second"}  # if_none_match on a live key: refused, alone
    outcomes = put_all(client, "group", items)
    assert isinstance(outcomes.pop("taken"), AlreadyExists)
    assert all(not isinstance(o, Exception) for o in outcomes.values()), outcomes
    for key, data in items.items():
        assert client.get("group", key) == (b"first" if key == "taken" else data)
    changes, transactions = (a - b for a, b in zip(meta2_counts(grid), before, strict=True))
    assert changes >= 121
    assert transactions < changes, f"{changes:.0f} changes in {transactions:.0f} transactions: never grouped"


def test_meta2_killed_after_a_group_commit_loses_no_change(crashing_grid: tuple[LocalGrid, Path]) -> None:
    grid, points = crashing_grid
    cfg = grid.config()
    client = GridClient(cfg)
    client.create_bucket("crashgroup", policy="TWOCOPIES")
    restarter = Restarter(grid)
    restarter.start()
    try:
        rounds = []
        for moment in ("meta2.after_commit", "meta2.before_commit", "meta2.after_commit"):
            items = {f"{moment}/{len(rounds)}/{i}": os.urandom(2000 + i) for i in range(24)}
            arm(points, moment)
            outcomes = put_all(client, "crashgroup", items, threads=12)
            assert not list(points.iterdir()), "the failpoint never fired"
            failed = {k: o for k, o in outcomes.items() if isinstance(o, Exception)}
            assert not failed, f"{len(failed)} puts failed: {list(failed.values())[:3]}"
            rounds.append(items)
        assert restarter.deaths == 3
    finally:
        restarter.stop.set()
        restarter.join()
    live = set()
    for items in rounds:
        for key, data in items.items():
            assert client.get("crashgroup", key) == data, key
            live |= {c.url.rsplit("/", 1)[-1] for mc in client.head("crashgroup", key, chunks=True).metachunks
                     for c in mc.chunks}
        assert len(client.list_versions("crashgroup", prefix=next(iter(items)).rsplit("/", 1)[0])["versions"]) == 24
    wait_for("the outboxes to drain", lambda: drained(grid, cfg.secret), timeout=60)
    assert live <= set(held_chunks(grid.data)), "a chunk of an acknowledged object is gone"
