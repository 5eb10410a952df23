"""ListBuckets: the requester's buckets, a page at a time, as AWS pages them.

``max-buckets`` (1 to 10,000), ``prefix``, ``bucket-region`` and ``continuation-token``; a truncated page
carries a ``ContinuationToken`` (opaque: the last name listed, base64url), and when any of those is
sent each bucket carries its ``BucketRegion`` (its location constraint, else us-east-1).

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from aiohttp import web

from gridfs.common import errors as grid_errors
from gridfs.common.names import check_bucket
from gridfs.gateways.s3 import xmlio
from gridfs.gateways.s3.acl import owner_xml
from gridfs.gateways.s3.context import LOCATION_PROP, Ctx, owner_of
from gridfs.gateways.s3.errors import S3Error

MAX_BUCKETS = 10000
DEFAULT_REGION = "us-east-1"
PAGING = ("max-buckets", "prefix", "bucket-region", "continuation-token")


def _max_buckets(ctx: Ctx) -> int:
    raw = ctx.query.get("max-buckets")
    if raw is None:
        return MAX_BUCKETS
    if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= MAX_BUCKETS):
        raise S3Error("InvalidArgument", f"max-buckets must be an integer between 1 and {MAX_BUCKETS}",
                      ArgumentName="max-buckets", ArgumentValue=raw)
    return int(raw)


def encode_token(name: str) -> str:
    return base64.urlsafe_b64encode(name.encode()).decode()


def decode_token(token: str) -> str:
    """The bucket name after which a page starts; InvalidArgument for anything this gateway did not make."""
    try:
        name = base64.urlsafe_b64decode(token.encode("ascii")).decode("ascii")
        check_bucket(name)
    except (ValueError, UnicodeError, binascii.Error, grid_errors.InvalidName) as exc:
        raise S3Error("InvalidArgument", "The continuation token provided is incorrect",
                      ArgumentName="continuation-token") from exc
    return name


def region_of(properties: dict[str, str]) -> str:
    return properties.get(LOCATION_PROP) or DEFAULT_REGION


async def list_buckets(ctx: Ctx) -> web.Response:
    assert ctx.user is not None
    paged = any(p in ctx.query for p in PAGING)
    limit = _max_buckets(ctx)
    prefix, region = ctx.query.get("prefix", ""), ctx.query.get("bucket-region", "")
    token = ctx.query.get("continuation-token", "")
    after = decode_token(token) if token else ""
    containers = await ctx.run(ctx.gw.client.list_buckets)
    mine = sorted((c for c in containers if owner_of(ctx.gw, c) == ctx.user.name and c.bucket.startswith(prefix)
                   and c.bucket > after and (not region or region_of(c.properties) == region)),
                  key=lambda c: c.bucket)
    page = mine[:limit]
    entries: list[dict[str, Any]] = []
    for c in page:
        entry = {"Name": c.bucket, "CreationDate": xmlio.iso(c.ctime)}
        if paged:
            entry["BucketRegion"] = region_of(c.properties)
        entries.append(entry)
    return xmlio.response("ListAllMyBucketsResult", {
        "Owner": owner_xml(ctx),
        "Buckets": {"Bucket": entries},
        "ContinuationToken": encode_token(page[-1].bucket) if len(mine) > len(page) else None,
        "Prefix": prefix if "prefix" in ctx.query else None,
    })
