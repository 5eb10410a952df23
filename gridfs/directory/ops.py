"""Operation ids: every directory change is applied at most once.

A client names each change with an op id (the content id of a put, a fresh random id
otherwise). The database that applies the change records the id and the answer in the
same transaction, so a replayed request gets the first answer back and changes nothing.
``fence`` settles an op whose answer was lost: it reports the recorded answer, or records
that the op will never be applied (a late arrival of it is refused), after which the
client may safely delete what it wrote for it. Ids are kept for ``DEFAULT_TTL`` seconds.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import json
import random
import re
import sqlite3
import time
from typing import Any

from gridfs.common.errors import BadRequest, OperationFenced

SCHEMA = "CREATE TABLE IF NOT EXISTS ops (op_id TEXT PRIMARY KEY, ts REAL NOT NULL, result TEXT) WITHOUT ROWID"
OP_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{8,128}\Z")
DEFAULT_TTL = 24 * 3600.0
PRUNE_EVERY = 1000  # records between two prunes of expired ids


def check_op_id(op_id: Any) -> str:
    if not isinstance(op_id, str) or not OP_ID_RE.match(op_id):
        raise BadRequest(f"invalid op_id {op_id!r}: 8-128 of A-Z a-z 0-9 _ . : -")
    return op_id


def replay(db: sqlite3.Connection, op_id: str) -> dict | None:
    """The recorded answer of ``op_id`` (marked ``replayed``), None if it never ran; inside a transaction."""
    row = db.execute("SELECT result FROM ops WHERE op_id = ?", (op_id,)).fetchone()
    if row is None:
        return None
    if row[0] is None:
        raise OperationFenced(f"operation {op_id} was settled as not applied; send it again with a new op id")
    return {**json.loads(row[0]), "replayed": True}


def record(db: sqlite3.Connection, op_id: str, result: Any) -> None:
    """Remember the answer of ``op_id``; inside the transaction that applied it."""
    db.execute("INSERT INTO ops VALUES (?, ?, ?)", (op_id, time.time(), json.dumps(result)))
    if random.random() < 1 / PRUNE_EVERY:  # expired ids go on about one insert in PRUNE_EVERY
        prune(db)


def prune(db: sqlite3.Connection, ttl: float = DEFAULT_TTL) -> None:
    db.execute("DELETE FROM ops WHERE ts < ?", (time.time() - ttl,))


def fence(db: sqlite3.Connection, op_id: str) -> dict:
    """Settle an op: ``applied`` with its answer, or ``fenced`` (now recorded: it will never apply)."""
    row = db.execute("SELECT result FROM ops WHERE op_id = ?", (op_id,)).fetchone()
    if row is None:
        db.execute("INSERT INTO ops VALUES (?, ?, NULL)", (op_id, time.time()))
        return {"op_id": op_id, "state": "fenced"}
    if row[0] is None:
        return {"op_id": op_id, "state": "fenced"}
    return {"op_id": op_id, "state": "applied", "result": json.loads(row[0])}
