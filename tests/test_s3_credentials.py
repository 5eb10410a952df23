"""Issue 13, item 7 and hole 8: S3 secret keys were stored in clear in a bucket any holder of the namespace
secret could read, and every client host held that secret. Now the secrets are sealed under the grid's
master key (a file of its own that only the gateway and the admin commands read), entries written in clear
are sealed on first use, the admin commands (``grid user``, ``grid s3 chown``) need that key and refuse
another, and an S3 client needs nothing but its access key and secret.

Real processes: a local grid with its gateway, the ``grid`` command line, boto3 and the aws cli.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import pytest
from botocore import UNSIGNED
from botocore.config import Config

from gridfs.cli.local import LocalGrid
from gridfs.client import GridClient
from gridfs.common.config import GridConfig
from gridfs.common.errors import GridError
from gridfs.common.service import spawn_service
from gridfs.gateways.s3.admin import set_owner
from gridfs.gateways.s3.masterkey import MasterKeyError
from gridfs.gateways.s3.users import ACCOUNT, BUCKET, UserStore
from tests.conftest import run_grid_cli

AWS = Path(sys.executable).parent / "aws"


@pytest.fixture(scope="module")
def grid(s3_grid: LocalGrid) -> LocalGrid:
    return s3_grid


def s3_client(s3_endpoint: str, access_key: str | None = None, secret_key: str | None = None) -> Any:
    if access_key is None:
        return boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                            config=Config(signature_version=UNSIGNED))
    return boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", aws_access_key_id=access_key,
                        aws_secret_access_key=secret_key, config=Config(retries={"max_attempts": 1}))


def create_user(grid: LocalGrid, name: str) -> dict[str, str]:
    """An S3 user made as ``grid user create`` makes it (the command itself runs in a few tests: it is slow)."""
    user = UserStore(grid.config_path).create(name)
    return {"access_key": user.access_key, "secret_key": user.secret_key}


def stored_entries(grid: LocalGrid) -> dict[str, bytes]:
    """The user store as a holder of the namespace secret reads it: every entry's raw bytes."""
    with GridClient(grid.config_path, account=ACCOUNT) as c:
        return {o.key: c.get(BUCKET, o.key) for o in c.iter_list(BUCKET) if not isinstance(o, str)}


def refused_code(call: Any) -> str:
    with pytest.raises(botocore.exceptions.ClientError) as e:
        call()
    return e.value.response["Error"]["Code"]


def wrong_key_file(tmp_path: Path, mode: int = 0o600) -> Path:
    path = tmp_path / f"other-{secrets.token_hex(3)}.key"
    path.write_text(secrets.token_bytes(32).hex() + "\n")
    path.chmod(mode)
    return path


def test_the_master_key_is_a_file_of_its_own(grid: LocalGrid) -> None:
    cfg = GridConfig.load(grid.config_path)
    key_file = Path(cfg.extra["s3"]["master_key_file"])
    assert key_file.is_file() and key_file.parent == grid.data
    assert key_file.stat().st_mode & 0o777 == 0o600
    key = key_file.read_text().strip()
    assert len(bytes.fromhex(key)) == 32 and key not in grid.config_path.read_text()
    assert key != cfg.secret


def test_the_user_store_holds_no_clear_secret(grid: LocalGrid, s3_endpoint: str) -> None:
    user = json.loads(run_grid_cli(grid.config_path, "user", "create", "sealed", "--json").stdout)
    entries = stored_entries(grid)
    raw = entries[user["access_key"]]
    assert user["secret_key"].encode() not in raw
    assert "secret_key" not in json.loads(raw)
    on_disk = [p for p in grid.data.glob("node*/vol*/**/*") if p.is_file() and user["secret_key"].encode()
               in p.read_bytes()]
    assert on_disk == []
    s3 = s3_client(s3_endpoint, user["access_key"], user["secret_key"])  # and the key works
    s3.create_bucket(Bucket="sealed-bucket")
    assert s3.list_buckets()["Buckets"][0]["Name"] == "sealed-bucket"


