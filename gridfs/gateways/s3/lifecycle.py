"""A bucket's ``?lifecycle``: PutBucketLifecycleConfiguration, GetBucketLifecycleConfiguration,
DeleteBucketLifecycle.

The XML is checked as S3 checks it (MalformedXML for a document of the wrong shape, InvalidArgument for
a value out of range, InvalidRequest for a rule S3 does not allow) and kept as the bucket's rules
(``gridfs.lifecycle.rules``); the lifecycle worker executes them. Transitions to other storage classes
are not implemented (501), never accepted and ignored. Reading and changing the rules is the bucket
owner's.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from gridfs.gateways.s3 import xmlio
from gridfs.gateways.s3.context import Ctx, owner_of, set_bucket_props
from gridfs.gateways.s3.errors import S3Error
from gridfs.lifecycle.rules import LIFECYCLE_PROP, MAX_RULES, Rule, dump, load

RULE_ELEMENTS = {"ID", "Filter", "Prefix", "Status", "Expiration", "NoncurrentVersionExpiration",
                 "AbortIncompleteMultipartUpload", "Transition", "NoncurrentVersionTransition"}
MAX_ID = 255
MAX_NEWER = 100
MAX_SIZE = 5 * 2**40  # S3's largest object


async def dispatch(ctx: Ctx) -> web.Response:
    assert ctx.container is not None
    if ctx.user is None or owner_of(ctx.gw, ctx.container) != ctx.user.name:
        raise S3Error("AccessDenied", "Access Denied")
    method = ctx.request.method
    if method == "GET":
        return get_configuration(ctx)
    if method == "PUT":
        rules = parse(await xmlio.read(ctx.request))
        return await set_bucket_props(ctx, {LIFECYCLE_PROP: dump(rules)})
    if method == "DELETE":
        return await set_bucket_props(ctx, {LIFECYCLE_PROP: None}, status=204)
    raise S3Error("MethodNotAllowed", "The specified method is not allowed against this resource.")


# -- XML in -------------------------------------------------------------------------------------


def _malformed(why: str) -> S3Error:
    return S3Error("MalformedXML", "The XML you provided was not well-formed or did not validate against our "
                   f"published schema: {why}")


def _positive(el: Any, name: str, what: str, low: int = 1, high: int = 2**31 - 1) -> int | None:
    """The integer in ``el``'s child ``name`` (None when absent), from ``low`` to ``high``."""
    found = el.find(name)
    return None if found is None else _number(found, what, low, high)


def _number(found: Any, what: str, low: int, high: int) -> int:
    name, raw = found.tag, (found.text or "").strip()
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise S3Error("InvalidArgument", f"'{name}' for {what} must be an integer from {low} to {high}",
                      ArgumentName=name, ArgumentValue=raw)
    return int(raw)


def _tag(el: Any) -> tuple[str, str]:
    key = el.findtext("Key")
    if not key or len(key) > 128 or len(el.findtext("Value") or "") > 256:
        raise S3Error("InvalidTag", "A tag has a key of 1 to 128 characters and a value of up to 256")
    return key, el.findtext("Value") or ""


def _filter(rule: Rule, el: Any) -> None:
    """<Filter>: nothing, one condition, or <And> of several."""
    children = list(el)
    if len(children) > 1:
        raise _malformed("a Filter holds one condition; several go in an And")
    if not children:
        return
    cond = children[0]
    parts = list(cond) if cond.tag == "And" else [cond]
    if cond.tag == "And" and not parts:
        raise _malformed("an And holds conditions")
    for part in parts:
        if part.tag == "Prefix":
            rule.prefix = part.text or ""
        elif part.tag == "Tag":
            key, value = _tag(part)
            if key in rule.tags:
                raise S3Error("InvalidRequest", "Duplicate Tag Keys are not allowed.")
            rule.tags[key] = value
        elif part.tag in ("ObjectSizeGreaterThan", "ObjectSizeLessThan"):
            size = _number(part, "a Filter", 0, MAX_SIZE)
            if part.tag == "ObjectSizeGreaterThan":
                rule.size_gt = size
            else:
                rule.size_lt = size
        else:
            raise _malformed(f"unknown filter condition <{part.tag}>")
    if rule.size_gt is not None and rule.size_lt is not None and rule.size_gt >= rule.size_lt:
        raise S3Error("InvalidArgument", "ObjectSizeGreaterThan must be less than ObjectSizeLessThan")


def _midnight(raw: str) -> str:
    try:
        when = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
        when = when.replace(tzinfo=when.tzinfo or UTC).astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: year 1 at +01:00 is out of range in UTC
        raise S3Error("InvalidArgument", f"'Date' {raw!r} is not an ISO 8601 date", ArgumentName="Date") from None
    if (when.hour, when.minute, when.second, when.microsecond) != (0, 0, 0, 0):
        raise S3Error("InvalidArgument", "'Date' must be at midnight GMT", ArgumentName="Date")
    return when.isoformat()


def _expiration(rule: Rule, el: Any) -> None:
    days, date = _positive(el, "Days", "the Expiration action"), el.findtext("Date")
    marker = (el.findtext("ExpiredObjectDeleteMarker") or "").strip()
    if marker not in ("", "true", "false"):
        raise _malformed("ExpiredObjectDeleteMarker is true or false")
    given = [x for x in (days is not None, date is not None, bool(marker)) if x]
    if len(given) != 1:
        raise _malformed("an Expiration holds one of Days, Date and ExpiredObjectDeleteMarker")
    rule.expire_days = days
    rule.expire_date = _midnight(date) if date is not None else None
    rule.expired_markers = marker == "true"


