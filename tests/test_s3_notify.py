"""S3 bucket notifications end to end: a real grid (S3 gateway, event agent), a real HTTP server here
receiving the webhook POSTs, and changes made through S3 (boto3), ``grid://`` (fsspec), the client
library and ``mpirun grid-distcp``: each is a notification, named and filtered as AWS would."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import fsspec
import pytest
import requests

from gridfs.cli.local import LocalGrid
from gridfs.client import GridClient
from gridfs.common.http import JsonClient
from tests.conftest import wait_for
from tests.s3_clients import grid_cli, refused, s3_client, signed_put

BIN = Path(sys.executable).parent
ARN = "arn:gridfs:webhook:::{}"


class Receiver:
    """A webhook: every POST's path, headers and JSON body, in arrival order; answers 200."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, str], dict[str, Any]]] = []
        received = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append((self.path, dict(self.headers.items()), json.loads(body)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def records(self, path: str) -> list[dict[str, Any]]:
        return [r for p, _, doc in list(self.posts) if p == path for r in doc["Records"]]

    def seen(self, path: str) -> list[tuple[str, str]]:
        """(eventName, key) of every record POSTed to ``path``."""
        return [(r["eventName"], r["s3"]["object"]["key"]) for r in self.records(path)]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.fixture(scope="module")
def notify_grid(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> Iterator[LocalGrid]:
    """A one-node grid whose agent polls often and gives up after 3 quick tries (the shared S3 grid's agent
    has the default minutes-long retry schedule), with its webhooks registered by the command line."""
    grid = LocalGrid(tmp_path_factory.mktemp("notify"))
    grid.up(nodes=1, volumes=3, s3_port=0, s3_workers=1, webhdfs_port=None, settings={
        "events": {"poll_interval": 0.05, "retry_base": 0.1, "retry_max": 0.2, "max_attempts": 3},
        "notify": {"timeout": 2}})
    try:
        with socket.socket() as s:  # a port nothing listens on: the endpoint that is down
            s.bind(("127.0.0.1", 0))
            down = s.getsockname()[1]
        for name, url in (("hook", f"{receiver.url}/one"), ("hook2", f"{receiver.url}/two"),
                          ("hook3", f"{receiver.url}/three"), ("down", f"http://127.0.0.1:{down}/")):
            out = grid_cli(grid, "notify", "add-endpoint", name, url)
            assert out.returncode == 0 and ARN.format(name) in out.stdout, out
        yield grid
    finally:
        grid.down()


def configure(s3: Any, bucket: str, *rules: dict[str, Any]) -> None:
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
        "TopicConfigurations": list(rules)})


def rule(rid: str, endpoint: str, events: list[str], prefix: str = "", suffix: str = "") -> dict[str, Any]:
    filters = [{"Name": n, "Value": v} for n, v in (("prefix", prefix), ("suffix", suffix)) if v]
    return {"Id": rid, "TopicArn": ARN.format(endpoint), "Events": events,
            **({"Filter": {"Key": {"FilterRules": filters}}} if filters else {})}


def test_s3_writes_copies_uploads_and_deletes_are_posted_with_aws_names(notify_grid: LocalGrid,
                                                                       receiver: Receiver) -> None:
    s3 = s3_client(notify_grid, "alice")
    s3.create_bucket(Bucket="nb1")
    configure(s3, "nb1", rule("created", "hook", ["s3:ObjectCreated:*"], prefix="in/"),
              rule("removed", "hook", ["s3:ObjectRemoved:*"], prefix="in/"))

    put = s3.put_object(Bucket="nb1", Key="in/a.txt", Body=b"hello")
    s3.copy_object(Bucket="nb1", Key="in/b.txt", CopySource={"Bucket": "nb1", "Key": "in/a.txt"})
    up = s3.create_multipart_upload(Bucket="nb1", Key="in/c.bin")
    part = s3.upload_part(Bucket="nb1", Key="in/c.bin", UploadId=up["UploadId"], PartNumber=1, Body=b"m" * 1000)
    done = s3.complete_multipart_upload(Bucket="nb1", Key="in/c.bin", UploadId=up["UploadId"],
                                        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    form = s3.generate_presigned_post("nb1", "in/d.txt")
    assert requests.post(form["url"], data=form["fields"], files={"file": ("d.txt", b"posted!")},
                         timeout=30).status_code == 204
    s3.put_object(Bucket="nb1", Key="out/x.txt", Body=b"not under in/")
    s3.delete_object(Bucket="nb1", Key="in/a.txt")
    s3.put_bucket_versioning(Bucket="nb1", VersioningConfiguration={"Status": "Enabled"})
    marker = s3.delete_object(Bucket="nb1", Key="in/b.txt")["VersionId"]
    s3.delete_object(Bucket="nb1", Key="in/b.txt", VersionId=marker)  # the marker itself removed
    last = s3.put_object(Bucket="nb1", Key="in/z z.txt", Body=b"last")

    expected = [("ObjectCreated:Put", "in/a.txt"), ("ObjectCreated:Copy", "in/b.txt"),
                ("ObjectCreated:CompleteMultipartUpload", "in/c.bin"), ("ObjectCreated:Post", "in/d.txt"),
                ("ObjectRemoved:Delete", "in/a.txt"), ("ObjectRemoved:DeleteMarkerCreated", "in/b.txt"),
                ("ObjectRemoved:Delete", "in/b.txt"), ("ObjectCreated:Put", "in/z+z.txt")]
    wait_for("every notification of nb1", lambda: len(receiver.seen("/one")) >= len(expected), timeout=20)
    # One container's events are handled in commit order, so out/x.txt, written between, was filtered out.
    assert receiver.seen("/one") == expected
    records = receiver.records("/one")
    by = {(r["eventName"], r["s3"]["object"]["key"]): r for r in records}
    first = by["ObjectCreated:Put", "in/a.txt"]
    assert first["eventSource"] == "gridfs:s3" and first["eventVersion"] == "2.1"
    assert first["eventTime"].endswith("Z") and first["s3"]["bucket"]["name"] == "nb1"
    assert first["s3"]["configurationId"] == "created"
    assert first["s3"]["object"]["size"] == 5 and first["s3"]["object"]["eTag"] == put["ETag"].strip('"')
    assert "versionId" not in first["s3"]["object"]  # unversioned then
    assert by["ObjectCreated:Copy", "in/b.txt"]["s3"]["object"]["size"] == 5
    completed = by["ObjectCreated:CompleteMultipartUpload", "in/c.bin"]["s3"]["object"]
    assert (completed["size"], completed["eTag"]) == (1000, done["ETag"].strip('"'))
    assert by["ObjectCreated:Post", "in/d.txt"]["s3"]["object"]["size"] == 7
    removed = by["ObjectRemoved:DeleteMarkerCreated", "in/b.txt"]
    assert removed["s3"]["configurationId"] == "removed" and removed["s3"]["object"]["versionId"] == marker
    assert "size" not in removed["s3"]["object"]
    assert by["ObjectCreated:Put", "in/z+z.txt"]["s3"]["object"]["versionId"] == last["VersionId"]
    sequencers = [r["s3"]["object"]["sequencer"] for r in records]
    assert sequencers == sorted(sequencers) and len(set(sequencers)) == len(sequencers)
    # The grid's secret never leaves it.
    secret = notify_grid.config().secret
    assert all(secret not in json.dumps(h) and "X-Grid-Secret" not in h for _, h, _ in receiver.posts)


def test_grid_fs_and_client_library_changes_are_posted_through_prefix_and_suffix_filters(
        notify_grid: LocalGrid, receiver: Receiver) -> None:
    s3 = s3_client(notify_grid, "alice")
    s3.create_bucket(Bucket="nb2")
    configure(s3, "nb2", rule("csv", "hook2", ["s3:ObjectCreated:Put", "s3:ObjectRemoved:Delete"],
                              prefix="data/", suffix=".csv"))
    fs = fsspec.filesystem("grid", config=str(notify_grid.config_path), skip_instance_cache=True)
    fs.pipe("grid://nb2/data/a.csv", b"1,2\n")
    fs.pipe("grid://nb2/data/a.txt", b"suffix misses")
    fs.pipe("grid://nb2/other/b.csv", b"prefix misses")
    fs.mv("grid://nb2/data/a.csv", "grid://nb2/data/b.csv")  # a rename: Copy (not asked for) and Delete
    fs.rm("grid://nb2/data/b.csv")
    GridClient(notify_grid.config_path).put("nb2", "data/c.csv", b"3,4,5\n")

    expected = [("ObjectCreated:Put", "data/a.csv"), ("ObjectRemoved:Delete", "data/a.csv"),
                ("ObjectRemoved:Delete", "data/b.csv"), ("ObjectCreated:Put", "data/c.csv")]
    wait_for("the grid:// notifications", lambda: len(receiver.seen("/two")) >= len(expected), timeout=20)
    assert receiver.seen("/two") == expected
    sizes = [r["s3"]["object"].get("size") for r in receiver.records("/two")]
    assert sizes == [4, None, None, 6]


def test_grid_distcp_copies_are_posted(notify_grid: LocalGrid, receiver: Receiver, tmp_path: Path) -> None:
    s3 = s3_client(notify_grid, "alice")
    s3.create_bucket(Bucket="nb3")
    configure(s3, "nb3", rule("lake", "hook3", ["s3:ObjectCreated:*"], prefix="lake/"))
    src = tmp_path / "src"
    files = {"a.csv": 10, "day=1/b.parquet": 3000, "day=2/c.parquet": 70_000}
    for rel, size in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(os.urandom(size))
    env = {**os.environ, "GRID_CONFIG": str(notify_grid.config_path), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    run = subprocess.run([str(BIN / "mpirun"), "-n", "2", str(BIN / "grid-distcp"), str(src), "grid://nb3/lake",
                          "-quiet"], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr

    wait_for("the distcp notifications", lambda: len(receiver.seen("/three")) >= len(files), timeout=20)
    got = {(r["eventName"], r["s3"]["object"]["key"], r["s3"]["object"]["size"]) for r in receiver.records("/three")}
    assert got == {("ObjectCreated:Put", f"lake/{rel}".replace("=", "%3D"), size) for rel, size in files.items()}
    assert len(receiver.records("/three")) == len(files)


def test_only_the_bucket_owner_reads_or_sets_the_configuration(notify_grid: LocalGrid) -> None:
    alice, bob, anonymous = (s3_client(notify_grid, n) for n in ("alice", "bob", None))
    alice.create_bucket(Bucket="nb4")
    assert alice.get_bucket_notification_configuration(Bucket="nb4").get("TopicConfigurations") is None
    configure(alice, "nb4", rule("mine", "hook", ["s3:ObjectCreated:*"]))
    for who in (bob, anonymous):
        assert refused(lambda c=who: c.get_bucket_notification_configuration(Bucket="nb4"))[0] == "AccessDenied"
        assert refused(lambda c=who: configure(c, "nb4", rule("theirs", "hook3", ["s3:ObjectRemoved:*"])))[0] \
            == "AccessDenied"
    got = alice.get_bucket_notification_configuration(Bucket="nb4")["TopicConfigurations"]
    assert [(c["Id"], c["TopicArn"], c["Events"]) for c in got] == [("mine", ARN.format("hook"),
                                                                     ["s3:ObjectCreated:*"])]
    # An empty configuration turns notifications off.
    alice.put_bucket_notification_configuration(Bucket="nb4", NotificationConfiguration={})
    assert alice.get_bucket_notification_configuration(Bucket="nb4").get("TopicConfigurations") is None


BAD = {
    "unknown event": ("<Event>s3:ObjectRestore:Post</Event>", "InvalidArgument"),
    "made-up event": ("<Event>s3:ObjectCreated:Whatever</Event>", "InvalidArgument"),
    "no event": ("", "MalformedXML"),
    "unregistered endpoint": ("<Event>s3:ObjectCreated:*</Event>", "InvalidArgument", "nobody"),
    "AWS ARN": ("<Event>s3:ObjectCreated:*</Event>", "InvalidArgument", None, "arn:aws:sns:us-east-1:1:t"),
    "bad filter name": ("<Event>s3:ObjectCreated:*</Event><Filter><S3Key><FilterRule><Name>middle</Name>"
                        "<Value>x</Value></FilterRule></S3Key></Filter>", "InvalidArgument"),
    "two prefixes": ("<Event>s3:ObjectCreated:*</Event><Filter><S3Key><FilterRule><Name>prefix</Name><Value>a"
                     "</Value></FilterRule><FilterRule><Name>prefix</Name><Value>b</Value></FilterRule></S3Key>"
                     "</Filter>", "InvalidArgument"),
    "unknown element": ("<Event>s3:ObjectCreated:*</Event><Url>http://169.254.169.254/</Url>", "MalformedXML"),
}


def _topic(inner: str, endpoint: str | None = "hook", arn: str | None = None, rid: str = "r") -> str:
    return f"<TopicConfiguration><Id>{rid}</Id><Topic>{arn or ARN.format(endpoint)}</Topic>{inner}</TopicConfiguration>"


def _document(*topics: str, head: str = "") -> bytes:
    return (f'{head}<NotificationConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">{"".join(topics)}'
            "</NotificationConfiguration>").encode()


def test_malformed_or_hostile_configurations_are_refused_and_nothing_is_set(notify_grid: LocalGrid) -> None:
    alice = s3_client(notify_grid, "alice")
    alice.create_bucket(Bucket="nb5")
    configure(alice, "nb5", rule("kept", "hook", ["s3:ObjectRemoved:Delete"], prefix="logs/", suffix=".gz"))

    def put(body: bytes) -> requests.Response:
        return signed_put(notify_grid, "alice", "/nb5?notification", body)

    for case, (inner, code, *target) in BAD.items():
        answer = put(_document(_topic(inner, *target)))
        assert (answer.status_code, f"<Code>{code}</Code>" in answer.text) == (400, True), (case, answer.text)
    overlap = _document(_topic("<Event>s3:ObjectCreated:*</Event>"),
                        _topic("<Event>s3:ObjectCreated:Put</Event>", rid="s"))
    assert "overlap" in put(overlap).text
    twice = _document(_topic("<Event>s3:ObjectCreated:*</Event>"), _topic("<Event>s3:ObjectRemoved:*</Event>"))
    assert "same Id" in put(twice).text
    bomb = _document(_topic("<Event>&e;</Event>"), head='<?xml version="1.0"?><!DOCTYPE n [<!ENTITY e '
                     '"s3:ObjectCreated:*">]>')
    assert "<Code>MalformedXML</Code>" in put(bomb).text
    bridge = put(b"<NotificationConfiguration><EventBridgeConfiguration/></NotificationConfiguration>")
    assert bridge.status_code == 501
    got = alice.get_bucket_notification_configuration(Bucket="nb5")["TopicConfigurations"]
    assert [(c["Id"], c["Events"]) for c in got] == [("kept", ["s3:ObjectRemoved:Delete"])]
    assert {(f["Name"].lower(), f["Value"]) for f in got[0]["Filter"]["Key"]["FilterRules"]} == {
        ("prefix", "logs/"), ("suffix", ".gz")}

    # The operator cannot point a webhook at the grid's own services either.
    s3_port = notify_grid.config().extra["s3"]["url"].rsplit(":", 1)[1]
    out = grid_cli(notify_grid, "notify", "add-endpoint", "evil", f"http://localhost:{s3_port}/")
    assert out.returncode == 1 and "grid's own services" in out.stderr, out
    assert grid_cli(notify_grid, "notify", "add-endpoint", "bad", "file:///etc/passwd").returncode == 1
    listed = json.loads(grid_cli(notify_grid, "notify", "endpoints", "--json").stdout)
    assert sorted(e["name"] for e in listed) == ["down", "hook", "hook2", "hook3"]


def test_an_endpoint_that_is_down_is_retried_then_kept_as_a_dead_letter(notify_grid: LocalGrid) -> None:
    s3 = s3_client(notify_grid, "alice")
    s3.create_bucket(Bucket="nb6")
    configure(s3, "nb6", rule("lost", "down", ["s3:ObjectCreated:*"]))
    s3.put_object(Bucket="nb6", Key="never-delivered", Body=b"x")
    cfg = notify_grid.config()
    events = next(s for s in notify_grid.services() if s.type == "events")
    api = JsonClient(events.url, cfg.secret)

    def dead() -> list[dict[str, Any]]:
        return [d for d in api.call("GET", "/v1/dead")["dead"] if d["event"]["data"].get("bucket") == "nb6"]

    letters = wait_for("the dead letter of the endpoint that is down", dead, timeout=20)
    assert len(letters) == 1
    assert letters[0]["handler"] == "gridfs.events.notify:S3Notifier" and letters[0]["attempts"] == 3
    assert letters[0]["event"]["data"]["key"] == "never-delivered"
    assert "Connection refused" in letters[0]["error"] or "NewConnectionError" in letters[0]["error"], letters
    shown = json.loads(grid_cli(notify_grid, "events", "--dead", "--json").stdout)
    assert letters[0]["id"] in [d["id"] for d in shown]
