"""Issue 13, item 2: ownership and access control of the S3 gateway, on live processes.

ACL grants on buckets and objects (every canned ACL, x-amz-grant-* headers, AccessControlPolicy bodies),
bucket policies (Principal, Action, Resource, Condition; explicit Deny first), PublicAccessBlock and
ObjectOwnership. Each rule is tried by its owner (alice), a second user (bob) and anonymous requests.

One grid and one gateway for the module (``grid``, ``svc``, as test_s3_ownership starts them); every test
makes buckets of its own.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest
import requests
from botocore.auth import S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from gridfs.cli.local import LocalGrid
from gridfs.common.service import SpawnedService
from gridfs.gateways.s3.users import User, UserStore
from tests import test_s3_ownership
from tests.test_s3 import signed_request
from tests.test_s3_ownership import client_of, gateway

# The grid fixture of test_s3_ownership (one grid for this module too), and its gateway and clients.
grid = test_s3_ownership.grid

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTH_USERS = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"
LOG_DELIVERY = "http://acs.amazonaws.com/groups/s3/LogDelivery"
AWS = Path(os.environ.get("VIRTUAL_ENV", "/work/main/.venv")) / "bin" / "aws"


@pytest.fixture(scope="module")
def users(grid: LocalGrid) -> dict[str, User]:
    store = UserStore(grid.config_path)
    return {name: store.create(name) for name in ("alice", "bob")}


@pytest.fixture(scope="module")
def svc(grid: LocalGrid, users: dict[str, User], tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpawnedService]:
    service = gateway(grid, tmp_path_factory.mktemp("access-gw"))
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="module")
def alice(svc: SpawnedService, grid: LocalGrid, users: dict[str, User]) -> Any:
    return client_of(svc, grid, "alice")


@pytest.fixture(scope="module")
def bob(svc: SpawnedService, grid: LocalGrid, users: dict[str, User]) -> Any:
    return client_of(svc, grid, "bob")


@pytest.fixture(scope="module")
def anon(svc: SpawnedService, grid: LocalGrid) -> Any:
    return client_of(svc, grid, None)


def error(call: Callable[[], object]) -> tuple[str, int]:
    with pytest.raises(botocore.exceptions.ClientError) as e:
        call()
    return e.value.response["Error"]["Code"], e.value.response["ResponseMetadata"]["HTTPStatusCode"]


def denied(call: Callable[[], object]) -> bool:
    """True when the call is refused with AccessDenied 403 (a bodiless 403 to HEAD); False when it succeeds
    (anything else fails the test)."""
    try:
        call()
    except botocore.exceptions.ClientError as exc:
        assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 403, exc.response
        assert exc.response["Error"]["Code"] in ("AccessDenied", "403"), exc.response
        return True
    return False


def read(s3: Any, bucket: str, key: str) -> Callable[[], bytes]:
    return lambda: s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def grants_of(acl: dict) -> set[tuple[str, str]]:
    return {(g["Grantee"].get("ID") or g["Grantee"].get("URI"), g["Permission"]) for g in acl["Grants"]}


def set_policy(s3: Any, bucket: str, *statements: dict) -> None:
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": list(statements)}))


# -- ACLs --------------------------------------------------------------------------------------------------------


# canned ACL -> (bob may list, anonymous may list, bob may write, anonymous may write)
BUCKET_CANNED = {
    "private": (False, False, False, False),
    "public-read": (True, True, False, False),
    "public-read-write": (True, True, True, True),
    "authenticated-read": (True, False, False, False),
    "bucket-owner-read": (False, False, False, False),
    "bucket-owner-full-control": (False, False, False, False),
    "aws-exec-read": (False, False, False, False),
    "log-delivery-write": (False, False, False, False),  # for a LogDelivery group no one is in
}


@pytest.mark.parametrize("canned", list(BUCKET_CANNED))
def test_each_canned_bucket_acl_allows_what_it_says_and_nothing_more(canned: str, alice: Any, bob: Any,
                                                                    anon: Any) -> None:
    bucket = f"canned-{canned}"
    alice.create_bucket(Bucket=bucket, ACL=canned)
    alice.put_object(Bucket=bucket, Key="k", Body=b"alice's")
    bob_lists, anon_lists, bob_writes, anon_writes = BUCKET_CANNED[canned]
    assert denied(lambda: bob.list_objects_v2(Bucket=bucket)) is not bob_lists
    assert denied(lambda: anon.list_objects_v2(Bucket=bucket)) is not anon_lists
    assert denied(lambda: bob.head_bucket(Bucket=bucket)) is not bob_lists
    assert denied(lambda: bob.put_object(Bucket=bucket, Key="by-bob", Body=b"b")) is not bob_writes
    assert denied(lambda: anon.put_object(Bucket=bucket, Key="by-anon", Body=b"a")) is not anon_writes
    # The bucket's ACL never opens its objects (they have their own) nor its ACL or settings.
    for who in (bob, anon):
        assert denied(read(who, bucket, "k"))
        assert denied(lambda who=who: who.get_bucket_acl(Bucket=bucket))
        assert denied(lambda who=who: who.put_bucket_acl(Bucket=bucket, ACL="public-read-write"))
        assert denied(lambda who=who: who.get_bucket_location(Bucket=bucket))
    assert denied(lambda: bob.delete_bucket(Bucket=bucket))
    for who in (bob, anon):  # the bucket's settings are its owner's, whatever its ACL
        assert denied(lambda who=who: who.put_bucket_versioning(
            Bucket=bucket, VersioningConfiguration={"Status": "Enabled"}))
        assert denied(lambda who=who: who.get_bucket_versioning(Bucket=bucket))
        assert denied(lambda who=who: who.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [
            {"AllowedOrigins": ["*"], "AllowedMethods": ["GET"]}]}))
        assert denied(lambda who=who: who.delete_bucket_cors(Bucket=bucket))
        assert denied(lambda who=who: who.put_bucket_policy(Bucket=bucket, Policy="{}"))
    acl = alice.get_bucket_acl(Bucket=bucket)
    assert acl["Owner"]["ID"] == "alice"
    expected = {("alice", "FULL_CONTROL")} | {
        "public-read": {(ALL_USERS, "READ")}, "public-read-write": {(ALL_USERS, "READ"), (ALL_USERS, "WRITE")},
        "authenticated-read": {(AUTH_USERS, "READ")},
        "log-delivery-write": {(LOG_DELIVERY, "WRITE"), (LOG_DELIVERY, "READ_ACP")}}.get(canned, set())
    assert grants_of(acl) == expected
    assert {g["Grantee"]["Type"] for g in acl["Grants"]} <= {"CanonicalUser", "Group"}
    if bob_writes:  # what bob writes is bob's: alice may delete it, not read it
        assert denied(read(alice, bucket, "by-bob"))
        alice.delete_object(Bucket=bucket, Key="by-bob")


# canned ACL on an object alice writes in her private bucket -> (bob may read, anonymous may read)
OBJECT_CANNED = {
    "private": (False, False),
    "public-read": (True, True),
    "public-read-write": (True, True),
    "authenticated-read": (True, False),
    "bucket-owner-read": (False, False),
    "bucket-owner-full-control": (False, False),
    "aws-exec-read": (False, False),
}


def test_each_canned_object_acl_allows_what_it_says_and_nothing_more(
        alice: Any, bob: Any, anon: Any, svc: SpawnedService, users: dict[str, User]) -> None:
    alice.create_bucket(Bucket="objects-canned")
    for canned, (bob_reads, anon_reads) in OBJECT_CANNED.items():
        alice.put_object(Bucket="objects-canned", Key=canned, Body=canned.encode(), ACL=canned)
        assert read(alice, "objects-canned", canned)() == canned.encode()
        assert denied(read(bob, "objects-canned", canned)) is not bob_reads, canned
        assert denied(read(anon, "objects-canned", canned)) is not anon_reads, canned
        assert denied(lambda c=canned: anon.head_object(Bucket="objects-canned", Key=c)) is not anon_reads
        for who in (bob, anon):
            assert denied(lambda who=who, c=canned: who.get_object_acl(Bucket="objects-canned", Key=c))
            assert denied(lambda who=who, c=canned: who.put_object_acl(Bucket="objects-canned", Key=c,
                                                                       ACL="public-read"))
            assert denied(lambda who=who, c=canned: who.delete_object(Bucket="objects-canned", Key=c))
            assert denied(lambda who=who, c=canned: who.put_object(Bucket="objects-canned", Key=c, Body=b"x"))
        assert read(alice, "objects-canned", canned)() == canned.encode()  # untouched
    # A presigned PUT may carry its ACL in the signed query (as SDKs that hoist x-amz-* headers sign it).
    link = AWSRequest(method="PUT", url=f"{svc.url}/objects-canned/presigned?x-amz-acl=public-read")
    S3SigV4QueryAuth(Credentials(users["alice"].access_key, users["alice"].secret_key), "s3", "us-east-1",
                     expires=60).add_auth(link)
    assert requests.put(link.prepare().url, data=b"via a link").status_code == 200
    assert read(anon, "objects-canned", "presigned")() == b"via a link"
    # A missing key: NoSuchKey to whoever may list the bucket, AccessDenied to the others.
    assert error(read(alice, "objects-canned", "nothing"))[0] == "NoSuchKey"
    assert denied(read(bob, "objects-canned", "nothing"))
    assert error(lambda: alice.put_object(Bucket="objects-canned", Key="x", Body=b"x", ACL="world-readable")) == \
        ("InvalidArgument", 400)


def test_objects_written_by_another_user_belong_to_the_writer(alice: Any, bob: Any, anon: Any) -> None:
    alice.create_bucket(Bucket="shared-drop", ACL="public-read-write")
    bob.put_object(Bucket="shared-drop", Key="mine", Body=b"bob's")
    bob.put_object(Bucket="shared-drop", Key="for-owner", Body=b"read me", ACL="bucket-owner-read")
    bob.put_object(Bucket="shared-drop", Key="given", Body=b"all yours", ACL="bucket-owner-full-control")
    assert denied(read(alice, "shared-drop", "mine"))
    assert denied(lambda: alice.get_object_acl(Bucket="shared-drop", Key="mine"))
    assert read(alice, "shared-drop", "for-owner")() == b"read me"
    assert denied(lambda: alice.put_object_acl(Bucket="shared-drop", Key="for-owner", ACL="public-read"))
    assert read(alice, "shared-drop", "given")() == b"all yours"
    acl = alice.get_object_acl(Bucket="shared-drop", Key="given")
    assert acl["Owner"]["ID"] == "bob"
    assert grants_of(acl) == {("bob", "FULL_CONTROL"), ("alice", "FULL_CONTROL")}
    assert denied(read(anon, "shared-drop", "mine"))
    bob.put_object_acl(Bucket="shared-drop", Key="mine", ACL="public-read")
    assert read(anon, "shared-drop", "mine")() == b"bob's"
    alice.delete_object(Bucket="shared-drop", Key="mine")  # the bucket owner may delete what others wrote
    # A multipart upload is its initiator's too; bucket WRITE lets bob upload, list and complete its parts.
    up = bob.create_multipart_upload(Bucket="shared-drop", Key="multi")["UploadId"]
    etag = bob.upload_part(Bucket="shared-drop", Key="multi", UploadId=up, PartNumber=1, Body=b"m")["ETag"]
    assert [p["PartNumber"] for p in bob.list_parts(Bucket="shared-drop", Key="multi", UploadId=up)["Parts"]] == [1]
    bob.complete_multipart_upload(Bucket="shared-drop", Key="multi", UploadId=up,
                                  MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert bob.get_object_acl(Bucket="shared-drop", Key="multi")["Owner"]["ID"] == "bob"
    assert denied(read(alice, "shared-drop", "multi"))
    # Anonymous writers of a public-read-write bucket may upload in parts too; what they write is the owner's.
    up = anon.create_multipart_upload(Bucket="shared-drop", Key="anon-multi")["UploadId"]
    etag = anon.upload_part(Bucket="shared-drop", Key="anon-multi", UploadId=up, PartNumber=1, Body=b"a")["ETag"]
    anon.complete_multipart_upload(Bucket="shared-drop", Key="anon-multi", UploadId=up,
                                   MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert alice.get_object_acl(Bucket="shared-drop", Key="anon-multi")["Owner"]["ID"] == "alice"
    assert denied(read(anon, "shared-drop", "anon-multi"))
    # Without WRITE on the bucket, no part of an upload: not to start one, add to it, list or abort it.
    alice.create_bucket(Bucket="private-parts")
    up = alice.create_multipart_upload(Bucket="private-parts", Key="m")["UploadId"]
    for who in (bob, anon):
        assert denied(lambda who=who: who.create_multipart_upload(Bucket="private-parts", Key="n"))
        assert denied(lambda who=who: who.upload_part(Bucket="private-parts", Key="m", UploadId=up, PartNumber=1,
                                                      Body=b"x"))
        assert denied(lambda who=who: who.list_parts(Bucket="private-parts", Key="m", UploadId=up))
        assert denied(lambda who=who: who.list_multipart_uploads(Bucket="private-parts"))
        assert denied(lambda who=who: who.abort_multipart_upload(Bucket="private-parts", Key="m", UploadId=up))
    assert [u["UploadId"] for u in alice.list_multipart_uploads(Bucket="private-parts")["Uploads"]] == [up]


def test_expected_bucket_owner(alice: Any, bob: Any, anon: Any) -> None:
    alice.create_bucket(Bucket="expected-owner", ACL="public-read-write")
    alice.put_object(Bucket="expected-owner", Key="k", Body=b"v", ExpectedBucketOwner="alice")
    bob.put_object(Bucket="expected-owner", Key="b", Body=b"b", ExpectedBucketOwner="alice")
    anon.put_object(Bucket="expected-owner", Key="a", Body=b"a", ExpectedBucketOwner="alice")
    assert denied(lambda: bob.put_object(Bucket="expected-owner", Key="c", Body=b"c", ExpectedBucketOwner="bob"))
    assert denied(lambda: anon.put_object(Bucket="expected-owner", Key="c", Body=b"c", ExpectedBucketOwner="x"))
    assert denied(lambda: alice.list_objects_v2(Bucket="expected-owner", ExpectedBucketOwner="carol"))
    bob.create_bucket(Bucket="expected-copies")
    bob.copy_object(Bucket="expected-copies", Key="c", CopySource="expected-owner/b",
                    ExpectedSourceBucketOwner="alice", ExpectedBucketOwner="bob")
    assert denied(lambda: bob.copy_object(Bucket="expected-copies", Key="d", CopySource="expected-owner/b",
                                          ExpectedSourceBucketOwner="bob"))


def test_grant_headers_on_buckets(alice: Any, bob: Any, anon: Any) -> None:
    alice.create_bucket(Bucket="grants-bucket", GrantRead='id="bob"')
    alice.put_object(Bucket="grants-bucket", Key="k", Body=b"v")
    assert [o["Key"] for o in bob.list_objects_v2(Bucket="grants-bucket")["Contents"]] == ["k"]
    assert denied(lambda: anon.list_objects_v2(Bucket="grants-bucket"))
    assert denied(lambda: bob.put_object(Bucket="grants-bucket", Key="b", Body=b"b"))
    assert denied(lambda: bob.get_bucket_acl(Bucket="grants-bucket"))
    # Grants replace the default ACL (the owner keeps its rights without a grant, as on AWS).
    assert grants_of(alice.get_bucket_acl(Bucket="grants-bucket")) == {("bob", "READ")}
    assert alice.list_objects_v2(Bucket="grants-bucket")["KeyCount"] == 1
    alice.put_bucket_acl(Bucket="grants-bucket", GrantWrite='id="bob"', GrantReadACP='id="bob"',
                         GrantFullControl='id="alice"')
    bob.put_object(Bucket="grants-bucket", Key="b", Body=b"b")
    assert denied(lambda: bob.list_objects_v2(Bucket="grants-bucket"))  # READ was replaced
    assert grants_of(bob.get_bucket_acl(Bucket="grants-bucket")) == {
        ("alice", "FULL_CONTROL"), ("bob", "WRITE"), ("bob", "READ_ACP")}
    assert denied(lambda: bob.put_bucket_acl(Bucket="grants-bucket", ACL="public-read"))
    assert denied(lambda: anon.put_object(Bucket="grants-bucket", Key="a", Body=b"a"))
    alice.put_bucket_acl(Bucket="grants-bucket", GrantWriteACP='id="bob"', GrantFullControl='id="alice"')
    bob.put_bucket_acl(Bucket="grants-bucket", GrantFullControl='id="alice"', GrantRead=f'uri="{AUTH_USERS}"')
    assert bob.list_objects_v2(Bucket="grants-bucket")["KeyCount"] == 2  # as an authenticated user
    assert denied(lambda: anon.list_objects_v2(Bucket="grants-bucket"))
    assert denied(lambda: bob.put_bucket_acl(Bucket="grants-bucket", ACL="private"))  # WRITE_ACP is gone


def test_access_control_policy_bodies_on_objects(alice: Any, bob: Any, anon: Any) -> None:
    alice.create_bucket(Bucket="grants-object")
    alice.put_object(Bucket="grants-object", Key="doc", Body=b"text")
    owner = {"ID": "alice", "DisplayName": "alice"}

    def policy(*grants: tuple[dict, str]) -> dict:
        return {"Owner": owner, "Grants": [{"Grantee": g, "Permission": p} for g, p in grants]}

    alice.put_object_acl(Bucket="grants-object", Key="doc", AccessControlPolicy=policy(
        ({"Type": "CanonicalUser", "ID": "alice"}, "FULL_CONTROL"), ({"Type": "CanonicalUser", "ID": "bob"}, "READ")))
    assert read(bob, "grants-object", "doc")() == b"text"
    assert denied(read(anon, "grants-object", "doc"))
    assert denied(lambda: bob.get_object_acl(Bucket="grants-object", Key="doc"))
    alice.put_object_acl(Bucket="grants-object", Key="doc", AccessControlPolicy=policy(
        ({"Type": "CanonicalUser", "ID": "alice"}, "FULL_CONTROL"), ({"Type": "Group", "URI": ALL_USERS}, "READ"),
        ({"Type": "CanonicalUser", "ID": "bob"}, "WRITE_ACP")))
    assert read(anon, "grants-object", "doc")() == b"text"
    bob.put_object_acl(Bucket="grants-object", Key="doc", ACL="private")  # WRITE_ACP lets bob change it
    assert denied(read(anon, "grants-object", "doc"))
    assert grants_of(alice.get_object_acl(Bucket="grants-object", Key="doc")) == {("alice", "FULL_CONTROL")}
    # Grants on PutObject, CopyObject and CreateMultipartUpload.
    alice.put_object(Bucket="grants-object", Key="put", Body=b"p", GrantRead='id="bob"')
    alice.copy_object(Bucket="grants-object", Key="copied", CopySource="grants-object/put", ACL="public-read")
    up = alice.create_multipart_upload(Bucket="grants-object", Key="multi", GrantFullControl='id="bob"')
    etag = alice.upload_part(Bucket="grants-object", Key="multi", UploadId=up["UploadId"], PartNumber=1,
                             Body=b"m")["ETag"]
    alice.complete_multipart_upload(Bucket="grants-object", Key="multi", UploadId=up["UploadId"],
                                    MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert read(bob, "grants-object", "put")() == b"p"
    assert denied(read(anon, "grants-object", "put"))
    assert denied(lambda: bob.get_object_acl(Bucket="grants-object", Key="put"))
    alice.put_object_acl(Bucket="grants-object", Key="put", GrantReadACP='id="bob"')  # READ_ACP alone
    assert grants_of(bob.get_object_acl(Bucket="grants-object", Key="put")) == {("bob", "READ_ACP")}
    assert denied(read(bob, "grants-object", "put"))
    assert denied(lambda: bob.put_object_acl(Bucket="grants-object", Key="put", GrantRead='id="bob"'))
    assert read(alice, "grants-object", "put")() == b"p"  # the owner needs no grant
    alice.put_object_acl(Bucket="grants-object", Key="put", GrantRead='id="bob"')
    assert read(anon, "grants-object", "copied")() == b"p"  # the copy's ACL is its own, not the source's
    assert read(bob, "grants-object", "multi")() == b"m"
    bob.put_object_acl(Bucket="grants-object", Key="multi", ACL="public-read")
    assert read(anon, "grants-object", "multi")() == b"m"
    # Bob reads "put": he may copy it to his own bucket, where the copy is his.
    bob.create_bucket(Bucket="bobs-copies")
    bob.copy_object(Bucket="bobs-copies", Key="c", CopySource="grants-object/put")
    assert denied(lambda: bob.copy_object(Bucket="bobs-copies", Key="d", CopySource="grants-object/doc"))
    assert denied(lambda: anon.copy_object(Bucket="grants-object", Key="e", CopySource="grants-object/copied"))


def test_bad_grants_are_clear_errors_and_change_nothing(alice: Any, svc: SpawnedService,
                                                       users: dict[str, User]) -> None:
    alice.create_bucket(Bucket="grants-bad")
    alice.put_object(Bucket="grants-bad", Key="k", Body=b"v")
    before = alice.get_bucket_acl(Bucket="grants-bad")["Grants"]
    owner = {"ID": "alice"}
    for bad, code in (
        (lambda: alice.put_bucket_acl(Bucket="grants-bad", GrantRead='emailAddress="bob@example.com"'),
         "UnresolvableGrantByEmailAddress"),
        (lambda: alice.put_bucket_acl(Bucket="grants-bad", GrantRead='id="no such user!"'), "InvalidArgument"),
        (lambda: alice.put_bucket_acl(Bucket="grants-bad", GrantRead='id="ghost"'), "InvalidArgument"),
        (lambda: alice.put_object(Bucket="grants-bad", Key="new", Body=b"x", GrantRead='id="ghost"'),
         "InvalidArgument"),
        (lambda: alice.create_bucket(Bucket="grants-bad-new", GrantRead='id="ghost"'), "InvalidArgument"),
        (lambda: alice.put_bucket_acl(Bucket="grants-bad", GrantRead='uri="http://example.com/group"'),
         "InvalidArgument"),
        (lambda: alice.put_bucket_acl(Bucket="grants-bad", GrantRead='nickname="bob"'), "InvalidArgument"),
        (lambda: alice.put_bucket_acl(Bucket="grants-bad", ACL="public-read", GrantRead='id="bob"'),
         "InvalidRequest"),
        (lambda: alice.put_bucket_acl(Bucket="grants-bad", ACL="everyone"), "InvalidArgument"),
        (lambda: alice.put_bucket_acl(Bucket="grants-bad", AccessControlPolicy={"Owner": owner, "Grants": [
            {"Grantee": {"Type": "CanonicalUser", "ID": "bob"}, "Permission": "EVERYTHING"}]}), "MalformedACLError"),
        (lambda: alice.put_bucket_acl(Bucket="grants-bad", AccessControlPolicy={"Owner": {"ID": "bob"}, "Grants": [
            {"Grantee": {"Type": "CanonicalUser", "ID": "bob"}, "Permission": "READ"}]}), "AccessDenied"),
        (lambda: alice.put_object_acl(Bucket="grants-bad", Key="k", AccessControlPolicy={"Owner": owner, "Grants": [
            {"Grantee": {"Type": "AmazonCustomerByEmail", "EmailAddress": "a@b.c"}, "Permission": "READ"}]}),
         "UnresolvableGrantByEmailAddress"),
        (lambda: alice.put_object(Bucket="grants-bad", Key="new", Body=b"x", GrantRead='id="bob", oops'),
         "InvalidArgument"),
    ):
        assert error(bad)[0] == code
    assert alice.get_bucket_acl(Bucket="grants-bad")["Grants"] == before
    assert error(lambda: alice.head_object(Bucket="grants-bad", Key="new"))[1] == 404
    assert error(lambda: alice.head_bucket(Bucket="grants-bad-new"))[1] == 404
    # A body that is no AccessControlPolicy, and an empty PUT ?acl: S3 XML errors, never a 500.
    me = {"access_key": users["alice"].access_key, "secret_key": users["alice"].secret_key}
    for body in (b"<Nope/>", b"not xml", b"", b"<AccessControlPolicy><AccessControlList><Grant><Grantee>"
                 b"<ID>bob</ID></Grantee></Grant></AccessControlList></AccessControlPolicy>"):
        md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
        r = signed_request(svc.url, me, "PUT", "/grants-bad?acl", body, headers={"Content-MD5": md5})
        assert r.status_code == 400 and b"<Code>" in r.content and r.headers["Content-Type"] == "application/xml"
    assert alice.get_bucket_acl(Bucket="grants-bad")["Grants"] == before


def test_hostile_settings_bodies_are_s3_errors_and_change_nothing(alice: Any, svc: SpawnedService,
                                                                  users: dict[str, User]) -> None:
    alice.create_bucket(Bucket="hostile-settings")
    me = {"access_key": users["alice"].access_key, "secret_key": users["alice"].secret_key}
    many = "".join(f"<Grant><Grantee><ID>u{i}</ID></Grantee><Permission>READ</Permission></Grant>" for i in range(101))
    for sub, body, code in (
        ("publicAccessBlock", b"<PublicAccessBlockConfiguration><BlockPublicAcls>maybe</BlockPublicAcls>"
         b"</PublicAccessBlockConfiguration>", "MalformedXML"),
        ("publicAccessBlock", b"<OwnershipControls/>", "MalformedXML"),
        ("publicAccessBlock", b"<PublicAccessBlockConfiguration>", "MalformedXML"),
        ("ownershipControls", b"<OwnershipControls><Rule><ObjectOwnership>ObjectWriter</ObjectOwnership></Rule>"
         b"<Rule><ObjectOwnership>BucketOwnerEnforced</ObjectOwnership></Rule></OwnershipControls>", "MalformedXML"),
        ("ownershipControls", b"<OwnershipControls/>", "MalformedXML"),
        ("acl", f"<AccessControlPolicy><AccessControlList>{many}</AccessControlList></AccessControlPolicy>".encode(),
         "InvalidArgument"),
        ("acl", b"<AccessControlPolicy><AccessControlList><Grant><Grantee><ID>bob</ID></Grantee>"
         b"<Permission>READ</Permission></Grant></AccessControlList></AccessControlPolicy>"
         b"<!-- trailing -->", ""),
        ("policy", b"\xff\xfe{}", "MalformedPolicy"),
    ):
        md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
        r = signed_request(svc.url, me, "PUT", f"/hostile-settings?{sub}", body, headers={"Content-MD5": md5})
        if not code:  # well-formed after all: applied
            assert r.status_code == 200, r.content
            continue
        assert r.status_code == 400 and f"<Code>{code}</Code>".encode() in r.content, (sub, r.content)
    assert error(lambda: alice.get_public_access_block(Bucket="hostile-settings"))[0] == \
        "NoSuchPublicAccessBlockConfiguration"
    assert error(lambda: alice.get_bucket_ownership_controls(Bucket="hostile-settings"))[0] == \
        "OwnershipControlsNotFoundError"
    assert error(lambda: alice.get_bucket_policy(Bucket="hostile-settings"))[0] == "NoSuchBucketPolicy"
    assert grants_of(alice.get_bucket_acl(Bucket="hostile-settings")) == {("bob", "READ")}


# -- bucket policies ---------------------------------------------------------------------------------------------


def test_a_policy_opens_one_prefix_to_anonymous_readers(alice: Any, bob: Any, anon: Any, svc: SpawnedService) -> None:
    alice.create_bucket(Bucket="policy-prefix")
    for key in ("public/a.txt", "private/b.txt"):
        alice.put_object(Bucket="policy-prefix", Key=key, Body=key.encode())
    assert error(lambda: alice.get_bucket_policy(Bucket="policy-prefix"))[0:2] == ("NoSuchBucketPolicy", 404)
    set_policy(alice, "policy-prefix", {"Sid": "PublicRead", "Effect": "Allow", "Principal": "*",
                                        "Action": "s3:GetObject", "Resource": "arn:aws:s3:::policy-prefix/public/*"})
    assert json.loads(alice.get_bucket_policy(Bucket="policy-prefix")["Policy"])["Statement"][0]["Sid"] == "PublicRead"
    assert alice.get_bucket_policy_status(Bucket="policy-prefix")["PolicyStatus"]["IsPublic"] is True
    assert read(anon, "policy-prefix", "public/a.txt")() == b"public/a.txt"
    assert requests.get(f"{svc.url}/policy-prefix/public/a.txt").content == b"public/a.txt"
    assert read(bob, "policy-prefix", "public/a.txt")() == b"public/a.txt"
    for who in (bob, anon):
        assert denied(read(who, "policy-prefix", "private/b.txt"))
        assert denied(lambda who=who: who.list_objects_v2(Bucket="policy-prefix"))
        assert denied(lambda who=who: who.put_object(Bucket="policy-prefix", Key="public/new", Body=b"x"))
        assert denied(lambda who=who: who.delete_object(Bucket="policy-prefix", Key="public/a.txt"))
        assert denied(lambda who=who: who.get_object_acl(Bucket="policy-prefix", Key="public/a.txt"))
        assert denied(lambda who=who: who.get_bucket_policy(Bucket="policy-prefix"))
        assert denied(lambda who=who: who.delete_bucket_policy(Bucket="policy-prefix"))
        assert denied(lambda who=who: set_policy(who, "policy-prefix", {
            "Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": "arn:aws:s3:::policy-prefix/*"}))
    alice.delete_bucket_policy(Bucket="policy-prefix")
    assert denied(read(anon, "policy-prefix", "public/a.txt"))
    assert error(lambda: alice.get_bucket_policy(Bucket="policy-prefix"))[0] == "NoSuchBucketPolicy"


def test_a_policy_grants_a_named_user_and_wildcard_actions(alice: Any, bob: Any, anon: Any) -> None:
    alice.create_bucket(Bucket="policy-bob")
    set_policy(alice, "policy-bob",
               {"Effect": "Allow", "Principal": {"AWS": ["arn:aws:iam::bob:root"]}, "Action": ["s3:List*"],
                "Resource": "arn:aws:s3:::policy-bob"},
               {"Effect": "Allow", "Principal": {"AWS": "bob"}, "Action": ["s3:Put*", "s3:Get*"],
                "Resource": ["arn:aws:s3:::policy-bob/bob/*"]})
    assert alice.get_bucket_policy_status(Bucket="policy-bob")["PolicyStatus"]["IsPublic"] is False
    bob.put_object(Bucket="policy-bob", Key="bob/x", Body=b"x")
    assert read(bob, "policy-bob", "bob/x")() == b"x"
    assert bob.list_objects_v2(Bucket="policy-bob")["KeyCount"] == 1
    assert denied(lambda: bob.put_object(Bucket="policy-bob", Key="elsewhere", Body=b"x"))
    assert denied(lambda: bob.delete_object(Bucket="policy-bob", Key="bob/x"))
    assert denied(lambda: anon.list_objects_v2(Bucket="policy-bob"))
    assert denied(read(anon, "policy-bob", "bob/x"))
    # DeleteObjects is checked key by key.
    alice.put_object(Bucket="policy-bob", Key="bob/y", Body=b"y")
    set_policy(alice, "policy-bob", {"Effect": "Allow", "Principal": {"AWS": "bob"}, "Action": "s3:DeleteObject",
                                     "Resource": "arn:aws:s3:::policy-bob/bob/y"})
    out = bob.delete_objects(Bucket="policy-bob", Delete={"Objects": [{"Key": "bob/x"}, {"Key": "bob/y"}]})
    assert [d["Key"] for d in out.get("Deleted", [])] == ["bob/y"]
    assert [(e["Key"], e["Code"]) for e in out["Errors"]] == [("bob/x", "AccessDenied")]
    assert alice.list_objects_v2(Bucket="policy-bob")["KeyCount"] == 1


def test_listings_name_each_object_s_owner_and_policy_status_needs_a_policy(alice: Any, bob: Any, anon: Any) -> None:
    alice.create_bucket(Bucket="listing-owners", ACL="public-read-write")
    alice.put_bucket_versioning(Bucket="listing-owners", VersioningConfiguration={"Status": "Enabled"})
    alice.put_object(Bucket="listing-owners", Key="a", Body=b"a")
    bob.put_object(Bucket="listing-owners", Key="b", Body=b"b")
    listed = bob.list_objects(Bucket="listing-owners")["Contents"]
    assert [(o["Key"], o["Owner"]["ID"]) for o in listed] == [("a", "alice"), ("b", "bob")]
    v2 = alice.list_objects_v2(Bucket="listing-owners", FetchOwner=True)["Contents"]
    assert [o["Owner"]["ID"] for o in v2] == ["alice", "bob"]
    versions = bob.list_object_versions(Bucket="listing-owners")["Versions"]
    assert sorted((v["Key"], v["Owner"]["ID"]) for v in versions) == [("a", "alice"), ("b", "bob")]
    assert error(lambda: alice.get_bucket_policy_status(Bucket="listing-owners")) == ("NoSuchBucketPolicy", 404)
    assert denied(lambda: bob.get_bucket_policy_status(Bucket="listing-owners"))
    assert error(lambda: bob.get_object_acl(Bucket="listing-owners", Key="b", VersionId="12x"))[0] == \
        "InvalidArgument"
    vid = versions[0]["VersionId"] if versions[0]["Key"] == "b" else versions[1]["VersionId"]
    bob.put_object_acl(Bucket="listing-owners", Key="b", VersionId=vid, ACL="public-read")
    assert (ALL_USERS, "READ") in grants_of(bob.get_object_acl(Bucket="listing-owners", Key="b", VersionId=vid))
    # Each version has its ACL, and what is served is the version whose ACL was checked.
    newer = bob.put_object(Bucket="listing-owners", Key="b", Body=b"newer, private")["VersionId"]
    assert anon.get_object(Bucket="listing-owners", Key="b", VersionId=vid)["Body"].read() == b"b"
    assert denied(read(anon, "listing-owners", "b"))
    assert denied(lambda: anon.get_object(Bucket="listing-owners", Key="b", VersionId=newer))
    assert bob.get_object(Bucket="listing-owners", Key="b", VersionId=vid)["Body"].read() == b"b"
    assert read(bob, "listing-owners", "b")() == b"newer, private"


def test_a_policy_of_many_wildcards_is_matched_without_backtracking(alice: Any, anon: Any) -> None:
    """A regular expression ".*a.*a...b" would take hours on a long key: the gateway's worker with it."""
    alice.create_bucket(Bucket="policy-globs")
    alice.put_object(Bucket="policy-globs", Key="a" * 1000 + "b", Body=b"matched")
    set_policy(alice, "policy-globs", {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                                       "Resource": "arn:aws:s3:::policy-globs/" + "*a" * 500 + "b"})
    started = time.monotonic()
    assert denied(read(anon, "policy-globs", "a" * 1000))
    assert read(anon, "policy-globs", "a" * 1000 + "b")() == b"matched"
    assert denied(read(anon, "policy-globs", "a" * 499 + "b"))
    assert time.monotonic() - started < 10


