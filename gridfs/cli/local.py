"""The embedded local grid: every service as a background process on 127.0.0.1.

Layout under the data folder::

    grid.toml               endpoints, secret, and the [local] process table (mode 0600)
    master.key              the S3 gateway's master key (mode 0600)
    console.token           the web console's login token (mode 0600)
    run/                    ready files and logs of each service
    meta0/ meta1/ meta2-N/  the directory services' databases (prefix table, container homes, containers)
    rdir/                   the reverse index per volume (and rebuild/drain job records, scrub findings)
    events/ heal/           the event agent's and the rebuilder's state
    lifecycle/              the lifecycle worker's action log and status
    nodeN/volV/             one storage server (rawx) each
    nodeN/functions/        the node's user-function runner (its service id)

Each node gets its own host word in its services' locations
(``site1.rack1.nodeN.volV``), so placement spreads chunks over nodes first.

All of them share one disk. Each storage server therefore gets a capacity of its own (``--max-bytes``,
``LOCAL_VOLUME_BYTES`` unless ``grid up --volume-size`` says otherwise), and each directory service
counts as much of the disk (``--capacity``): judged by the shared disk's used fraction, every volume
would turn "full" at the same moment when anything else on the machine filled the disk past 90 %.

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gridfs.common.config import GridConfig, SizeRule
from gridfs.common.errors import GridError, ServiceUnavailable
from gridfs.common.service import Launched, launch_service
from gridfs.conscience.client import ConscienceClient

LOCAL_VOLUME_BYTES = 16 << 30  # a local volume's capacity unless grid up says otherwise
SMALL_OBJECT_LIMIT = 1024 * 1024  # objects up to this size get copies instead of EC


@dataclass
class LocalService:
    name: str
    type: str  # conscience | meta0 | meta1 | meta2 | rdir | events | heal | lifecycle | functions | rawx | s3 | webhdfs
    #          | console
    module: str
    args: list[str]
    pid: int = 0
    url: str = ""
    location: str = ""

    @property
    def addr(self) -> str:
        return self.url.removeprefix("http://")


def default_policy_for(volumes: int) -> str:
    """The widest built-in policy that the grid can place on distinct volumes, computed by
    ISA-L when it loads (it encoded 6+3 at 10.8 GB/s here, zfec at 0.6 GB/s)."""
    from gridfs.coding.isal import load_isal

    try:
        load_isal()
        suffix = "-ISAL"
    except GridError:
        suffix = ""
    for name, width in (("EC63", 9), ("EC42", 6)):
        if volumes >= width:
            return name + suffix
    for name, width in (("THREECOPIES", 3), ("TWOCOPIES", 2)):
        if volumes >= width:
            return name
    return "SINGLE"


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _is_ours(pid: int, module: str) -> bool:
    """Guard against signalling an unrelated process that reused a recorded pid."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return module.encode() in f.read()
    except OSError:
        return False


