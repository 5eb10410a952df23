"""Validation of every identifier that may reach a file path, a URL or a query.

Object keys never become paths (chunks are stored under random ids), so a key such as
``a/../b`` is stored as a literal key; NUL bytes, invalid UTF-8 and over-long keys are
refused everywhere.

Every pattern is anchored at both ends of the string (A and Z escapes) and applied with
``fullmatch``: ``$`` also matches before a final newline, which let an id followed by a
newline pass for the id (a storage server once created a chunk file whose name ended in a
newline). The patterns are exported, so callers that use them with ``match`` are held to the
whole string too.

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import hashlib
import re
import secrets

from gridfs.common.errors import InvalidName

ACCOUNT_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
# S3 bucket naming rules: 3-63 chars, lowercase, digits, dots and hyphens, no "..".
BUCKET_RE = re.compile(r"\A[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z")
CHUNK_ID_RE = re.compile(r"\A[0-9A-F]{64}\Z")
CONTAINER_ID_RE = re.compile(r"\A[0-9A-F]{64}\Z")
SERVICE_ID_RE = re.compile(r"\A[a-z0-9][a-z0-9-]{2,63}\Z")
IPV4_RE = re.compile(r"\A\d+\.\d+\.\d+\.\d+\Z")
MAX_KEY_BYTES = 1024
MAX_PROPERTY_BYTES = 2048


def check_account(account: str) -> str:
    if not isinstance(account, str) or not ACCOUNT_RE.fullmatch(account):
        raise InvalidName(f"invalid account name {account!r}: 1-64 of A-Z a-z 0-9 _ . -")
    return account


def check_bucket(bucket: str) -> str:
    if (
        not isinstance(bucket, str)
        or not BUCKET_RE.fullmatch(bucket)
        or ".." in bucket
        or IPV4_RE.fullmatch(bucket)
    ):
        raise InvalidName(
            f"invalid bucket name {bucket!r}: 3-63 characters of a-z 0-9 . -, "
            "starting and ending with a letter or digit"
        )
    return bucket


def check_key(key: str) -> str:
    """An object key: any UTF-8 text of 1-1024 bytes without NUL."""
    if not isinstance(key, str) or not key:
        raise InvalidName("object name must be a non-empty string")
    if "\x00" in key:
        raise InvalidName(f"object name {key!r} contains a NUL character")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidName(f"object name {key!r} is not valid UTF-8") from exc
    if size > MAX_KEY_BYTES:
        raise InvalidName(f"object name is {size} bytes long, over the {MAX_KEY_BYTES}-byte limit")
    return key


def check_prefix(prefix: str) -> str:
    """A listing prefix: like a key, but may be empty."""
    return check_key(prefix) if prefix else prefix


def check_chunk_id(chunk_id: str) -> str:
    if not isinstance(chunk_id, str) or not CHUNK_ID_RE.fullmatch(chunk_id):
        raise InvalidName(f"invalid chunk id {chunk_id!r}: 64 upper-case hex digits")
    return chunk_id


def check_container_id(cid: str) -> str:
    if not isinstance(cid, str) or not CONTAINER_ID_RE.fullmatch(cid):
        raise InvalidName(f"invalid container id {cid!r}: 64 upper-case hex digits")
    return cid


def check_service_id(service_id: str) -> str:
    """A service id (``rawx-1f2e...``): stable for the life of a volume or database folder."""
    if not isinstance(service_id, str) or not SERVICE_ID_RE.fullmatch(service_id):
        raise InvalidName(f"invalid service id {service_id!r}: 3-64 of a-z 0-9 -, starting with a letter or digit")
    return service_id


def new_service_id(kind: str) -> str:
    return f"{kind}-{secrets.token_hex(8)}"


def new_chunk_id() -> str:
    return secrets.token_hex(32).upper()


def container_id(account: str, bucket: str) -> str:
    """The container id: a hash of account and name, as in OpenIO (its first 4 hex
    digits are the prefix that selects the meta1 service)."""
    check_account(account)
    check_bucket(bucket)
    return hashlib.sha256(f"{account}\x00{bucket}".encode()).hexdigest().upper()


def container_prefix(cid: str) -> str:
    """The 16-bit prefix (4 hex digits) of a container id: one of 65,536."""
    return check_container_id(cid)[:4]
