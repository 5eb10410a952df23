"""The registry of user functions, kept in the grid so every event agent and runner sees the same ones.

One object per function, named after it, in the bucket ``functions`` of the account
``gridsystem``: a JSON spec (what to run, on which events, with which limits) signed with
an HMAC under the namespace secret. A function is code the operator installs and the grid
runs with a client of its account, so registering one takes the namespace secret: the
signature is what the agent and the runners check before running anything, not where the
entry lies (a gateway that lets its users pick an account, WebHDFS without
``--require-secret`` say, could write an object there, but not sign it).

``run`` names ``module:function``, validated as dotted Python identifiers. The module is
either installed on every node (like :mod:`gridfs.functions.examples`) or, with
``source``, its text is kept in the spec and loaded from there by each call.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import re
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from gridfs.client import GridClient
from gridfs.common.errors import AlreadyExists, BadRequest, NoSuchContainer, NoSuchObject
from gridfs.common.names import check_account, check_bucket

log = logging.getLogger("gridfs.functions")
ACCOUNT = "gridsystem"
BUCKET = "functions"
# What ``--on`` says -> the outbox event type it means. ``deleted`` is an object (version)
# deleted by a user: content.deleted events for replaced or repaired chunks are not.
EVENT_TYPES = {"created": "content.new", "deleted": "content.deleted", "updated": "content.updated"}
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}\Z")
MODULE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")
IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
MAX_SOURCE = 256 * 1024
DEFAULT_TIMEOUT = 30.0  # s per call
DEFAULT_MEMORY = 1024  # MiB of address space per call: numpy and pyarrow reserve a lot they never touch
CACHE_TTL = 2.0  # s an agent keeps the list before reading it again: a new function starts within that


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    on: tuple[str, ...]  # of EVENT_TYPES' keys
    run: str  # module:function
    account: str = "default"  # the events of this account's buckets, and the client handed to the function
    bucket: str = ""  # "" for every bucket of the account
    prefix: str = ""
    timeout: float = DEFAULT_TIMEOUT
    memory_mb: int = DEFAULT_MEMORY
    source: str = ""  # the module's text, when it is not installed on the nodes
    created: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        validate(self)

    @property
    def module(self) -> str:
        return self.run.partition(":")[0]

    @property
    def function(self) -> str:
        return self.run.partition(":")[2]

    @property
    def event_types(self) -> list[str]:
        return [EVENT_TYPES[o] for o in self.on]

    def matches(self, event: dict[str, Any]) -> bool:
        """Is this event one the function is registered for (type, account, bucket, key prefix)?"""
        data = event.get("data") or {}
        if event.get("type") not in self.event_types or data.get("account") != self.account:
            return False
        if event["type"] == "content.deleted" and data.get("reason") != "deleted":
            return False  # chunks dropped by an overwrite or a repair: no object was deleted
        key = data.get("key")
        return (not self.bucket or data.get("bucket") == self.bucket) and isinstance(key, str) \
            and key.startswith(self.prefix)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "on": list(self.on)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FunctionSpec:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**{**known, "on": tuple(d.get("on") or ())})


def validate(spec: FunctionSpec) -> None:
    """BadRequest for a spec that names anything but a function of an importable-looking module."""
    if not NAME_RE.match(spec.name):
        raise BadRequest(f"invalid function name {spec.name!r}: 1-63 of a-z 0-9 _ -, starting with a letter or digit")
    if not spec.on or any(o not in EVENT_TYPES for o in spec.on):
        raise BadRequest(f"--on must be among {', '.join(EVENT_TYPES)}, got {list(spec.on)}")
    module, sep, fn = spec.run.partition(":")
    if not sep or not MODULE_RE.match(module) or not IDENT_RE.match(fn):
        raise BadRequest(f"--run must be module.path:function (Python identifiers), got {spec.run!r}")
    check_account(spec.account)
    if spec.bucket:
        check_bucket(spec.bucket)
    if not 0 < spec.timeout <= 3600:
        raise BadRequest(f"a function's time limit must be within (0, 3600] s, got {spec.timeout}")
    if not 64 <= spec.memory_mb <= 1024 * 1024:
        raise BadRequest(f"a function's memory limit must be at least 64 MiB, got {spec.memory_mb}")
    if len(spec.source) > MAX_SOURCE:
        raise BadRequest(f"a function's source must be at most {MAX_SOURCE} bytes")


def signature(spec: dict[str, Any], secret: str) -> str:
    body = json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(f"gridfs-function:{secret}".encode(), body, hashlib.sha256).hexdigest()


def seal(spec: FunctionSpec, secret: str) -> dict[str, Any]:
    """The stored (and sent) form: the spec and its signature."""
    body = spec.to_dict()
    return {"spec": body, "sig": signature(body, secret)}


def unseal(entry: Any, secret: str) -> FunctionSpec:
    """The spec of a signed entry; BadRequest if it was not signed under this grid's secret."""
    if not isinstance(entry, dict) or not isinstance(entry.get("spec"), dict) or not isinstance(entry.get("sig"), str):
        raise BadRequest("not a function entry")
    if not hmac.compare_digest(signature(entry["spec"], secret), entry["sig"]):
        raise BadRequest(f"function entry {entry['spec'].get('name')!r} is not signed with the namespace secret")
    try:
        return FunctionSpec.from_dict(entry["spec"])
    except (TypeError, ValueError) as exc:
        raise BadRequest(f"malformed function entry: {exc}") from exc


