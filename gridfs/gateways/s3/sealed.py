"""Properties that grant access count only with their seal: a bucket's ACL and policy, an object's owner and
ACL.

They are properties, which any holder of the namespace secret may write with the client library; every
client host holds that secret. So the gateway writes beside each ``<name>-seal``, an HMAC under the grid's
master key (which only the gateway and the admin commands read) of where the value is (the bucket, or the
bucket and key) and of the name and value; it reads them back through :func:`trusted`, which drops a value
whose seal does not hold. No value is the narrowest reading: a bucket's owner alone; for an object, the
bucket owner as its owner (as for objects written outside S3) and a private ACL. :class:`SealingClient` is
the gateway's grid client, doing both on every bucket and object record it writes or reads, so no handler
can forget it.

Values set before seals existed are sealed once, the first time a gateway opens the grid with the master
key (``seal_recorded``), noted in a file beside the master key as bucket owners are (``owners``).
What a seal does not stop: a holder of the namespace secret may remove a value with its seal (the narrowest
reading follows) or put back a sealed value the same bucket (or the same key: another version of it) had
before. A copy or rename outside S3 carries the source's seals, which do not hold for the new key.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import logging
from typing import Any

from gridfs.client import GridClient
from gridfs.directory.model import ContainerInfo, ListResult, ObjectInfo, UploadInfo
from gridfs.gateways.s3 import grants, policy
from gridfs.gateways.s3.masterkey import MasterKey
from gridfs.gateways.s3.owners import OWNER_PROP

BUCKET_SEALED = (grants.ACL_PROP, policy.POLICY_PROP)
OBJECT_SEALED = (OWNER_PROP, grants.ACL_PROP)
SUFFIX = "-seal"
DONE_SUFFIX = ".props-sealed"  # beside the master key file: the one-time sealing of bucket properties is done
OBJECTS_DONE_SUFFIX = ".object-props-sealed"  # and that of object properties
log = logging.getLogger("gridfs.s3")


def bucket_scope(bucket: str) -> str:
    return f"gridfs bucket property\0{bucket}"


def object_scope(bucket: str, key: str) -> str:
    return f"gridfs object property\0{bucket}\0{key}"


def seal(key: MasterKey, scope: str, name: str, value: str) -> str:
    return hmac.new(key.secret, f"{scope}\0{name}\0{value}".encode(), hashlib.sha256).hexdigest()


def _without_seals(names: tuple[str, ...], props: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in props.items() if not (k.endswith(SUFFIX) and k.removesuffix(SUFFIX) in names)}


def sealed(key: MasterKey, scope: str, names: tuple[str, ...], props: dict[str, str]) -> dict[str, str]:
    """``props`` with a fresh seal beside each of ``names`` present, and no seal left without its property."""
    out = _without_seals(names, props)
    for name in names:
        if name in out:
            out[name + SUFFIX] = seal(key, scope, name, out[name])
    return out


def trusted(key: MasterKey, scope: str, names: tuple[str, ...], props: dict[str, str]) -> dict[str, str]:
    """``props`` without those of ``names`` whose seal does not hold, and without the seals."""
    out = _without_seals(names, props)
    for name in names:
        if name in out and not hmac.compare_digest(props.get(name + SUFFIX, ""), seal(key, scope, name, out[name])):
            log.warning("%s: its %s has no valid seal (written outside the gateway?): ignored",
                        scope.replace("\0", " "), name)
            del out[name]
    return out


def _changes_sealed(key: MasterKey, scope: str, changes: dict[str, str | None]) -> dict[str, str | None]:
    """Property changes (None removes) with each sealed value's seal changed alike (and no seal given)."""
    out = {k: v for k, v in changes.items() if not (k.endswith(SUFFIX) and k.removesuffix(SUFFIX) in OBJECT_SEALED)}
    for name in OBJECT_SEALED:
        if name in changes:
            value = changes[name]
            out[name + SUFFIX] = None if value is None else seal(key, scope, name, value)
    return out


