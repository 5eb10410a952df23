"""Webhook endpoints: the operator's list of URLs that S3 bucket notifications may be sent to, and the POST.

An S3 user never gives a URL. The operator registers each endpoint under a name (``grid notify
add-endpoint NAME URL``); a bucket's notification configuration names it by the ARN
``arn:gridfs:webhook:REGION:ACCOUNT:NAME`` (region and account may be empty and are not read), so what the
grid calls out to is only what the operator listed. The list lives in the grid, one JSON object per name
in the bucket ``s3-webhooks`` of the system account ``s3system`` that S3 never shows, so every gateway and
the event agent see the same one; writing it takes grid.toml (the namespace secret), as ``grid`` does.

A delivery never carries the namespace secret nor any grid header, follows no redirect, and has a
timeout. An endpoint whose address is one of the grid's own services (any the conscience lists, or a
URL of grid.toml) is refused when it is registered and again at each delivery (addresses move), so a
webhook cannot be made into a way to call the grid's internal APIs; those would refuse a call without
the secret anyway.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import urllib3

from gridfs.client import GridClient
from gridfs.common.config import GridConfig
from gridfs.common.errors import AlreadyExists, GridError, NoSuchContainer, NoSuchObject
from gridfs.conscience.client import ConscienceClient

# The account S3 users live in too (gateways.s3.users.ACCOUNT): S3 listings never show it.
ACCOUNT = "s3system"
BUCKET = "s3-webhooks"
NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}\Z")
ARN_RE = re.compile(r"^arn:gridfs:webhook:[A-Za-z0-9-]*:[A-Za-z0-9_-]*:([A-Za-z0-9_.-]{1,64})\Z")
MAX_URL = 2048
DEFAULT_TIMEOUT = 5.0


class EndpointError(GridError):
    """A webhook URL or name the grid does not take, or an endpoint that refused a delivery."""

    status, code = 400, "BadRequest"


def arn_of(name: str) -> str:
    return f"arn:gridfs:webhook:::{name}"


def name_of_arn(arn: str) -> str | None:
    """The endpoint name an ARN of ours names, None for any other ARN (an AWS one, a typo)."""
    match = ARN_RE.match(arn)
    return match.group(1) if match else None


def check_url(url: str) -> str:
    """An http(s) URL with a host, no credentials and no fragment: the URL, or EndpointError."""
    if len(url) > MAX_URL or any(c.isspace() or ord(c) < 32 for c in url):
        raise EndpointError(f"a webhook URL is at most {MAX_URL} characters, without spaces or control characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EndpointError(f"a webhook URL is http:// or https:// with a host, not {url!r}")
    if parts.username is not None or parts.password is not None:
        # It would be shown by `grid notify endpoints` and in logs: a token belongs in the path or query.
        raise EndpointError("a webhook URL may not carry a user or password")
    if parts.fragment:
        raise EndpointError("a webhook URL has no #fragment")
    try:
        parts.port  # noqa: B018 - raises on a port out of range
    except ValueError as exc:
        raise EndpointError(f"bad port in {url!r}") from exc
    return url


def _port(parts: Any) -> int:
    return parts.port or (443 if parts.scheme == "https" else 80)


def grid_addresses(cfg: GridConfig, conscience: ConscienceClient | None) -> set[tuple[str, int]]:
    """(host, port) of every grid service: those the conscience lists, and the URLs grid.toml names."""
    addrs: set[tuple[str, int]] = set()
    urls = [cfg.conscience_url, cfg.directory_url]
    for section in cfg.extra.values():
        if isinstance(section, dict) and isinstance(section.get("url"), str):
            urls.append(section["url"])
    for svc in cfg.extra.get("local", {}).get("services", []):
        urls.append(svc.get("url") or "")
    for row in conscience.services() if conscience is not None else []:
        urls.append("http://" + str(row.get("addr", "")))
    for url in urls:
        parts = urlsplit(url if "://" in url else "http://" + url)
        if parts.hostname:
            try:
                addrs.add((parts.hostname, _port(parts)))
            except ValueError:
                continue
    return addrs


def _ips(host: str, port: int) -> set[str]:
    try:
        return {str(info[4][0]) for info in socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)}
    except OSError:
        return set()


def check_not_grid(url: str, grid: set[tuple[str, int]]) -> None:
    """EndpointError when ``url`` reaches one of the ``grid`` addresses (``grid_addresses``), compared after
    name resolution; a service listening on every address counts for every address with its port."""
    parts = urlsplit(url)
    port = _port(parts)
    target = _ips(parts.hostname or "", port) | {parts.hostname or ""}
    for host, grid_port in grid:
        if grid_port != port:
            continue
        try:
            unspecified = ipaddress.ip_address(host).is_unspecified
        except ValueError:
            unspecified = False
        if unspecified or target & (_ips(host, grid_port) | {host}):
            raise EndpointError(f"{url} is the address of one of the grid's own services: refused")


@dataclass(frozen=True)
class Endpoint:
    name: str
    url: str
    created: float


class Endpoints:
    """The registry, read and written through the client library with grid.toml's credentials."""

    def __init__(self, config: GridConfig | str | None = None) -> None:
        self.client = GridClient(config, account=ACCOUNT)  # type: ignore[arg-type]
        self.config = self.client.config

    def _conscience(self) -> ConscienceClient | None:
        return ConscienceClient(self.config.conscience_url, self.config.secret).quick() \
            if self.config.conscience_url else None

    def add(self, name: str, url: str, replace: bool = False) -> Endpoint:
        if not NAME_RE.match(name):
            raise EndpointError(f"invalid endpoint name {name!r}: 1-64 of A-Z a-z 0-9 _ . -")
        check_not_grid(check_url(url), grid_addresses(self.config, self._conscience()))
        self.client.create_bucket(BUCKET, exist_ok=True)
        endpoint = Endpoint(name, url, time.time())
        try:
            self.client.put(BUCKET, name, json.dumps(endpoint.__dict__).encode(), if_none_match=not replace)
        except AlreadyExists as exc:
            raise AlreadyExists(f"endpoint {name!r} exists (--replace to change its URL)") from exc
        return endpoint

    def get(self, name: str) -> Endpoint | None:
        try:
            return Endpoint(**json.loads(self.client.get(BUCKET, name)))
        except (NoSuchContainer, NoSuchObject):
            return None

    def list(self) -> list[Endpoint]:
        try:
            names = [o.key for o in self.client.iter_list(BUCKET) if not isinstance(o, str)]
        except NoSuchContainer:
            return []
        return [e for n in names if (e := self.get(n)) is not None]

    def remove(self, name: str) -> bool:
        try:
            self.client.delete(BUCKET, name)
        except (NoSuchContainer, NoSuchObject):
            return False
        return True


