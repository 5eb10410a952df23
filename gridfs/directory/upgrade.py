"""Upgrade a grid written by the one-process directory to separate meta1 and meta2 services.

The old layout is one folder: ``meta01.db`` (prefix table and container homes, named by
URL), ``meta2/XX/CID.db`` (the container databases) and ``events.db`` (the change log the
event agent tailed with a cursor). The new one gives meta1 and each meta2 service a folder
of their own, naming each other by service id. The container databases move as they are
(a rename: same file system); their new tables (op ids, outbox) are added when opened.
Events the agent had not handled yet move to meta1's outbox, so none is lost. Each step
can be repeated after a crash; the old folder is renamed last, and kept.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from pathlib import Path

from gridfs.common.service import load_or_create_service_id
from gridfs.directory import outbox
from gridfs.directory.meta1 import OUTBOX_DB, SCHEMA
from gridfs.directory.meta2db import Txn, open_db

log = logging.getLogger("directory")
KEPT_SUFFIX = ".pre-upgrade"


def upgrade_single_directory(old: Path, meta1_dir: Path, meta2_dir: Path, cursor_file: Path | None = None) -> bool:
    """Split ``old`` into ``meta1_dir`` and ``meta2_dir``; False when there is nothing to upgrade."""
    if not (old / "meta01.db").exists():
        return False
    meta2_id = load_or_create_service_id(meta2_dir, "meta2")
    if (old / "meta2").exists() and not (meta2_dir / "meta2").exists():
        os.rename(old / "meta2", meta2_dir / "meta2")
    meta1_dir.mkdir(parents=True, exist_ok=True)
    if not (meta1_dir / "meta1.db").exists():
        tmp = meta1_dir / "meta1.db.upgrading"
        tmp.unlink(missing_ok=True)
        _write_meta1(old, tmp, meta2_id, _cursor(cursor_file))
        os.replace(tmp, meta1_dir / "meta1.db")
    os.rename(old, old.with_name(old.name + KEPT_SUFFIX))
    log.info("upgraded %s: containers now on meta2 service %s, homes in %s", old, meta2_id, meta1_dir)
    return True


def _cursor(cursor_file: Path | None) -> int:
    try:
        return int(cursor_file.read_text()) if cursor_file else 0
    except (OSError, ValueError):
        return 0


def _write_meta1(old: Path, path: Path, meta2_id: str, handled_upto: int) -> None:
    src = sqlite3.connect(old / "meta01.db")
    rows = src.execute("SELECT cid, account, name, ctime FROM meta1").fetchall()
    src.close()
    events: list[tuple[str, dict]] = []
    if (old / "events.db").exists():
        log_db = sqlite3.connect(old / "events.db")
        events = [(t, json.loads(d)) for t, d in log_db.execute(
            "SELECT type, data FROM events WHERE id > ? ORDER BY id", (handled_upto,))]
        log_db.close()
    db = open_db(path, SCHEMA)
    with Txn(db):
        db.executemany("INSERT INTO meta1 VALUES (?, ?, ?, ?, ?)",
                       [(cid, account, name, meta2_id, ctime) for cid, account, name, ctime in rows])
        outbox.emit(db, events)
    db.close()
    log.info("%d containers and %d undelivered events moved to %s (outbox %s)", len(rows), len(events), path,
             OUTBOX_DB)
