"""Issue 13, item 4: lifecycle. PUT/GET/DELETE ?lifecycle checked as S3 checks it, and rules executed by the
lifecycle worker: expiration by age and by date, noncurrent versions (the newest kept), delete markers
left alone, incomplete multipart uploads, filtered by prefix, tags and size; object lock honoured; each
action logged, at a bounded rate, by the service ``grid up`` starts or by ``grid lifecycle run``.

Real processes: one local grid (with its S3 gateway and lifecycle service) for the module, where a
lifecycle day lasts one second ([lifecycle] day_seconds); boto3 as the owner, a second user and anonymous;
the aws cli; the ``grid`` command.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from s3_clients import aws_cli, grid_cli, refused, running_grid, s3_client, signed_put

from gridfs.cli.local import LocalGrid, pid_alive
from gridfs.client import GridClient
from gridfs.common.config import GridConfig
from gridfs.common.service import spawn_service
from gridfs.lifecycle.worker import LifecycleWorker, read_log

DAY = 0.25  # seconds in a lifecycle day, for this module's grid


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalGrid]:
    # The service grid up starts does a pass at start, then waits an hour: the tests run passes on demand.
    settings = {"lifecycle": {"day_seconds": DAY, "interval": 3600, "rate": 0}}
    with running_grid(tmp_path_factory.mktemp("lifecycle"), lifecycle=True, settings=settings) as g:
        yield g


@pytest.fixture(scope="module")
def alice(grid: LocalGrid) -> Any:
    return s3_client(grid, "alice")


def run_pass(grid: LocalGrid, bucket: str, cli: bool = False) -> dict:
    """One pass over ``bucket``: through ``grid lifecycle run --bucket`` (the command line), else as the
    service makes one (the worker, in this process); its summary."""
    if cli:
        proc = grid_cli(grid, "lifecycle", "run", "--bucket", bucket, "--json")
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)
    return LifecycleWorker(GridConfig.load(grid.config_path), grid.data / "lifecycle").run_once(bucket).to_dict()


def keys(s3: Any, bucket: str) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))


def rules(*items: dict) -> dict:
    return {"Rules": [{"Status": "Enabled", **item} for item in items]}


def aged(days: float) -> None:
    """Wait until things written now are ``days`` old, as S3 counts: rounded up to the next day's start."""
    time.sleep((days + 1) * DAY + 0.1)


