"""Issue 13, item 3: object lock. Retention (GOVERNANCE, COMPLIANCE), legal hold and a bucket's default
retention, enforced by the directory on every path that removes a version or weakens its lock: S3
(DeleteObject, DeleteObjects, PutObjectRetention), the client library and the ``grid`` command alike.

Real processes: one local grid with its S3 gateway for the module; boto3 as the owner, a second user and
anonymous; the aws cli; the client library; the ``grid`` command.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from s3_clients import aws_cli, grid_cli, refused, running_grid, s3_client, signed_put

from gridfs.cli.local import LocalGrid
from gridfs.client import GridClient
from gridfs.common.errors import InvalidState, ObjectLocked

LOCKED_MESSAGE = "protected by object lock"


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalGrid]:
    with running_grid(tmp_path_factory.mktemp("lock")) as g:
        yield g


@pytest.fixture(scope="module")
def alice(grid: LocalGrid) -> Any:
    return s3_client(grid, "alice")


@pytest.fixture(scope="module")
def bob(grid: LocalGrid) -> Any:
    return s3_client(grid, "bob")


@pytest.fixture(scope="module")
def anon(grid: LocalGrid) -> Any:
    return s3_client(grid, None)


@pytest.fixture(scope="module")
def lib(grid: LocalGrid) -> Iterator[GridClient]:
    with GridClient(grid.config_path) as c:
        yield c


def later(**delta: float) -> datetime:
    return datetime.now(UTC) + timedelta(**delta)


def locked_bucket(s3: Any, name: str, public: bool = False) -> str:
    s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True, **({"ACL": "public-read"} if public else {}))
    return name


def put(s3: Any, bucket: str, key: str, body: bytes = b"data", **lock: Any) -> str:
    return s3.put_object(Bucket=bucket, Key=key, Body=body, **lock)["VersionId"]


def test_bucket_with_object_lock_keeps_versioning_and_its_configuration(alice: Any, bob: Any, anon: Any,
                                                                        lib: GridClient) -> None:
    b = locked_bucket(alice, "lock-config", public=True)
    assert alice.get_bucket_versioning(Bucket=b)["Status"] == "Enabled"
    assert alice.get_object_lock_configuration(Bucket=b)["ObjectLockConfiguration"] == {"ObjectLockEnabled": "Enabled"}
    assert refused(lambda: alice.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Suspended"})) \
        == ("InvalidBucketState", 409)
    with pytest.raises(InvalidState):  # nor through the client library
        lib.set_versioning(b, "suspended")
    with pytest.raises(InvalidState):
        lib.set_bucket_properties(b, {"s3.owner": "alice"})  # dropping s3.lock.enabled
    with pytest.raises(InvalidState):  # object lock without versioning: nothing is made
        lib.create_bucket("lock-lib", properties={"s3.lock.enabled": "Enabled"})
    assert lib.create_bucket("lock-lib", versioning=True, properties={"s3.lock.enabled": "Enabled"}).versioning \
        == "enabled"
    rule = {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 2}}
    alice.put_object_lock_configuration(Bucket=b, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled",
                                                                           "Rule": rule})
    got = alice.get_object_lock_configuration(Bucket=b)["ObjectLockConfiguration"]
    assert got == {"ObjectLockEnabled": "Enabled", "Rule": rule}
    years = {"DefaultRetention": {"Mode": "COMPLIANCE", "Years": 1}}
    alice.put_object_lock_configuration(Bucket=b, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled",
                                                                           "Rule": years})
    assert alice.get_object_lock_configuration(Bucket=b)["ObjectLockConfiguration"]["Rule"] == years
    # The second user and anonymous callers may neither read nor change it, even on a public-read bucket.
    for other in (bob, anon):
        assert refused(lambda o=other: o.get_object_lock_configuration(Bucket=b)) == ("AccessDenied", 403)
        assert refused(lambda o=other: o.put_object_lock_configuration(
            Bucket=b, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"})) == ("AccessDenied", 403)
    # Without object lock: no configuration, and none until versioning is on.
    alice.create_bucket(Bucket="lock-none")
    assert refused(lambda: alice.get_object_lock_configuration(Bucket="lock-none")) \
        == ("ObjectLockConfigurationNotFoundError", 404)
    assert refused(lambda: alice.put_object_lock_configuration(
        Bucket="lock-none", ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"})) == ("InvalidBucketState", 409)
    alice.put_bucket_versioning(Bucket="lock-none", VersioningConfiguration={"Status": "Enabled"})
    alice.put_object_lock_configuration(Bucket="lock-none", ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"})
    assert refused(lambda: alice.put_bucket_versioning(Bucket="lock-none", VersioningConfiguration={
        "Status": "Suspended"})) == ("InvalidBucketState", 409)


@pytest.mark.parametrize("rule, code", [
    ({"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1, "Years": 1}}, "MalformedXML"),
    ({"DefaultRetention": {"Mode": "GOVERNANCE"}}, "MalformedXML"),
    ({"DefaultRetention": {"Mode": "FOREVER", "Days": 1}}, "MalformedXML"),
    ({"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 0}}, "InvalidArgument"),
    ({"DefaultRetention": {"Mode": "GOVERNANCE", "Years": 101}}, "InvalidArgument"),
    ({}, "MalformedXML"),
])
def test_malformed_lock_configurations_are_refused(alice: Any, rule: dict, code: str) -> None:
    b = "lock-bad-config"
    if b not in [x["Name"] for x in alice.list_buckets()["Buckets"]]:
        locked_bucket(alice, b)
    assert refused(lambda: alice.put_object_lock_configuration(
        Bucket=b, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled", "Rule": rule})) == (code, 400)
    assert "Rule" not in alice.get_object_lock_configuration(Bucket=b)["ObjectLockConfiguration"]


def test_compliance_retention_stops_everyone_on_every_path(alice: Any, bob: Any, anon: Any, lib: GridClient,
                                                           grid: LocalGrid, tmp_path: Path) -> None:
    b = locked_bucket(alice, "lock-compliance", public=True)
    until = later(hours=1)
    v1 = put(alice, b, "doc", b"first", ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=until)
    head = alice.head_object(Bucket=b, Key="doc")
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert abs((head["ObjectLockRetainUntilDate"] - until).total_seconds()) < 1
    got = alice.get_object_retention(Bucket=b, Key="doc", VersionId=v1)["Retention"]
    assert got["Mode"] == "COMPLIANCE"
    # S3: the version cannot be deleted, with or without the bypass; DeleteObjects reports it.
    assert refused(lambda: alice.delete_object(Bucket=b, Key="doc", VersionId=v1)) == ("AccessDenied", 403)
    assert refused(lambda: alice.delete_object(Bucket=b, Key="doc", VersionId=v1,
                                               BypassGovernanceRetention=True)) == ("AccessDenied", 403)
    errors = alice.delete_objects(Bucket=b, Delete={"Objects": [{"Key": "doc", "VersionId": v1}]})["Errors"]
    assert [(e["Key"], e["Code"]) for e in errors] == [("doc", "AccessDenied")]
    # Nor shortened, nor removed; extending is allowed.
    assert refused(lambda: alice.put_object_retention(Bucket=b, Key="doc", VersionId=v1, Retention={
        "Mode": "COMPLIANCE", "RetainUntilDate": later(minutes=30)})) == ("AccessDenied", 403)
    assert refused(lambda: alice.put_object_retention(Bucket=b, Key="doc", VersionId=v1, Retention={
        "Mode": "GOVERNANCE", "RetainUntilDate": later(hours=2)}, BypassGovernanceRetention=True)) \
        == ("AccessDenied", 403)
    alice.put_object_retention(Bucket=b, Key="doc", VersionId=v1, Retention={
        "Mode": "COMPLIANCE", "RetainUntilDate": later(hours=2)})
    # A plain delete only adds a delete marker; an overwrite adds a version: both allowed.
    marker = alice.delete_object(Bucket=b, Key="doc")
    assert marker["DeleteMarker"] is True
    v2 = put(alice, b, "doc", b"second")
    assert v2 != v1
    assert alice.get_object(Bucket=b, Key="doc", VersionId=v1)["Body"].read() == b"first"
    # The second user and anonymous callers: no delete, no retention change, no retention read, and a public
    # object's readers do not see its lock (an object is public by its own ACL, not its bucket's, as in AWS).
    alice.put_object_acl(Bucket=b, Key="doc", VersionId=v1, ACL="public-read")
    lock_headers = {h for h in anon.head_object(Bucket=b, Key="doc", VersionId=v1)["ResponseMetadata"][
        "HTTPHeaders"] if h.startswith("x-amz-object-lock")}
    assert lock_headers == set()
    for other in (bob, anon):
        assert refused(lambda o=other: o.delete_object(Bucket=b, Key="doc", VersionId=v1))[1] == 403
        assert refused(lambda o=other: o.get_object_retention(Bucket=b, Key="doc", VersionId=v1)) \
            == ("AccessDenied", 403)
        assert refused(lambda o=other: o.put_object_retention(Bucket=b, Key="doc", VersionId=v1, Retention={
            "Mode": "COMPLIANCE", "RetainUntilDate": later(hours=3)}))[1] == 403
    # The client library: the same refusal, bypass or not, and the lock properties cannot be edited away.
    for bypass in (False, True):
        with pytest.raises(ObjectLocked, match=LOCKED_MESSAGE):
            lib.delete(b, "doc", version=int(v1), bypass_governance=bypass)
    with pytest.raises(ObjectLocked):
        lib.set_properties(b, "doc", {"s3.lock.mode": None, "s3.lock.until": None}, version=int(v1),
                           bypass_governance=True)
    put(alice, b, "solo", ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=until)
    with pytest.raises(ObjectLocked):
        lib.rename(b, "solo", "elsewhere")  # a rename removes the version under its name
    # The grid command: refused with the cause, exit code 1.
    proc = grid_cli(grid, "rm", f"{b}/doc", "--version", v1, "--bypass-governance")
    assert proc.returncode == 1 and LOCKED_MESSAGE in proc.stderr
    # The bucket cannot go either; the version is still there, unchanged.
    assert refused(lambda: alice.delete_bucket(Bucket=b)) == ("BucketNotEmpty", 409)
    assert alice.get_object(Bucket=b, Key="doc", VersionId=v1)["Body"].read() == b"first"
    # The aws cli sees the same.
    proc = aws_cli(grid, "alice", tmp_path, "s3api", "delete-object", "--bucket", b, "--key", "doc",
                   "--version-id", v1, "--bypass-governance-retention")
    assert proc.returncode != 0 and "AccessDenied" in proc.stderr
    proc = aws_cli(grid, "alice", tmp_path, "s3api", "get-object-retention", "--bucket", b, "--key", "doc",
                   "--version-id", v1)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["Retention"]["Mode"] == "COMPLIANCE"


def test_governance_retention_yields_to_the_owners_bypass_only(alice: Any, bob: Any, anon: Any, lib: GridClient,
                                                               grid: LocalGrid) -> None:
    b = locked_bucket(alice, "lock-governance", public=True)
    v1, v2, v3, v4 = (put(alice, b, f"k{i}") for i in range(4))
    for key, v in (("k0", v1), ("k1", v2), ("k2", v3), ("k3", v4)):
        alice.put_object_retention(Bucket=b, Key=key, VersionId=v, Retention={
            "Mode": "GOVERNANCE", "RetainUntilDate": later(days=1)})
    assert refused(lambda: alice.delete_object(Bucket=b, Key="k0", VersionId=v1)) == ("AccessDenied", 403)
    for other in (bob, anon):
        assert refused(lambda o=other: o.delete_object(Bucket=b, Key="k0", VersionId=v1,
                                                       BypassGovernanceRetention=True)) == ("AccessDenied", 403)
        assert refused(lambda o=other: o.put_object_retention(
            Bucket=b, Key="k0", VersionId=v1, BypassGovernanceRetention=True,
            Retention={"Mode": "GOVERNANCE", "RetainUntilDate": later(minutes=5)})) == ("AccessDenied", 403)
    # Shortening needs the bypass too; the owner has it.
    assert refused(lambda: alice.put_object_retention(Bucket=b, Key="k0", VersionId=v1, Retention={
        "Mode": "GOVERNANCE", "RetainUntilDate": later(hours=1)})) == ("AccessDenied", 403)
    alice.put_object_retention(Bucket=b, Key="k0", VersionId=v1, BypassGovernanceRetention=True,
                               Retention={"Mode": "GOVERNANCE", "RetainUntilDate": later(hours=1)})
    alice.delete_object(Bucket=b, Key="k0", VersionId=v1, BypassGovernanceRetention=True)
    assert refused(lambda: alice.head_object(Bucket=b, Key="k0", VersionId=v1))[1] == 404
    # DeleteObjects with the bypass header.
    out = alice.delete_objects(Bucket=b, BypassGovernanceRetention=True,
                               Delete={"Objects": [{"Key": "k1", "VersionId": v2}]})
    assert [d["Key"] for d in out["Deleted"]] == ["k1"] and not out.get("Errors")
    # The client library and the grid command: refused without the bypass, done with it.
    with pytest.raises(ObjectLocked):
        lib.delete(b, "k2", version=int(v3))
    lib.delete(b, "k2", version=int(v3), bypass_governance=True)
    proc = grid_cli(grid, "rm", f"{b}/k3", "--version", v4)
    assert proc.returncode == 1 and "GOVERNANCE" in proc.stderr
    assert grid_cli(grid, "rm", f"{b}/k3", "--version", v4, "--bypass-governance").returncode == 0
    assert alice.list_object_versions(Bucket=b).get("Versions") is None


def test_legal_hold_blocks_removal_until_taken_off(alice: Any, bob: Any, anon: Any, lib: GridClient,
                                                   grid: LocalGrid) -> None:
    b = locked_bucket(alice, "lock-hold", public=True)
    v = put(alice, b, "evidence", ObjectLockLegalHoldStatus="ON")
    assert alice.head_object(Bucket=b, Key="evidence")["ObjectLockLegalHoldStatus"] == "ON"
    assert alice.get_object_legal_hold(Bucket=b, Key="evidence")["LegalHold"] == {"Status": "ON"}
    assert refused(lambda: alice.delete_object(Bucket=b, Key="evidence", VersionId=v,
                                               BypassGovernanceRetention=True)) == ("AccessDenied", 403)
    with pytest.raises(ObjectLocked, match="legal hold"):
        lib.delete(b, "evidence", version=int(v), bypass_governance=True)
    assert grid_cli(grid, "rm", f"{b}/evidence", "--version", v, "--bypass-governance").returncode == 1
    for other in (bob, anon):
        assert refused(lambda o=other: o.put_object_legal_hold(Bucket=b, Key="evidence", VersionId=v,
                                                               LegalHold={"Status": "OFF"}))[1] == 403
        assert refused(lambda o=other: o.get_object_legal_hold(Bucket=b, Key="evidence"))[1] == 403
    alice.put_object_legal_hold(Bucket=b, Key="evidence", VersionId=v, LegalHold={"Status": "OFF"})
    assert alice.get_object_legal_hold(Bucket=b, Key="evidence")["LegalHold"] == {"Status": "OFF"}
    alice.delete_object(Bucket=b, Key="evidence", VersionId=v)
    # A hold on a version under no retention, put later, blocks as well.
    v2 = put(alice, b, "later")
    alice.put_object_legal_hold(Bucket=b, Key="later", VersionId=v2, LegalHold={"Status": "ON"})
    assert refused(lambda: alice.delete_object(Bucket=b, Key="later", VersionId=v2)) == ("AccessDenied", 403)


def test_default_retention_locks_every_new_version_whoever_writes_it(alice: Any, lib: GridClient) -> None:
    b = locked_bucket(alice, "lock-default")
    alice.put_object_lock_configuration(Bucket=b, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}})
    v = put(alice, b, "plain")
    head = alice.head_object(Bucket=b, Key="plain")
    assert head["ObjectLockMode"] == "GOVERNANCE"
    assert abs((head["ObjectLockRetainUntilDate"] - later(days=1)).total_seconds()) < 60
    assert refused(lambda: alice.delete_object(Bucket=b, Key="plain", VersionId=v)) == ("AccessDenied", 403)
    # Explicit headers win over the default.
    put(alice, b, "explicit", ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=later(hours=3))
    assert alice.head_object(Bucket=b, Key="explicit")["ObjectLockMode"] == "COMPLIANCE"
    # A multipart upload, a copy and a write through the client library are locked too.
    up = alice.create_multipart_upload(Bucket=b, Key="multi")
    part = alice.upload_part(Bucket=b, Key="multi", UploadId=up["UploadId"], PartNumber=1, Body=b"m" * 100)
    alice.complete_multipart_upload(Bucket=b, Key="multi", UploadId=up["UploadId"], MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    alice.copy_object(Bucket=b, Key="copied", CopySource={"Bucket": b, "Key": "explicit"})
    info = lib.put(b, "from-library", b"lib")
    for key in ("multi", "copied", "from-library"):
        assert alice.head_object(Bucket=b, Key=key)["ObjectLockMode"] == "GOVERNANCE", key
    with pytest.raises(ObjectLocked):
        lib.delete(b, "from-library", version=info.version)


def test_lock_headers_and_bodies_are_checked(alice: Any) -> None:
    plain = "lock-plain"
    alice.create_bucket(Bucket=plain)
    b = locked_bucket(alice, "lock-checks")
    assert refused(lambda: put(alice, plain, "k", ObjectLockMode="GOVERNANCE",
                               ObjectLockRetainUntilDate=later(days=1))) == ("InvalidRequest", 400)
    assert refused(lambda: put(alice, plain, "k", ObjectLockLegalHoldStatus="ON")) == ("InvalidRequest", 400)
    assert refused(lambda: alice.put_object_retention(Bucket=plain, Key="k", Retention={
        "Mode": "GOVERNANCE", "RetainUntilDate": later(days=1)})) == ("InvalidRequest", 400)
    assert refused(lambda: put(alice, b, "k", ObjectLockMode="GOVERNANCE")) == ("InvalidArgument", 400)
    assert refused(lambda: put(alice, b, "k", ObjectLockRetainUntilDate=later(days=1))) == ("InvalidArgument", 400)
    assert refused(lambda: put(alice, b, "k", ObjectLockMode="FOREVER", ObjectLockRetainUntilDate=later(days=1))) \
        == ("InvalidArgument", 400)
    assert refused(lambda: put(alice, b, "k", ObjectLockMode="GOVERNANCE",
                               ObjectLockRetainUntilDate=later(days=-1))) == ("InvalidArgument", 400)
    assert refused(lambda: put(alice, b, "k", ObjectLockLegalHoldStatus="MAYBE")) == ("InvalidArgument", 400)
    v = put(alice, b, "k")
    assert refused(lambda: alice.get_object_retention(Bucket=b, Key="k")) == ("NoSuchObjectLockConfiguration", 404)
    assert refused(lambda: alice.get_object_legal_hold(Bucket=b, Key="k")) == ("NoSuchObjectLockConfiguration", 404)
    assert refused(lambda: alice.put_object_retention(Bucket=b, Key="k", Retention={
        "Mode": "GOVERNANCE", "RetainUntilDate": later(days=-1)})) == ("InvalidArgument", 400)
    assert refused(lambda: alice.put_object_retention(Bucket=b, Key="k", Retention={"Mode": "GOVERNANCE"})) \
        == ("MalformedXML", 400)
    assert refused(lambda: alice.put_object_retention(Bucket=b, Key="k", VersionId="x1", Retention={
        "Mode": "GOVERNANCE", "RetainUntilDate": later(days=1)})) == ("InvalidArgument", 400)
    assert refused(lambda: alice.put_object_retention(Bucket=b, Key="missing", Retention={
        "Mode": "GOVERNANCE", "RetainUntilDate": later(days=1)})) == ("NoSuchKey", 404)
    assert refused(lambda: alice.put_object_legal_hold(Bucket=b, Key="k", LegalHold={"Status": "on"})) \
        == ("MalformedXML", 400)
    # A copy of a locked object into a bucket without lock carries no lock (as S3), and stays deletable.
    alice.put_object_retention(Bucket=b, Key="k", VersionId=v, Retention={
        "Mode": "GOVERNANCE", "RetainUntilDate": later(days=1)})
    alice.copy_object(Bucket=plain, Key="copy", CopySource={"Bucket": b, "Key": "k"})
    assert "ObjectLockMode" not in alice.head_object(Bucket=plain, Key="copy")
    alice.delete_object(Bucket=plain, Key="copy")


@pytest.mark.parametrize("until", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "2030-02-30T00:00:00Z",
                                   "tomorrow", "2030-01-01T00:00:00", ""])
def test_dates_out_of_range_or_malformed_are_client_errors(grid: LocalGrid, alice: Any, until: str) -> None:
    b = "lock-dates"
    if b not in [x["Name"] for x in alice.list_buckets()["Buckets"]]:
        locked_bucket(alice, b)
        put(alice, b, "k")
    r = signed_put(grid, "alice", f"/{b}/new", b"x", **{"x-amz-object-lock-mode": "GOVERNANCE",
                                                        "x-amz-object-lock-retain-until-date": until})
    assert (r.status_code, "<Code>InvalidArgument</Code>" in r.text) == (400, True), r.text
    body = f"<Retention><Mode>GOVERNANCE</Mode><RetainUntilDate>{until}</RetainUntilDate></Retention>".encode()
    r = signed_put(grid, "alice", f"/{b}/k?retention", body)
    assert r.status_code == 400 and ("<Code>InvalidArgument</Code>" in r.text or "MalformedXML" in r.text), r.text
    assert "new" not in [o["Key"] for o in alice.list_objects_v2(Bucket=b).get("Contents", [])]


def test_hostile_lock_bodies_are_refused(grid: LocalGrid, alice: Any) -> None:
    b = locked_bucket(alice, "lock-hostile")
    put(alice, b, "k")
    for sub, body in (("retention", b'<!DOCTYPE r [<!ENTITY a "GOVERNANCE">]><Retention><Mode>&a;</Mode></Retention>'),
                      ("retention", b"<Retention><Mode>GOVERNANCE</Mode>"),
                      ("retention", b"<LegalHold><Status>ON</Status></LegalHold>"),
                      ("legal-hold", b"<LegalHold><Status>ON</Status><Status>OFF</Status>"),
                      ("legal-hold", b"<LegalHold/>")):
        r = signed_put(grid, "alice", f"/{b}/k?{sub}", body)
        assert r.status_code == 400 and "<Code>MalformedXML</Code>" in r.text, (sub, body, r.text)
    r = signed_put(grid, "alice", f"/{b}?object-lock", b"<ObjectLockConfiguration><ObjectLockEnabled>Disabled"
                   b"</ObjectLockEnabled></ObjectLockConfiguration>")
    assert r.status_code == 400 and "<Code>MalformedXML</Code>" in r.text
    r = signed_put(grid, "alice", "/lock-hdr", b"", **{"x-amz-bucket-object-lock-enabled": "yes"})
    assert r.status_code == 400 and "<Code>InvalidArgument</Code>" in r.text
    assert "lock-hdr" not in [x["Name"] for x in alice.list_buckets()["Buckets"]]
    assert refused(lambda: alice.get_object_retention(Bucket=b, Key="k", VersionId="1" * 25)) \
        == ("InvalidArgument", 400)


def test_a_library_copy_leaves_the_lock_behind(alice: Any, lib: GridClient) -> None:
    b = locked_bucket(alice, "lock-copy-src")
    put(alice, b, "k", b"locked", ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=later(hours=1),
        ObjectLockLegalHoldStatus="ON")
    lib.create_bucket("plain-copy-dst")
    copied = lib.copy(b, "k", "plain-copy-dst", "k")
    assert not set(copied.properties) & {"s3.lock.mode", "s3.lock.until", "s3.lock.hold"}
    lib.delete("plain-copy-dst", "k")
    assert lib.get(b, "k") == b"locked"
