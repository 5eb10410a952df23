"""The event agent's own state, in one SQLite database: handler failures and positions.

A handler that failed for an event has one row in ``failures``: waiting for its next try
(``dead = 0``, ``due`` a wall-clock time, so the schedule survives a restart) or, past the
retry limit, a dead letter (``dead = 1``) that only an operator sends back. The row is
written before the event is acked from its outbox, so a failure is never lost; a row keeps
its id when it moves between the two states, so ``grid events --retry ID`` names what
``grid events --dead`` printed.

``positions`` holds, per source and database, the last event id the agent handled: what
``grid events`` shows. It is not used to skip events (an outbox's ids restart when a
container database is created again), the outbox's ack is the real position.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gridfs.common.config import ConfigError

SCHEMA = """
CREATE TABLE IF NOT EXISTS failures (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    handler TEXT NOT NULL,          -- module:qualname, so a retry runs only the handler that failed
    event_key TEXT NOT NULL,        -- source/db/id/ts: the same delivery recorded twice is one row
    event TEXT NOT NULL,            -- the event as the outbox gave it (JSON)
    attempts INTEGER NOT NULL,
    due REAL NOT NULL,
    error TEXT NOT NULL,
    first_failed REAL NOT NULL,
    last_failed REAL NOT NULL,
    dead INTEGER NOT NULL DEFAULT 0,
    UNIQUE (event_key, handler)
);
CREATE INDEX IF NOT EXISTS failures_due ON failures (dead, due);
CREATE TABLE IF NOT EXISTS positions (
    source TEXT NOT NULL,
    db TEXT NOT NULL,
    upto INTEGER NOT NULL,
    ts REAL NOT NULL,
    PRIMARY KEY (source, db)
);
"""


@dataclass(frozen=True)
class RetryPolicy:
    """Delay before try n+1 after n failures: ``base * 2**(n-1)``, at most ``cap``; dead after ``max_attempts``."""

    base: float = 1.0
    cap: float = 60.0
    max_attempts: int = 10

    @classmethod
    def from_config(cls, events: dict[str, Any]) -> RetryPolicy:
        """From grid.toml's ``[events]`` table: ``retry_base``, ``retry_max``, ``max_attempts``."""
        policy = cls(float(events.get("retry_base", cls.base)), float(events.get("retry_max", cls.cap)),
                     int(events.get("max_attempts", cls.max_attempts)))
        if policy.base <= 0 or policy.cap < policy.base or policy.max_attempts < 1:
            raise ConfigError(f"[events] needs 0 < retry_base <= retry_max and max_attempts >= 1, got {policy}")
        return policy

    def delay(self, attempts: int) -> float:
        return min(self.cap, self.base * 2 ** min(attempts - 1, 60))


@dataclass(frozen=True)
class Failure:
    """A handler that raised for an event (``source`` is the service id the event came from)."""

    source: str
    handler: str
    event: dict[str, Any]
    error: str

    @property
    def event_key(self) -> str:
        e = self.event
        return f"{self.source}/{e['db']}/{e['id']}/{e['ts']!r}"


@dataclass(frozen=True)
class PendingRetry:
    id: int
    handler: str
    event: dict[str, Any]
    attempts: int


def state_db(state: str | os.PathLike) -> Path:
    """The database file for ``--state``: ``STATE/agent.db`` in a folder, or beside a file.

    The agent before the outboxes kept a one-number cursor file; a grid that still passes
    that path gets its database beside it (``events.cursor`` -> ``events.db``).
    """
    path = Path(state)
    if path.is_file():
        return path.with_suffix(".db")
    path.mkdir(parents=True, exist_ok=True)
    return path / "agent.db"


