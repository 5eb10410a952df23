"""Access control lists: the canned ACLs a bucket takes and the AccessControlPolicy documents answered.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

from aiohttp import web

from gridfs.gateways.s3 import xmlio
from gridfs.gateways.s3.context import ACL_PROP, Ctx, owner_of, set_bucket_props
from gridfs.gateways.s3.errors import S3Error

CANNED_ACLS = {"private", "public-read"}


def owner_xml(ctx: Ctx, name: str = "") -> dict[str, str]:
    who = name or (ctx.user.name if ctx.user else "anonymous")
    return {"ID": who, "DisplayName": who}


async def get_acl(ctx: Ctx) -> web.Response:
    assert ctx.container is not None
    owner = owner_xml(ctx, owner_of(ctx.gw, ctx.container))
    grants = [{"Grantee": owner, "Permission": "FULL_CONTROL"}]
    if ctx.container.properties.get(ACL_PROP) == "public-read":
        grants.append({"Grantee": {"URI": "http://acs.amazonaws.com/groups/global/AllUsers"}, "Permission": "READ"})
    return xmlio.response("AccessControlPolicy", {"Owner": owner, "AccessControlList": {"Grant": grants}})


async def put_acl(ctx: Ctx) -> web.Response:
    acl = ctx.headers.get("x-amz-acl")
    if not acl or (await xmlio.read(ctx.request)).strip():
        raise S3Error("NotImplemented", "only canned ACLs (x-amz-acl: private or public-read) are implemented")
    if acl not in CANNED_ACLS:
        raise S3Error("NotImplemented", f"canned ACL {acl!r} is not implemented")
    return await set_bucket_props(ctx, {ACL_PROP: acl})
