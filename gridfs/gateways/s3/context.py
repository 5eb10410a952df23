"""What every S3 operation shares: the gateway's state, one request's context, bucket loading and
access checks, and the translation of grid errors into S3 errors.

``app`` routes a request to ``buckets``, ``objects``, ``multipart`` or ``cors``; each of them
imports this module and never ``app``, so data flows one way.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from gridfs.client import GridClient
from gridfs.common import errors as grid_errors
from gridfs.common.config import GridConfig
from gridfs.directory.model import ContainerInfo, ObjectInfo
from gridfs.events.webhooks import Endpoints
from gridfs.gateways.s3 import access, masterkey, owners, sigv4
from gridfs.gateways.s3.errors import S3Error
from gridfs.gateways.s3.sealed import SealingClient
from gridfs.gateways.s3.users import User, UserStore

log = logging.getLogger("gridfs.s3")

OWNER_PROP = owners.OWNER_PROP
ACL_PROP, LOCATION_PROP = "s3.acl", "s3.location"
DEFAULT_TIMEOUT = 60.0


@dataclass
class Ctx:
    """One request, authenticated."""

    request: web.Request
    gw: Gateway
    bucket: str
    key: str
    query: dict[str, str]
    user: User | None
    signed: sigv4.SignedRequest | None = None
    signing_key: bytes | None = None
    request_id: str = field(default_factory=lambda: secrets.token_hex(8).upper())
    container: ContainerInfo | None = None
    object_info: ObjectInfo | None = None  # the object whose ACL allowed a GetObject (access), to be served as is

    @property
    def headers(self) -> Any:
        return self.request.headers

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a blocking client call on the gateway's threads."""
        return await asyncio.get_running_loop().run_in_executor(self.gw.pool, lambda: fn(*args))


class Metrics:
    """Requests and bytes, summed over the gateway's worker processes (Prometheus multiprocess mode)."""

    def __init__(self) -> None:
        from prometheus_client import Counter

        self.requests = Counter("grid_s3_requests", "S3 requests answered", ["method", "status"])
        self.bytes_in = Counter("grid_s3_bytes_in", "request body bytes received")
        self.bytes_out = Counter("grid_s3_bytes_out", "response body bytes sent")

    @staticmethod
    def scrape() -> web.Response:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

        registry = CollectorRegistry()
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            multiprocess.MultiProcessCollector(registry)
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


class Gateway:
    def __init__(self, config: GridConfig | str | None = None, domain: str = "", header_timeout: float | None = None,
                 body_timeout: float | None = None) -> None:
        self.config = config if isinstance(config, GridConfig) else GridConfig.load(config)
        settings = self.config.extra.get("s3", {})
        # Virtual-hosted addressing: ``bucket.DOMAIN`` in the Host header names the bucket.
        self.domain = (domain or settings.get("domain", "")).lower().strip(".")
        # Seconds a connection may take to send a request's headers (idle keep-alive time included), and
        # may leave a body it announced without a byte: then the worker drops it (``[s3]`` in grid.toml).
        self.header_timeout = float(header_timeout or settings.get("header_timeout", DEFAULT_TIMEOUT))
        self.body_timeout = float(body_timeout or settings.get("body_timeout", DEFAULT_TIMEOUT))
        # The S3 user who owns buckets made outside S3 (grid mb, the client library, distcp): "" for nobody,
        # so that no S3 user may touch them unless the operator says so.
        self.unowned_owner = str(settings.get("unowned_owner", ""))
        # Wraps SSE-S3 data keys and seals users' secrets; read from its own file, never from grid.toml. A grid
        # from before it had one gets it beside grid.toml at the first start; a named file must exist.
        self.master_key = masterkey.load(self.config, create_missing=not settings.get(masterkey.SETTING))
        # Bucket ACLs and policies sealed under the master key as they are written, checked as they are read.
        self.client: GridClient = SealingClient(self.config, self.master_key)
        self.users = UserStore(self.config, self.master_key)
        # The operator's webhook endpoints, which notification configurations may name (read, never written here).
        self.webhooks = Endpoints(self.config)
        self.pool = ThreadPoolExecutor(32, thread_name_prefix="s3")
        self.metrics = Metrics()


