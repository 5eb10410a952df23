"""WebHDFS paths as grid names: ``/BUCKET/KEY...``, validated before anything is touched.

The root ``/`` lists the caller's buckets; ``/BUCKET`` is a bucket; below it, a path is
an object key, or a directory: a key prefix ending in ``/`` (implied by the objects under
it), or an empty-directory marker, the zero-byte object ``KEY/`` (the convention s3fs,
S3A and ``gridfs.fs`` share, so every front end sees the same directories).

Refused with a clear error: relative paths, ``.`` and ``..`` components, empty
components (``a//b``), NUL, invalid UTF-8, bucket names the grid does not take, and keys
over the grid's 1024-byte limit.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

from gridfs.common.errors import InvalidName
from gridfs.common.names import check_bucket, check_key
from gridfs.gateways.webhdfs.errors import bad_argument

PREFIX = "/webhdfs/v1"


@dataclass(frozen=True)
class HPath:
    bucket: str = ""  # "" for the root
    key: str = ""  # "" for the root or a bucket

    @property
    def text(self) -> str:
        if not self.bucket:
            return "/"
        return f"/{self.bucket}/{self.key}" if self.key else f"/{self.bucket}"

    @property
    def is_root(self) -> bool:
        return not self.bucket

    @property
    def is_bucket(self) -> bool:
        return bool(self.bucket) and not self.key

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1] if self.key else self.bucket

    @property
    def parent(self) -> HPath:
        if not self.key:
            return HPath()
        return HPath(self.bucket, self.key.rpartition("/")[0])

    @property
    def prefix(self) -> str:
        """The key prefix of what this directory holds ("" for a bucket)."""
        return self.key + "/" if self.key else ""

    @property
    def marker(self) -> str:
        """The key of this directory's empty-directory marker."""
        return self.key + "/"

    def child(self, name: str) -> HPath:
        return HPath(name) if not self.bucket else HPath(self.bucket, self.prefix + name)

    def ancestors(self) -> list[HPath]:
        """The directories above this path inside its bucket, nearest the bucket first."""
        parts = self.key.split("/")[:-1]
        return [HPath(self.bucket, "/".join(parts[: i + 1])) for i in range(len(parts))]

    def is_under(self, other: HPath) -> bool:
        """True when this path lies strictly inside the directory ``other``."""
        if other.is_root:
            return not self.is_root
        if self.bucket != other.bucket:
            return False
        if not other.key:
            return bool(self.key)
        return self.key.startswith(other.prefix)


def parse(text: str) -> HPath:
    """A decoded absolute path (``/bucket/a/b``) as an :class:`HPath`; raises IllegalArgumentException."""
    if not text.startswith("/"):
        raise bad_argument(f"Invalid path {text!r}: a WebHDFS path is absolute")
    if "\x00" in text:
        raise bad_argument("Invalid path: it contains a NUL character")
    parts = text[1:].split("/")
    if parts and parts[-1] == "":
        parts.pop()  # one trailing slash: the same path
    for part in parts:
        if part in ("", ".", ".."):
            raise bad_argument(f"Invalid path name {text!r}: empty, '.' and '..' components are not allowed")
    if not parts:
        return HPath()
    bucket, key = parts[0], "/".join(parts[1:])
    try:
        check_bucket(bucket)
        if key:
            check_key(key)
    except InvalidName as exc:
        raise bad_argument(f"Invalid path {text!r}: {exc}") from exc
    return HPath(bucket, key)


def from_request(raw_path: str) -> HPath:
    """The path of a request URL (``/webhdfs/v1/...``, percent-encoded as sent)."""
    path = raw_path.split("?", 1)[0]
    if path != PREFIX and not path.startswith(PREFIX + "/"):
        raise bad_argument(f"not a WebHDFS URL: paths start with {PREFIX}/")
    return parse(decode(path[len(PREFIX):] or "/"))


def decode(text: str) -> str:
    try:
        return unquote(text, errors="strict")
    except UnicodeDecodeError as exc:
        raise bad_argument("Invalid path: it is not valid UTF-8 once percent-decoded") from exc
