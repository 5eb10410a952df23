"""A bucket's notification configuration: PUT and GET ``?notification`` (NotificationConfiguration).

AWS's targets are SNS topics, SQS queues and Lambda functions, which the grid does not have. Here a
``TopicConfiguration`` (or ``QueueConfiguration``, ``CloudFunctionConfiguration``: they mean the same)
names a webhook endpoint the operator registered (``grid notify add-endpoint NAME URL``) by the ARN
``arn:gridfs:webhook:::NAME`` in its ``Topic`` (``Queue``, ``CloudFunction``); an S3 user never gives a
URL, so the grid calls out only where its operator said. The event agent delivers (``gridfs.events.notify``).

The document is checked whole before anything is kept, as AWS checks it: every event one the grid sends
(``s3:ObjectCreated:*`` / ``:Put`` / ``:Post`` / ``:Copy`` / ``:CompleteMultipartUpload``,
``s3:ObjectRemoved:*`` / ``:Delete`` / ``:DeleteMarkerCreated``; any other is InvalidArgument, never
accepted and ignored), every ARN one of ours naming a registered endpoint, filters of at most one
``prefix`` and one ``suffix`` rule, ids unique, and no two configurations that could both fire for one
event type and key (AWS's "Configurations overlap"). EventBridgeConfiguration is NotImplemented. An empty
configuration turns notifications off. Reading it takes s3:GetBucketNotification (the owner, or whom the
bucket policy allows), changing it the bucket owner, as every bucket setting.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import json
import secrets
import xml.etree.ElementTree as ET
from typing import Any

from aiohttp import web

from gridfs.events.notify import EVENT_NAMES, NOTIFICATION_PROP, Rule, rules_of
from gridfs.events.webhooks import name_of_arn
from gridfs.gateways.s3 import xmlio
from gridfs.gateways.s3.context import Ctx, set_bucket_props
from gridfs.gateways.s3.errors import S3Error

KINDS = {"TopicConfiguration": "Topic", "QueueConfiguration": "Queue", "CloudFunctionConfiguration": "CloudFunction"}
MAX_RULES = 100
MAX_ID = 255
MAX_FILTER_VALUE = 1024
CONCRETE = [n for n in EVENT_NAMES if not n.endswith(":*")]


def _invalid(message: str, name: str = "", value: str = "") -> S3Error:
    extra = {"ArgumentName": name, "ArgumentValue": value} if name else {}
    return S3Error("InvalidArgument", message, **extra)


def _filter(el: ET.Element) -> tuple[str, str]:
    """(prefix, suffix) of a configuration's ``Filter``: only S3Key rules named prefix or suffix, each once."""
    found: dict[str, str] = {}
    flt = el.find("Filter")
    if flt is None:
        return "", ""
    if [c.tag for c in flt] != ["S3Key"] * len(flt) or len(flt) > 1:
        raise S3Error("MalformedXML", "a notification Filter holds one S3Key element")
    key = flt.find("S3Key")
    for rule in key if key is not None else []:
        if rule.tag != "FilterRule":
            raise S3Error("MalformedXML", "an S3Key holds FilterRule elements")
        name, value = xmlio.text(rule, "Name").lower(), rule.findtext("Value") or ""
        if name not in ("prefix", "suffix"):
            raise _invalid("FilterRule name must be either prefix or suffix", "FilterRule", name)
        if name in found:
            raise _invalid(f"Cannot specify more than one {name} rule in a filter.", "FilterRule", name)
        if len(value) > MAX_FILTER_VALUE or "\x00" in value:
            raise _invalid(f"a FilterRule value is at most {MAX_FILTER_VALUE} characters", "FilterRule", name)
        found[name] = value
    return found.get("prefix", ""), found.get("suffix", "")