def test_an_explicit_deny_overrides_acls_and_the_owner(alice: Any, bob: Any, anon: Any) -> None:
    alice.create_bucket(Bucket="policy-deny", ACL="public-read")
    alice.put_object(Bucket="policy-deny", Key="open", Body=b"o", ACL="public-read")
    alice.put_object(Bucket="policy-deny", Key="secret/s", Body=b"s", ACL="public-read")
    set_policy(alice, "policy-deny",
               {"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject",
                "Resource": "arn:aws:s3:::policy-deny/secret/*"},
               {"Effect": "Deny", "Principal": {"AWS": "bob"}, "Action": "s3:*",
                "Resource": ["arn:aws:s3:::policy-deny", "arn:aws:s3:::policy-deny/*"]})
    assert read(anon, "policy-deny", "open")() == b"o"
    assert anon.list_objects_v2(Bucket="policy-deny")["KeyCount"] == 2
    for who in (anon, bob, alice):
        assert denied(read(who, "policy-deny", "secret/s"))
    assert denied(read(bob, "policy-deny", "open"))
    assert denied(lambda: bob.list_objects_v2(Bucket="policy-deny"))
    # A policy that denies everything to everyone still lets the owner manage the policy.
    set_policy(alice, "policy-deny", {"Effect": "Deny", "Principal": "*", "Action": "s3:*",
                                      "Resource": ["arn:aws:s3:::policy-deny", "arn:aws:s3:::policy-deny/*"]})
    assert denied(read(alice, "policy-deny", "open"))
    assert denied(lambda: alice.list_objects_v2(Bucket="policy-deny"))
    assert "Deny" in alice.get_bucket_policy(Bucket="policy-deny")["Policy"]
    alice.delete_bucket_policy(Bucket="policy-deny")
    assert read(alice, "policy-deny", "open")() == b"o"


