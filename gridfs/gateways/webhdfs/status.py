"""What a WebHDFS ``FileStatus`` says about a grid object or directory.

Hadoop attributes live in object properties under names the Java connector shares, so
``grid://`` and ``webhdfs://`` report the same times and permissions:

- ``hadoop.mtime``, ``hadoop.atime``: milliseconds since the epoch (SETTIMES); the
  object's own commit time when absent;
- ``hadoop.permission``: octal digits as WebHDFS writes them (``644``, ``1777``);
- ``hadoop.owner``, ``hadoop.group``: names (SETOWNER); the caller's user when absent;
- ``hadoop.blocksize``: the block size the writer asked for, in bytes (it shapes
  GETFILECHECKSUM and block locations; the grid's own layout is its storage policy's).

A directory's attributes are its marker object's (``KEY/``), or a bucket's properties;
a directory implied by keys alone has none and shows the defaults.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from gridfs.directory.model import ObjectInfo
from gridfs.gateways.webhdfs.errors import bad_argument

MTIME, ATIME, PERMISSION = "hadoop.mtime", "hadoop.atime", "hadoop.permission"
OWNER, GROUP, BLOCKSIZE = "hadoop.owner", "hadoop.group", "hadoop.blocksize"
DEFAULT_BLOCK_SIZE = 128 << 20  # dfs.blocksize's default
FILE_PERMISSION, DIR_PERMISSION = "644", "755"
PERMISSION_RE = re.compile(r"^[0-1]?[0-7]{3}\Z")
NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@$-]{0,63}\Z")  # owner and group names


@dataclass
class Entry:
    """A file or directory, with what its status needs."""

    kind: str  # "FILE" | "DIRECTORY"
    mtime: float = 0.0  # seconds; 0 when unknown (a directory implied by keys)
    size: int = 0
    properties: dict[str, str] = field(default_factory=dict)
    info: ObjectInfo | None = None  # the object of a file, or a directory's marker
    replication: int = 0

    @property
    def is_dir(self) -> bool:
        return self.kind == "DIRECTORY"

    def block_size(self) -> int:
        value = self.properties.get(BLOCKSIZE, "")
        return int(value) if value.isdigit() and int(value) > 0 else DEFAULT_BLOCK_SIZE


def file_status(entry: Entry, suffix: str, user: str) -> dict[str, Any]:
    props = entry.properties
    mtime = _millis(props.get(MTIME), entry.mtime)
    status: dict[str, Any] = {
        "pathSuffix": suffix,
        "type": entry.kind,
        "length": entry.size,
        "owner": props.get(OWNER) or user,
        "group": props.get(GROUP) or user,
        "permission": props.get(PERMISSION) or (DIR_PERMISSION if entry.is_dir else FILE_PERMISSION),
        "modificationTime": mtime,
        "accessTime": _millis(props.get(ATIME), mtime / 1000) if not entry.is_dir else 0,
        "blockSize": 0 if entry.is_dir else entry.block_size(),
        "replication": 0 if entry.is_dir else entry.replication,
        "storagePolicy": 0,
    }
    if not entry.is_dir:
        status["childrenNum"] = 0
    return status


def _millis(value: str | None, seconds: float) -> int:
    if value and value.lstrip("-").isdigit():
        return int(value)
    return int(seconds * 1000)


def check_permission(value: str) -> str:
    if not PERMISSION_RE.match(value):
        raise bad_argument(f"Invalid value for webhdfs parameter \"permission\": {value!r} is not 000-1777 in octal")
    return value.lstrip("0").rjust(3, "0") if len(value) == 4 else value


def check_name(what: str, value: str) -> str:
    if not NAME_RE.match(value):
        raise bad_argument(f"Invalid value for webhdfs parameter \"{what}\": {value!r}")
    return value
