"""Routing of the WebHDFS gateway: ``/webhdfs/v1/PATH?op=OP``, each operation on the grid.

Every call is authenticated (``auth``), its path validated (``paths``) and its operation
looked up by HTTP method; blocking grid calls run on the gateway's threads. JSON answers
carry no ``Content-Type`` header: Hadoop 3.4/3.5's shaded WebHDFS client parses that
header with a JAX-RS class it does not ship and fails on any JSON answer that has one
(other clients read JSON either way). CREATE answers a first call with a 307 redirect to
itself plus ``data=true`` (as HttpFS does); the body of that second call streams into the
grid. OPEN streams the range at once (no redirect, as HttpFS), and answers
``{"Location"}`` to ``noredirect=true`` as a namenode does.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gridfs.client import GridClient
from gridfs.common import errors as grid_errors
from gridfs.common.config import GridConfig
from gridfs.common.http import METRICS_PATH
from gridfs.common.metrics import (
    RequestMetrics,
    aiohttp_metrics_route,
    aiohttp_request_metrics,
    process_registry,
    public_paths,
)
from gridfs.gateways.s3.streams import stream_response
from gridfs.gateways.webhdfs import paths
from gridfs.gateways.webhdfs.auth import Authenticator, Caller
from gridfs.gateways.webhdfs.errors import WebHdfsError, bad_argument, translate, unsupported
from gridfs.gateways.webhdfs.namespace import IN_FLIGHT, Namespace
from gridfs.gateways.webhdfs.status import (
    ATIME,
    BLOCKSIZE,
    DEFAULT_BLOCK_SIZE,
    GROUP,
    MTIME,
    OWNER,
    PERMISSION,
    check_name,
    check_permission,
    file_status,
)

log = logging.getLogger("gridfs.webhdfs")
PIECE = 4 << 20  # request body bytes handed to the grid writer at a time
MIN_BLOCK_SIZE = 1 << 20  # dfs.namenode.fs-limits.min-block-size
BATCH = 1000  # entries per LISTSTATUS_BATCH answer (dfs.ls.limit)
MAX_ACCOUNTS = 256  # grid clients kept, one per account

_FAMILIES = {
    "APPEND, CONCAT and TRUNCATE": ("APPEND", "CONCAT", "TRUNCATE"),
    "symbolic links": ("CREATESYMLINK", "GETLINKTARGET"),
    "ACLs": ("MODIFYACLENTRIES", "REMOVEACLENTRIES", "REMOVEDEFAULTACL", "REMOVEACL", "SETACL", "GETACLSTATUS",
             "CHECKACCESS"),
    "extended attributes": ("SETXATTR", "REMOVEXATTR", "GETXATTRS", "LISTXATTRS"),
    "snapshots": ("CREATESNAPSHOT", "RENAMESNAPSHOT", "DELETESNAPSHOT", "ALLOWSNAPSHOT", "DISALLOWSNAPSHOT",
                  "GETSNAPSHOTDIFF", "GETSNAPSHOTDIFFLISTING", "GETSNAPSHOTTABLEDIRECTORYLIST", "GETSNAPSHOTLIST"),
    "HDFS storage and erasure-coding policies": (
        "SETSTORAGEPOLICY", "UNSETSTORAGEPOLICY", "GETSTORAGEPOLICY", "GETALLSTORAGEPOLICY", "SATISFYSTORAGEPOLICY",
        "ENABLEECPOLICY", "DISABLEECPOLICY", "SETECPOLICY", "UNSETECPOLICY", "GETECPOLICY", "GETECPOLICIES",
        "GETECCODECS"),
    "quotas": ("GETQUOTAUSAGE", "SETQUOTA", "SETQUOTABYSTORAGETYPE"),
    "renewing or cancelling tokens": ("RENEWDELEGATIONTOKEN", "CANCELDELEGATIONTOKEN"),
    "namenode-only calls": ("GET_BLOCK_LOCATIONS", "GETSTATUS", "GETTRASHROOT", "GETTRASHROOTS"),
}
UNSUPPORTED = {op: family for family, ops in _FAMILIES.items() for op in ops}
WHY = {
    "APPEND, CONCAT and TRUNCATE": "objects in the grid are written once; write a new file instead",
    "ACLs": "permissions are kept as attributes (SETPERMISSION, SETOWNER), without ACLs",
    "HDFS storage and erasure-coding policies": "durability is the bucket's grid storage policy",
}


class JsonReply(web.Response):
    """A JSON answer; sent without Content-Type (see the module's docstring)."""

    def __init__(self, data: Any, status: int = 200) -> None:
        super().__init__(status=status, body=json.dumps(data).encode())


async def _strip_content_type(request: web.Request, response: web.StreamResponse) -> None:
    if isinstance(response, JsonReply):
        response.headers.popall("Content-Type", None)


class Gateway:
    def __init__(self, config: GridConfig | str | None = None, require_secret: bool = False) -> None:
        self.config = config if isinstance(config, GridConfig) else GridConfig.load(config)
        accounts = self.config.extra.get("webhdfs", {}).get("accounts", {})
        self.auth = Authenticator(self.config.secret, require_secret, accounts)
        self.pool = ThreadPoolExecutor(32, thread_name_prefix="webhdfs")
        self.bulk = ThreadPoolExecutor(IN_FLIGHT * 2, thread_name_prefix="webhdfs-bulk")
        self._clients: dict[str, GridClient] = {}
        self._lock = threading.Lock()

    def namespace(self, caller: Caller) -> Namespace:
        with self._lock:
            client = self._clients.get(caller.account)
            if client is None:
                if len(self._clients) >= MAX_ACCOUNTS:  # forget the oldest (requests using it keep it alive)
                    self._clients.pop(next(iter(self._clients)))
                client = self._clients[caller.account] = GridClient(self.config, caller.account)
        return Namespace(client, caller.user, self.bulk)


@dataclass
class Ctx:
    request: web.Request
    gw: Gateway
    path: paths.HPath
    caller: Caller
    ns: Namespace

    @property
    def query(self) -> Any:
        return self.request.query

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.gw.pool, lambda: fn(*args))

    def flag(self, name: str, default: bool) -> bool:
        value = self.query.get(name)
        if value is None or value == "":
            return default
        if value.lower() not in ("true", "false"):
            raise bad_argument(f"Invalid value for webhdfs parameter \"{name}\": {value!r} is not true or false")
        return value.lower() == "true"

    def number(self, name: str, default: int | None, minimum: int = 0) -> int | None:
        value = self.query.get(name)
        if value is None or value == "":
            return default
        try:
            number = int(value)
        except ValueError:
            number = minimum - 1
        if number < minimum or number >= 1 << 63:
            raise bad_argument(f"Invalid value for webhdfs parameter \"{name}\": {value!r} (an integer, at least "
                               f"{minimum})")
        return number

    def status(self, entry: Any, suffix: str = "") -> dict[str, Any]:
        return file_status(entry, suffix, self.caller.user)

    def data_url(self) -> str:
        """This call's URL with ``data=true``: where a client sends the data."""
        return str(self.request.url.update_query(data="true"))


