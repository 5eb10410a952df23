"""The operator's S3 commands that need the admin credential: the grid's master key.

``grid user create|list|delete`` and ``grid s3 chown`` run where the master key file is (``--master-key``,
else ``[s3] master_key_file`` in grid.toml): a host holding only grid.toml's namespace secret (every
``grid://`` client) can neither read S3 users' secrets nor make users, and this command refuses to give a
bucket to another S3 user (the gateway trusts only owners sealed with the key: ``owners``). A key other
than the grid's is refused before anything changes.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import os

from gridfs.client import GridClient
from gridfs.common.errors import GridError
from gridfs.gateways.s3 import owners
from gridfs.gateways.s3.users import UserStore


def set_owner(config: str | os.PathLike | None, bucket: str, owner: str,
              master_key_file: str | os.PathLike | None = None) -> str:
    """Give ``bucket`` to the S3 user ``owner`` ("": to nobody, closed to every S3 user); the previous owner."""
    store = UserStore(config, master_key_file=master_key_file)
    if owner and not any(u.name == owner for u in store.list()):  # list() checks the key first
        raise GridError(f"no S3 user named {owner!r}")
    with GridClient(config) as client:
        props = dict(client.bucket_info(bucket, stats=False).properties)
        before = owners.trusted_owner(store.master, bucket, props)
        if owner:
            props.update(owners.owner_props(store.master, bucket, owner))
        else:
            props.pop(owners.OWNER_PROP, None)
            props.pop(owners.SEAL_PROP, None)
        client.set_bucket_properties(bucket, props)
    return before
