"""grid:// from pandas, Dask and pyarrow, against a live grid."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import crc32c
import numpy as np
import pandas as pd
import pytest

from gridfs.cli.local import LocalGrid
from gridfs.common.config import GridConfig
from gridfs.fs import GridFileSystem


@pytest.fixture(scope="module")
def fs(local_grid: LocalGrid) -> GridFileSystem:
    fs = GridFileSystem(config=str(local_grid.config_path), skip_instance_cache=True)
    fs.makedirs("frames", exist_ok=True)
    return fs


def frame(n: int = 5000) -> pd.DataFrame:
    rng = np.random.default_rng(4)
    return pd.DataFrame({"year": rng.choice([2024, 2025, 2026], n), "id": np.arange(n),
                         "value": rng.normal(size=n), "tag": rng.choice(["a", "b", "c"], n)})


def test_pandas_uses_the_entry_point_without_importing_gridfs(fs: GridFileSystem, local_grid: LocalGrid) -> None:
    script = textwrap.dedent("""
        import pandas as pd
        df = pd.DataFrame({"a": range(1000), "b": [str(i) for i in range(1000)]})
        df.to_parquet("grid://frames/entry/t.parquet")
        df.to_csv("grid://frames/entry/t.csv", index=False)
        assert pd.read_parquet("grid://frames/entry/t.parquet").equals(df)
        assert pd.read_csv("grid://frames/entry/t.csv", dtype={"b": str}).equals(df)
        print("ok")
    """)
    env = {**os.environ, "GRID_CONFIG": str(local_grid.config_path)}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_dask_partitioned_parquet_with_two_worker_processes(fs: GridFileSystem, local_grid: LocalGrid) -> None:
    import dask.dataframe as dd
    from distributed import Client, LocalCluster

    df = frame()
    opts = {"config": str(local_grid.config_path)}
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None) as cluster, \
            Client(cluster):
        dd.from_pandas(df, npartitions=4).to_parquet("grid://frames/dask/", storage_options=opts,
                                                      partition_on=["year"], write_index=False)
        back = dd.read_parquet("grid://frames/dask/", storage_options=opts).compute()
    assert {p.rsplit("/", 1)[-1] for p in fs.ls("frames/dask", detail=False)} >= {"year=2024", "year=2025"}
    back = back.sort_values("id").reset_index(drop=True)
    assert back["id"].tolist() == df["id"].tolist()
    assert np.allclose(back["value"], df["value"])
    assert back["year"].astype(int).tolist() == df["year"].tolist()


def test_pyarrow_dataset_prunes_partitions(fs: GridFileSystem, local_grid: LocalGrid) -> None:
    import pyarrow.dataset as ds
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    df = frame()
    for year, part in df.groupby("year"):
        fs.pipe(f"frames/pa/year={year}/part-0.parquet", part.drop(columns="year").to_parquet(index=False))

    opened: list[str] = []

    class Counting(GridFileSystem):
        def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
            if "r" in mode:
                opened.append(path)
            return super()._open(path, mode, **kwargs)

    counting = Counting(config=str(local_grid.config_path), skip_instance_cache=True)
    dataset = ds.dataset("frames/pa", filesystem=PyFileSystem(FSSpecHandler(counting)), format="parquet",
                         partitioning="hive")
    opened.clear()  # discovery may read one footer for the schema; pruning is about the scan
    table = dataset.to_table(filter=ds.field("year") == 2025)
    assert table.num_rows == int((df["year"] == 2025).sum())
    assert opened and all("year=2025" in p for p in opened), opened


def test_ranges_at_odd_offsets(fs: GridFileSystem) -> None:
    data = os.urandom((19 << 20) + 7)
    fs.pipe("frames/raw/blob.bin", data)
    ranges = [(0, 1), (1, 10), ((8 << 20) - 3, (8 << 20) + 5), (len(data) - 9, len(data)), (12345, 7_654_321)]
    for start, end in ranges:
        assert fs.cat_file("frames/raw/blob.bin", start, end) == data[start:end]
    paths = ["frames/raw/blob.bin"] * len(ranges)
    assert fs.cat_ranges(paths, [s for s, _ in ranges], [e for _, e in ranges]) == [data[s:e] for s, e in ranges]
    with fs.open("frames/raw/blob.bin", "rb", block_size=1 << 20) as f:
        f.seek(5_000_001)
        assert f.read(100) == data[5_000_001:5_000_101]
        f.seek(-50, 2)
        assert f.read() == data[-50:]
    assert fs.cat_file("frames/raw/blob.bin", -10) == data[-10:]


def test_streamed_write_commits_on_close_only(fs: GridFileSystem) -> None:
    data = os.urandom(70 << 20)
    with fs.open("frames/raw/stream.bin", "wb", block_size=16 << 20) as f:
        for i in range(0, len(data), 3 << 20):
            f.write(data[i : i + (3 << 20)])
        assert not fs.exists("frames/raw/stream.bin"), "visible before close"
    assert fs.cat_file("frames/raw/stream.bin") == data
    with pytest.raises(RuntimeError), fs.open("frames/raw/failed.bin", "wb", block_size=5 << 20) as f:
        f.write(os.urandom(12 << 20))
        raise RuntimeError("boom")
    assert not fs.exists("frames/raw/failed.bin")
    assert fs.client.list_multipart("frames") == []


def test_writer_killed_mid_write_leaves_nothing(fs: GridFileSystem, local_grid: LocalGrid) -> None:
    script = textwrap.dedent("""
        import os, sys, time
        import fsspec
        f = fsspec.open("grid://frames/raw/killed.bin", "wb", block_size=8 << 20).open()
        for _ in range(20):
            f.write(os.urandom(1 << 20))
        f.flush()
        print("ready", flush=True)
        time.sleep(60)
    """)
    env = {**os.environ, "GRID_CONFIG": str(local_grid.config_path)}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not fs.exists("frames/raw/killed.bin")


def test_transaction_makes_writes_visible_at_commit(fs: GridFileSystem) -> None:
    with fs.transaction:
        fs.pipe("frames/tx/small", b"x")  # pipe is not transactional in fsspec: immediate
        with fs.open("frames/tx/a", "wb") as f:
            f.write(b"hello")
        assert not fs.exists("frames/tx/a")
    assert fs.cat_file("frames/tx/a") == b"hello"


def test_metadata_surface(fs: GridFileSystem) -> None:
    fs.pipe("frames/meta/x", b"abc", policy="THREECOPIES")
    info = fs.info("frames/meta/x")
    assert info["type"] == "file" and info["size"] == 3 and info["policy"] == "THREECOPIES" and info["version"]
    assert fs.info("frames/meta")["type"] == "directory" and fs.isdir("frames") and fs.isfile("frames/meta/x")
    fs.setxattr("frames/meta/x", owner="lake")
    assert fs.getxattr("frames/meta/x", "owner") == "lake"
    assert fs.checksum("frames/meta/x") == int(info["crc32c"], 16) == crc32c.crc32c(b"abc")
    assert fs.modified("frames/meta/x").year >= 2026
    before = fs.client.head("frames", "meta/x", chunks=True)
    fs.mv("frames/meta/x", "frames/meta/y")
    after = fs.client.head("frames", "meta/y", chunks=True)
    assert [c.url for m in after.metachunks for c in m.chunks] == [c.url for m in before.metachunks for c in m.chunks]
    fs.touch("frames/meta/empty")
    assert fs.du("frames/meta") == 3
    assert sorted(fs.glob("frames/meta/*")) == ["frames/meta/empty", "frames/meta/y"]
    assert fs.find("frames/meta") == ["frames/meta/empty", "frames/meta/y"]


def test_directory_markers_are_directories_in_every_view(fs: GridFileSystem) -> None:
    """An empty directory made by Hadoop or WebHDFS is a KEY/ marker object: find, du and walk show a
    directory there, never a file named with a trailing slash."""
    fs.pipe("frames/marked/a/file", b"1234")
    fs.client.put("frames", "marked/a/empty/", b"", mime_type="application/x-directory")
    assert fs.isdir("frames/marked/a/empty") and fs.ls("frames/marked/a/empty") == []
    assert fs.find("frames/marked") == ["frames/marked/a/file"]
    assert fs.find("frames/marked", withdirs=True) == ["frames/marked", "frames/marked/a", "frames/marked/a/empty",
                                                       "frames/marked/a/file"]
    assert fs.du("frames/marked") == 4
    assert [(root, sorted(dirs), files) for root, dirs, files in fs.walk("frames/marked")] == [
        ("frames/marked", ["a"], []), ("frames/marked/a", ["empty"], ["file"]), ("frames/marked/a/empty", [], [])]


def test_clear_errors(fs: GridFileSystem, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        fs.cat_file("no-such-bucket/x")
    with pytest.raises(FileNotFoundError):
        fs.open("frames/nothing/here", "rb")
    fs.pipe("frames/dir/leaf", b"1")
    with pytest.raises(IsADirectoryError):
        fs.open("frames/dir", "rb")
    with pytest.raises(ValueError, match="unknown storage policy"):
        fs.pipe("frames/p", b"1", policy="NOPE")
    with pytest.raises(ValueError, match="unknown storage policy"), fs.open("frames/q", "wb", policy="NOPE") as f:
        f.write(b"1")
    cfg = GridConfig(secret="x", conscience_url="http://127.0.0.1:9", directory_url="http://127.0.0.1:9")
    cfg.save(tmp_path / "down.toml")
    with pytest.raises(ConnectionError):
        GridFileSystem(config=str(tmp_path / "down.toml"), skip_instance_cache=True).ls("frames")


def test_instances_pickle(fs: GridFileSystem) -> None:
    import pickle

    clone = pickle.loads(pickle.dumps(fs))
    fs.pipe("frames/pickle", b"p")
    assert clone.cat_file("frames/pickle") == b"p"