# -- reads ------------------------------------------------------------------------------


async def get_file_status(ctx: Ctx) -> web.StreamResponse:
    return JsonReply({"FileStatus": ctx.status(await ctx.run(ctx.ns.stat, ctx.path))})


async def list_status(ctx: Ctx) -> web.StreamResponse:
    entries, _ = await ctx.run(ctx.ns.list_dir, ctx.path)
    return JsonReply({"FileStatuses": {"FileStatus": [ctx.status(e, name) for name, e in entries]}})


async def list_status_batch(ctx: Ctx) -> web.StreamResponse:
    """A page of at most 1000 entries after ``startAfter``; ``remainingEntries`` is 1 when more follow
    (the grid does not count what is left: clients only test it against 0)."""
    entries, more = await ctx.run(ctx.ns.list_dir, ctx.path, ctx.query.get("startAfter", ""), BATCH)
    return JsonReply({"DirectoryListing": {
        "partialListing": {"FileStatuses": {"FileStatus": [ctx.status(e, name) for name, e in entries]}},
        "remainingEntries": 1 if more else 0,
    }})


async def content_summary(ctx: Ctx) -> web.StreamResponse:
    return JsonReply(await ctx.run(ctx.ns.content_summary, ctx.path))


async def file_checksum(ctx: Ctx) -> web.StreamResponse:
    return JsonReply(await ctx.run(ctx.ns.file_checksum, ctx.path))


async def home_directory(ctx: Ctx) -> web.StreamResponse:
    return JsonReply({"Path": f"/user/{ctx.caller.user}"})


async def delegation_token(ctx: Ctx) -> web.StreamResponse:
    """A token for the caller's account (with --require-secret); null otherwise, as an insecure namenode says."""
    if not ctx.gw.auth.require_secret:
        return JsonReply({"Token": None})
    return JsonReply({"Token": {"urlString": ctx.gw.auth.mint(ctx.caller.account)}})


async def block_locations(ctx: Ctx) -> web.StreamResponse:
    offset = ctx.number("offset", 0) or 0
    length = ctx.number("length", (1 << 63) - 1 - offset) or 0
    return JsonReply(await ctx.run(ctx.ns.block_locations, ctx.path, offset, length, ctx.request.host))


