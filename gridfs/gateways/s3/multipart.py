"""Multipart uploads: create, upload part (and part copy), list parts and uploads, complete, abort.

Parts are stored by the grid as they come; Complete is a directory operation that
assembles them without copying data. The ETag of the result is S3's: the MD5 of the
parts' MD5s, then ``-N``.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from aiohttp import web

from gridfs.gateways.s3 import objectlock, sse, xmlio
from gridfs.gateways.s3.acl import new_object_props
from gridfs.gateways.s3.attributes import parts_property
from gridfs.gateways.s3.checksums import BodyDigests
from gridfs.gateways.s3.conditional import committed_under, write_condition
from gridfs.gateways.s3.context import Ctx, load_bucket
from gridfs.gateways.s3.errors import S3Error
from gridfs.gateways.s3.objects import (
    CLASS_PROP,
    ETAG_PROP,
    etag_of,
    load_copy_source,
    parse_range,
    policy_for_class,
    properties_from_headers,
    receive,
    version_id,
)

MIN_PART = 5 * 1024 * 1024
MAX_PARTS = 10000
# The directory makes upload ids of hex digits (token_hex); any URL-safe token is let through to it, and
# nothing else: an id is a path segment of internal URLs, so "..", "/", "?", "%" never get that far.
UPLOAD_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,128}")


def _count(ctx: Ctx, name: str, default: int, cap: int = 1000) -> int:
    """A non-negative integer query argument (max-uploads, max-parts, part-number-marker), at most ``cap``."""
    raw = ctx.query.get(name, "")
    if not raw:
        return default
    if not (raw.isascii() and raw.isdigit()):
        raise S3Error("InvalidArgument", f"Argument {name} must be an integer between 0 and 2147483647",
                      ArgumentName=name)
    return min(int(raw), cap)


def _part_number(ctx: Ctx) -> int:
    raw = ctx.query.get("partNumber", "")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PARTS:
        raise S3Error("InvalidArgument", "Part number must be an integer between 1 and 10000, inclusive")
    return int(raw)


async def dispatch(ctx: Ctx) -> web.StreamResponse:
    await load_bucket(ctx)
    method, q = ctx.request.method, ctx.query
    if method == "POST" and "uploads" in q:
        return await create(ctx)
    upload_id = q.get("uploadId", "")
    if not upload_id:
        raise S3Error("InvalidRequest", "an uploadId is required")
    if not UPLOAD_ID_RE.fullmatch(upload_id):
        raise S3Error("NoSuchUpload", "The specified upload does not exist. The upload ID may be invalid, or the "
                      "upload may have been aborted or completed.")
    if method == "PUT":
        return await (upload_part_copy(ctx) if "x-amz-copy-source" in ctx.headers else upload_part(ctx))
    if method == "GET":
        return await list_parts(ctx)
    if method == "POST":
        return await complete(ctx)
    if method == "DELETE":
        await ctx.run(ctx.gw.client.abort_multipart, ctx.bucket, ctx.key, upload_id)
        return web.Response(status=204)
    raise S3Error("MethodNotAllowed", "The specified method is not allowed against this resource.")


async def create(ctx: Ctx) -> web.Response:
    policy, class_props = policy_for_class(ctx)
    props = {**properties_from_headers(ctx), **class_props, **objectlock.props_from_headers(ctx),
             **await new_object_props(ctx)}
    mime = ctx.headers.get("Content-Type") or "binary/octet-stream"
    sealing = sse.requested(ctx)  # a data key for the whole upload; every part is sealed with it
    props.update(sse.stored_props(ctx, sealing))
    up = await ctx.run(lambda: ctx.gw.client.create_multipart(ctx.bucket, ctx.key, policy=policy, properties=props,
                                                              mime_type=mime))
    headers = sealing.headers() if sealing else {}
    if alg := ctx.headers.get("x-amz-checksum-algorithm"):
        headers["x-amz-checksum-algorithm"] = alg
    return xmlio.response("InitiateMultipartUploadResult",
                          {"Bucket": ctx.bucket, "Key": ctx.key, "UploadId": up.upload_id}, headers)


async def upload_part(ctx: Ctx) -> web.Response:
    number = _part_number(ctx)
    upload_id = ctx.query["uploadId"]
    sealing = sse.opened(ctx, await sse.upload_props(ctx, upload_id))

    def write(pieces: Any, verify: Any, digests: BodyDigests) -> Any:
        def before_commit() -> str:
            verify()
            return sse.etag(sealing, digests.etag())

        return ctx.gw.client.upload_part(ctx.bucket, ctx.key, upload_id, number, sse.encrypt(sealing, pieces, number),
                                         before_commit=before_commit)

    _part, digests, checksum = await receive(ctx, write)
    headers = {"ETag": f'"{sse.etag(sealing, digests.etag())}"', **(sealing.headers() if sealing else {})}
    if checksum:
        headers[f"x-amz-checksum-{digests.algorithm}"] = checksum
    return web.Response(headers=headers)


async def upload_part_copy(ctx: Ctx) -> web.Response:
    number = _part_number(ctx)
    upload_id = ctx.query["uploadId"]
    src_bucket, src = await load_copy_source(ctx)
    src_sealing = sse.opened(ctx, src.properties, sse.COPY_SOURCE, src_bucket)
    sealing = sse.opened(ctx, await sse.upload_props(ctx, upload_id))
    size = sse.plain_size(src)
    span = parse_range(ctx.headers.get("x-amz-copy-source-range"), size) if size else None
    start, end = span or (0, size)

    def copy() -> str:
        md5 = hashlib.md5()

        def pieces() -> Any:
            for block in sse.read_source(ctx.gw.client, src_bucket, src, src_sealing, start, end):
                md5.update(block)
                yield bytes(block)

        def before_commit() -> str:
            return sse.etag(sealing, md5.hexdigest())

        ctx.gw.client.upload_part(ctx.bucket, ctx.key, upload_id, number, sse.encrypt(sealing, pieces(), number),
                                  before_commit=before_commit)
        return before_commit()

    etag = await ctx.run(copy)
    return xmlio.response("CopyPartResult", {"LastModified": xmlio.iso(src.mtime), "ETag": f'"{etag}"'},
                          sealing.headers() if sealing else None)


async def list_parts(ctx: Ctx) -> web.Response:
    upload_id = ctx.query["uploadId"]
    marker, max_parts = _count(ctx, "part-number-marker", 0, MAX_PARTS), _count(ctx, "max-parts", 1000)
    parts = [p for p in await ctx.run(ctx.gw.client.list_parts, ctx.bucket, upload_id) if p.part_number > marker]
    encrypted = sse.MODE_PROP in await sse.upload_props(ctx, upload_id)
    page, truncated = parts[:max_parts], 0 < max_parts < len(parts)  # 0 asks for nothing: no next page
    who = {"ID": ctx.user.name, "DisplayName": ctx.user.name} if ctx.user else {}
    return xmlio.response("ListPartsResult", {
        "Bucket": ctx.bucket, "Key": ctx.key, "UploadId": upload_id, "Initiator": who, "Owner": who,
        "StorageClass": "STANDARD", "PartNumberMarker": marker,
        "NextPartNumberMarker": page[-1].part_number if page else marker, "MaxParts": max_parts,
        "IsTruncated": truncated,
        "Part": [{"PartNumber": p.part_number, "LastModified": xmlio.iso(p.mtime), "ETag": f'"{p.etag}"',
                  "Size": sse.part_size(encrypted, p)} for p in page],
    })


async def list_uploads(ctx: Ctx) -> web.Response:
    q = ctx.query
    prefix = q.get("prefix", "")
    key_marker, id_marker = q.get("key-marker", ""), q.get("upload-id-marker", "")
    max_uploads = _count(ctx, "max-uploads", 1000)
    uploads = await ctx.run(lambda: ctx.gw.client.list_multipart(ctx.bucket, prefix=prefix))
    uploads = [u for u in uploads if (u.key, u.upload_id) > (key_marker, id_marker if key_marker else "")]
    page, truncated = uploads[:max_uploads], 0 < max_uploads < len(uploads)  # 0 asks for nothing: no next page
    return xmlio.response("ListMultipartUploadsResult", {
        "Bucket": ctx.bucket, "KeyMarker": key_marker, "UploadIdMarker": id_marker, "Prefix": prefix,
        "NextKeyMarker": page[-1].key if truncated else None,
        "NextUploadIdMarker": page[-1].upload_id if truncated else None,
        "MaxUploads": max_uploads, "IsTruncated": truncated,
        "Upload": [{"Key": u.key, "UploadId": u.upload_id, "Initiated": xmlio.iso(u.initiated),
                    "StorageClass": u.properties.get(CLASS_PROP, "STANDARD")} for u in page],
    })


async def complete(ctx: Ctx) -> web.Response:
    upload_id = ctx.query["uploadId"]
    doc = xmlio.parse(await xmlio.read(ctx.request), "CompleteMultipartUpload")
    asked: list[tuple[int, str]] = []
    for el in doc.findall("Part"):
        number = xmlio.text(el, "PartNumber")
        if not number.isdigit():
            raise S3Error("MalformedXML", "PartNumber must be an integer")
        asked.append((int(number), xmlio.text(el, "ETag").strip('"')))
    if not asked:
        raise S3Error("MalformedXML", "You must specify at least one part")
    numbers = [n for n, _ in asked]
    if numbers != sorted(numbers) or len(set(numbers)) != len(numbers):
        raise S3Error("InvalidPartOrder", "The list of parts was not in ascending order. Parts must be ordered by "
                      "part number.")
    stored = {p.part_number: p for p in await ctx.run(ctx.gw.client.list_parts, ctx.bucket, upload_id)}
    upload = await sse.upload_props(ctx, upload_id)
    encrypted = sse.MODE_PROP in upload
    for i, (n, etag) in enumerate(asked):
        part = stored.get(n)
        if part is None or part.etag != etag:
            raise S3Error("InvalidPart", "One or more of the specified parts could not be found. The part may not "
                          "have been uploaded, or the specified entity tag may not match the part's entity tag.",
                          PartNumber=str(n))
        if i < len(asked) - 1 and sse.part_size(encrypted, part) < MIN_PART:
            raise S3Error("EntityTooSmall", "Your proposed upload is smaller than the minimum allowed object size.",
                          PartNumber=str(n), ProposedSize=str(sse.part_size(encrypted, part)),
                          MinSizeAllowed=str(MIN_PART))
    # GetObjectAttributes answers the parts' sizes as the client sent them, not as sealed.
    sizes = [sse.part_size(encrypted, stored[n]) for n, _ in asked]
    md5s = b"".join(bytes.fromhex(etag) for _, etag in asked)
    etag = f"{hashlib.md5(md5s).hexdigest()}-{len(asked)}"
    props = {ETAG_PROP: etag, **parts_property(sizes)}
    if encrypted:
        props.update(sse.parts_props([(n, stored[n]) for n, _ in asked]))
    condition = await write_condition(ctx, etag_of)

    def commit() -> Any:
        with committed_under(ctx, condition):
            return ctx.gw.client.complete_multipart(ctx.bucket, ctx.key, upload_id, asked, properties=props,
                                                    **condition.kwargs())

    info = await ctx.run(commit)
    headers = sse.response_headers(ctx, info) if upload.get(sse.MODE_PROP) == sse.AES256 else {}
    if (vid := version_id(ctx, info.version)):
        headers["x-amz-version-id"] = vid
    return xmlio.response("CompleteMultipartUploadResult", {
        "Location": f"/{ctx.bucket}/{ctx.key}", "Bucket": ctx.bucket, "Key": ctx.key, "ETag": f'"{etag}"'}, headers)
