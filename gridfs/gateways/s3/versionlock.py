"""An object version's ``?retention`` and ``?legal-hold``: GetObjectRetention, PutObjectRetention,
GetObjectLegalHold, PutObjectLegalHold.

Stored as the version's lock properties; the directory refuses a change that shortens or removes a
running retention (COMPLIANCE always, GOVERNANCE unless the request bypasses it), which answers
AccessDenied here as in S3.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

from aiohttp import web

from gridfs.directory import retention
from gridfs.gateways.s3 import objectlock, xmlio
from gridfs.gateways.s3.context import Ctx, load_bucket
from gridfs.gateways.s3.errors import S3Error
from gridfs.gateways.s3.objects import parse_version, version_id


async def dispatch(ctx: Ctx) -> web.Response:
    await load_bucket(ctx)
    hold = "legal-hold" in ctx.query
    method = ctx.request.method
    if method not in ("GET", "PUT"):
        raise S3Error("MethodNotAllowed", "The specified method is not allowed against this resource.")
    action = ("s3:GetObject" if method == "GET" else "s3:PutObject") + ("LegalHold" if hold else "Retention")
    objectlock.require(ctx, action)
    if not objectlock.lock_enabled(ctx):
        raise objectlock.missing_configuration()
    version = parse_version(ctx)
    info = await ctx.run(lambda: ctx.gw.client.head(ctx.bucket, ctx.key, version=version))
    if method == "GET":
        return get_hold(info.properties) if hold else get_retention(info.properties)
    body = await xmlio.read(ctx.request)
    changes = parse_hold(body) if hold else parse_retention(body)
    bypass = objectlock.bypass(ctx)
    await ctx.run(lambda: ctx.gw.client.set_properties(ctx.bucket, ctx.key, changes, version=info.version,
                                                       bypass_governance=bypass))
    headers = {"x-amz-version-id": vid} if (vid := version_id(ctx, version)) else None
    return web.Response(headers=headers)


def _none_found() -> S3Error:
    return S3Error("NoSuchObjectLockConfiguration", "The specified object does not have a ObjectLock configuration")


def get_retention(props: dict[str, str]) -> web.Response:
    if props.get(retention.MODE_PROP) not in retention.MODES:
        raise _none_found()
    return xmlio.response("Retention", {"Mode": props[retention.MODE_PROP],
                                        "RetainUntilDate": props[retention.UNTIL_PROP]})


def get_hold(props: dict[str, str]) -> web.Response:
    if not props.get(retention.HOLD_PROP):
        raise _none_found()
    return xmlio.response("LegalHold", {"Status": props[retention.HOLD_PROP]})


def parse_retention(body: bytes) -> dict[str, str | None]:
    """A <Retention>: Mode and RetainUntilDate, both or neither (neither removes the retention)."""
    doc = xmlio.parse(body, "Retention")
    mode, until = xmlio.text(doc, "Mode"), xmlio.text(doc, "RetainUntilDate")
    if not mode and not until:
        return {retention.MODE_PROP: None, retention.UNTIL_PROP: None}
    if not mode or not until:
        raise S3Error("MalformedXML", "A Retention holds both a Mode and a RetainUntilDate")
    if mode not in retention.MODES:
        raise S3Error("MalformedXML", "Mode is GOVERNANCE or COMPLIANCE")
    return {retention.MODE_PROP: mode, retention.UNTIL_PROP: objectlock.check_until(until, "RetainUntilDate")}


def parse_hold(body: bytes) -> dict[str, str | None]:
    status = xmlio.text(xmlio.parse(body, "LegalHold"), "Status")
    if status not in ("ON", "OFF"):
        raise S3Error("MalformedXML", "LegalHold's Status is ON or OFF")
    return {retention.HOLD_PROP: status}
