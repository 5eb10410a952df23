"""The meta2 service: the container databases it holds, one SQLite file each.

Routes, per container (``/v1/meta2/<CID>``):
  POST create | drop                       made and removed by meta1, never by clients
  GET|POST container                       info (``stats=true``) / set policy, versioning, properties
  POST commit | delete | rename | properties | chunks (a repair moves chunk locations)
  POST uploads | uploads/<UID>/parts | uploads/<UID>/complete | uploads/<UID>/abort
  GET  object | list | versions | chunks (every chunk URL referenced) | uploads | uploads/<UID>/parts
  POST resolve {"op_id"}                   settle an op whose answer was lost (applied or fenced)
And for the event agent: ``GET /v1/outbox`` and ``POST /v1/outbox/ack``.

Every change carries an ``op_id`` and commits in one transaction with its events and
its answer (see ``Meta2.mutate``). Database work runs in a thread pool, one lock per
container; one more lock guards the table of open databases.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import Counter, Histogram

from gridfs.common.errors import AlreadyExists, BadRequest, NoSuchContainer
from gridfs.common.metrics import FSYNC_BUCKETS
from gridfs.common.names import check_account, check_bucket, check_container_id, container_id
from gridfs.directory import outbox, retention
from gridfs.directory.meta2db import Meta2, Txn, open_db
from gridfs.directory.model import Metachunk, ObjectInfo, PartInfo
from gridfs.directory.ops import check_op_id
from gridfs.directory.role import RoleService

# Where the pending events of a dropped container go (a container database is deleted with
# its bucket, but events it had not delivered yet must still reach the agent).
SERVICE_DB = "service"
Change = Callable[[Meta2, dict], dict]
# What a commit's writer may say its object came from (content.new's ``origin``); "multipart" and "rename" are
# set here by complete and rename.
ORIGINS = ("", "put", "post", "copy")


def _obj_event(obj: ObjectInfo) -> dict:
    return {"key": obj.key, "version": obj.version, "size": obj.size, "policy": obj.policy}


def _chunk_list(metachunks: list[Metachunk]) -> list[dict]:
    """Every chunk with its position: what the reverse index keeps per volume."""
    return [{"url": c.url, "pos": f"{mc.pos}.{c.sub}", "size": c.size} for mc in metachunks for c in mc.chunks]


def _new_event(obj: ObjectInfo, **extra: Any) -> tuple[str, dict]:
    return ("content.new", {**_obj_event(obj), **extra, "content_id": obj.content_id,
                            "chunks": _chunk_list(obj.metachunks)})


def _origin(body: dict) -> str:
    """How a committed object came to be, as its writer says (``ORIGINS``): only for the events, so that
    S3 notifications can tell ObjectCreated:Put from :Post and :Copy; "" counts as a put."""
    origin = body.get("origin") or ""
    if origin not in ORIGINS:
        raise BadRequest(f"origin must be one of {', '.join(ORIGINS[1:])} or empty, not {origin!r}")
    return origin or "put"


def _new_events(obj: ObjectInfo, origin: str) -> list[tuple[str, dict]]:
    """content.new, and content.degraded when a position was not written: the write succeeded
    short of its policy, and the repair handler must not wait for an operator."""
    events = [_new_event(obj, origin=origin)]
    missing = [f"{mc.pos}.{sub}" for mc in obj.metachunks for sub in mc.missing]
    if missing:
        events.append(("content.degraded", {"key": obj.key, "version": obj.version, "content_id": obj.content_id,
                                            "missing": missing}))
    return events


def _garbage_event(garbage: list[str], **data: Any) -> list[tuple[str, dict]]:
    return [("content.deleted", {**data, "chunks": garbage})] if garbage else []


# -- the changes: each runs inside Meta2.mutate's transaction and returns the answer ------------


def commit(m: Meta2, body: dict) -> dict:
    objs = [ObjectInfo.from_dict(o) for o in body.get("objects") or [body["object"]]]
    origin = _origin(body)
    done = m.commit_many(objs, bool(body.get("if_none_match")), _version_condition(body))
    events: list[tuple[str, dict]] = []
    for info, garbage in done:
        events += _new_events(info, origin)
        events += _garbage_event(garbage, key=info.key, reason="replaced")
    m.emit(events)
    if "objects" in body:
        return {"objects": [i.to_dict() for i, _ in done], "garbage": [u for _, g in done for u in g]}
    info, garbage = done[0]
    return {"object": info.to_dict(), "garbage": garbage}


def _version_condition(body: dict) -> int | None:
    """``if_version``: the version a conditional write expects to replace (an integer), or None."""
    value = body.get("if_version")
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise BadRequest("if_version must be an integer")
    return value


def delete(m: Meta2, body: dict) -> dict:
    result, garbage = m.delete(body["key"], body.get("version"), bool(body.get("bypass_governance")))
    # A marker written by this delete, or one removed by naming its version: both answer delete_marker.
    created = body.get("version") is None and bool(result.get("delete_marker"))
    m.emit([("content.deleted", {"key": body["key"], "reason": "deleted", "chunks": garbage, **result,
                                 "marker_created": created})])
    return {"result": result, "garbage": garbage}


def rename(m: Meta2, body: dict) -> dict:
    info, garbage = m.rename(body["src"], body["dst"])
    # The chunks are the source's, under a new key and version: the index re-keys them.
    m.emit([_new_event(info, renamed_from=body["src"], origin="rename"),
            *_garbage_event(garbage, key=info.key, reason="replaced")])
    return {"object": info.to_dict(), "garbage": garbage}


def properties(m: Meta2, body: dict) -> dict:
    info = m.set_properties(body["key"], body["properties"], body.get("version"), bool(body.get("replace")),
                            bool(body.get("bypass_governance")))
    m.emit([("content.updated", _obj_event(info))])
    return info.to_dict()


def chunks(m: Meta2, body: dict) -> dict:
    metachunks = [Metachunk.from_dict(mc) for mc in body["metachunks"]]
    version, content_id = int(body["version"]), str(body["content_id"])
    base = body.get("base_chunks")  # the chunks the repair started from (compare-and-set)
    garbage = m.replace_chunks(body["key"], version, content_id, metachunks,
                               None if base is None else [str(c) for c in base])
    m.emit([("content.chunks", {"key": body["key"], "version": version, "content_id": content_id,
                                "chunks": _chunk_list(metachunks)}),
            *_garbage_event(garbage, key=body["key"], reason="repaired")])
    return {"garbage": garbage}


def set_container(m: Meta2, body: dict) -> dict:
    before = m.info()
    if body.get("policy") is not None:
        m.set_props(policy=str(body["policy"]))
    if body.get("versioning") is not None:
        if body["versioning"] not in ("enabled", "suspended"):
            raise BadRequest("versioning must be 'enabled' or 'suspended'")
        m.set_props(versioning=body["versioning"])
    if body.get("properties") is not None:
        m.set_props(properties=dict(body["properties"]))
    after = m.info()
    retention.check_container(before.properties, after.properties, after.versioning)  # rolled back if refused
    return after.to_dict()


def create_upload(m: Meta2, body: dict) -> dict:
    return m.create_upload(body["key"], body.get("policy", ""), body.get("mime_type", "application/octet-stream"),
                           body.get("properties") or {}).to_dict()


def commit_part(m: Meta2, body: dict) -> dict:
    garbage = m.commit_part(body["upload_id"], PartInfo.from_dict(body["part"]), body["chunk_method"])
    m.emit(_garbage_event(garbage, upload_id=body["upload_id"], reason="part replaced"))
    return {"garbage": garbage}


def complete(m: Meta2, body: dict) -> dict:
    info, garbage = m.complete_upload(body["upload_id"], [(int(n), str(e)) for n, e in body["parts"]],
                                      body.get("hash", ""), body.get("properties"), bool(body.get("if_none_match")),
                                      _version_condition(body))
    m.emit([*_new_events(info, "multipart"), *_garbage_event(garbage, key=info.key, reason="multipart")])
    return {"object": info.to_dict(), "garbage": garbage}


def abort(m: Meta2, body: dict) -> dict:
    garbage = m.abort_upload(body["upload_id"])
    m.emit(_garbage_event(garbage, upload_id=body["upload_id"], reason="aborted"))
    return {"garbage": garbage}


class Meta2Service(RoleService):
    kind = "meta2"

    def __init__(self, data: Path, secret: str, conscience_url: str) -> None:
        super().__init__(data, secret, conscience_url)
        self._open_lock = threading.Lock()
        self._dbs: dict[str, Meta2] = {}
        self._service = open_db(data / f"{SERVICE_DB}.db", "SELECT 1")
        self._service_lock = threading.Lock()
        # Containers whose outbox may hold events: every one at start (a crash may have left some).
        self._pending = {p.stem for p in (data / "meta2").glob("*/*.db")}
        # Group commit at work: changes applied, and the transactions (fsyncs) they took.
        self._changes = Counter("grid_meta2_changes", "container changes applied", registry=self.metrics)
        self._transactions = Counter("grid_meta2_transactions", "transactions committed for them",
                                     registry=self.metrics)
        self._commit_time = Histogram("grid_meta2_commit_seconds", "time of each COMMIT (the WAL's fsync)",
                                      buckets=FSYNC_BUCKETS, registry=self.metrics)

    # -- databases ------------------------------------------------------------------------------

    def _path(self, cid: str) -> Path:
        return self.data / "meta2" / cid[:2] / f"{cid}.db"

    def _get(self, cid: str) -> Meta2:
        check_container_id(cid)
        with self._open_lock:
            m2 = self._dbs.get(cid)
            if m2 is None:
                if not self._path(cid).exists():
                    raise NoSuchContainer(f"no container {cid} on {self.service_id}")
                m2 = self._dbs[cid] = Meta2(self._path(cid), self.service_id)
                m2.on_group = self._count_group
            return m2

    def _on(self, cid: str, fn: Callable[[Meta2], Any]) -> Any:
        m2 = self._get(cid)
        with m2.lock:
            if m2.db is None:  # dropped while we waited for the lock
                raise NoSuchContainer(f"no container {cid} on {self.service_id}")
            return fn(m2)

    def _count_group(self, changes: int, commit_seconds: float) -> None:
        self._changes.inc(changes)
        self._transactions.inc()
        self._commit_time.observe(commit_seconds)

    def create(self, cid: str, body: dict) -> dict:
        """Create a container database (meta1 asks); the same account and name again is a no-op."""
        account, name = check_account(body.get("account", "")), check_bucket(body.get("name", ""))
        if container_id(account, name) != cid:
            raise BadRequest("container id does not match account and name")
        versioning = "enabled" if body.get("versioning") else "disabled"
        retention.check_container({}, body.get("properties") or {}, versioning)
        with self._open_lock:
            m2 = self._dbs.get(cid) or Meta2(self._path(cid), self.service_id)
            m2.on_group = self._count_group
            self._dbs[cid] = m2
        with m2.lock, Txn(m2.db):
            props = m2.props()
            if props and (props["account"], props["bucket"]) != (account, name):
                raise AlreadyExists(f"container {cid} holds another bucket")
            if not props:
                m2.set_props(account=account, bucket=name, policy=str(body.get("policy") or ""),
                             versioning=versioning, ctime=time.time(), properties=body.get("properties") or {})
        return m2.info().to_dict()

    def drop(self, cid: str) -> dict:
        """Delete an empty container's database; its undelivered events move to the service's outbox."""
        try:
            m2 = self._get(cid)
        except NoSuchContainer:
            return {"dropped": False}
        with m2.lock:
            m2.check_empty()
            pending = outbox.read(m2.db, cid, outbox.MAX_READ)
            with self._service_lock, Txn(self._service):
                outbox.emit(self._service, [(e["type"], e["data"]) for e in pending])
            m2.close()
            m2.db = None  # type: ignore[assignment]
            for suffix in ("", "-wal", "-shm"):
                Path(f"{m2.path}{suffix}").unlink(missing_ok=True)
        with self._open_lock:
            self._dbs.pop(cid, None)
        self._pending.add(SERVICE_DB)
        return {"dropped": True}

    # -- outbox ---------------------------------------------------------------------------------

    def outbox_read(self, limit: int) -> dict:
        events: list[dict] = []
        for name in sorted(self._pending):
            if len(events) >= limit:
                return {"events": events, "more": True}
            room = limit - len(events)
            try:
                got = self._outbox_of(name, lambda db, n=name, room=room: outbox.read(db, n, room))
            except NoSuchContainer:
                got = []
            if not got:
                self._pending.discard(name)
            events += got
        return {"events": events, "more": False}

    def outbox_backlog(self) -> int:
        total = 0
        for name in list(self._pending):  # the only databases that may hold events
            with contextlib.suppress(NoSuchContainer):
                total += self._outbox_of(name, outbox.count)
        return total

    def outbox_ack(self, acks: dict[str, int]) -> dict:
        for name, upto in acks.items():
            # A container dropped since had its events moved to the service outbox, acked there.
            with contextlib.suppress(NoSuchContainer):
                self._outbox_of(name, lambda db, u=int(upto): _ack(db, u))
        return {"ok": True}

    def _outbox_of(self, name: str, fn: Callable[[Any], Any]) -> Any:
        if name == SERVICE_DB:
            with self._service_lock:
                return fn(self._service)
        return self._on(name, lambda m: fn(m.db))

    # -- HTTP -----------------------------------------------------------------------------------

    def mutation(self, change: Change, with_upload: bool = False) -> Callable[[web.Request], Any]:
        """A route applying ``change`` to one container, once per op id."""

        async def handler(r: web.Request) -> web.Response:
            body = await r.json()
            if not isinstance(body, dict):
                raise BadRequest("body must be a JSON object")
            if with_upload:
                body["upload_id"] = r.match_info["uid"]
            op_id = check_op_id(body["op_id"]) if body.get("op_id") is not None else None
            cid = r.match_info["cid"]
            # Group commit: concurrent changes of one container share a transaction (Meta2.mutate).
            result = await self.run(lambda: self._get(cid).mutate(op_id, lambda mm: change(mm, body)))
            self._pending.add(cid)
            return web.json_response(result)

        return handler

    def query(self, fn: Callable[[Meta2, Any], Any]) -> Callable[[web.Request], Any]:
        """A read-only route: ``fn(meta2, query)`` under the container's lock."""

        async def handler(r: web.Request) -> web.Response:
            q = r.query
            return web.json_response(await self.run(self._on, r.match_info["cid"], lambda m: fn(m, q)))

        return handler

    def routes(self) -> list[web.RouteDef]:
        async def create(r: web.Request) -> web.Response:
            return web.json_response(await self.run(self.create, r.match_info["cid"], await r.json()), status=201)

        async def drop(r: web.Request) -> web.Response:
            return web.json_response(await self.run(self.drop, r.match_info["cid"]))

        async def resolve(r: web.Request) -> web.Response:
            op_id = check_op_id((await r.json()).get("op_id"))
            return web.json_response(await self.run(self._on, r.match_info["cid"], lambda m: m.fence(op_id)))

        def info(m: Meta2, q: Any) -> dict:
            return m.info(q.get("stats") == "true").to_dict()

        m2 = "/v1/meta2/{cid}"
        mutate, query = self.mutation, self.query
        return [
            web.post(m2 + "/create", create), web.post(m2 + "/drop", drop), web.post(m2 + "/resolve", resolve),
            web.get(m2 + "/container", query(info)), web.post(m2 + "/container", mutate(set_container)),
            web.post(m2 + "/commit", mutate(commit)), web.post(m2 + "/delete", mutate(delete)),
            web.post(m2 + "/rename", mutate(rename)), web.post(m2 + "/properties", mutate(properties)),
            web.post(m2 + "/chunks", mutate(chunks)),
            web.get(m2 + "/chunks", query(lambda m, q: m.referenced_urls())),
            web.get(m2 + "/object", query(_get_object)),
            web.get(m2 + "/list", query(_list)), web.get(m2 + "/versions", query(_versions)),
            web.post(m2 + "/uploads", mutate(create_upload)),
            web.get(m2 + "/uploads", query(lambda m, q: [u.to_dict() for u in m.list_uploads(q.get("prefix", ""))])),
            web.post(m2 + "/uploads/{uid}/parts", mutate(commit_part, with_upload=True)),
            web.get(m2 + "/uploads/{uid}/parts", self._parts()),
            web.post(m2 + "/uploads/{uid}/complete", mutate(complete, with_upload=True)),
            web.post(m2 + "/uploads/{uid}/abort", mutate(abort, with_upload=True)),
            *self.outbox_routes(),
        ]

    def _parts(self) -> Callable[[web.Request], Any]:
        async def handler(r: web.Request) -> web.Response:
            uid = r.match_info["uid"]
            return web.json_response(await self.run(self._on, r.match_info["cid"],
                                                    lambda m: [p.to_dict() for p in m.list_parts(uid)]))

        return handler


def _ack(db: Any, upto: int) -> None:
    with Txn(db):
        outbox.ack(db, upto)


def _get_object(m: Meta2, q: Any) -> dict:
    version = int(q["version"]) if q.get("version") else None
    return m.get(q.get("key", ""), version, q.get("chunks") != "false", q.get("markers") == "true").to_dict()


def _list(m: Meta2, q: Any) -> dict:
    try:
        max_keys = int(q.get("max_keys", 1000))
    except ValueError:
        raise BadRequest("max_keys must be an integer") from None
    return m.list(q.get("prefix", ""), q.get("delimiter", ""), q.get("start_after", ""), q.get("token", ""),
                  max_keys).to_dict()


def _versions(m: Meta2, q: Any) -> dict:
    vm = int(q["version_marker"]) if q.get("version_marker") else None
    return m.list_versions(q.get("prefix", ""), q.get("delimiter", ""), q.get("key_marker", ""), vm,
                           int(q.get("max_keys", 1000)))
