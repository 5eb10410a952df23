"""The command line: DistCp's single-dash options, also accepted with two dashes.

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field

MiB = 1024 * 1024


@dataclass
class Options:
    sources: list[str]
    destination: str
    update: bool = False
    overwrite: bool = False
    delete: bool = False
    max_delete: int = 1000
    preserve: bool = False
    atomic: bool = False
    dry_run: bool = False
    verify: bool = False
    bandwidth: float = 0.0  # MB/s per rank; 0 means unlimited
    policy: str | None = None
    filters: list[re.Pattern[str]] = field(default_factory=list)
    log: str | None = None
    manifest: str | None = None
    no_create: bool = False
    split_size: int = 256 * MiB
    part_size: int = 128 * MiB
    threads: int = 8
    checkpoint: str | None = None
    config: str | None = None
    quiet: bool = False


def _flag(parser: argparse.ArgumentParser, name: str, help: str, **kwargs: object) -> None:
    parser.add_argument(f"-{name}", f"--{name}", dest=name.replace("-", "_"), help=help, **kwargs)  # type: ignore[arg-type]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="grid-distcp",
        allow_abbrev=False,
        description="Copy trees into the grid (or out of it) with MPI ranks. "
        "Run as `mpirun -n N grid-distcp SRC... DST`, or alone as one rank.",
    )
    p.add_argument("paths", nargs="+", metavar="SRC... DST", help="sources then the destination")
    for name, text in (
        ("update", "skip files whose size and mtime match the destination"),
        ("overwrite", "copy every file even when the destination has it"),
        ("delete", "remove destination objects that are not in the source"),
        ("atomic", "copy under a temporary prefix, then rename into place"),
        ("dry-run", "print what would be done and change nothing"),
        ("verify", "with -update, also compare checksums (reads the source)"),
        ("no-create", "fail when the destination bucket does not exist"),
        ("quiet", "no live progress bar"),
    ):
        _flag(p, name, text, action="store_true")
    p.add_argument("-p", "--preserve", dest="preserve", action="store_true",
                   help="keep mtime, mode, owner and group as object metadata")
    _flag(p, "max-delete", "refuse -delete when more objects would go (default 1000)", type=int, default=1000)
    _flag(p, "bandwidth", "limit each rank to this many MB/s", type=float, default=0.0)
    _flag(p, "policy", "storage policy of the copies (default: the bucket's, or by size)")
    _flag(p, "filters", "file of regular expressions; matching source paths are excluded")
    _flag(p, "log", "append one JSON line per file (COPY, SKIP, FAIL) to this file")
    _flag(p, "manifest", "write the source listing (path, size, mtime, checksum) as JSON lines to this file")
    _flag(p, "split-size", "split files at least this many MiB into parts (default 256)", type=int, default=256)
    _flag(p, "part-size", "target part size in MiB, rounded to whole stripes (default 128)", type=int, default=128)
    _flag(p, "threads", "concurrent small-file copies per rank (default 8; into the grid, small files go in "
          "batches instead)", type=int, default=8)
    _flag(p, "checkpoint", "checkpoint folder (default ~/.cache/grid-distcp/JOB)")
    _flag(p, "config", "grid.toml of the grid (default GRID_CONFIG or the default location)")
    return p


def parse(argv: list[str] | None = None) -> Options:
    parser = build_parser()
    ns = parser.parse_args(argv)
    if len(ns.paths) < 2:
        parser.error("give at least one source and a destination")
    if ns.update and ns.overwrite:
        parser.error("-update and -overwrite exclude each other")
    if ns.verify and not ns.update:
        parser.error("-verify goes with -update")
    if ns.split_size <= 0 or ns.part_size <= 0 or ns.threads <= 0 or ns.max_delete < 0 or ns.bandwidth < 0:
        parser.error("sizes, -threads, -max-delete and -bandwidth must be positive")
    filters: list[re.Pattern[str]] = []
    if ns.filters:
        try:
            with open(ns.filters, encoding="utf-8") as f:
                filters = [re.compile(line.strip()) for line in f if line.strip() and not line.startswith("#")]
        except OSError as exc:
            parser.error(f"cannot read -filters file: {exc}")
        except re.error as exc:
            parser.error(f"bad pattern in -filters file: {exc}")
    return Options(
        sources=ns.paths[:-1], destination=ns.paths[-1], update=ns.update, overwrite=ns.overwrite,
        delete=ns.delete, max_delete=ns.max_delete, preserve=ns.preserve, atomic=ns.atomic, dry_run=ns.dry_run,
        verify=ns.verify, bandwidth=ns.bandwidth, policy=ns.policy, filters=filters, log=ns.log, manifest=ns.manifest,
        no_create=ns.no_create, split_size=ns.split_size * MiB, part_size=ns.part_size * MiB, threads=ns.threads,
        checkpoint=ns.checkpoint, config=ns.config, quiet=ns.quiet,
    )
