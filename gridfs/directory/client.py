"""``DirectoryClient``: the directory's hops, hidden and cached.

A container id is a hash of account and name; its first 4 hex digits pick the
prefix. meta0 maps the prefix to a meta1 service, meta1 the container to its meta2
service. Both answers are cached per client; a NoSuchContainer after a cached hit
drops the entry, so a deleted and re-created bucket resolves again.

Every change sends an op id, so the directory applies it at most once and a retry gets
the first answer back: changes are retried like idempotent requests. A change whose answer
is lost (no answer, or a 5xx, after the retries) is settled with ``resolve_op`` before
the caller hears of it: applied (its recorded answer is returned), fenced (``OperationFenced``:
it will never apply) or still unknown (``CommitOutcomeUnknown``).

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import asdict
from typing import Any
from urllib.parse import quote

from gridfs.common.errors import (
    CommitOutcomeUnknown,
    GridError,
    NoSuchContainer,
    NoSuchUpload,
    OperationFenced,
    ServiceUnavailable,
)
from gridfs.common.http import RETRY_FOR, JsonClient
from gridfs.common.names import check_account, check_bucket, check_key, container_id, container_prefix
from gridfs.directory.model import ContainerInfo, ListResult, Metachunk, ObjectInfo, PartInfo, UploadInfo
from gridfs.storage.client import parse_chunk_url


def new_op_id() -> str:
    return secrets.token_hex(16)


def upload_path(upload_id: str, action: str) -> str:
    """``/uploads/<id>/<action>`` with the id as one percent-encoded path segment.

    An id comes from clients (S3's ``uploadId``): unquoted, ``../../x`` or ``ID/abort?`` would climb to or
    name another route. "." and ".." stay dot segments even quoted (URLs drop them): no upload has such
    an id, nor an empty one."""
    if upload_id in ("", ".", ".."):
        raise NoSuchUpload(f"no multipart upload {upload_id!r}")
    return f"/uploads/{quote(upload_id, safe='')}/{action}"


def lost_answer(exc: GridError) -> bool:
    """True when an error says nothing about whether a change was applied (transport failure, 5xx)."""
    return exc.status >= 500


class DirectoryClient:
    def __init__(self, url: str, secret: str, *, timeout: float = 30.0, retry_for: float = RETRY_FOR) -> None:
        self.url, self.secret = url, secret
        self.timeout, self.retry_for = timeout, retry_for
        self._init()

    def _init(self) -> None:
        self._clients: dict[str, JsonClient] = {}
        self._meta1_of_prefix: dict[str, str] = {}
        self._meta2_of_cid: dict[str, str] = {}
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url, "secret": self.secret, "timeout": self.timeout, "retry_for": self.retry_for}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init()

    def _http(self, url: str) -> JsonClient:
        with self._lock:
            client = self._clients.get(url)
            if client is None:
                client = self._clients[url] = JsonClient(url, self.secret, self.timeout, self.retry_for)
            return client

    # -- resolution -----------------------------------------------------------------

    def _meta1(self, cid: str) -> str:
        """meta0 hop: the URL of the meta1 service owning the container's prefix."""
        prefix = container_prefix(cid)
        url = self._meta1_of_prefix.get(prefix)
        if url is None:
            url = self._meta1_of_prefix[prefix] = self._http(self.url).call("GET", f"/v1/meta0/{prefix}")["addr"]
        return url

    def _meta2(self, account: str, bucket: str) -> tuple[str, str]:
        """meta1 hop: the URL of the meta2 service holding the container."""
        cid = container_id(account, bucket)
        url = self._meta2_of_cid.get(cid)
        if url is None:
            url = self._meta2_of_cid[cid] = self._http(self._meta1(cid)).call("GET", f"/v1/meta1/{cid}")["meta2_addr"]
        return cid, url

    def _forget(self, cid: str) -> None:
        """Drop the cached hops of a container: the next call resolves them again."""
        self._meta2_of_cid.pop(cid, None)
        self._meta1_of_prefix.pop(container_prefix(cid), None)

    def _call(self, account: str, bucket: str, method: str, path: str, **kwargs: Any) -> Any:
        cid = container_id(account, bucket)
        for cached in (True, False):
            try:
                _, url = self._meta2(account, bucket)
                return self._http(url).call(method, f"/v1/meta2/{cid}{path}", **kwargs)
            except NoSuchContainer:
                # A cached meta2 that no longer holds the container: resolve once more.
                self._forget(cid)
                if not cached:
                    raise NoSuchContainer(f"no bucket {bucket!r} in account {account!r}") from None
            except ServiceUnavailable:
                self._forget(cid)  # the service may have moved: the next call asks the conscience's view
                raise
        raise AssertionError("unreachable")

    # -- changes --------------------------------------------------------------------

    def _change(self, account: str, bucket: str, path: str, body: dict[str, Any], op_id: str | None = None) -> Any:
        """POST a change named by ``op_id`` (retried: the directory applies it once); settle a lost answer."""
        op_id = op_id or new_op_id()
        try:
            return self._call(account, bucket, "POST", path, body={**body, "op_id": op_id}, idempotent=True)
        except GridError as exc:
            if not lost_answer(exc):
                raise
            lost = exc
        try:
            settled = self.resolve_op(account, bucket, op_id)
        except GridError as exc:
            raise CommitOutcomeUnknown(
                f"{path} (op {op_id}) got no answer ({lost}) and could not be settled ({exc}); nothing was "
                "deleted: chunks written for it are kept, and `grid crawl` reclaims them if it never landed"
            ) from lost
        if settled.get("state") == "applied":
            return settled["result"]
        raise OperationFenced(f"{path} (op {op_id}) got no answer ({lost}) and is now settled as never applied")

    def resolve_op(self, account: str, bucket: str, op_id: str) -> dict:
        """What became of a change: ``{"state": "applied", "result"}`` or ``{"state": "fenced"}``.

        Fencing is final: once this answers fenced, the change with this op id can never apply.
        """
        return self._call(account, bucket, "POST", "/resolve", body={"op_id": op_id}, idempotent=True)

    # -- containers -----------------------------------------------------------------

    def create_container(self, account: str, bucket: str, *, policy: str = "", versioning: bool = False,
                         properties: dict[str, str] | None = None) -> ContainerInfo:
        check_account(account)
        check_bucket(bucket)
        cid = container_id(account, bucket)
        self._http(self._meta1(cid)).call("POST", f"/v1/meta1/{cid}", idempotent=True, body={
            "account": account, "name": bucket, "policy": policy, "versioning": versioning,
            "properties": properties or {}, "op_id": new_op_id()})
        self._meta2_of_cid.pop(cid, None)
        return self.get_container(account, bucket)

    def get_container(self, account: str, bucket: str, *, stats: bool = True) -> ContainerInfo:
        return ContainerInfo.from_dict(self._call(account, bucket, "GET", "/container", params={"stats": stats}))

    def delete_container(self, account: str, bucket: str) -> None:
        cid = container_id(account, bucket)
        try:
            self._http(self._meta1(cid)).call("DELETE", f"/v1/meta1/{cid}", params={"op_id": new_op_id()})
        except NoSuchContainer:
            raise NoSuchContainer(f"no bucket {bucket!r} in account {account!r}") from None
        self._meta2_of_cid.pop(cid, None)

    def list_containers(self, account: str, *, stats: bool = True) -> list[ContainerInfo]:
        """Every container of an account, with statistics unless ``stats`` is False (they cost a scan of each):
        each meta1 service lists its own."""
        check_account(account)
        records = [r for m1 in self._http(self.url).call("GET", "/v1/meta0")["meta1"]
                   for r in self._http(m1["addr"]).call("GET", "/v1/meta1", params={"account": account})]
        out = []
        for r in sorted(records, key=lambda r: r["name"]):
            try:
                out.append(self.get_container(account, r["name"], stats=stats))
            except NoSuchContainer:
                continue  # deleted since it was listed
        return out

    def set_container(self, account: str, bucket: str, *, policy: str | None = None, versioning: str | None = None,
                      properties: dict[str, str] | None = None) -> ContainerInfo:
        body = {"policy": policy, "versioning": versioning, "properties": properties}
        return ContainerInfo.from_dict(self._change(account, bucket, "/container", body))

    # -- objects --------------------------------------------------------------------

    def commit_object(self, account: str, bucket: str, obj: ObjectInfo, *, if_none_match: bool = False,
                      if_version: int | None = None, origin: str = "") -> tuple[ObjectInfo, list[str]]:
        """Record an object version; its op id is its content id (one commit per content). ``if_none_match``:
        only if the key has no live version (AlreadyExists); ``if_version``: only if its live version is
        that one (PreconditionFailed); ``origin`` ("put", "post", "copy"; "" is a put) goes into its event."""
        check_key(obj.key)
        out = self._change(account, bucket, "/commit", {"object": obj.to_dict(), "if_none_match": if_none_match,
                                                        "if_version": if_version, "origin": origin},
                           obj.content_id or None)
        return ObjectInfo.from_dict(out["object"]), out["garbage"]

    def commit_objects(self, account: str, bucket: str, objs: list[ObjectInfo]) -> tuple[list[ObjectInfo], list[str]]:
        """Commit many records in one directory transaction (bulk ingest of small objects)."""
        for obj in objs:
            check_key(obj.key)
        out = self._change(account, bucket, "/commit", {"objects": [o.to_dict() for o in objs]})
        return [ObjectInfo.from_dict(o) for o in out["objects"]], out["garbage"]

    def get_object(self, account: str, bucket: str, key: str, *, version: int | None = None,
                   chunks: bool = True, markers: bool = False) -> ObjectInfo:
        """A version's record; ``markers``: a delete marker's too (else NoSuchObject)."""
        check_key(key)
        params = {"key": key, "version": version, "chunks": chunks, **({"markers": True} if markers else {})}
        return ObjectInfo.from_dict(self._call(account, bucket, "GET", "/object", params=params))

    def delete_object(self, account: str, bucket: str, key: str, *, version: int | None = None,
                      bypass_governance: bool = False) -> tuple[dict, list[str]]:
        check_key(key)
        out = self._change(account, bucket, "/delete", {"key": key, "version": version,
                                                        "bypass_governance": bypass_governance})
        return out["result"], out["garbage"]

    def rename_object(self, account: str, bucket: str, src: str, dst: str) -> tuple[ObjectInfo, list[str]]:
        check_key(src)
        check_key(dst)
        out = self._change(account, bucket, "/rename", {"src": src, "dst": dst})
        return ObjectInfo.from_dict(out["object"]), out["garbage"]

    def set_properties(self, account: str, bucket: str, key: str, properties: dict[str, str | None], *,
                       version: int | None = None, replace: bool = False,
                       bypass_governance: bool = False) -> ObjectInfo:
        check_key(key)
        return ObjectInfo.from_dict(self._change(account, bucket, "/properties", {
            "key": key, "properties": properties, "version": version, "replace": replace,
            "bypass_governance": bypass_governance}))

    def referenced_urls(self, account: str, bucket: str) -> set[str]:
        """Every chunk URL a container's objects (all versions) and uploaded parts reference."""
        return set(self._call(account, bucket, "GET", "/chunks"))

    def replace_chunks(self, account: str, bucket: str, key: str, version: int, content_id: str,
                       metachunks: list[Metachunk], base: list[Metachunk] | None = None) -> list[str]:
        """Record new chunk locations for an object version (repair); returns the URLs dropped.

        ``base``: the chunk locations the repair started from. The change is refused
        (PreconditionFailed) if the record no longer holds exactly those chunks: another repair,
        drain or rebuild moved one meanwhile, and committing would bring back a chunk it dropped."""
        check_key(key)
        body: dict = {"key": key, "version": version, "content_id": content_id,
                      "metachunks": [asdict(m) for m in metachunks]}
        if base is not None:
            body["base_chunks"] = sorted(parse_chunk_url(c.url).chunk_id for m in base for c in m.chunks)
        return self._change(account, bucket, "/chunks", body)["garbage"]

    def list_objects(self, account: str, bucket: str, *, prefix: str = "", delimiter: str = "",
                     start_after: str = "", token: str = "", max_keys: int = 1000) -> ListResult:
        return ListResult.from_dict(self._call(account, bucket, "GET", "/list", params={
            "prefix": prefix, "delimiter": delimiter, "start_after": start_after, "token": token,
            "max_keys": max_keys}))

    def list_versions(self, account: str, bucket: str, *, prefix: str = "", delimiter: str = "",
                      key_marker: str = "", version_marker: int | None = None, max_keys: int = 1000) -> dict:
        out = self._call(account, bucket, "GET", "/versions", params={
            "prefix": prefix, "delimiter": delimiter, "key_marker": key_marker, "version_marker": version_marker,
            "max_keys": max_keys})
        out["versions"] = [ObjectInfo.from_dict(v) for v in out["versions"]]
        return out

    # -- multipart ------------------------------------------------------------------

    def create_upload(self, account: str, bucket: str, key: str, *, policy: str = "",
                      mime_type: str = "application/octet-stream",
                      properties: dict[str, str] | None = None) -> UploadInfo:
        check_key(key)
        return UploadInfo.from_dict(self._change(account, bucket, "/uploads", {
            "key": key, "policy": policy, "mime_type": mime_type, "properties": properties or {}}))

    def commit_part(self, account: str, bucket: str, upload_id: str, part: PartInfo,
                    chunk_method: str = "", *, op_id: str | None = None) -> list[str]:
        """Record a stored part; ``op_id``: the content id its chunks were written with."""
        out = self._change(account, bucket, upload_path(upload_id, "parts"),
                           {"part": part.to_dict(), "chunk_method": chunk_method}, op_id)
        return out["garbage"]

    def list_parts(self, account: str, bucket: str, upload_id: str) -> list[PartInfo]:
        return [PartInfo.from_dict(p) for p in self._call(account, bucket, "GET", upload_path(upload_id, "parts"))]

    def list_uploads(self, account: str, bucket: str, *, prefix: str = "") -> list[UploadInfo]:
        return [UploadInfo.from_dict(u) for u in self._call(account, bucket, "GET", "/uploads",
                                                            params={"prefix": prefix})]

    def complete_upload(self, account: str, bucket: str, upload_id: str, parts: list[tuple[int, str]], *,
                        hash: str = "", properties: dict[str, str] | None = None, if_none_match: bool = False,
                        if_version: int | None = None) -> tuple[ObjectInfo, list[str]]:
        out = self._change(account, bucket, upload_path(upload_id, "complete"),
                           {"parts": [list(p) for p in parts], "hash": hash, "properties": properties,
                            "if_none_match": if_none_match, "if_version": if_version})
        return ObjectInfo.from_dict(out["object"]), out["garbage"]

    def abort_upload(self, account: str, bucket: str, upload_id: str) -> list[str]:
        return self._change(account, bucket, upload_path(upload_id, "abort"), {})["garbage"]

    # -- the rest -------------------------------------------------------------------

    def locate(self, account: str, bucket: str, key: str) -> dict:
        """The resolution path for ``grid locate``: each hop's service id and address."""
        cid = container_id(account, bucket)
        prefix = container_prefix(cid)
        m0 = self._http(self.url).call("GET", f"/v1/meta0/{prefix}")
        m1 = self._http(m0["addr"]).call("GET", f"/v1/meta1/{cid}")
        return {"cid": cid, "prefix": prefix, "meta0": self.url,
                "meta1": {"id": m0["meta1"], "addr": m0["addr"]},
                "meta2": {"id": m1["meta2"], "addr": m1["meta2_addr"]},
                "object": self.get_object(account, bucket, key).to_dict()}
