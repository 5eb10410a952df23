"""Routing and authentication of the S3 gateway: a request in, an operation module called.

Path-style addressing (``/bucket/key``), which every client here uses against a
custom endpoint. Each request is authenticated (SigV4 header, presigned query, or
anonymous), then dispatched on method, bucket, key and sub-resource to ``buckets``,
``objects``, ``multipart`` or ``cors``; what they share (the request context, bucket
loading, access checks) is in ``context``. Sub-resources S3 has and this gateway does not
implement answer 501 NotImplemented; none is accepted and ignored.

Before anything is dispatched: the path and query must be valid UTF-8 (a replaced byte
would make two keys one), query values carry no NUL and numbers are numbers, and every
body but the objects PutObject and UploadPart stream is read whole and checked against
the signed payload hash, ``Content-MD5`` and ``x-amz-checksum-*`` (which DeleteObjects and
the bucket settings must carry, as in AWS). A body that stops arriving for
``body_timeout`` seconds fails the request with RequestTimeout.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import asyncio
import secrets
from urllib.parse import parse_qsl, unquote

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from gridfs.common import errors as grid_errors
from gridfs.common import http as grid_http
from gridfs.common.metrics import public_paths
from gridfs.gateways.s3 import (
    attributes,
    bucket_list,
    buckets,
    cors,
    multipart,
    objects,
    post_upload,
    sigv4,
    versionlock,
    xmlio,
)
from gridfs.gateways.s3.checksums import check_body, has_digest_header
from gridfs.gateways.s3.context import Ctx, Gateway, Metrics, translate
from gridfs.gateways.s3.errors import RequestTimeout, S3Error
from gridfs.gateways.s3.users import User

# S3 sub-resources this gateway does not implement: answered 501, never ignored.
NOT_IMPLEMENTED = {
    "accelerate", "analytics", "intelligent-tiering", "inventory", "logging", "metrics", "replication",
    "requestPayment", "restore", "select", "torrent", "website", "session",
}
METRICS_PATH = "/_grid/metrics"  # Prometheus: behind the namespace secret unless [metrics] public, as /metrics
MAX_BODY = 8 * 1024 * 1024  # aiohttp's limit on a body read whole (XML documents); objects and parts stream
# Sub-resources whose PUT must carry Content-MD5 or an x-amz-checksum-* header (requestChecksumRequired
# in AWS's S3 API model), as must POST ?delete (DeleteObjects). Not notification: PutBucketNotificationConfiguration,
# unlike the PutBucketNotification it replaced, requires none, and boto3 sends none.
CHECKSUM_REQUIRED = {
    "acl", "cors", "encryption", "legal-hold", "lifecycle", "logging", "object-lock",
    "ownershipControls", "policy", "publicAccessBlock", "replication", "requestPayment", "retention", "tagging",
    "versioning", "website",
}
# Digests that tie a body to a signature sent with UNSIGNED-PAYLOAD, when they are signed headers.
BINDING_DIGESTS = ("content-md5", "x-amz-checksum-sha256", "x-amz-checksum-sha1")
INT_PARAMS = ("max-keys", "max-uploads", "max-parts", "part-number-marker", "partNumber")
MAX_INT_PARAM = 2**31 - 1


def error_response(exc: S3Error, resource: str, request_id: str, method: str) -> web.Response:
    headers = {**exc.headers, "x-amz-request-id": request_id, "Content-Type": "application/xml"}
    if exc.code == "NotModified":
        return web.Response(status=304, headers={"x-amz-request-id": request_id})
    body = b"" if method == "HEAD" else exc.xml(resource, request_id)
    return web.Response(status=exc.status, body=body, headers=headers)


def split_path(raw_path: str, host: str = "", domain: str = "") -> tuple[str, str]:
    """Bucket and key: from ``bucket.DOMAIN`` in the Host header when it names one, else path-style.

    Invalid UTF-8 is refused (InvalidURI, as AWS does), never replaced: ``%FF`` and ``%FE``
    would both have named the key U+FFFD.
    """
    raw_path, _, raw_query = raw_path.partition("?")
    try:
        path = unquote(raw_path, errors="strict")
        parse_qsl(raw_query, keep_blank_values=True, errors="strict")
    except UnicodeDecodeError as exc:
        raise S3Error("InvalidURI", "Couldn't parse the specified URI.") from exc
    hostname = host.rsplit(":", 1)[0].lower() if host else ""
    if domain and hostname.endswith("." + domain):
        return hostname[: -len(domain) - 1], path[1:] if path.startswith("/") else path
    bucket, _, key = path.lstrip("/").partition("/")
    return bucket, key


async def authenticate(request: web.Request, gw: Gateway) -> tuple[User | None, sigv4.SignedRequest | None,
                                                                     bytes | None]:
    headers = {k.lower(): v for k, v in request.headers.items()}
    query = dict(request.query)
    signed = sigv4.parse_request(headers, query)
    if signed is None:
        return None, None, None
    user = await asyncio.get_running_loop().run_in_executor(gw.pool, gw.users.lookup, signed.credential.access_key)
    if user is None:
        raise S3Error("InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.")
    raw_path, _, raw_query = request.raw_path.partition("?")
    if signed.legacy_v2:
        sigv4.verify_v2_presigned(signed, user.secret_key, request.method, raw_path, raw_query, headers)
        return user, signed, None
    key = sigv4.verify(signed, user.secret_key, request.method, raw_path, raw_query, headers)
    return user, signed, key


def check_query(query: dict[str, str]) -> None:
    """Query parameters as the directory may take them: no NUL anywhere, numbers that are numbers."""
    for name, value in query.items():
        if "\x00" in name or "\x00" in value:
            raise S3Error("InvalidArgument", f"the query parameter {name!r} contains a NUL character",
                          ArgumentName=name)
    for name in INT_PARAMS:
        value = query.get(name)
        if value is not None and not (value.isascii() and value.isdigit() and int(value) <= MAX_INT_PARAM):
            raise S3Error("InvalidArgument", f"Provided {name} not an integer or within integer range",
                          ArgumentName=name, ArgumentValue=value)


def streams_body(ctx: Ctx) -> bool:
    """PutObject and UploadPart: the body is the data, streamed and checked by ``objects.receive``; a browser
    POST upload's form, by ``post_upload``."""
    return (ctx.request.method == "PUT" and bool(ctx.key) and "x-amz-copy-source" not in ctx.headers
            and not set(ctx.query) & {"tagging", "acl", "retention", "legal-hold"}) or post_upload.is_form_post(ctx)


