"""The event agent's side of user functions: one handler per registered function, sent to the right node.

Each function is a handler of the agent named ``function:NAME`` (so a retry runs that
function alone), subscribed to the event types of its ``--on``; the set follows the
registry (read again every ``[functions] refresh`` seconds). A matching event is sent to
the function runner on the node that holds the object's first chunk: the runners register
with the conscience as type ``functions`` under the location ``site.rack.host.*`` of
their node, and a chunk's storage server names its node the same way. The agent only
routes; the calls run on the nodes, a batch's calls side by side, so adding nodes adds
runners. An event with no chunk named (an update, a delete marker) or whose node runs no
runner goes to a runner picked by a hash of its key, so one object's calls land together.

A call that fails (raised, past its time or memory limit, runner unreachable) raises
here, and the agent's retries and dead letters take over.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from gridfs.client import GridClient
from gridfs.common.config import GridConfig
from gridfs.common.errors import GridError, InvalidName, ServiceUnavailable
from gridfs.common.http import JsonClient
from gridfs.conscience.client import CachedServices, ConscienceClient
from gridfs.events.agent import EventAgent
from gridfs.functions.calllog import CallLog
from gridfs.functions.registry import CACHE_TTL, FunctionRegistry, FunctionSpec, seal
from gridfs.functions.runner import CallResult
from gridfs.storage.client import parse_chunk_url

log = logging.getLogger("gridfs.functions")
RUNNER_TYPE = "functions"
HANDLER_PREFIX = "function:"


class FunctionFailed(GridError):
    code = "FunctionFailed"


def node_of(location: str) -> str:
    """``site.rack.host``: the machine part of a service location."""
    return ".".join(location.split(".")[:3])


def first_chunk_service(event: dict[str, Any]) -> str | None:
    """The service id of the storage server that holds the object's first chunk, if the event names it."""
    chunks = (event.get("data") or {}).get("chunks") or []
    if chunks and isinstance(chunks[0], dict):  # content.new: {"url", "pos"}, every position
        chunks = [c["url"] for c in sorted(chunks, key=lambda c: [int(p) for p in str(c.get("pos", "0")).split(".")])]
    for url in chunks:
        try:
            return parse_chunk_url(url).service
        except InvalidName:
            continue
    return None


class NodeRouter:
    """Which runner takes an event, and the call to it."""

    def __init__(self, conscience: ConscienceClient, secret: str, ttl: float = 2.0) -> None:
        self.rawx = CachedServices(conscience, "rawx", ttl=ttl)
        self.runners = CachedServices(conscience, RUNNER_TYPE, ttl=ttl)
        self.secret = secret

    def runner_for(self, event: dict[str, Any]) -> dict[str, Any]:
        runners = sorted((r for r in self.runners.get() if r.get("up", True)), key=lambda r: r.get("id", r["addr"]))
        if not runners:
            raise ServiceUnavailable("no function runner is registered (python -m gridfs.functions, one per node)")
        key = str((event.get("data") or {}).get("key", ""))
        service = first_chunk_service(event)
        if service is not None:
            row = next((r for r in self.rawx.get() if r.get("id") == service), None)
            if row is not None:
                local = [r for r in runners if node_of(r["location"]) == node_of(row["location"])]
                runners = local or runners
        return runners[zlib.crc32(key.encode()) % len(runners)]

    def call(self, entry: dict[str, Any], spec: FunctionSpec, event: dict[str, Any]) -> CallResult:
        try:
            row = self.runner_for(event)
        except GridError as exc:
            return CallResult(False, f"{type(exc).__name__}: {exc}")
        # No retries here: the agent's retry list is the one place a failed call waits.
        http = JsonClient(f"http://{row['addr']}", self.secret, timeout=spec.timeout + 30.0, retry_for=0)
        try:
            answer = http.call("POST", "/v1/call", body={"entry": entry, "event": event})
        except GridError as exc:
            return CallResult(False, f"runner {row['addr']} failed: {type(exc).__name__}: {exc}", node=row["location"])
        return CallResult(**{**answer, "node": row["location"]})


