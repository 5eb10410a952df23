"""S3 bucket notifications: the event agent's handler that POSTs AWS-shaped event records to webhooks.

The source is the directory's outbox, not the S3 gateway: an object written or deleted through S3,
``grid://``, grid-distcp, WebHDFS or the client library is one ``content.new`` or ``content.deleted``
event, committed with the change, and so one notification, whatever front end made it. A bucket's
configuration (set by PutBucketNotificationConfiguration, kept as JSON in its ``s3.notification``
property) lists rules: the endpoint (a name the operator registered, ``webhooks``), the S3 event names,
a key prefix and suffix. Each change that a rule matches is POSTed to the rule's endpoint as
``{"Records": [record]}`` in AWS's event message shape, ``eventSource`` ``gridfs:s3``.

What the events say is mapped to AWS's names: ``content.new`` with origin ``put`` (or none),
``post``, ``copy`` and ``multipart`` is ObjectCreated:Put, :Post, :Copy and
:CompleteMultipartUpload; a rename is ObjectCreated:Copy of the new key and ObjectRemoved:Delete of
the old one; ``content.deleted`` of a delete asked for is ObjectRemoved:DeleteMarkerCreated when the
delete wrote a marker, else ObjectRemoved:Delete (lifecycle expirations included). Chunk garbage
(``content.deleted`` of an overwrite, an abort) is no S3 event.

Delivery is at least once: a POST that fails (not 2xx, refused, timed out) raises, and the agent
retries the event with its growing delays, then keeps it as a dead letter (``grid events --dead``).
When one event matches several rules, a retry posts to all of them again. The configuration used is
the one in force when the event is handled: read again for every event committed after it was last
read, so a configuration set before a write applies to it.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote_plus

from gridfs.common.config import DEFAULT_ACCOUNT, GridConfig
from gridfs.common.errors import NoSuchContainer, NoSuchObject
from gridfs.directory.client import DirectoryClient
from gridfs.directory.model import ContainerInfo
from gridfs.events.webhooks import DEFAULT_TIMEOUT, Endpoint, EndpointError, Endpoints, Poster

log = logging.getLogger("gridfs.events")

NOTIFICATION_PROP = "s3.notification"
ETAG_PROP, SSE_SIZE_PROP = "s3.etag", "s3.sse-size"  # as gateways.s3.objects and .sse keep them
CREATED = ("Put", "Post", "Copy", "CompleteMultipartUpload")
REMOVED = ("Delete", "DeleteMarkerCreated")
# Every event name a configuration may list: the wildcards and the names above.
EVENT_NAMES = ("s3:ObjectCreated:*", *(f"s3:ObjectCreated:{n}" for n in CREATED),
               "s3:ObjectRemoved:*", *(f"s3:ObjectRemoved:{n}" for n in REMOVED))
ORIGIN_NAMES = {"put": "Put", "post": "Post", "copy": "Copy", "multipart": "CompleteMultipartUpload",
                "rename": "Copy"}
ENDPOINT_TTL = 5.0  # s: a registered endpoint's URL is read again at most this often


@dataclass(frozen=True)
class Rule:
    """One TopicConfiguration (or Queue-, CloudFunction-): where, for which events, for which keys."""

    id: str
    kind: str  # Topic | Queue | CloudFunction: the element it came in, answered back as it was given
    arn: str
    endpoint: str  # the registered endpoint's name, from the ARN
    events: tuple[str, ...]
    prefix: str = ""
    suffix: str = ""

    def matches(self, event_name: str, key: str) -> bool:
        """``event_name`` as in a record (``ObjectCreated:Put``)."""
        family = event_name.split(":", 1)[0]
        return (f"s3:{event_name}" in self.events or f"s3:{family}:*" in self.events) \
            and key.startswith(self.prefix) and key.endswith(self.suffix)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "arn": self.arn, "endpoint": self.endpoint,
                "events": list(self.events), "prefix": self.prefix, "suffix": self.suffix}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Rule:
        return cls(str(d["id"]), str(d["kind"]), str(d["arn"]), str(d["endpoint"]), tuple(d["events"]),
                   str(d.get("prefix", "")), str(d.get("suffix", "")))


def rules_of(properties: dict[str, str]) -> list[Rule]:
    """A bucket's rules; none when the property is absent or unreadable (logged: it is only ever written by
    the gateway after validation, so that would be a hand edit)."""
    raw = properties.get(NOTIFICATION_PROP)
    if not raw:
        return []
    try:
        return [Rule.from_json(d) for d in json.loads(raw)]
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("unreadable %s property ignored: %s", NOTIFICATION_PROP, exc)
        return []


@dataclass(frozen=True)
class Change:
    """One S3 event of one key, before it is matched against the rules."""

    name: str  # ObjectCreated:Put, ObjectRemoved:Delete...
    key: str
    version: int | None
    size: int | None = None  # created only


def changes_of(event: dict[str, Any]) -> list[Change]:
    data = event["data"]
    if event["type"] == "content.new":
        created = Change(f"ObjectCreated:{ORIGIN_NAMES.get(data.get('origin') or 'put', 'Put')}", data["key"],
                         data.get("version"), data.get("size"))
        renamed = data.get("renamed_from")
        return [created, *([Change("ObjectRemoved:Delete", renamed, None)] if renamed else [])]
    if event["type"] == "content.deleted" and data.get("reason") == "deleted":
        name = "ObjectRemoved:DeleteMarkerCreated" if data.get("marker_created") else "ObjectRemoved:Delete"
        return [Change(name, data["key"], data.get("version"))]
    return []


def _version_id(container: ContainerInfo, version: int | None) -> str | None:
    """As the gateway answers it: none in an unversioned bucket, "null" in a suspended one."""
    if version is None or container.versioning == "disabled":
        return None
    return str(version) if container.versioning == "enabled" else "null"


def record(event: dict[str, Any], change: Change, rule: Rule, container: ContainerInfo,
           etag: str | None, size: int | None) -> dict[str, Any]:
    """AWS's event record (``eventVersion`` 2.1); the key URL-encoded as AWS does (a space is ``+``)."""
    ts = float(event["ts"])
    obj: dict[str, Any] = {"key": quote_plus(change.key, safe="/")}
    if change.name.startswith("ObjectCreated"):
        obj.update(size=size, eTag=etag)
    if (vid := _version_id(container, change.version)) is not None:
        obj["versionId"] = vid
    # Grows with the commit time, then the outbox id: later changes of a key sort after earlier ones.
    obj["sequencer"] = f"{int(ts * 1e6):016X}{int(event['id']):08X}"
    return {
        "eventVersion": "2.1", "eventSource": "gridfs:s3",
        "awsRegion": container.properties.get("s3.location") or "us-east-1",
        "eventTime": datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "eventName": change.name,
        "s3": {"s3SchemaVersion": "1.0", "configurationId": rule.id,
               "bucket": {"name": container.bucket, "arn": f"arn:aws:s3:::{container.bucket}"},
               "object": obj},
    }