async def read_body(ctx: Ctx) -> None:
    """Read a whole request body and check it before anything is done with it.

    The body is kept by aiohttp (``request.read()`` answers it again to the operation). It
    must match the signed payload hash, ``Content-MD5`` and ``x-amz-checksum-*`` when sent;
    the operations AWS requires a digest of must carry one; and a header-signed body sent as
    UNSIGNED-PAYLOAD must be tied to the signature by a signed digest header. Otherwise a
    captured DeleteObjects or PutBucketCors could be replayed with another body.
    """
    request = ctx.request
    headers = {k.lower(): v for k, v in request.headers.items()}
    payload_hash = ctx.signed.payload_hash if ctx.signed else ""
    if payload_hash in sigv4.STREAMING and request.body_exists:
        raise S3Error("InvalidRequest", "aws-chunked bodies are taken by PutObject and UploadPart only")
    body = await xmlio.read(request)  # every such body is an XML document, or nothing
    check_body(body, headers, payload_hash)
    subs = set(ctx.query)
    if ((request.method == "POST" and "delete" in subs) or (request.method == "PUT" and subs & CHECKSUM_REQUIRED)) \
            and not has_digest_header(headers):
        raise S3Error("InvalidRequest", "Missing required header for this request: Content-MD5")
    signed = ctx.signed
    if body and signed is not None and not signed.presigned and payload_hash == sigv4.UNSIGNED \
            and not any(h in headers and h in signed.signed_headers for h in BINDING_DIGESTS):
        raise S3Error("InvalidRequest", "A body sent with UNSIGNED-PAYLOAD needs a signed Content-MD5 or "
                      "x-amz-checksum-sha256 header.")


async def watch_body(request: web.Request, timeout: float) -> None:
    """Fail the body with RequestTimeout once the client has sent nothing for ``timeout`` seconds.

    Time counts only while the gateway is reading the socket: when it has paused (its
    buffer is full because the grid is slower than the client), the wait is not the
    client's. Whoever reads the body next gets the error, so nothing is stored.
    """
    loop = asyncio.get_running_loop()
    content = request.content
    seen, since = content.total_bytes, loop.time()
    while not content.is_eof():
        await asyncio.sleep(min(timeout / 4, 1.0))
        transport = request.transport
        if transport is None:
            return
        now = loop.time()
        if content.total_bytes != seen or not transport.is_reading():
            seen, since = content.total_bytes, now
        elif now - since >= timeout:
            content.set_exception(RequestTimeout())
            return