def test_entries_stored_in_clear_are_sealed_on_first_use(grid: LocalGrid, s3_endpoint: str) -> None:
    # What a gateway before sealing wrote: the whole user in clear.
    old = {"name": "legacy", "access_key": "GK" + secrets.token_hex(9).upper(), "secret_key": secrets.token_urlsafe(30),
           "created": time.time()}
    with GridClient(grid.config_path, account=ACCOUNT) as c:
        c.put(BUCKET, old["access_key"], json.dumps(old).encode())
    s3 = s3_client(s3_endpoint, old["access_key"], old["secret_key"])
    assert s3.list_buckets()["Buckets"] == []  # the old key still works...
    raw = stored_entries(grid)[old["access_key"]]
    assert old["secret_key"].encode() not in raw  # ...and its entry is sealed now
    assert refused_code(lambda: s3_client(s3_endpoint, old["access_key"], "x" * 40).list_buckets()) \
        == "SignatureDoesNotMatch"
    assert s3.list_buckets()["Buckets"] == []


def test_a_wrong_admin_credential_is_refused(grid: LocalGrid, tmp_path: Path) -> None:
    with GridClient(grid.config_path) as c:
        c.create_bucket("ops-only")
    before = stored_entries(grid)
    for key_file in (wrong_key_file(tmp_path), tmp_path / "missing.key", wrong_key_file(tmp_path, 0o644)):
        for attempt in (lambda: UserStore(grid.config_path, master_key_file=key_file).create("intruder"),  # noqa: B023
                        lambda: UserStore(grid.config_path, master_key_file=key_file).list(),  # noqa: B023
                        lambda: UserStore(grid.config_path, master_key_file=key_file).delete("sealed"),  # noqa: B023
                        lambda: set_owner(grid.config_path, "ops-only", "sealed", key_file)):  # noqa: B023
            with pytest.raises(MasterKeyError, match="master key"):
                attempt()
    proc = run_grid_cli(grid.config_path, "user", "--master-key", str(wrong_key_file(tmp_path)), "create", "intruder",
                        check=False)
    assert proc.returncode == 1 and b"not this grid's" in proc.stderr, proc.stderr
    assert stored_entries(grid) == before  # nothing made, deleted or sealed again
    with GridClient(grid.config_path) as c:
        assert "s3.owner" not in c.bucket_info("ops-only").properties


def test_bucket_ownership_changes_with_the_admin_credential(grid: LocalGrid, s3_endpoint: str) -> None:
    with GridClient(grid.config_path) as c:
        c.create_bucket("handed-over")
        c.put("handed-over", "report.csv", b"a,b\n")
    carol, dave = create_user(grid, "carol"), create_user(grid, "dave")
    as_carol = s3_client(s3_endpoint, carol["access_key"], carol["secret_key"])
    as_dave = s3_client(s3_endpoint, dave["access_key"], dave["secret_key"])
    anon = s3_client(s3_endpoint)
    assert refused_code(lambda: as_carol.get_object(Bucket="handed-over", Key="report.csv")) == "AccessDenied"
    with pytest.raises(GridError, match="no S3 user"):
        set_owner(grid.config_path, "handed-over", "nobody-here")
    run_grid_cli(grid.config_path, "s3", "chown", "handed-over", "carol")
    assert as_carol.get_object(Bucket="handed-over", Key="report.csv")["Body"].read() == b"a,b\n"
    assert refused_code(lambda: as_dave.get_object(Bucket="handed-over", Key="report.csv")) == "AccessDenied"
    assert refused_code(lambda: anon.get_object(Bucket="handed-over", Key="report.csv")) == "AccessDenied"
    assert set_owner(grid.config_path, "handed-over", "") == "carol"  # back to nobody
    assert refused_code(lambda: as_carol.get_object(Bucket="handed-over", Key="report.csv")) == "AccessDenied"


