"""GETFILECHECKSUM: the MD5-of-MD5-of-CRC32C checksum HDFS gives a file, from the object's bytes.

Hadoop's WebHDFS client only accepts the ``MD5MD5CRC32`` forms (not the composite CRC),
so the gateway computes what a namenode would answer for the same bytes written with
the same block size: a CRC32C (big-endian) per 512 bytes, an MD5 of each block's CRCs,
then an MD5 of the block MD5s. HDFS hashes the buffer holding those block MD5s whole,
zero padding included (``DataOutputBuffer.getData()``: 32 bytes, doubling); so does this.
An empty file has HDFS's fixed answer ``MD5-of-0MD5-of-0CRC32``.

Cost: the whole object is read (about 1.7 GB/s of CRCs on one core, plus the read).
The result is kept as the object property ``hadoop.checksum``, tagged with the object's
content id and the block size, so asking again reads nothing.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable
from typing import Any

import crc32c

BYTES_PER_CRC = 512
CACHE_PROP = "hadoop.checksum"


class Md5Md5Crc32c:
    """Fed the file's bytes in order, in pieces of any size."""

    def __init__(self, block_size: int) -> None:
        if block_size <= 0 or block_size % BYTES_PER_CRC:
            raise ValueError(f"block size {block_size} is not a positive multiple of {BYTES_PER_CRC}")
        self.crcs_per_block = block_size // BYTES_PER_CRC
        self.block_crcs: list[int] = []  # CRCs of the block being read
        self.block_md5s = bytearray()
        self.carry = bytearray()  # the start of a 512-byte chunk split across pieces
        self.size = 0

    def update(self, data: Any) -> None:
        view = memoryview(data).cast("B")
        self.size += view.nbytes
        if self.carry:
            take = min(BYTES_PER_CRC - len(self.carry), view.nbytes)
            self.carry += view[:take]
            view = view[take:]
            if len(self.carry) < BYTES_PER_CRC:
                return
            self._add([crc32c.crc32c(self.carry)])
            self.carry = bytearray()
        whole = view.nbytes - view.nbytes % BYTES_PER_CRC
        step = self.crcs_per_block * BYTES_PER_CRC
        for start in range(0, whole, step):  # a block's worth of chunks at a time keeps the list small
            stop = min(whole, start + step)
            self._add([crc32c.crc32c(view[i:i + BYTES_PER_CRC]) for i in range(start, stop, BYTES_PER_CRC)])
        self.carry += view[whole:]

    def _add(self, crcs: list[int]) -> None:
        while crcs:
            room = self.crcs_per_block - len(self.block_crcs)
            self.block_crcs += crcs[:room]
            crcs = crcs[room:]
            if len(self.block_crcs) == self.crcs_per_block:
                self._close_block()

    def _close_block(self) -> None:
        self.block_md5s += hashlib.md5(struct.pack(f">{len(self.block_crcs)}I", *self.block_crcs)).digest()
        self.block_crcs = []

    def result(self) -> dict[str, Any]:
        """The ``FileChecksum`` JSON of WebHDFS."""
        if self.carry:
            self.block_crcs.append(crc32c.crc32c(self.carry))
            self.carry = bytearray()
        if self.block_crcs:
            self._close_block()
        if self.size == 0:  # no block: HDFS's answer for an empty file
            bytes_per_crc, crc_per_block, crc_name = 0, 0, "CRC32"
        else:
            blocks = len(self.block_md5s) // 16
            bytes_per_crc, crc_name = BYTES_PER_CRC, "CRC32C"
            crc_per_block = self.crcs_per_block if blocks > 1 else 0
        file_md5 = hashlib.md5(_padded(self.block_md5s)).digest()
        raw = struct.pack(">iq", bytes_per_crc, crc_per_block) + file_md5
        return {"algorithm": f"MD5-of-{crc_per_block}MD5-of-{bytes_per_crc}{crc_name}", "bytes": raw.hex(),
                "length": len(raw)}


def _padded(data: bytearray) -> bytes:
    """The bytes of Hadoop's DataOutputBuffer as ``getData()`` hands them out: its whole backing array."""
    capacity = 32
    while capacity < len(data):
        capacity *= 2
    return bytes(data) + bytes(capacity - len(data))


def compute(pieces: Iterable[Any], block_size: int) -> dict[str, Any]:
    digest = Md5Md5Crc32c(block_size)
    for piece in pieces:
        digest.update(piece)
    return digest.result()


def cache_tag(content_id: str, block_size: int) -> str:
    return f"{content_id}/{BYTES_PER_CRC}/{block_size}/"
