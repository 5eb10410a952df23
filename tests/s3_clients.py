"""Clients of a real local grid's S3 gateway for the object lock and lifecycle tests: boto3 as a named S3
user or anonymous, the aws cli, the ``grid`` command line, and the error code of a refused call."""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import pytest
import requests
from botocore import UNSIGNED
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from gridfs.cli.local import LocalGrid
from gridfs.gateways.s3.users import UserStore

BIN = Path(sys.executable).parent


@contextlib.contextmanager
def running_grid(folder: Path, **up: Any) -> Iterator[LocalGrid]:
    """A one-node grid with its S3 gateway (no WebHDFS), stopped at the end; ``up``: more of LocalGrid.up's
    arguments."""
    grid = LocalGrid(folder)
    grid.up(nodes=1, volumes=3, webhdfs_port=None, **up)
    try:
        yield grid
    finally:
        grid.down()


def s3_url(grid: LocalGrid) -> str:
    return grid.config().extra["s3"]["url"]


@functools.cache
def _keys(config: Path, name: str) -> tuple[str, str]:
    store = UserStore(config)
    user = next((u for u in store.list() if u.name == name), None) or store.create(name)
    return user.access_key, user.secret_key


def user_keys(grid: LocalGrid, name: str) -> tuple[str, str]:
    """The S3 user ``name``'s access key and secret (the user is made on first use)."""
    return _keys(grid.config_path, name)


def s3_client(grid: LocalGrid, name: str | None) -> Any:
    """boto3 as the S3 user ``name`` (made on first use), or anonymous for None."""
    if name is None:
        return boto3.client("s3", endpoint_url=s3_url(grid), region_name="us-east-1",
                            config=Config(signature_version=UNSIGNED))
    access, secret = user_keys(grid, name)
    return boto3.client("s3", endpoint_url=s3_url(grid), region_name="us-east-1", aws_access_key_id=access,
                        aws_secret_access_key=secret)


def refused(call: Callable[[], Any]) -> tuple[str, int]:
    """The S3 error code and HTTP status of a call that must fail."""
    with pytest.raises(botocore.exceptions.ClientError) as e:
        call()
    return e.value.response["Error"]["Code"], e.value.response["ResponseMetadata"]["HTTPStatusCode"]


def aws_cli(grid: LocalGrid, name: str, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    """The aws cli as the S3 user ``name``, with no configuration but this one."""
    access, secret = user_keys(grid, name)
    env = {**os.environ, "AWS_ACCESS_KEY_ID": access, "AWS_SECRET_ACCESS_KEY": secret,
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": str(tmp / "aws-config"),
           "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "none")}
    return subprocess.run([str(BIN / "aws"), "--endpoint-url", s3_url(grid), *args], env=env, capture_output=True,
                          text=True, timeout=120)


def grid_cli(grid: LocalGrid, *args: str) -> subprocess.CompletedProcess:
    """The ``grid`` command line of ``grid``, its exit code left to the caller."""
    return subprocess.run([sys.executable, "-m", "gridfs.cli.main", "--config", str(grid.config_path), *args],
                          capture_output=True, text=True, timeout=120)


def signed_put(grid: LocalGrid, name: str, path: str, body: bytes, **extra: str) -> requests.Response:
    """A PUT of ``body`` and ``extra`` headers as sent, signed for the S3 user ``name``, with its Content-MD5:
    for the requests boto3 would refuse to build."""
    access, secret = user_keys(grid, name)
    headers = {"Content-MD5": base64.b64encode(hashlib.md5(body).digest()).decode(),
               "x-amz-content-sha256": hashlib.sha256(body).hexdigest(), **extra}
    request = AWSRequest(method="PUT", url=s3_url(grid) + path, data=body, headers=headers)
    S3SigV4Auth(Credentials(access, secret), "s3", "us-east-1").add_auth(request)
    return requests.put(request.url, data=body, headers=dict(request.headers.items()), timeout=30)