def test_an_owner_set_with_the_namespace_secret_alone_does_not_count(grid: LocalGrid, s3_endpoint: str) -> None:
    frank, gina = create_user(grid, "frank"), create_user(grid, "gina")
    as_frank = s3_client(s3_endpoint, frank["access_key"], frank["secret_key"])
    as_gina = s3_client(s3_endpoint, gina["access_key"], gina["secret_key"])
    with GridClient(grid.config_path) as c:  # what a grid:// client host can do
        c.create_bucket("forged", properties={"s3.owner": "frank"})
        c.put("forged", "k", b"v")
        c.create_bucket("forged-seal", properties={"s3.owner": "frank", "s3.owner-seal": "0" * 64})
    for name in ("forged", "forged-seal"):
        assert refused_code(lambda: as_frank.get_object(Bucket=name, Key="k")) == "AccessDenied"  # noqa: B023
        assert refused_code(lambda: as_frank.put_object(Bucket=name, Key="k", Body=b"x")) == "AccessDenied"  # noqa: B023
    assert [b["Name"] for b in as_frank.list_buckets()["Buckets"]] == []
    # Frank's own bucket handed to Gina behind the gateway's back (the seal kept): neither may use it now.
    as_frank.create_bucket(Bucket="franks")
    as_frank.put_object(Bucket="franks", Key="k", Body=b"frank's")
    with GridClient(grid.config_path) as c:
        props = c.bucket_info("franks").properties
        c.set_bucket_properties("franks", {**props, "s3.owner": "gina"})
    assert refused_code(lambda: as_gina.get_object(Bucket="franks", Key="k")) == "AccessDenied"
    assert refused_code(lambda: as_gina.list_objects_v2(Bucket="franks")) == "AccessDenied"
    assert refused_code(lambda: as_gina.put_object(Bucket="franks", Key="g", Body=b"g")) == "AccessDenied"
    assert "franks" not in [b["Name"] for b in as_frank.list_buckets()["Buckets"]]
    assert "franks" not in [b["Name"] for b in as_gina.list_buckets()["Buckets"]]
    set_owner(grid.config_path, "franks", "frank")  # the admin credential mends it
    assert as_frank.get_object(Bucket="franks", Key="k")["Body"].read() == b"frank's"


def test_owners_recorded_before_seals_are_sealed_once(grid: LocalGrid, s3_endpoint: str) -> None:
    helen = create_user(grid, "helen")
    as_helen = s3_client(s3_endpoint, helen["access_key"], helen["secret_key"])
    key_file = Path(GridConfig.load(grid.config_path).extra["s3"]["master_key_file"])
    done = key_file.with_name(key_file.name + ".owners-sealed")
    assert done.exists()  # the gateway's first use sealed the owners of the day (there were none)
    with GridClient(grid.config_path) as c:  # a bucket an S3 gateway before seals made for Helen
        c.create_bucket("from-before", properties={"s3.owner": "helen"})
        c.put("from-before", "k", b"old")
    assert refused_code(lambda: as_helen.get_object(Bucket="from-before", Key="k")) == "AccessDenied"
    done.unlink()  # as on a grid upgraded from before seals: the first admin command or gateway seals them
    UserStore(grid.config_path).list()
    assert done.exists()
    assert as_helen.get_object(Bucket="from-before", Key="k")["Body"].read() == b"old"


def test_bucket_acls_recorded_before_seals_are_sealed_once(grid: LocalGrid, s3_endpoint: str) -> None:
    """A public-read bucket ACL set by a gateway from before seals (gridfs/gateways/s3/sealed.py) stays in force
    after the upgrade: the first gateway or admin command with the master key seals it, once."""
    from botocore import UNSIGNED
    from botocore.config import Config

    from gridfs.gateways.s3 import grants
    from gridfs.gateways.s3.admin import set_owner

    create_user(grid, "ivan")
    anon = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                        config=Config(signature_version=UNSIGNED))
    key_file = Path(GridConfig.load(grid.config_path).extra["s3"]["master_key_file"])
    done = key_file.with_name(key_file.name + ".props-sealed")
    assert done.exists()  # the gateway's first use sealed the ACLs and policies of the day
    with GridClient(grid.config_path) as c:  # as a gateway from before seals left it
        c.create_bucket("public-before", properties={"s3.acl": grants.dump(grants.canned("public-read", "ivan"))})
        c.put("public-before", "k", b"old")
    set_owner(grid.config_path, "public-before", "ivan")
    assert refused_code(lambda: anon.list_objects_v2(Bucket="public-before")) == "AccessDenied"  # unsealed
    done.unlink()  # as on a grid upgraded from before seals
    UserStore(grid.config_path).list()
    assert done.exists()
    assert [o["Key"] for o in anon.list_objects_v2(Bucket="public-before")["Contents"]] == ["k"]


