"""Delete markers in answers: a GET or HEAD (or GetObjectAttributes) of a key whose current version is a
delete marker is 404 NoSuchKey with ``x-amz-delete-marker: true`` and the marker's version id, and one that
names a delete marker by its version id is 405 MethodNotAllowed with the same headers, as AWS answers; a
client tells a deleted key from one that never was by them.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from gridfs.common import errors as grid_errors
from gridfs.gateways.s3 import xmlio
from gridfs.gateways.s3.context import Ctx
from gridfs.gateways.s3.errors import S3Error

T = TypeVar("T")


async def read_or_explain(ctx: Ctx, read: Callable[[], T], version: int | None) -> T:
    """``read()`` on the gateway's threads; when it finds no object, S3's answer for a delete marker there."""
    try:
        return await ctx.run(read)
    except grid_errors.NoSuchObject:
        await explain_missing(ctx, version)
        raise


async def explain_missing(ctx: Ctx, version: int | None) -> None:
    """Called when a read found no object: raise S3's answer when a delete marker stands there; return
    otherwise (the caller's NoSuchKey or NoSuchVersion stands)."""
    if ctx.container is None or ctx.container.versioning == "disabled":
        return  # a bucket never versioned holds no delete marker: no second lookup
    try:
        marker = await ctx.run(lambda: ctx.gw.client.head(ctx.bucket, ctx.key, version=version, delete_markers=True))
    except grid_errors.NoSuchObject:
        return
    if not marker.delete_marker:
        return  # written since the read: the caller's error stands (a retry reads it)
    headers = {"x-amz-delete-marker": "true", "x-amz-version-id": str(marker.version)}
    if version is None:
        error = S3Error("NoSuchKey", "The specified key does not exist.", Key=ctx.key)
    else:
        error = S3Error("MethodNotAllowed", "The specified method is not allowed against this resource.",
                        Method=ctx.request.method, ResourceType="DeleteMarker")
        headers["Last-Modified"] = xmlio.http_date(marker.mtime)
    error.headers.update(headers)
    raise error
