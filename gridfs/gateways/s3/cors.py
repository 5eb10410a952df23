"""CORS: the preflight answer and the headers added to answers, from a bucket's rules.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import TYPE_CHECKING

from aiohttp import web

from gridfs.common.errors import GridError
from gridfs.gateways.s3.errors import S3Error

if TYPE_CHECKING:
    from gridfs.directory.model import ContainerInfo
    from gridfs.gateways.s3.context import Ctx, Gateway

CORS_PROP = "s3.cors"
VARY = "Origin, Access-Control-Request-Headers, Access-Control-Request-Method"
HEADER_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def check_rule(rule: dict) -> None:
    """A CORSRule fit to be answered: at most one ``*`` in an AllowedOrigin or AllowedHeader (AWS's rule), and
    ExposeHeader names that are HTTP tokens, since they are sent back as a header's value (a line break in
    one, which XML can carry, would have broken every answer of the bucket)."""
    for name in ("AllowedOrigin", "AllowedHeader"):
        for value in rule.get(name, []):
            if value.count("*") > 1 or any(c < " " or c == "\x7f" for c in value):
                raise S3Error("InvalidRequest", f"{name} {value!r} can not have more than one wildcard or a "
                              "control character")
    for value in rule.get("ExposeHeader", []):
        if not HEADER_TOKEN.fullmatch(value):
            raise S3Error("InvalidRequest", f"ExposeHeader {value!r} is not an HTTP header name")


def _wildcard_match(pattern: str, value: str) -> bool:
    """A CORS pattern: at most one ``*``, standing for any characters (AWS's AllowedOrigin and AllowedHeader)."""
    head, star, tail = pattern.partition("*")
    if not star:
        return pattern == value
    return len(value) >= len(head) + len(tail) and value.startswith(head) and value.endswith(tail)


def _matching_rule(rules: list[dict], origin: str, method: str, headers: list[str] | None = None) -> dict | None:
    """The first rule allowing ``origin``, ``method`` and (a preflight's) request ``headers``, compared
    without regard to case as HTTP header names are."""
    for rule in rules:
        allowed_headers = [h.lower() for h in rule.get("AllowedHeader", [])]
        if method in rule.get("AllowedMethod", []) \
                and any(_wildcard_match(o, origin) for o in rule.get("AllowedOrigin", [])) \
                and all(any(_wildcard_match(a, h.lower()) for a in allowed_headers) for h in headers or []):
            return rule
    return None


def _rule_headers(rule: dict, origin: str) -> dict[str, str]:
    """What a matching rule answers, on a preflight and on the actual request alike."""
    headers = {"Access-Control-Allow-Origin": "*" if "*" in rule["AllowedOrigin"] else origin,
               "Access-Control-Allow-Methods": ", ".join(rule["AllowedMethod"])}
    if headers["Access-Control-Allow-Origin"] != "*":
        headers["Access-Control-Allow-Credentials"] = "true"  # as AWS: a named origin may send cookies
    if rule.get("ExposeHeader"):
        headers["Access-Control-Expose-Headers"] = ", ".join(rule["ExposeHeader"])
    if "MaxAgeSeconds" in rule:
        headers["Access-Control-Max-Age"] = str(rule["MaxAgeSeconds"])
    return headers


async def preflight(gw: Gateway, request: web.Request, bucket: str) -> web.Response:
    origin = request.headers.get("Origin", "")
    method = request.headers.get("Access-Control-Request-Method", "")
    if not bucket or not origin or not method:
        raise S3Error("InvalidRequest", "a CORS preflight needs a bucket, Origin and Access-Control-Request-Method")
    container = await asyncio.get_running_loop().run_in_executor(
        gw.pool, lambda: gw.client.bucket_info(bucket, stats=False))
    asked = request.headers.get("Access-Control-Request-Headers", "")
    asked_names = [h.strip() for h in asked.split(",") if h.strip()]
    rule = _matching_rule(json.loads(container.properties.get(CORS_PROP) or "[]"), origin, method, asked_names)
    if rule is None:
        raise S3Error("AccessDenied", "CORSResponse: This CORS request is not allowed.")
    headers = {**_rule_headers(rule, origin), "Vary": VARY}
    if asked:
        headers["Access-Control-Allow-Headers"] = asked
    return web.Response(headers=headers)


def add_headers(ctx: Ctx, response: web.StreamResponse, container: ContainerInfo | None = None) -> None:
    """The CORS headers of an actual request's answer (success or error): those of the first rule that
    allows its Origin and method, and ``Vary`` whenever the bucket has rules (the answer depends on Origin)."""
    container = container or ctx.container
    if container is None or response.prepared:
        return
    rules = json.loads(container.properties.get(CORS_PROP) or "[]")
    if not rules:
        return
    response.headers["Vary"] = VARY
    origin = ctx.headers.get("Origin")
    rule = _matching_rule(rules, origin, ctx.request.method) if origin else None
    if rule:
        response.headers.update(_rule_headers(rule, origin))


async def add_error_headers(ctx: Ctx, response: web.StreamResponse) -> None:
    """``add_headers`` for an error answer, also when the request failed before its bucket was loaded (a
    refused user, an anonymous caller): the rules are the bucket's, whoever asks, as a preflight answers
    them to anyone. Looked up only for a request with an Origin, and never an error of its own."""
    container = ctx.container
    if container is None and ctx.bucket and ctx.headers.get("Origin"):
        try:
            container = await ctx.run(lambda: ctx.gw.client.bucket_info(ctx.bucket, stats=False))
        except (GridError, ConnectionError, ValueError):  # no such bucket, a bad name, the grid away: no CORS
            return
    add_headers(ctx, response, container)
