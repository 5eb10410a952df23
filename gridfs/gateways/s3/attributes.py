"""GetObjectAttributes (``GET /bucket/key?attributes``): what ``x-amz-object-attributes`` asks for among
ETag, Checksum, ObjectParts, StorageClass and ObjectSize, of the current version or of ``versionId``.

An S3 multipart object's parts are known from its ETag (``MD5-N``: N parts) and from the part sizes
``CompleteMultipartUpload`` records in the property ``s3.parts`` (runs of equal sizes, so that 10,000
parts of one size take a few bytes): ObjectParts lists them, ``x-amz-max-parts`` (default 1000) at a time
after ``x-amz-part-number-marker``. Objects completed before that property existed answer the count only.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from gridfs.gateways.s3 import xmlio
from gridfs.gateways.s3.context import Ctx, load_bucket
from gridfs.gateways.s3.errors import S3Error
from gridfs.gateways.s3.markers import read_or_explain
from gridfs.gateways.s3.objects import etag_of, parse_version, storage_class_of, stored_checksums, version_id

PARTS_PROP = "s3.parts"
ATTRIBUTES = ("ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize")
MAX_PARTS, PART_LIMIT = 1000, 10000
MAX_PARTS_PROP = 16 * 1024  # a record too large for its worth (every size different): the count alone
CHECKSUM_NAMES = {"crc32": "ChecksumCRC32", "crc32c": "ChecksumCRC32C", "sha1": "ChecksumSHA1",
                  "sha256": "ChecksumSHA256"}


def parts_property(sizes: list[int]) -> dict[str, str]:
    """The ``s3.parts`` property of an object completed from parts of these sizes (in order)."""
    runs: list[list[int]] = []
    for size in sizes:
        if runs and runs[-1][0] == size:
            runs[-1][1] += 1
        else:
            runs.append([size, 1])
    text = json.dumps(runs, separators=(",", ":"))
    return {PARTS_PROP: text} if len(text) <= MAX_PARTS_PROP else {}


def _part_sizes(props: dict[str, str]) -> list[int]:
    try:
        return [size for size, count in json.loads(props.get(PARTS_PROP) or "[]") for _ in range(count)]
    except (ValueError, TypeError):
        return []  # not written by parts_property: no part list rather than a wrong one


def _header_count(ctx: Ctx, name: str, default: int, cap: int) -> int:
    raw = ctx.headers.get(name)
    if raw is None:
        return default
    raw = raw.strip()
    if not (raw.isascii() and raw.isdigit()) or int(raw) > 2**31 - 1:
        raise S3Error("InvalidArgument", f"{name} must be an integer between 0 and 2147483647",
                      ArgumentName=name, ArgumentValue=raw)
    return min(int(raw), cap)


def requested_attributes(ctx: Ctx) -> set[str]:
    raw = ctx.headers.get("x-amz-object-attributes", "")
    asked = {a.strip() for a in raw.split(",") if a.strip()}
    if not asked:
        raise S3Error("InvalidRequest", "The x-amz-object-attributes header specifying the attributes to be "
                      "retrieved is either missing or empty")
    unknown = sorted(asked - set(ATTRIBUTES))
    if unknown:
        raise S3Error("InvalidArgument", "Invalid attribute name specified.", ArgumentName="x-amz-object-attributes",
                      ArgumentValue=unknown[0])
    return asked


def _object_parts(etag: str, props: dict[str, str], marker: int, max_parts: int) -> dict[str, Any] | None:
    count = etag.rpartition("-")[2]
    if "-" not in etag or not count.isdigit():
        return None  # not an S3 multipart object: AWS answers no ObjectParts
    sizes = _part_sizes(props)
    numbered = [(n, size) for n, size in enumerate(sizes, 1) if n > marker] if len(sizes) == int(count) else []
    page = numbered[:max_parts]
    truncated = len(numbered) > len(page)
    return {"PartsCount": int(count), "PartNumberMarker": marker,
            "NextPartNumberMarker": page[-1][0] if page else marker, "MaxParts": max_parts,
            "IsTruncated": truncated, "Part": [{"PartNumber": n, "Size": size} for n, size in page]}


async def get_object_attributes(ctx: Ctx) -> web.Response:
    await load_bucket(ctx)
    if ctx.request.method != "GET" or not ctx.key:
        raise S3Error("MethodNotAllowed", "The specified method is not allowed against this resource.")
    asked = requested_attributes(ctx)
    marker = _header_count(ctx, "x-amz-part-number-marker", 0, PART_LIMIT)
    max_parts = _header_count(ctx, "x-amz-max-parts", MAX_PARTS, MAX_PARTS)
    version = parse_version(ctx)
    info = await read_or_explain(ctx, lambda: ctx.gw.client.head(ctx.bucket, ctx.key, version=version), version)
    etag = etag_of(info)
    content: dict[str, Any] = {}
    if "ETag" in asked:
        content["ETag"] = etag  # unquoted, as AWS answers it here
    if "Checksum" in asked and (sums := stored_checksums(info)):
        content["Checksum"] = {**{CHECKSUM_NAMES[alg]: value for alg, value in sums.items()},
                               "ChecksumType": "COMPOSITE" if "-" in etag else "FULL_OBJECT"}
    if "ObjectParts" in asked and (parts := _object_parts(etag, info.properties, marker, max_parts)) is not None:
        content["ObjectParts"] = parts
    if "StorageClass" in asked:
        content["StorageClass"] = storage_class_of(info)
    if "ObjectSize" in asked:
        content["ObjectSize"] = info.size
    headers = {"Last-Modified": xmlio.http_date(info.mtime)}
    if (vid := version_id(ctx, info.version)):
        headers["x-amz-version-id"] = vid
    return xmlio.response("GetObjectAttributesResponse", content, headers)