class FunctionHandler:
    """One registered function as an event handler of the agent."""

    def __init__(self, spec: FunctionSpec, secret: str, router: NodeRouter, calls: CallLog,
                 pool: ThreadPoolExecutor) -> None:
        self.spec, self.entry = spec, seal(spec, secret)
        self.handler_name = HANDLER_PREFIX + spec.name
        self.router, self.calls, self.pool = router, calls, pool

    def run(self, event: dict[str, Any]) -> str | None:
        """One call; its error, or None."""
        result = self.router.call(self.entry, self.spec, event)
        self.calls.add(self.spec.name, event, result)
        if not result.ok:
            log.warning("function %s on %s %s: %s", self.spec.name, event["type"],
                        (event.get("data") or {}).get("key"), result.error)
        return None if result.ok else result.error

    def __call__(self, event: dict[str, Any]) -> None:
        if self.spec.matches(event) and (error := self.run(event)) is not None:
            raise FunctionFailed(error)

    def handle_batch(self, events: list[dict[str, Any]]) -> list[tuple[dict[str, Any], str]]:
        """The batch's objects side by side (each on its node), the events of one object in their order:
        a function sees an object created before it sees it updated. Only the failed calls are retried."""
        by_object: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        for e in events:
            if self.spec.matches(e):
                d = e["data"]
                by_object.setdefault((d["account"], d["bucket"], d["key"]), []).append(e)
        # Worded as the agent words the FunctionFailed that __call__ raises, so a retry's error reads the same.
        return [(e, f"{FunctionFailed.__name__}: {err}") for failed in self.pool.map(self._run_in_order,
                                                                                      by_object.values())
                for e, err in failed]

    def _run_in_order(self, events: list[dict[str, Any]]) -> list[tuple[dict[str, Any], str]]:
        return [(e, err) for e in events if (err := self.run(e)) is not None]


class FunctionSet:
    """Keeps the agent's ``function:*`` handlers in step with the registry (an agent refresher)."""

    def __init__(self, registry: FunctionRegistry, router: NodeRouter, calls: CallLog, threads: int = 8) -> None:
        self.registry, self.router, self.calls = registry, router, calls
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="functions")
        self.active: dict[str, FunctionHandler] = {}

    @classmethod
    def for_grid(cls, cfg: GridConfig, calls: CallLog) -> FunctionSet:
        conf = cfg.extra.get("functions", {})
        conscience = ConscienceClient(cfg.conscience_url, cfg.secret).quick()
        registry = FunctionRegistry(GridClient(cfg), ttl=float(conf.get("refresh", CACHE_TTL)))
        return cls(registry, NodeRouter(conscience, cfg.secret), calls, int(conf.get("threads", 8)))

    def __call__(self, agent: EventAgent) -> None:
        current = self.registry.current()
        for name, handler in list(self.active.items()):
            if current.get(name) != handler.spec:  # removed, or registered again with other settings
                agent.unsubscribe(handler.handler_name)
                del self.active[name]
                # Known but subscribed to nothing: the removed function's pending retries are dropped,
                # rather than failing on to dead letters for code the operator took out.
                agent.handlers[handler.handler_name] = _removed(name)
        for name, spec in current.items():
            if name not in self.active:
                handler = FunctionHandler(spec, self.registry.secret, self.router, self.calls, self.pool)
                agent.unsubscribe(handler.handler_name)
                for event_type in spec.event_types:
                    agent.subscribe(event_type, handler)
                self.active[name] = handler
                log.info("function %s: %s on %s of %s/%s%s", name, spec.run, ",".join(spec.on), spec.account,
                         spec.bucket or "*", spec.prefix)


def _removed(name: str) -> Callable[[dict[str, Any]], None]:
    def dropped(event: dict[str, Any]) -> None:
        log.info("function %s was removed: its retry of %s event %s/%s is dropped", name, event["type"], event["db"],
                 event["id"])
    return dropped
