"""``DirectoryClient``: the directory's hops, hidden and cached.

A container id is a hash of account and name; its first 4 hex digits pick the
prefix. meta0 maps the prefix to a meta1 service, meta1 the container to its meta2
service. Both answers are cached per client; a NoSuchContainer after a cached hit
drops the entry, so a deleted and re-created bucket resolves again.

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import threading
from dataclasses import asdict
from typing import Any

from gridfs.common.errors import NoSuchContainer
from gridfs.common.http import JsonClient
from gridfs.common.names import check_account, check_bucket, check_key, container_id, container_prefix
from gridfs.directory.model import ContainerInfo, ListResult, Metachunk, ObjectInfo, PartInfo, UploadInfo


class DirectoryClient:
    def __init__(self, url: str, secret: str) -> None:
        self.url, self.secret = url, secret
        self._init()

    def _init(self) -> None:
        self._clients: dict[str, JsonClient] = {}
        self._meta1_of_prefix: dict[str, str] = {}
        self._meta2_of_cid: dict[str, str] = {}
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url, "secret": self.secret}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.url, self.secret = state["url"], state["secret"]
        self._init()

    def _http(self, url: str) -> JsonClient:
        with self._lock:
            client = self._clients.get(url)
            if client is None:
                client = self._clients[url] = JsonClient(url, self.secret)
            return client

    # -- resolution -----------------------------------------------------------------

    def _meta1(self, cid: str) -> str:
        prefix = container_prefix(cid)
        url = self._meta1_of_prefix.get(prefix)
        if url is None:
            url = self._meta1_of_prefix[prefix] = self._http(self.url).call("GET", f"/v1/meta0/{prefix}")["meta1"]
        return url

    def _meta2(self, account: str, bucket: str) -> tuple[str, str]:
        cid = container_id(account, bucket)
        url = self._meta2_of_cid.get(cid)
        if url is None:
            url = self._meta2_of_cid[cid] = self._http(self._meta1(cid)).call("GET", f"/v1/meta1/{cid}")["meta2"]
        return cid, url

    def _call(self, account: str, bucket: str, method: str, path: str, **kwargs: Any) -> Any:
        cid = container_id(account, bucket)
        try:
            _, url = self._meta2(account, bucket)
            return self._http(url).call(method, f"/v1/meta2/{cid}{path}", **kwargs)
        except NoSuchContainer:
            self._meta2_of_cid.pop(cid, None)
            raise NoSuchContainer(f"no bucket {bucket!r} in account {account!r}") from None

    # -- containers -----------------------------------------------------------------

    def create_container(self, account: str, bucket: str, *, policy: str = "", versioning: bool = False,
                         properties: dict[str, str] | None = None) -> ContainerInfo:
        check_account(account)
        check_bucket(bucket)
        cid = container_id(account, bucket)
        self._http(self._meta1(cid)).call("POST", f"/v1/meta1/{cid}", body={
            "account": account, "name": bucket, "policy": policy, "versioning": versioning,
            "properties": properties or {}})
        self._meta2_of_cid.pop(cid, None)
        return self.get_container(account, bucket)

    def get_container(self, account: str, bucket: str, *, stats: bool = True) -> ContainerInfo:
        return ContainerInfo.from_dict(self._call(account, bucket, "GET", "/container", params={"stats": stats}))

    def delete_container(self, account: str, bucket: str) -> None:
        cid = container_id(account, bucket)
        try:
            self._http(self._meta1(cid)).call("DELETE", f"/v1/meta1/{cid}")
        except NoSuchContainer:
            raise NoSuchContainer(f"no bucket {bucket!r} in account {account!r}") from None
        self._meta2_of_cid.pop(cid, None)

    def list_containers(self, account: str) -> list[ContainerInfo]:
        check_account(account)
        return [ContainerInfo.from_dict(c) for c in self._http(self.url).call(
            "GET", "/v1/meta1", params={"account": account})]

    def set_container(self, account: str, bucket: str, *, policy: str | None = None, versioning: str | None = None,
                      properties: dict[str, str] | None = None) -> ContainerInfo:
        body = {"policy": policy, "versioning": versioning, "properties": properties}
        return ContainerInfo.from_dict(self._call(account, bucket, "POST", "/container", body=body))

    # -- objects --------------------------------------------------------------------

    def commit_object(self, account: str, bucket: str, obj: ObjectInfo, *,
                      if_none_match: bool = False) -> tuple[ObjectInfo, list[str]]:
        check_key(obj.key)
        out = self._call(account, bucket, "POST", "/commit",
                         body={"object": obj.to_dict(), "if_none_match": if_none_match})
        return ObjectInfo.from_dict(out["object"]), out["garbage"]

    def commit_objects(self, account: str, bucket: str, objs: list[ObjectInfo]) -> tuple[list[ObjectInfo], list[str]]:
        """Commit many records in one directory transaction (bulk ingest of small objects)."""
        for obj in objs:
            check_key(obj.key)
        out = self._call(account, bucket, "POST", "/commit", body={"objects": [o.to_dict() for o in objs]})
        return [ObjectInfo.from_dict(o) for o in out["objects"]], out["garbage"]

    def get_object(self, account: str, bucket: str, key: str, *, version: int | None = None,
                   chunks: bool = True) -> ObjectInfo:
        check_key(key)
        return ObjectInfo.from_dict(self._call(account, bucket, "GET", "/object",
                                               params={"key": key, "version": version, "chunks": chunks}))

    def delete_object(self, account: str, bucket: str, key: str, *,
                      version: int | None = None) -> tuple[dict, list[str]]:
        check_key(key)
        out = self._call(account, bucket, "POST", "/delete", body={"key": key, "version": version})
        return out["result"], out["garbage"]

    def rename_object(self, account: str, bucket: str, src: str, dst: str) -> tuple[ObjectInfo, list[str]]:
        check_key(src)
        check_key(dst)
        out = self._call(account, bucket, "POST", "/rename", body={"src": src, "dst": dst})
        return ObjectInfo.from_dict(out["object"]), out["garbage"]

    def set_properties(self, account: str, bucket: str, key: str, properties: dict[str, str | None], *,
                       version: int | None = None, replace: bool = False) -> ObjectInfo:
        check_key(key)
        return ObjectInfo.from_dict(self._call(account, bucket, "POST", "/properties", body={
            "key": key, "properties": properties, "version": version, "replace": replace}))

    def referenced_urls(self, account: str, bucket: str) -> set[str]:
        """Every chunk URL a container's objects (all versions) and uploaded parts reference."""
        return set(self._call(account, bucket, "GET", "/chunks"))

    def replace_chunks(self, account: str, bucket: str, key: str, version: int, content_id: str,
                       metachunks: list[Metachunk]) -> list[str]:
        """Record new chunk locations for an object version (repair); returns the URLs dropped."""
        check_key(key)
        return self._call(account, bucket, "POST", "/chunks", body={
            "key": key, "version": version, "content_id": content_id,
            "metachunks": [asdict(m) for m in metachunks]})["garbage"]

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
        return UploadInfo.from_dict(self._call(account, bucket, "POST", "/uploads", body={
            "key": key, "policy": policy, "mime_type": mime_type, "properties": properties or {}}))

    def commit_part(self, account: str, bucket: str, upload_id: str, part: PartInfo,
                    chunk_method: str = "") -> list[str]:
        out = self._call(account, bucket, "POST", f"/uploads/{upload_id}/parts",
                         body={"part": part.to_dict(), "chunk_method": chunk_method})
        return out["garbage"]

    def list_parts(self, account: str, bucket: str, upload_id: str) -> list[PartInfo]:
        return [PartInfo.from_dict(p) for p in self._call(account, bucket, "GET", f"/uploads/{upload_id}/parts")]

    def list_uploads(self, account: str, bucket: str, *, prefix: str = "") -> list[UploadInfo]:
        return [UploadInfo.from_dict(u) for u in self._call(account, bucket, "GET", "/uploads",
                                                            params={"prefix": prefix})]

    def complete_upload(self, account: str, bucket: str, upload_id: str, parts: list[tuple[int, str]], *,
                        hash: str = "", properties: dict[str, str] | None = None) -> tuple[ObjectInfo, list[str]]:
        out = self._call(account, bucket, "POST", f"/uploads/{upload_id}/complete",
                         body={"parts": [list(p) for p in parts], "hash": hash, "properties": properties})
        return ObjectInfo.from_dict(out["object"]), out["garbage"]

    def abort_upload(self, account: str, bucket: str, upload_id: str) -> list[str]:
        return self._call(account, bucket, "POST", f"/uploads/{upload_id}/abort")["garbage"]

    # -- the rest -------------------------------------------------------------------

    def locate(self, account: str, bucket: str, key: str) -> dict:
        """The resolution path for ``grid locate``."""
        cid, meta2 = self._meta2(account, bucket)
        return {"cid": cid, "prefix": container_prefix(cid), "meta0": self.url, "meta1": self._meta1(cid),
                "meta2": meta2, "object": self.get_object(account, bucket, key).to_dict()}

    def events(self, after: int = 0, limit: int = 1000) -> dict:
        return self._http(self.url).call("GET", "/v1/events", params={"after": after, "limit": limit})
