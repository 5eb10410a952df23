"""One container's SQLite database (meta2): objects, versions, uploads, properties.

WAL mode with ``synchronous=FULL``: a commit that was acknowledged survives a kill -9.
Chunk locations of a version are stored as one JSON document with the version; the
directory never needs to query them individually.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gridfs.common.crc import check_crc32c, combine_hex
from gridfs.common.errors import (
    AlreadyExists,
    BadRequest,
    ContainerNotEmpty,
    InvalidPart,
    NoSuchContainer,
    NoSuchObject,
    NoSuchUpload,
    PreconditionFailed,
)
from gridfs.common.failpoints import failpoint
from gridfs.common.groupcommit import GroupCommit, Pending
from gridfs.common.names import check_key, check_prefix
from gridfs.directory import ops, outbox, retention
from gridfs.directory.model import ContainerInfo, ListResult, Metachunk, ObjectInfo, PartInfo, UploadInfo

SCHEMA = """
CREATE TABLE IF NOT EXISTS props (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS objects (
    key TEXT NOT NULL, version INTEGER NOT NULL, content_id TEXT NOT NULL, size INTEGER NOT NULL,
    mtime REAL NOT NULL, policy TEXT NOT NULL, chunk_method TEXT NOT NULL, hash TEXT NOT NULL,
    mime_type TEXT NOT NULL, properties TEXT NOT NULL, delete_marker INTEGER NOT NULL,
    null_version INTEGER NOT NULL, metachunks TEXT NOT NULL, crc32c TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (key, version)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS latest (key TEXT PRIMARY KEY, version INTEGER NOT NULL, live INTEGER NOT NULL)
    WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS latest_live ON latest (live, key);
CREATE TABLE IF NOT EXISTS uploads (
    upload_id TEXT PRIMARY KEY, key TEXT NOT NULL, policy TEXT NOT NULL, mime_type TEXT NOT NULL,
    properties TEXT NOT NULL, initiated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS parts (
    upload_id TEXT NOT NULL, part_number INTEGER NOT NULL, size INTEGER NOT NULL, etag TEXT NOT NULL,
    mtime REAL NOT NULL, chunk_method TEXT NOT NULL, metachunks TEXT NOT NULL, crc32c TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (upload_id, part_number));
"""
OBJECT_COLS = ("key, version, content_id, size, mtime, policy, chunk_method, hash, mime_type, properties, "
               "delete_marker, null_version, metachunks, crc32c")
MAX_KEYS = 1000


def _successor(prefix: str) -> str:
    """The smallest string greater than every string that starts with ``prefix``."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _urls(metachunks_json: str) -> list[str]:
    return [c["url"] for mc in json.loads(metachunks_json) for c in mc["chunks"]]


def chunk_id_of(url: str) -> str:
    """The chunk id a chunk URL ends with (``rawx://SERVICE/ID`` or the older ``http://ADDR/chunk/ID``).

    Chunk ids are random and unique in the grid: they, not URL strings, say whether two
    records name the same chunk.
    """
    return url.rsplit("/", 1)[-1]


def _add_crc32c_columns(db: sqlite3.Connection) -> None:
    """Databases made before objects and parts carried a CRC32C get the column ("" for what they hold).

    One look at the schema when a database is opened; ADD COLUMN with a default rewrites no row."""
    for table in ("objects", "parts"):
        if not any(col[1] == "crc32c" for col in db.execute(f"PRAGMA table_info({table})")):
            db.execute(f"ALTER TABLE {table} ADD COLUMN crc32c TEXT NOT NULL DEFAULT ''")


def open_db(path: Path, schema: str) -> sqlite3.Connection:
    """A database in WAL mode with ``synchronous=FULL`` (an acknowledged commit survives kill -9),
    with the op-id and outbox tables beside ``schema``."""
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(f"{schema};\n{ops.SCHEMA};\n{outbox.SCHEMA};")
    return db


class Meta2:
    """A container database. Callers serialize access with ``lock``."""

    def __init__(self, path: Path, service_id: str = "") -> None:
        self.path = path
        self.cid = path.stem
        self.service_id = service_id  # the meta2 service holding it, named in ContainerInfo
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = open_db(path, SCHEMA)
        _add_crc32c_columns(self.db)
        self.lock = threading.Lock()
        self._group: GroupCommit[tuple[str | None, Callable[[Meta2], dict]]] = GroupCommit(self._apply_group)
        self.on_group: Callable[[int, float], None] | None = None  # told each group's size and COMMIT seconds

    def close(self) -> None:
        self.db.close()

    def mutate(self, op_id: str | None, change: Callable[[Meta2], dict]) -> dict:
        """Apply ``change`` once per op id, in one transaction with its events and its answer (a replay of
        ``op_id`` answers what the first run answered and changes nothing), with group commit
        (gridfs.common.groupcommit): the changes that arrive while a
        transaction is being committed are applied together in the next one (one fsync), each in a
        savepoint of its own, so a refused change rolls back alone. Every caller returns only once the
        transaction holding its change is durable. The caller must not hold ``lock``."""
        return self._group.submit((op_id, change))

    def _apply_group(self, group: list[Pending[tuple[str | None, Callable[[Meta2], dict]]]]) -> None:
        outcomes: list[tuple[dict, Exception | None]] = []
        with self.lock:
            if self.db is None:  # dropped while the group waited
                raise NoSuchContainer(f"no container {self.cid}")
            with Txn(self.db):
                for p in group:
                    op_id, change = p.item
                    self.db.execute("SAVEPOINT change")
                    try:
                        before = ops.replay(self.db, op_id) if op_id is not None else None
                        result = before if before is not None else change(self)
                        if before is None and op_id is not None:
                            ops.record(self.db, op_id, result)
                        self.db.execute("RELEASE change")
                        outcomes.append((result, None))
                    except Exception as exc:  # this change is refused; the others go on
                        self.db.execute("ROLLBACK TO change")
                        self.db.execute("RELEASE change")
                        outcomes.append(({}, exc))
                failpoint("meta2.before_commit")  # a crash here rolls the whole group back
                committing = time.monotonic()
            committed = time.monotonic() - committing  # the COMMIT alone: the fsync of the WAL
        failpoint("meta2.after_commit")  # a crash here loses the answers, not the changes
        if self.on_group is not None:
            self.on_group(len(group), committed)
        for p, (result, error) in zip(group, outcomes, strict=True):
            p.settle(result, error)

    def fence(self, op_id: str) -> dict:
        with Txn(self.db):
            return ops.fence(self.db, op_id)

    def emit(self, events: list[tuple[str, dict]]) -> None:
        """Queue events in the outbox, inside the change's transaction."""
        p = self.props()
        where = {"account": p["account"], "bucket": p["bucket"]}
        outbox.emit(self.db, [(kind, {**where, **data}) for kind, data in events])

    # -- container ----------------------------------------------------------------

    def props(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self.db.execute("SELECT k, v FROM props")}

    def set_props(self, **values: Any) -> None:
        self.db.executemany("INSERT OR REPLACE INTO props VALUES (?, ?)",
                            [(k, json.dumps(v)) for k, v in values.items()])

    def info(self, stats: bool = False) -> ContainerInfo:
        p = self.props()
        info = ContainerInfo(account=p["account"], bucket=p["bucket"], cid=self.cid, meta2=self.service_id,
                             policy=p.get("policy", ""),
                             versioning=p.get("versioning", "disabled"), ctime=p.get("ctime", 0.0),
                             properties=p.get("properties", {}))
        if stats:
            row = self.db.execute("SELECT COUNT(*), COALESCE(SUM(o.size), 0) FROM latest l JOIN objects o "
                                  "ON o.key = l.key AND o.version = l.version WHERE l.live = 1").fetchone()
            info.objects, info.bytes = row
        return info

    def check_empty(self) -> None:
        if self.db.execute("SELECT 1 FROM objects LIMIT 1").fetchone():
            raise ContainerNotEmpty(f"container {self.props()['bucket']} still holds objects or versions")
        if self.db.execute("SELECT 1 FROM uploads LIMIT 1").fetchone():
            raise ContainerNotEmpty(f"container {self.props()['bucket']} has multipart uploads in progress")

    def _next_version(self) -> int:
        last = self.db.execute("SELECT v FROM props WHERE k = 'last_version'").fetchone()
        version = max(time.time_ns() // 1000, (json.loads(last[0]) if last else 0) + 1)
        self.set_props(last_version=version)
        return version

    # -- objects ------------------------------------------------------------------

    def _row_to_info(self, row: tuple, chunks: bool = True, latest: int | None = None) -> ObjectInfo:
        p = self.props()
        (key, version, content_id, size, mtime, policy, chunk_method, digest, mime, props, marker, _null, mcs,
         crc) = row
        return ObjectInfo(
            account=p["account"], bucket=p["bucket"], key=key, version=version, content_id=content_id, size=size,
            mtime=mtime, policy=policy, chunk_method=chunk_method, hash=digest, crc32c=crc, mime_type=mime,
            properties=json.loads(props), delete_marker=bool(marker),
            is_latest=latest is None or latest == version,
            metachunks=[Metachunk.from_dict(m) for m in json.loads(mcs)] if chunks else [],
        )

    def _refresh_latest(self, key: str) -> None:
        row = self.db.execute("SELECT version, delete_marker FROM objects WHERE key = ? ORDER BY version DESC LIMIT 1",
                              (key,)).fetchone()
        if row is None:
            self.db.execute("DELETE FROM latest WHERE key = ?", (key,))
        else:
            self.db.execute("INSERT OR REPLACE INTO latest VALUES (?, ?, ?)", (key, row[0], 0 if row[1] else 1))

    def _drop_versions(self, key: str, where: str, args: tuple = (), bypass_governance: bool = False) -> list[str]:
        """Delete some versions of ``key``; returns their chunk URLs. Refused (ObjectLocked) if object lock
        protects one of them: every removal of a version, overwrites included, comes through here."""
        rows = self.db.execute(f"SELECT version, properties, metachunks FROM objects WHERE key = ? AND {where}",
                               (key, *args)).fetchall()
        for version, props, _m in rows:
            if "s3.lock." in props:  # most versions have no lock: no JSON to decode
                retention.check_removable(key, version, json.loads(props), bypass_governance)
        self.db.execute(f"DELETE FROM objects WHERE key = ? AND {where}", (key, *args))
        return [u for (_v, _p, m) in rows for u in _urls(m)]

    def _replace_target(self, key: str) -> list[str]:
        """What a new version of ``key`` replaces, per the versioning state; returns garbage."""
        state = self.props().get("versioning", "disabled")
        if state == "enabled":
            return []
        if state == "suspended":
            return self._drop_versions(key, "null_version = 1")
        return self._drop_versions(key, "1 = 1")

    def _insert(self, obj: ObjectInfo, null_version: bool) -> ObjectInfo:
        if not obj.delete_marker:  # object lock: the bucket's default retention, lock settings checked
            bucket_props = self.props().get("properties", {})
            obj.properties = retention.with_default(bucket_props, obj.properties)
            retention.check_object_props(bucket_props, obj.properties)
        obj.version = self._next_version()
        obj.mtime = time.time()
        obj.content_id = obj.content_id or secrets.token_hex(16).upper()
        self.db.execute(
            f"INSERT INTO objects ({OBJECT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (obj.key, obj.version, obj.content_id, obj.size, obj.mtime, obj.policy, obj.chunk_method, obj.hash,
             obj.mime_type, json.dumps(obj.properties), int(obj.delete_marker), int(null_version),
             json.dumps([_mc_dict(m) for m in obj.metachunks]), obj.crc32c))
        self._refresh_latest(obj.key)
        return obj

    def commit(self, obj: ObjectInfo, if_none_match: bool = False,
               if_version: int | None = None) -> tuple[ObjectInfo, list[str]]:
        (committed, garbage), = self.commit_many([obj], if_none_match, if_version)
        return committed, garbage

    def commit_many(self, objs: list[ObjectInfo], if_none_match: bool = False,
                    if_version: int | None = None) -> list[tuple[ObjectInfo, list[str]]]:
        """Commit several records in one transaction (one fsync): bulk ingest of small files."""
        for obj in objs:
            check_key(obj.key)
            check_crc32c(obj.crc32c)
        state = self.props().get("versioning", "disabled")
        out = []
        with Txn(self.db):
            for obj in objs:
                self._check_write_condition(obj.key, if_none_match, if_version)
                garbage = self._replace_target(obj.key)
                obj.delete_marker = False
                out.append((self._insert(obj, null_version=state != "enabled"), garbage))
        return out

    def _live(self, key: str) -> bool:
        return bool(self.db.execute("SELECT 1 FROM latest WHERE key = ? AND live = 1", (key,)).fetchone())

    def _check_write_condition(self, key: str, if_none_match: bool, if_version: int | None) -> None:
        """A conditional write's test, in the write's own transaction (so two racing writes cannot both pass):
        ``if_none_match``, no live version of ``key`` (AlreadyExists); ``if_version``, the live version of
        ``key`` is that one still (PreconditionFailed: it was replaced or deleted meanwhile)."""
        if if_none_match and self._live(key):
            raise AlreadyExists(f"{key} already exists")
        if if_version is not None:
            row = self.db.execute("SELECT version FROM latest WHERE key = ? AND live = 1", (key,)).fetchone()
            if row is None or row[0] != if_version:
                raise PreconditionFailed(f"{key!r} is no longer at version {if_version}")

    def get(self, key: str, version: int | None = None, chunks: bool = True, markers: bool = False) -> ObjectInfo:
        """A version of ``key`` (the latest by default); ``markers``: a delete marker is answered (its
        ``delete_marker`` set), not NoSuchObject, as S3 must tell a deleted key from a missing one."""
        check_key(key)
        latest = self.db.execute("SELECT version, live FROM latest WHERE key = ?", (key,)).fetchone()
        if version is None:
            if latest is None or not (latest[1] or markers):
                why = " (its latest version is a delete marker)" if latest else ""
                raise NoSuchObject(f"no object {key!r}{why}")
            version = latest[0]
        row = self.db.execute(f"SELECT {OBJECT_COLS} FROM objects WHERE key = ? AND version = ?",
                              (key, version)).fetchone()
        if row is None:
            raise NoSuchObject(f"no version {version} of {key!r}")
        info = self._row_to_info(row, chunks, latest[0] if latest else None)
        if info.delete_marker and not markers:
            raise NoSuchObject(f"version {version} of {key!r} is a delete marker")
        return info

    def delete(self, key: str, version: int | None = None, bypass_governance: bool = False) -> tuple[dict, list[str]]:
        """Delete a version, or the object (a delete marker when versioned); ``bypass_governance`` lets a
        version under GOVERNANCE retention go (never one under COMPLIANCE or a legal hold)."""
        check_key(key)
        with Txn(self.db):
            if version is not None:
                row = self.db.execute("SELECT delete_marker FROM objects WHERE key = ? AND version = ?",
                                      (key, version)).fetchone()
                if row is None:
                    raise NoSuchObject(f"no version {version} of {key!r}")
                garbage = self._drop_versions(key, "version = ?", (version,), bypass_governance)
                self._refresh_latest(key)
                return {"version": version, "delete_marker": bool(row[0])}, garbage
            state = self.props().get("versioning", "disabled")
            if state == "disabled":
                if not self._live(key):
                    raise NoSuchObject(f"no object {key!r}")
                garbage = self._drop_versions(key, "1 = 1", (), bypass_governance)
                self._refresh_latest(key)
                return {"version": None, "delete_marker": False}, garbage
            garbage = self._drop_versions(key, "null_version = 1") if state == "suspended" else []
            marker = ObjectInfo(account="", bucket="", key=key, policy="", chunk_method="", delete_marker=True)
            self.db.execute("DELETE FROM latest WHERE key = ?", (key,))
            marker = self._insert(marker, null_version=state == "suspended")
            self.db.execute("UPDATE objects SET delete_marker = 1 WHERE key = ? AND version = ?",
                            (key, marker.version))
            self._refresh_latest(key)
            return {"version": marker.version, "delete_marker": True}, garbage

    def rename(self, src: str, dst: str) -> tuple[ObjectInfo, list[str]]:
        check_key(src)
        check_key(dst)
        with Txn(self.db):
            info = self.get(src)
            garbage = self._replace_target(dst) if src != dst else []
            _, more = self._delete_for_rename(src, info.version)
            info.key = dst
            state = self.props().get("versioning", "disabled")
            return self._insert(info, null_version=state != "enabled"), garbage + more

    def _delete_for_rename(self, key: str, version: int) -> tuple[None, list[str]]:
        # The renamed version's chunks move to the new key: they are not garbage. A locked version stays put.
        row = self.db.execute("SELECT properties FROM objects WHERE key = ? AND version = ?", (key, version)).fetchone()
        retention.check_removable(key, version, json.loads(row[0]) if row else {})
        self.db.execute("DELETE FROM objects WHERE key = ? AND version = ?", (key, version))
        self._refresh_latest(key)
        return None, []

    def set_properties(self, key: str, properties: dict, version: int | None, replace: bool,
                       bypass_governance: bool = False) -> ObjectInfo:
        with Txn(self.db):
            info = self.get(key, version, chunks=False)
            if replace:
                new = {k: v for k, v in properties.items() if v is not None}
            else:
                new = dict(info.properties)
                for k, v in properties.items():
                    if v is None:
                        new.pop(k, None)
                    else:
                        new[k] = v
            _check_properties(new)
            retention.check_object_props(self.props().get("properties", {}), new)
            retention.check_change(key, info.properties, new, bypass_governance)
            self.db.execute("UPDATE objects SET properties = ? WHERE key = ? AND version = ?",
                            (json.dumps(new), key, info.version))
            info.properties = new
            return info

    def referenced_urls(self) -> list[str]:
        """Every chunk URL this container references: all object versions and all uploaded parts."""
        urls: set[str] = set()
        for table in ("objects", "parts"):
            for (mcs,) in self.db.execute(f"SELECT metachunks FROM {table}"):
                urls.update(_urls(mcs))
        return sorted(urls)

    def replace_chunks(self, key: str, version: int, content_id: str, metachunks: list[Metachunk],
                       base: list[str] | None = None) -> list[str]:
        """Swap an object version's chunk locations (a repair), if it is still the same content
        and, when ``base`` (chunk ids) is given, still has exactly the chunks the repair started from.

        Returns the chunk URLs no longer referenced. Sizes and offsets must not change:
        a repair moves chunks, it never changes what the object holds.
        """
        with Txn(self.db):
            info = self.get(key, version)
            if info.content_id != content_id:
                raise PreconditionFailed(f"{key!r} version {version} changed while it was being repaired")
            current = sorted(chunk_id_of(c.url) for m in info.metachunks for c in m.chunks)
            if base is not None and current != sorted(base):
                # Two repairs of one object (a drain and a scrub finding, say): the later commit would
                # keep a chunk the earlier one moved away, which the reaper is deleting.
                raise PreconditionFailed(f"{key!r} version {version}: its chunks moved while it was being repaired")
            if [(m.pos, m.offset, m.size) for m in info.metachunks] != [(m.pos, m.offset, m.size) for m in metachunks]:
                raise BadRequest("a repair may move chunks, not change the object's layout")
            self.db.execute("UPDATE objects SET metachunks = ? WHERE key = ? AND version = ?",
                            (json.dumps([_mc_dict(m) for m in metachunks]), key, version))
            kept = {chunk_id_of(c.url) for m in metachunks for c in m.chunks}
            return [c.url for m in info.metachunks for c in m.chunks if chunk_id_of(c.url) not in kept]

    # -- listing ------------------------------------------------------------------

    def list(self, prefix: str, delimiter: str, start_after: str, token: str, max_keys: int) -> ListResult:
        check_prefix(prefix)
        max_keys = max(0, min(MAX_KEYS, max_keys))
        lower, inclusive = prefix, True
        for bound in (start_after, token[2:] if token else ""):
            if bound and bound >= lower:
                lower, inclusive = bound, False
        if token.startswith("P:"):
            lower, inclusive = _successor(token[2:]), True
        upper = _successor(prefix) if prefix else None
        objects: list[ObjectInfo] = []
        prefixes: list[str] = []
        last = ""
        while len(objects) + len(prefixes) < max_keys:
            sql = "SELECT key FROM latest WHERE live = 1 AND key " + (">=" if inclusive else ">") + " ?"
            args: list[Any] = [lower]
            if upper is not None:
                sql += " AND key < ?"
                args.append(upper)
            rows = self.db.execute(sql + " ORDER BY key LIMIT ?", (*args, max_keys + 1)).fetchall()
            if not rows:
                return ListResult(objects, prefixes, False)
            jumped = False
            for (key,) in rows:
                if len(objects) + len(prefixes) >= max_keys:
                    return ListResult(objects, prefixes, True, last)
                cut = key.find(delimiter, len(prefix)) if delimiter else -1
                if cut >= 0:
                    common = key[: cut + len(delimiter)]
                    prefixes.append(common)
                    last = "P:" + common
                    lower, inclusive, jumped = _successor(common), True, True
                    break  # skip every key under this common prefix with one seek
                objects.append(self._listed(key))
                last = "K:" + key
                lower, inclusive = key, False
            if not jumped and len(rows) <= max_keys:
                return ListResult(objects, prefixes, False)
        more = self.db.execute("SELECT 1 FROM latest WHERE live = 1 AND key " + (">=" if inclusive else ">") + " ?"
                               + (" AND key < ?" if upper is not None else "") + " LIMIT 1",
                               (lower, upper) if upper is not None else (lower,)).fetchone()
        return ListResult(objects, prefixes, bool(more), last if more else "")

    def _listed(self, key: str) -> ObjectInfo:
        row = self.db.execute(f"SELECT {OBJECT_COLS} FROM objects WHERE key = ? AND version = "
                              "(SELECT version FROM latest WHERE key = ?)", (key, key)).fetchone()
        return self._row_to_info(row, chunks=False)

    def list_versions(self, prefix: str, delimiter: str, key_marker: str, version_marker: int | None,
                      max_keys: int) -> dict:
        check_prefix(prefix)
        max_keys = max(0, min(MAX_KEYS, max_keys))
        args: list[Any] = [prefix]
        sql = f"SELECT {OBJECT_COLS} FROM objects WHERE key >= ?"
        if prefix:
            sql += " AND key < ?"
            args.append(_successor(prefix))
        if key_marker:
            if version_marker is None:
                sql += " AND key > ?"
                args.append(key_marker)
            else:
                sql += " AND (key > ? OR (key = ? AND version < ?))"
                args += [key_marker, key_marker, version_marker]
        latest = dict(self.db.execute("SELECT key, version FROM latest").fetchall()) if max_keys else {}
        versions: list[ObjectInfo] = []
        prefixes: list[str] = []
        truncated = False
        for row in self.db.execute(sql + " ORDER BY key, version DESC", args):
            key = row[0]
            cut = key.find(delimiter, len(prefix)) if delimiter else -1
            if cut >= 0:
                common = key[: cut + len(delimiter)]
                if prefixes and prefixes[-1] == common:
                    continue
                if len(versions) + len(prefixes) >= max_keys:
                    truncated = True
                    break
                prefixes.append(common)
                continue
            if len(versions) + len(prefixes) >= max_keys:
                truncated = True
                break
            versions.append(self._row_to_info(row, chunks=False, latest=latest.get(key)))
        last = versions[-1] if versions else None
        return {"versions": [v.to_dict() for v in versions], "prefixes": prefixes, "truncated": truncated,
                "next_key_marker": last.key if truncated and last else "",
                "next_version_marker": last.version if truncated and last else None}

    # -- multipart ----------------------------------------------------------------

    def create_upload(self, key: str, policy: str, mime_type: str, properties: dict) -> UploadInfo:
        check_key(key)
        _check_properties(properties)
        up = UploadInfo(upload_id=secrets.token_hex(16), key=key, policy=policy, mime_type=mime_type,
                        properties=properties, initiated=time.time())
        with Txn(self.db):
            self.db.execute("INSERT INTO uploads VALUES (?, ?, ?, ?, ?, ?)",
                            (up.upload_id, key, policy, mime_type, json.dumps(properties), up.initiated))
        return up

    def _upload(self, upload_id: str) -> UploadInfo:
        row = self.db.execute("SELECT upload_id, key, policy, mime_type, properties, initiated FROM uploads "
                              "WHERE upload_id = ?", (upload_id,)).fetchone()
        if row is None:
            raise NoSuchUpload(f"no multipart upload {upload_id!r}")
        return UploadInfo(row[0], row[1], row[2], row[3], json.loads(row[4]), row[5])

    def list_uploads(self, prefix: str) -> list[UploadInfo]:
        rows = self.db.execute("SELECT upload_id FROM uploads WHERE key >= ? ORDER BY key, initiated",
                               (prefix,)).fetchall()
        return [u for (uid,) in rows if (u := self._upload(uid)).key.startswith(prefix)]

    def commit_part(self, upload_id: str, part: PartInfo, chunk_method: str) -> list[str]:
        if not 1 <= part.part_number <= 10000:
            raise InvalidPart(f"part number {part.part_number} is outside 1-10000")
        check_crc32c(part.crc32c)
        with Txn(self.db):
            self._upload(upload_id)
            old = self.db.execute("SELECT metachunks FROM parts WHERE upload_id = ? AND part_number = ?",
                                  (upload_id, part.part_number)).fetchone()
            self.db.execute("INSERT OR REPLACE INTO parts (upload_id, part_number, size, etag, mtime, chunk_method, "
                            "metachunks, crc32c) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                            (upload_id, part.part_number, part.size, part.etag, time.time(), chunk_method,
                             json.dumps([_mc_dict(m) for m in part.metachunks]), part.crc32c))
            return _urls(old[0]) if old else []

    def list_parts(self, upload_id: str) -> list[PartInfo]:
        self._upload(upload_id)
        rows = self.db.execute("SELECT part_number, size, etag, mtime, crc32c, metachunks FROM parts "
                               "WHERE upload_id = ? ORDER BY part_number", (upload_id,)).fetchall()
        return [PartInfo(upload_id, n, size, etag, mtime, crc32c=crc,
                         metachunks=[Metachunk.from_dict(m) for m in json.loads(mcs)])
                for n, size, etag, mtime, crc, mcs in rows]

    def complete_upload(
        self, upload_id: str, parts: list[tuple[int, str]], digest: str, extra: dict | None = None,
        if_none_match: bool = False, if_version: int | None = None,
    ) -> tuple[ObjectInfo, list[str]]:
        """Assemble the object from its parts; ``extra`` properties join the upload's in the same commit.
        A write condition that fails leaves the upload as it was."""
        if extra:
            _check_properties(extra)
        with Txn(self.db):
            up = self._upload(upload_id)
            self._check_write_condition(up.key, if_none_match, if_version)
            stored = {n: (size, etag, method, mcs, crc) for n, size, etag, method, mcs, crc in self.db.execute(
                "SELECT part_number, size, etag, chunk_method, metachunks, crc32c FROM parts WHERE upload_id = ?",
                (upload_id,))}
            if not parts:
                raise InvalidPart("a multipart upload needs at least one part")
            numbers = [n for n, _ in parts]
            if numbers != sorted(numbers) or len(set(numbers)) != len(numbers):
                raise InvalidPart("InvalidPartOrder: parts must be listed in ascending order, once each")
            metachunks: list[dict] = []
            offset, methods = 0, set()
            for n, etag in parts:
                if n not in stored:
                    raise InvalidPart(f"part {n} was not uploaded")
                size, stored_etag, method, mcs, _crc = stored[n]
                if etag and etag.strip('"') != stored_etag.strip('"'):
                    raise InvalidPart(f"part {n}: etag {etag} does not match the uploaded part")
                methods.add(method)
                for mc in json.loads(mcs):
                    mc["pos"], mc["offset"] = len(metachunks), offset + mc["offset"]
                    metachunks.append(mc)
                offset += size
            if len(methods) > 1:
                raise BadRequest("parts were written with different chunk methods")
            garbage = [u for n, (_s, _e, _m, mcs, _c) in stored.items() if n not in set(numbers) for u in _urls(mcs)]
            self.db.execute("DELETE FROM parts WHERE upload_id = ?", (upload_id,))
            self.db.execute("DELETE FROM uploads WHERE upload_id = ?", (upload_id,))
            obj = ObjectInfo(account="", bucket="", key=up.key, size=offset, policy=up.policy,
                             chunk_method=methods.pop(), hash=digest, mime_type=up.mime_type,
                             crc32c=combine_hex((stored[n][4], stored[n][0]) for n in numbers),
                             properties={**up.properties, **(extra or {})},
                             metachunks=[Metachunk.from_dict(m) for m in metachunks])
            garbage += self._replace_target(up.key)
            state = self.props().get("versioning", "disabled")
            return self._insert(obj, null_version=state != "enabled"), garbage

    def abort_upload(self, upload_id: str) -> list[str]:
        with Txn(self.db):
            self._upload(upload_id)
            rows = self.db.execute("SELECT metachunks FROM parts WHERE upload_id = ?", (upload_id,)).fetchall()
            self.db.execute("DELETE FROM parts WHERE upload_id = ?", (upload_id,))
            self.db.execute("DELETE FROM uploads WHERE upload_id = ?", (upload_id,))
            return [u for (m,) in rows for u in _urls(m)]


def _mc_dict(mc: Metachunk) -> dict:
    return {"pos": mc.pos, "offset": mc.offset, "size": mc.size, "missing": list(mc.missing),
            "chunks": [{"url": c.url, "sub": c.sub, "size": c.size, "hash": c.hash} for c in mc.chunks]}


def _check_properties(props: dict) -> None:
    if not isinstance(props, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in props.items()):
        raise BadRequest("properties must map strings to strings")
    if len(json.dumps(props)) > 64 * 1024:
        raise BadRequest("properties are limited to 64 KiB")


class Txn:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error.

    Nested use joins the open transaction, so a change, its events and its op id commit
    as one (the outermost Txn commits or rolls back everything).
    """

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.outer = False

    def __enter__(self) -> None:
        self.outer = not self.db.in_transaction
        if self.outer:
            self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        if self.outer:
            self.db.execute("ROLLBACK" if exc_type else "COMMIT")

