"""The namespace configuration, ``grid.toml``.

``grid up`` writes it (mode 0600, it holds the namespace secret); every service and
client reads it. It is found through an explicit path, ``$GRID_CONFIG``, or the
default ``~/.gridfs/grid.toml``.

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from gridfs.common.errors import GridError

DEFAULT_DATA_DIR = Path.home() / ".gridfs"
DEFAULT_CHUNK_SIZE = 8 * 1024 * 1024
DEFAULT_POLICY = "EC63"
DEFAULT_ACCOUNT = "default"
# Seconds to wait for a storage server to accept a connection: well under a second on a LAN,
# so a read moves on to parity instead of waiting on a dead server (answers may take longer).
DEFAULT_CONNECT_TIMEOUT = 0.5


class ConfigError(GridError):
    code = "ConfigError"
    status = 500


@dataclass
class SizeRule:
    """Objects of at most ``max_size`` bytes get ``policy`` (first matching rule wins)."""

    max_size: int
    policy: str


@dataclass
class GridConfig:
    namespace: str = "GRID"
    secret: str = ""
    conscience_url: str = ""
    directory_url: str = ""
    chunk_size: int = DEFAULT_CHUNK_SIZE
    default_policy: str = DEFAULT_POLICY
    size_rules: list[SizeRule] = field(default_factory=list)
    # Extra policies declared by the operator: name -> {"method": "ec"|"copies", ...}
    policies: dict[str, dict[str, Any]] = field(default_factory=dict)
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    # Free-form sections owned by other parts (local grid, s3 gateway, ...).
    extra: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> GridConfig:
        p = find_config(path)
        try:
            raw = tomllib.loads(p.read_text())
        except FileNotFoundError as exc:
            raise ConfigError(
                f"no grid configuration at {p}: start a grid with 'grid up' or set GRID_CONFIG"
            ) from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: not valid TOML: {exc}") from exc
        return cls.from_dict(raw, path=p)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], path: Path | None = None) -> GridConfig:
        ns = dict(raw.get("namespace", {}))
        known = {"namespace", "conscience", "directory", "policies"}
        return cls(
            namespace=ns.get("name", "GRID"),
            secret=ns.get("secret", ""),
            chunk_size=int(ns.get("chunk_size", DEFAULT_CHUNK_SIZE)),
            default_policy=ns.get("default_policy", DEFAULT_POLICY),
            size_rules=[SizeRule(int(r["max_size"]), r["policy"]) for r in ns.get("size_rules", [])],
            connect_timeout=float(ns.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT)),
            conscience_url=raw.get("conscience", {}).get("url", ""),
            directory_url=raw.get("directory", {}).get("url", ""),
            policies=dict(raw.get("policies", {})),
            extra={k: v for k, v in raw.items() if k not in known},
            path=path,
        )

    def to_dict(self) -> dict[str, Any]:
        ns: dict[str, Any] = {
            "name": self.namespace,
            "secret": self.secret,
            "chunk_size": self.chunk_size,
            "default_policy": self.default_policy,
        }
        if self.connect_timeout != DEFAULT_CONNECT_TIMEOUT:
            ns["connect_timeout"] = self.connect_timeout
        if self.size_rules:
            ns["size_rules"] = [{"max_size": r.max_size, "policy": r.policy} for r in self.size_rules]
        out: dict[str, Any] = {
            "namespace": ns,
            "conscience": {"url": self.conscience_url},
            "directory": {"url": self.directory_url},
        }
        if self.policies:
            out["policies"] = self.policies
        out.update(self.extra)
        return out

    def save(self, path: str | os.PathLike | None = None) -> Path:
        """Write atomically with mode 0600: the file holds the namespace secret."""
        p = Path(path or self.path or find_config(None))
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            tomli_w.dump(self.to_dict(), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
        self.path = p
        return p

    def policy_for_size(self, size: int | None) -> str:
        """The policy the namespace chooses for an object of this size (None: unknown)."""
        if size is not None:
            for rule in self.size_rules:
                if size <= rule.max_size:
                    return rule.policy
        return self.default_policy


def find_config(path: str | os.PathLike | None) -> Path:
    if path:
        p = Path(path)
        return p / "grid.toml" if p.is_dir() else p
    env = os.environ.get("GRID_CONFIG")
    if env:
        return find_config(env)
    return DEFAULT_DATA_DIR / "grid.toml"


def create_secret_file(path: Path, text: str) -> bool:
    """Write ``text`` to a new file at ``path`` (mode 0600) unless one is there; True when this call made it.

    Written to a temporary file and linked into place, so that two processes starting at once never
    read a half-written secret, and neither replaces the other's (the S3 master key, the console's token).
    """
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text + "\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
