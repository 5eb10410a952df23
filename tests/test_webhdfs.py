"""The WebHDFS gateway against real clients: Hadoop's FsShell (webhdfs://, a JVM per command), fsspec's
``webhdfs`` filesystem, the ``hdfs`` package (HdfsCLI), raw HTTP for what clients never send, and grid://
on the same objects. A live local grid and real gateway processes, including one with --require-secret."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import fsspec
import hdfs
import pytest
import requests

from gridfs.cli.local import LocalGrid
from gridfs.client import GridClient
from gridfs.common.service import SpawnedService, spawn_service
from gridfs.fs import GridFileSystem
from tests.conftest import wait_for

MiB = 1 << 20


def pyspark_jars() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent / "jars"


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalGrid]:
    """Six volumes (EC42 for big objects, copies for small ones); `grid up` starts the WebHDFS gateway.
    The user name `hadoop` maps to the account `alice` for the gateways this module starts itself."""
    grid = LocalGrid(tmp_path_factory.mktemp("grid"))
    grid.up(nodes=3, volumes=2, s3_port=None)
    cfg = grid.config()
    cfg.extra["webhdfs"]["accounts"] = {"hadoop": "alice", "etl@EXAMPLE.COM": "alice"}
    cfg.save(grid.config_path)
    try:
        yield grid
    finally:
        grid.down()


def start_gateway(grid: LocalGrid, name: str, *args: str) -> SpawnedService:
    return spawn_service("gridfs.gateways.webhdfs", ["--config", str(grid.config_path), "--workers", "1", *args],
                         grid.run_dir, name)


@pytest.fixture(scope="module")
def gateway(grid: LocalGrid) -> Iterator[SpawnedService]:
    """A gateway started after the accounts mapping was written."""
    gateway = start_gateway(grid, "webhdfs-test")
    try:
        yield gateway
    finally:
        gateway.stop()


@pytest.fixture(scope="module")
def url(gateway: SpawnedService) -> str:
    return gateway.url


@pytest.fixture(scope="module")
def secret_url(grid: LocalGrid) -> Iterator[str]:
    gateway = start_gateway(grid, "webhdfs-secret", "--require-secret")
    try:
        yield gateway.url
    finally:
        gateway.stop()


@pytest.fixture(scope="module")
def client(grid: LocalGrid) -> Iterator[GridClient]:
    with GridClient(grid.config_path) as c:
        for bucket in ("raw", "fsspec", "batch"):
            c.create_bucket(bucket)
        yield c


@pytest.fixture(scope="module")
def hadoop_conf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """FsShell reads its settings from a core-site.xml on the classpath."""
    folder = tmp_path_factory.mktemp("hadoop-conf")
    (folder / "core-site.xml").write_text('<?xml version="1.0"?>\n<configuration>\n</configuration>\n')
    return folder


def fs_shell(url: str, conf: Path, *args: str, user: str = "default") -> subprocess.CompletedProcess:
    """One FsShell command on webhdfs:// (Hadoop's own WebHdfsFileSystem), in a JVM of its own."""
    port = urlsplit(url).port
    env = {**os.environ, "HADOOP_USER_NAME": user, "SPARK_LOCAL_IP": "127.0.0.1"}
    cmd = ["java", "-cp", f"{pyspark_jars()}/*:{conf}", "org.apache.hadoop.fs.FsShell",
           "-fs", f"webhdfs://127.0.0.1:{port}", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, f"{proc.args[-3:]} exited {proc.returncode}: {proc.stderr[-2000:]}"
    return proc.stdout


def call(url: str, method: str, path: str, op: str, **params: Any) -> requests.Response:
    return requests.request(method, f"{url}/webhdfs/v1{quote(path)}", params={"op": op, **params},
                            allow_redirects=False, timeout=60)


def remote_exception(resp: requests.Response, status: int, exception: str) -> str:
    """Assert a RemoteException answer; returns its message."""
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert "Content-Type" not in resp.headers  # Hadoop 3.5's client cannot parse JSON answers that have one
    body = resp.json()["RemoteException"]
    assert body["exception"] == exception, body
    java = {"UnsupportedOperationException": "java.lang.", "IllegalArgumentException": "java.lang.",
            "FileNotFoundException": "java.io.", "IOException": "java.io.",
            "AccessControlException": "org.apache.hadoop.security.",
            "FileAlreadyExistsException": "org.apache.hadoop.fs.",
            "ParentNotDirectoryException": "org.apache.hadoop.fs.",
            "PathIsNotEmptyDirectoryException": "org.apache.hadoop.fs."}[exception]
    assert body["javaClassName"] == java + exception
    return body["message"]


def raw_request(url: str, method: str, target: str) -> tuple[int, dict]:
    """A request line sent exactly as written (no client normalises `..` or `//` away)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.putrequest(method, target, skip_accept_encoding=True)
        conn.putheader("Content-Length", "0")
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")
    finally:
        conn.close()


def everything(client: GridClient, account: str = "default") -> dict[tuple[str, str], str]:
    """Every object of an account, with its content id: what a refused call must leave as it was."""
    c = GridClient(client.config, account)
    return {(b.bucket, o.key): o.content_id for b in c.list_buckets() for o in c.iter_list(b.bucket)
            if not isinstance(o, str)}


def md5md5crc32c_by_hadoop(tmp: Path, conf: Path, paths: list[Path], block_size: int) -> list[list[str]]:
    """HDFS's file checksum (algorithm, hex) of local files, composed from Hadoop's own classes (DataChecksum's
    CRC32C per 512 bytes, MD5Hash, DataOutputBuffer, MD5MD5CRC32CastagnoliFileChecksum) as FileChecksumHelper
    does."""
    src = tmp / "Md5Crc.java"
    if not (tmp / "Md5Crc.class").exists():
        src.write_text("""
import org.apache.hadoop.fs.*;
import org.apache.hadoop.io.*;
import org.apache.hadoop.util.*;
public class Md5Crc {
  public static void main(String[] a) throws Exception {
    long blockSize = Long.parseLong(a[0]);
    for (int i = 1; i < a.length; i++) checksum(java.nio.file.Files.readAllBytes(java.nio.file.Paths.get(a[i])),
                                                blockSize);
  }
  static void checksum(byte[] data, long blockSize) throws Exception {
    DataChecksum sum = DataChecksum.newDataChecksum(DataChecksum.Type.CRC32C, 512);
    DataOutputBuffer md5out = new DataOutputBuffer();
    long crcPerBlock = 0; int blocks = 0;
    for (long off = 0; off < data.length; off += blockSize) {
      int len = (int) Math.min(blockSize, data.length - off);
      byte[] crcs = new byte[(len + 511) / 512 * 4];
      sum.calculateChunkedSums(data, (int) off, len, crcs, 0);
      MD5Hash.digest(crcs).write(md5out);
      if (blocks++ == 0) crcPerBlock = crcs.length / 4;
    }
    FileChecksum c = data.length == 0
        ? new MD5MD5CRC32GzipFileChecksum(0, 0, MD5Hash.digest(new byte[32]))
        : new MD5MD5CRC32CastagnoliFileChecksum(512, blocks > 1 ? crcPerBlock : 0, MD5Hash.digest(md5out.getData()));
    System.out.println(c.getAlgorithmName() + "\\t" + StringUtils.byteToHexString(c.getBytes(), 0, c.getLength()));
  }
}
""")
        subprocess.run(["javac", "-cp", f"{pyspark_jars()}/*", "-d", str(tmp), str(src)], check=True, timeout=120)
    out = subprocess.run(["java", "-cp", f"{pyspark_jars()}/*:{conf}:{tmp}", "Md5Crc", str(block_size),
                          *map(str, paths)], capture_output=True, text=True, check=True, timeout=120)
    return [line.split() for line in out.stdout.splitlines()]


# -- Hadoop's shell --------------------------------------------------------------------------


def test_hadoop_shell_put_get_ls_mv_rm_checksum(url: str, hadoop_conf: Path, tmp_path: Path,
                                                client: GridClient) -> None:
    assert shutil.which("java"), "Java 17 is needed (make test installs it)"
    local = tmp_path / "local"
    (local / "sub").mkdir(parents=True)
    big = os.urandom(3 * MiB + 1234)  # three 1 MiB blocks and a short last CRC chunk
    (local / "big.bin").write_bytes(big)
    (local / "sub" / "small.txt").write_text("hello hadoop\n")
    (local / "empty").write_bytes(b"")

    ok(fs_shell(url, hadoop_conf, "-mkdir", "-p", "/shell/in/deep/er"))
    ok(fs_shell(url, hadoop_conf, "-D", "dfs.blocksize=1048576", "-put", str(local / "big.bin"),
                str(local / "sub"), str(local / "empty"), "/shell/in/"))
    listing = ok(fs_shell(url, hadoop_conf, "-ls", "-R", "/shell"))
    rows = {line.split()[-1]: line.split() for line in listing.splitlines() if line.startswith(("-", "d"))}
    assert sorted(rows) == ["/shell/in", "/shell/in/big.bin", "/shell/in/deep", "/shell/in/deep/er",
                            "/shell/in/empty", "/shell/in/sub", "/shell/in/sub/small.txt"]
    assert rows["/shell/in/big.bin"][0] == "-rw-r--r--" and rows["/shell/in/big.bin"][4] == str(len(big))
    assert rows["/shell/in/deep/er"][0].startswith("d")
    # grid:// sees the same tree: the files FsShell wrote (renamed from ._COPYING_) and the empty directory
    assert client.get("shell", "in/big.bin") == big
    gfs = GridFileSystem(client.config)
    assert gfs.isdir("shell/in/deep/er") and gfs.ls("shell/in/deep/er") == []
    assert not [o for o in client.iter_list("shell") if not isinstance(o, str) and "_COPYING_" in o.key]

    ok(fs_shell(url, hadoop_conf, "-get", "/shell/in/big.bin", str(tmp_path / "got.bin")))
    assert (tmp_path / "got.bin").read_bytes() == big
    assert ok(fs_shell(url, hadoop_conf, "-cat", "/shell/in/sub/small.txt")) == "hello hadoop\n"

    # -checksum: what HDFS computes for the same bytes and block size (-put's), per Hadoop's own classes
    names = ["big.bin", "empty", "sub/small.txt"]
    shown = ok(fs_shell(url, hadoop_conf, "-checksum", *(f"/shell/in/{n}" for n in names))).splitlines()
    expected = md5md5crc32c_by_hadoop(tmp_path, hadoop_conf, [local / n for n in names], MiB)
    assert [line.split()[1:] for line in shown] == expected
    assert expected[0][0] == "MD5-of-2048MD5-of-512CRC32C" and expected[1][0] == "MD5-of-0MD5-of-0CRC32"

    ok(fs_shell(url, hadoop_conf, "-mv", "/shell/in/sub", "/shell/in/deep/er"))  # a directory, into a directory
    ok(fs_shell(url, hadoop_conf, "-mv", "/shell/in/big.bin", "/shell/moved.bin"))  # a file: a metadata rename
    assert client.get("shell", "in/deep/er/sub/small.txt") == b"hello hadoop\n"
    assert client.head("shell", "moved.bin").size == len(big)
    ok(fs_shell(url, hadoop_conf, "-rm", "-r", "/shell/in/deep"))
    listing = ok(fs_shell(url, hadoop_conf, "-ls", "-R", "/shell"))
    assert sorted(line.split()[-1] for line in listing.splitlines() if line.startswith(("-", "d"))) == [
        "/shell/in", "/shell/in/empty", "/shell/moved.bin"]

    # refusals come back as Hadoop's exceptions
    again = fs_shell(url, hadoop_conf, "-put", str(local / "empty"), "/shell/in/")
    assert again.returncode == 1 and "File exists" in again.stderr
    append = fs_shell(url, hadoop_conf, "-appendToFile", str(local / "empty"), "/shell/moved.bin")
    assert append.returncode != 0 and "java.lang.UnsupportedOperationException: APPEND" in append.stderr
    missing = fs_shell(url, hadoop_conf, "-ls", "/shell/nothing")
    assert missing.returncode == 1 and "No such file or directory" in missing.stderr


def test_hadoop_shell_attributes_and_listing_batches(url: str, hadoop_conf: Path, client: GridClient) -> None:
    """-chmod, -chown and -touch keep hadoop.* properties; -ls pages with LISTSTATUS_BATCH (1000 a call),
    resuming after a directory whose name prefixes names that sort before its keys (n-1, n.txt < n/)."""
    names = [f"f{i:04d}" for i in range(996)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda n: client.put("batch", f"d/{n}", b""), names))
    for key in ("d/n-1", "d/n.txt", "d/n/inner", "d/o", "d/m/"):
        client.put("batch", key, b"x" if not key.endswith("/") else b"")
    first = call(url, "GET", "/batch/d", "LISTSTATUS_BATCH").json()["DirectoryListing"]
    page = [s["pathSuffix"] for s in first["partialListing"]["FileStatuses"]["FileStatus"]]
    assert len(page) == 1000 and first["remainingEntries"] > 0
    assert page[-4:] == ["m", "n-1", "n.txt", "n"]  # key order: m/ < n-1 < n.txt < n/
    second = call(url, "GET", "/batch/d", "LISTSTATUS_BATCH", startAfter="n").json()["DirectoryListing"]
    assert [s["pathSuffix"] for s in second["partialListing"]["FileStatuses"]["FileStatus"]] == ["o"]
    assert second["remainingEntries"] == 0
    after_m = call(url, "GET", "/batch/d", "LISTSTATUS_BATCH", startAfter="m").json()["DirectoryListing"]
    assert [s["pathSuffix"] for s in after_m["partialListing"]["FileStatuses"]["FileStatus"]] == [
        "n-1", "n.txt", "n", "o"]
    listing = ok(fs_shell(url, hadoop_conf, "-ls", "/batch/d"))
    assert "Found 1001 items" in listing
    shown = sorted(line.split()[-1].rsplit("/", 1)[-1] for line in listing.splitlines() if line.startswith(("-", "d")))
    assert shown == sorted([*names, "m", "n", "n-1", "n.txt", "o"])

    ok(fs_shell(url, hadoop_conf, "-chmod", "600", "/batch/d/o"))
    ok(fs_shell(url, hadoop_conf, "-chown", "etl:analysts", "/batch/d/o"))
    ok(fs_shell(url, hadoop_conf, "-touch", "-m", "-t", "20200102:030405", "/batch/d/o"))
    ok(fs_shell(url, hadoop_conf, "-chmod", "1777", "/batch/d/m"))  # a directory: its marker keeps it
    props = client.head("batch", "d/o").properties
    assert props["hadoop.permission"] == "600"
    assert (props["hadoop.owner"], props["hadoop.group"]) == ("etl", "analysts")
    stat = ok(fs_shell(url, hadoop_conf, "-stat", "%a %u %g %y", "/batch/d/o", "/batch/d/m")).splitlines()
    assert stat[0].split()[:4] == ["600", "etl", "analysts", "2020-01-02"]
    assert stat[1].split()[0] == "1777"
    assert client.head("batch", "d/m/").properties["hadoop.permission"] == "1777"
    count = ok(fs_shell(url, hadoop_conf, "-count", "/batch/d")).split()
    assert count[:3] == ["3", "1000", "4"]  # d, m, n; the files; n-1, n.txt, n/inner and o hold a byte each


# -- fsspec and HdfsCLI ----------------------------------------------------------------------


def test_fsspec_webhdfs_reads_lists_moves_and_refuses_writes(url: str, client: GridClient) -> None:
    data = os.urandom(5 * MiB + 77)  # erasure-coded, several chunks
    client.put("fsspec", "lake/part-0.bin", data)
    client.put("fsspec", "lake/sub/part-1.bin", b"second")
    fs = fsspec.filesystem("webhdfs", host="127.0.0.1", port=urlsplit(url).port, user="default",
                           skip_instance_cache=True)
    assert fs.ls("/fsspec/lake", detail=False) == ["/fsspec/lake/part-0.bin", "/fsspec/lake/sub"]
    info = fs.info("/fsspec/lake/part-0.bin")
    assert info["type"] == "file" and info["size"] == len(data) and info["owner"] == "default"
    assert fs.cat_file("/fsspec/lake/part-0.bin") == data
    for start, end in ((0, 1), (100, 8 * MiB), (len(data) - 5, len(data)), (4 * MiB - 3, 4 * MiB + 3)):
        assert fs.cat_file("/fsspec/lake/part-0.bin", start=start, end=end) == data[start:end]
    with fs.open("/fsspec/lake/part-0.bin", "rb", block_size=1 * MiB) as f:
        f.seek(3 * MiB + 5)
        assert f.read(2 * MiB) == data[3 * MiB + 5: 5 * MiB + 5]
    assert fs.find("/fsspec/lake") == ["/fsspec/lake/part-0.bin", "/fsspec/lake/sub/part-1.bin"]
    summary = fs.content_summary("/fsspec/lake")
    assert (summary["fileCount"], summary["directoryCount"], summary["length"]) == (2, 2, len(data) + 6)
    assert fs.ukey("/fsspec/lake/sub/part-1.bin")["algorithm"] == "MD5-of-0MD5-of-512CRC32C"
    assert fs.home_directory() == "/user/default"
    assert abs(fs.modified("/fsspec/lake/part-0.bin").timestamp() - client.head("fsspec", "lake/part-0.bin").mtime) < 1

    fs.mkdir("/fsspec/empty/dir")
    assert fs.isdir("/fsspec/empty/dir") and fs.ls("/fsspec/empty/dir") == []
    assert GridFileSystem(client.config).isdir("fsspec/empty/dir")  # grid:// sees the marker as a directory
    fs.mv("/fsspec/lake/sub", "/fsspec/moved")
    assert client.get("fsspec", "moved/part-1.bin") == b"second"
    fs.chmod("/fsspec/moved/part-1.bin", "640")
    assert fs.info("/fsspec/moved/part-1.bin")["permission"] == "640"
    fs.rm("/fsspec/moved", recursive=True)
    assert not fs.exists("/fsspec/moved") and fs.ls("/fsspec", detail=False) == ["/fsspec/empty", "/fsspec/lake"]

    with pytest.raises(FileNotFoundError, match="/fsspec/nothing"):
        fs.info("/fsspec/nothing")
    with pytest.raises(ValueError, match="invalid bucket name"):
        fs.ls("/No_Such_Bucket")
    # fsspec's writer creates an empty file, then APPENDs each block: the gateway refuses APPEND
    with pytest.raises(ValueError, match="APPEND is not supported"):
        fs.pipe_file("/fsspec/written.bin", b"abc")
    assert client.head("fsspec", "written.bin").size == 0


def test_hdfscli_write_read_status_rename_delete_errors(url: str, client: GridClient, tmp_path: Path) -> None:
    cli = hdfs.InsecureClient(url, user="default")
    payload = os.urandom(2 * MiB + 3)
    cli.write("/hdfscli/in/data.bin", data=payload, permission="640", blocksize=MiB)
    cli.write("/hdfscli/in/gen.bin", data=(payload[i:i + 65536] for i in range(0, len(payload), 65536)))  # chunked
    assert client.get("hdfscli", "in/gen.bin") == payload
    with cli.read("/hdfscli/in/data.bin", offset=MiB - 7, length=20) as reader:
        assert reader.read() == payload[MiB - 7: MiB + 13]
    status = cli.status("/hdfscli/in/data.bin")
    assert (status["type"], status["length"], status["permission"], status["blockSize"]) == (
        "FILE", len(payload), "640", MiB)
    assert cli.status("/hdfscli/in")["type"] == "DIRECTORY"
    assert cli.status("/hdfscli/none", strict=False) is None
    assert cli.list("/hdfscli/in") == ["data.bin", "gen.bin"]
    cli.download("/hdfscli/in/data.bin", str(tmp_path / "down.bin"))
    assert (tmp_path / "down.bin").read_bytes() == payload
    assert cli.checksum("/hdfscli/in/data.bin")["algorithm"] == "MD5-of-2048MD5-of-512CRC32C"  # 3 blocks of 1 MiB
    cli.set_times("/hdfscli/in/data.bin", modification_time=1_600_000_000_000)
    assert cli.status("/hdfscli/in/data.bin")["modificationTime"] == 1_600_000_000_000
    assert client.head("hdfscli", "in/data.bin").properties["hadoop.mtime"] == "1600000000000"
    assert cli.content("/hdfscli")["length"] == 2 * len(payload)

    cli.makedirs("/hdfscli/out")
    cli.rename("/hdfscli/in/data.bin", "/hdfscli/out")  # into the directory
    assert cli.list("/hdfscli/out") == ["data.bin"] and cli.list("/hdfscli/in") == ["gen.bin"]
    before = everything(client)
    with pytest.raises(hdfs.HdfsError, match="already exists"):
        cli.write("/hdfscli/out/data.bin", data=b"other")  # overwrite=False
    with pytest.raises(hdfs.HdfsError, match="is not a directory"):
        cli.write("/hdfscli/out/data.bin/below", data=b"x")  # a file as a parent
    with pytest.raises(hdfs.HdfsError, match="non empty"):
        cli.delete("/hdfscli/out")  # not recursive
    assert everything(client) == before
    assert cli.delete("/hdfscli", recursive=True)
    assert cli.status("/hdfscli", strict=False) is None


# -- the protocol, raw -----------------------------------------------------------------------


def test_unsupported_operations_answer_unsupported_operation_exception(url: str, client: GridClient) -> None:
    client.put("raw", "file.txt", b"abc")
    for method, op in (("POST", "APPEND"), ("POST", "TRUNCATE"), ("POST", "CONCAT"), ("PUT", "SETACL"),
                       ("GET", "GETACLSTATUS"), ("PUT", "SETXATTR"), ("GET", "GETXATTRS"), ("PUT", "CREATESNAPSHOT"),
                       ("DELETE", "DELETESNAPSHOT"), ("PUT", "SETSTORAGEPOLICY"), ("PUT", "CREATESYMLINK")):
        message = remote_exception(call(url, method, "/raw/file.txt", op), 400, "UnsupportedOperationException")
        assert message.startswith(f"{op} is not supported")
    assert "not an operation" in remote_exception(call(url, "GET", "/raw", "NOSUCHOP"), 400,
                                                  "IllegalArgumentException")
    assert "a PUT operation, not GET" in remote_exception(call(url, "GET", "/raw", "MKDIRS"), 400,
                                                          "IllegalArgumentException")
    assert client.get("raw", "file.txt") == b"abc"


def test_json_answers_and_the_create_redirect_carry_no_content_type(url: str) -> None:
    status = call(url, "GET", "/", "GETFILESTATUS")
    assert status.status_code == 200 and "Content-Type" not in status.headers
    redirect = call(url, "PUT", "/raw/new.txt", "CREATE", overwrite="true")
    assert redirect.status_code == 307 and "Content-Type" not in redirect.headers
    target = redirect.headers["Location"]
    assert target.startswith(url + "/webhdfs/v1/raw/new.txt?") and "data=true" in target
    assert requests.put(target, data=b"body", timeout=30).status_code == 201
    opened = call(url, "GET", "/raw/new.txt", "OPEN", offset=1)
    assert (opened.status_code, opened.content) == (200, b"ody")
    located = call(url, "GET", "/raw/new.txt", "OPEN", noredirect="true").json()["Location"]
    assert requests.get(located, timeout=30).content == b"body"


def test_ranges_offsets_and_lengths(url: str, client: GridClient) -> None:
    data = os.urandom(9 * MiB + 11)
    client.put("raw", "ranges.bin", data)
    for offset, length in ((0, None), (1, 10), (8 * MiB - 1, 2), (9 * MiB, 100), (len(data) - 1, None),
                           (len(data), None), (12345, 0)):
        params = {"offset": offset, **({"length": length} if length is not None else {})}
        resp = call(url, "GET", "/raw/ranges.bin", "OPEN", **params)
        end = len(data) if length is None else min(len(data), offset + length)
        assert resp.status_code == 200 and resp.content == data[offset:end], (offset, length)
    assert "out of the range" in remote_exception(call(url, "GET", "/raw/ranges.bin", "OPEN", offset=len(data) + 1),
                                                  400, "IllegalArgumentException")


def test_bad_input_gets_a_clear_error_and_changes_nothing(url: str, client: GridClient,
                                                          gateway: SpawnedService) -> None:
    client.put("raw", "keep/file.txt", b"kept")
    before = everything(client)
    long_name = "x" * 1100
    for target in ("/webhdfs/v1/raw/../raw/evil?op=MKDIRS", "/webhdfs/v1/raw/./x?op=MKDIRS",
                   "/webhdfs/v1/raw//x?op=MKDIRS", "/webhdfs/v1/raw/a%00b?op=MKDIRS", "/webhdfs/v1/raw/%ff?op=MKDIRS",
                   f"/webhdfs/v1/raw/{long_name}?op=MKDIRS", "/webhdfs/v1/Bad_Bucket/x?op=MKDIRS",
                   "/webhdfs/v1/raw/keep/file.txt?op=RENAME&destination=relative/path",
                   "/webhdfs/v1/raw/keep/file.txt?op=RENAME&destination=/raw/../other",
                   "/webhdfs/v1/raw/keep/file.txt?op=RENAME",
                   "/webhdfs/v1/raw/keep/file.txt?op=DELETE&recursive=maybe",
                   "/webhdfs/v1/raw/keep/file.txt?op=SETPERMISSION&permission=999",
                   "/webhdfs/v1/raw/keep/file.txt?op=SETOWNER&owner=bad%20name",
                   "/webhdfs/v1/raw/keep/file.txt?op=SETTIMES&modificationtime=-5",
                   "/webhdfs/v1/raw/keep/new?op=CREATE&blocksize=1000",
                   "/webhdfs/v1/raw/keep/new?op=CREATE&overwrite=perhaps",
                   "/webhdfs/v1/raw/keep/new?op=CREATE&user.name=..%2Fetc"):
        method = "DELETE" if "op=DELETE" in target else "PUT"
        status, body = raw_request(url, method, target)
        assert status == 400 and body["RemoteException"]["exception"] == "IllegalArgumentException", (target, body)
    for params in ({"offset": "-1"}, {"offset": "abc"}, {"length": "-5"}):
        remote_exception(call(url, "GET", "/raw/keep/file.txt", "OPEN", **params), 400, "IllegalArgumentException")
    remote_exception(call(url, "GET", "/raw/keep", "LISTSTATUS_BATCH", startAfter="a/b"), 400,
                     "IllegalArgumentException")
    remote_exception(call(url, "PUT", "/raw/keep/file.txt", "MKDIRS"), 403, "FileAlreadyExistsException")
    remote_exception(call(url, "PUT", "/raw/keep/file.txt/sub", "MKDIRS"), 403, "ParentNotDirectoryException")
    remote_exception(call(url, "PUT", "/raw/keep", "CREATE"), 403, "FileAlreadyExistsException")
    remote_exception(call(url, "GET", "/raw/keep", "GETFILECHECKSUM"), 404, "FileNotFoundException")
    remote_exception(call(url, "GET", "/raw/nothing/here", "LISTSTATUS"), 404, "FileNotFoundException")
    assert call(url, "PUT", "/raw/nothing", "RENAME", destination="/raw/else").json() == {"boolean": False}
    assert call(url, "PUT", "/raw/keep", "RENAME", destination="/raw/keep/inside").json() == {"boolean": False}
    assert call(url, "DELETE", "/raw/nothing", "DELETE").json() == {"boolean": False}
    assert everything(client) == before
    # a body cut short stores nothing: the grid commits only a complete write
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.putrequest("PUT", "/webhdfs/v1/raw/keep/cut.bin?op=CREATE&data=true")
    conn.putheader("Content-Length", str(10 * MiB))
    conn.endheaders()
    conn.send(os.urandom(3 * MiB))
    conn.close()
    wait_for("the gateway to give up on the body cut short",
             lambda: "CREATE /raw/keep/cut.bin failed" in gateway.log_path.read_text())
    assert everything(client) == before


def test_memory_stays_bounded_while_streaming(url: str, client: GridClient, gateway: SpawnedService) -> None:
    """The peak memory of the gateway's worker after a 640 MiB CREATE (chunked) and OPEN is what a 128 MiB one
    left (past the few metachunks in flight): bodies stream through, never held whole."""
    pid = gateway.process.pid
    worker = int(Path(f"/proc/{pid}/task/{pid}/children").read_text().split()[0])

    def peak() -> int:
        status = Path(f"/proc/{worker}/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) * 1024  # type: ignore[union-attr]

    def stream(size: int) -> None:
        block = os.urandom(MiB)
        digest = hashlib.md5()

        def body() -> Iterator[bytes]:
            for _ in range(size // MiB):
                digest.update(block)
                yield block

        resp = requests.put(f"{url}/webhdfs/v1/raw/stream.bin", params={"op": "CREATE", "data": "true",
                                                                         "overwrite": "true"}, data=body(), timeout=600)
        assert resp.status_code == 201, resp.text
        back = hashlib.md5()
        with requests.get(f"{url}/webhdfs/v1/raw/stream.bin", params={"op": "OPEN"}, stream=True, timeout=600) as r:
            for piece in r.iter_content(MiB):
                back.update(piece)
        assert back.hexdigest() == digest.hexdigest()

    stream(128 * MiB)
    small = peak()
    stream(640 * MiB)
    assert client.head("raw", "stream.bin").size == 640 * MiB
    assert peak() - small < 96 * MiB, (small, peak())


# -- accounts and authentication -------------------------------------------------------------


def test_user_name_is_the_account_and_can_be_mapped(url: str, grid: LocalGrid, client: GridClient) -> None:
    alice = GridClient(grid.config_path, "alice")
    alice.create_bucket("alices", exist_ok=True)
    alice.put("alices", "secret.txt", b"alice's")
    as_hadoop = hdfs.InsecureClient(url, user="hadoop")  # [webhdfs] accounts maps hadoop -> alice
    assert as_hadoop.list("/") == ["alices"]
    assert as_hadoop.status("/alices/secret.txt")["owner"] == "hadoop"
    assert hdfs.InsecureClient(url, user="etl@EXAMPLE.COM").list("/") == ["alices"]  # no account name: mapped
    bob = hdfs.InsecureClient(url, user="bob")
    assert bob.list("/") == []
    assert bob.status("/alices/secret.txt", strict=False) is None
    assert "alices" not in [b.bucket for b in client.list_buckets()]  # the account default does not see it
    for bad in ("bad/user", "bob@EXAMPLE.COM"):  # not a user name; a user name that is no account, unmapped
        remote_exception(call(url, "GET", "/", "LISTSTATUS", **{"user.name": bad}), 400, "IllegalArgumentException")
    remote_exception(call(url, "GET", "/", "LISTSTATUS", doas="alice"), 403, "AccessControlException")
    # the gateway grid up started answers too, at the URL grid.toml records
    recorded = grid.config().extra["webhdfs"]["url"]
    assert recorded.startswith("webhdfs://127.0.0.1:")
    assert call(recorded.replace("webhdfs://", "http://"), "GET", "/", "GETFILESTATUS").status_code == 200


def test_require_secret_mode(secret_url: str, grid: LocalGrid, url: str) -> None:
    cfg = grid.config()
    for params in ({}, {"user.name": "default"}, {"delegation": "wrong"},
                   {"delegation": "gwt1.alice.99999999999.0000000000000000000000000000000000000000"}):
        remote_exception(call(secret_url, "GET", "/", "LISTSTATUS", **params), 403, "AccessControlException")
    # the namespace secret: user.name (or doas) picks the account
    listed = call(secret_url, "GET", "/", "LISTSTATUS", delegation=cfg.secret, **{"user.name": "hadoop"}).json()
    assert [s["pathSuffix"] for s in listed["FileStatuses"]["FileStatus"]] == ["alices"]
    # a token minted by the command line is bound to its account
    token = subprocess.run([sys.executable, "-m", "gridfs.cli.main", "--config", str(grid.config_path), "webhdfs",
                            "token", "alice"], capture_output=True, text=True, check=True).stdout.strip()
    as_token = hdfs.TokenClient(secret_url, token)
    assert as_token.list("/") == ["alices"]
    with as_token.read("/alices/secret.txt") as reader:
        assert reader.read() == b"alice's"
    remote_exception(call(secret_url, "GET", "/", "LISTSTATUS", delegation=token, **{"user.name": "bob"}), 403,
                     "AccessControlException")
    expired = subprocess.run([sys.executable, "-m", "gridfs.cli.main", "--config", str(grid.config_path), "webhdfs",
                              "token", "alice", "--ttl", "-10"], capture_output=True, text=True, check=True)
    assert "expired" in remote_exception(call(secret_url, "GET", "/", "LISTSTATUS",
                                              delegation=expired.stdout.strip()), 403, "AccessControlException")
    # GETDELEGATIONTOKEN hands out such a token (null from a gateway in simple mode, as a namenode without security)
    minted = call(secret_url, "GET", "/", "GETDELEGATIONTOKEN", delegation=cfg.secret,
                  **{"user.name": "alice"}).json()["Token"]["urlString"]
    fs = fsspec.filesystem("webhdfs", host="127.0.0.1", port=urlsplit(secret_url).port, token=minted,
                           skip_instance_cache=True)
    assert fs.cat_file("/alices/secret.txt") == b"alice's"
    assert call(url, "GET", "/", "GETDELEGATIONTOKEN").json() == {"Token": None}
