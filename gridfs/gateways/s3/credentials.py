"""S3 users' secret keys sealed at rest under the grid's master key, and the check that the key is the grid's.

A user's entry in the ``s3-users`` bucket (see ``users``) holds its name, access key and creation time in
clear and its secret key sealed: AES-256-GCM under the master key, bound to the access key and the user
name, so that an entry copied under another access key or name does not open. A holder of the namespace
secret can read the bucket and sees no secret; without the master key they cannot forge an entry either.

Entries written before secrets were sealed (a ``secret_key`` field) are read as they are and sealed again
(``open_entry`` says so); the bucket records the id of the master key its entries are sealed with
(``check_key``), and another key is refused before anything is sealed with it.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

from typing import Any

from gridfs.client import GridClient
from gridfs.common.errors import NoSuchContainer
from gridfs.gateways.s3.masterkey import MasterKey, MasterKeyError

KEY_ID_PROP = "s3.master-key-id"
SEALED_FIELD, CLEAR_FIELD = "sealed_secret", "secret_key"


def _context(fields: dict[str, Any]) -> bytes:
    return f"s3-user\0{fields['access_key']}\0{fields['name']}".encode()


def seal_entry(fields: dict[str, Any], key: MasterKey) -> dict[str, Any]:
    """A user's fields as stored: the secret key sealed, never in clear."""
    stored = {k: v for k, v in fields.items() if k != CLEAR_FIELD}
    stored[SEALED_FIELD] = key.seal(str(fields[CLEAR_FIELD]).encode(), _context(fields))
    return stored


def open_entry(stored: dict[str, Any], key: MasterKey) -> tuple[dict[str, Any], bool]:
    """A stored entry's fields with the secret key opened, and whether it was stored in clear (to seal)."""
    if CLEAR_FIELD in stored:
        return {k: v for k, v in stored.items() if k != SEALED_FIELD}, True
    fields = {k: v for k, v in stored.items() if k != SEALED_FIELD}
    fields[CLEAR_FIELD] = key.unseal(str(stored.get(SEALED_FIELD, "")), _context(stored)).decode()
    return fields, False


def check_key(client: GridClient, bucket: str, key: MasterKey) -> None:
    """Refuse a master key other than the one ``bucket``'s entries are sealed with; record it the first time."""
    try:
        info = client.bucket_info(bucket, stats=False)
    except NoSuchContainer:
        client.create_bucket(bucket, exist_ok=True)
        info = client.bucket_info(bucket, stats=False)
    recorded = info.properties.get(KEY_ID_PROP, "")
    if recorded and recorded != key.key_id:
        raise MasterKeyError(f"the master key {key.path} is not this grid's: its S3 users' secrets are sealed "
                             "with another key (a wrong admin credential)")
    if not recorded:
        client.set_bucket_properties(bucket, {**info.properties, KEY_ID_PROP: key.key_id})
