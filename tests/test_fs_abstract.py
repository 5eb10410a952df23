"""fsspec's own reusable test suites, run against a live grid through grid://."""

from __future__ import annotations

import posixpath
import uuid

import fsspec.tests.abstract as abstract
import pytest

from gridfs.cli.local import LocalGrid
from gridfs.fs import GridFileSystem

BUCKET = "fsspec-abstract"


class GridFixtures(abstract.AbstractFixtures):
    @pytest.fixture
    def fs(self, local_grid: LocalGrid) -> GridFileSystem:
        fs = GridFileSystem(config=str(local_grid.config_path), skip_instance_cache=True)
        fs.makedirs(BUCKET, exist_ok=True)
        return fs

    @pytest.fixture
    def fs_path(self) -> str:
        return f"{BUCKET}/{uuid.uuid4().hex[:12]}"

    @pytest.fixture
    def fs_join(self):  # type: ignore[no-untyped-def]
        return posixpath.join

    @pytest.fixture
    def supports_empty_directories(self) -> bool:
        return False  # directories are key prefixes, as in S3


class TestGridCopy(abstract.AbstractCopyTests, GridFixtures):
    pass


class TestGridGet(abstract.AbstractGetTests, GridFixtures):
    pass


class TestGridPut(abstract.AbstractPutTests, GridFixtures):
    pass


class TestGridOpen(abstract.AbstractOpenTests, GridFixtures):
    pass


class TestGridPipe(abstract.AbstractPipeTests, GridFixtures):
    pass
