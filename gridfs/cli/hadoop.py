"""Spark and the Hadoop shell with the grid:// connector: where the jars are, how to start them.

The connector (``hadoop-connector/``, built by ``make connector``) is a Hadoop ``FileSystem``; Spark
and ``FsShell`` run from the Hadoop client jars inside the pyspark wheel (the ``hadoop`` extra), so
nothing else needs installing. Used by ``make hadoop-demo``, the Spark tests and bench/hadoop_bench.py.

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape

from gridfs.common.errors import GridError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

CONNECTOR_BUILD = Path(__file__).resolve().parents[2] / "hadoop-connector" / "build"
FS_IMPL = "org.gridfs.hadoop.GridFileSystem"


def connector_jar() -> Path:
    """The connector jar: ``$GRID_HADOOP_JAR``, else the one ``make connector`` builds in the source tree."""
    jar = Path(os.environ.get("GRID_HADOOP_JAR", CONNECTOR_BUILD / "gridfs-hadoop.jar"))
    if not jar.is_file():
        raise GridError(f"{jar} is missing: build it with `make connector` (or set GRID_HADOOP_JAR)")
    return jar


def pyspark_jars() -> Path:
    """The folder of Spark's and Hadoop's jars inside the installed pyspark wheel."""
    try:
        import pyspark
    except ImportError as e:
        raise GridError("pyspark is not installed: pip install -e '.[hadoop]'") from e
    return Path(pyspark.__file__).parent / "jars"


def grid_settings(config: str | os.PathLike) -> dict[str, str]:
    """The Hadoop settings that make grid:// URLs reach the grid of ``config`` (a grid.toml)."""
    return {"fs.grid.impl": FS_IMPL, "fs.grid.config": str(Path(config).resolve())}


def spark_session(config: str | os.PathLike, app: str = "gridfs", memory: str = "1g", cores: int = 2,
                  extra: Mapping[str, str] | None = None) -> SparkSession:
    """A local-mode SparkSession that reads and writes grid:// through the connector.

    Spark binds to 127.0.0.1 (``SPARK_LOCAL_IP``, read by the JVM it launches), without its web UI."""
    from pyspark.sql import SparkSession

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = (SparkSession.builder.master(f"local[{cores}]").appName(app)
               .config("spark.jars", str(connector_jar()))
               .config("spark.driver.memory", memory)
               .config("spark.driver.bindAddress", "127.0.0.1")
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.pyspark.python", sys.executable))
    for key, value in {**{f"spark.hadoop.{k}": v for k, v in grid_settings(config).items()}, **(extra or {})}.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def stop_spark(session: SparkSession, timeout: float = 30.0) -> None:
    """Stop ``session`` and the JVM pyspark launched for it. pyspark keeps that JVM for the life of the Python
    process, and a later session would inherit its memory, jars and settings: each user gets its own."""
    from pyspark import SparkContext

    session.stop()
    gateway = SparkContext._gateway
    if gateway is None:
        return
    SparkContext._gateway = SparkContext._jvm = None
    gateway.shutdown()
    proc = getattr(gateway, "proc", None)  # None when pyspark joined a JVM it did not start
    if proc is not None:
        proc.stdin.close()  # the gateway server exits when its stdin closes
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def write_core_site(folder: str | os.PathLike, settings: Mapping[str, str]) -> Path:
    """A Hadoop configuration folder holding ``core-site.xml`` with ``settings``, for the shell's classpath."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    props = "".join(f"  <property><name>{escape(k)}</name><value>{escape(v)}</value></property>\n"
                    for k, v in settings.items())
    path = folder / "core-site.xml"
    path.write_text(f'<?xml version="1.0"?>\n<configuration>\n{props}</configuration>\n')
    return folder


def fsshell(conf_dir: str | os.PathLike, *args: str, heap: str = "512m") -> list[str]:
    """The command line of ``hadoop fs ARGS`` (``org.apache.hadoop.fs.FsShell``) with the connector,
    configured by the core-site.xml in ``conf_dir`` (see write_core_site)."""
    classpath = os.pathsep.join([str(conf_dir), str(connector_jar()), str(pyspark_jars() / "*")])
    return ["java", f"-Xmx{heap}", "-cp", classpath, "org.apache.hadoop.fs.FsShell", *args]
