"""The reverse index's storage: one SQLite file per volume, one service database.

``volumes/<VOLUME>.db`` holds the volume's entries (chunk id -> container, key, version,
content id, position, size) and running totals kept by triggers, so counting a volume
does not scan it. ``service.db`` holds what is about volumes rather than in them: the
rebuild/drain job record, the scrubber's open findings, and the outbox of the events
that findings raise (committed with the finding, drained by the event agent).

One file per volume keeps a volume's writes from queueing behind another's, and makes
forgetting a volume a file deletion. Every call validates what it is given: a volume id
becomes a file name only after :func:`check_service_id`.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from gridfs.common.errors import BadRequest
from gridfs.common.names import check_chunk_id, check_key, check_service_id
from gridfs.directory import outbox
from gridfs.directory.meta2db import Txn

VOLUME_SCHEMA = """
CREATE TABLE IF NOT EXISTS chunks (chunk_id TEXT PRIMARY KEY, container TEXT NOT NULL, key TEXT NOT NULL,
    version INTEGER NOT NULL, content_id TEXT NOT NULL, pos TEXT NOT NULL, size INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS by_object ON chunks (container, key, version, chunk_id);
CREATE TABLE IF NOT EXISTS totals (one INTEGER PRIMARY KEY CHECK (one = 1), chunks INTEGER NOT NULL,
    bytes INTEGER NOT NULL);
INSERT OR IGNORE INTO totals VALUES (1, 0, 0);
CREATE TRIGGER IF NOT EXISTS chunk_added AFTER INSERT ON chunks BEGIN
    UPDATE totals SET chunks = chunks + 1, bytes = bytes + NEW.size; END;
CREATE TRIGGER IF NOT EXISTS chunk_removed AFTER DELETE ON chunks BEGIN
    UPDATE totals SET chunks = chunks - 1, bytes = bytes - OLD.size; END;
CREATE TRIGGER IF NOT EXISTS chunk_changed AFTER UPDATE OF size ON chunks BEGIN
    UPDATE totals SET bytes = bytes + NEW.size - OLD.size; END;
"""
SERVICE_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS jobs (volume TEXT PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS findings (volume TEXT NOT NULL, chunk_id TEXT NOT NULL, kind TEXT NOT NULL,
    detail TEXT NOT NULL, ref TEXT NOT NULL, ts REAL NOT NULL, PRIMARY KEY (volume, chunk_id));
{outbox.SCHEMA};
"""
FIELDS = ("chunk_id", "container", "key", "version", "content_id", "pos", "size")
POS_RE = re.compile(r"^\d{1,9}\.\d{1,4}\Z")
MAX_BATCH = 100_000  # entries or ids in one call: a bound on one transaction, not a design limit
MAX_FETCH = 10_000
KINDS = ("corrupt", "missing")


def _connect(path: Path, schema: str, synchronous: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.executescript(schema)
    return db


def check_entry(e: Any) -> tuple:
    """An index entry as a row, or BadRequest naming what is wrong."""
    if not isinstance(e, dict):
        raise BadRequest("an index entry must be a JSON object")
    missing = [f for f in FIELDS if f not in e]
    if missing:
        raise BadRequest(f"index entry lacks {', '.join(missing)}")
    container = e["container"]
    if not isinstance(container, str) or container.count("/") != 1 or "" in container.split("/"):
        raise BadRequest(f"container must be 'ACCOUNT/BUCKET', got {container!r}")
    for name in ("version", "size"):
        if type(e[name]) is not int or e[name] < 0:
            raise BadRequest(f"{name} must be a non-negative integer, got {e[name]!r}")
    if not isinstance(e["pos"], str) or not POS_RE.match(e["pos"]):
        raise BadRequest(f"pos must be 'METACHUNK.SUB', got {e['pos']!r}")
    if not isinstance(e["content_id"], str) or len(e["content_id"]) > 128:
        raise BadRequest("content_id must be a string of at most 128 characters")
    return (check_chunk_id(e["chunk_id"]), container, check_key(e["key"]), e["version"], e["content_id"],
            e["pos"], e["size"])


def _check_list(items: Any, what: str) -> list:
    if not isinstance(items, list):
        raise BadRequest(f"{what} must be a JSON list")
    if len(items) > MAX_BATCH:
        raise BadRequest(f"at most {MAX_BATCH} {what} per call, got {len(items)}")
    return items


def encode_marker(row: tuple) -> str:
    return json.dumps([*row[1:4], row[0]], separators=(",", ":"))


def decode_marker(marker: str) -> tuple[str, str, int, str] | None:
    if not marker:
        return None
    try:
        container, key, version, chunk_id = json.loads(marker)
        if not (isinstance(container, str) and isinstance(key, str) and type(version) is int
                and isinstance(chunk_id, str)):
            raise ValueError
    except (ValueError, TypeError):
        raise BadRequest(f"not a marker this service gave: {marker[:100]!r}") from None
    return container, key, version, chunk_id


class VolumeIndex:
    """One volume's entries; callers hold ``lock`` around every use."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # NORMAL: the index is rebuildable (reindex), so a power cut may cost its last transactions
        # but never its consistency; it spares an fsync per event on the ingest path.
        self.db = _connect(path, VOLUME_SCHEMA, "NORMAL")
        self.lock = threading.Lock()

    def push(self, rows: list[tuple]) -> None:
        with Txn(self.db):
            self.db.executemany(
                "INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (chunk_id) DO UPDATE SET "
                "container = excluded.container, key = excluded.key, version = excluded.version, "
                "content_id = excluded.content_id, pos = excluded.pos, size = excluded.size", rows)

    def delete(self, chunk_ids: list[str]) -> None:
        with Txn(self.db):
            self.db.executemany("DELETE FROM chunks WHERE chunk_id = ?", [(c,) for c in chunk_ids])

    def get(self, chunk_id: str) -> dict | None:
        row = self.db.execute(f"SELECT {', '.join(FIELDS)} FROM chunks WHERE chunk_id = ?", (chunk_id,)).fetchone()
        return dict(zip(FIELDS, row, strict=True)) if row else None

    def fetch(self, marker: str, limit: int) -> tuple[list[dict], str]:
        after = decode_marker(marker)
        limit = max(1, min(limit, MAX_FETCH))
        cols = ", ".join(FIELDS)
        if after is None:
            rows = self.db.execute(f"SELECT {cols} FROM chunks ORDER BY container, key, version, chunk_id LIMIT ?",
                                   (limit + 1,)).fetchall()
        else:
            rows = self.db.execute(
                f"SELECT {cols} FROM chunks WHERE (container, key, version, chunk_id) > (?, ?, ?, ?) "
                "ORDER BY container, key, version, chunk_id LIMIT ?", (*after, limit + 1)).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        return [dict(zip(FIELDS, r, strict=True)) for r in rows], encode_marker(rows[-1]) if more else ""

    def totals(self) -> tuple[int, int]:
        chunks, size = self.db.execute("SELECT chunks, bytes FROM totals").fetchone()
        return int(chunks), int(size)

    def close(self) -> None:
        self.db.close()


class RdirStore:
    """Every volume's index under ``data/volumes``, and the service database ``data/service.db``."""

    def __init__(self, data: Path) -> None:
        self.root = data / "volumes"
        self.root.mkdir(parents=True, exist_ok=True)
        # FULL: job records and findings' events are acknowledged to their senders, and few.
        self.service = _connect(data / "service.db", SERVICE_SCHEMA, "FULL")
        self.service_lock = threading.Lock()
        self._open_lock = threading.Lock()
        self._volumes: dict[str, VolumeIndex] = {}

    # -- volumes -----------------------------------------------------------------------------

    def _path(self, volume: str) -> Path:
        return self.root / f"{check_service_id(volume)}.db"

    def _volume(self, volume: str, create: bool) -> VolumeIndex | None:
        path = self._path(volume)
        with self._open_lock:
            vol = self._volumes.get(volume)
            if vol is None and (create or path.exists()):
                vol = self._volumes[volume] = VolumeIndex(path)
            return vol

    def known(self) -> list[str]:
        on_disk = {p.stem for p in self.root.glob("*.db")}
        with self.service_lock:
            jobs = {v for (v,) in self.service.execute("SELECT volume FROM jobs UNION SELECT volume FROM findings")}
        return sorted(on_disk | jobs)

    def push(self, volume: str, entries: Any) -> int:
        rows = [check_entry(e) for e in _check_list(entries, "entries")]
        if rows:
            vol = self._volume(volume, create=True)
            assert vol is not None
            with vol.lock:
                vol.push(rows)
        return len(rows)

    def delete(self, volume: str, chunk_ids: Any) -> int:
        ids = [check_chunk_id(c) for c in _check_list(chunk_ids, "chunk ids")]
        vol = self._volume(volume, create=False)
        if ids and vol is not None:
            with vol.lock:
                vol.delete(ids)
        # A deleted index entry closes its finding: the repair that replaced the chunk is committed.
        self.close_findings(volume, ids)
        return len(ids)

    def close_findings(self, volume: str, chunk_ids: Any) -> int:
        """Close findings whose chunk turned out whole (a repair read it back verified)."""
        check_service_id(volume)
        ids = [check_chunk_id(c) for c in _check_list(chunk_ids, "chunk ids")]
        if ids:
            with self.service_lock, Txn(self.service):
                self.service.executemany("DELETE FROM findings WHERE volume = ? AND chunk_id = ?",
                                         [(volume, c) for c in ids])
        return len(ids)

    def fetch(self, volume: str, marker: str, limit: int) -> dict:
        vol = self._volume(volume, create=False)
        if vol is None:
            decode_marker(marker)
            return {"entries": [], "marker": ""}
        with vol.lock:
            entries, nxt = vol.fetch(marker, limit)
        return {"entries": entries, "marker": nxt}

    def totals(self, volume: str) -> tuple[int, int]:
        vol = self._volume(volume, create=False)
        if vol is None:
            return 0, 0
        with vol.lock:
            return vol.totals()

    def volumes(self) -> list[dict]:
        out = []
        for volume in self.known():
            chunks, size = self.totals(volume)
            out.append({"volume": volume, "chunks": chunks, "bytes": size, "job": self.job(volume),
                        "findings": self._open_findings(volume)})
        return out

    def drop(self, volume: str) -> None:
        path = self._path(volume)
        with self._open_lock:
            vol = self._volumes.pop(volume, None)
        if vol is not None:
            with vol.lock:
                vol.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        with self.service_lock, Txn(self.service):
            self.service.execute("DELETE FROM jobs WHERE volume = ?", (volume,))
            self.service.execute("DELETE FROM findings WHERE volume = ?", (volume,))

    # -- jobs ----------------------------------------------------------------------------------

    def job(self, volume: str) -> dict | None:
        check_service_id(volume)
        with self.service_lock:
            row = self.service.execute("SELECT record FROM jobs WHERE volume = ?", (volume,)).fetchone()
        return json.loads(row[0]) if row else None

    def set_job(self, volume: str, job: Any) -> dict:
        check_service_id(volume)
        if not isinstance(job, dict):
            raise BadRequest("a job record must be a JSON object")
        record = {**job, "updated": time.time()}
        with self.service_lock, Txn(self.service):
            self.service.execute("INSERT OR REPLACE INTO jobs VALUES (?, ?)", (volume, json.dumps(record)))
        return record

    # -- findings ------------------------------------------------------------------------------

    def report(self, volume: str, findings: Any) -> int:
        """Record findings as open and raise one event each (``chunk.corrupt`` / ``chunk.missing``)."""
        checked = [_check_finding(f) for f in _check_list(findings, "findings")]
        vol = self._volume(volume, create=False)
        events, rows, now = [], [], time.time()
        for f in checked:
            entry = None
            if vol is not None:
                with vol.lock:
                    entry = vol.get(f["chunk_id"])
            rows.append((volume, f["chunk_id"], f["kind"], f["detail"], json.dumps(f["ref"]), now))
            events.append((f"chunk.{f['kind']}", finding_event(volume, f, entry)))
        with self.service_lock, Txn(self.service):
            self.service.executemany("INSERT OR REPLACE INTO findings VALUES (?, ?, ?, ?, ?, ?)", rows)
            outbox.emit(self.service, events)
        return len(rows)

    def findings(self, volume: str) -> list[dict]:
        check_service_id(volume)
        with self.service_lock:
            rows = self.service.execute("SELECT chunk_id, kind, detail, ref, ts FROM findings WHERE volume = ? "
                                        "ORDER BY ts, chunk_id", (volume,)).fetchall()
        return [{"chunk_id": c, "kind": k, "detail": d, "ref": json.loads(r), "ts": ts} for c, k, d, r, ts in rows]

    def _open_findings(self, volume: str) -> int:
        with self.service_lock:
            return self.service.execute("SELECT count(*) FROM findings WHERE volume = ?", (volume,)).fetchone()[0]

    # -- outbox --------------------------------------------------------------------------------

    def outbox_read(self, limit: int) -> dict:
        with self.service_lock:
            events = outbox.read(self.service, "service", limit)
        return {"events": events, "more": len(events) >= max(1, min(limit, outbox.MAX_READ))}

    def outbox_backlog(self) -> int:
        with self.service_lock:
            return outbox.count(self.service)

    def outbox_ack(self, acks: dict[str, Any]) -> dict:
        upto = acks.get("service")
        if upto is not None:
            with self.service_lock, Txn(self.service):
                outbox.ack(self.service, int(upto))
        return {"ok": True}


def _check_finding(f: Any) -> dict:
    if not isinstance(f, dict):
        raise BadRequest("a finding must be a JSON object")
    if f.get("kind") not in KINDS:
        raise BadRequest(f"finding kind must be one of {', '.join(KINDS)}, got {f.get('kind')!r}")
    ref = f.get("ref") or {}
    if not isinstance(ref, dict):
        raise BadRequest("finding ref must be a JSON object")
    return {"chunk_id": check_chunk_id(f.get("chunk_id")), "kind": f["kind"], "detail": str(f.get("detail", ""))[:2000],
            "ref": ref}


def finding_event(volume: str, f: dict, entry: dict | None) -> dict:
    """What the repair handler needs: the object (account, bucket, key, version) and the chunk.

    The index entry is the better source (it has the version); a chunk the index does not know
    falls back to its own back-reference, whose key is ``path`` and which may lack the version.
    """
    ref = f["ref"]
    if entry is not None:
        src = entry
    else:
        version = ref.get("version")
        src = {"container": str(ref.get("container", "")), "key": str(ref.get("path", "")),
               "version": int(version) if str(version or "").isdigit() else None,
               "content_id": str(ref.get("content_id", "")), "pos": str(ref.get("pos", ""))}
    account, _, bucket = src["container"].partition("/")
    return {"volume": volume, "chunk_id": f["chunk_id"], "account": account, "bucket": bucket,
            "container": src["container"], "key": src["key"], "version": src["version"],
            "content_id": src["content_id"], "pos": src["pos"], "detail": f["detail"]}
