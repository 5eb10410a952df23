"""``grid://bucket/key`` for fsspec, and so for pandas, Dask and pyarrow.

Registered through the ``fsspec.specs`` entry point, so ``pd.read_parquet("grid://lake/t/")``
works without importing gridfs. The grid is found through ``storage_options``
(``config=``, ``account=``), ``$GRID_CONFIG``, or ``~/.gridfs/grid.toml``.

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from gridfs.fs.filesystem import GridFile, GridFileSystem

__all__ = ["GridFile", "GridFileSystem"]
