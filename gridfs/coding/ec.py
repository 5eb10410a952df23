"""Striping a metachunk into k data chunks and Reed-Solomon parity.

Layout: data chunk ``i`` is bytes ``[i*cs, (i+1)*cs)`` of the metachunk, where
``cs = ceil(size / k)``; the tail of the last one is zero padding. Chunks are numpy
views of the metachunk buffer, so striping copies nothing but the padding. Because
Reed-Solomon works column by column, the same byte range ``[lo, hi)`` of any k chunks
rebuilds that range of the others: a degraded ranged read fetches only that range.

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
import zfec

from gridfs.common.errors import BadRequest, DataUnavailable

if TYPE_CHECKING:
    from gridfs.coding.isal import IsalCodec

log = logging.getLogger("gridfs.coding")

Buffer = bytes | bytearray | memoryview | np.ndarray


def chunk_size_for(meta_size: int, k: int) -> int:
    return -(-meta_size // k)


def stripe(buf: np.ndarray, size: int, k: int) -> list[np.ndarray]:
    """Views of the k data chunks of the first ``size`` bytes of ``buf``.

    ``buf`` must hold at least ``k * ceil(size / k)`` bytes; the padding is zeroed in place.
    """
    cs = chunk_size_for(size, k)
    if buf.nbytes < k * cs:
        raise ValueError(f"stripe buffer of {buf.nbytes} bytes is smaller than {k} x {cs}")
    buf[size : k * cs] = 0
    return [buf[i * cs : (i + 1) * cs] for i in range(k)]


@dataclass(frozen=True)
class ChunkRange:
    """Bytes ``[lo, hi)`` of data chunk ``index`` land at ``out`` in the caller's range."""

    index: int
    lo: int
    hi: int
    out: int


def data_ranges(meta_size: int, k: int, start: int, end: int) -> list[ChunkRange]:
    """The data-chunk ranges that hold bytes ``[start, end)`` of a metachunk."""
    if not 0 <= start <= end <= meta_size:
        raise ValueError(f"range {start}-{end} outside a metachunk of {meta_size} bytes")
    cs = chunk_size_for(meta_size, k)
    out: list[ChunkRange] = []
    pos = start
    while pos < end:
        i = pos // cs
        hi = min(end, (i + 1) * cs)
        out.append(ChunkRange(i, pos - i * cs, hi - i * cs, pos - start))
        pos = hi
    return out


class Codec(Protocol):
    k: int
    m: int

    def encode(self, data: Sequence[Buffer], out: Sequence[np.ndarray] | None = None) -> list[Buffer]:
        """The m parity chunks of k equal-sized data chunks, written into ``out`` when the codec can."""
        ...

    def decode(self, shares: Mapping[int, Buffer]) -> list[Buffer]:
        """The k data chunks from any k shares (share number -> bytes of one range)."""
        ...


def zfec_matrix(k: int, m: int) -> bytes:
    """zfec's (k+m) x k generator matrix, read off zfec itself: data block j holds a 1 at byte j and
    zeros elsewhere, so byte c of parity block r is the coefficient of data block c in parity r."""
    unit = [bytes(1 if c == j else 0 for c in range(k)) for j in range(k)]
    parity = zfec.Encoder(k, k + m).encode(unit, list(range(k, k + m))) if m else []
    return b"".join(unit) + b"".join(bytes(p) for p in parity)


class ZfecCodec:
    """Reed-Solomon over GF(2^8) as zfec defines it (its matrix, so its chunks), computed by ISA-L.

    zfec encodes at about 0.67 GB/s per core here, ISA-L at 4.5-6 (DESIGN.md section 3). Both work in the
    same field, so ISA-L's table-driven multiply with zfec's generator matrix gives byte for byte the
    chunks zfec gives (checked when the codec is built: any difference and zfec does the work). Without the
    ISA-L library (the pyeclib wheel), zfec itself encodes and decodes. Both release the GIL."""

    name = "zfec"

    def __init__(self, k: int, m: int, accelerate: bool = True) -> None:
        """``accelerate`` False: zfec itself does all the work (as on a machine without ISA-L)."""
        self.k, self.m = k, m
        self._encoder = zfec.Encoder(k, k + m)
        self._decoder = zfec.Decoder(k, k + m)
        self._parity_nums = list(range(k, k + m))
        self.engine = self._isal_engine() if accelerate else None
        if self.engine is not None:
            # Only the lost positions, in one pass: a repair uses it when the codec has it (hasattr).
            self.reconstruct = self.engine.reconstruct

    def _isal_engine(self) -> IsalCodec | None:
        try:
            from gridfs.coding.isal import IsalCodec

            engine = IsalCodec(self.k, self.m, zfec_matrix(self.k, self.m))
        except (BadRequest, OSError):
            return None
        sample = [np.random.default_rng(i).integers(0, 256, 4099, dtype=np.uint8) for i in range(self.k)]
        ours = [bytes(memoryview(p).cast("B")) for p in engine.encode(sample)]
        theirs = [bytes(p) for p in self._zfec_encode(sample)]
        if ours != theirs:
            log.warning("ISA-L does not reproduce zfec's %d+%d parity here: zfec encodes", self.k, self.m)
            return None
        return engine

    def _zfec_encode(self, data: Sequence[Buffer]) -> list[Buffer]:
        return list(self._encoder.encode(list(data), self._parity_nums)) if self.m else []

    def encode(self, data: Sequence[Buffer], out: Sequence[np.ndarray] | None = None) -> list[Buffer]:
        if self.engine is not None:
            return self.engine.encode(data, out)
        return self._zfec_encode(data)  # zfec allocates its own outputs; ``out`` is ignored

    def decode(self, shares: Mapping[int, Buffer]) -> list[Buffer]:
        if self.engine is not None:
            return self.engine.decode(shares)
        if len(shares) < self.k:
            raise DataUnavailable(f"need {self.k} shares to decode, have {len(shares)}")
        nums = sorted(shares)[: self.k]
        if nums == list(range(self.k)):
            return [shares[i] for i in nums]
        return list(self._decoder.decode([shares[i] for i in nums], nums))


_CODECS: dict[tuple[str, int, int], Codec] = {}


def get_codec(name: str, k: int, m: int) -> Codec:
    """A codec instance, shared per (name, k, m): zfec encoders are reusable and thread-safe."""
    key = (name, k, m)
    codec = _CODECS.get(key)
    if codec is None:
        if name == "zfec":
            codec = ZfecCodec(k, m)
        elif name == "isal":
            from gridfs.coding.isal import IsalCodec

            codec = IsalCodec(k, m)
        else:
            raise BadRequest(f"codec {name!r} is not available in this client")
        _CODECS[key] = codec
    return codec
