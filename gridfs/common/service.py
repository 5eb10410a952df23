"""Starting service processes and the conventions every service follows.

A service binds (port 0: any free port), then announces its URL by writing it to its
``--ready-file`` atomically; :func:`spawn_service` waits for that file (:func:`launch_service`
starts one without waiting). Both ``grid up``
and the tests start services this way, so they test what users run.

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from gridfs.common.config import GridConfig
from gridfs.common.errors import ServiceUnavailable
from gridfs.common.http import SECRET_HEADER
from gridfs.common.names import check_service_id, new_service_id

_log = logging.getLogger("gridfs.service")


@dataclass
class SpawnedService:
    process: subprocess.Popen
    url: str
    log_path: Path

    @property
    def addr(self) -> str:
        return self.url.removeprefix("http://")

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class Launched:
    """A service process started but maybe not ready yet: :meth:`wait` for its URL."""

    process: subprocess.Popen
    name: str
    ready: Path
    log_path: Path
    deadline: float

    def wait(self) -> SpawnedService:
        while time.monotonic() < self.deadline:
            if self.ready.exists():
                return SpawnedService(self.process, self.ready.read_text().strip(), self.log_path)
            if self.process.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-2000:]
                raise ServiceUnavailable(f"{self.name} exited with {self.process.returncode} at start-up:\n{tail}")
            time.sleep(0.02)
        self.process.kill()
        raise ServiceUnavailable(f"{self.name} did not become ready within the time given (log: {self.log_path})")


def launch_service(
    module: str,
    args: list[str],
    run_dir: str | os.PathLike,
    name: str,
    timeout: float = 30.0,
    env: dict[str, str] | None = None,
) -> Launched:
    """Start ``python -m MODULE ARGS --ready-file ...`` detached, without waiting: services that do not
    depend on each other start together (their imports are most of a start, and there are cores)."""
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    ready = run / f"{name}.url"
    ready.unlink(missing_ok=True)
    log_path = run / f"{name}.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", module, *args, "--ready-file", str(ready)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # survives the CLI that started it; not killed by its ^C
            env={**os.environ, **(env or {})},
        )
    return Launched(proc, name, ready, log_path, time.monotonic() + timeout)


def spawn_service(module: str, args: list[str], run_dir: str | os.PathLike, name: str,
                  **options: Any) -> SpawnedService:
    """Start ``python -m MODULE ARGS --ready-file ...`` detached, wait for its URL (``options``: the
    ``timeout`` and ``env`` of :func:`launch_service`)."""
    return launch_service(module, args, run_dir, name, **options).wait()


def load_or_create_service_id(folder: str | os.PathLike, kind: str) -> str:
    """The service id kept in ``folder/service.id``, written (atomically) at first start.

    It lives with the data (a volume, a database folder), so the service keeps its
    identity whatever address it listens on next time.
    """
    path = Path(folder) / "service.id"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return check_service_id(path.read_text().strip())
    except FileNotFoundError:
        pass
    service_id = new_service_id(kind)
    tmp = path.with_name(f".service.id.{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(service_id)
        f.flush()
        os.fsync(f.fileno())
    try:
        # link, not rename: of two processes started at once on one folder, the second must
        # take the first one's id rather than replace it under it.
        os.link(tmp, path)
    except FileExistsError:
        return check_service_id(path.read_text().strip())
    finally:
        os.unlink(tmp)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return service_id


async def send_heartbeats(
    cfg: GridConfig, payload: Callable[[], dict], stop: asyncio.Event, interval: float = 1.0
) -> None:
    """POST ``payload()`` to the conscience every ``interval`` seconds until ``stop``; an
    unreachable conscience is retried at the next beat."""
    import aiohttp

    url = cfg.conscience_url.rstrip("/") + "/v1/heartbeat"
    async with aiohttp.ClientSession(headers={SECRET_HEADER: cfg.secret}) as session:
        while not stop.is_set():
            try:
                async with session.post(url, json=payload(), timeout=aiohttp.ClientTimeout(total=2)) as resp:
                    if resp.status >= 400:
                        _log.warning("conscience refused heartbeat: %s %s", resp.status, await resp.text())
            except (aiohttp.ClientError, TimeoutError) as exc:
                _log.debug("conscience unreachable: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)


def write_ready_file(path: str | os.PathLike | None, url: str) -> None:
    if not path:
        return
    tmp = Path(f"{path}.tmp")
    tmp.write_text(url)
    os.replace(tmp, path)


def base_arg_parser(description: str) -> argparse.ArgumentParser:
    """Options every service takes."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--config", required=True, help="path of grid.toml")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port (0: any free port)")
    p.add_argument("--ready-file", help="where to write the service URL once listening")
    p.add_argument("--log-level", default="INFO")
    return p


def setup_logging(name: str, level: str) -> logging.Logger:
    logging.basicConfig(
        level=level.upper(),
        format=f"%(asctime)s {name}[%(process)d] %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    return logging.getLogger(name)


def install_stop_signals(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


def _die_with_parent() -> None:
    """Linux: a worker gets SIGTERM when the parent dies, even by SIGKILL, so none lingers on the port."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def run_workers(workers: int, serve: Callable[[], None], started: Callable[[int], None]) -> None:
    """Fork ``workers`` processes that each run ``serve()`` (on a socket they inherit); return once all exit.

    ``started(n)`` runs in the parent once they are forked (to announce the service);
    SIGTERM or SIGINT to the parent stops them all.
    """
    children = []
    for _ in range(max(1, workers)):
        pid = os.fork()
        if pid == 0:
            _die_with_parent()
            try:
                serve()
            finally:
                os._exit(0)
        children.append(pid)
    started(len(children))

    def stop(*_: object) -> None:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for pid in children:
        while True:
            try:
                os.waitpid(pid, 0)
                break
            except ChildProcessError:
                break
            except InterruptedError:
                continue


def bind(host: str, port: int) -> tuple[socket.socket, str]:
    """Bind before building the app, so a service knows its own URL (port 0: any free port)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock, f"http://{host}:{sock.getsockname()[1]}"


def bind_shared(host: str, port: int, any_port_if_busy: bool = False) -> tuple[socket.socket, str]:
    """A listening socket for forked workers to share (``any_port_if_busy``: a free port when ``port`` is taken)."""
    try:
        sock, url = bind(host, port)
    except OSError as exc:
        if not any_port_if_busy:
            raise
        _log.warning("port %d is busy (%s): listening on a free port instead", port, exc.strerror)
        sock, url = bind(host, 0)
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock, url


async def serve_app(
    app: web.Application,
    sock: socket.socket,
    url: str,
    ready_file: str | None,
    background: Callable[[asyncio.Event], Awaitable[None]] | None = None,
) -> None:
    """Serve ``app`` on ``sock`` until SIGTERM/SIGINT; announce ``url`` once listening.

    ``background(stop)`` runs beside the server (heartbeats, an agent loop) and must
    return once ``stop`` is set.
    """
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    stop = asyncio.Event()
    install_stop_signals(asyncio.get_running_loop(), stop)
    task = asyncio.create_task(background(stop)) if background else None
    write_ready_file(ready_file, url)
    await stop.wait()
    if task is not None:
        await task
    await runner.cleanup()
