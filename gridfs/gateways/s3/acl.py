"""Access control lists of buckets and objects: GetBucketAcl, PutBucketAcl, GetObjectAcl, PutObjectAcl, and
the owner and ACL properties of what CreateBucket, PutObject, CopyObject and CreateMultipartUpload make.

An ACL is set by a canned ACL (``x-amz-acl``), ``x-amz-grant-*`` headers or an AccessControlPolicy body
(``grants`` parses them); who may set it is ``access``'s to decide (the owner, or a WRITE_ACP grantee).

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

from aiohttp import web

from gridfs.directory.model import ObjectInfo
from gridfs.gateways.s3 import access, grants, xmlio
from gridfs.gateways.s3.context import ACL_PROP, Ctx, owner_of
from gridfs.gateways.s3.errors import S3Error


def owner_xml(ctx: Ctx, name: str = "") -> dict[str, str]:
    return grants.owner_element(name or (ctx.user.name if ctx.user else "anonymous"))


def object_owner_xml(ctx: Ctx, info: ObjectInfo) -> dict[str, str]:
    """The Owner of an object in a listing: its writer (see ``access.object_owner``)."""
    assert ctx.container is not None
    return grants.owner_element(access.object_owner(ctx.container, owner_of(ctx.gw, ctx.container), info.properties))


async def _subject(ctx: Ctx) -> tuple[str, list[grants.Grant], int | None]:
    """The owner and ACL of what the request names (its bucket, or its object), and the object's version."""
    assert ctx.container is not None
    bucket_owner = owner_of(ctx.gw, ctx.container)
    if not ctx.key:
        return bucket_owner, grants.load(ctx.container.properties.get(ACL_PROP), bucket_owner), None
    version = access.version_named(ctx.query)
    info = await ctx.run(lambda: ctx.gw.client.head(ctx.bucket, ctx.key, version=version))
    owner = access.object_owner(ctx.container, bucket_owner, info.properties)
    if access.Settings.of(ctx.container).acls_off:  # what ACL the object had is not in force
        return owner, grants.canned("private", owner), info.version
    return owner, grants.load(info.properties.get(ACL_PROP), owner), info.version


async def get_acl(ctx: Ctx) -> web.Response:
    owner, acl, _ = await _subject(ctx)
    return xmlio.response("AccessControlPolicy", grants.document(owner, acl))


async def put_acl(ctx: Ctx) -> web.Response:
    assert ctx.container is not None
    bucket_owner = owner_of(ctx.gw, ctx.container)
    owner, _, version = await _subject(ctx)
    body = (await xmlio.read(ctx.request)).strip()
    acl = access.requested_acl(ctx, owner, bucket_owner, on_object=bool(ctx.key))
    if acl is not None and body:
        raise S3Error("UnexpectedContent", "This request does not support content: an ACL is set by headers or "
                      "by an AccessControlPolicy body, not both")
    if acl is None:
        if not body:
            raise S3Error("MissingSecurityHeader", "Your request was missing a required header: x-amz-acl, "
                          "x-amz-grant-* or an AccessControlPolicy body")
        acl = grants.from_document(xmlio.parse(body, "AccessControlPolicy"), owner)
    access.check_new_acl(ctx.container, owner, acl)
    await check_grantees(ctx, acl, owner)
    if not ctx.key:
        props = {**ctx.container.properties, ACL_PROP: grants.dump(acl)}
        await ctx.run(ctx.gw.client.set_bucket_properties, ctx.bucket, props)
    else:
        await ctx.run(lambda: ctx.gw.client.set_properties(ctx.bucket, ctx.key, {ACL_PROP: grants.dump(acl)},
                                                           version=version))
    return web.Response()


async def check_grantees(ctx: Ctx, acl: list[grants.Grant], owner: str) -> None:
    """InvalidArgument when a grant names no S3 user (the owner and the requester are known)."""
    named = {who for kind, who, _ in acl if kind == "id"} - {owner, ctx.user.name if ctx.user else ""}
    if unknown := await access.unknown_users(ctx, named):
        first = sorted(unknown)[0]
        raise S3Error("InvalidArgument", f"Invalid id: {first!r} is no user", ArgumentName="CanonicalUser/ID",
                      ArgumentValue=first)


async def new_object_props(ctx: Ctx) -> dict[str, str]:
    """The owner and ACL properties of an object the request writes (PutObject, CopyObject, CreateMultipartUpload)."""
    assert ctx.container is not None
    props = access.new_object_acl(ctx, ctx.container, owner_of(ctx.gw, ctx.container))
    owner = props[access.OWNER_PROP]
    await check_grantees(ctx, grants.load(props[ACL_PROP], owner), owner)
    return props


async def new_bucket_props(ctx: Ctx) -> dict[str, str]:
    """The ACL and ObjectOwnership properties of a bucket the request creates (its owner: the requester)."""
    assert ctx.user is not None
    props = access.new_bucket_acl(ctx, ctx.user.name)
    await check_grantees(ctx, grants.load(props[ACL_PROP], ctx.user.name), ctx.user.name)
    return props
