"""Records the directory keeps, shared by the meta2 server and its clients.

They travel as JSON (``to_dict``/``from_dict``); ``ObjectInfo.metachunks`` is filled
only when the caller asked for chunk locations (get/head with ``chunks=True``).

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

_FIELDS: dict[type, tuple[str, ...]] = {}
# An object version's object-lock properties (retention mode and date, legal hold): the directory enforces them
# (gridfs.directory.retention); a copy does not inherit them.
LOCK_PROPS = ("s3.lock.mode", "s3.lock.until", "s3.lock.hold")


def plain(record: Any) -> dict[str, Any]:
    """A record as a JSON-ready dict: ``dataclasses.asdict`` without its deep copies (which cost a small
    object's commit 0.18 ms of client CPU). Lists are new lists (records in them converted), dicts new dicts."""
    cls = type(record)
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(f.name for f in fields(cls))
    out: dict[str, Any] = {}
    for name in names:
        value = getattr(record, name)
        if isinstance(value, list):
            value = [plain(v) if is_dataclass(v) else v for v in value]
        elif isinstance(value, dict):
            value = dict(value)
        out[name] = value
    return out


def _from(cls: type, data: dict[str, Any]) -> Any:
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class ChunkInfo:
    """One chunk file on one storage server."""

    # rawx://SERVICE_ID/CHUNK_ID (older records: http://HOST:PORT/chunk/CHUNK_ID); compare chunks by
    # CHUNK_ID (gridfs.storage.client.parse_chunk_url), never by this string
    url: str
    sub: int  # EC share number (0..k+m-1), or replica number for copies
    size: int
    hash: str  # xxh3_64 hex of the chunk bytes


@dataclass
class Metachunk:
    """A slice of the object: ``size`` user bytes at ``offset``, stored as ``chunks``."""

    pos: int
    offset: int
    size: int
    chunks: list[ChunkInfo] = field(default_factory=list)
    # Sub-positions that could not be written and await repair.
    missing: list[int] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Metachunk:
        mc = _from(cls, data)
        mc.chunks = [_from(ChunkInfo, c) for c in data.get("chunks", [])]
        return mc


@dataclass
class ObjectInfo:
    account: str
    bucket: str
    key: str
    version: int = 0  # microseconds since the epoch; unique per key in a container
    content_id: str = ""
    size: int = 0
    mtime: float = 0.0
    policy: str = ""
    chunk_method: str = ""  # e.g. "ec/k=6,m=3,codec=zfec" or "copies/n=3"
    hash: str = ""  # xxh3_128 hex of the whole object; "" when not known (multipart)
    # CRC32C of the whole object, 8 lowercase hex digits (gridfs.common.crc); "" when not known
    # (objects from before it was kept). Multipart: the parts' CRCs combined, no data read.
    crc32c: str = ""
    mime_type: str = "application/octet-stream"
    properties: dict[str, str] = field(default_factory=dict)
    delete_marker: bool = False
    is_latest: bool = True
    metachunks: list[Metachunk] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return plain(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ObjectInfo:
        obj = _from(cls, data)
        obj.metachunks = [Metachunk.from_dict(m) for m in data.get("metachunks", [])]
        obj.properties = dict(data.get("properties") or {})
        return obj


@dataclass
class ContainerInfo:
    account: str
    bucket: str
    cid: str
    meta2: str = ""  # URL of the meta2 service holding the database
    policy: str = ""  # "" means the namespace default / size rules
    versioning: str = "disabled"  # disabled | enabled | suspended
    ctime: float = 0.0
    objects: int = 0
    bytes: int = 0
    properties: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return plain(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ContainerInfo:
        return _from(cls, data)


@dataclass
class ListResult:
    objects: list[ObjectInfo]
    prefixes: list[str]
    truncated: bool
    next_token: str = ""  # pass back as ``token`` for the next page

    def to_dict(self) -> dict[str, Any]:
        return {
            "objects": [o.to_dict() for o in self.objects],
            "prefixes": self.prefixes,
            "truncated": self.truncated,
            "next_token": self.next_token,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ListResult:
        return cls(
            objects=[ObjectInfo.from_dict(o) for o in data["objects"]],
            prefixes=list(data["prefixes"]),
            truncated=bool(data["truncated"]),
            next_token=data.get("next_token", ""),
        )


@dataclass
class PartInfo:
    upload_id: str
    part_number: int
    size: int
    etag: str = ""  # opaque to the directory (the S3 gateway stores the part MD5)
    mtime: float = 0.0
    crc32c: str = ""  # CRC32C of the part's bytes, 8 hex digits; "" when not known
    metachunks: list[Metachunk] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return plain(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PartInfo:
        part = _from(cls, data)
        part.metachunks = [Metachunk.from_dict(m) for m in data.get("metachunks", [])]
        return part


@dataclass
class UploadInfo:
    upload_id: str
    key: str
    policy: str = ""
    mime_type: str = "application/octet-stream"
    properties: dict[str, str] = field(default_factory=dict)
    initiated: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return plain(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UploadInfo:
        return _from(cls, data)
