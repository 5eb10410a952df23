"""CRC32C (Castagnoli) of whole objects: the hex form records carry, and combination.

An object's CRC32C is the plain CRC32C of its bytes (what ``crc32c.crc32c`` and
``java.util.zip.CRC32C`` give), written as 8 lowercase hex digits; "" when not known.
It equals HDFS's COMPOSITE_CRC file checksum of the same bytes, whatever the block size.

``crc32c_combine`` gives the CRC of A+B from the CRCs of A and B and the length of B, with
no data: a multipart upload's CRC is its parts' CRCs combined in order. The arithmetic is
over GF(2) polynomials modulo the CRC polynomial, in the bit-reflected form CRC32C uses:
crc(A+B) = crc(A) * x^(8*len(B)) mod P  xor  crc(B) (the pre- and post-inversions cancel).
``crc32c`` (the package) offers no combine, hence this.

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from gridfs.common.errors import BadRequest

POLY = 0x82F63B78  # CRC32C polynomial, bit-reflected
_X0 = 1 << 31  # the polynomial 1 (x^0), reflected
_HEX8 = re.compile(r"[0-9a-f]{8}")


def _multmodp(a: int, b: int) -> int:
    """a(x) * b(x) mod P, both reflected (zlib's multmodp)."""
    product = 0
    m = _X0
    while m:
        if a & m:
            product ^= b
            if not a & (m - 1):
                break
        m >>= 1
        b = (b >> 1) ^ POLY if b & 1 else b >> 1
    return product


def _powers() -> list[int]:
    """x^(2^k) mod P for k = 0..63: enough for any length below 2^60 bytes, with no assumption
    about the period of x^(2^k) mod P (zlib wraps k at 32)."""
    table = [1 << 30]  # x^1
    for _ in range(63):
        table.append(_multmodp(table[-1], table[-1]))
    return table


_X2N = _powers()


def _x8nmodp(nbytes: int) -> int:
    """x^(8 * nbytes) mod P."""
    if nbytes >= 1 << 60:
        raise ValueError("a length must be below 2^60 bytes")
    product, k = _X0, 3  # 8 * n = n << 3: start at x^(2^3)
    while nbytes:
        if nbytes & 1:
            product = _multmodp(_X2N[k], product)
        nbytes >>= 1
        k += 1
    return product


def crc32c_combine(crc1: int, crc2: int, len2: int) -> int:
    """The CRC32C of A followed by B, from crc1 = CRC32C(A), crc2 = CRC32C(B) and len2 = len(B)."""
    if len2 < 0:
        raise ValueError("a length cannot be negative")
    return _multmodp(_x8nmodp(len2), crc1) ^ crc2


def crc32c_hex(value: int) -> str:
    """The record form: 8 lowercase hex digits."""
    return f"{value & 0xFFFFFFFF:08x}"


def check_crc32c(value: str) -> None:
    """Refuse a record CRC that is neither "" nor 8 lowercase hex digits."""
    if not isinstance(value, str) or not (value == "" or _HEX8.fullmatch(value)):
        raise BadRequest(f"crc32c must be 8 lowercase hex digits or empty, not {value!r}")


def combine_hex(pieces: Iterable[tuple[str, int]]) -> str:
    """The CRC32C (hex) of pieces laid end to end, from each one's (hex CRC32C, size); "" if any is unknown."""
    total = 0
    for crc, size in pieces:
        if not crc:
            return ""
        total = crc32c_combine(total, int(crc, 16), size)
    return crc32c_hex(total)