class S3Notifier:
    """The handler of ``content.new`` and ``content.deleted``: idempotent up to a repeated POST."""

    def __init__(self, directory: DirectoryClient, endpoints: Endpoints, poster: Poster,
                 account: str = DEFAULT_ACCOUNT) -> None:
        self.directory, self.endpoints, self.poster, self.account = directory, endpoints, poster, account
        self._buckets: dict[str, tuple[float, ContainerInfo | None]] = {}  # name -> (read at, wall clock)
        self._endpoints: dict[str, tuple[float, Endpoint | None]] = {}  # name -> (read at, monotonic)
        self._lock = threading.Lock()
        self.sent = 0

    @classmethod
    def for_grid(cls, cfg: GridConfig) -> S3Notifier:
        """``[notify] timeout`` (s, default 5): how long a webhook may take to accept a POST."""
        timeout = float(cfg.extra.get("notify", {}).get("timeout", DEFAULT_TIMEOUT))
        # Short retries: a directory away must not hold the agent's loop (the event is retried later).
        return cls(DirectoryClient(cfg.directory_url, cfg.secret, retry_for=2.0), Endpoints(cfg), Poster(cfg, timeout))

    def _container(self, bucket: str, since: float) -> ContainerInfo | None:
        """The bucket as read after ``since`` (the event's commit time): a cached one read before could miss a
        configuration set between the two."""
        with self._lock:
            cached = self._buckets.get(bucket)
        if cached is not None and cached[0] >= since:
            return cached[1]
        read_at = time.time()
        try:
            container: ContainerInfo | None = self.directory.get_container(self.account, bucket, stats=False)
        except NoSuchContainer:
            container = None  # deleted since: its notifications went with it
        with self._lock:
            self._buckets[bucket] = (read_at, container)
        return container

    def _endpoint(self, name: str) -> Endpoint | None:
        cached = self._endpoints.get(name)
        if cached is not None and time.monotonic() - cached[0] < ENDPOINT_TTL:
            return cached[1]
        endpoint = self.endpoints.get(name)
        self._endpoints[name] = (time.monotonic(), endpoint)
        return endpoint

    def _object(self, container: ContainerInfo, change: Change) -> tuple[str | None, int | None]:
        """ETag and size as S3 shows them (the plaintext's for an encrypted object), from the version's record;
        the event's size and no ETag when the version is gone already."""
        try:
            info = self.directory.get_object(self.account, container.bucket, change.key, version=change.version,
                                             chunks=False)
        except NoSuchObject:
            return None, change.size
        props = info.properties
        size = int(props[SSE_SIZE_PROP]) if SSE_SIZE_PROP in props else info.size
        return props.get(ETAG_PROP) or info.hash or info.content_id, size

    def __call__(self, event: dict[str, Any]) -> None:
        data = event["data"]
        if data.get("account") != self.account:  # only S3's account has S3 buckets
            return
        changes = changes_of(event)
        if not changes:
            return
        container = self._container(data["bucket"], float(event["ts"]))
        rules = rules_of(container.properties) if container is not None else []
        for change in changes:
            matched = [r for r in rules if r.matches(change.name, change.key)]
            if not matched:
                continue
            assert container is not None
            etag, size = self._object(container, change) if change.name.startswith("ObjectCreated") \
                else (None, None)
            for rule in matched:
                endpoint = self._endpoint(rule.endpoint)
                if endpoint is None:  # unregistered since the configuration was set: retried, then dead
                    raise EndpointError(f"no webhook endpoint named {rule.endpoint!r} is registered")
                self.poster.post(endpoint.url, {"Records": [record(event, change, rule, container, etag, size)]})
                self.sent += 1