class EventStore:
    def __init__(self, path: str | os.PathLike) -> None:
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)
        self.lock = threading.Lock()

    def _write(self, statements: Iterable[tuple[str, tuple | list]]) -> None:
        """Run statements in one transaction (each ``(sql, params)``; a list of tuples runs many)."""
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                for sql, params in statements:
                    if isinstance(params, list):
                        self.db.executemany(sql, params)
                    else:
                        self.db.execute(sql, params)
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def record(self, source: str, failures: list[Failure], upto: dict[str, int], policy: RetryPolicy) -> None:
        """One transaction for a batch: its failures go on the retry list, and the positions move.

        A failure already recorded for the same delivery (the agent re-handling a batch it
        could not ack) keeps its row and its attempt count.
        """
        now = time.time()
        self._write([
            ("INSERT OR IGNORE INTO failures (handler, event_key, event, attempts, due, error, first_failed, "
             "last_failed, dead) VALUES (?, ?, ?, 1, ?, ?, ?, ?, ?)",
             [(f.handler, f.event_key, json.dumps(f.event), now + policy.delay(1), f.error, now, now,
               int(policy.max_attempts <= 1)) for f in failures]),
            ("INSERT INTO positions (source, db, upto, ts) VALUES (?, ?, ?, ?) "
             "ON CONFLICT (source, db) DO UPDATE SET upto = excluded.upto, ts = excluded.ts",
             [(source, db, n, now) for db, n in upto.items()]),
        ])

    def due(self, limit: int) -> list[PendingRetry]:
        """Retries whose time has come, the oldest due first."""
        with self.lock:
            rows = self.db.execute("SELECT id, handler, event, attempts FROM failures WHERE dead = 0 AND due <= ? "
                                   "ORDER BY due LIMIT ?", (time.time(), limit)).fetchall()
        return [PendingRetry(i, h, json.loads(e), a) for i, h, e, a in rows]

    def retried(self, retry: PendingRetry, error: str | None, policy: RetryPolicy) -> bool:
        """Record the outcome of a retry; True when it made the row a dead letter."""
        if error is None:
            self._write([("DELETE FROM failures WHERE id = ?", (retry.id,))])
            return False
        attempts, now = retry.attempts + 1, time.time()
        dead = attempts >= policy.max_attempts
        self._write([("UPDATE failures SET attempts = ?, due = ?, error = ?, last_failed = ?, dead = ? WHERE id = ?",
                      (attempts, now + policy.delay(attempts), error, now, int(dead), retry.id))])
        return dead

    def dead_letters(self) -> list[dict[str, Any]]:
        with self.lock:
            rows = self.db.execute("SELECT id, handler, event, attempts, error, first_failed, last_failed "
                                   "FROM failures WHERE dead = 1 ORDER BY id").fetchall()
        return [{"id": i, "handler": h, "event": json.loads(e), "attempts": a, "error": err,
                 "first_failed": first, "last_failed": last} for i, h, e, a, err, first, last in rows]

    def revive(self, ids: list[int] | None) -> int:
        """Dead letters (``ids``, or all for None) back on the retry list, due now, attempts reset."""
        if ids == []:
            return 0
        where, params = ("", ()) if ids is None else (f" AND id IN ({','.join('?' * len(ids))})", tuple(ids))
        with self.lock:
            cur = self.db.execute(f"UPDATE failures SET dead = 0, attempts = 0, due = ? WHERE dead = 1{where}",
                                  (time.time(), *params))
        return cur.rowcount

    def counts(self) -> dict[str, int]:
        with self.lock:
            rows = dict(self.db.execute("SELECT dead, COUNT(*) FROM failures GROUP BY dead").fetchall())
        return {"retries": rows.get(0, 0), "dead": rows.get(1, 0)}

    def positions(self) -> dict[str, dict[str, int]]:
        """Per source, per database: the last event id handled."""
        out: dict[str, dict[str, int]] = {}
        with self.lock:
            for source, db, upto in self.db.execute("SELECT source, db, upto FROM positions ORDER BY source, db"):
                out.setdefault(source, {})[db] = upto
        return out
