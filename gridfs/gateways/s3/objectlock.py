"""Object lock at the S3 gateway: the bucket's ``?object-lock`` configuration, lock headers on writes and
reads, the governance bypass, and who may do what.

The rules themselves are enforced by the directory (``gridfs.directory.retention``) on every path that
removes a version or weakens a retention; here they are read from and written to S3's XML and headers,
and the rights are checked. ``allowed`` is the one place that says whether a request may use an object
lock action (today: the bucket owner may; bucket policies plug in there).

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from gridfs.common import errors as grid_errors
from gridfs.directory import retention
from gridfs.directory.model import ObjectInfo
from gridfs.gateways.s3 import xmlio
from gridfs.gateways.s3.context import Ctx, owner_of, set_bucket_props
from gridfs.gateways.s3.errors import S3Error

MODE_HEADER, UNTIL_HEADER, HOLD_HEADER = ("x-amz-object-lock-mode", "x-amz-object-lock-retain-until-date",
                                          "x-amz-object-lock-legal-hold")
BYPASS_HEADER = "x-amz-bypass-governance-retention"
BUCKET_ENABLED_HEADER = "x-amz-bucket-object-lock-enabled"


def owner_allowed(ctx: Ctx, action: str) -> bool:
    """The default rule: object lock actions (s3:PutObjectRetention, s3:BypassGovernanceRetention...) are the
    bucket owner's."""
    container = ctx.container
    return ctx.user is not None and container is not None and owner_of(ctx.gw, container) == ctx.user.name


# Whether a request may use an object lock action: the access-control layer (bucket policies) replaces this.
allowed: Callable[[Ctx, str], bool] = owner_allowed


def require(ctx: Ctx, action: str) -> None:
    if not allowed(ctx, action):
        raise S3Error("AccessDenied", "Access Denied")


def bypass(ctx: Ctx) -> bool:
    """Whether this request bypasses GOVERNANCE retention: it says so, and has the right to."""
    if ctx.headers.get(BYPASS_HEADER, "").strip().lower() != "true":
        return False
    require(ctx, "s3:BypassGovernanceRetention")
    return True


def lock_enabled(ctx: Ctx) -> bool:
    return ctx.container is not None and retention.lock_enabled(ctx.container.properties)


def missing_configuration() -> S3Error:
    return S3Error("InvalidRequest", "Bucket is missing Object Lock Configuration")


# -- values as S3 sends them --------------------------------------------------------------------


def check_mode(mode: str) -> str:
    if mode not in retention.MODES:
        raise S3Error("InvalidArgument", f"Unknown wormMode directive: {mode!r}", ArgumentName=MODE_HEADER)
    return mode


def check_until(value: str, name: str = UNTIL_HEADER) -> str:
    """A retain-until date in the future, normalized (ISO 8601, UTC, milliseconds)."""
    try:
        when = retention.parse_until(value)
    except grid_errors.BadRequest:
        raise S3Error("InvalidArgument", "The retain until date must be an ISO 8601 date and time",
                      ArgumentName=name) from None
    if when.timestamp() <= time.time():
        raise S3Error("InvalidArgument", "The retain until date must be in the future!", ArgumentName=name)
    return retention.format_until(when)


def check_hold(status: str, name: str = HOLD_HEADER) -> str:
    if status not in ("ON", "OFF"):
        raise S3Error("InvalidArgument", "Legal Hold must be either of 'ON' or 'OFF'", ArgumentName=name)
    return status


# -- writes: PutObject, CopyObject, CreateMultipartUpload ---------------------------------------


def props_from_headers(ctx: Ctx, inherited: dict[str, str] | None = None) -> dict[str, str]:
    """The object lock properties a new version gets from the request's headers.

    ``inherited`` (a copy's source properties) loses its lock settings, as in S3: a copy is locked only by
    its own headers or the bucket's default.
    """
    out = {k: v for k, v in (inherited or {}).items() if k not in retention.OBJECT_PROPS}
    mode, until, hold = (ctx.headers.get(h) for h in (MODE_HEADER, UNTIL_HEADER, HOLD_HEADER))
    if mode is None and until is None and hold is None:
        return out
    if not lock_enabled(ctx):
        raise missing_configuration()
    if (mode is None) != (until is None):
        raise S3Error("InvalidArgument", "x-amz-object-lock-retain-until-date and x-amz-object-lock-mode must "
                      "both be supplied")
    if mode is not None and until is not None:
        require(ctx, "s3:PutObjectRetention")
        out[retention.MODE_PROP], out[retention.UNTIL_PROP] = check_mode(mode), check_until(until)
    if hold is not None:
        require(ctx, "s3:PutObjectLegalHold")
        out[retention.HOLD_PROP] = check_hold(hold)
    return out