class LocalGrid:
    def __init__(self, data: str | os.PathLike) -> None:
        self.data = Path(data).resolve()
        self.config_path = self.data / "grid.toml"
        self.run_dir = self.data / "run"
        # Services of an earlier run of this grid: restarted on the same ports (grid.toml and
        # clients hold the conscience's and gateways' URLs), but for storage servers (see _start).
        self._previous: dict[str, LocalService] = {}

    # -- state in grid.toml -----------------------------------------------------

    def config(self) -> GridConfig:
        return GridConfig.load(self.config_path)

    def services(self, cfg: GridConfig | None = None) -> list[LocalService]:
        cfg = cfg or self.config()
        return [LocalService(**s) for s in cfg.extra.get("local", {}).get("services", [])]

    def _record(self, cfg: GridConfig, services: list[LocalService]) -> None:
        local = dict(cfg.extra.get("local", {}))
        local["data"] = str(self.data)
        local["services"] = [asdict(s) for s in services]
        cfg.extra["local"] = local
        cfg.save(self.config_path)

    def is_running(self) -> bool:
        if not self.config_path.exists():
            return False
        return any(pid_alive(s.pid) for s in self.services())

    # -- start and stop -----------------------------------------------------------

    def _launch(self, svc: LocalService, port: str | None = None) -> Launched:
        """Start ``svc`` on ``port`` ("0": any free one) if given, else on its port of the earlier run,
        except storage servers: chunk URLs name their service ids, so they take any free port."""
        args = list(svc.args)
        before = self._previous.get(svc.name)
        if port is None and before is not None and svc.type != "rawx":
            port = _port_of(before.url)
        if port:
            args += ["--port", port]  # the last --port wins
        return launch_service(svc.module, ["--config", str(self.config_path), *args], self.run_dir, svc.name)

    def _start_many(self, batch: list[LocalService], port: str | None = None) -> list[LocalService]:
        """Start services that do not need each other together (a start is mostly imports: the cores
        share them), and wait until every one is ready; if one fails, none of the batch is left running."""
        launched = [(svc, self._launch(svc, port)) for svc in batch]
        try:
            for svc, pending in launched:
                spawned = pending.wait()
                svc.pid, svc.url = spawned.process.pid, spawned.url
        except BaseException:
            for _, pending in launched:
                if pending.process.poll() is None:
                    pending.process.kill()
                    pending.process.wait()
            raise
        return batch

    def _start(self, svc: LocalService, port: str | None = None) -> LocalService:
        return self._start_many([svc], port)[0]

    def up(self, nodes: int = 3, volumes: int = 3, policy: str | None = None, wait: float = 30.0,
           s3_port: int | None = 0, s3_workers: int = 2, meta2: int = 1,
           webhdfs_port: int | None = 0, settings: dict[str, dict[str, Any]] | None = None,
           lifecycle: bool = False, functions: bool = False, console_port: int | None = None,
           volume_bytes: int = LOCAL_VOLUME_BYTES, rawx_args: list[str] | None = None) -> GridConfig:
        """Start everything; ``s3_port`` (``webhdfs_port``) None starts no S3 (WebHDFS) gateway, 0 one on any
        free port; ``meta2`` container services (meta1 spreads new containers over them by score);
        ``settings``: grid.toml sections (``{"heal": {...}}``) merged in before any service starts;
        ``lifecycle``: run the lifecycle worker (``grid up`` does; test grids only when they ask);
        ``functions``: a user-function runner per node (the same); ``console_port``: the web console's port
        (0: any free one; ``grid up`` starts it, test grids only when they ask); ``volume_bytes``: the
        capacity of each storage server and directory service (see the module's docstring); ``rawx_args``:
        more arguments for every storage server, those of nodes added later too (``--buffered-writes``)."""
        if nodes < 1 or volumes < 1:
            raise GridError("a grid needs at least one node with one volume")
        if volume_bytes < 1 << 20:
            raise GridError(f"a volume of {volume_bytes} bytes is too small: give at least 1 MiB")
        if self.is_running():
            raise GridError(f"a grid is already running from {self.data} (grid down first)")
        self.data.mkdir(parents=True, exist_ok=True)
        cfg = GridConfig.load(self.config_path) if self.config_path.exists() else GridConfig()
        self._previous = {svc.name: svc for svc in self.services(cfg)}
        cfg.secret = cfg.secret or secrets.token_hex(32)
        for section, values in (settings or {}).items():
            cfg.extra[section] = {**cfg.extra.get(section, {}), **values}
        cfg.default_policy = policy or default_policy_for(nodes * volumes)
        cfg.extra["local"] = {**cfg.extra.get("local", {}), "volume_bytes": volume_bytes,
                              "rawx_args": list(rawx_args or [])}  # nodes added later get them too
        self._master_key(cfg)
        if console_port is not None:
            self._console_token(cfg)
        if not cfg.size_rules:
            small = "THREECOPIES" if nodes * volumes >= 3 else "SINGLE"
            cfg.size_rules = [SizeRule(SMALL_OBJECT_LIMIT, small)]
        cfg.save(self.config_path)
        services: list[LocalService] = []
        try:
            conscience = self._start(LocalService(
                "conscience", "conscience", "gridfs.conscience", ["--data", str(self.data / "conscience")]))
            services.append(conscience)
            cfg.conscience_url = conscience.url
            self._record(cfg, services)
            services += self._start_directory(cfg, meta2)
            cfg.directory_url = next(s.url for s in services if s.type == "meta0")
            self._record(cfg, services)
            # The reverse index, before the storage servers: their scrubbers report findings to it.
            services.append(self._start(LocalService("rdir", "rdir", "gridfs.rdir", [
                "--data", str(self.data / "rdir"), "--location", "site1.rack1.dir.rdir"])))
            self._record(cfg, services)
            rawx = [svc for n in range(1, nodes + 1) for svc in self._node_services(n, volumes, cfg=cfg)]
            named = {svc.name for svc in rawx}
            rawx += [LocalService(old.name, old.type, old.module, old.args, location=old.location)
                     for old in self._previous.values()  # nodes added to the earlier run come back too
                     if old.type == "rawx" and old.name not in named]
            services += self._start_many(rawx)
            self._record(cfg, services)
            # The event agent, the rebuilder (rebuilds a storage server silent past [heal] rebuild_grace)
            # and the gateways need nothing of each other.
            last = [LocalService("events", "events", "gridfs.events", ["--state", str(self.data / "events")]),
                    LocalService("heal", "heal", "gridfs.heal", ["--state", str(self.data / "heal")])]
            if functions or any(old.type == "functions" for old in self._previous.values()):
                last += [self._runner(n) for n in sorted({int(s.location.split(".")[2].removeprefix("node"))
                                                          for s in rawx})]
            if lifecycle:  # executes the buckets' lifecycle rules ([lifecycle] in grid.toml)
                last.append(LocalService("lifecycle", "lifecycle", "gridfs.lifecycle",
                                         ["--state", str(self.data / "lifecycle")]))
            if s3_port is not None:
                last.append(LocalService("s3", "s3", "gridfs.gateways.s3", [
                    "--port", str(s3_port), "--any-port-if-busy", "--workers", str(s3_workers)]))
            if webhdfs_port is not None:
                last.append(LocalService("webhdfs", "webhdfs", "gridfs.gateways.webhdfs", [
                    "--port", str(webhdfs_port), "--any-port-if-busy", "--workers", "1"]))
            if console_port is not None:  # reads every other service: started last, with the gateways
                last.append(LocalService("console", "console", "gridfs.console", ["--port", str(console_port)]))
            services += self._start_many(last)
            for svc in last:
                if svc.type == "s3":
                    cfg.extra["s3"] = {**cfg.extra.get("s3", {}), "url": svc.url}
                if svc.type == "webhdfs":
                    cfg.extra["webhdfs"] = {**cfg.extra.get("webhdfs", {}),
                                            "url": svc.url.replace("http://", "webhdfs://", 1)}
                if svc.type == "console":
                    cfg.extra["console"] = {**cfg.extra.get("console", {}), "url": svc.url}
            self._record(cfg, services)
            self.wait_registered(cfg, [s for s in services if s.type in ("rawx", "functions")], wait)
        except BaseException:
            self._stop_all(services)
            raise
        return cfg

    def _master_key(self, cfg: GridConfig) -> None:
        """The S3 gateway's master key, in a file of its own beside grid.toml (made once, mode 0600), named
        under ``[s3] master_key_file``: clients given grid.toml alone do not get it."""
        from gridfs.gateways.s3 import masterkey

        s3 = cfg.extra.setdefault("s3", {})
        path = masterkey.key_path(cfg) if s3.get(masterkey.SETTING) else self.data / masterkey.DEFAULT_NAME
        masterkey.create(path)
        s3[masterkey.SETTING] = str(path)

    def _console_token(self, cfg: GridConfig) -> None:
        """The web console's login token, in a file of its own beside grid.toml (made once, mode 0600), named
        under ``[console] token_file``: grid.toml is for services and clients, the token for a browser."""
        from gridfs.console import auth

        console = cfg.extra.setdefault("console", {})
        path = auth.token_path(cfg) if console.get(auth.SETTING) else self.data / auth.TOKEN_NAME
        auth.create_token(path)
        console[auth.SETTING] = str(path)

    def _start_directory(self, cfg: GridConfig, meta2: int) -> list[LocalService]:
        """meta1, the meta2 services (those of an earlier run too), then meta0, which fills its
        prefix table from the registered meta1 at first start."""
        from gridfs.directory.upgrade import upgrade_single_directory

        upgrade_single_directory(self.data / "directory", self.data / "meta1", self.data / "meta2-1",
                                 self.data / "events.cursor")
        names = ["meta1", *(f"meta2-{i}" for i in range(1, meta2 + 1))]
        names += [n for n, old in self._previous.items() if old.type == "meta2" and n not in names]

        def role(name: str) -> LocalService:
            kind = name.split("-")[0]
            return LocalService(name, kind, "gridfs.directory", [
                "--role", kind, "--data", str(self.data / name), "--location", f"site1.rack1.dir.{name}",
                "--capacity", str(self.volume_bytes(cfg))])

        started = self._start_many([role(name) for name in names])
        try:
            self.wait_registered(cfg, started, 30.0)
            return [*started, self._start(role("meta0"))]
        except BaseException:
            self._stop_all(started)
            raise

    def volume_bytes(self, cfg: GridConfig) -> int:
        """The capacity given to each storage server and directory service of this grid."""
        return int(cfg.extra.get("local", {}).get("volume_bytes", LOCAL_VOLUME_BYTES))

    def _node_services(self, n: int, volumes: int, rawx_args: list[str] | None = None,
                       cfg: GridConfig | None = None) -> list[LocalService]:
        """Node ``n``'s storage servers, one per volume (folders made, not started); ``rawx_args`` come
        last, so that a ``--max-bytes`` among them wins over the grid's volume size."""
        cfg = cfg or self.config()
        # The grid's own: its volume size and what grid up was given for every storage server.
        grid_args = ["--max-bytes", str(self.volume_bytes(cfg)), *cfg.extra.get("local", {}).get("rawx_args", [])]
        node = []
        for v in range(1, volumes + 1):
            vol = self.data / f"node{n}" / f"vol{v}"
            vol.mkdir(parents=True, exist_ok=True)
            location = f"site1.rack1.node{n}.vol{v}"
            svc = LocalService(
                f"rawx-node{n}-vol{v}", "rawx", "gridfs.storage",
                ["--volume", str(vol), "--location", location, *grid_args, *(rawx_args or [])], location=location,
            )
            node.append(svc)
        return node

    def _runner(self, n: int) -> LocalService:
        """Node ``n``'s user-function runner: it takes the events of objects whose first chunk is on the node."""
        location = f"site1.rack1.node{n}.functions"
        return LocalService(f"functions-node{n}", "functions", "gridfs.functions", [
            "--state", str(self.data / f"node{n}" / "functions"), "--location", location], location=location)

    def add_node(
        self, volumes: int = 3, wait: float = 10.0, rawx_args: list[str] | None = None
    ) -> list[LocalService]:
        """Start a new node's storage servers (and its function runner if the grid runs them); they take
        writes as soon as they register."""
        cfg = self.config()
        services = self.services(cfg)
        nodes = {s.location.split(".")[2] for s in services if s.type == "rawx"}
        n = max((int(x.removeprefix("node")) for x in nodes), default=0) + 1
        new = self._node_services(n, volumes, rawx_args, cfg)
        if any(s.type == "functions" for s in services):
            new.append(self._runner(n))
        started = self._start_many(new)
        self._record(cfg, services + started)
        self.wait_registered(cfg, started, wait)
        return started

    def wait_registered(self, cfg: GridConfig, expected: list[LocalService], timeout: float) -> None:
        """Wait until the conscience lists every expected service as writable (a function runner, which
        takes no writes, as up)."""
        client = ConscienceClient(cfg.conscience_url, cfg.secret)
        want = {s.addr for s in expected}
        deadline = time.monotonic() + timeout
        while True:
            live = {s["addr"] for s in client.services()
                    if s.get("score_put", 0) > 0 or (s["type"] == "functions" and s.get("up", True))}
            if want <= live:
                return
            if time.monotonic() > deadline:
                raise ServiceUnavailable(f"services not registered after {timeout} s: {sorted(want - live)}")
            time.sleep(0.1)

    def restart(self, name: str, same_port: bool = True) -> LocalService:
        """Start one recorded service again (after a crash or a kill) on the same data: on its
        port, or with ``same_port`` False on another one (a storage server moving, say)."""
        cfg = self.config()
        services = self.services(cfg)
        svc = next((s for s in services if s.name == name), None)
        if svc is None:
            raise GridError(f"no service named {name!r} in {self.config_path}")
        old = _port_of(svc.url)
        for _attempt in range(5):
            self._stop_all([svc])
            self._start(svc, port=old if same_port else "0")
            if same_port or _port_of(svc.url) != old:  # "any free port" may hand back the one just freed
                break
        self._record(cfg, services)
        return svc

    def remove(self, name: str) -> LocalService:
        """Stop one recorded service for good and drop it from the process table (a drained or
        rebuilt storage server being taken out of the grid). Its data folder is left in place."""
        cfg = self.config()
        services = self.services(cfg)
        svc = next((s for s in services if s.name == name), None)
        if svc is None:
            raise GridError(f"no service named {name!r} in {self.config_path}")
        self._stop_all([svc])
        self._record(cfg, [s for s in services if s.name != name])
        return svc

    def down(self, timeout: float = 10.0) -> int:
        if not self.config_path.exists():
            return 0
        services = self.services()
        stopped = self._stop_all(services)
        cfg = self.config()
        self._record(cfg, [LocalService(**{**asdict(s), "pid": 0}) for s in services])
        return stopped

    def _stop_all(self, services: list[LocalService], timeout: float = 10.0) -> int:
        live = [s for s in services if pid_alive(s.pid) and _is_ours(s.pid, s.module)]
        for s in reversed(live):  # storage servers first, conscience last
            os.kill(s.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for s in live:
            while pid_alive(s.pid) and time.monotonic() < deadline:
                _reap(s.pid)
                time.sleep(0.05)
            if pid_alive(s.pid):
                os.kill(s.pid, signal.SIGKILL)
            _reap(s.pid)
        return len(live)

    def status_rows(self) -> list[dict[str, Any]]:
        """The conscience's view, joined with the local pids."""
        cfg = self.config()
        pids = {s.addr: s for s in self.services(cfg)}
        rows = ConscienceClient(cfg.conscience_url, cfg.secret).services()
        for row in rows:
            local = pids.get(row["addr"])
            row["pid"] = local.pid if local else None
            row["name"] = local.name if local else ""
        # Services that do not register with the conscience (itself, the directory, the event agent,
        # the S3 gateway): up means their process is alive.
        registered = {row["addr"] for row in rows}
        for svc in self.services(cfg):
            if svc.addr not in registered:
                rows.append({"type": svc.type, "name": svc.name, "addr": svc.addr, "pid": svc.pid,
                             "up": pid_alive(svc.pid)})
        return rows


def _port_of(url: str) -> str | None:
    port = url.rsplit(":", 1)[-1]
    return port if port.isdigit() else None


def _reap(pid: int) -> None:
    """Collect a child we started in this process, so it doesn't linger as a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
