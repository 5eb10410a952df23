"""Checksums of a request body, computed as it streams: the MD5 ETag, the SigV4 payload
hash, and the ``x-amz-checksum-*`` algorithm the client chose.

Every body is checked, not only objects': ``check_body`` holds the small bodies of the
other operations (DeleteObjects, CORS, versioning, tagging, Complete...) to the signed
payload hash, ``Content-MD5`` and ``x-amz-checksum-*`` before the gateway acts on them, so a
captured request cannot be replayed with another body.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import base64
import hashlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import crc32c
from isal import isal_zlib

from gridfs.gateways.s3.errors import S3Error

ALGORITHMS = ("crc32", "crc32c", "sha1", "sha256")
PARALLEL_MIN = 256 * 1024
_HASH_POOL = ThreadPoolExecutor(4, thread_name_prefix="s3-md5")


class _Crc:
    def __init__(self, fn: Any) -> None:
        self.fn = fn
        self.value = 0

    def update(self, data: Any) -> None:
        self.value = self.fn(data, self.value)

    def digest(self) -> bytes:
        return self.value.to_bytes(4, "big")


def new_checksum(algorithm: str) -> Any:
    if algorithm == "crc32":
        return _Crc(isal_zlib.crc32)  # zlib's, with ISA-L: 4-5x faster here (pyproject.toml)
    if algorithm == "crc32c":
        return _Crc(lambda data, value: crc32c.crc32c(data, value))
    return hashlib.new(algorithm)


def requested_algorithm(headers: dict[str, str]) -> str:
    """The checksum a request announces, in a header, a trailer, or by name only."""
    for alg in ALGORITHMS:
        if f"x-amz-checksum-{alg}" in headers:
            return alg
    trailer = headers.get("x-amz-trailer", "").lower()
    if trailer.startswith("x-amz-checksum-"):
        alg = trailer.removeprefix("x-amz-checksum-")
        if alg not in ALGORITHMS:
            raise S3Error("InvalidRequest", f"unsupported checksum trailer {trailer}")
        return alg
    named = headers.get("x-amz-sdk-checksum-algorithm", "").lower()
    if named and named not in ALGORITHMS:
        raise S3Error("InvalidRequest", f"unsupported checksum algorithm {named}")
    return named


class BodyDigests:
    """Feeds every piece of a body to the digests it needs; ``check`` compares them at the end."""

    def __init__(self, payload_hash: str, algorithm: str, content_md5: str = "") -> None:
        if content_md5 and not _is_md5(content_md5):
            raise S3Error("InvalidDigest", "The Content-MD5 you specified is not valid.")
        self.md5 = hashlib.md5()
        self.payload_hash = payload_hash.lower()
        self.sha256 = hashlib.sha256() if _is_hex_sha256(self.payload_hash) else None
        self.algorithm = algorithm
        self.checksum = new_checksum(algorithm) if algorithm else None
        self.content_md5 = content_md5
        self.size = 0

    def update(self, piece: Any) -> None:
        """Feed one piece; MD5 (the slowest) runs on a helper thread beside the others (all release the GIL)."""
        self.size += len(piece)
        others = [d for d in (self.sha256, self.checksum) if d is not None]
        if not others or len(piece) < PARALLEL_MIN:
            self.md5.update(piece)
            for d in others:
                d.update(piece)
            return
        md5 = _HASH_POOL.submit(self.md5.update, piece)
        for d in others:
            d.update(piece)
        md5.result()

    def etag(self) -> str:
        return self.md5.hexdigest()

    def check(self, expected_checksum: str) -> str:
        """Raise when a digest differs from what the client sent; returns the base64 checksum."""
        if self.sha256 is not None and self.sha256.hexdigest() != self.payload_hash:
            raise S3Error("XAmzContentSHA256Mismatch",
                          "The provided 'x-amz-content-sha256' header does not match what was computed.")
        if self.content_md5 and base64.b64decode(self.content_md5) != self.md5.digest():
            raise S3Error("BadDigest", "The Content-MD5 you specified did not match what we received.")
        value = base64.b64encode(self.checksum.digest()).decode() if self.checksum is not None else ""
        if expected_checksum and value != expected_checksum:
            raise S3Error("BadDigest", f"The {self.algorithm.upper()} you specified did not match the calculated "
                          "checksum.")
        return value


def check_body(body: bytes, headers: dict[str, str], payload_hash: str) -> None:
    """A whole body against the signed payload hash, ``Content-MD5`` and any ``x-amz-checksum-*`` header.

    ``headers`` have lower-case names. Raises XAmzContentSHA256Mismatch, BadDigest or
    InvalidDigest; nothing is applied before this passes.
    """
    algorithm = requested_algorithm(headers)
    digests = BodyDigests(payload_hash, algorithm, headers.get("content-md5", ""))
    digests.update(body)
    digests.check(headers.get(f"x-amz-checksum-{algorithm}", "") if algorithm else "")


def has_digest_header(headers: dict[str, str]) -> bool:
    """Whether a request carries Content-MD5 or an ``x-amz-checksum-*`` value (lower-case names)."""
    return "content-md5" in headers or any(f"x-amz-checksum-{alg}" in headers for alg in ALGORITHMS)


def _is_hex_sha256(value: str) -> bool:
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def _is_md5(value: str) -> bool:
    try:
        return len(base64.b64decode(value, validate=True)) == 16
    except ValueError:
        return False