class FunctionRegistry:
    """Add, list, read and remove functions; ``current()`` is the agents' cached view."""

    def __init__(self, client: GridClient, ttl: float = CACHE_TTL) -> None:
        self.client = client if client.account == ACCOUNT else GridClient(client.config, account=ACCOUNT)
        self.secret = self.client.config.secret
        self.ttl = ttl
        self._cache: tuple[float, dict[str, FunctionSpec]] | None = None
        self._lock = threading.Lock()

    def add(self, spec: FunctionSpec, replace_existing: bool = False) -> FunctionSpec:
        try:
            self.client.bucket_info(BUCKET, stats=False)
        except NoSuchContainer:
            with contextlib.suppress(AlreadyExists):  # made by another registration meanwhile
                self.client.create_bucket(BUCKET)
        if not replace_existing and self.client.exists(BUCKET, spec.name):
            raise AlreadyExists(f"function {spec.name!r} already exists (remove it first, or --replace)")
        spec = replace(spec, created=time.time())
        self.client.put(BUCKET, spec.name, json.dumps(seal(spec, self.secret)).encode())
        return spec

    def get(self, name: str) -> FunctionSpec:
        try:
            return unseal(json.loads(self.client.get(BUCKET, name)), self.secret)
        except (NoSuchObject, NoSuchContainer):
            raise NoSuchObject(f"no function named {name!r}") from None

    def remove(self, name: str) -> None:
        try:
            self.client.delete(BUCKET, name)
        except (NoSuchObject, NoSuchContainer):
            raise NoSuchObject(f"no function named {name!r}") from None

    def list(self) -> list[FunctionSpec]:
        """Every function whose entry is signed; an entry that is not is skipped (and logged by ``current``)."""
        return list(self._read().values())

    def _read(self) -> dict[str, FunctionSpec]:
        try:
            names = [o.key for o in self.client.iter_list(BUCKET) if not isinstance(o, str)]
        except NoSuchContainer:
            return {}
        out: dict[str, FunctionSpec] = {}
        for name in names:
            try:
                out[name] = self.get(name)
            except NoSuchObject:
                continue  # removed while listing
            except (BadRequest, ValueError) as exc:
                log.error("ignoring function entry %s: %s", name, exc)
        return out

    def current(self) -> dict[str, FunctionSpec]:
        """The functions, read again at most every ``ttl`` seconds."""
        with self._lock:
            now = time.monotonic()
            if self._cache is None or now - self._cache[0] >= self.ttl:
                self._cache = (now, self._read())
            return self._cache[1]
