"""S3 users and their keys, kept in the grid itself so every gateway sees the same ones.

One object per access key in the bucket ``s3-users`` of the account ``s3system``
(which S3 listings never show), its secret key sealed under the grid's master key
(``credentials``): opening the store takes that key, the operator's credential. A
gateway caches keys for a few seconds; a deleted user stops working within that time.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import json
import os
import re
import secrets
import string
import threading
import time
from dataclasses import asdict, dataclass

from gridfs.client import GridClient
from gridfs.common.errors import AlreadyExists, NoSuchContainer, NoSuchObject
from gridfs.gateways.s3 import credentials, masterkey, owners, sealed

ACCOUNT = "s3system"
BUCKET = "s3-users"
NAME_RE = re.compile(r"^[A-Za-z0-9_.@+=-]{1,64}\Z")
CACHE_TTL = 5.0


@dataclass
class User:
    name: str
    access_key: str
    secret_key: str
    created: float


class UserStore:
    def __init__(self, config: object = None, master_key: masterkey.MasterKey | None = None,
                 master_key_file: str | os.PathLike | None = None) -> None:
        self.client = GridClient(config, account=ACCOUNT)  # type: ignore[arg-type]
        self.config = config
        self.master = master_key or masterkey.load(self.client.config, master_key_file)
        self._cache: dict[str, tuple[User | None, float]] = {}
        self._lock = threading.Lock()
        self._opened = False

    def open(self) -> None:
        """Once: refuse a master key that is not the grid's, then seal the entries stored in clear, and the
        bucket owners, ACLs and policies recorded before they were sealed."""
        if self._opened:
            return
        credentials.check_key(self.client, BUCKET, self.master)
        for access_key in self._keys():
            self._load(access_key)  # seals an entry it finds in clear
        owners.seal_recorded(self.config, self.master)
        sealed.seal_recorded(self.config, self.master)
        self._opened = True

    def _keys(self) -> list[str]:
        try:
            return [o.key for o in self.client.iter_list(BUCKET) if not isinstance(o, str)]
        except NoSuchContainer:
            return []

    def _store(self, user: User) -> None:
        entry = credentials.seal_entry(asdict(user), self.master)
        self.client.put(BUCKET, user.access_key, json.dumps(entry).encode())

    def create(self, name: str) -> User:
        if not NAME_RE.match(name):
            raise ValueError(f"invalid user name {name!r}: 1-64 of A-Z a-z 0-9 _ . @ + = -")
        self.open()
        if any(u.name == name for u in self.list()):
            raise AlreadyExists(f"user {name!r} already exists")
        alphabet = string.ascii_uppercase + string.digits
        user = User(name, "GK" + "".join(secrets.choice(alphabet) for _ in range(18)),
                    secrets.token_urlsafe(30), time.time())
        self._store(user)
        return user

    def list(self) -> list[User]:
        self.open()
        return [self._load(k) for k in self._keys()]

    def _load(self, access_key: str) -> User:
        fields, in_clear = credentials.open_entry(json.loads(self.client.get(BUCKET, access_key)), self.master)
        user = User(**fields)
        if in_clear:  # written before secrets were sealed: sealed now
            self._store(user)
        return user

    def delete(self, name: str) -> int:
        self.open()
        gone = 0
        for user in self.list():
            if user.name == name:
                self.client.delete(BUCKET, user.access_key)
                gone += 1
        with self._lock:
            self._cache.clear()
        return gone

    def lookup(self, access_key: str) -> User | None:
        """The user owning an access key (cached), or None."""
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(access_key)
        if hit and now - hit[1] < CACHE_TTL:
            return hit[0]
        user: User | None
        self.open()
        try:
            user = self._load(access_key) if re.fullmatch(r"[A-Z0-9]{4,64}", access_key) else None
        except (NoSuchObject, NoSuchContainer):
            user = None
        with self._lock:
            self._cache[access_key] = (user, now)
        return user