def test_conditions_on_object_tags(alice: Any, bob: Any, anon: Any) -> None:
    alice.create_bucket(Bucket="policy-tags")
    alice.put_object(Bucket="policy-tags", Key="shared", Body=b"s", Tagging="public=yes&keep=yes")
    alice.put_object(Bucket="policy-tags", Key="inner", Body=b"i", Tagging="public=no")
    alice.put_object(Bucket="policy-tags", Key="scratch", Body=b"t")
    every = {"Principal": "*", "Resource": "arn:aws:s3:::policy-tags/*"}
    set_policy(alice, "policy-tags",
               {**every, "Effect": "Allow", "Action": "s3:GetObject",
                "Condition": {"StringEquals": {"s3:ExistingObjectTag/public": "yes"}}},
               {**every, "Effect": "Deny", "Action": "s3:DeleteObject",
                "Condition": {"StringEquals": {"s3:ExistingObjectTag/keep": "yes"}}},
               {**every, "Effect": "Deny", "Action": "s3:PutObject",
                "Condition": {"StringNotEquals": {"s3:RequestObjectTag/project": "alpha"}}})
    assert read(anon, "policy-tags", "shared")() == b"s"
    assert denied(read(anon, "policy-tags", "inner"))
    assert denied(read(bob, "policy-tags", "scratch"))
    assert denied(lambda: alice.delete_object(Bucket="policy-tags", Key="shared"))
    out = alice.delete_objects(Bucket="policy-tags", Delete={"Objects": [{"Key": "shared"}, {"Key": "scratch"}]})
    assert [d["Key"] for d in out["Deleted"]] == ["scratch"]
    assert [(e["Key"], e["Code"]) for e in out["Errors"]] == [("shared", "AccessDenied")]
    assert denied(lambda: alice.put_object(Bucket="policy-tags", Key="new", Body=b"n"))
    assert denied(lambda: alice.put_object(Bucket="policy-tags", Key="new", Body=b"n", Tagging="project=beta"))
    alice.put_object(Bucket="policy-tags", Key="new", Body=b"n", Tagging="project=alpha")