def headers_of(ctx: Ctx, info: ObjectInfo) -> dict[str, str]:
    """HEAD and GET answers: the version's lock, as S3 reports it to those who may read it (not to the
    readers of a public object)."""
    props, out = info.properties, {}
    if props.get(retention.MODE_PROP) in retention.MODES and props.get(retention.UNTIL_PROP) \
            and allowed(ctx, "s3:GetObjectRetention"):
        out[MODE_HEADER] = props[retention.MODE_PROP]
        out[UNTIL_HEADER] = props[retention.UNTIL_PROP]
    if props.get(retention.HOLD_PROP) and allowed(ctx, "s3:GetObjectLegalHold"):
        out[HOLD_HEADER] = props[retention.HOLD_PROP]
    return out


def new_bucket(ctx: Ctx) -> tuple[dict[str, str], bool]:
    """CreateBucket: the properties and versioning of a bucket made with or without object lock."""
    raw = ctx.headers.get(BUCKET_ENABLED_HEADER)
    if raw is None or raw.strip().lower() == "false":
        return {}, False
    if raw.strip().lower() != "true":
        raise S3Error("InvalidArgument", f"{BUCKET_ENABLED_HEADER} must be true or false",
                      ArgumentName=BUCKET_ENABLED_HEADER)
    return {retention.ENABLED_PROP: "Enabled"}, True  # object lock turns versioning on, for good


# -- the bucket's configuration: GET and PUT ?object-lock ---------------------------------------


async def bucket_dispatch(ctx: Ctx) -> web.Response:
    require(ctx, "s3:GetBucketObjectLockConfiguration" if ctx.request.method == "GET"
            else "s3:PutBucketObjectLockConfiguration")
    if ctx.request.method == "GET":
        return get_configuration(ctx)
    if ctx.request.method == "PUT":
        return await put_configuration(ctx)
    raise S3Error("MethodNotAllowed", "The specified method is not allowed against this resource.")


def get_configuration(ctx: Ctx) -> web.Response:
    assert ctx.container is not None
    props = ctx.container.properties
    if not retention.lock_enabled(props):
        raise S3Error("ObjectLockConfigurationNotFoundError", "Object Lock configuration does not exist for this "
                      "bucket", BucketName=ctx.bucket)
    content: dict[str, Any] = {"ObjectLockEnabled": "Enabled"}
    if props.get(retention.DEFAULT_PROP):
        rule = json.loads(props[retention.DEFAULT_PROP])
        unit = "Days" if "days" in rule else "Years"
        content["Rule"] = {"DefaultRetention": {"Mode": rule["mode"], unit: rule[unit.lower()]}}
    return xmlio.response("ObjectLockConfiguration", content)


def _count(el: Any, name: str) -> int | None:
    raw = xmlio.text(el, name)
    if el.find(name) is None:
        return None
    if not (raw.isascii() and raw.isdigit()) or int(raw) <= 0:
        raise S3Error("InvalidArgument", "Default retention period must be a positive integer value",
                      ArgumentName=name)
    return int(raw)


async def put_configuration(ctx: Ctx) -> web.Response:
    assert ctx.container is not None
    doc = xmlio.parse(await xmlio.read(ctx.request), "ObjectLockConfiguration")
    if xmlio.text(doc, "ObjectLockEnabled") != "Enabled":
        raise S3Error("MalformedXML", "ObjectLockEnabled must be Enabled")
    if ctx.container.versioning != "enabled":
        raise S3Error("InvalidBucketState", "Versioning must be 'Enabled' on the bucket to apply a Object Lock "
                      "configuration")
    default: str | None = None
    rule = doc.find("Rule")
    if rule is not None:
        found = rule.find("DefaultRetention")
        if found is None:
            raise S3Error("MalformedXML", "a Rule holds a DefaultRetention")
        mode = xmlio.text(found, "Mode")
        if mode not in retention.MODES:
            raise S3Error("MalformedXML", "DefaultRetention's Mode is GOVERNANCE or COMPLIANCE")
        days, years = _count(found, "Days"), _count(found, "Years")
        if (days is None) == (years is None):
            raise S3Error("MalformedXML", "DefaultRetention takes Days or Years, one of them")
        if (days or 0) > retention.MAX_YEARS * 365 or (years or 0) > retention.MAX_YEARS:
            raise S3Error("InvalidArgument", "Default retention period is too large", ArgumentName="Days")
        default = json.dumps({"mode": mode, "days": days} if days else {"mode": mode, "years": years})
    return await set_bucket_props(ctx, {retention.ENABLED_PROP: "Enabled", retention.DEFAULT_PROP: default})

