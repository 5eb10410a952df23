"""Storage policies: a name, a protection method and its parameters.

The chunk method string (``ec/k=6,m=3,codec=zfec`` or ``copies/n=3``) is recorded
with every object, so objects stay readable when the namespace's policies change.

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from gridfs.common.errors import BadRequest

Method = Literal["copies", "ec"]


@dataclass(frozen=True)
class StoragePolicy:
    name: str
    method: Method
    copies: int = 1
    k: int = 1
    m: int = 0
    codec: str = "zfec"

    @property
    def is_ec(self) -> bool:
        return self.method == "ec"

    @property
    def width(self) -> int:
        """Chunks per metachunk."""
        return self.k + self.m if self.is_ec else self.copies

    @property
    def min_durable(self) -> int:
        """Chunks that must be durable before a write is acknowledged."""
        return min(self.k + 1, self.k + self.m) if self.is_ec else self.copies

    @property
    def tolerates(self) -> int:
        return self.m if self.is_ec else self.copies - 1

    @property
    def overhead(self) -> float:
        return (self.k + self.m) / self.k if self.is_ec else float(self.copies)

    def metachunk_size(self, chunk_size: int) -> int:
        """User bytes per metachunk: k data chunks for EC, one chunk for copies."""
        return chunk_size * self.k if self.is_ec else chunk_size

    @property
    def chunk_method(self) -> str:
        if self.is_ec:
            return f"ec/k={self.k},m={self.m},codec={self.codec}"
        return f"copies/n={self.copies}"

    def describe(self) -> str:
        if self.is_ec:
            return f"Reed-Solomon {self.k}+{self.m} ({self.codec})"
        return "1 copy" if self.copies == 1 else f"{self.copies} synchronous copies"


BUILTIN_POLICIES: dict[str, StoragePolicy] = {
    p.name: p
    for p in (
        StoragePolicy("SINGLE", "copies", copies=1),
        StoragePolicy("TWOCOPIES", "copies", copies=2),
        StoragePolicy("THREECOPIES", "copies", copies=3),
        StoragePolicy("EC21", "ec", k=2, m=1),
        StoragePolicy("EC42", "ec", k=4, m=2),
        StoragePolicy("EC63", "ec", k=6, m=3),
        # The same codes computed by ISA-L (several times faster than zfec; see bench/).
        StoragePolicy("EC42-ISAL", "ec", k=4, m=2, codec="isal"),
        StoragePolicy("EC63-ISAL", "ec", k=6, m=3, codec="isal"),
    )
}

KNOWN_CODECS = ("zfec", "isal")


def policy_from_dict(name: str, spec: Mapping[str, Any]) -> StoragePolicy:
    """A policy declared in the namespace config, e.g. ``{method="ec", k=8, m=4}``."""
    method = spec.get("method")
    try:
        if method == "copies":
            n = int(spec.get("copies", spec.get("n", 1)))
            if not 1 <= n <= 16:
                raise ValueError("copies must be 1-16")
            return StoragePolicy(name, "copies", copies=n)
        if method == "ec":
            k, m = int(spec["k"]), int(spec["m"])
            codec = str(spec.get("codec", "zfec"))
            if not (1 <= k <= 32 and 1 <= m <= 16):
                raise ValueError("k must be 1-32 and m 1-16")
            if codec not in KNOWN_CODECS:
                raise ValueError(f"codec must be one of {', '.join(KNOWN_CODECS)}")
            return StoragePolicy(name, "ec", k=k, m=m, codec=codec)
    except (KeyError, TypeError, ValueError) as exc:
        raise BadRequest(f"policy {name}: {exc}") from exc
    raise BadRequest(f"policy {name}: method must be 'copies' or 'ec', got {method!r}")


def all_policies(declared: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, StoragePolicy]:
    out = dict(BUILTIN_POLICIES)
    for name, spec in (declared or {}).items():
        out[name] = policy_from_dict(name, spec)
    return out


def get_policy(name: str, declared: Mapping[str, Mapping[str, Any]] | None = None) -> StoragePolicy:
    policies = all_policies(declared)
    try:
        return policies[name]
    except KeyError:
        raise BadRequest(
            f"unknown storage policy {name!r}; known: {', '.join(sorted(policies))}"
        ) from None


def policy_from_chunk_method(name: str, chunk_method: str) -> StoragePolicy:
    """Rebuild the policy an object was written with from its recorded chunk method."""
    try:
        method, _, params = chunk_method.partition("/")
        kv = dict(p.split("=", 1) for p in params.split(",") if p)
        if method == "copies":
            return StoragePolicy(name, "copies", copies=int(kv["n"]))
        if method == "ec":
            return StoragePolicy(name, "ec", k=int(kv["k"]), m=int(kv["m"]), codec=kv.get("codec", "zfec"))
    except (KeyError, ValueError) as exc:
        raise BadRequest(f"unreadable chunk method {chunk_method!r}") from exc
    raise BadRequest(f"unknown chunk method {chunk_method!r}")
