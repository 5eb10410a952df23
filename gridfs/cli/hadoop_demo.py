"""``make hadoop-demo``: a Spark job on a data lake that grid-distcp backed up to the grid.

Starts a 3-node x 3-volume grid, generates a small Hadoop-style lake of Parquet files, backs it up
with ``mpirun grid-distcp`` (the big file as parts), then runs a Spark job in local mode through the
grid:// Hadoop connector (``spark-submit --jars gridfs-hadoop.jar``): it reads the partitioned
``sales`` table from ``grid://backup/lake``, counts rows per year, writes the report back to
``grid://backup/reports/sales_by_year`` with Spark's FileOutputCommitter, and reads it back. pandas
then reads the same report through the Python side (fsspec), and the grid stops. Every step is the
command a user would type, printed before it runs.

Run as ``spark-submit ... hadoop_demo.py job LAKE_URL REPORT_URL``, this file is the Spark job itself.

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

DATA = Path(os.environ.get("GRID_DEMO_DATA", "grid-data/hadoop-demo")).resolve()
BIN = Path(sys.executable).parent
LAKE = "grid://backup/lake"
REPORT = "grid://backup/reports/sales_by_year"


def sales_by_year(spark: SparkSession, lake: str, out: str) -> DataFrame:
    """The job: rows, months and a checksum-like sum per year of the lake's partitioned ``sales`` table
    (``sales/year=Y/month=M/*.parquet``), written to ``out`` as Parquet and read back from there."""
    from pyspark.sql import functions as F

    sales = spark.read.parquet(f"{lake}/sales")
    report = sales.groupBy("year").agg(F.count("*").alias("rows"), F.countDistinct("month").alias("months"),
                                       F.sum(F.col("v1") % 1000).alias("v1_mod_1000"))
    report.coalesce(1).write.mode("overwrite").parquet(out)
    return spark.read.parquet(out).orderBy("year")


def job(lake: str, out: str) -> None:
    """The Spark side, run by spark-submit with the connector's settings on its command line."""
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.appName("sales-by-year").getOrCreate()
    try:
        sales_by_year(spark, lake, out).show()
    finally:
        spark.stop()


def main() -> None:
    from rich.console import Console

    from gridfs.cli.demo import run
    from gridfs.cli.hadoop import connector_jar, grid_settings

    console = Console(soft_wrap=True)
    config = DATA / "grid.toml"

    def grid(*args: str) -> None:
        run([sys.executable, "-m", "gridfs.cli.main", "--config", str(config), *args], f"grid {shlex.join(args)}")

    if config.exists():
        subprocess.run([sys.executable, "-m", "gridfs.cli.main", "down", "--data", str(DATA)], capture_output=True)
        shutil.rmtree(DATA)
    started = time.perf_counter()
    # As in an activated venv: spark-submit finds pyspark (and runs the job) with the python on PATH.
    env = {**os.environ, "GRID_CONFIG": str(config), "SPARK_LOCAL_IP": "127.0.0.1",
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "PYSPARK_PYTHON": sys.executable}
    jar = connector_jar()
    grid("up", "--data", str(DATA), "--nodes", "3", "--volumes", "3")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            lake = Path(tmp) / "lake"
            run([sys.executable, "-m", "grid_distcp.lakegen", str(lake), "--small", "120", "--small-size", "64",
                 "--medium", "4", "--medium-size", "4", "--big", "1", "--big-size", "96"],
                f"python -m grid_distcp.lakegen {lake} --small 120 --medium 4 --big 1 --big-size 96")
            run([str(BIN / "mpirun"), "-n", "2", str(BIN / "grid-distcp"), str(lake), LAKE, "-policy", "EC63",
                 "-split-size", "64", "-quiet"],
                f"mpirun -n 2 grid-distcp {lake} {LAKE} -policy EC63 -split-size 64", env)
        conf = [a for k, v in grid_settings(config).items() for a in ("--conf", f"spark.hadoop.{k}={v}")]
        shown = " ".join(f"--conf {shlex.quote(c)}" for c in conf[1::2])
        run([str(BIN / "spark-submit"), "--master", "local[2]", "--driver-memory", "1g", "--jars", str(jar),
             "--conf", "spark.ui.enabled=false", "--conf", "spark.log.level=WARN", *conf,
             __file__, "job", LAKE, REPORT],
            f"spark-submit --master local[2] --jars {jar.name} {shown} hadoop_demo.py job {LAKE} {REPORT}", env)
        code = (f"import pandas as pd; print(pd.read_parquet('{REPORT}').sort_values('year')"
                ".to_string(index=False))")
        run([sys.executable, "-c", code], f'python -c "{code}"', env)
        grid("ls", "-r", REPORT.removeprefix("grid://") + "/")
    finally:
        grid("down")
    console.print(f"[green]hadoop demo finished in {time.perf_counter() - started:.0f} s[/]")


if __name__ == "__main__":
    if sys.argv[1:2] == ["job"]:
        job(*sys.argv[2:4])
    else:
        main()