def test_not_principal_not_action_and_not_resource(alice: Any, bob: Any, anon: Any) -> None:
    alice.create_bucket(Bucket="policy-nots", ACL="public-read-write")
    alice.put_object(Bucket="policy-nots", Key="open", Body=b"o", ACL="public-read")
    alice.put_object(Bucket="policy-nots", Key="logs/x", Body=b"l", ACL="public-read")
    both = ["arn:aws:s3:::policy-nots", "arn:aws:s3:::policy-nots/*"]
    # Deny everyone but alice: the public ACLs open nothing any more.
    set_policy(alice, "policy-nots", {"Effect": "Deny", "NotPrincipal": {"AWS": "alice"}, "Action": "s3:*",
                                      "Resource": both})
    for who in (bob, anon):
        assert denied(read(who, "policy-nots", "open"))
        assert denied(lambda who=who: who.put_object(Bucket="policy-nots", Key="w", Body=b"w"))
    assert read(alice, "policy-nots", "open")() == b"o"
    # Deny all but reads: bob (WRITE by the ACL) may read, not write or delete.
    set_policy(alice, "policy-nots", {"Effect": "Deny", "Principal": "*", "NotAction": ["s3:GetObject", "s3:List*"],
                                      "Resource": both})
    assert read(bob, "policy-nots", "open")() == b"o"
    assert bob.list_objects_v2(Bucket="policy-nots")["KeyCount"] == 2
    assert denied(lambda: bob.put_object(Bucket="policy-nots", Key="w", Body=b"w"))
    assert denied(lambda: anon.delete_object(Bucket="policy-nots", Key="open"))
    assert denied(lambda: alice.put_object(Bucket="policy-nots", Key="w", Body=b"w"))  # a Deny binds the owner
    # Deny reads of everything but logs/.
    set_policy(alice, "policy-nots", {"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject",
                                      "NotResource": "arn:aws:s3:::policy-nots/logs/*"})
    assert read(anon, "policy-nots", "logs/x")() == b"l"
    assert denied(read(anon, "policy-nots", "open"))
    bob.put_object(Bucket="policy-nots", Key="w", Body=b"w")  # not a read: the ACL's WRITE holds


