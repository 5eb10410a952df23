"""A grid written by the one-process directory comes up under separate meta1/meta2 services."""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from pathlib import Path

from gridfs.cli.local import LocalGrid
from gridfs.client.grid import GridClient
from tests.conftest import held_chunks


def _to_old_layout(data: Path) -> None:
    """Rewrite a stopped grid's directory folders the way the one-process directory kept them."""
    old = data / "directory"
    old.mkdir()
    (data / "meta2-1" / "meta2").rename(old / "meta2")
    rows = sqlite3.connect(data / "meta1" / "meta1.db").execute(
        "SELECT cid, account, name, ctime FROM meta1").fetchall()
    db = sqlite3.connect(old / "meta01.db")
    db.execute("CREATE TABLE meta0 (prefix TEXT PRIMARY KEY, meta1 TEXT NOT NULL)")
    db.execute("CREATE TABLE meta1 (cid TEXT PRIMARY KEY, account TEXT NOT NULL, name TEXT NOT NULL, "
               "meta2 TEXT NOT NULL, ctime REAL NOT NULL)")
    db.executemany("INSERT INTO meta1 VALUES (?, ?, ?, 'http://127.0.0.1:1', ?)", [(c, a, n, t) for c, a, n, t in rows])
    db.commit()
    db.close()
    for name in ("meta0", "meta1", "meta2-1"):
        shutil.rmtree(data / name)


def test_one_process_directory_upgrades_with_its_pending_events(tmp_path: Path) -> None:
    grid = LocalGrid(tmp_path / "grid")
    cfg = grid.up(nodes=1, volumes=3, s3_port=None)
    client = GridClient(cfg)
    client.create_bucket("kept")
    payload = bytes(range(256)) * 4096
    client.put("kept", "a", payload)
    doomed = client.put("kept", "doomed", b"x" * 5000)
    doomed_chunks = {c.url.rsplit("/", 1)[-1] for mc in client.head("kept", "doomed", chunks=True).metachunks
                     for c in mc.chunks}
    grid.down()
    _to_old_layout(grid.data)
    # The old agent had not handled the delete of "doomed" yet: its event waits in events.db.
    log = sqlite3.connect(grid.data / "directory" / "events.db")
    log.execute("CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, type TEXT NOT NULL, ts REAL NOT NULL, "
                "data TEXT NOT NULL)")
    log.execute("INSERT INTO events (type, ts, data) VALUES ('content.new', 0, '{}')")  # handled: cursor 1
    log.execute("INSERT INTO events (type, ts, data) VALUES ('content.deleted', ?, ?)", (time.time(), json.dumps(
        {"account": "default", "bucket": "kept", "key": "doomed", "reason": "deleted",
         "chunks": [c.url for mc in doomed.metachunks for c in mc.chunks]})))
    log.commit()
    log.close()
    (grid.data / "events.cursor").write_text("1")
    # The record of "doomed" is gone from the old container database, as a delete would leave it.
    cdb = next((grid.data / "directory" / "meta2").glob("*/*.db"))
    db = sqlite3.connect(cdb)
    db.execute("DELETE FROM objects WHERE key = 'doomed'")
    db.execute("DELETE FROM latest WHERE key = 'doomed'")
    db.commit()
    db.close()

    cfg = grid.up(nodes=1, volumes=3, s3_port=None)
    try:
        assert (grid.data / "directory.pre-upgrade" / "meta01.db").exists()
        client = GridClient(cfg)
        assert client.get("kept", "a") == payload
        assert [b.bucket for b in client.list_buckets()] == ["kept"]
        client.put("kept", "b", b"new")  # the upgraded container takes writes
        assert client.get("kept", "b") == b"new"
        deadline = time.monotonic() + 30
        while doomed_chunks & set(held_chunks(grid.data)):
            assert time.monotonic() < deadline, "the event left in the old log was never delivered"
            time.sleep(0.2)
        grid.down()
        cfg = grid.up(nodes=1, volumes=3, s3_port=None)  # a second start changes nothing
        assert GridClient(cfg).get("kept", "a") == payload
    finally:
        grid.down()