async def server_defaults(ctx: Ctx) -> web.StreamResponse:
    """What ``FsShell -rm`` asks before deleting: the trash is off (trashInterval 0)."""
    return JsonReply({"FsServerDefaults": {
        "blockSize": DEFAULT_BLOCK_SIZE, "bytesPerChecksum": 512, "writePacketSize": 64 << 10, "replication": 1,
        "fileBufferSize": 4096, "encryptDataTransfer": False, "trashInterval": 0, "checksumType": 2,
        "keyProviderUri": "", "defaultStoragePolicyId": 7,
    }})


async def open_file(ctx: Ctx) -> web.StreamResponse:
    offset = ctx.number("offset", 0) or 0
    length = ctx.number("length", None)
    if ctx.flag("noredirect", False) and not ctx.flag("data", False):
        return JsonReply({"Location": ctx.data_url()})
    reader = await ctx.run(ctx.ns.reader, ctx.path)
    size = reader.info.size
    if offset > size:
        raise bad_argument(f"Offset={offset} out of the range [0, {size}]: {ctx.path.text} has {size} bytes")
    end = size if length is None else min(size, offset + length)
    response = web.StreamResponse(headers={"Content-Type": "application/octet-stream",
                                           "Content-Length": str(end - offset)})
    blocks: Iterator[Any] = iter(reader.iter_range(offset, end)) if end > offset else iter(())
    try:
        await stream_response(response, ctx.request, blocks, ctx.gw.pool)
    except (grid_errors.GridError, OSError) as exc:  # the status is sent: cut the body short instead
        raise ConnectionResetError(f"reading {ctx.path.text} failed after the answer began: {exc}") from exc
    return response


# -- writes -----------------------------------------------------------------------------


def body_pieces(request: web.Request, loop: asyncio.AbstractEventLoop) -> Iterator[bytes]:
    """The request body (sized or chunked) as pieces of up to PIECE bytes, for a writer thread."""

    async def gather() -> bytes:
        parts: list[bytes] = []
        got = 0
        while got < PIECE:
            part = await request.content.read(PIECE - got)
            if not part:
                break
            parts.append(part)
            got += len(part)
        return b"".join(parts)

    got = 0
    while piece := asyncio.run_coroutine_threadsafe(gather(), loop).result():
        got += len(piece)
        yield piece
    if request.content_length is not None and got != request.content_length:  # aiohttp raises first; in case
        raise WebHdfsError("IOException", f"the body has {got} bytes, Content-Length said {request.content_length}")


async def create(ctx: Ctx) -> web.StreamResponse:
    overwrite = ctx.flag("overwrite", False)
    properties: dict[str, str] = {}
    if ctx.query.get("permission"):
        properties[PERMISSION] = check_permission(ctx.query["permission"])
    block = ctx.number("blocksize", None, minimum=MIN_BLOCK_SIZE)
    if block is not None:
        if block % 512:
            raise bad_argument(f"Invalid value for webhdfs parameter \"blocksize\": {block} is not a multiple of "
                               "dfs.bytes-per-checksum (512)")
        properties[BLOCKSIZE] = str(block)
    # Checked, not kept: durability is the bucket's storage policy (as HDFS ignores it in an erasure-coded
    # directory); the buffer size is the client's business.
    ctx.number("replication", None, minimum=1)
    ctx.number("buffersize", None, minimum=1)
    await ctx.run(ctx.ns.check_create, ctx.path, overwrite, ctx.flag("createparent", True))
    if not ctx.flag("data", False):
        if ctx.flag("noredirect", False):
            return JsonReply({"Location": ctx.data_url()})
        return web.Response(status=307, headers={"Location": ctx.data_url()})
    pieces = body_pieces(ctx.request, asyncio.get_running_loop())
    try:
        await ctx.run(ctx.ns.create, ctx.path, pieces, overwrite, properties)
    except BaseException as exc:  # nothing was committed (a cut body, a refusal): say so where an operator looks
        log.warning("CREATE %s failed, nothing stored: %s", ctx.path.text, exc or type(exc).__name__)
        raise
    return web.Response(status=201, headers={"Location": f"webhdfs://{ctx.request.host}{ctx.path.text}"})


async def mkdirs(ctx: Ctx) -> web.StreamResponse:
    properties = {PERMISSION: check_permission(ctx.query["permission"])} if ctx.query.get("permission") else {}
    return JsonReply({"boolean": await ctx.run(ctx.ns.mkdirs, ctx.path, properties)})


async def rename(ctx: Ctx) -> web.StreamResponse:
    destination = ctx.query.get("destination")
    if not destination:
        raise bad_argument("RENAME needs the parameter \"destination\" (an absolute path)")
    return JsonReply({"boolean": await ctx.run(ctx.ns.rename, ctx.path, paths.parse(destination))})


async def delete(ctx: Ctx) -> web.StreamResponse:
    return JsonReply({"boolean": await ctx.run(ctx.ns.delete, ctx.path, ctx.flag("recursive", False))})


