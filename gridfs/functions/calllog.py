"""Each function call's outcome, kept by the event agent in a bounded log: what ``grid function logs`` reads.

One SQLite file beside the agent's own database. Only the last ``keep`` calls of each
function stay (a function failing on every event must not fill the disk), each with its
error and the end of its stderr.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from typing import Any

from gridfs.functions.runner import CallResult

SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    function TEXT NOT NULL,
    ts REAL NOT NULL,
    event_type TEXT NOT NULL,
    target TEXT NOT NULL,           -- bucket/key of the event's object
    node TEXT NOT NULL,             -- where the call ran (the runner's location)
    ok INTEGER NOT NULL,
    seconds REAL NOT NULL,
    error TEXT NOT NULL,
    stderr TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS calls_function ON calls (function, id);
"""
KEEP = 200


class CallLog:
    def __init__(self, path: str | os.PathLike, keep: int = KEEP) -> None:
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(SCHEMA)
        self.keep = keep
        self.lock = threading.Lock()

    def add(self, function: str, event: dict[str, Any], result: CallResult) -> None:
        data = event.get("data") or {}
        target = f"{data.get('bucket', '')}/{data.get('key', '')}"
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("INSERT INTO calls (function, ts, event_type, target, node, ok, seconds, error, stderr) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            (function, time.time(), event.get("type", ""), target, result.node, int(result.ok),
                             result.seconds, result.error, result.stderr))
            self.db.execute("DELETE FROM calls WHERE function = ? AND id <= (SELECT id FROM calls WHERE function = ? "
                            "ORDER BY id DESC LIMIT 1 OFFSET ?)", (function, function, self.keep))
            self.db.execute("COMMIT")

    def read(self, function: str, limit: int = 50) -> list[dict[str, Any]]:
        """The last ``limit`` calls, oldest first."""
        with self.lock:
            rows = self.db.execute("SELECT ts, event_type, target, node, ok, seconds, error, stderr FROM calls "
                                   "WHERE function = ? ORDER BY id DESC LIMIT ?", (function, limit)).fetchall()
        return [{"ts": ts, "event": t, "target": target, "node": node, "ok": bool(ok), "seconds": round(sec, 3),
                 "error": error, "stderr": stderr} for ts, t, target, node, ok, sec, error, stderr in reversed(rows)]
