"""Object operations: PutObject, GetObject, HeadObject, DeleteObject, CopyObject, tagging.

S3 metadata maps onto grid object properties: ``x-amz-meta-NAME`` is the property
NAME (so ``grid://`` users see the same metadata), and what only S3 needs (the MD5
ETag, checksums, tags, content headers, storage class) lives under ``s3.``.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, unquote

from aiohttp import web

from gridfs.client.reader import ObjectReader
from gridfs.common import errors as grid_errors
from gridfs.directory.model import ObjectInfo
from gridfs.gateways.s3 import cors, objectlock, sse, xmlio
from gridfs.gateways.s3.acl import get_acl, new_object_props, put_acl
from gridfs.gateways.s3.checksums import ALGORITHMS, BodyDigests, requested_algorithm
from gridfs.gateways.s3.conditional import committed_under, write_condition
from gridfs.gateways.s3.context import Ctx, authorize, load_bucket
from gridfs.gateways.s3.errors import S3Error
from gridfs.gateways.s3.markers import read_or_explain
from gridfs.gateways.s3.streams import RequestBody, sync_pieces
from gridfs.gateways.s3.tags import MAX_OBJECT_TAGS, parse_tag_document, parse_tag_header, tagging_response

ETAG_PROP, TAGS_PROP, CLASS_PROP = "s3.etag", "s3.tags", "s3.storage-class"
CHECKSUM_PROP = "s3.checksum."
CONTENT_HEADERS = ("Cache-Control", "Content-Disposition", "Content-Encoding", "Content-Language", "Expires")
# x-amz-storage-class -> storage policy ("" = the bucket's, or the namespace's choice by size).
STORAGE_CLASSES = {"STANDARD": "", "REDUCED_REDUNDANCY": "TWOCOPIES", "STANDARD_IA": "EC63", "ONEZONE_IA": "EC42"}
MAX_TAGS = MAX_OBJECT_TAGS
VERSION_RE = re.compile(r"[0-9]{1,19}")
MAX_VERSION = 2**63 - 1  # versions are SQLite integers
RESPONSE_OVERRIDES = ("Content-Type", "Content-Language", "Expires", "Cache-Control", "Content-Disposition",
                      "Content-Encoding")


# -- metadata -------------------------------------------------------------------------


def etag_of(info: ObjectInfo) -> str:
    return info.properties.get(ETAG_PROP) or info.hash or info.content_id


def storage_class_of(info: ObjectInfo) -> str:
    return info.properties.get(CLASS_PROP, "STANDARD")


def version_id(ctx: Ctx, version: int | None, force: bool = False) -> str | None:
    versioned = ctx.container is not None and ctx.container.versioning != "disabled"
    if version is None or not (versioned or force):
        return None
    return str(version) if versioned else "null"


def version_from(vid: str | None, name: str = "versionId") -> int | None:
    """An S3 version id as the grid's version number; "null" or nothing means the latest.

    Only ASCII digits up to SQLite's largest integer: ``str.isdigit`` took other digits
    (``"\u0663"``) and numbers that overflowed the directory's database (a 500).
    """
    if not vid or vid == "null":
        return None
    if not VERSION_RE.fullmatch(vid) or int(vid) > MAX_VERSION:
        raise S3Error("InvalidArgument", "Invalid version id specified", ArgumentName=name, ArgumentValue=vid)
    return int(vid)


def parse_version(ctx: Ctx) -> int | None:
    return version_from(ctx.query.get("versionId"))


def policy_for_class(ctx: Ctx, fields: Any = None) -> tuple[str | None, dict[str, str]]:
    """The storage policy and properties ``x-amz-storage-class`` asks for (in ``fields``: a POST form's)."""
    cls = (ctx.headers if fields is None else fields).get("x-amz-storage-class")
    if not cls:
        return None, {}
    if cls in STORAGE_CLASSES:
        return STORAGE_CLASSES[cls] or None, ({CLASS_PROP: cls} if cls != "STANDARD" else {})
    if cls in ctx.gw.client.policies():  # a grid policy name is accepted as a class too
        return cls, {CLASS_PROP: cls}
    raise S3Error("InvalidStorageClass", "The storage class you specified is not valid")


def parse_tagging(text: str) -> dict[str, str]:
    return parse_tag_header(text, MAX_TAGS)


def properties_from_headers(ctx: Ctx, fields: Any = None) -> dict[str, str]:
    """The object properties a write's headers (or ``fields``, case-insensitive: a POST form's) set."""
    headers = ctx.headers if fields is None else fields
    props: dict[str, str] = {}
    for name, value in headers.items():
        low = name.lower()
        if low.startswith("x-amz-meta-"):
            meta = low.removeprefix("x-amz-meta-")
            if not meta or meta.startswith("s3."):
                raise S3Error("InvalidArgument", f"invalid metadata name {name!r}")
            props[meta] = value
    for name in CONTENT_HEADERS:
        if name in headers:
            props["s3." + name.lower()] = headers[name]
    if "s3.content-encoding" in props:  # aws-chunked says how this request's body came, not what the object is
        kept = ",".join(e for e in props.pop("s3.content-encoding").split(",") if e.strip().lower() != "aws-chunked")
        if kept.strip():
            props["s3.content-encoding"] = kept.strip()
    if "x-amz-tagging" in headers:
        props[TAGS_PROP] = json.dumps(parse_tagging(headers["x-amz-tagging"]))
    if sum(len(k) + len(v) for k, v in props.items() if not k.startswith("s3.")) > 2048:
        raise S3Error("MetadataTooLarge", "Your metadata headers exceed the maximum allowed metadata size.")
    return props


def object_headers(ctx: Ctx, info: ObjectInfo) -> dict[str, str]:
    props = info.properties
    headers = {
        "ETag": f'"{etag_of(info)}"',
        "Last-Modified": xmlio.http_date(info.mtime),
        "Accept-Ranges": "bytes",
        "Content-Type": info.mime_type or "binary/octet-stream",
    }
    for name in CONTENT_HEADERS:
        if "s3." + name.lower() in props:
            headers[name] = props["s3." + name.lower()]
    for k, v in props.items():
        if not k.startswith("s3."):
            headers[f"x-amz-meta-{k}"] = v
    if CLASS_PROP in props:
        headers["x-amz-storage-class"] = props[CLASS_PROP]
    if TAGS_PROP in props:
        headers["x-amz-tagging-count"] = str(len(json.loads(props[TAGS_PROP])))
    headers.update(objectlock.headers_of(ctx, info))
    vid = version_id(ctx, info.version)
    if vid:
        headers["x-amz-version-id"] = vid
    if ctx.headers.get("x-amz-checksum-mode", "").upper() == "ENABLED":
        for alg, value in stored_checksums(info).items():
            headers[f"x-amz-checksum-{alg}"] = value
    headers.update(sse.response_headers(ctx, info))
    return headers


def stored_checksums(info: ObjectInfo) -> dict[str, str]:
    """The object's S3 checksums by algorithm (base64): those sent with it, else the grid's CRC32C."""
    props = info.properties
    sent = {alg: props[CHECKSUM_PROP + alg] for alg in ALGORITHMS if CHECKSUM_PROP + alg in props}
    if info.crc32c and not sent and "-" not in etag_of(info) and not sse.is_encrypted(info):
        # No checksum sent with the object: the grid's own CRC32C of the whole object is S3's
        # CRC32C of a single-part object (base64 of its 4 big-endian bytes). Not for an S3
        # multipart object (ETag "MD5-N"), whose S3 checksum is a checksum of part checksums,
        # nor for an encrypted one, whose grid CRC32C is that of its ciphertext.
        return {"crc32c": base64.b64encode(bytes.fromhex(info.crc32c)).decode()}
    return sent


# -- conditions and ranges --------------------------------------------------------------


def _http_time(value: str) -> float | None:
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None


def check_conditions(headers: Any, info: ObjectInfo, prefix: str = "") -> None:
    """If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since (with ``prefix`` for copy sources)."""
    etag = f'"{etag_of(info)}"'
    mtime = int(info.mtime)

    def matches(value: str) -> bool:
        return any(v.strip() in ("*", etag, etag.strip('"')) for v in value.split(","))

    if_match, if_none = headers.get(prefix + "If-Match"), headers.get(prefix + "If-None-Match")
    since, unmodified = headers.get(prefix + "If-Modified-Since"), headers.get(prefix + "If-Unmodified-Since")
    if if_match is not None and not matches(if_match):
        raise S3Error("PreconditionFailed", "At least one of the pre-conditions you specified did not hold",
                      Condition=prefix + "If-Match")
    if if_match is None and unmodified and (t := _http_time(unmodified)) is not None and mtime > t:
        raise S3Error("PreconditionFailed", "At least one of the pre-conditions you specified did not hold",
                      Condition=prefix + "If-Unmodified-Since")
    failed = "PreconditionFailed" if prefix else "NotModified"
    if if_none is not None and matches(if_none):
        raise S3Error(failed, "Not Modified")
    if if_none is None and since and (t := _http_time(since)) is not None and mtime <= t:
        raise S3Error(failed, "Not Modified")


def parse_range(value: str | None, size: int) -> tuple[int, int] | None:
    """``bytes=a-b`` -> [start, end); None for a whole-object read (absent or multi-range header)."""
    if not value:
        return None
    if not value.startswith("bytes=") or "," in value:
        return None
    first, _, last = value[6:].strip().partition("-")
    try:
        if first == "":
            n = int(last)
            if n <= 0 or size == 0:
                raise S3Error("InvalidRange", "The requested range is not satisfiable")
            return max(0, size - n), size
        start = int(first)
        end = size if last == "" else min(size, int(last) + 1)
    except ValueError:
        return None
    if start >= size or end <= start:
        raise S3Error("InvalidRange", "The requested range is not satisfiable", ActualObjectSize=str(size))
    return start, end


# -- dispatch -------------------------------------------------------------------------


async def dispatch(ctx: Ctx) -> web.StreamResponse:
    await load_bucket(ctx)
    method, q = ctx.request.method, ctx.query
    if "tagging" in q:
        return await {"GET": get_tagging, "PUT": put_tagging, "DELETE": delete_tagging}.get(
            method, _not_allowed)(ctx)
    if "acl" in q:
        if method in ("GET", "PUT"):
            parse_version(ctx)  # a malformed versionId is refused, not taken for the latest version
            return await (get_acl(ctx) if method == "GET" else put_acl(ctx))
        return await _not_allowed(ctx)
    if method == "PUT":
        return await (copy_object(ctx) if "x-amz-copy-source" in ctx.headers else put_object(ctx))
    if method in ("GET", "HEAD"):
        return await get_object(ctx)
    if method == "DELETE":
        return await delete_object(ctx)
    return await _not_allowed(ctx)


async def _not_allowed(ctx: Ctx) -> web.Response:
    raise S3Error("MethodNotAllowed", "The specified method is not allowed against this resource.")


# -- writes ---------------------------------------------------------------------------


async def receive(ctx: Ctx, write: Any) -> tuple[Any, BodyDigests, str]:
    """Stream the request body into ``write(pieces, verify, digests)`` on a client thread.

    Digests are compared inside ``before_commit``, after the last byte and before the
    directory commit, so a body that fails a check leaves nothing behind.
    """
    body = RequestBody(ctx.request, ctx.signed, ctx.signing_key)
    algorithm = requested_algorithm({k.lower(): v for k, v in ctx.headers.items()})
    digests = BodyDigests(ctx.signed.payload_hash if ctx.signed else "", algorithm,
                          ctx.headers.get("Content-MD5", ""))
    checksum: list[str] = []

    def verify() -> str:
        name = f"x-amz-checksum-{algorithm}"
        expected = ctx.headers.get(name) or body.trailers.get(name, "")
        checksum.append(digests.check(expected))
        return checksum[0]

    loop = asyncio.get_running_loop()
    pieces = sync_pieces(loop, body.pieces(), digests, body.length)
    result = await ctx.run(write, pieces, verify, digests)
    return result, digests, checksum[0] if checksum else ""


async def put_object(ctx: Ctx) -> web.Response:
    policy, class_props = policy_for_class(ctx)
    props = {**properties_from_headers(ctx), **class_props, **objectlock.props_from_headers(ctx),
             **await new_object_props(ctx)}
    condition = await write_condition(ctx, etag_of)
    mime = ctx.headers.get("Content-Type") or "binary/octet-stream"
    sealing = sse.requested(ctx)
    props.update(sse.stored_props(ctx, sealing))

    def write(pieces: Any, verify: Any, digests: BodyDigests) -> ObjectInfo:
        def before_commit() -> dict[str, str]:
            value = verify()
            extra = {ETAG_PROP: sse.etag(sealing, digests.etag())}
            if sealing:
                extra[sse.SIZE_PROP] = str(digests.size)
            if value:
                extra[CHECKSUM_PROP + digests.algorithm] = value
            return extra

        with committed_under(ctx, condition):
            return ctx.gw.client.put(ctx.bucket, ctx.key, sse.encrypt(sealing, pieces), policy=policy,
                                     properties=props, mime_type=mime, before_commit=before_commit,
                                     **condition.kwargs())

    info, digests, checksum = await receive(ctx, write)
    headers = {"ETag": f'"{sse.etag(sealing, digests.etag())}"', **(sealing.headers() if sealing else {})}
    if checksum:
        headers[f"x-amz-checksum-{digests.algorithm}"] = checksum
    vid = version_id(ctx, info.version)
    if vid:
        headers["x-amz-version-id"] = vid
    return web.Response(headers=headers)


async def delete_object(ctx: Ctx) -> web.Response:
    version = parse_version(ctx)
    bypass = objectlock.bypass(ctx)
    try:
        result = await ctx.run(lambda: ctx.gw.client.delete(ctx.bucket, ctx.key, version=version,
                                                            bypass_governance=bypass))
    except grid_errors.NoSuchObject:
        if version is not None:
            raise
        result = {}  # deleting a missing key succeeds, as S3 does
    headers = {}
    if result.get("delete_marker"):
        headers["x-amz-delete-marker"] = "true"
    if result.get("version") is not None and (vid := version_id(ctx, result["version"])):
        headers["x-amz-version-id"] = vid
    return web.Response(status=204, headers=headers)


def parse_copy_source(ctx: Ctx) -> tuple[str, str, int | None]:
    raw = ctx.headers["x-amz-copy-source"]
    path, _, query = raw.partition("?")
    try:  # strict: a replaced byte would name another key
        bucket, _, key = unquote(path, errors="strict").lstrip("/").partition("/")
        params = dict(parse_qsl(query, errors="strict"))
    except UnicodeDecodeError as exc:
        raise S3Error("InvalidArgument", "Invalid copy source encoding.") from exc
    if not bucket or not key:
        raise S3Error("InvalidArgument", "Copy Source must mention the source bucket and key: sourcebucket/sourcekey")
    return bucket, key, version_from(params.get("versionId"), "x-amz-copy-source")


async def load_copy_source(ctx: Ctx) -> tuple[str, ObjectInfo]:
    bucket, key, version = parse_copy_source(ctx)
    container = await ctx.run(lambda: ctx.gw.client.bucket_info(bucket, stats=False))
    # The version whose ACL allowed the copy is the one copied, not one written since.
    info = await authorize(ctx, container, key, version) or \
        await ctx.run(lambda: ctx.gw.client.head(bucket, key, version=version))
    check_conditions(ctx.headers, info, prefix="x-amz-copy-source-")
    return bucket, info


async def copy_object(ctx: Ctx) -> web.Response:
    if ctx.user is None:
        raise S3Error("AccessDenied", "Access Denied")
    src_bucket, src = await load_copy_source(ctx)
    src_sealing, sealing = sse.opened(ctx, src.properties, sse.COPY_SOURCE, src_bucket), sse.requested(ctx)
    directive = ctx.headers.get("x-amz-metadata-directive", "COPY").upper()
    if directive not in ("COPY", "REPLACE"):
        raise S3Error("InvalidArgument", "Unknown metadata directive.")
    policy, class_props = policy_for_class(ctx)
    kept = {k: v for k, v in src.properties.items() if k.startswith(("s3.etag", "s3.checksum."))}
    if directive == "REPLACE":
        props = {**properties_from_headers(ctx), **class_props, **kept}
        mime = ctx.headers.get("Content-Type") or src.mime_type
    else:
        props = {**src.properties, **class_props}
        mime = src.mime_type
    props = objectlock.props_from_headers(ctx, props)  # the source's lock is not copied, as in S3
    props.update(await new_object_props(ctx))  # a copy is its copier's, with an ACL of its own (not the source's)
    tagging = ctx.headers.get("x-amz-tagging-directive", "COPY").upper()
    if tagging == "REPLACE":
        props[TAGS_PROP] = json.dumps(parse_tagging(ctx.headers.get("x-amz-tagging", "")))
    if src_bucket == ctx.bucket and src.key == ctx.key and directive == "COPY" and not class_props \
            and tagging != "REPLACE" and not sealing:
        raise S3Error("InvalidRequest", "This copy request is illegal because it is trying to copy an object to "
                      "itself without changing the object's metadata, storage class, website redirect location "
                      "or encryption attributes.")
    condition = await write_condition(ctx, etag_of)
    rewrapped = sse.rewrapped_props(ctx, src, src_sealing, sealing, ETAG_PROP)
    if rewrapped is not None:  # the encrypted bytes are linked as they are, their data key wrapped for the copy
        props = {**sse.without_sealing(props), **rewrapped}
    if rewrapped is None and (src_sealing or sealing):  # to or from plaintext: the data moves through the gateway
        def reseal() -> ObjectInfo:
            with committed_under(ctx, condition):
                return sse.reseal(ctx, src_bucket, src, src_sealing, sealing, props, policy, mime, ETAG_PROP,
                                  origin="copy", **condition.kwargs())

        info = await ctx.run(reseal)
    elif policy and policy != src.policy:  # another policy: the data must be re-encoded
        def recode() -> ObjectInfo:
            stream = ctx.gw.client.get_stream(src_bucket, src.key, version=src.version)
            with committed_under(ctx, condition):
                return ctx.gw.client.put(ctx.bucket, ctx.key, (bytes(b) for b in stream), policy=policy,
                                         properties=props, mime_type=mime, origin="copy", **condition.kwargs())

        info = await ctx.run(recode)
    else:
        def link() -> ObjectInfo:
            with committed_under(ctx, condition):
                return ctx.gw.client.copy(src_bucket, src.key, ctx.bucket, ctx.key, version=src.version,
                                          properties=props, mime_type=mime, **condition.kwargs())

        info = await ctx.run(link)
    headers = sealing.headers() if sealing else {}
    if (vid := version_id(ctx, info.version)):
        headers["x-amz-version-id"] = vid
    return xmlio.response("CopyObjectResult", {"LastModified": xmlio.iso(info.mtime), "ETag": f'"{etag_of(info)}"'},
                          headers)


# -- reads ----------------------------------------------------------------------------


async def get_object(ctx: Ctx) -> web.StreamResponse:
    if ctx.user is None and any("response-" + name.lower() in ctx.query for name in RESPONSE_OVERRIDES):
        # As AWS: a public object's answer is the owner's, not whatever headers an anonymous link asks for.
        raise S3Error("InvalidRequest", "Request specific response headers cannot be used for anonymous GET requests.")
    version = parse_version(ctx)
    checked = ctx.object_info  # the version access control read and allowed: served, not read again
    if checked is not None and version in (None, checked.version):
        reader = ObjectReader(ctx.gw.client.io, checked)
    else:
        reader = await read_or_explain(ctx, lambda: ctx.gw.client.reader(ctx.bucket, ctx.key, version=version),
                                       version)
    info = reader.info
    sealing = sse.opened(ctx, info.properties)
    size = sse.plain_size(info)
    check_conditions(ctx.headers, info)
    headers = object_headers(ctx, info)
    for name in RESPONSE_OVERRIDES:
        override = ctx.query.get("response-" + name.lower())
        if override is not None:
            headers[name] = override
    span = parse_range(ctx.headers.get("Range"), size)
    start, end = span or (0, size)
    status = 206 if span else 200
    if span:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        for alg in ALGORITHMS:  # a whole-object checksum does not describe a range
            headers.pop(f"x-amz-checksum-{alg}", None)
    headers["Content-Length"] = str(end - start)
    if ctx.request.method == "HEAD":
        return web.Response(status=status, headers=headers)
    blocks = sse.plaintext(reader, sealing, start, end)
    if sealing:  # the first segment opened before the answer begins: a damaged one is an error, not a cut body
        blocks = await ctx.run(sse.first_checked, blocks)
    response = web.StreamResponse(status=status, headers=headers)
    cors.add_headers(ctx, response)
    await sse.send(ctx, response, blocks)
    return response


# -- tagging --------------------------------------------------------------------------


async def get_tagging(ctx: Ctx) -> web.Response:
    info = await ctx.run(lambda: ctx.gw.client.head(ctx.bucket, ctx.key, version=parse_version(ctx)))
    return tagging_response(json.loads(info.properties.get(TAGS_PROP) or "{}"))


async def put_tagging(ctx: Ctx) -> web.Response:
    if ctx.user is None:
        raise S3Error("AccessDenied", "Access Denied")
    tags = parse_tag_document(await ctx.request.read(), MAX_TAGS)
    await ctx.run(lambda: ctx.gw.client.set_properties(ctx.bucket, ctx.key, {TAGS_PROP: json.dumps(tags)}))
    return web.Response()


async def delete_tagging(ctx: Ctx) -> web.Response:
    if ctx.user is None:
        raise S3Error("AccessDenied", "Access Denied")
    await ctx.run(lambda: ctx.gw.client.set_properties(ctx.bucket, ctx.key, {TAGS_PROP: None}))
    return web.Response(status=204)
