"""The bucket settings of access control: the bucket policy (``?policy``, ``?policyStatus``), the
PublicAccessBlock (``?publicAccessBlock``) and ObjectOwnership (``?ownershipControls``); each kept in a
bucket property, changed by the bucket owner only, and enforced by ``access``.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from aiohttp import web

from gridfs.gateways.s3 import access, grants, policy, xmlio
from gridfs.gateways.s3.context import ACL_PROP, Ctx, owner_of, set_bucket_props
from gridfs.gateways.s3.errors import S3Error

SUBRESOURCES = ("policy", "policyStatus", "publicAccessBlock", "ownershipControls")


def _not_found(code: str, message: str) -> S3Error:
    error = S3Error(code, message)
    error.status = 404
    return error


def _props(ctx: Ctx) -> dict[str, str]:
    assert ctx.container is not None
    return ctx.container.properties


# -- policy ----------------------------------------------------------------------------------------------------


def _stored_policy(ctx: Ctx) -> str:
    text = _props(ctx).get(policy.POLICY_PROP)
    if not text:
        error = _not_found("NoSuchBucketPolicy", "The bucket policy does not exist")
        error.extra["BucketName"] = ctx.bucket
        raise error
    return text


async def get_policy(ctx: Ctx) -> web.Response:
    return web.Response(body=_stored_policy(ctx).encode(), content_type="application/json")


async def put_policy(ctx: Ctx) -> web.Response:
    try:
        text = (await xmlio.read(ctx.request)).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise policy.malformed("Policies must be valid JSON in UTF-8") from exc
    parsed = policy.parse(text, ctx.bucket)
    assert ctx.container is not None
    if access.Settings.of(ctx.container).block_public_policy and parsed.public:
        raise access.denied()
    if unknown := await access.unknown_users(ctx, parsed.users - {owner_of(ctx.gw, ctx.container)}):
        raise policy.malformed(f"Invalid principal in policy: {sorted(unknown)[0]!r} is no user")
    return await set_bucket_props(ctx, {policy.POLICY_PROP: text}, status=204)


async def delete_policy(ctx: Ctx) -> web.Response:
    return await set_bucket_props(ctx, {policy.POLICY_PROP: None}, status=204)


async def get_policy_status(ctx: Ctx) -> web.Response:
    public = policy.stored(_stored_policy(ctx), ctx.bucket).public
    return xmlio.response("PolicyStatus", {"IsPublic": public})


# -- PublicAccessBlock -------------------------------------------------------------------------------------------


async def get_public_access_block(ctx: Ctx) -> web.Response:
    text = _props(ctx).get(access.PUBLIC_ACCESS_BLOCK_PROP)
    if not text:
        raise _not_found("NoSuchPublicAccessBlockConfiguration", "The public access block configuration was not found")
    return xmlio.response("PublicAccessBlockConfiguration", json.loads(text))


async def put_public_access_block(ctx: Ctx) -> web.Response:
    doc = xmlio.parse(await xmlio.read(ctx.request), "PublicAccessBlockConfiguration")
    block = {}
    for name in access.BLOCKS:
        value = xmlio.text(doc, name, "false").lower()
        if value not in ("true", "false"):
            raise S3Error("MalformedXML", f"{name} must be true or false")
        block[name] = value == "true"
    return await set_bucket_props(ctx, {access.PUBLIC_ACCESS_BLOCK_PROP: json.dumps(block)})


async def delete_public_access_block(ctx: Ctx) -> web.Response:
    return await set_bucket_props(ctx, {access.PUBLIC_ACCESS_BLOCK_PROP: None}, status=204)


# -- ObjectOwnership --------------------------------------------------------------------------------------------


async def get_ownership(ctx: Ctx) -> web.Response:
    ownership = _props(ctx).get(access.OWNERSHIP_PROP)
    if not ownership:
        raise _not_found("OwnershipControlsNotFoundError", "The bucket ownership controls were not found")
    return xmlio.response("OwnershipControls", {"Rule": {"ObjectOwnership": ownership}})


async def put_ownership(ctx: Ctx) -> web.Response:
    doc = xmlio.parse(await xmlio.read(ctx.request), "OwnershipControls")
    rules = doc.findall("Rule")
    ownership = xmlio.text(rules[0], "ObjectOwnership") if len(rules) == 1 else ""
    if ownership not in access.OWNERSHIPS:
        raise S3Error("MalformedXML", f"OwnershipControls takes one Rule whose ObjectOwnership is one of "
                      f"{', '.join(access.OWNERSHIPS)}")
    assert ctx.container is not None
    owner = owner_of(ctx.gw, ctx.container)
    if ownership == access.ENFORCED:
        access.check_enforceable(grants.load(_props(ctx).get(ACL_PROP), owner), owner)
    return await set_bucket_props(ctx, {access.OWNERSHIP_PROP: ownership})


async def delete_ownership(ctx: Ctx) -> web.Response:
    return await set_bucket_props(ctx, {access.OWNERSHIP_PROP: None}, status=204)


HANDLERS: dict[tuple[str, str], Callable[[Ctx], Awaitable[web.Response]]] = {
    ("policy", "GET"): get_policy, ("policy", "PUT"): put_policy, ("policy", "DELETE"): delete_policy,
    ("policyStatus", "GET"): get_policy_status,
    ("publicAccessBlock", "GET"): get_public_access_block, ("publicAccessBlock", "PUT"): put_public_access_block,
    ("publicAccessBlock", "DELETE"): delete_public_access_block,
    ("ownershipControls", "GET"): get_ownership, ("ownershipControls", "PUT"): put_ownership,
    ("ownershipControls", "DELETE"): delete_ownership,
}


def handles(ctx: Ctx) -> bool:
    return any(sub in ctx.query for sub in SUBRESOURCES)


async def dispatch(ctx: Ctx) -> web.Response:
    """A request on one of SUBRESOURCES of a bucket already loaded (and authorized)."""
    sub = next(s for s in SUBRESOURCES if s in ctx.query)
    handler = HANDLERS.get((sub, ctx.request.method))
    if handler is None:
        raise S3Error("MethodNotAllowed", "The specified method is not allowed against this resource.")
    return await handler(ctx)
