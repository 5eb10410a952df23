"""Bucket owners the gateway can trust: a bucket's ``s3.owner`` counts only with its seal.

The owner is a bucket property, which any holder of the namespace secret may write through the client
library. So the gateway, CreateBucket and ``grid s3 chown`` (the admin credential) write with it
``s3.owner-seal``, an HMAC of the bucket and owner under the grid's master key; an owner without a valid
seal is no owner (the bucket is as one made outside S3). Owners recorded before seals existed are sealed
once, the first time a gateway or admin command opens the grid with the master key after the upgrade
(``seal_recorded``). That it was done is noted in a file beside the master key, not in the grid: a mark in
the grid could be removed by a holder of the namespace secret to have forged owners sealed too.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import hashlib
import hmac
import logging

from gridfs.client import GridClient
from gridfs.gateways.s3.masterkey import MasterKey

OWNER_PROP = "s3.owner"  # context re-exports it: the one name of the property
SEAL_PROP = "s3.owner-seal"
log = logging.getLogger("gridfs.s3")
DONE_SUFFIX = ".owners-sealed"  # beside the master key file: the one-time sealing is done


def seal(key: MasterKey, bucket: str, owner: str) -> str:
    return hmac.new(key.secret, f"gridfs bucket owner\0{bucket}\0{owner}".encode(), hashlib.sha256).hexdigest()


def owner_props(key: MasterKey, bucket: str, owner: str) -> dict[str, str]:
    """The properties that make ``owner`` the owner of ``bucket``."""
    return {OWNER_PROP: owner, SEAL_PROP: seal(key, bucket, owner)}


def trusted_owner(key: MasterKey, bucket: str, props: dict[str, str]) -> str:
    """The bucket's owner if its seal holds, else "" (changed outside the gateway and the admin commands)."""
    owner = props.get(OWNER_PROP, "")
    if owner and hmac.compare_digest(props.get(SEAL_PROP, ""), seal(key, bucket, owner)):
        return owner
    return ""


def seal_recorded(config: object, key: MasterKey) -> None:
    """Once per master key file: seal the owners that buckets carried before owners were sealed."""
    done = key.path.with_name(key.path.name + DONE_SUFFIX)
    if done.exists():
        return
    with GridClient(config) as client:  # type: ignore[arg-type]
        for container in client.list_buckets():
            owner = container.properties.get(OWNER_PROP, "")
            if owner and SEAL_PROP not in container.properties:
                client.set_bucket_properties(container.bucket, {**container.properties,
                                                                **owner_props(key, container.bucket, owner)})
    try:
        done.touch(mode=0o600)
    except OSError as exc:  # sealed all the same; only the next start will look again
        log.warning("cannot note that bucket owners are sealed (%s): %s", done, exc)
