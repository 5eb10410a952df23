"""How an encrypted object's bytes lie in the grid: AES-256-GCM segments, each sealed on its own.

An object (or each part of a multipart object) is cut into segments of ``SEGMENT`` plaintext bytes; each
is stored as ``nonce (12) | ciphertext | tag (16)`` under the object's data key, with a fresh random nonce
and, as associated data, its part number, its index in the part and whether it ends the part. So a reader
decrypts only the segments a range touches; any changed byte fails that segment's tag; and segments moved,
reordered, dropped at a part's end or swapped between parts fail too. Random nonces (not counters) keep a
part uploaded twice under the same data key from reusing one.

Nothing here buffers more than the pieces it is given: encryption holds back one segment (the last one
must be marked so), decryption one stored segment.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SEGMENT = 64 * 1024
NONCE, TAG = 12, 16
OVERHEAD = NONCE + TAG
STORED_SEGMENT = SEGMENT + OVERHEAD
SINGLE_PART = 0  # the part number of an object stored by one PUT


class TamperedData(Exception):
    """A stored segment failed its GCM tag: changed, moved or cut short."""


def _aad(part: int, index: int, last: bool) -> bytes:
    return struct.pack(">4sIQ?", b"gsse", part, index, last)


def stored_size(plain: int) -> int:
    full, rest = divmod(plain, SEGMENT)
    return full * STORED_SEGMENT + (rest + OVERHEAD if rest else 0)


def plain_size(stored: int) -> int:
    """The plaintext size of ``stored`` bytes of segments; ValueError when no segment layout has that size."""
    full, rest = divmod(stored, STORED_SEGMENT)
    if rest and rest <= OVERHEAD:
        raise ValueError(f"{stored} bytes are not whole encrypted segments")
    return full * SEGMENT + (rest - OVERHEAD if rest else 0)


def encrypt(pieces: Iterable[Any], key: bytes, part: int = SINGLE_PART) -> Iterator[bytearray]:
    """The stored form of a plaintext stream, one output piece per input piece (about as large)."""
    aead = AESGCM(key)
    held = bytearray()
    index = 0

    def seal(plain: memoryview, count: int, last: bool) -> bytearray:
        """``count`` segments of ``plain`` sealed into one buffer (``last``: its final one ends the part)."""
        nonlocal index
        out = bytearray(plain.nbytes + count * OVERHEAD)
        view = memoryview(out)
        for i in range(count):
            segment = plain[i * SEGMENT:(i + 1) * SEGMENT]
            at = i * STORED_SEGMENT
            nonce = os.urandom(NONCE)
            view[at:at + NONCE] = nonce
            aead.encrypt_into(nonce, segment, _aad(part, index, last and i == count - 1),
                              view[at + NONCE:at + NONCE + segment.nbytes + TAG])
            index += 1
        view.release()
        return out

    for piece in pieces:
        held += piece
        # Keep the last segment back until the stream ends: it must be sealed as the last one.
        whole = (len(held) - 1) // SEGMENT
        if whole > 0:
            with memoryview(held) as view:
                out = seal(view[:whole * SEGMENT], whole, False)
            del held[:whole * SEGMENT]
            yield out
    if held:
        with memoryview(held) as view:
            out = seal(view, 1, True)
        yield out


@dataclass(frozen=True)
class Segment:
    part: int
    index: int
    last: bool
    stored_at: int  # offset of its stored form in the object
    stored_len: int
    plain_at: int  # offset of its plaintext in the object
    plain_len: int


def segments(layout: list[tuple[int, int]], start: int, end: int) -> Iterator[Segment]:
    """The segments holding plaintext bytes [start, end) of an object made of ``layout``'s parts
    ((part number, plaintext size) in order)."""
    plain_base = stored_base = 0
    for part, size in layout:
        count = -(-size // SEGMENT)
        if plain_base < end and plain_base + size > start:
            first = max(0, (start - plain_base) // SEGMENT)
            last = min(count - 1, (end - 1 - plain_base) // SEGMENT)
            for i in range(first, last + 1):
                plain_len = min(SEGMENT, size - i * SEGMENT)
                yield Segment(part, i, i == count - 1, stored_base + i * STORED_SEGMENT, plain_len + OVERHEAD,
                              plain_base + i * SEGMENT, plain_len)
        plain_base += size
        stored_base += stored_size(size)
        if plain_base >= end:
            return


def decrypt_range(read: Any, key: bytes, layout: list[tuple[int, int]], start: int,
                  end: int) -> Iterator[memoryview]:
    """Plaintext bytes [start, end), from ``read(stored_start, stored_end)`` (an iterator of blocks that may be
    reused after each step) over exactly the stored segments they lie in: one output piece per block read,
    holding every segment completed by it (a piece per segment cost a thread hop each in the gateway)."""
    wanted = list(segments(layout, start, end))
    if not wanted:
        return
    aead = AESGCM(key)
    blocks = iter(read(wanted[0].stored_at, wanted[-1].stored_at + wanted[-1].stored_len))
    held, pos, done = bytearray(), 0, 0  # bytes read and not yet decrypted are held[pos:]
    while done < len(wanted):
        block = next(blocks, None)
        if block is None:
            seg = wanted[done]
            raise TamperedData(f"the stored object ends inside segment {seg.index} of part {seg.part}")
        del held[:pos]
        pos = 0
        held += block
        ready, available = done, len(held)
        while ready < len(wanted) and wanted[ready].stored_len <= available:
            available -= wanted[ready].stored_len
            ready += 1
        if ready == done:
            continue
        batch = wanted[done:ready]
        out = bytearray(sum(seg.plain_len for seg in batch))
        at = 0
        with memoryview(held) as view, memoryview(out) as into:
            for seg in batch:
                nonce, sealed = view[pos:pos + NONCE], view[pos + NONCE:pos + seg.stored_len]
                target = into[at:at + seg.plain_len]
                try:
                    aead.decrypt_into(nonce, sealed, _aad(seg.part, seg.index, seg.last), target)
                except InvalidTag as exc:
                    raise TamperedData(f"segment {seg.index} of part {seg.part} failed its integrity check") from exc
                finally:
                    nonce.release()
                    sealed.release()
                    target.release()
                pos += seg.stored_len
                at += seg.plain_len
        done = ready
        lo = max(start - batch[0].plain_at, 0)
        hi = len(out) - max(batch[-1].plain_at + batch[-1].plain_len - end, 0)
        yield memoryview(out)[lo:hi]