class SealingClient(GridClient):
    """The gateway's grid client: access-granting properties sealed as they are written, checked as they are
    read, for buckets and objects alike."""

    def __init__(self, config: Any, master_key: MasterKey, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.master_key = master_key

    # -- buckets --

    def _trusted(self, info: ContainerInfo) -> ContainerInfo:
        props = trusted(self.master_key, bucket_scope(info.bucket), BUCKET_SEALED, info.properties)
        return dataclasses.replace(info, properties=props)

    def _bucket_sealed(self, bucket: str, props: dict[str, str]) -> dict[str, str]:
        return sealed(self.master_key, bucket_scope(bucket), BUCKET_SEALED, props)

    def bucket_info(self, bucket: str, *, stats: bool = True) -> ContainerInfo:
        return self._trusted(super().bucket_info(bucket, stats=stats))

    def list_buckets(self, *, stats: bool = True) -> list[ContainerInfo]:
        return [self._trusted(info) for info in super().list_buckets(stats=stats)]

    def set_bucket_properties(self, bucket: str, properties: dict[str, str]) -> ContainerInfo:
        return self._trusted(super().set_bucket_properties(bucket, self._bucket_sealed(bucket, properties)))

    def create_bucket(self, bucket: str, *, properties: dict[str, str] | None = None, **kwargs: Any) -> ContainerInfo:
        props = self._bucket_sealed(bucket, properties) if properties else properties
        return self._trusted(super().create_bucket(bucket, properties=props, **kwargs))

    # -- objects --

    def _object(self, info: ObjectInfo) -> ObjectInfo:
        props = trusted(self.master_key, object_scope(info.bucket, info.key), OBJECT_SEALED, info.properties)
        return dataclasses.replace(info, properties=props)

    def _object_sealed(self, bucket: str, key: str, props: dict[str, str] | None) -> dict[str, str] | None:
        return None if props is None else sealed(self.master_key, object_scope(bucket, key), OBJECT_SEALED, props)

    def put(self, bucket: str, key: str, data: Any, *, properties: dict[str, str] | None = None,
            **kwargs: Any) -> ObjectInfo:
        return self._object(super().put(bucket, key, data, properties=self._object_sealed(bucket, key, properties),
                                        **kwargs))

    def copy(self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str, *,
             properties: dict[str, str] | None = None, **kwargs: Any) -> ObjectInfo:
        # Without properties the copy carries its source's, read through head: their seals are left out, so an
        # owner or ACL carried that way counts for nothing at the new key.
        return self._object(super().copy(src_bucket, src_key, dst_bucket, dst_key,
                                         properties=self._object_sealed(dst_bucket, dst_key, properties), **kwargs))

    def set_properties(self, bucket: str, key: str, properties: dict[str, str | None], **kwargs: Any) -> ObjectInfo:
        changes = _changes_sealed(self.master_key, object_scope(bucket, key), properties)
        return self._object(super().set_properties(bucket, key, changes, **kwargs))

    def head(self, bucket: str, key: str, **kwargs: Any) -> ObjectInfo:
        return self._object(super().head(bucket, key, **kwargs))

    def list(self, bucket: str, **kwargs: Any) -> ListResult:
        page = super().list(bucket, **kwargs)
        return dataclasses.replace(page, objects=[self._object(o) for o in page.objects])

    def list_versions(self, bucket: str, **kwargs: Any) -> dict:
        out = super().list_versions(bucket, **kwargs)
        out["versions"] = [self._object(o) for o in out["versions"]]
        return out

    def create_multipart(self, bucket: str, key: str, *, properties: dict[str, str] | None = None,
                         **kwargs: Any) -> UploadInfo:
        return super().create_multipart(bucket, key, properties=self._object_sealed(bucket, key, properties),
                                        **kwargs)

    def complete_multipart(self, bucket: str, key: str, upload_id: str, parts: Any, *,
                           properties: dict[str, str] | None = None, **kwargs: Any) -> ObjectInfo:
        # The upload's properties were sealed when it was created; those added now are sealed alike.
        return self._object(super().complete_multipart(bucket, key, upload_id, parts,
                                                       properties=self._object_sealed(bucket, key, properties),
                                                       **kwargs))


def _unsealed(names: tuple[str, ...], props: dict[str, str]) -> bool:
    return any(name in props and name + SUFFIX not in props for name in names)


def seal_recorded(config: object, key: MasterKey) -> None:
    """Once per master key file: seal the ACLs and policies that buckets carried before they were sealed, and
    the owners and ACLs of object versions (each pass noted apart: objects were sealed a release later)."""
    done = key.path.with_name(key.path.name + DONE_SUFFIX)
    objects_done = key.path.with_name(key.path.name + OBJECTS_DONE_SUFFIX)
    if done.exists() and objects_done.exists():
        return
    with GridClient(config) as client:  # type: ignore[arg-type]
        for container in client.list_buckets(stats=False):
            bucket, props = container.bucket, container.properties
            if not done.exists() and _unsealed(BUCKET_SEALED, props):
                client.set_bucket_properties(bucket, sealed(key, bucket_scope(bucket), BUCKET_SEALED, props))
            if not objects_done.exists():
                _seal_objects(client, key, bucket)
    for marker in (done, objects_done):
        try:
            marker.touch(mode=0o600)
        except OSError as exc:  # sealed all the same; only the next start will look again
            log.warning("cannot note that properties are sealed (%s): %s", marker, exc)


def _seal_objects(client: GridClient, key: MasterKey, bucket: str) -> None:
    """Seal the owner and ACL of every object version of ``bucket`` that has them unsealed."""
    marker: dict[str, Any] = {}
    while True:
        page = client.list_versions(bucket, **marker)
        for info in page["versions"]:
            if not info.delete_marker and _unsealed(OBJECT_SEALED, info.properties):
                scope = object_scope(bucket, info.key)
                changes = {name + SUFFIX: seal(key, scope, name, info.properties[name])
                           for name in OBJECT_SEALED if name in info.properties}
                client.set_properties(bucket, info.key, changes, version=info.version)  # type: ignore[arg-type]
        if not page["truncated"]:
            return
        marker = {"key_marker": page["next_key_marker"], "version_marker": page["next_version_marker"]}
