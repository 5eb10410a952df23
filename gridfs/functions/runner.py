"""Run one call of a user function under its limits: a subprocess, killed when past its time limit.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

from gridfs.functions.registry import FunctionSpec

STDERR_KEPT = 8192  # bytes of a call's stderr kept in its log entry (the end: where the traceback is)


@dataclass
class CallResult:
    ok: bool
    error: str = ""
    stderr: str = ""
    seconds: float = 0.0
    node: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_call(spec: FunctionSpec, event: dict[str, Any], config: str) -> CallResult:
    """One call in a fresh interpreter (``gridfs.functions.sandbox``), its own session so that a kill
    reaches whatever it started too. A fresh process per call costs an interpreter start (about
    0.1 s, plus the function's imports) and buys isolation: nothing one call leaks reaches the next."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gridfs.functions.sandbox", config, str(spec.memory_mb)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        env={**os.environ, "MALLOC_ARENA_MAX": "2"},  # glibc's per-thread arenas eat address space, not memory
    )
    job = json.dumps({"spec": spec.to_dict(), "event": event}).encode()
    try:
        out, err = proc.communicate(job, timeout=spec.timeout)
    except subprocess.TimeoutExpired:
        _kill_session(proc)
        out, err = proc.communicate()
        return CallResult(False, f"Timeout: stopped after its time limit of {spec.timeout:g} s",
                          _tail(err), time.monotonic() - started)
    seconds = time.monotonic() - started
    try:
        outcome = json.loads(out.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        # No outcome line: killed by a signal (the kernel's OOM killer, a segfault in an extension).
        how = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit status {proc.returncode}"
        return CallResult(False, f"Crashed: the call's process ended with {how}", _tail(err), seconds)
    return CallResult(bool(outcome.get("ok")), str(outcome.get("error") or ""), _tail(err), seconds)


def _kill_session(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def _tail(data: bytes) -> str:
    return data[-STDERR_KEPT:].decode(errors="replace")
