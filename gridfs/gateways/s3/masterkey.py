"""The grid's master key: the root of the S3 gateway's encryption at rest, and the operator's credential.

32 random bytes (hex) in a file of its own, ``master.key`` (mode 0600), kept apart from grid.toml and its
namespace secret: ``grid up`` creates it next to grid.toml and names it under ``[s3] master_key_file``.
Only the S3 gateway and the admin commands (``grid user``, ``grid s3 chown``) read it; clients, storage
servers and the other services never need it. It wraps every SSE-S3 object's data key and seals the S3
users' secret keys, so a holder of the namespace secret (every ``grid://`` client host), who can read
the grid's objects, reads neither.

The grid records which key it was first used with (its key id, an HMAC of a constant, never the key);
a gateway or admin command holding another key is refused before it seals or opens anything.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gridfs.common.config import ConfigError, GridConfig, create_secret_file

KEY_BYTES = 32
NONCE_BYTES = 12
DEFAULT_NAME = "master.key"
SETTING = "master_key_file"  # under [s3] in grid.toml


class MasterKeyError(ConfigError):
    """No master key, an unreadable or exposed one, or not the key this grid's secrets were sealed with."""

    code = "MasterKeyError"


@dataclass(frozen=True)
class MasterKey:
    secret: bytes
    path: Path

    @property
    def key_id(self) -> str:
        """Names the key without revealing it: what the grid records to refuse another key."""
        return hmac.new(self.secret, b"gridfs master key id", hashlib.sha256).hexdigest()[:32]

    def seal(self, plaintext: bytes, context: bytes) -> str:
        """AES-256-GCM under the master key, bound to ``context`` (what the sealed value belongs to)."""
        nonce = secrets.token_bytes(NONCE_BYTES)
        return base64.b64encode(nonce + AESGCM(self.secret).encrypt(nonce, plaintext, context)).decode()

    def unseal(self, sealed: str, context: bytes) -> bytes:
        try:
            raw = base64.b64decode(sealed, validate=True)
            return AESGCM(self.secret).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context)
        except (InvalidTag, binascii.Error, ValueError) as exc:
            raise MasterKeyError(f"a value sealed for {context!r} does not open with the master key {self.path} "
                                 "(another key, or a damaged value)") from exc


def key_path(config: GridConfig, override: str | os.PathLike | None = None) -> Path:
    """The master key file: ``override``, else ``[s3] master_key_file``, else ``master.key`` beside grid.toml."""
    if override:
        return Path(override)
    named = config.extra.get("s3", {}).get(SETTING, "")
    if named:
        return Path(named)
    base = config.path.parent if config.path else Path.cwd()
    return base / DEFAULT_NAME


def create(path: Path) -> bool:
    """Write a new random key at ``path`` (0600) unless one is there; True when this call made it."""
    return create_secret_file(path, secrets.token_bytes(KEY_BYTES).hex())


def read(path: Path) -> MasterKey:
    try:
        st = path.stat()
        text = path.read_text().strip()
    except FileNotFoundError as exc:
        raise MasterKeyError(f"no master key at {path}: the S3 gateway and the admin commands need the grid's "
                             f"master key ([s3] {SETTING} in grid.toml; grid up creates one)") from exc
    except OSError as exc:
        raise MasterKeyError(f"cannot read the master key {path}: {exc.strerror}") from exc
    if st.st_mode & 0o077:
        raise MasterKeyError(f"the master key {path} is readable by others (mode {st.st_mode & 0o777:o}): "
                             "chmod 600 it")
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        secret = b""
    if len(secret) != KEY_BYTES:
        raise MasterKeyError(f"{path} is not a master key ({KEY_BYTES * 2} hex digits)")
    return MasterKey(secret, path)


def load(config: GridConfig, override: str | os.PathLike | None = None, create_missing: bool = False) -> MasterKey:
    """The master key of ``config`` (``create_missing``: make one where it is named when there is none)."""
    path = key_path(config, override)
    if create_missing:
        create(path)
    return read(path)
