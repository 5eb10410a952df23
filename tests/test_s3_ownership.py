"""Issue 13, hole 1 (high): buckets created outside S3 (``grid mb``, the client library, fsspec, grid-distcp)
have no S3 owner. They used to be open to every S3 user: read, overwrite, delete, made public-read for
anonymous readers, listed in every user's ListBuckets. Now they belong to the S3 user the operator names
(``unowned_owner`` under ``[s3]`` in grid.toml); with none named, no S3 user may touch them.

Real processes: a local grid with its gateway; boto3 as two users and as an anonymous client.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import botocore.exceptions
import pytest
from botocore import UNSIGNED
from botocore.config import Config

from gridfs.cli.local import LocalGrid
from gridfs.client import GridClient
from gridfs.common.config import GridConfig
from gridfs.common.service import SpawnedService, spawn_service
from gridfs.gateways.s3.users import UserStore


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalGrid]:
    g = LocalGrid(tmp_path_factory.mktemp("owners"))
    g.up(nodes=1, volumes=3, s3_port=None, webhdfs_port=None)
    try:
        yield g
    finally:
        g.down()


def gateway(grid: LocalGrid, run: Path, **settings: str) -> SpawnedService:
    """An S3 gateway of ``grid`` with ``settings`` under ``[s3]`` (its own copy of grid.toml)."""
    cfg = GridConfig.load(grid.config_path)
    cfg.extra["s3"] = {**cfg.extra.get("s3", {}), **settings}
    run.mkdir(parents=True, exist_ok=True)
    cfg.save(run / "grid.toml")
    return spawn_service("gridfs.gateways.s3", ["--config", str(run / "grid.toml"), "--workers", "1"], run, "s3")


def client_of(svc: SpawnedService, grid: LocalGrid, name: str | None) -> object:
    if name is None:
        return boto3.client("s3", endpoint_url=svc.url, region_name="us-east-1",
                            config=Config(signature_version=UNSIGNED))
    store = UserStore(grid.config_path)
    user = next((u for u in store.list() if u.name == name), None) or store.create(name)
    return boto3.client("s3", endpoint_url=svc.url, region_name="us-east-1", aws_access_key_id=user.access_key,
                        aws_secret_access_key=user.secret_key)


def refused(call: object) -> str:
    with pytest.raises(botocore.exceptions.ClientError) as e:
        call()  # type: ignore[operator]
    return e.value.response["Error"]["Code"]


def made_outside(grid: LocalGrid, bucket: str) -> None:
    """A bucket and an object made by the client library and by the ``grid`` command, as operators do."""
    subprocess.run([sys.executable, "-m", "gridfs.cli.main", "--config", str(grid.config_path), "mb", bucket],
                   check=True, capture_output=True)
    with GridClient(grid.config_path) as c:
        c.put(bucket, "secret.txt", b"operator data")


def test_buckets_made_outside_s3_are_closed_to_every_s3_user(grid: LocalGrid, tmp_path: Path) -> None:
    made_outside(grid, "ops-data")
    svc = gateway(grid, tmp_path / "gw")
    try:
        alice, anon = client_of(svc, grid, "alice"), client_of(svc, grid, None)
        assert "ops-data" not in [b["Name"] for b in alice.list_buckets()["Buckets"]]
        assert refused(lambda: alice.get_object(Bucket="ops-data", Key="secret.txt")) == "AccessDenied"
        assert refused(lambda: alice.put_object(Bucket="ops-data", Key="secret.txt", Body=b"x")) == "AccessDenied"
        assert refused(lambda: alice.delete_object(Bucket="ops-data", Key="secret.txt")) == "AccessDenied"
        assert refused(lambda: alice.list_objects_v2(Bucket="ops-data")) == "AccessDenied"
        assert refused(lambda: alice.put_bucket_acl(Bucket="ops-data", ACL="public-read")) == "AccessDenied"
        assert refused(lambda: alice.delete_bucket(Bucket="ops-data")) == "AccessDenied"
        assert refused(lambda: anon.get_object(Bucket="ops-data", Key="secret.txt")) == "AccessDenied"
        with GridClient(grid.config_path) as c:
            assert c.get("ops-data", "secret.txt") == b"operator data"  # untouched
            assert not c.bucket_info("ops-data").properties.get("s3.acl")
        # A bucket made through S3 is its creator's, as before.
        alice.create_bucket(Bucket="alices")
        alice.put_object(Bucket="alices", Key="k", Body=b"v")
        assert alice.get_object(Bucket="alices", Key="k")["Body"].read() == b"v"
    finally:
        svc.stop()


def test_the_operator_names_the_s3_owner_of_buckets_made_outside(grid: LocalGrid, tmp_path: Path) -> None:
    made_outside(grid, "lake-backup")
    svc = gateway(grid, tmp_path / "gw", unowned_owner="ops")
    try:
        ops, bob = client_of(svc, grid, "ops"), client_of(svc, grid, "bob")
        assert "lake-backup" in [b["Name"] for b in ops.list_buckets()["Buckets"]]
        assert ops.get_object(Bucket="lake-backup", Key="secret.txt")["Body"].read() == b"operator data"
        assert ops.get_bucket_acl(Bucket="lake-backup")["Owner"]["ID"] == "ops"
        ops.put_object(Bucket="lake-backup", Key="new.txt", Body=b"by ops")
        assert "lake-backup" not in [b["Name"] for b in bob.list_buckets()["Buckets"]]
        assert refused(lambda: bob.get_object(Bucket="lake-backup", Key="secret.txt")) == "AccessDenied"
    finally:
        svc.stop()


def test_a_bucket_acl_or_policy_written_outside_the_gateway_grants_nothing(grid: LocalGrid, tmp_path: Path) -> None:
    """Bucket ACLs and policies are bucket properties, which any holder of the namespace secret may write with
    the client library. The gateway counts them only with their seal (an HMAC under the master key that the
    gateway writes with them): one forged outside opens nothing, while one set through S3 works as before."""
    import json

    from gridfs.gateways.s3 import grants

    svc = gateway(grid, tmp_path / "gw")
    try:
        alice, anon = client_of(svc, grid, "alice"), client_of(svc, grid, None)
        alice.create_bucket(Bucket="sealed-acl")
        alice.put_object(Bucket="sealed-acl", Key="k", Body=b"alice's")
        alice.put_object_acl(Bucket="sealed-acl", Key="k", ACL="public-read")  # the object may be read...
        assert refused(lambda: anon.list_objects_v2(Bucket="sealed-acl")) == "AccessDenied"  # ...not listed
        public = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*",
                                                          "Action": "s3:*", "Resource": "arn:aws:s3:::sealed-acl*"}]}
        with GridClient(grid.config_path) as c:  # the namespace secret, no master key
            props = dict(c.bucket_info("sealed-acl", stats=False).properties)
            forged = {**props, "s3.acl": grants.dump(grants.canned("public-read-write", "alice")),
                      "s3.policy": json.dumps(public)}
            c.set_bucket_properties("sealed-acl", forged)
        assert refused(lambda: anon.list_objects_v2(Bucket="sealed-acl")) == "AccessDenied"
        assert refused(lambda: anon.put_object(Bucket="sealed-acl", Key="x", Body=b"x")) == "AccessDenied"
        assert refused(lambda: anon.delete_object(Bucket="sealed-acl", Key="k")) == "AccessDenied"
        assert alice.get_object(Bucket="sealed-acl", Key="k")["Body"].read() == b"alice's"
        # Through S3, by the owner: sealed, and in force.
        alice.put_bucket_acl(Bucket="sealed-acl", ACL="public-read")
        assert [o["Key"] for o in anon.list_objects_v2(Bucket="sealed-acl")["Contents"]] == ["k"]
        alice.put_bucket_acl(Bucket="sealed-acl", ACL="private")
        alice.put_bucket_policy(Bucket="sealed-acl", Policy=json.dumps(public))
        assert [o["Key"] for o in anon.list_objects_v2(Bucket="sealed-acl")["Contents"]] == ["k"]
        # A sealed value copied to another bucket does not hold there.
        alice.create_bucket(Bucket="sealed-acl-2")
        with GridClient(grid.config_path) as c:
            sealed = c.bucket_info("sealed-acl", stats=False).properties
            other = dict(c.bucket_info("sealed-acl-2", stats=False).properties)
            c.set_bucket_properties("sealed-acl-2", {**other, **{k: v for k, v in sealed.items()
                                                                   if k.startswith("s3.policy")}})
        assert refused(lambda: anon.list_objects_v2(Bucket="sealed-acl-2")) == "AccessDenied"
    finally:
        svc.stop()


def test_an_object_acl_or_owner_written_outside_the_gateway_grants_nothing(grid: LocalGrid, tmp_path: Path) -> None:
    """An object's owner and ACL are object properties, which any holder of the namespace secret may write with
    the client library (set_properties, or put with properties). The gateway counts them only with their seal,
    an HMAC under the master key of the bucket, key, name and value: a forged public-read ACL or a forged owner
    opens nothing, nor does a sealed value copied from another key; those set through S3 (PutObject with an ACL,
    PutObjectAcl, CopyObject, a multipart upload) are in force as before."""
    from gridfs.gateways.s3 import grants

    svc = gateway(grid, tmp_path / "gw")
    try:
        alice, bob, anon = (client_of(svc, grid, n) for n in ("alice", "bob", None))
        alice.create_bucket(Bucket="sealed-obj")
        for key in ("mine", "copied-seal", "owned"):
            alice.put_object(Bucket="sealed-obj", Key=key, Body=b"alice's " + key.encode())
        alice.put_object(Bucket="sealed-obj", Key="public", Body=b"for all", ACL="public-read")
        assert anon.get_object(Bucket="sealed-obj", Key="public")["Body"].read() == b"for all"
        public_acl = grants.dump(grants.canned("public-read", "alice"))
        with GridClient(grid.config_path) as c:  # the namespace secret, no master key
            c.set_properties("sealed-obj", "mine", {"s3.acl": public_acl})
            c.set_properties("sealed-obj", "owned", {"s3.owner": "bob"})
            sealed_props = c.head("sealed-obj", "public").properties
            c.set_properties("sealed-obj", "copied-seal", {k: v for k, v in sealed_props.items()
                                                           if k.startswith("s3.acl")})
            c.put("sealed-obj", "planted", b"planted", properties={"s3.acl": public_acl, "s3.owner": "bob"})
        for key in ("mine", "copied-seal", "planted"):
            assert refused(lambda key=key: anon.get_object(Bucket="sealed-obj", Key=key)) == "AccessDenied", key
        for key in ("owned", "planted"):
            assert refused(lambda key=key: bob.get_object(Bucket="sealed-obj", Key=key)) == "AccessDenied", key
            assert refused(lambda key=key: bob.put_object_acl(Bucket="sealed-obj", Key=key,
                                                              ACL="public-read")) == "AccessDenied", key
        # The forged values are no owner and no grant: the bucket owner owns the object, privately.
        acl = alice.get_object_acl(Bucket="sealed-obj", Key="owned")
        assert acl["Owner"]["ID"] == "alice"
        assert [g["Permission"] for g in acl["Grants"]] == ["FULL_CONTROL"]
        assert alice.get_object(Bucket="sealed-obj", Key="owned")["Body"].read() == b"alice's owned"
        # Through S3: PutObjectAcl, CopyObject and a multipart upload, each with its ACL in force.
        alice.put_object_acl(Bucket="sealed-obj", Key="mine", ACL="public-read")
        assert anon.get_object(Bucket="sealed-obj", Key="mine")["Body"].read() == b"alice's mine"
        alice.copy_object(Bucket="sealed-obj", Key="copy", CopySource={"Bucket": "sealed-obj", "Key": "public"},
                          ACL="public-read")
        assert anon.get_object(Bucket="sealed-obj", Key="copy")["Body"].read() == b"for all"
        up = alice.create_multipart_upload(Bucket="sealed-obj", Key="parts", ACL="public-read")
        part = alice.upload_part(Bucket="sealed-obj", Key="parts", UploadId=up["UploadId"], PartNumber=1,
                                 Body=b"in parts")
        alice.complete_multipart_upload(Bucket="sealed-obj", Key="parts", UploadId=up["UploadId"],
                                        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
        assert anon.get_object(Bucket="sealed-obj", Key="parts")["Body"].read() == b"in parts"
        # A copy without an ACL is private, whatever its source's was (as in S3).
        alice.copy_object(Bucket="sealed-obj", Key="copy-private", CopySource={"Bucket": "sealed-obj", "Key": "public"})
        assert refused(lambda: anon.get_object(Bucket="sealed-obj", Key="copy-private")) == "AccessDenied"
    finally:
        svc.stop()
