"""Chaos: an `mpirun` grid-distcp ingest and a boto3 write load run while storage servers, every directory
service, the conscience and the event agent are SIGKILLed and restarted and chunks (files and packed) are corrupted.

The ingest is rerun until it exits 0 (round after round while the chaos lasts); then every source file,
and every S3 write the gateway acknowledged, must read back byte for byte, through boto3 and through
GridClient, before and after the event agent has drained every outbox (so that no garbage collection
took a chunk of a live object). Everything is bounded: the chaos lasts CHAOS_SECONDS, every wait polls a
state against a deadline, and the test has a timeout.

Read a failure from the printed timeline (``[  12.3 s] ...`` lines: every kill, restart, corruption,
ingest attempt and S3 failure) and from the services' logs under the grid's ``run/`` folder.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import io
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from grid_distcp.lakegen import generate
from gridfs.cli.local import LocalGrid, pid_alive
from gridfs.client import GridClient
from gridfs.common.errors import NoSuchObject
from gridfs.common.http import JsonClient
from gridfs.gateways.s3.users import UserStore
from tests.conftest import chunk_size, corrupt_chunk, file_digest, held_chunks, object_digest, wait_for

BIN = Path(sys.executable).parent
MiB = 1 << 20
CHAOS_SECONDS = 60.0
TEST_TIMEOUT = 180  # the bound: under 3 minutes, grid start-up included
BUCKET_LAKE, BUCKET_S3 = "chaos-lake", "chaos-s3"
ABSENT = "absent"  # an S3 key's expected state when it must not exist
DIRECTORY = ("meta0", "meta1", "meta2-1", "meta2-2")
# One deck of chaos actions, shuffled and dealt again when used up: every kind happens in a run.
DECK = ["rawx", "two rawx", "corrupt", "corrupt", *DIRECTORY, "conscience", "events"]
MAX_RAWX_DOWN = 2  # EC63 loses at most 3 chunks: 2 dead servers + 1 corrupt chunk per object
SEED = int(os.environ.get("CHAOS_SEED", "0")) or random.randrange(1, 1 << 30)


class Timeline:
    """Timestamped notes, printed as they happen (pytest -s) and kept for the failure message."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.lines: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, msg: str) -> None:
        line = f"[{time.monotonic() - self.start:6.1f} s] {msg}"
        with self._lock:
            self.lines.append(line)
        print(line, flush=True)

    def elapsed(self) -> float:
        return time.monotonic() - self.start



