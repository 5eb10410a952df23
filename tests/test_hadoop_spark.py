"""Spark in local mode on grid:// through the Java connector (hadoop-connector/, built by `make connector`).

One real SparkSession (a JVM from the pyspark wheel, the connector jar in spark.jars) against a live
local grid: a partitioned Parquet dataset written with Spark's default FileOutputCommitter and read
back with partition pruning, and a job on a lake that grid-distcp backed up, writing its result back.
What Spark wrote is also read through the Python side (fsspec), so both sides agree on the objects.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from grid_distcp.lakegen import generate
from gridfs.cli.hadoop import spark_session, stop_spark
from gridfs.cli.hadoop_demo import sales_by_year
from gridfs.cli.local import LocalGrid
from gridfs.client import GridClient

BIN = Path(sys.executable).parent
MiB = 1 << 20
ROWS = 20_000
PARTS = 5


@pytest.fixture(scope="module")
def spark(local_grid: LocalGrid) -> Iterator[SparkSession]:
    session = spark_session(local_grid.config_path, app="test_hadoop_spark", memory="1g",
                            extra={"spark.sql.shuffle.partitions": "4"})
    try:
        yield session
    finally:
        stop_spark(session)


@pytest.fixture(scope="module")
def client(local_grid: LocalGrid) -> Iterator[GridClient]:
    with GridClient(local_grid.config_path) as c:
        yield c


def keys_under(client: GridClient, bucket: str, prefix: str) -> list[str]:
    return sorted(o.key.removeprefix(prefix) for o in client.iter_list(bucket, prefix=prefix))


def test_partitioned_parquet_written_with_file_output_committer_reads_back_pruned(
    spark: SparkSession, client: GridClient, local_grid: LocalGrid
) -> None:
    client.create_bucket("spark")
    url = "grid://spark/warehouse/events"
    written = spark.range(0, ROWS, numPartitions=2).select(
        "id", (F.col("id") % PARTS).alias("part"), (F.col("id") * 0.5).alias("value"),
        F.concat(F.lit("name-"), F.col("id").cast("string")).alias("name"))
    written.write.partitionBy("part").parquet(url)

    # The committer moved every task's output out of _temporary and left its _SUCCESS marker.
    keys = keys_under(client, "spark", "warehouse/events/")
    assert "_SUCCESS" in keys
    assert not [k for k in keys if "_temporary" in k], keys
    files = [k for k in keys if k.endswith(".parquet")]
    assert {k.split("/")[0] for k in files} == {f"part={p}" for p in range(PARTS)}
    assert len(files) == len(keys) - 1, keys

    table = spark.read.parquet(url)
    assert table.count() == ROWS
    by_part = {r["part"]: r["count"] for r in table.groupBy("part").count().collect()}
    assert by_part == dict(Counter(i % PARTS for i in range(ROWS)))

    # WHERE part = 3 reads the files of one partition only: the scan says so and its metrics count them.
    query = table.where(F.col("part") == 3).select("id", "value", "name")
    rows = query.collect()
    assert sorted(r["id"] for r in rows) == list(range(3, ROWS, PARTS))
    assert all(r["value"] == r["id"] * 0.5 and r["name"] == f"name-{r['id']}" for r in rows)
    plan = query._jdf.queryExecution().executedPlan()
    assert "PartitionFilters: [isnotnull(part#" in plan.toString() and "= 3)]" in plan.toString(), plan.toString()
    scan = plan.collectLeaves().head()
    metrics = scan.metrics()
    assert metrics.apply("numPartitions").value() == 1
    assert metrics.apply("numFiles").value() == len([k for k in files if k.startswith("part=3/")])

    # The Python side reads what the Java side wrote, byte for byte the same rows.
    frame = pd.read_parquet(url, storage_options={"config": str(local_grid.config_path)})
    assert len(frame) == ROWS and sorted(frame["id"]) == list(range(ROWS))


def test_spark_job_reads_a_lake_backed_up_by_grid_distcp_and_writes_its_result_back(
    spark: SparkSession, client: GridClient, local_grid: LocalGrid, tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    generate(str(lake), small=36, small_size=32 << 10, medium=2, medium_size=2 * MiB, big=1, big_size=100 * MiB)
    env = {**os.environ, "GRID_CONFIG": str(local_grid.config_path), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    # zfec's EC63 (the grid's default is ISA-L's), and the big file as parts of one stripe (48 MiB) each:
    # a multipart object, which the connector must read like any other.
    copy = subprocess.run([str(BIN / "mpirun"), "-n", "2", str(BIN / "grid-distcp"), str(lake), "grid://backup/lake",
                           "-policy", "EC63", "-split-size", "64", "-part-size", "48", "-quiet"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert copy.returncode == 0, copy.stdout + copy.stderr
    assert "distcp.parts" in client.head("backup", "lake/events/day=2026-11-01/big-00.parquet").properties

    out = "grid://backup/reports/sales_by_year"
    report = {r["year"]: r.asDict() for r in sales_by_year(spark, "grid://backup/lake", out).collect()}

    sales = pd.read_parquet(lake / "sales")
    sales["year"] = sales["year"].astype(int)
    for year, group in sales.groupby("year"):
        assert report[year]["rows"] == len(group)
        assert report[year]["months"] == group["month"].nunique()
        assert report[year]["v1_mod_1000"] == int((group["v1"] % 1000).sum())
    assert sorted(report) == sorted(sales["year"].unique())
    # Written back through the connector: the committed files, readable from Python.
    assert "_SUCCESS" in keys_under(client, "backup", "reports/sales_by_year/")
    back = pd.read_parquet(out, storage_options={"config": str(local_grid.config_path)})
    assert sorted(back["year"]) == sorted(report) and back["rows"].sum() == len(sales)

    # The big multipart file reads back in full through Spark, row for row.
    events = spark.read.parquet("grid://backup/lake/events")
    expected = pd.read_parquet(lake / "events", columns=["id"])
    assert events.count() == len(expected)
    assert events.agg(F.max("id")).first()[0] == expected["id"].max()