class Poster:
    """POSTs JSON to endpoints: no retries here (the event agent retries), no redirects, a timeout, and
    never a grid credential."""

    ADDRESSES_TTL = 5.0  # s: the grid's addresses are asked of the conscience at most this often

    def __init__(self, config: GridConfig, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.config = config
        self.conscience = ConscienceClient(config.conscience_url, config.secret).quick() \
            if config.conscience_url else None
        # A fresh pool, not the grid's JsonClient: that one adds X-Grid-Secret to every request.
        self.http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=timeout, read=timeout))
        self._grid: tuple[float, set[tuple[str, int]]] = (float("-inf"), set())

    def _grid_addresses(self) -> set[tuple[str, int]]:
        at, addrs = self._grid
        if time.monotonic() - at > self.ADDRESSES_TTL:
            # A conscience that does not answer fails the delivery (retried): never post unchecked.
            addrs = grid_addresses(self.config, self.conscience)
            self._grid = (time.monotonic(), addrs)
        return addrs

    def post(self, url: str, document: dict[str, Any]) -> int:
        """The endpoint's status; EndpointError (to be retried) when it is not 2xx or cannot be reached."""
        check_not_grid(url, self._grid_addresses())
        try:
            response = self.http.request("POST", url, body=json.dumps(document).encode(), redirect=False,
                                         headers={"Content-Type": "application/json", "User-Agent": "gridfs-notify"})
        except urllib3.exceptions.HTTPError as exc:
            raise EndpointError(f"POST {url}: {exc}") from exc
        if not 200 <= response.status < 300:
            raise EndpointError(f"POST {url}: answered {response.status}")
        return response.status
