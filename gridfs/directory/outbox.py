"""The outbox: events written in the same SQLite transaction as the change they describe.

Every container database (and meta1's) has an ``outbox`` table. A change and its events
commit together or not at all, so no crash can lose an event or publish one for a change
that did not happen. The event agent reads a service's outboxes (``GET /v1/outbox``) and
acknowledges what it has handled (``POST /v1/outbox/ack``), which deletes those rows.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

SCHEMA = ("CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, type TEXT NOT NULL, "
          "ts REAL NOT NULL, data TEXT NOT NULL)")
MAX_READ = 10000


def emit(db: sqlite3.Connection, events: list[tuple[str, dict[str, Any]]]) -> None:
    """Append events; the caller holds the transaction of the change."""
    now = time.time()
    db.executemany("INSERT INTO outbox (type, ts, data) VALUES (?, ?, ?)",
                   [(kind, now, json.dumps(data)) for kind, data in events])


def read(db: sqlite3.Connection, name: str, limit: int) -> list[dict[str, Any]]:
    """The oldest ``limit`` events, each tagged with the database ``name`` they came from."""
    rows = db.execute("SELECT id, type, ts, data FROM outbox ORDER BY id LIMIT ?",
                      (max(1, min(limit, MAX_READ)),)).fetchall()
    return [{"db": name, "id": i, "type": t, "ts": ts, "data": json.loads(d)} for i, t, ts, d in rows]


def count(db: sqlite3.Connection) -> int:
    """Events not acked yet: the agent's backlog in this database."""
    return int(db.execute("SELECT count(*) FROM outbox").fetchone()[0])


def pending(db: sqlite3.Connection) -> bool:
    return db.execute("SELECT 1 FROM outbox LIMIT 1").fetchone() is not None


def ack(db: sqlite3.Connection, upto: int) -> None:
    """Forget events up to ``upto`` (handled by the agent); the caller holds the transaction."""
    db.execute("DELETE FROM outbox WHERE id <= ?", (int(upto),))
