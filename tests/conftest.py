"""Fixtures shared by the test suite: real service processes on 127.0.0.1."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from gridfs.common.config import GridConfig


@pytest.fixture
def grid_config(tmp_path: Path) -> GridConfig:
    """A namespace config with a fresh secret; services are added by each test."""
    cfg = GridConfig(secret=secrets.token_hex(16))
    cfg.save(tmp_path / "grid.toml")
    return cfg