def test_ip_address_secure_transport_user_and_prefix_conditions(alice: Any, bob: Any, anon: Any) -> None:
    alice.create_bucket(Bucket="policy-conditions")
    alice.put_object(Bucket="policy-conditions", Key="home/bob/notes", Body=b"n")
    alice.put_object(Bucket="policy-conditions", Key="home/carol/notes", Body=b"c")

    def anonymous_read_from(cidr: str, operator: str = "IpAddress") -> None:
        set_policy(alice, "policy-conditions", {
            "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
            "Resource": "arn:aws:s3:::policy-conditions/*", "Condition": {operator: {"aws:SourceIp": [cidr]}}})

    anonymous_read_from("127.0.0.0/8")
    assert read(anon, "policy-conditions", "home/bob/notes")() == b"n"
    anonymous_read_from("10.0.0.0/8")
    assert denied(read(anon, "policy-conditions", "home/bob/notes"))
    anonymous_read_from("10.0.0.0/8", "NotIpAddress")
    assert read(anon, "policy-conditions", "home/bob/notes")() == b"n"
    anonymous_read_from("::1/128")  # an IPv6 range does not hold an IPv4 client
    assert denied(read(anon, "policy-conditions", "home/bob/notes"))

    set_policy(alice, "policy-conditions", {
        "Effect": "Allow", "Principal": {"AWS": "bob"}, "Action": "s3:ListBucket",
        "Resource": "arn:aws:s3:::policy-conditions",
        "Condition": {"StringLike": {"s3:prefix": ["home/bob/*"]}, "StringEquals": {"aws:username": "bob"}}})
    assert bob.list_objects_v2(Bucket="policy-conditions", Prefix="home/bob/")["KeyCount"] == 1
    assert denied(lambda: bob.list_objects_v2(Bucket="policy-conditions"))
    assert denied(lambda: bob.list_objects_v2(Bucket="policy-conditions", Prefix="home/carol/"))
    assert denied(lambda: anon.list_objects_v2(Bucket="policy-conditions", Prefix="home/bob/"))

    # Policy variables: each user lists and reads its own home.
    alice.put_object(Bucket="policy-conditions", Key="home/alice/notes", Body=b"a")
    set_policy(alice, "policy-conditions", {
        "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
        "Resource": "arn:aws:s3:::policy-conditions/home/${aws:username}/*"}, {
        "Effect": "Allow", "Principal": {"AWS": "bob"}, "Action": "s3:ListBucket",
        "Resource": "arn:aws:s3:::policy-conditions",
        "Condition": {"StringLike": {"s3:prefix": "home/${aws:username}/*"}}})
    assert read(bob, "policy-conditions", "home/bob/notes")() == b"n"
    assert denied(read(bob, "policy-conditions", "home/alice/notes"))
    assert denied(read(anon, "policy-conditions", "home/bob/notes"))  # no aws:username: matches nothing
    assert bob.list_objects_v2(Bucket="policy-conditions", Prefix="home/bob/")["KeyCount"] == 1
    assert denied(lambda: bob.list_objects_v2(Bucket="policy-conditions", Prefix="home/alice/"))

    set_policy(alice, "policy-conditions", {
        "Effect": "Deny", "Principal": "*", "Action": "s3:*",
        "Resource": ["arn:aws:s3:::policy-conditions", "arn:aws:s3:::policy-conditions/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}}})
    assert denied(read(alice, "policy-conditions", "home/bob/notes"))  # plain HTTP here
    set_policy(alice, "policy-conditions", {
        "Effect": "Deny", "Principal": "*", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::policy-conditions",
        "Condition": {"NumericGreaterThan": {"s3:max-keys": "10"}}})
    assert alice.list_objects_v2(Bucket="policy-conditions", MaxKeys=5)["KeyCount"] == 3
    assert denied(lambda: alice.list_objects_v2(Bucket="policy-conditions", MaxKeys=100))
    set_policy(alice, "policy-conditions", {
        "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::policy-conditions/*",
        "Condition": {"StringEquals": {"s3:x-amz-acl": ["public-read", "public-read-write"]}}})
    alice.put_object(Bucket="policy-conditions", Key="fine", Body=b"f")
    assert denied(lambda: alice.put_object(Bucket="policy-conditions", Key="leak", Body=b"l", ACL="public-read"))

    def anonymous_read_until(operator: str, when: str) -> None:
        set_policy(alice, "policy-conditions", {
            "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
            "Resource": "arn:aws:s3:::policy-conditions/*", "Condition": {operator: {"aws:CurrentTime": when}}})

    anonymous_read_until("DateLessThan", "2000-01-01T00:00:00Z")
    assert denied(read(anon, "policy-conditions", "fine"))
    anonymous_read_until("DateGreaterThan", "2000-01-01T00:00:00Z")
    assert read(anon, "policy-conditions", "fine")() == b"f"
    set_policy(alice, "policy-conditions", {  # the usual "uploads must ask for encryption"
        "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::policy-conditions/*",
        "Condition": {"Null": {"s3:x-amz-server-side-encryption": "true"}}})
    assert denied(lambda: alice.put_object(Bucket="policy-conditions", Key="plain", Body=b"p"))
    alice.put_object(Bucket="policy-conditions", Key="asked", Body=b"e", ServerSideEncryption="AES256")


@pytest.mark.parametrize(("document", "reason"), [pytest.param(*case, id=case[1]) for case in [
    ("not json", "JSON"),
    ('{"Version": "2012-10-17"}', "Statement"),
    ('{"Version": "2012-10-17", "Statement": []}', "Statement"),
    ('{"Version": "1999-01-01", "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", '
     '"Resource": "arn:aws:s3:::policy-bad/*"}]}', "Version"),
    ('{"Statement": [{"Effect": "Maybe", "Principal": "*", "Action": "s3:GetObject", '
     '"Resource": "arn:aws:s3:::policy-bad/*"}]}', "Effect"),
    ('{"Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::policy-bad/*"}]}',
     "Principal"),
    ('{"Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2"}, "Action": "s3:GetObject", '
     '"Resource": "arn:aws:s3:::policy-bad/*"}]}', "principal"),
    ('{"Statement": [{"Effect": "Allow", "Principal": {"AWS": ["bob", "ghost"]}, "Action": "s3:GetObject", '
     '"Resource": "arn:aws:s3:::policy-bad/*"}]}', "principal"),
    ('{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:FlyToTheMoon", '
     '"Resource": "arn:aws:s3:::policy-bad/*"}]}', "action"),
    ('{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", '
     '"Resource": "arn:aws:s3:::another-bucket/*"}]}', "resource"),
    ('{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", '
     '"Resource": "arn:aws:s3:::policy-bad"}]}', "apply"),
    ('{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", '
     '"Resource": "arn:aws:s3:::policy-bad/*", "Condition": {"StringSortOf": {"s3:prefix": "a"}}}]}', "operator"),
    ('{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", '
     '"Resource": "arn:aws:s3:::policy-bad/*", "Condition": {"StringEquals": {"aws:FavouriteColour": "a"}}}]}',
     "condition key"),
    ('{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", '
     '"Resource": "arn:aws:s3:::policy-bad/*", "Condition": {"IpAddress": {"aws:SourceIp": "300.1.2.3/8"}}}]}',
     "IP"),
    ('{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "NotAction": "s3:PutObject", '
     '"Resource": "arn:aws:s3:::policy-bad/*"}]}', "Action"),
    ('{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", '
     '"Resource": "arn:aws:s3:::policy-bad/*"}], "Colour": "red"}', "Colour"),
    ('{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", '
     '"Resource": "arn:aws:s3:::policy-bad/' + "x" * 21000 + '"}]}', "20"),
    ('{"Statement": ' + "[" * 5000 + "]" * 5000 + "}", "nested"),
    ('{"Statement": [{"Effect": ["Allow"], "Principal": "*", "Action": "s3:GetObject", '
     '"Resource": "arn:aws:s3:::policy-bad/*"}]}', "Effect"),
    ('{"Statement": [{"Effect": "Allow", "Principal": {"AWS": [{"nested": 1}]}, "Action": "s3:GetObject", '
     '"Resource": "arn:aws:s3:::policy-bad/*"}]}', "principal"),
    ('{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", '
     '"Resource": "arn:aws:s3:::policy-bad/${aws:SourceIp}/*"}]}', "variable"),
    ('{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", '
     '"Resource": "arn:aws:s3:::policy-bad/*", "Condition": {"StringLike": {"s3:prefix": {"a": "b"}}}}]}', "values"),
    ('{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", '
     '"Resource": "arn:aws:s3:::policy-bad/*", "Condition": {"NumericLessThan": {"s3:max-keys": "ten"}}}]}',
     "number"),
    ('{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", '
     '"Resource": "arn:aws:s3:::policy-bad/*", "Condition": {"DateLessThan": {"aws:CurrentTime": "soon"}}}]}',
     "date"),
    ("[1, 2]", "JSON"),
]])
def test_a_malformed_policy_is_refused_with_a_reason(document: str, reason: str, alice: Any) -> None:
    with contextlib.suppress(botocore.exceptions.ClientError):
        alice.create_bucket(Bucket="policy-bad")  # made by the first case
    with pytest.raises(botocore.exceptions.ClientError) as e:
        alice.put_bucket_policy(Bucket="policy-bad", Policy=document)
    answer = e.value.response
    assert (answer["Error"]["Code"], answer["ResponseMetadata"]["HTTPStatusCode"]) == ("MalformedPolicy", 400)
    assert reason.lower() in answer["Error"]["Message"].lower()
    assert error(lambda: alice.get_bucket_policy(Bucket="policy-bad"))[0] == "NoSuchBucketPolicy"


# -- PublicAccessBlock and ObjectOwnership -----------------------------------------------------------------------


def test_public_access_block(alice: Any, bob: Any, anon: Any) -> None:
    alice.create_bucket(Bucket="pab")
    alice.put_object(Bucket="pab", Key="was-public", Body=b"w", ACL="public-read")
    assert read(anon, "pab", "was-public")() == b"w"
    assert error(lambda: alice.get_public_access_block(Bucket="pab"))[0:2] == \
        ("NoSuchPublicAccessBlockConfiguration", 404)
    config = {"BlockPublicAcls": True, "IgnorePublicAcls": False, "BlockPublicPolicy": False,
              "RestrictPublicBuckets": False}
    alice.put_public_access_block(Bucket="pab", PublicAccessBlockConfiguration=config)
    assert alice.get_public_access_block(Bucket="pab")["PublicAccessBlockConfiguration"] == config
    assert denied(lambda: alice.put_bucket_acl(Bucket="pab", ACL="public-read"))
    assert denied(lambda: alice.put_bucket_acl(Bucket="pab", GrantRead=f'uri="{AUTH_USERS}"'))
    assert denied(lambda: alice.put_object(Bucket="pab", Key="new", Body=b"n", ACL="public-read-write"))
    assert denied(lambda: alice.put_object_acl(Bucket="pab", Key="was-public", ACL="authenticated-read"))
    alice.put_object(Bucket="pab", Key="new", Body=b"n", GrantRead='id="bob"')  # not public: fine
    assert read(bob, "pab", "new")() == b"n"
    assert read(anon, "pab", "was-public")() == b"w"  # BlockPublicAcls leaves existing ACLs alone

    alice.put_public_access_block(Bucket="pab", PublicAccessBlockConfiguration={**config, "IgnorePublicAcls": True})
    assert denied(read(anon, "pab", "was-public"))
    assert denied(read(bob, "pab", "was-public"))
    assert read(bob, "pab", "new")() == b"n"  # a grant to a named user is not public

    public = {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::pab/*"}
    alice.put_public_access_block(Bucket="pab", PublicAccessBlockConfiguration={**config, "BlockPublicPolicy": True})
    assert denied(lambda: set_policy(alice, "pab", public))
    set_policy(alice, "pab", {**public, "Principal": {"AWS": "bob"}})  # not public: accepted
    set_policy(alice, "pab", {**public, "Condition": {"IpAddress": {"aws:SourceIp": "127.0.0.1/32"}}})

    alice.put_public_access_block(Bucket="pab", PublicAccessBlockConfiguration={**config, "BlockPublicAcls": False})
    alice.put_object(Bucket="pab", Key="hidden", Body=b"h")
    bobs = {**public, "Principal": {"AWS": "bob"}, "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::pab"}
    set_policy(alice, "pab", public, bobs)
    assert read(anon, "pab", "hidden")() == b"h"
    assert bob.list_objects_v2(Bucket="pab")["KeyCount"] == 3
    alice.put_public_access_block(Bucket="pab", PublicAccessBlockConfiguration={
        **config, "BlockPublicAcls": False, "RestrictPublicBuckets": True})
    assert denied(read(anon, "pab", "hidden"))  # the public policy opens nothing to others
    assert denied(read(bob, "pab", "hidden"))
    assert denied(lambda: bob.list_objects_v2(Bucket="pab"))  # not even by its statement naming bob
    assert read(bob, "pab", "new")() == b"n"  # ACLs still count
    assert read(alice, "pab", "hidden")() == b"h"
    set_policy(alice, "pab", bobs)  # no longer public: its statements count again
    assert bob.list_objects_v2(Bucket="pab")["KeyCount"] == 3
    for who in (bob, anon):
        assert denied(lambda who=who: who.get_public_access_block(Bucket="pab"))
        assert denied(lambda who=who: who.delete_public_access_block(Bucket="pab"))
        assert denied(lambda who=who: who.put_public_access_block(Bucket="pab",
                                                                  PublicAccessBlockConfiguration=config))
    alice.delete_public_access_block(Bucket="pab")
    assert read(anon, "pab", "was-public")() == b"w"
    assert error(lambda: alice.get_public_access_block(Bucket="pab"))[0] == "NoSuchPublicAccessBlockConfiguration"


def test_bucket_owner_enforced_disables_acls_and_owns_every_object(alice: Any, bob: Any, anon: Any) -> None:
    alice.create_bucket(Bucket="enforced", ObjectOwnership="BucketOwnerEnforced")
    assert alice.get_bucket_ownership_controls(Bucket="enforced")["OwnershipControls"]["Rules"] == [
        {"ObjectOwnership": "BucketOwnerEnforced"}]
    set_policy(alice, "enforced", {"Effect": "Allow", "Principal": {"AWS": "bob"}, "Action": "s3:PutObject",
                                   "Resource": "arn:aws:s3:::enforced/*"})
    for bad in (lambda: alice.put_bucket_acl(Bucket="enforced", ACL="public-read"),
                lambda: alice.put_bucket_acl(Bucket="enforced", GrantRead='id="bob"'),
                lambda: alice.put_object(Bucket="enforced", Key="x", Body=b"x", ACL="public-read"),
                lambda: bob.put_object(Bucket="enforced", Key="x", Body=b"x", ACL="public-read")):
        assert error(bad) == ("AccessControlListNotSupported", 400)
    alice.put_bucket_acl(Bucket="enforced", ACL="private")  # what it already is: accepted
    bob.put_object(Bucket="enforced", Key="from-bob", Body=b"b", ACL="bucket-owner-full-control")
    bob.put_object(Bucket="enforced", Key="plain", Body=b"p")
    assert read(alice, "enforced", "from-bob")() == b"b"
    assert read(alice, "enforced", "plain")() == b"p"
    assert alice.get_object_acl(Bucket="enforced", Key="plain")["Owner"]["ID"] == "alice"
    assert denied(read(bob, "enforced", "plain"))  # bob wrote it, the bucket owner owns it
    assert denied(lambda: bob.put_object_acl(Bucket="enforced", Key="plain", ACL="public-read"))
    assert error(lambda: alice.put_object_acl(Bucket="enforced", Key="plain", ACL="public-read")) == \
        ("AccessControlListNotSupported", 400)
    assert denied(read(anon, "enforced", "plain"))
    for who in (bob, anon):
        assert denied(lambda who=who: who.put_bucket_ownership_controls(Bucket="enforced", OwnershipControls={
            "Rules": [{"ObjectOwnership": "ObjectWriter"}]}))
        assert denied(lambda who=who: who.get_bucket_ownership_controls(Bucket="enforced"))


def test_object_writer_and_bucket_owner_preferred(alice: Any, bob: Any) -> None:
    alice.create_bucket(Bucket="ownership", ACL="public-read-write")
    assert error(lambda: alice.get_bucket_ownership_controls(Bucket="ownership"))[0:2] == \
        ("OwnershipControlsNotFoundError", 404)
    assert error(lambda: alice.put_bucket_ownership_controls(Bucket="ownership", OwnershipControls={
        "Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]})) == ("InvalidBucketAclWithObjectOwnership", 400)
    assert error(lambda: alice.put_bucket_ownership_controls(Bucket="ownership", OwnershipControls={
        "Rules": [{"ObjectOwnership": "Anarchy"}]}))[0] == "MalformedXML"
    alice.put_bucket_ownership_controls(Bucket="ownership", OwnershipControls={
        "Rules": [{"ObjectOwnership": "ObjectWriter"}]})
    bob.put_object(Bucket="ownership", Key="given", Body=b"g", ACL="bucket-owner-full-control")
    assert alice.get_object_acl(Bucket="ownership", Key="given")["Owner"]["ID"] == "bob"
    alice.put_bucket_ownership_controls(Bucket="ownership", OwnershipControls={
        "Rules": [{"ObjectOwnership": "BucketOwnerPreferred"}]})
    bob.put_object(Bucket="ownership", Key="given", Body=b"g", ACL="bucket-owner-full-control")
    bob.put_object(Bucket="ownership", Key="kept", Body=b"k")
    assert alice.get_object_acl(Bucket="ownership", Key="given")["Owner"]["ID"] == "alice"
    assert denied(lambda: alice.get_object_acl(Bucket="ownership", Key="kept"))  # no bucket-owner-full-control
    assert bob.get_object_acl(Bucket="ownership", Key="kept")["Owner"]["ID"] == "bob"
    alice.delete_bucket_ownership_controls(Bucket="ownership")
    assert error(lambda: alice.get_bucket_ownership_controls(Bucket="ownership"))[0] == \
        "OwnershipControlsNotFoundError"


# -- the aws cli -------------------------------------------------------------------------------------------------


def test_aws_cli_bucket_policy_and_acl(alice: Any, users: dict[str, User], svc: SpawnedService, anon: Any,
                                       tmp_path: Path) -> None:
    env = {**os.environ, "AWS_ACCESS_KEY_ID": users["alice"].access_key,
           "AWS_SECRET_ACCESS_KEY": users["alice"].secret_key, "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}

    def aws(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([str(AWS), "--endpoint-url", svc.url, "s3api", *args], env=env, capture_output=True,
                              text=True, timeout=120)
        assert (proc.returncode == 0) is ok, proc.stderr
        return proc

    # Three calls (the cli takes seconds to start): the rest of this API is boto3's in the tests above.
    alice.create_bucket(Bucket="cli-access", ACL="public-read")
    alice.put_object(Bucket="cli-access", Key="pub/x", Body=b"x")
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::cli-access/pub/*"}]}))
    aws("put-bucket-policy", "--bucket", "cli-access", "--policy", f"file://{policy}")
    assert json.loads(alice.get_bucket_policy(Bucket="cli-access")["Policy"]) == json.loads(policy.read_text())
    assert read(anon, "cli-access", "pub/x")() == b"x"
    acl = json.loads(aws("get-bucket-acl", "--bucket", "cli-access").stdout)
    assert acl["Owner"]["ID"] == "alice" and {"Grantee": {"Type": "Group", "URI": ALL_USERS},
                                               "Permission": "READ"} in acl["Grants"]
    bad = tmp_path / "bad.json"
    bad.write_text('{"Statement": "everything"}')
    assert "MalformedPolicy" in aws("put-bucket-policy", "--bucket", "cli-access", "--policy", f"file://{bad}",
                                    ok=False).stderr
