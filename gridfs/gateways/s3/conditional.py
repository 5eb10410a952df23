"""Conditional writes: ``If-None-Match: *`` and ``If-Match: ETAG`` on PutObject, CopyObject (the destination)
and CompleteMultipartUpload.

The test is the directory's, in the commit's own transaction: ``If-None-Match: *`` commits only if the key
has no live version, and ``If-Match`` only if the key's live version is still the one whose ETag matched
when the request came in (the version number is compared, not read again). So of two writes racing on one
key exactly one can win; a read-then-write in the gateway could let both through. As AWS answers: a key
that exists (or an ETag that differs) is 412 PreconditionFailed, checked once before any data is taken and
again at the commit; an ``If-Match`` whose object was deleted while the data came is 409
ConditionalRequestConflict; ``If-Match`` on a key with no current object is 404 NoSuchKey.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from gridfs.common import errors as grid_errors
from gridfs.directory.model import ObjectInfo
from gridfs.gateways.s3.context import Ctx
from gridfs.gateways.s3.errors import S3Error

FAILED = "At least one of the pre-conditions you specified did not hold"


@dataclass
class WriteCondition:
    """What the directory's commit must find: no live version, or this live version."""

    if_none_match: bool = False
    if_version: int | None = None

    def kwargs(self) -> dict[str, Any]:
        """For ``GridClient.put`` and ``complete_multipart``."""
        return {"if_none_match": self.if_none_match, "if_version": self.if_version}


def _unquoted(etag: str) -> str:
    etag = etag.strip()
    return etag[2:] if etag.startswith("W/") else etag.strip('"')


async def write_condition(ctx: Ctx, etag_of: Callable[[ObjectInfo], str]) -> WriteCondition:
    """The condition a write's headers ask for, checked now against the current object (412 or 404 at once,
    before any data is taken), to be checked again by the directory at the commit."""
    if_none, if_match = ctx.headers.get("If-None-Match"), ctx.headers.get("If-Match")
    if if_none is None and if_match is None:
        return WriteCondition()
    if ctx.user is None:  # before any lookup: whether the key exists is not an anonymous caller's to learn
        raise S3Error("AccessDenied", "Access Denied")
    if if_none is not None and if_match is not None:
        raise S3Error("NotImplemented", "If-Match and If-None-Match cannot be combined on a write",
                      Header="If-None-Match")
    if if_none is not None:
        if if_none.strip() != "*":
            raise S3Error("NotImplemented", "A header you provided implies functionality that is not implemented: "
                          "If-None-Match on a write takes only '*'", Header="If-None-Match")
        if await _current(ctx) is not None:
            raise S3Error("PreconditionFailed", FAILED, Condition="If-None-Match")
        return WriteCondition(if_none_match=True)
    assert if_match is not None
    wanted = _unquoted(if_match)
    if not wanted:
        raise S3Error("InvalidArgument", "If-Match needs an ETag", ArgumentName="If-Match")
    current = await _current(ctx)
    if current is None:
        raise S3Error("NoSuchKey", "The specified key does not exist.", Key=ctx.key)
    if wanted != "*" and wanted != etag_of(current):
        raise S3Error("PreconditionFailed", FAILED, Condition="If-Match")
    return WriteCondition(if_version=current.version)


async def _current(ctx: Ctx) -> ObjectInfo | None:
    try:
        return await ctx.run(lambda: ctx.gw.client.head(ctx.bucket, ctx.key))
    except grid_errors.NoSuchObject:
        return None


@contextmanager
def committed_under(ctx: Ctx, condition: WriteCondition) -> Iterator[None]:
    """Turn the directory's refusal of a conditional commit into S3's answer (use around the blocking write)."""
    try:
        yield
    except grid_errors.AlreadyExists as exc:  # If-None-Match: another write of the key committed first
        raise S3Error("PreconditionFailed", FAILED, Condition="If-None-Match") from exc
    except grid_errors.PreconditionFailed as exc:  # If-Match: the version it matched is not current any more
        if condition.if_version is None:
            raise
        try:
            ctx.gw.client.head(ctx.bucket, ctx.key)
        except grid_errors.NoSuchObject:
            raise S3Error("ConditionalRequestConflict", "A conflicting operation occurred. If using "
                          "PutObject you can retry the request.") from exc
        raise S3Error("PreconditionFailed", FAILED, Condition="If-Match") from exc
