"""The Reed-Solomon codecs: any k of k+m shares give back the data (decode), and ISA-L's
reconstruct computes exactly the lost positions, data or parity, from any k shares."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from gridfs.coding.ec import get_codec
from gridfs.common.errors import DataUnavailable

SHAPES = [(6, 3), (4, 2), (2, 1)]


def u8(buf: object) -> np.ndarray:
    """Any codec output (bytes, memoryview, numpy) as bytes to compare."""
    return np.frombuffer(memoryview(buf).cast("B"), dtype=np.uint8)  # type: ignore[arg-type]


def stripe(codec_name: str, k: int, m: int, size: int = 4099) -> tuple[object, list[np.ndarray]]:
    codec = get_codec(codec_name, k, m)
    rng = np.random.default_rng(k * 10 + m)
    data = [rng.integers(0, 256, size, dtype=np.uint8) for _ in range(k)]
    return codec, data + [u8(p) for p in codec.encode(data)]


@pytest.mark.parametrize("codec_name", ["isal", "zfec"])
@pytest.mark.parametrize(("k", "m"), SHAPES)
def test_any_k_shares_decode_to_the_data(codec_name: str, k: int, m: int) -> None:
    codec, full = stripe(codec_name, k, m)
    for held in itertools.combinations(range(k + m), k):
        data = codec.decode({i: full[i] for i in held})
        assert all(np.array_equal(u8(data[i]), full[i]) for i in range(k)), held


@pytest.mark.parametrize(("k", "m"), SHAPES)
def test_isal_reconstructs_exactly_the_lost_positions(k: int, m: int) -> None:
    codec, full = stripe("isal", k, m)
    for lost in itertools.chain.from_iterable(itertools.combinations(range(k + m), n) for n in range(1, m + 1)):
        shares = {i: full[i] for i in range(k + m) if i not in lost}
        out = [np.empty(full[0].nbytes + 64, dtype=np.uint8) for _ in lost]  # pooled buffers are often larger
        got = codec.reconstruct(shares, list(lost), out)
        assert sorted(got) == sorted(lost)
        assert all(np.array_equal(u8(got[w]), full[w]) for w in lost), lost
    with pytest.raises(DataUnavailable):
        codec.reconstruct({i: full[i] for i in range(k - 1)}, [k + m - 1])


@pytest.mark.parametrize(("k", "m"), SHAPES)
def test_zfec_policies_computed_by_isal_give_zfecs_own_chunks(k: int, m: int) -> None:
    """The zfec codec runs on ISA-L with zfec's matrix: every parity byte must be zfec's (objects written
    before, and the Java connector's zfec coder, read them), and it rebuilds lost positions like ISA-L."""
    import zfec

    from gridfs.coding.ec import ZfecCodec

    codec = get_codec("zfec", k, m)
    assert codec.engine is not None and hasattr(codec, "reconstruct")
    rng = np.random.default_rng(99)
    for size in (1, 31, 4096, (1 << 20) + 17):
        data = [rng.integers(0, 256, size, dtype=np.uint8) for _ in range(k)]
        theirs = zfec.Encoder(k, k + m).encode([d.tobytes() for d in data], list(range(k, k + m)))
        ours = codec.encode(data, [np.empty(size + 8, dtype=np.uint8) for _ in range(m)])
        assert [u8(p).tobytes() for p in ours] == [bytes(t) for t in theirs], size
    _, full = stripe("zfec", k, m)
    lost = list(range(m))  # the first m data chunks
    got = codec.reconstruct({i: full[i] for i in range(k + m) if i not in lost}, lost)
    assert all(np.array_equal(u8(got[w]), full[w]) for w in lost)
    plain = ZfecCodec(k, m, accelerate=False)  # as on a machine without the ISA-L library: same chunks
    assert not hasattr(plain, "reconstruct")
    assert [u8(p).tobytes() for p in plain.encode(full[:k])] == [f.tobytes() for f in full[k:]]
    held = {i: full[i] for i in range(m, k + m)}
    assert all(np.array_equal(u8(d), full[i]) for i, d in enumerate(plain.decode(held)))
