"""Bucket properties that grant access count only with their seal: the bucket's ACL and its policy.

They are bucket properties, which any holder of the namespace secret may write with the client library;
every client host holds that secret. So the gateway writes beside each ``<name>-seal``, an HMAC of the
bucket, the name and the value under the grid's master key (which only the gateway and the admin commands
read), and reads them back through :func:`trusted`, which drops a value whose seal does not hold: for
either property, no value is the narrowest (the owner alone). :class:`SealingClient` is the gateway's grid
client, doing both on every bucket it reads or writes, so no handler can forget it.

Properties set before seals existed are sealed once, the first time a gateway opens the grid with the
master key (``seal_recorded``), noted in a file beside the master key as bucket owners are (``owners``).
What a seal does not stop: a holder of the namespace secret may remove a value with its seal (the bucket
falls back to the owner alone) or put back an earlier sealed value of the same bucket. Objects' ACLs are
not sealed.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import logging
from typing import Any

from gridfs.client import GridClient
from gridfs.directory.model import ContainerInfo
from gridfs.gateways.s3 import grants, policy
from gridfs.gateways.s3.masterkey import MasterKey

SEALED = (grants.ACL_PROP, policy.POLICY_PROP)
SUFFIX = "-seal"
DONE_SUFFIX = ".props-sealed"  # beside the master key file: the one-time sealing is done
log = logging.getLogger("gridfs.s3")


def seal(key: MasterKey, bucket: str, name: str, value: str) -> str:
    return hmac.new(key.secret, f"gridfs bucket property\0{bucket}\0{name}\0{value}".encode(),
                    hashlib.sha256).hexdigest()


def _without_seals(props: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in props.items() if not (k.endswith(SUFFIX) and k.removesuffix(SUFFIX) in SEALED)}


def sealed(key: MasterKey, bucket: str, props: dict[str, str]) -> dict[str, str]:
    """``props`` with a fresh seal beside each sealed property, and no seal left without its property."""
    out = _without_seals(props)
    for name in SEALED:
        if name in out:
            out[name + SUFFIX] = seal(key, bucket, name, out[name])
    return out


def trusted(key: MasterKey, bucket: str, props: dict[str, str]) -> dict[str, str]:
    """``props`` without the sealed properties whose seal does not hold, and without the seals."""
    out = _without_seals(props)
    for name in SEALED:
        if name in out and not hmac.compare_digest(props.get(name + SUFFIX, ""), seal(key, bucket, name, out[name])):
            log.warning("bucket %s: its %s has no valid seal (written outside the gateway?): ignored", bucket, name)
            del out[name]
    return out


class SealingClient(GridClient):
    """The gateway's grid client: bucket properties sealed as they are written, checked as they are read."""

    def __init__(self, config: Any, master_key: MasterKey, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.master_key = master_key

    def _trusted(self, info: ContainerInfo) -> ContainerInfo:
        return dataclasses.replace(info, properties=trusted(self.master_key, info.bucket, info.properties))

    def bucket_info(self, bucket: str, *, stats: bool = True) -> ContainerInfo:
        return self._trusted(super().bucket_info(bucket, stats=stats))

    def list_buckets(self, *, stats: bool = True) -> list[ContainerInfo]:
        return [self._trusted(info) for info in super().list_buckets(stats=stats)]

    def set_bucket_properties(self, bucket: str, properties: dict[str, str]) -> ContainerInfo:
        return self._trusted(super().set_bucket_properties(bucket, sealed(self.master_key, bucket, properties)))

    def create_bucket(self, bucket: str, *, properties: dict[str, str] | None = None, **kwargs: Any) -> ContainerInfo:
        props = sealed(self.master_key, bucket, properties) if properties else properties
        return self._trusted(super().create_bucket(bucket, properties=props, **kwargs))


def seal_recorded(config: object, key: MasterKey) -> None:
    """Once per master key file: seal the ACLs and policies that buckets carried before they were sealed."""
    done = key.path.with_name(key.path.name + DONE_SUFFIX)
    if done.exists():
        return
    with GridClient(config) as client:  # type: ignore[arg-type]
        for container in client.list_buckets(stats=False):
            props = container.properties
            if any(name in props and name + SUFFIX not in props for name in SEALED):
                client.set_bucket_properties(container.bucket, sealed(key, container.bucket, props))
    try:
        done.touch(mode=0o600)
    except OSError as exc:  # sealed all the same; only the next start will look again
        log.warning("cannot note that bucket properties are sealed (%s): %s", done, exc)