def _rule(el: ET.Element, kind: str, endpoint_exists: Any) -> Rule:
    allowed = {"Id", kind, "Event", "Filter"}
    if unknown := {c.tag for c in el} - allowed:
        raise S3Error("MalformedXML", f"unexpected <{sorted(unknown)[0]}> in a {el.tag}")
    rid = xmlio.text(el, "Id") or secrets.token_hex(16)  # AWS names a configuration sent without an id
    if len(rid) > MAX_ID:
        raise _invalid(f"a configuration Id is at most {MAX_ID} characters", "Id", rid[:64])
    events = tuple(dict.fromkeys((e.text or "").strip() for e in el.findall("Event")))
    if not events:
        raise S3Error("MalformedXML", f"a {el.tag} needs at least one Event")
    for event in events:
        if event not in EVENT_NAMES:
            raise _invalid("The event is not supported for notifications", "Event", event)
    arn = xmlio.text(el, kind)
    endpoint = name_of_arn(arn)
    if endpoint is None or not endpoint_exists(endpoint):
        raise _invalid("Unable to validate the following destination configurations", arn or kind, "Not a "
                       "registered webhook: a destination is arn:gridfs:webhook:::NAME of an endpoint the "
                       "operator added with `grid notify add-endpoint`")
    prefix, suffix = _filter(el)
    return Rule(rid, kind, arn, endpoint, events, prefix, suffix)


def _types(rule: Rule) -> set[str]:
    """The event names a rule fires for, its wildcards expanded."""
    return {n for n in CONCRETE if n in rule.events or n.rsplit(":", 1)[0] + ":*" in rule.events}


def _overlap(a: Rule, b: Rule) -> bool:
    """Could one event fire both: a common type, and keys that both prefixes and both suffixes allow."""
    return bool(_types(a) & _types(b)) and (a.prefix.startswith(b.prefix) or b.prefix.startswith(a.prefix)) \
        and (a.suffix.endswith(b.suffix) or b.suffix.endswith(a.suffix))


def parse_configuration(body: bytes, endpoint_exists: Any) -> list[Rule]:
    """The rules of a NotificationConfiguration document, or the S3 error that refuses it whole.
    ``endpoint_exists(name)``: whether the operator registered that webhook."""
    doc = xmlio.parse(body, "NotificationConfiguration")
    rules: list[Rule] = []
    for el in doc:
        if el.tag == "EventBridgeConfiguration":
            raise S3Error("NotImplemented", "EventBridge is not implemented: use a TopicConfiguration naming a "
                          "webhook (arn:gridfs:webhook:::NAME)")
        kind = KINDS.get(str(el.tag))
        if kind is None:
            raise S3Error("MalformedXML", f"unexpected <{el.tag}> in a NotificationConfiguration")
        rules.append(_rule(el, kind, endpoint_exists))
    if len(rules) > MAX_RULES:
        raise _invalid(f"a bucket takes at most {MAX_RULES} notification configurations")
    ids = [r.id for r in rules]
    if len(set(ids)) != len(ids):
        raise _invalid("Two notification configurations have the same Id", "Id")
    for i, a in enumerate(rules):
        for b in rules[i + 1:]:
            if _overlap(a, b):
                raise _invalid("Configurations overlap. Configurations on the same bucket cannot share a common "
                               "event type.", "Event")
    return rules


def _xml(rule: Rule) -> dict[str, Any]:
    out: dict[str, Any] = {"Id": rule.id, rule.kind: rule.arn, "Event": list(rule.events)}
    filters = [{"Name": n, "Value": v} for n, v in (("Prefix", rule.prefix), ("Suffix", rule.suffix)) if v]
    if filters:
        out["Filter"] = {"S3Key": {"FilterRule": filters}}
    return out


async def get_notification(ctx: Ctx) -> web.Response:
    assert ctx.container is not None
    content: dict[str, Any] = {}
    for rule in rules_of(ctx.container.properties):
        content.setdefault(f"{rule.kind}Configuration", []).append(_xml(rule))
    return xmlio.response("NotificationConfiguration", content)


async def put_notification(ctx: Ctx) -> web.Response:
    body = await xmlio.read(ctx.request)
    registered: dict[str, bool] = {}

    def exists(name: str) -> bool:
        if name not in registered:
            registered[name] = ctx.gw.webhooks.get(name) is not None
        return registered[name]

    # The endpoint lookups are directory calls: off the event loop, as every client call.
    rules = await ctx.run(parse_configuration, body, exists)
    value = json.dumps([r.to_json() for r in rules]) if rules else None
    return await set_bucket_props(ctx, {NOTIFICATION_PROP: value})
