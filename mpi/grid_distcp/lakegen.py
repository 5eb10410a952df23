"""A synthetic Hadoop-style data lake of Parquet files, for the demo, the tests and bench/distcp.

The mix follows what backups meet: many small files in a partitioned tree
(``sales/year=Y/month=M/part-N.parquet``), a few medium ones, and some big ones
(``events/day=D/big-N.parquet``). Columns are random int64 without compression or
dictionaries, so file sizes are what was asked for and nothing compresses away.

Run: ``python -m grid_distcp.lakegen DIR --small 200 --small-size 64 --big 3 --big-size 256``
(sizes in KiB for small files, MiB for big ones).

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

COLUMNS = 4
ROW_BYTES = 8 * COLUMNS


def write_table(path: str, nbytes: int, rng: np.random.Generator, row_group_bytes: int = 64 << 20) -> int:
    """A Parquet file of about ``nbytes``; returns the real size."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rows = max(1, nbytes // ROW_BYTES)
    per_group = max(1, min(rows, row_group_bytes // ROW_BYTES))
    schema = pa.schema([("id", pa.int64())] + [(f"v{i}", pa.int64()) for i in range(1, COLUMNS)])
    with pq.ParquetWriter(path, schema, compression="none", use_dictionary=False, write_statistics=False) as w:
        start = 0
        while start < rows:
            n = min(per_group, rows - start)
            cols = [pa.array(np.arange(start, start + n, dtype=np.int64))]
            cols += [pa.array(rng.integers(0, 2**62, n, dtype=np.int64)) for _ in range(1, COLUMNS)]
            w.write_table(pa.Table.from_arrays(cols, schema=schema))
            start += n
    return os.path.getsize(path)


def generate(root: str, small: int = 200, small_size: int = 64 << 10, medium: int = 8, medium_size: int = 8 << 20,
             big: int = 2, big_size: int = 256 << 20, seed: int = 7) -> dict[str, int]:
    """Write the lake under ``root``; returns {relative path: size}."""
    rng = np.random.default_rng(seed)
    files: dict[str, int] = {}
    for i in range(small):
        rel = f"sales/year={2020 + i % 7}/month={i % 12 + 1:02d}/part-{i:05d}.parquet"
        files[rel] = write_table(os.path.join(root, rel), small_size, rng)
    for i in range(medium):
        rel = f"customers/region={i % 4}/chunk-{i:03d}.parquet"
        files[rel] = write_table(os.path.join(root, rel), medium_size, rng)
    for i in range(big):
        rel = f"events/day=2026-11-{i % 28 + 1:02d}/big-{i:02d}.parquet"
        files[rel] = write_table(os.path.join(root, rel), big_size, rng)
    return files


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m grid_distcp.lakegen", description=__doc__.split("\n")[0])
    p.add_argument("root")
    p.add_argument("--small", type=int, default=200)
    p.add_argument("--small-size", type=int, default=64, help="KiB")
    p.add_argument("--medium", type=int, default=8)
    p.add_argument("--medium-size", type=int, default=8, help="MiB")
    p.add_argument("--big", type=int, default=2)
    p.add_argument("--big-size", type=int, default=256, help="MiB")
    a = p.parse_args()
    files = generate(a.root, a.small, a.small_size << 10, a.medium, a.medium_size << 20, a.big, a.big_size << 20)
    print(f"{len(files)} files, {sum(files.values()):,} bytes under {a.root}")


if __name__ == "__main__":
    main()