def translate(exc: BaseException) -> S3Error:
    """A grid error as the S3 error a client expects."""
    if isinstance(exc, S3Error):
        return exc
    message = str(exc)
    if isinstance(exc, grid_errors.NoSuchContainer):
        return S3Error("NoSuchBucket", "The specified bucket does not exist")
    if isinstance(exc, grid_errors.NoSuchUpload):
        return S3Error("NoSuchUpload", "The specified upload does not exist.")
    if isinstance(exc, grid_errors.NoSuchObject):
        return S3Error("NoSuchKey", "The specified key does not exist.")
    if isinstance(exc, grid_errors.ContainerNotEmpty):
        return S3Error("BucketNotEmpty", "The bucket you tried to delete is not empty")
    if isinstance(exc, grid_errors.InvalidPart):
        return S3Error("InvalidPartOrder" if "InvalidPartOrder" in message else "InvalidPart", message)
    if isinstance(exc, grid_errors.InvalidName):
        return S3Error("KeyTooLongError" if "limit" in message else "InvalidArgument", message)
    if isinstance(exc, grid_errors.InvalidRange):
        return S3Error("InvalidRange", "The requested range is not satisfiable")
    if isinstance(exc, grid_errors.ObjectLocked):  # as S3 answers a locked version's delete
        return S3Error("AccessDenied", "Access Denied because object protected by object lock: " + message)
    if isinstance(exc, grid_errors.InvalidState):
        return S3Error("InvalidBucketState", message)
    if isinstance(exc, grid_errors.PreconditionFailed):
        return S3Error("PreconditionFailed", message)
    if isinstance(exc, grid_errors.BadRequest | ValueError):
        return S3Error("InvalidArgument", message)
    if isinstance(exc, ConnectionError | grid_errors.DataUnavailable):
        return S3Error("ServiceUnavailable", "The grid is not reachable right now: " + message)
    log.exception("internal error", exc_info=exc)
    return S3Error("InternalError", "We encountered an internal error. Please try again.")


def owner_of(gw: Gateway, container: ContainerInfo) -> str:
    """The S3 user a bucket belongs to: its creator through S3 (or whom ``grid s3 chown`` named; an owner
    without its seal does not count), else the one the operator names for buckets made outside S3 ("": nobody)."""
    return owners.trusted_owner(gw.master_key, container.bucket, container.properties) or gw.unowned_owner


async def authorize(ctx: Ctx, container: ContainerInfo, source: str = "", version: int | None = None) -> \
        ObjectInfo | None:
    """Raise AccessDenied unless the request may do what it asks of ``container`` (or read its object ``source``,
    a copy's source, whose record read to decide is answered). The policy, ACLs and bucket settings decide
    (``access``)."""
    owner = owner_of(ctx.gw, container)
    if source:
        return await access.authorize_source(ctx, container, owner, source, version)
    await access.authorize(ctx, container, owner)
    return None


def authorize_key(ctx: Ctx, key: str, version: int | None) -> None:
    """DeleteObjects: raise AccessDenied unless the request may delete ``key`` (its ``version``)."""
    assert ctx.container is not None
    access.authorize_key(ctx, ctx.container, owner_of(ctx.gw, ctx.container), key, version)


async def load_bucket(ctx: Ctx) -> ContainerInfo:
    try:
        container = await ctx.run(lambda: ctx.gw.client.bucket_info(ctx.bucket, stats=False))
    except grid_errors.InvalidName as exc:
        raise S3Error("InvalidBucketName", str(exc)) from exc
    await authorize(ctx, container)
    ctx.container = container
    return container


async def set_bucket_props(ctx: Ctx, changes: dict[str, str | None], status: int = 200) -> web.Response:
    """Change a bucket's properties: its owner only."""
    assert ctx.container is not None
    if ctx.user is None or owner_of(ctx.gw, ctx.container) != ctx.user.name:
        raise S3Error("AccessDenied", "Access Denied")
    props = dict(ctx.container.properties)
    for k, v in changes.items():
        if v is None:
            props.pop(k, None)
        else:
            props[k] = v
    await ctx.run(ctx.gw.client.set_bucket_properties, ctx.bucket, props)
    return web.Response(status=status)