def kill_and_reap(pid: int) -> None:
    """SIGKILL one service this test process started (its parent), and collect it."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


# -- the chaos -----------------------------------------------------------------------------------------


class Chaos(threading.Thread):
    """Every 1.5-4 s one action from the deck: SIGKILL a service (restarted 1-2 s later) or corrupt a chunk."""

    def __init__(self, grid: LocalGrid, rng: random.Random, note: Timeline, until: float) -> None:
        super().__init__(name="chaos", daemon=True)
        self.grid, self.rng, self.note, self.until = grid, rng, note, until
        self.stop = threading.Event()
        self.down: dict[str, float] = {}  # service name -> when to restart it (monotonic)
        self.actions: collections.Counter[str] = collections.Counter()
        self.corrupted: dict[str, str] = {}  # content id -> the one chunk of it made corrupt
        self.errors: list[str] = []
        self.restart_failures: list[str] = []
        self._deck: list[str] = []

    def run(self) -> None:
        try:
            next_action = time.monotonic() + self.rng.uniform(1.0, 3.0)
            while not self.stop.is_set() and time.monotonic() < self.until:
                self._restart_due(time.monotonic())
                if time.monotonic() >= next_action:
                    self._act()
                    next_action = time.monotonic() + self.rng.uniform(1.5, 4.0)
                wake = min([next_action, self.until, *self.down.values()])
                self.stop.wait(max(0.0, min(0.5, wake - time.monotonic())))
            self.note(f"chaos over: {dict(self.actions)}; restarting {sorted(self.down)}")
            self.heal(timeout=30)
        except Exception as exc:  # reported by the test, not lost in a thread
            self.errors.append(f"chaos thread: {exc!r}")
            self.note(f"chaos thread failed: {exc!r}")

    def _act(self) -> None:
        """Play the first card of the deck that can be played now; the others go back under the deck
        (so that each deck is played whole: every kind of action happens once per deck)."""
        if not self._deck:
            self._deck = list(DECK)
            self.rng.shuffle(self._deck)
        for i in range(len(self._deck) - 1, -1, -1):
            if self._play(self._deck[i]):
                del self._deck[i]
                return

    def _play(self, card: str) -> bool:
        if card == "corrupt":
            return self._corrupt_one()
        if card in ("rawx", "two rawx"):
            count = 1 if card == "rawx" else 2
            if sum(n.startswith("rawx-") for n in self.down) + count > MAX_RAWX_DOWN:
                return False
            up = [s for s in self.grid.services() if s.type == "rawx" and s.name not in self.down]
            nodes = {s.location.split(".")[2]: s.name for s in self.rng.sample(up, len(up))}
            for name in self.rng.sample(sorted(nodes.values()), count):  # on distinct nodes
                self._kill(name)
            return True
        if card in self.down:
            return False
        self._kill(card)
        return True

    def _kill(self, name: str) -> None:
        svc = next(s for s in self.grid.services() if s.name == name)
        kill_and_reap(svc.pid)
        delay = self.rng.uniform(1.0, 2.0)
        self.down[name] = time.monotonic() + delay
        self.actions[f"kill {name.split('-')[0] if name.startswith('rawx') else name}"] += 1
        self.note(f"chaos: SIGKILL {name} (pid {svc.pid}), restart in {delay:.1f} s")

    def _restart_due(self, now: float) -> None:
        for name, when in sorted(self.down.items(), key=lambda kv: kv[1]):
            if when <= now:
                self._restart(name)

    def _restart(self, name: str) -> bool:
        try:
            svc = self.grid.restart(name)
        except Exception as exc:  # tried again a second later, and reported
            self.down[name] = time.monotonic() + 1.0
            self.restart_failures.append(f"restart {name}: {exc!r}")
            self.note(f"chaos: restart of {name} failed, again in 1 s: {exc!r}")
            return False
        del self.down[name]
        self.note(f"chaos: restarted {name} (pid {svc.pid}, {svc.url})")
        return True

    def _corrupt_one(self) -> bool:
        """Flip 64 bytes in the middle of one chunk, in its file or in its pack (a data chunk of an EC object
        more often than not: a read meets those, parity only when degraded), of an object that has no corrupt
        chunk yet (a chunk file's back-references name every content id sharing it)."""
        held = list(held_chunks(self.grid.data).items())
        self.rng.shuffle(held)
        want_ec = self.rng.random() < 0.6
        for chunk_id, h in sorted(held[:300], key=lambda e: self._kind(e[1].ref) != ("ec data" if want_ec else "copy")):
            try:
                refs = [h.ref]
                if h.path is not None:  # hard links share the file: every back-reference on it
                    refs = [json.loads(os.getxattr(h.path, a)) for a in os.listxattr(h.path)
                            if a.startswith("user.grid.ref.")]
                contents = {r.get("content_id", "") for r in refs}
                size = h.path.stat().st_size if h.path is not None else chunk_size(h.volume, chunk_id)
                if not refs or size < 128 or contents & set(self.corrupted):
                    continue
                corrupt_chunk(h.volume, chunk_id, offset=size // 2 - 32, length=64)
            except (FileNotFoundError, json.JSONDecodeError, OSError, AssertionError):
                continue  # deleted meanwhile, or being written: another one
            for c in contents:
                self.corrupted[c] = chunk_id
            self.actions["corrupt chunk"] += 1
            where = "file" if h.path is not None else "packed"
            self.note(f"chaos: corrupted {where} chunk {chunk_id[:12]} on {h.volume.relative_to(self.grid.data)} "
                      f"({size} bytes, {refs[0].get('policy')} chunk {refs[0].get('pos')} of "
                      f"{refs[0].get('container')}/{refs[0].get('path')})")
            return True
        return False

    @staticmethod
    def _kind(ref: dict) -> str:
        """"ec data", "ec parity" or "copy", from the chunk's back-reference (policy, position)."""
        with contextlib.suppress(ValueError, KeyError, IndexError):
            policy = ref.get("policy", "")
            if not policy.startswith("EC"):
                return "copy"
            k = int(policy[2])  # EC63: 6 data chunks, then 3 parity
            return "ec data" if int(ref["pos"].split(".")[1]) < k else "ec parity"
        return ""

    def corruptions_read(self) -> int:
        """How many corrupted chunks a storage server refused to serve (its log says so), to quote."""
        logs = "".join(p.read_text(errors="replace") for p in self.grid.run_dir.glob("rawx-*.log"))
        return sum(f"corrupt chunk {chunk_id}" in logs for chunk_id in set(self.corrupted.values()))

    def heal(self, timeout: float) -> None:
        """Restart what the chaos left down, and anything else found dead."""
        deadline = time.monotonic() + timeout
        for svc in self.grid.services():
            if not pid_alive(svc.pid) and svc.name not in self.down:
                self.errors.append(f"{svc.name} was found dead (it crashed by itself)")
                self.note(f"heal: {svc.name} is dead though not killed by the chaos; log tail:\n"
                          + (self.grid.run_dir / f"{svc.name}.log").read_text(errors="replace")[-1500:])
                self.down[svc.name] = 0.0
        while self.down:
            if time.monotonic() > deadline:
                raise AssertionError(f"could not restart {sorted(self.down)}: {self.restart_failures}")
            for name in list(self.down):
                if not self._restart(name):
                    time.sleep(0.5)


# -- the S3 write load ---------------------------------------------------------------------------------


class S3Load(threading.Thread):
    """Puts (1 KiB .. 20 MiB, some multipart), overwrites and deletes on 40 keys until told to stop.

    ``expect[key]`` is the set of states the key may be in at the end: the last acknowledged write
    (its sha256, or ABSENT after an acknowledged delete), plus the writes and deletes tried since
    that failed, since a failed call may still have been applied.
    """

    KEYS = 40
    MULTIPART = TransferConfig(multipart_threshold=8 * MiB, multipart_chunksize=5 * MiB, max_concurrency=2)

    def __init__(self, s3: object, rng: random.Random, note: Timeline) -> None:
        super().__init__(name="s3-load", daemon=True)
        self.s3, self.rng, self.note = s3, rng, note
        self.stop = threading.Event()
        self.expect: dict[str, set[str]] = {}
        self.counts: collections.Counter[str] = collections.Counter()
        self.errors: list[str] = []

    def _size(self) -> int:
        r = self.rng.random()
        if r < 0.5:
            return self.rng.randint(1 << 10, 256 << 10)
        if r < 0.8:
            return self.rng.randint(256 << 10, 4 * MiB)
        return self.rng.randint(4 * MiB, 20 * MiB)

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                key = f"load/k{self.rng.randrange(self.KEYS):02d}"
                states = self.expect.get(key, {ABSENT})
                if states != {ABSENT} and self.rng.random() < 0.2:
                    self.delete_one(key, states)
                else:
                    self.put_one(key, states)
        except Exception as exc:  # reported by the test
            self.errors.append(f"s3 thread: {exc!r}")
            self.note(f"s3 load thread failed: {exc!r}")

    def put_one(self, key: str, states: set[str]) -> None:
        body = self.rng.randbytes(self._size())
        digest = hashlib.sha256(body).hexdigest()
        multipart = len(body) > 8 * MiB and self.rng.random() < 0.5
        started = time.monotonic()
        try:
            if multipart:
                self.s3.upload_fileobj(io.BytesIO(body), BUCKET_S3, key, Config=self.MULTIPART)  # type: ignore[attr-defined]
            else:
                self.s3.put_object(Bucket=BUCKET_S3, Key=key, Body=body)  # type: ignore[attr-defined]
        except Exception as exc:  # any failure: not acknowledged
            self.expect[key] = states | {digest}
            self.counts["put failed"] += 1
            self.note(f"s3: put {key} ({len(body)} bytes{', multipart' if multipart else ''}) failed after "
                      f"{time.monotonic() - started:.1f} s: {type(exc).__name__}: {str(exc)[:200]}")
            return
        self.expect[key] = {digest}
        self.counts["put acknowledged"] += 1
        self.counts["multipart acknowledged"] += multipart
        self.counts["bytes acknowledged"] += len(body)
        self.counts["overwrite acknowledged"] += states != {ABSENT}

    def delete_one(self, key: str, states: set[str]) -> None:
        try:
            self.s3.delete_object(Bucket=BUCKET_S3, Key=key)  # type: ignore[attr-defined]
        except Exception as exc:  # any failure: not acknowledged
            self.expect[key] = states | {ABSENT}
            self.counts["delete failed"] += 1
            self.note(f"s3: delete {key} failed: {type(exc).__name__}: {str(exc)[:200]}")
            return
        self.expect[key] = {ABSENT}
        self.counts["delete acknowledged"] += 1


# -- the ingest ----------------------------------------------------------------------------------------


class Ingest:
    """`mpirun -n 2 grid-distcp LAKE grid://chaos-lake/roundN`, rerun until it exits 0."""

    def __init__(self, grid: LocalGrid, lake: Path, tmp: Path, note: Timeline) -> None:
        self.grid, self.lake, self.tmp, self.note = grid, lake, tmp, note
        self.rounds: list[int] = []  # attempts each round took
        self.codes: collections.Counter[int] = collections.Counter()

    def attempt(self, round_: int, timeout: float) -> int:
        name = f"round{round_}-{sum(self.codes.values()) + 1}"
        env = {**os.environ, "GRID_CONFIG": str(self.grid.config_path), "XDG_CACHE_HOME": str(self.tmp / "cache"),
               "GRID_DISTCP_REPORT": str(self.tmp / f"{name}.report.json")}
        cmd = [str(BIN / "mpirun"), "-n", "2", str(BIN / "grid-distcp"), str(self.lake),
               f"grid://{BUCKET_LAKE}/round{round_}", "-split-size", "64", "-part-size", "48", "-threads", "4",
               # 6 MB/s per rank: a round spans several chaos actions, and the rounds to read back stay few
               "-bandwidth", "6", "-log", str(self.tmp / f"{name}.log"), "-quiet"]
        started = time.monotonic()
        out_path = self.tmp / f"{name}.out"
        with open(out_path, "wb") as out:
            job = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                code = job.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(job.pid, signal.SIGKILL)  # the mpirun session this test started
                job.wait()
                code = -999
        self.codes[code] += 1
        tail = out_path.read_text(errors="replace").strip().splitlines()[-3:]
        self.note(f"ingest: {name} exited {code} after {time.monotonic() - started:.1f} s"
                  + ("" if code == 0 else f": {' | '.join(tail)[-400:]}"))
        return code

    def until_done(self, round_: int, start_before: float, timeout: float, max_attempts: int) -> bool:
        """Rerun the round until exit 0, starting attempts only before ``start_before``, each killed after
        ``timeout`` s; False when time or the attempt cap ran out first."""
        for attempt in range(1, max_attempts + 1):
            if time.monotonic() >= start_before:
                return False
            if self.attempt(round_, timeout) == 0:
                self.rounds.append(attempt)
                return True
        return False


# -- verification ----------------------------------------------------------------------------------------


def s3_state(s3: object, key: str) -> str:
    try:
        body = s3.get_object(Bucket=BUCKET_S3, Key=key)["Body"].read()  # type: ignore[attr-defined]
    except s3.exceptions.NoSuchKey:  # type: ignore[attr-defined]
        return ABSENT
    return hashlib.sha256(body).hexdigest()


def grid_state(client: GridClient, bucket: str, key: str) -> str:
    try:
        return object_digest(client, bucket, key, hashlib.sha256)
    except NoSuchObject:
        return ABSENT


def check_s3(s3: object, client: GridClient, load: S3Load) -> list[str]:
    """Each key in one of its expected states, the same through boto3 and GridClient; both listings
    name exactly the keys that read back."""
    problems, present = [], set()
    for key, states in sorted(load.expect.items()):
        via_s3, via_grid = s3_state(s3, key), grid_state(client, BUCKET_S3, key)
        if via_s3 not in states or via_grid not in states or via_s3 != via_grid:
            problems.append(f"{key}: expected one of {sorted(s[:12] for s in states)}, boto3 read {via_s3[:12]}, "
                            f"GridClient read {via_grid[:12]}")
        if via_s3 != ABSENT:
            present.add(key)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET_S3)  # type: ignore[attr-defined]
    listed_s3 = {o["Key"] for page in pages for o in page.get("Contents", [])}
    listed_grid = {o.key for o in client.iter_list(BUCKET_S3)}
    for who, listed in (("boto3", listed_s3), ("GridClient", listed_grid)):
        if listed != present:
            problems.append(f"{who} lists keys that should not be there: {sorted(listed - present)}; "
                            f"does not list keys that read back: {sorted(present - listed)}")
    return problems


def check_lake(client: GridClient, lake: Path, rounds: int, sources: dict[str, str]) -> list[str]:
    problems = []
    for r in range(1, rounds + 1):
        prefix = f"round{r}/"
        listed = {o.key[len(prefix):] for o in client.iter_list(BUCKET_LAKE, prefix=prefix)}
        if listed != set(sources):
            missing, extra = sorted(set(sources) - listed), sorted(listed - set(sources))
            problems.append(f"{prefix}: {len(missing)} files missing {missing[:5]}, {len(extra)} extra {extra[:5]}")
        for rel, digest in sources.items():
            if rel in listed and (got := object_digest(client, BUCKET_LAKE, prefix + rel, hashlib.sha256)) != digest:
                problems.append(f"{prefix}{rel}: sha256 {got[:12]} != source {digest[:12]}")
    return problems


def wait_events_settled(grid: LocalGrid, timeout: float) -> dict:
    """Until every meta1/meta2 outbox is empty (the event agent took every event of the run) and the agent
    has no retry pending (or the deadline came: then what remains is in the status returned)."""
    cfg = grid.config()
    services = grid.services(cfg)
    outboxes = [JsonClient(s.url, cfg.secret, timeout=5.0) for s in services if s.type in ("meta1", "meta2")]
    assert outboxes, "no meta1/meta2 service in the local grid"
    agent = JsonClient(next(s.url for s in services if s.type == "events"), cfg.secret, timeout=5.0)

    def drained() -> bool:
        return all(not box.call("GET", "/v1/outbox", params={"limit": 1})["events"] for box in outboxes)

    deadline = time.monotonic() + timeout
    wait_for("every outbox drained by the event agent", drained, timeout, every=0.5)
    while (status := agent.call("GET", "/v1/status"))["retries"] and time.monotonic() < deadline:
        time.sleep(0.5)
    return status


# -- the test ----------------------------------------------------------------------------------------------


@pytest.fixture
def chaos_grid(tmp_path: Path) -> Iterator[LocalGrid]:
    grid = LocalGrid(tmp_path / "grid")
    grid.up(nodes=3, volumes=3, meta2=2)
    try:
        yield grid
    finally:
        grid.down()


@pytest.mark.timeout(TEST_TIMEOUT)
def test_ingest_and_s3_writes_survive_kills_restarts_and_corrupt_chunks(chaos_grid: LocalGrid, tmp_path: Path) -> None:
    note = Timeline()
    rng = random.Random(SEED)
    note(f"chaos seed {SEED} (CHAOS_SEED={SEED} replays the same choices); grid data in {chaos_grid.data}")
    lake = tmp_path / "lake"
    # 150 small files, 6 of 4 MiB (EC63), one of 100 MiB copied as 3 parts (split at 64 MiB, 48 MiB parts).
    generate(str(lake), small=150, small_size=64 << 10, medium=6, medium_size=4 * MiB, big=1, big_size=100 * MiB,
             seed=SEED)
    sources = {p.relative_to(lake).as_posix(): file_digest(p, hashlib.sha256) for p in lake.rglob("*") if p.is_file()}
    note(f"lake: {len(sources)} files, {sum(p.stat().st_size for p in lake.rglob('*') if p.is_file()):,} bytes")

    user = UserStore(chaos_grid.config_path).create("chaos")
    s3 = boto3.client("s3", endpoint_url=chaos_grid.config().extra["s3"]["url"], aws_access_key_id=user.access_key,
                      aws_secret_access_key=user.secret_key, region_name="us-east-1",
                      config=Config(connect_timeout=5, read_timeout=30))
    s3.create_bucket(Bucket=BUCKET_S3)

    chaos_end = time.monotonic() + CHAOS_SECONDS
    chaos = Chaos(chaos_grid, random.Random(rng.random()), note, chaos_end)
    load = S3Load(s3, random.Random(rng.random()), note)
    ingest = Ingest(chaos_grid, lake, tmp_path, note)
    test_deadline = note.start + TEST_TIMEOUT - 45  # what remains is for the checks
    chaos.start()
    load.start()
    try:
        # While the chaos lasts: round after round, each rerun until it exits 0.
        round_ = 1
        while time.monotonic() < chaos_end:
            if ingest.until_done(round_, chaos_end, timeout=CHAOS_SECONDS, max_attempts=100):
                note(f"ingest: round {round_} complete under chaos")
                round_ += 1
        load.stop.set()
        chaos.join(timeout=45)  # it stops at chaos_end by itself, restarting what it killed
        load.join(timeout=60)
        assert not chaos.is_alive() and not load.is_alive(), "the chaos or the S3 load did not stop"
        chaos.heal(timeout=30)  # anything that died on its own
        cfg = chaos_grid.config()
        chaos_grid.wait_registered(cfg, [s for s in chaos_grid.services(cfg) if s.type in ("rawx", "meta1", "meta2")],
                                   timeout=30)
        note("every service is back and registered")
        # The round left unfinished by the chaos (if any) now completes.
        if len(ingest.rounds) < round_ and not ingest.until_done(round_, test_deadline, timeout=60, max_attempts=4):
            pytest.fail(f"the ingest round {round_} did not complete after the chaos: exit codes {dict(ingest.codes)}")
        rounds = len(ingest.rounds)
        note(f"ingest complete: {rounds} rounds, attempts per round {ingest.rounds}, exit codes {dict(ingest.codes)}")

        with GridClient(chaos_grid.config_path) as client:
            problems = check_lake(client, lake, rounds, sources) + check_s3(s3, client, load)
            note(f"checked {rounds * len(sources)} ingested files and {len(load.expect)} S3 keys: "
                 f"{len(problems)} problems")
            events = wait_events_settled(chaos_grid, timeout=30)
            note(f"every outbox drained, {events['retries']} retries pending, {events['dead']} dead letters: "
                 "checking again after the event agent's deletions")
            problems += [f"after the events: {p}" for p in check_s3(s3, client, load)]
            problems += [f"after the events: {p}" for p in check_lake(client, lake, rounds, sources)]
    finally:
        chaos.stop.set()
        load.stop.set()

    exact = sum(1 for states in load.expect.values() if len(states) == 1)
    summary = {
        "seconds": round(note.elapsed(), 1),
        "chaos actions": dict(chaos.actions),
        "ingest rounds": len(ingest.rounds),
        "ingest attempts per round": ingest.rounds,
        "ingest exit codes": dict(ingest.codes),
        "s3": dict(load.counts),
        "s3 keys checked": len(load.expect),
        "s3 keys with one possible state": exact,
        "s3 keys absent at the end": sum(1 for states in load.expect.values() if states == {ABSENT}),
        "corrupt chunks refused by a read": chaos.corruptions_read(),
        "event retries pending at the end": events["retries"],
        "event dead letters": events["dead"],
        "restart failures": len(chaos.restart_failures),
    }
    print("CHAOS SUMMARY " + json.dumps(summary), flush=True)
    assert not chaos.errors and not load.errors, chaos.errors + load.errors
    assert not problems, "\n".join([*problems, "--- timeline:", *note.lines])
    # The run really did what it claims: every kind of damage, acknowledged writes and overwrites.
    assert {f"kill {n}" for n in ("rawx", "conscience", "events", *DIRECTORY)} <= set(chaos.actions), chaos.actions
    assert chaos.actions["corrupt chunk"] >= 1, chaos.actions
    assert load.counts["put acknowledged"] >= 10 and load.counts["overwrite acknowledged"] >= 1, load.counts
    assert len(ingest.rounds) >= 1