def parse_rule(el: Any) -> Rule:
    unknown = {child.tag for child in el} - RULE_ELEMENTS
    if unknown:
        raise _malformed(f"unknown element <{sorted(unknown)[0]}> in a Rule")
    if el.find("Transition") is not None or el.find("NoncurrentVersionTransition") is not None:
        raise S3Error("NotImplemented", "lifecycle transitions to other storage classes are not implemented")
    rule = Rule(id=el.findtext("ID") or "")
    if len(rule.id) > MAX_ID:
        raise S3Error("InvalidArgument", f"ID length should not exceed allowed limit of {MAX_ID}", ArgumentName="ID")
    status = xmlio.text(el, "Status")
    if status not in ("Enabled", "Disabled"):
        raise _malformed("a Rule's Status is Enabled or Disabled")
    rule.enabled = status == "Enabled"
    filter_el, legacy = el.find("Filter"), el.find("Prefix")
    if filter_el is not None and legacy is not None:
        raise _malformed("a Rule has a Filter or a Prefix, not both")
    if legacy is not None:
        rule.prefix, rule.form = legacy.text or "", "prefix"
    elif filter_el is not None:
        _filter(rule, filter_el)
    if (found := el.find("Expiration")) is not None:
        _expiration(rule, found)
    if (found := el.find("NoncurrentVersionExpiration")) is not None:
        rule.noncurrent_days = _positive(found, "NoncurrentDays", "the NoncurrentVersionExpiration action")
        rule.newer_noncurrent = _positive(found, "NewerNoncurrentVersions", "the NoncurrentVersionExpiration action",
                                          high=MAX_NEWER)
        if rule.noncurrent_days is None:
            raise _malformed("a NoncurrentVersionExpiration holds NoncurrentDays")
    if (found := el.find("AbortIncompleteMultipartUpload")) is not None:
        rule.abort_days = _positive(found, "DaysAfterInitiation", "the AbortIncompleteMultipartUpload action")
        if rule.abort_days is None:
            raise _malformed("an AbortIncompleteMultipartUpload holds DaysAfterInitiation")
        if rule.tags or rule.size_gt is not None or rule.size_lt is not None:
            raise S3Error("InvalidRequest", "Tag-based and size-based filters cannot be used with the "
                          "AbortIncompleteMultipartUpload action")
    if rule.expired_markers and rule.tags:
        raise S3Error("InvalidRequest", "ExpiredObjectDeleteMarker cannot be specified with a tag-based filter")
    if not (rule.expire_days or rule.expire_date or rule.expired_markers or rule.noncurrent_days
            or rule.abort_days):
        raise S3Error("InvalidRequest", "At least one action needs to be specified in a rule")
    return rule


def parse(body: bytes) -> list[Rule]:
    doc = xmlio.parse(body, "LifecycleConfiguration")
    if any(child.tag != "Rule" for child in doc):
        raise _malformed("a LifecycleConfiguration holds Rules only")
    elements = doc.findall("Rule")
    if not 1 <= len(elements) <= MAX_RULES:
        raise _malformed(f"a LifecycleConfiguration holds 1 to {MAX_RULES} rules")
    rules = [parse_rule(el) for el in elements]
    ids = [r.id for r in rules if r.id]
    if len(ids) != len(set(ids)):
        raise S3Error("InvalidArgument", "Rule ID must be unique. Found same ID for more than one rule",
                      ArgumentName="ID")
    for n, rule in enumerate(rules):
        rule.id = rule.id or f"rule-{n + 1}"  # as S3 names a rule sent without one
    return rules


# -- XML out ------------------------------------------------------------------------------------


def _filter_xml(rule: Rule) -> dict[str, Any]:
    conditions: list[tuple[str, Any]] = []
    if rule.prefix or not (rule.tags or rule.size_gt is not None or rule.size_lt is not None):
        conditions.append(("Prefix", rule.prefix))
    conditions += [("Tag", {"Key": k, "Value": v}) for k, v in rule.tags.items()]
    if rule.size_gt is not None:
        conditions.append(("ObjectSizeGreaterThan", rule.size_gt))
    if rule.size_lt is not None:
        conditions.append(("ObjectSizeLessThan", rule.size_lt))
    if len(conditions) == 1:
        return {conditions[0][0]: conditions[0][1]}
    grouped: dict[str, Any] = {}
    for name, value in conditions:
        if name == "Tag":
            grouped.setdefault("Tag", []).append(value)
        else:
            grouped[name] = value
    return {"And": grouped}


def rule_xml(rule: Rule) -> dict[str, Any]:
    out: dict[str, Any] = {"ID": rule.id}
    if rule.form == "prefix":
        out["Prefix"] = rule.prefix
    else:
        out["Filter"] = _filter_xml(rule)
    out["Status"] = "Enabled" if rule.enabled else "Disabled"
    if rule.expire_days:
        out["Expiration"] = {"Days": rule.expire_days}
    elif rule.expire_date:
        out["Expiration"] = {"Date": xmlio.iso(datetime.fromisoformat(rule.expire_date).timestamp())}
    elif rule.expired_markers:
        out["Expiration"] = {"ExpiredObjectDeleteMarker": True}
    if rule.noncurrent_days:
        out["NoncurrentVersionExpiration"] = {"NoncurrentDays": rule.noncurrent_days,
                                              "NewerNoncurrentVersions": rule.newer_noncurrent}
    if rule.abort_days:
        out["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": rule.abort_days}
    return out


def get_configuration(ctx: Ctx) -> web.Response:
    assert ctx.container is not None
    rules = load(ctx.container.properties.get(LIFECYCLE_PROP))
    if not rules:
        raise S3Error("NoSuchLifecycleConfiguration", "The lifecycle configuration does not exist",
                      BucketName=ctx.bucket)
    return xmlio.response("LifecycleConfiguration", {"Rule": [rule_xml(r) for r in rules]})

