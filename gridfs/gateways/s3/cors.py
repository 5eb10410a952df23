"""CORS: the preflight answer and the headers added to answers, from a bucket's rules.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

from aiohttp import web

from gridfs.gateways.s3.errors import S3Error

if TYPE_CHECKING:
    from gridfs.gateways.s3.context import Ctx, Gateway

CORS_PROP = "s3.cors"


def _matching_rule(rules: list[dict], origin: str, method: str) -> dict | None:
    for rule in rules:
        origins = rule.get("AllowedOrigin", [])
        if method in rule.get("AllowedMethod", []) and any(
            o == "*" or o == origin or (o.startswith("*") and origin.endswith(o[1:])) for o in origins
        ):
            return rule
    return None


async def preflight(gw: Gateway, request: web.Request, bucket: str) -> web.Response:
    origin = request.headers.get("Origin", "")
    method = request.headers.get("Access-Control-Request-Method", "")
    if not bucket or not origin or not method:
        raise S3Error("InvalidRequest", "a CORS preflight needs a bucket, Origin and Access-Control-Request-Method")
    container = await asyncio.get_running_loop().run_in_executor(
        gw.pool, lambda: gw.client.bucket_info(bucket, stats=False))
    rule = _matching_rule(json.loads(container.properties.get(CORS_PROP) or "[]"), origin, method)
    if rule is None:
        raise S3Error("AccessDenied", "CORSResponse: This CORS request is not allowed.")
    headers = {"Access-Control-Allow-Origin": "*" if "*" in rule["AllowedOrigin"] else origin,
               "Access-Control-Allow-Methods": ", ".join(rule["AllowedMethod"]), "Vary": "Origin"}
    asked = request.headers.get("Access-Control-Request-Headers", "")
    if asked:
        headers["Access-Control-Allow-Headers"] = asked
    if "MaxAgeSeconds" in rule:
        headers["Access-Control-Max-Age"] = str(rule["MaxAgeSeconds"])
    return web.Response(headers=headers)


def add_headers(ctx: Ctx, response: web.StreamResponse) -> None:
    origin = ctx.headers.get("Origin")
    if not origin or ctx.container is None or response.prepared:
        return
    rule = _matching_rule(json.loads(ctx.container.properties.get(CORS_PROP) or "[]"), origin, ctx.request.method)
    if rule:
        response.headers["Access-Control-Allow-Origin"] = "*" if "*" in rule["AllowedOrigin"] else origin
        if rule.get("ExposeHeader"):
            response.headers["Access-Control-Expose-Headers"] = ", ".join(rule["ExposeHeader"])