async def set_times(ctx: Ctx) -> web.StreamResponse:
    properties = {}
    for name, prop in (("modificationtime", MTIME), ("accesstime", ATIME)):
        value = ctx.number(name, -1, minimum=-1)
        if value != -1:  # -1: leave it as it is
            properties[prop] = str(value)
    if properties:
        await ctx.run(ctx.ns.set_attributes, ctx.path, properties)
    return web.Response()


async def set_permission(ctx: Ctx) -> web.StreamResponse:
    permission = check_permission(ctx.query.get("permission") or "755")
    await ctx.run(ctx.ns.set_attributes, ctx.path, {PERMISSION: permission})
    return web.Response()


async def set_owner(ctx: Ctx) -> web.StreamResponse:
    properties = {prop: check_name(name, ctx.query[name])
                  for name, prop in (("owner", OWNER), ("group", GROUP)) if ctx.query.get(name)}
    if not properties:
        raise bad_argument("Both owner and group are empty.")
    await ctx.run(ctx.ns.set_attributes, ctx.path, properties)
    return web.Response()


async def set_replication(ctx: Ctx) -> web.StreamResponse:
    """``false``, as HDFS answers for an erasure-coded file: the storage policy sets durability."""
    ctx.number("replication", None, minimum=1)
    await ctx.run(ctx.ns.file, ctx.path)
    return JsonReply({"boolean": False})


Handler = Callable[[Ctx], Awaitable[web.StreamResponse]]
ROUTES: dict[str, dict[str, Handler]] = {
    "GET": {
        "OPEN": open_file, "GETFILESTATUS": get_file_status, "GETFILELINKSTATUS": get_file_status,
        "LISTSTATUS": list_status, "LISTSTATUS_BATCH": list_status_batch, "GETCONTENTSUMMARY": content_summary,
        "GETFILECHECKSUM": file_checksum, "GETHOMEDIRECTORY": home_directory, "GETDELEGATIONTOKEN": delegation_token,
        "GETFILEBLOCKLOCATIONS": block_locations, "GETSERVERDEFAULTS": server_defaults,
    },
    "PUT": {
        "CREATE": create, "MKDIRS": mkdirs, "RENAME": rename, "SETTIMES": set_times, "SETPERMISSION": set_permission,
        "SETOWNER": set_owner, "SETREPLICATION": set_replication,
    },
    "POST": {},
    "DELETE": {"DELETE": delete},
}


def route(method: str, op: str) -> Handler:
    if op in UNSUPPORTED:
        family = UNSUPPORTED[op]
        reason = WHY.get(family, "the grid has no such thing")
        raise unsupported(f"{op} is not supported by the gridfs WebHDFS gateway ({family}: {reason})")
    handler = ROUTES.get(method, {}).get(op)
    if handler is None:
        if not op:
            raise bad_argument("the parameter \"op\" is required")
        known = [m for m, ops in ROUTES.items() if op in ops]
        raise bad_argument(f"Invalid value for webhdfs parameter \"op\": {op} is " +
                           (f"a {known[0]} operation, not {method}" if known else "not an operation"))
    return handler


def operation(request: web.Request) -> str:
    """A request's route for metrics: its WebHDFS operation when it names one the gateway knows of, else
    "unknown" (never what a client sent, which could be anything)."""
    if request.path == METRICS_PATH:
        return METRICS_PATH
    op = request.query.get("op", "").upper()
    return op if op in UNSUPPORTED or any(op in ops for ops in ROUTES.values()) else "unknown"


def build_app(gw: Gateway) -> web.Application:
    async def handle(request: web.Request) -> web.StreamResponse:
        shown = request.path
        try:
            caller = gw.auth.caller(request.query)
            path = paths.from_request(request.raw_path)
            shown = path.text
            handler = route(request.method, request.query.get("op", "").upper())
            return await handler(Ctx(request, gw, path, caller, gw.namespace(caller)))
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except (WebHdfsError, grid_errors.GridError, ConnectionError, ValueError, OSError) as exc:
            error = translate(exc, shown)
        except Exception as exc:  # never a stack trace to the client
            error = translate(exc, shown)
        return JsonReply(error.body(), error.status)

    registry = process_registry()  # the workers' sum in multiprocess mode (gridfs.gateways.webhdfs.server)
    app = web.Application(client_max_size=1 << 20, middlewares=[aiohttp_request_metrics(RequestMetrics(registry),
                                                                                        operation)])
    app.on_response_prepare.append(_strip_content_type)
    # No file path is /metrics (they all start with /webhdfs/v1), so the scrape route shadows none.
    app.router.add_routes([aiohttp_metrics_route(registry, guard=(gw.config.secret, public_paths(gw.config)))])
    app.router.add_route("*", "/{tail:.*}", handle)
    return app