def test_object_acls_recorded_before_seals_are_sealed_once(grid: LocalGrid, s3_endpoint: str) -> None:
    """A public-read object ACL (and the object's owner) set by a gateway from before object seals stays in force
    after the upgrade: the first gateway or admin command with the master key seals every version's, once."""
    from botocore import UNSIGNED
    from botocore.config import Config

    from gridfs.gateways.s3 import grants
    from gridfs.gateways.s3.admin import set_owner

    user = create_user(grid, "judy")
    judy = s3_client(s3_endpoint, user["access_key"], user["secret_key"])
    anon = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                        config=Config(signature_version=UNSIGNED))
    key_file = Path(GridConfig.load(grid.config_path).extra["s3"]["master_key_file"])
    done = key_file.with_name(key_file.name + ".object-props-sealed")
    assert done.exists()
    with GridClient(grid.config_path) as c:  # as a gateway from before object seals left them
        c.create_bucket("objects-before")
        c.set_versioning("objects-before", "enabled")
        public = {"s3.owner": "judy", "s3.acl": grants.dump(grants.canned("public-read", "judy"))}
        old = c.put("objects-before", "k", b"old", properties=public)
        c.put("objects-before", "k", b"new", properties=public)
    set_owner(grid.config_path, "objects-before", "judy")
    assert refused_code(lambda: anon.get_object(Bucket="objects-before", Key="k")) == "AccessDenied"  # unsealed
    done.unlink()  # as on a grid upgraded from before object seals
    UserStore(grid.config_path).list()
    assert done.exists()
    assert anon.get_object(Bucket="objects-before", Key="k")["Body"].read() == b"new"
    assert anon.get_object(Bucket="objects-before", Key="k", VersionId=str(old.version))["Body"].read() == b"old"
    assert judy.get_object_acl(Bucket="objects-before", Key="k")["Owner"]["ID"] == "judy"


def test_a_gateway_with_another_master_key_opens_no_user(grid: LocalGrid, tmp_path: Path) -> None:
    user = create_user(grid, "erin")
    cfg = GridConfig.load(grid.config_path)  # its grid.toml names no key file: it makes one beside it, not the grid's
    cfg.extra["s3"] = {k: v for k, v in cfg.extra["s3"].items() if k != "master_key_file"}
    cfg.save(tmp_path / "grid.toml")
    before = stored_entries(grid)
    svc = spawn_service("gridfs.gateways.s3", ["--config", str(tmp_path / "grid.toml"), "--workers", "1"], tmp_path,
                        "s3")
    try:
        s3 = s3_client(svc.url, user["access_key"], user["secret_key"])
        with pytest.raises(botocore.exceptions.ClientError) as e:
            s3.list_buckets()
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    finally:
        svc.stop()
    assert stored_entries(grid) == before
    assert "not this grid's" in svc.log_path.read_text()
    assert (tmp_path / "master.key").stat().st_mode & 0o777 == 0o600


def test_an_s3_client_needs_only_its_access_key_and_secret(grid: LocalGrid, s3_endpoint: str, tmp_path: Path) -> None:
    user = create_user(grid, "remote")
    home = tmp_path / "client-home"
    home.mkdir()
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "AWS_ACCESS_KEY_ID": user["access_key"],
           "AWS_SECRET_ACCESS_KEY": user["secret_key"], "AWS_DEFAULT_REGION": "us-east-1"}
    script = ("import boto3, sys; s3 = boto3.client('s3', endpoint_url=sys.argv[1]); "
              "s3.create_bucket(Bucket='remote-data'); s3.put_object(Bucket='remote-data', Key='k', Body=b'v'); "
              "print(s3.get_object(Bucket='remote-data', Key='k')['Body'].read().decode())")
    # A host with no grid.toml, no GRID_CONFIG, no master key: boto3 and the aws cli alone.
    boto = subprocess.run([sys.executable, "-c", script, s3_endpoint], env=env, cwd=home, capture_output=True,
                          text=True)
    assert boto.returncode == 0 and boto.stdout.strip() == "v", boto.stderr
    cli = subprocess.run([str(AWS), "--endpoint-url", s3_endpoint, "s3", "ls", "s3://remote-data"], env=env, cwd=home,
                         capture_output=True, text=True)
    assert cli.returncode == 0 and " k\n" in cli.stdout, cli.stderr
    assert not any(home.rglob("grid.toml")) and not any(home.rglob("*.key"))
    # Whereas the namespace secret alone does not make an S3 user.
    only_toml = tmp_path / "client"
    only_toml.mkdir()
    cfg = GridConfig.load(grid.config_path)
    cfg.extra["s3"] = {"url": s3_endpoint}
    cfg.save(only_toml / "grid.toml")
    with pytest.raises(MasterKeyError, match="no master key"):
        UserStore(only_toml / "grid.toml").create("sneaky")
