"""The durable event log the directory appends to after every commit.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any


class EventLog:
    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                        "type TEXT NOT NULL, ts REAL NOT NULL, data TEXT NOT NULL)")
        self.lock = threading.Lock()

    def append(self, event_type: str, data: dict[str, Any]) -> None:
        self.append_many([(event_type, data)])

    def append_many(self, events: list[tuple[str, dict[str, Any]]]) -> None:
        """One transaction, so one fsync, for a whole batch."""
        now = time.time()
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                self.db.executemany("INSERT INTO events (type, ts, data) VALUES (?, ?, ?)",
                                    [(t, now, json.dumps(d)) for t, d in events])
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def read(self, after: int, limit: int) -> dict[str, Any]:
        with self.lock:
            rows = self.db.execute("SELECT id, type, ts, data FROM events WHERE id > ? ORDER BY id LIMIT ?",
                                   (after, max(1, min(limit, 10000)))).fetchall()
            last = self.db.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0]
        return {"events": [{"id": i, "type": t, "ts": ts, "data": json.loads(d)} for i, t, ts, d in rows],
                "last": last}