SAMPLE = rules(
    {"ID": "logs", "Filter": {"Prefix": "logs/"}, "Expiration": {"Days": 7}},
    {"ID": "temp", "Filter": {"Tag": {"Key": "temp", "Value": "yes"}}, "Expiration": {"Days": 1}},
    {"ID": "big", "Filter": {"And": {"Prefix": "big/", "Tags": [{"Key": "a", "Value": "1"}],
                                     "ObjectSizeGreaterThan": 0, "ObjectSizeLessThan": 1000}},
     "Expiration": {"Days": 2}},
    {"ID": "dated", "Filter": {"ObjectSizeGreaterThan": 5}, "Expiration": {"Date": datetime(2030, 1, 1, tzinfo=UTC)}},
    {"ID": "old", "Filter": {"Prefix": ""}, "NoncurrentVersionExpiration": {"NoncurrentDays": 3,
                                                                             "NewerNoncurrentVersions": 2},
     "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 4}},
    {"ID": "markers", "Filter": {"Prefix": "m/"}, "Expiration": {"ExpiredObjectDeleteMarker": True},
     "Status": "Disabled"},
)


def test_configuration_round_trip_and_only_the_owner_touches_it(grid: LocalGrid, alice: Any,
                                                                 tmp_path: Path) -> None:
    alice.create_bucket(Bucket="lc-config", ACL="public-read")
    assert refused(lambda: alice.get_bucket_lifecycle_configuration(Bucket="lc-config")) \
        == ("NoSuchLifecycleConfiguration", 404)
    alice.put_bucket_lifecycle_configuration(Bucket="lc-config", LifecycleConfiguration=SAMPLE)
    got = alice.get_bucket_lifecycle_configuration(Bucket="lc-config")["Rules"]
    assert got == SAMPLE["Rules"]
    for other in (s3_client(grid, "bob"), s3_client(grid, None)):  # even on a public-read bucket
        assert refused(lambda o=other: o.get_bucket_lifecycle_configuration(Bucket="lc-config")) \
            == ("AccessDenied", 403)
        assert refused(lambda o=other: o.put_bucket_lifecycle_configuration(
            Bucket="lc-config", LifecycleConfiguration=rules({"Filter": {}, "Expiration": {"Days": 1}}))) \
            == ("AccessDenied", 403)
        assert refused(lambda o=other: o.delete_bucket_lifecycle(Bucket="lc-config")) == ("AccessDenied", 403)
    # The aws cli writes and reads the same rules; the legacy Prefix form is answered as sent.
    (tmp_path / "rules.json").write_text(json.dumps(rules(
        {"ID": "cli", "Filter": {"Prefix": "cli/"}, "Expiration": {"Days": 3}},
        {"ID": "uploads", "Filter": {}, "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 2}})))
    proc = aws_cli(grid, "alice", tmp_path, "s3api", "put-bucket-lifecycle-configuration", "--bucket", "lc-config",
                   "--lifecycle-configuration", f"file://{tmp_path / 'rules.json'}")
    assert proc.returncode == 0, proc.stderr
    proc = aws_cli(grid, "alice", tmp_path, "s3api", "get-bucket-lifecycle-configuration", "--bucket", "lc-config")
    assert proc.returncode == 0, proc.stderr
    assert [(r["ID"], r["Filter"]) for r in json.loads(proc.stdout)["Rules"]] == [("cli", {"Prefix": "cli/"}),
                                                                                  ("uploads", {"Prefix": ""})]
    body = (b"<LifecycleConfiguration><Rule><Prefix>tmp/</Prefix><Status>Enabled</Status>"
            b"<Expiration><Days>1</Days></Expiration></Rule></LifecycleConfiguration>")
    assert signed_put(grid, "alice", "/lc-config?lifecycle", body).status_code == 200
    (rule,) = alice.get_bucket_lifecycle_configuration(Bucket="lc-config")["Rules"]
    assert rule["Prefix"] == "tmp/" and rule["ID"] == "rule-1" and "Filter" not in rule
    alice.delete_bucket_lifecycle(Bucket="lc-config")
    assert refused(lambda: alice.get_bucket_lifecycle_configuration(Bucket="lc-config"))[0] \
        == "NoSuchLifecycleConfiguration"


def xml_rule(inner: str, status: str = "<Status>Enabled</Status>") -> bytes:
    return f"<LifecycleConfiguration><Rule>{status}{inner}</Rule></LifecycleConfiguration>".encode()


DAYS1 = "<Expiration><Days>1</Days></Expiration>"


MALFORMED = [
    (xml_rule(DAYS1, status=""), "MalformedXML", 400),
    (xml_rule(DAYS1, status="<Status>On</Status>"), "MalformedXML", 400),
    (xml_rule("<Filter><Prefix>a</Prefix></Filter><Prefix>b</Prefix>" + DAYS1), "MalformedXML", 400),
    (xml_rule("<Filter><Prefix>a</Prefix><ObjectSizeLessThan>5</ObjectSizeLessThan></Filter>" + DAYS1),
     "MalformedXML", 400),
    (xml_rule("<Filter><Bogus/></Filter>" + DAYS1), "MalformedXML", 400),
    (xml_rule("<Expiration><Days>1</Days><Date>2030-01-01T00:00:00Z</Date></Expiration>"), "MalformedXML", 400),
    (xml_rule("<Expiration><Days>1</Days><ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker>"
              "</Expiration>"), "MalformedXML", 400),
    (xml_rule("<Expiration><Days>0</Days></Expiration>"), "InvalidArgument", 400),
    (xml_rule("<Expiration><Days>-3</Days></Expiration>"), "InvalidArgument", 400),
    (xml_rule("<Expiration><Days>\u0663</Days></Expiration>"), "InvalidArgument", 400),
    (xml_rule("<Expiration><Date>2030-01-01T10:00:00Z</Date></Expiration>"), "InvalidArgument", 400),
    (xml_rule("<Expiration><Date>soon</Date></Expiration>"), "InvalidArgument", 400),
    (xml_rule("<Expiration><Date>0001-01-01T00:00:00+01:00</Date></Expiration>"), "InvalidArgument", 400),
    (xml_rule("<Filter><Prefix>a</Prefix></Filter>"), "InvalidRequest", 400),
    (xml_rule("<NoncurrentVersionExpiration><NewerNoncurrentVersions>2</NewerNoncurrentVersions>"
              "</NoncurrentVersionExpiration>"), "MalformedXML", 400),
    (xml_rule("<NoncurrentVersionExpiration><NoncurrentDays>1</NoncurrentDays><NewerNoncurrentVersions>101"
              "</NewerNoncurrentVersions></NoncurrentVersionExpiration>"), "InvalidArgument", 400),
    (xml_rule("<Filter><Tag><Key>k</Key><Value>v</Value></Tag></Filter><AbortIncompleteMultipartUpload>"
              "<DaysAfterInitiation>1</DaysAfterInitiation></AbortIncompleteMultipartUpload>"), "InvalidRequest", 400),
    (xml_rule("<Filter><And><ObjectSizeGreaterThan>10</ObjectSizeGreaterThan><ObjectSizeLessThan>10"
              "</ObjectSizeLessThan></And></Filter>" + DAYS1), "InvalidArgument", 400),
    (xml_rule("<Filter><And><Tag><Key>k</Key><Value>1</Value></Tag><Tag><Key>k</Key><Value>2</Value></Tag>"
              "</And></Filter>" + DAYS1), "InvalidRequest", 400),
    (xml_rule(f"<ID>{'x' * 256}</ID>" + DAYS1), "InvalidArgument", 400),
    (xml_rule("<Frequency>1</Frequency>" + DAYS1), "MalformedXML", 400),
    (xml_rule("<Transition><Days>1</Days><StorageClass>GLACIER</StorageClass></Transition>"),
     "NotImplemented", 501),
    (b"<LifecycleConfiguration><Rule><ID>a</ID><Status>Enabled</Status>" + DAYS1.encode() + b"</Rule><Rule>"
     b"<ID>a</ID><Status>Enabled</Status>" + DAYS1.encode() + b"</Rule></LifecycleConfiguration>",
     "InvalidArgument", 400),
    (b"<LifecycleConfiguration></LifecycleConfiguration>", "MalformedXML", 400),
    (b'<!DOCTYPE x [<!ENTITY a "b">]><LifecycleConfiguration/>', "MalformedXML", 400),
    (b"<LifecycleConfiguration><Rule>", "MalformedXML", 400),
]


def test_malformed_configurations_are_refused_and_change_nothing(grid: LocalGrid, alice: Any) -> None:
    bucket = "lc-malformed"
    alice.create_bucket(Bucket=bucket)
    alice.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration=rules(
        {"ID": "keep", "Filter": {}, "Expiration": {"Days": 9}}))
    for body, code, status in MALFORMED:
        r = signed_put(grid, "alice", f"/{bucket}?lifecycle", body)
        assert (r.status_code, f"<Code>{code}</Code>" in r.text) == (status, True), (body, r.text)
    assert [x["ID"] for x in alice.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]] == ["keep"]


def test_expiration_by_age_filtered_by_prefix_tags_and_size(grid: LocalGrid, alice: Any) -> None:
    b = "lc-age"
    alice.create_bucket(Bucket=b)
    for key, body, tags in (("logs/1", b"x", ""), ("logs/2", b"x", ""), ("data/1", b"x", ""),
                            ("t/yes", b"x", "temp=yes"), ("t/no", b"x", "temp=no"),
                            ("big/small", b"x" * 10, ""), ("big/mid", b"x" * 500, ""), ("big/huge", b"x" * 5000, ""),
                            ("slow/1", b"x", "")):
        alice.put_object(Bucket=b, Key=key, Body=body, Tagging=tags)
    alice.put_bucket_lifecycle_configuration(Bucket=b, LifecycleConfiguration=rules(
        {"ID": "logs", "Filter": {"Prefix": "logs/"}, "Expiration": {"Days": 1}},
        {"ID": "temp", "Filter": {"Tag": {"Key": "temp", "Value": "yes"}}, "Expiration": {"Days": 1}},
        {"ID": "mid", "Filter": {"And": {"Prefix": "big/", "ObjectSizeGreaterThan": 100,
                                         "ObjectSizeLessThan": 1000}}, "Expiration": {"Days": 1}},
        {"ID": "slow", "Filter": {"Prefix": "slow/"}, "Expiration": {"Days": 60}},
        {"ID": "off", "Filter": {"Prefix": "data/"}, "Expiration": {"Days": 1}, "Status": "Disabled"},
    ))
    aged(1)
    summary = run_pass(grid, b, cli=True)
    assert summary["done"] == {"expire": 4}
    assert keys(alice, b) == ["big/huge", "big/small", "data/1", "slow/1", "t/no"]
    logged = [e for e in read_log(grid.data / "lifecycle", 100) if e["bucket"] == b]
    assert sorted((e["key"], e["rule"], e["action"], e["result"]) for e in logged) == [
        ("big/mid", "mid", "expire", "done"), ("logs/1", "logs", "expire", "done"),
        ("logs/2", "logs", "expire", "done"), ("t/yes", "temp", "expire", "done")]
    status = grid_cli(grid, "lifecycle", "status")
    assert status.returncode == 0 and "big/mid" in status.stdout


def test_expiration_by_date_and_delete_markers_left_alone(grid: LocalGrid, alice: Any) -> None:
    b = "lc-date"
    alice.create_bucket(Bucket=b)
    alice.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
    past = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    future = past + timedelta(days=30)
    v_old = alice.put_object(Bucket=b, Key="dated/a", Body=b"a")["VersionId"]
    alice.put_object(Bucket=b, Key="later/a", Body=b"a")
    alice.put_object(Bucket=b, Key="m/gone", Body=b"g")
    alice.delete_object(Bucket=b, Key="m/gone")  # a marker over one version...
    v_kept = alice.put_object(Bucket=b, Key="m/kept", Body=b"k")["VersionId"]
    alice.delete_object(Bucket=b, Key="m/kept")
    for v in alice.list_object_versions(Bucket=b, Prefix="m/gone")["Versions"]:
        alice.delete_object(Bucket=b, Key="m/gone", VersionId=v["VersionId"])  # ... now left alone
    alice.put_bucket_lifecycle_configuration(Bucket=b, LifecycleConfiguration=rules(
        {"ID": "past", "Filter": {"Prefix": "dated/"}, "Expiration": {"Date": past}},
        {"ID": "future", "Filter": {"Prefix": "later/"}, "Expiration": {"Date": future}},
        {"ID": "markers", "Filter": {"Prefix": "m/"}, "Expiration": {"ExpiredObjectDeleteMarker": True}},
    ))
    summary = run_pass(grid, b)
    assert summary["done"] == {"expire": 1, "remove-delete-marker": 1}
    assert keys(alice, b) == ["later/a"]
    listing = alice.list_object_versions(Bucket=b)
    markers = sorted(m["Key"] for m in listing.get("DeleteMarkers", []))
    assert markers == ["dated/a", "m/kept"]  # the expired object's new marker; m/kept's has a version behind it
    assert sorted((v["Key"], v["VersionId"]) for v in listing["Versions"] if v["Key"] != "later/a") \
        == sorted([("dated/a", v_old), ("m/kept", v_kept)])


def test_noncurrent_versions_expire_but_the_newest_are_kept(grid: LocalGrid, alice: Any) -> None:
    b = "lc-noncurrent"
    alice.create_bucket(Bucket=b)
    alice.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
    versions = [alice.put_object(Bucket=b, Key="doc", Body=f"v{i}".encode())["VersionId"] for i in range(5)]
    olds = [alice.put_object(Bucket=b, Key="solo", Body=f"s{i}".encode())["VersionId"] for i in range(2)]
    alice.delete_object(Bucket=b, Key="solo")
    alice.put_bucket_lifecycle_configuration(Bucket=b, LifecycleConfiguration=rules(
        {"ID": "nc", "Filter": {}, "NoncurrentVersionExpiration": {"NoncurrentDays": 1,
                                                                   "NewerNoncurrentVersions": 1}},
        {"ID": "markers", "Filter": {}, "Expiration": {"ExpiredObjectDeleteMarker": True}},
    ))
    aged(1)
    run_pass(grid, b)
    left = alice.list_object_versions(Bucket=b)
    assert [v["VersionId"] for v in left["Versions"] if v["Key"] == "doc"] == [versions[4], versions[3]]
    # solo: its marker is current; of its two noncurrent versions the newest is kept, so the marker stays.
    assert [v["VersionId"] for v in left["Versions"] if v["Key"] == "solo"] == [olds[1]]
    assert [m["Key"] for m in left["DeleteMarkers"]] == ["solo"]


def test_locked_versions_are_left_alone_and_logged(grid: LocalGrid, alice: Any) -> None:
    b = "lc-locked"
    alice.create_bucket(Bucket=b, ObjectLockEnabledForBucket=True)
    until = datetime.now(UTC) + timedelta(hours=1)
    v1 = alice.put_object(Bucket=b, Key="k", Body=b"1", ObjectLockMode="COMPLIANCE",
                          ObjectLockRetainUntilDate=until)["VersionId"]
    v2 = alice.put_object(Bucket=b, Key="k", Body=b"2", ObjectLockLegalHoldStatus="ON")["VersionId"]
    v3 = alice.put_object(Bucket=b, Key="free", Body=b"1")["VersionId"]
    alice.put_object(Bucket=b, Key="free", Body=b"2")
    alice.put_bucket_lifecycle_configuration(Bucket=b, LifecycleConfiguration=rules(
        {"ID": "all", "Filter": {}, "Expiration": {"Days": 1}, "NoncurrentVersionExpiration": {"NoncurrentDays": 1}}))
    aged(1)
    run_pass(grid, b)  # current versions get delete markers: allowed on locked objects, as in S3
    aged(1)
    summary = run_pass(grid, b)  # now every version is noncurrent: the locked ones stay
    assert summary["locked"] == 2
    left = sorted((v["Key"], v["VersionId"]) for v in alice.list_object_versions(Bucket=b)["Versions"])
    assert left == sorted([("k", v1), ("k", v2)])
    assert v3 not in {v for _k, v in left}
    locked = {e["version"] for e in read_log(grid.data / "lifecycle", 200) if e["bucket"] == b
              and e["result"] == "locked"}
    assert locked == {int(v1), int(v2)}


def test_incomplete_multipart_uploads_are_aborted(grid: LocalGrid, alice: Any) -> None:
    b = "lc-uploads"
    alice.create_bucket(Bucket=b)
    ids = {k: alice.create_multipart_upload(Bucket=b, Key=k)["UploadId"] for k in ("tmp/a", "tmp/b", "keep/a")}
    alice.upload_part(Bucket=b, Key="tmp/a", UploadId=ids["tmp/a"], PartNumber=1, Body=b"p" * 1000)
    alice.put_bucket_lifecycle_configuration(Bucket=b, LifecycleConfiguration=rules(
        {"ID": "abort", "Filter": {"Prefix": "tmp/"}, "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}))
    aged(1)
    assert run_pass(grid, b)["done"] == {"abort-upload": 2}
    assert [u["Key"] for u in alice.list_multipart_uploads(Bucket=b)["Uploads"]] == ["keep/a"]
    assert refused(lambda: alice.list_parts(Bucket=b, Key="tmp/a", UploadId=ids["tmp/a"]))[0] == "NoSuchUpload"


def test_a_bucket_that_fails_its_pass_does_not_stop_the_others_and_the_log_rotates(grid: LocalGrid, alice: Any,
                                                                                   tmp_path: Path) -> None:
    alice.create_bucket(Bucket="lc-broken")
    alice.create_bucket(Bucket="lc-fine")
    for i in range(3):
        alice.put_object(Bucket="lc-fine", Key=f"old{i}", Body=b"x")
    alice.put_bucket_lifecycle_configuration(Bucket="lc-fine", LifecycleConfiguration=rules(
        {"ID": "all", "Filter": {}, "Expiration": {"Days": 1}}))
    with GridClient(grid.config_path) as lib:  # rules written behind S3's back, not rules at all
        props = lib.bucket_info("lc-broken", stats=False).properties
        lib.set_bucket_properties("lc-broken", {**props, "s3.lifecycle": '[{"bogus": 1}]'})
    aged(1)
    cfg = GridConfig.load(grid.config_path)
    cfg.extra["lifecycle"] = {"day_seconds": DAY, "rate": 0}
    summary = LifecycleWorker(cfg, tmp_path).run_once()  # every bucket with rules
    assert summary.errors == 1
    assert keys(alice, "lc-fine") == []
    assert [e["result"] for e in read_log(tmp_path, 1000) if e["bucket"] == "lc-broken"] == ["error"]
    # Again with a log of at most 300 bytes: the error again, and the log rotated, each file bounded.
    cfg.extra["lifecycle"]["log_max_bytes"] = 300
    assert LifecycleWorker(cfg, tmp_path).run_once().errors == 1
    assert (tmp_path / "lifecycle.log.1").exists()
    assert all(len(p.read_bytes()) < 300 + 400 for p in tmp_path.glob("lifecycle.log*"))


def test_the_service_runs_the_rules_on_its_own_at_a_bounded_rate(grid: LocalGrid, alice: Any,
                                                                 tmp_path: Path) -> None:
    started = [s for s in grid.services() if s.type == "lifecycle"]
    assert len(started) == 1 and pid_alive(started[0].pid)  # grid up started one
    b = "lc-service"
    alice.create_bucket(Bucket=b)
    for i in range(8):
        alice.put_object(Bucket=b, Key=f"x/{i}", Body=b"x")
    alice.put_bucket_lifecycle_configuration(Bucket=b, LifecycleConfiguration=rules(
        {"ID": "x", "Filter": {"Prefix": "x/"}, "Expiration": {"Days": 1}}))
    # A second worker with a short interval and 8 actions a second, its own log.
    cfg = GridConfig.load(grid.config_path)
    cfg.extra["lifecycle"] = {"day_seconds": DAY, "interval": 0.5, "rate": 8}
    cfg.save(tmp_path / "grid.toml")
    svc = spawn_service("gridfs.lifecycle", ["--config", str(tmp_path / "grid.toml"), "--state",
                                             str(tmp_path / "state")], tmp_path, "lifecycle")
    try:
        deadline = time.monotonic() + 20
        while keys(alice, b) and time.monotonic() < deadline:
            time.sleep(0.3)
        assert keys(alice, b) == []
    finally:
        svc.stop()
    done = [e for e in read_log(tmp_path / "state", 100) if e["bucket"] == b and e["result"] == "done"]
    assert len(done) == 8
    times = sorted(datetime.fromisoformat(e["time"]).timestamp() for e in done)
    assert times[-1] - times[0] >= 7 / 8 - 0.05  # 8 actions at 8 a second
    assert read_log(grid.data / "lifecycle", 1000) == [e for e in read_log(grid.data / "lifecycle", 1000)
                                                       if e["bucket"] != b]  # grid up's service waits its hour