def build_app(gw: Gateway) -> web.Application:
    metrics_open = grid_http.METRICS_PATH in public_paths(gw.config)

    def scrape(request: web.Request) -> web.Response:
        """The gateway's metrics, for the holder of the namespace secret (Prometheus), as on every service."""
        if not metrics_open:
            try:
                grid_http.check_secret(gw.config.secret, request.headers.get(grid_http.SECRET_HEADER))
            except grid_errors.GridError as exc:
                return web.json_response(grid_errors.error_body(exc), status=exc.status)
        return Metrics.scrape()

    async def handle(request: web.Request) -> web.StreamResponse:
        if request.path == METRICS_PATH:  # "_grid" is no bucket name: no clash with S3 paths
            return scrape(request)
        watchdog = asyncio.create_task(watch_body(request, gw.body_timeout)) if request.body_exists else None
        try:
            response = await answer(request)
        finally:
            if watchdog is not None:
                watchdog.cancel()
        gw.metrics.requests.labels(request.method, response.status).inc()
        if request.content_length:
            gw.metrics.bytes_in.inc(request.content_length)
        if response.content_length:
            gw.metrics.bytes_out.inc(response.content_length)
        return response

    async def answer(request: web.Request) -> web.StreamResponse:
        bucket = key = ""
        ctx: Ctx | None = None
        request_id = secrets.token_hex(8).upper()
        try:
            bucket, key = split_path(request.raw_path, request.headers.get("Host", ""), gw.domain)
            if request.method == "OPTIONS":
                return await cors.preflight(gw, request, bucket)
            user, signed, signing_key = await authenticate(request, gw)
            ctx = Ctx(request, gw, bucket, key, dict(request.query), user, signed, signing_key, request_id)
            unsupported = set(ctx.query) & NOT_IMPLEMENTED
            if unsupported:
                raise S3Error("NotImplemented", f"{sorted(unsupported)[0]} is not implemented by this gateway")
            check_query(ctx.query)
            if not streams_body(ctx):
                await read_body(ctx)
            if not bucket:
                if request.method != "GET":
                    raise S3Error("MethodNotAllowed", "The specified method is not allowed against this resource.")
                if user is None:
                    raise S3Error("AccessDenied", "Access Denied")
                response = await bucket_list.list_buckets(ctx)
            elif post_upload.is_form_post(ctx):
                response = await post_upload.post_object(ctx)
            elif "attributes" in ctx.query:  # an object's, never a listing's
                response = await attributes.get_object_attributes(ctx)
            elif not key:
                response = await buckets.dispatch(ctx)
            elif set(ctx.query) & {"uploads", "uploadId"}:
                response = await multipart.dispatch(ctx)
            elif set(ctx.query) & {"retention", "legal-hold"}:
                response = await versionlock.dispatch(ctx)
            else:
                response = await objects.dispatch(ctx)
            response.headers["x-amz-request-id"] = request_id
            cors.add_headers(ctx, response)
            return response
        except RequestPayloadError as exc:  # a malformed chunked body, or one cut short
            s3 = S3Error("IncompleteBody", f"The request body could not be read: {exc}")
            return error_response(s3, f"/{bucket}/{key}" if key else f"/{bucket}", request_id, request.method)
        except (S3Error, grid_errors.GridError, ConnectionError, ValueError) as exc:
            s3 = translate(exc)
            resource = f"/{bucket}/{key}" if key else f"/{bucket}"
            response = error_response(s3, resource, request_id, request.method)
            if ctx is not None:
                await cors.add_error_headers(ctx, response)  # a browser may read the error only with them
            return response
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception as exc:  # never a stack trace to the client
            return error_response(translate(exc), f"/{bucket}", request_id, request.method)

    app = web.Application(client_max_size=MAX_BODY)
    # Every path, newlines included ("." stops at one): S3 keys may hold any character but NUL.
    app.router.add_route("*", r"/{tail:[\s\S]*}", handle)
    return app
