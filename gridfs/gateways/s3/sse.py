"""Server-side encryption of objects: SSE-S3 and SSE-C, on every path that writes or reads object data.

Each encrypted object (or multipart upload) has a random 256-bit data key; its bytes are stored in
AES-256-GCM segments (``cipher``). The data key is kept in the object's properties, wrapped:

- SSE-S3 (``x-amz-server-side-encryption: AES256``, or the bucket's default encryption): by the grid's
  master key (``masterkey``), which only the gateway holds, bound to the bucket's name: an object copied
  into another bucket behind the gateway's back (by a holder of the namespace secret who is also an S3
  user there) does not open. S3 copies wrap the key anew for their destination.
- SSE-C (``x-amz-server-side-encryption-customer-algorithm/-key/-key-MD5``): by a key derived from the
  customer's key and a random salt. The customer key itself is never stored, only a salted HMAC of it that
  tells a wrong key (403) from a damaged object; every read, part upload and copy must send the key again.

``s3.sse-size`` keeps the plaintext size (the grid's size is the stored one) and ``s3.sse-parts`` the
plaintext size of each part of a multipart object, which is what a ranged read needs to find its segments.
An SSE-C object's ETag is not the MD5 of its data (as in AWS): it is an HMAC of it under the data key.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import itertools
import json
import logging
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gridfs.client import GridClient
from gridfs.client.reader import ObjectReader
from gridfs.directory.model import ObjectInfo, PartInfo
from gridfs.gateways.s3 import cipher
from gridfs.gateways.s3.context import Ctx
from gridfs.gateways.s3.errors import S3Error
from gridfs.gateways.s3.masterkey import MasterKeyError
from gridfs.gateways.s3.streams import stream_response

log = logging.getLogger("gridfs.s3")

AES256, SSE_C = "AES256", "SSE-C"
MODE_PROP, KEY_PROP = "s3.sse", "s3.sse-key"
SALT_PROP, CHECK_PROP = "s3.sse-c-salt", "s3.sse-c-check"
SIZE_PROP, PARTS_PROP = "s3.sse-size", "s3.sse-parts"
SSE_PROPS = (MODE_PROP, KEY_PROP, SALT_PROP, CHECK_PROP, SIZE_PROP, PARTS_PROP)
BUCKET_PROP = "s3.encryption"  # a bucket's default encryption: "AES256" or absent
SSE_HEADER = "x-amz-server-side-encryption"
C_ALGORITHM = "x-amz-server-side-encryption-customer-algorithm"
C_KEY = "x-amz-server-side-encryption-customer-key"
C_KEY_MD5 = "x-amz-server-side-encryption-customer-key-MD5"
COPY_SOURCE = "x-amz-copy-source-"  # replaces x-amz- in the SSE-C headers of a copy's source
KMS = ("aws:kms", "aws:kms:dsse")
WRAP_CONTEXT = {AES256: b"gridfs sse-s3 data key", SSE_C: b"gridfs sse-c data key"}
NONCE = 12


@dataclass(frozen=True)
class Sealing:
    """How one object's data is encrypted: its mode, its data key and, for SSE-C, the key's MD5 as sent."""

    mode: str
    data_key: bytes
    customer_md5: str = ""

    def headers(self) -> dict[str, str]:
        """The headers AWS answers on every request that wrote or read the object."""
        if self.mode == SSE_C:
            return {C_ALGORITHM: AES256, C_KEY_MD5: self.customer_md5}
        return {SSE_HEADER: AES256}


def _invalid(message: str, header: str) -> S3Error:
    return S3Error("InvalidArgument", message, ArgumentName=header)


def customer_key(headers: Any, prefix: str = "") -> tuple[bytes, str] | None:
    """The SSE-C key a request sends (``prefix``: for a copy's source) and its MD5, checked; None if none."""
    # x-amz-server-side-encryption-customer-key, x-amz-copy-source-server-side-encryption-customer-key...
    alg_name, key_name, md5_name = (prefix + h.removeprefix("x-amz-") if prefix else h
                                    for h in (C_ALGORITHM, C_KEY, C_KEY_MD5))
    algorithm, key, md5 = headers.get(alg_name), headers.get(key_name), headers.get(md5_name)
    if algorithm is None and key is None and md5 is None:
        return None
    if algorithm is None:
        raise _invalid("Requests specifying Server Side Encryption with Customer provided keys must provide a valid "
                       "encryption algorithm.", alg_name)
    if algorithm != AES256:
        raise S3Error("InvalidEncryptionAlgorithmError", "The Encryption request you specified is not valid. "
                      "Supported value: AES256.", ArgumentName=alg_name, ArgumentValue=algorithm[:64])
    if not key:
        raise _invalid("Requests specifying Server Side Encryption with Customer provided keys must provide an "
                       "appropriate secret key.", key_name)
    if not md5:
        raise _invalid("Requests specifying Server Side Encryption with Customer provided keys must provide the "
                       "client calculated MD5 of the secret key.", md5_name)
    try:
        raw = base64.b64decode(key, validate=True)
        sent_md5 = base64.b64decode(md5, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _invalid("The secret key was invalid for the specified algorithm.", key_name) from exc
    if len(raw) != 32:
        raise _invalid("The secret key was invalid for the specified algorithm.", key_name)
    if not hmac.compare_digest(hashlib.md5(raw).digest(), sent_md5):
        raise _invalid("The calculated MD5 hash of the key did not match the hash that was provided.", md5_name)
    return raw, md5


def _derive(customer: bytes, salt: bytes, use: bytes) -> bytes:
    return hmac.new(customer, b"gridfs sse-c " + use + b"\0" + salt, hashlib.sha256).digest()


def _wrap(kek: bytes, data_key: bytes, mode: str) -> str:
    nonce = secrets.token_bytes(NONCE)
    return base64.b64encode(nonce + AESGCM(kek).encrypt(nonce, data_key, WRAP_CONTEXT[mode])).decode()


def _unwrap(kek: bytes, wrapped: str, mode: str) -> bytes:
    raw = base64.b64decode(wrapped, validate=True)
    return AESGCM(kek).decrypt(raw[:NONCE], raw[NONCE:], WRAP_CONTEXT[mode])


def requested(ctx: Ctx) -> Sealing | None:
    """The encryption a write asks for (its headers, else the bucket's default), with a new data key."""
    sse = ctx.headers.get(SSE_HEADER)
    customer = customer_key(ctx.headers)
    if sse is not None and customer is not None:
        raise _invalid("Server Side Encryption with Customer provided key is incompatible with the encryption "
                       "method specified", SSE_HEADER)
    if customer is not None:
        return Sealing(SSE_C, secrets.token_bytes(32), customer[1])
    if sse is None:
        default = ctx.container.properties.get(BUCKET_PROP, "") if ctx.container else ""
        return Sealing(AES256, secrets.token_bytes(32)) if default == AES256 else None
    if sse in KMS:
        raise S3Error("NotImplemented", "SSE-KMS is not implemented by this gateway: use AES256 or SSE-C")
    if sse != AES256:
        raise _invalid("The encryption method specified is not supported", SSE_HEADER)
    return Sealing(AES256, secrets.token_bytes(32))


def _bucket_context(bucket: str) -> bytes:
    return WRAP_CONTEXT[AES256] + b"\0" + bucket.encode()


def stored_props(ctx: Ctx, sealing: Sealing | None) -> dict[str, str]:
    """What an object of ctx's bucket keeps of its encryption: mode and wrapped data key (SSE-C: salt and key
    check too)."""
    if sealing is None:
        return {}
    if sealing.mode == AES256:
        return {MODE_PROP: AES256, KEY_PROP: ctx.gw.master_key.seal(sealing.data_key, _bucket_context(ctx.bucket))}
    customer = customer_key(ctx.headers)
    assert customer is not None
    salt = secrets.token_bytes(16)
    return {MODE_PROP: SSE_C, SALT_PROP: base64.b64encode(salt).decode(),
            CHECK_PROP: base64.b64encode(_derive(customer[0], salt, b"check")).decode(),
            KEY_PROP: _wrap(_derive(customer[0], salt, b"wrap"), sealing.data_key, SSE_C)}


def opened(ctx: Ctx, props: dict[str, str], prefix: str = "", bucket: str = "") -> Sealing | None:
    """The encryption of stored data (an object's or an upload's properties, in ``bucket``, else ctx's), opened
    with the master key or with the customer key the request sends (``prefix``: a copy's source's); refused as
    AWS refuses."""
    if not prefix and ctx.request.method in ("GET", "HEAD") and SSE_HEADER in ctx.headers:
        raise _invalid("x-amz-server-side-encryption header is not supported for this operation.", SSE_HEADER)
    mode = props.get(MODE_PROP, "")
    customer = customer_key(ctx.headers, prefix)
    if mode != SSE_C and customer is not None:
        raise S3Error("InvalidRequest", "The encryption parameters are not applicable to this object.")
    if not mode:
        return None
    try:
        if mode == AES256:
            return Sealing(AES256, ctx.gw.master_key.unseal(props.get(KEY_PROP, ""),
                                                            _bucket_context(bucket or ctx.bucket)))
        if mode != SSE_C:
            raise ValueError(f"unknown encryption mode {mode!r}")
        if customer is None:
            raise S3Error("InvalidRequest", "The object was stored using a form of Server Side Encryption. The "
                          "correct parameters must be provided to retrieve the object.")
        salt = base64.b64decode(props.get(SALT_PROP, ""), validate=True)
        check = base64.b64decode(props.get(CHECK_PROP, ""), validate=True)
        if not hmac.compare_digest(_derive(customer[0], salt, b"check"), check):
            raise S3Error("AccessDenied", "Access Denied: the SSE-C key is not the one the object was stored with")
        return Sealing(SSE_C, _unwrap(_derive(customer[0], salt, b"wrap"), props.get(KEY_PROP, ""), SSE_C),
                       customer[1])
    except (InvalidTag, binascii.Error, ValueError, MasterKeyError) as exc:
        log.error("the data key of /%s/%s does not open: %s", ctx.bucket, ctx.key, exc)
        raise S3Error("InternalError", "The object's encryption key could not be opened.") from exc


def is_encrypted(info: ObjectInfo) -> bool:
    return bool(info.properties.get(MODE_PROP))


def plain_size(info: ObjectInfo) -> int:
    """The size S3 clients see: the plaintext's for an encrypted object, else the grid's."""
    return int(info.properties.get(SIZE_PROP, info.size)) if is_encrypted(info) else info.size


def response_headers(ctx: Ctx, info: ObjectInfo) -> dict[str, str]:
    """SSE headers of a GET or HEAD answer (the request's key MD5 for SSE-C: the key is not stored)."""
    mode = info.properties.get(MODE_PROP, "")
    if mode == AES256:
        return {SSE_HEADER: AES256}
    if mode == SSE_C:
        return {C_ALGORITHM: AES256, C_KEY_MD5: ctx.headers.get(C_KEY_MD5, "")}
    return {}


def etag(sealing: Sealing | None, md5_hex: str) -> str:
    """The ETag of written data: its MD5, but for SSE-C (where the MD5 would let a guess be confirmed)."""
    if sealing is None or sealing.mode != SSE_C:
        return md5_hex
    return hmac.new(sealing.data_key, bytes.fromhex(md5_hex), hashlib.md5).hexdigest()


def encrypt(sealing: Sealing | None, pieces: Iterable[Any], part: int = cipher.SINGLE_PART) -> Iterable[Any]:
    return pieces if sealing is None else cipher.encrypt(pieces, sealing.data_key, part)


def layout(info: ObjectInfo) -> list[tuple[int, int]]:
    """(part number, plaintext size) of each part of an encrypted object, in order."""
    raw = info.properties.get(PARTS_PROP)
    if not raw:
        return [(cipher.SINGLE_PART, plain_size(info))]
    out = []
    for first, size, count in json.loads(raw):
        out += [(first + i, size) for i in range(count)]
    return out


def plaintext(reader: ObjectReader, sealing: Sealing | None, start: int, end: int) -> Iterator[Any]:
    """Bytes [start, end) of an object as S3 clients see them; only the segments they lie in are read."""
    if sealing is None:
        return iter(reader.iter_range(start, end)) if end > start else iter(())
    return cipher.decrypt_range(reader.iter_range, sealing.data_key, layout(reader.info), start, end)


def read_source(client: GridClient, bucket: str, info: ObjectInfo, sealing: Sealing | None, start: int,
                end: int) -> Iterator[Any]:
    """A copy source's bytes [start, end), decrypted when it is encrypted."""
    return plaintext(client.reader(bucket, info.key, version=info.version), sealing, start, end)


def parts_props(parts: list[tuple[int, PartInfo]]) -> dict[str, str]:
    """What completing an encrypted upload adds: the plaintext size, and each part's, run-length coded
    ([first part number, size, count] for consecutive parts of one size: usually one or two runs)."""
    runs: list[list[int]] = []
    for number, part in parts:
        size = part_size(True, part)
        if runs and runs[-1][1] == size and runs[-1][0] + runs[-1][2] == number:
            runs[-1][2] += 1
        else:
            runs.append([number, size, 1])
    total = sum(size * count for _first, size, count in runs)
    return {SIZE_PROP: str(total), PARTS_PROP: json.dumps(runs, separators=(",", ":"))}


def part_size(encrypted: bool, part: PartInfo) -> int:
    """The size of an uploaded part as the client sent it."""
    return cipher.plain_size(part.size) if encrypted else part.size


def rewrapped_props(ctx: Ctx, src: ObjectInfo, src_sealing: Sealing | None, sealing: Sealing | None,
                    etag_prop: str) -> dict[str, str] | None:
    """The encryption properties of a copy that keeps its source's encrypted bytes (the source's data key,
    wrapped for the copy's encryption), or None when the data must be read again: a copy to or from
    plaintext, or from SSE-C to SSE-S3, whose ETag must be the MD5 of the data."""
    if src_sealing is None or sealing is None:
        return None
    src_etag = src.properties.get(etag_prop, "")
    single_part = bool(src_etag) and "-" not in src_etag  # an MD5 (SSE-S3) or an HMAC of one (SSE-C)
    if src_sealing.mode == SSE_C and sealing.mode == AES256 and single_part:
        return None
    kept = Sealing(sealing.mode, src_sealing.data_key, sealing.customer_md5)
    layout_props = {k: src.properties[k] for k in (SIZE_PROP, PARTS_PROP) if k in src.properties}
    props = {**stored_props(ctx, kept), **layout_props}
    if src_sealing.mode == AES256 and sealing.mode == SSE_C and single_part:
        props[etag_prop] = etag(kept, src_etag)
    return props


def reseal(ctx: Ctx, src_bucket: str, src: ObjectInfo, src_sealing: Sealing | None, sealing: Sealing | None,
           props: dict[str, str], policy: str | None, mime: str, etag_prop: str, **put_kwargs: Any) -> ObjectInfo:
    """A copy that reads its source (decrypting it) and writes it again (encrypting it): from a client thread.
    ``put_kwargs`` carry the copy's write condition to the directory's commit."""
    size = plain_size(src)
    md5 = hashlib.md5()

    def pieces() -> Iterator[Any]:
        for block in read_source(ctx.gw.client, src_bucket, src, src_sealing, 0, size):
            md5.update(block)
            yield block

    def before_commit() -> dict[str, str]:
        return {etag_prop: etag(sealing, md5.hexdigest()), **({SIZE_PROP: str(size)} if sealing else {})}

    return ctx.gw.client.put(ctx.bucket, ctx.key, encrypt(sealing, pieces()), policy=policy,
                             properties={**without_sealing(props), **stored_props(ctx, sealing)}, mime_type=mime,
                             before_commit=before_commit, **put_kwargs)


def without_sealing(props: dict[str, str]) -> dict[str, str]:
    """A source's properties minus its encryption (a copy has its own)."""
    return {k: v for k, v in props.items() if k not in SSE_PROPS}


async def upload_props(ctx: Ctx, upload_id: str) -> dict[str, str]:
    """The properties of an open multipart upload (its encryption among them)."""
    uploads = await ctx.run(lambda: ctx.gw.client.list_multipart(ctx.bucket, prefix=ctx.key))
    upload = next((u for u in uploads if u.upload_id == upload_id and u.key == ctx.key), None)
    if upload is None:
        raise S3Error("NoSuchUpload", "The specified upload does not exist. The upload ID may be invalid, or the "
                      "upload may have been aborted or completed.")
    return upload.properties


def first_checked(blocks: Iterator[Any]) -> Iterator[Any]:
    """``blocks`` with the first one already decrypted, so that a damaged start is answered as an error
    (a damaged segment further on can only cut the answer short: its headers are sent)."""
    try:
        first = next(blocks, None)
    except cipher.TamperedData as exc:
        log.error("encrypted object data failed its integrity check: %s", exc)
        raise S3Error("InternalError", "The object's stored data failed its integrity check.") from exc
    return iter(()) if first is None else itertools.chain([first], blocks)


async def send(ctx: Ctx, response: web.StreamResponse, blocks: Iterator[Any]) -> None:
    """Stream an answer's body; a segment failing its tag once the answer has begun aborts the connection,
    so that the client sees a body cut short at once (not after its read timeout) and never that segment."""
    try:
        await stream_response(response, ctx.request, blocks, ctx.gw.pool)
    except cipher.TamperedData as exc:
        log.error("/%s/%s: encrypted object data failed its integrity check: %s", ctx.bucket, ctx.key, exc)
        if ctx.request.transport is not None:
            ctx.request.transport.abort()
        raise ConnectionResetError(str(exc)) from exc
