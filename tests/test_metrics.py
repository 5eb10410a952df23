"""Prometheus metrics of every service of a real grid: present, moving with traffic, behind the secret.

One grid for the module (1 node, 3 volumes, a WebHDFS gateway, no S3: it has metrics of its own). The
event agent runs ``refuse_marked`` below (loaded from this file through PYTHONPATH), which fails for
objects under ``dead/``: those end as dead letters. The last test kills a storage server.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from gridfs.cli.local import LocalGrid, LocalService
from gridfs.client.grid import GridClient
from gridfs.common.config import GridConfig
from gridfs.common.http import PUBLIC_PATHS, SECRET_HEADER
from gridfs.common.metrics import public_paths
from gridfs.common.service import spawn_service

Samples = dict[str, list[tuple[dict[str, str], float]]]
KINDS = ("conscience", "meta0", "meta1", "meta2", "rdir", "events", "heal", "lifecycle", "functions", "rawx",
         "webhdfs", "console")


def refuse_marked(event: dict) -> None:
    """Event handler run by the agent: objects under ``dead/`` always fail (they become dead letters)."""
    if str(event.get("data", {}).get("key", "")).startswith("dead/"):
        raise RuntimeError("refused on purpose")


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalGrid]:
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), before or ""])
    g = LocalGrid(tmp_path_factory.mktemp("metrics"))
    try:
        g.up(nodes=1, volumes=3, s3_port=None, lifecycle=True, functions=True, console_port=0, settings={
            "events": {"handlers": {"content.new": ["test_metrics:refuse_marked"]}, "retry_base": 0.1,
                       "retry_max": 0.2, "max_attempts": 2, "poll_interval": 0.1},
            "heal": {"rebuild_grace": 1, "rebuild_check": 0.5}})
        yield g
    finally:
        g.down()
        if before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = before


@pytest.fixture(scope="module")
def client(grid: LocalGrid) -> GridClient:
    return GridClient(grid.config_path)


def services(grid: LocalGrid, kind: str) -> list[LocalService]:
    return [s for s in grid.services() if s.type == kind]


def scrape(url: str, secret: str | None) -> Samples:
    r = requests.get(f"{url}/metrics", headers={SECRET_HEADER: secret} if secret else {}, timeout=10)
    assert r.status_code == 200, r.text
    out: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(v for lab, v in samples.get(name, []) if all(lab.get(k) == want for k, want in labels.items()))


def of(grid: LocalGrid, kind: str) -> Samples:
    """The metrics of the one service of a kind (rawx: of every storage server, summed by name)."""
    secret = grid.config().secret
    merged: Samples = {}
    for svc in services(grid, kind):
        for name, rows in scrape(svc.url, secret).items():
            merged.setdefault(name, []).extend(rows)
    return merged


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not seen within {timeout} s: {what}")
        time.sleep(0.1)


def test_every_service_serves_request_metrics_behind_the_secret(grid: LocalGrid) -> None:
    secret = grid.config().secret
    assert {s.type for s in grid.services()} >= set(KINDS)
    for svc in grid.services():
        if svc.type not in KINDS:
            continue
        assert requests.get(f"{svc.url}/metrics", timeout=5).status_code == 401, svc.name
        assert requests.get(f"{svc.url}/metrics", headers={SECRET_HEADER: "wrong"}, timeout=5).status_code == 403
        assert requests.get(f"{svc.url}/metrics", headers={SECRET_HEADER: secret + "x"}, timeout=5).status_code == 403
        if svc.type != "webhdfs":  # a gateway has no /health; the others' stays open
            assert requests.get(f"{svc.url}/health", timeout=5).status_code == 200, svc.name
        samples = scrape(svc.url, secret)
        # The scrapes just refused were counted, each under the /metrics route.
        refused = value(samples, "grid_requests_total", method="GET", route="/metrics", status="401")
        assert refused >= 1, (svc.name, sorted(samples))
        assert value(samples, "grid_request_seconds_count", route="/metrics") >= 3, svc.name
        # The event backlog is counted where events wait: every service with an outbox, and only those.
        assert ("grid_outbox_events" in samples) == (svc.type in ("meta1", "meta2", "rdir")), svc.name


def test_storage_and_directory_figures_move_with_puts_gets_and_deletes(grid: LocalGrid, client: GridClient) -> None:
    rawx0, meta20 = of(grid, "rawx"), of(grid, "meta2")
    client.create_bucket("moves")
    data = os.urandom(300_000)
    for i in range(3):
        client.put("moves", f"obj/{i}", data)
    for i in range(3):
        assert client.get("moves", f"obj/{i}") == data
    client.delete("moves", "obj/0")
    rawx, meta2 = of(grid, "rawx"), of(grid, "meta2")

    def moved(after: Samples, before: Samples, name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved(rawx, rawx0, "grid_requests_total", method="PUT", route="/chunk/{id}", status="201") >= 3
    read = sum(moved(rawx, rawx0, "grid_requests_total", method="GET", route="/chunk/{id}", status=status)
               for status in ("200", "206"))  # whole chunks or ranges of them
    assert read >= 3
    assert moved(rawx, rawx0, "grid_request_seconds_count", method="PUT", route="/chunk/{id}") >= 3
    assert moved(rawx, rawx0, "grid_request_body_bytes_total", method="PUT") >= 3 * len(data)
    assert moved(rawx, rawx0, "grid_response_body_bytes_total", method="GET") >= 3 * len(data)
    assert moved(rawx, rawx0, "grid_rawx_bytes_in_total") >= 3 * len(data)
    assert moved(rawx, rawx0, "grid_rawx_bytes_out_total") >= 3 * len(data)
    assert moved(rawx, rawx0, "grid_rawx_io_fsync_seconds_count") >= 3
    assert moved(rawx, rawx0, "grid_rawx_chunks") >= 3
    assert moved(rawx, rawx0, "grid_rawx_volume_used_bytes") >= 3 * len(data)
    for svc in services(grid, "rawx"):
        one = scrape(svc.url, grid.config().secret)
        assert 0 < value(one, "grid_rawx_volume_free_bytes") <= value(one, "grid_rawx_volume_total_bytes")
    assert moved(meta2, meta20, "grid_requests_total", method="POST", route="/v1/meta2/{cid}/commit",
                 status="200") >= 3
    assert moved(meta2, meta20, "grid_meta2_commit_seconds_count") >= 4  # 3 commits and a delete
    assert moved(meta2, meta20, "grid_meta2_changes_total") >= 4


def test_routes_are_patterns_whatever_path_a_client_asks(grid: LocalGrid) -> None:
    secret = grid.config().secret
    meta2, rawx = services(grid, "meta2")[0], services(grid, "rawx")[0]
    for url in (meta2.url, rawx.url):
        for path in ("/no/such/thing-7f3a", "/v1/meta2/" + "Z" * 64 + "/object", "/chunk/%2e%2e%2fetc-7f3a"):
            requests.get(f"{url}{path}", headers={SECRET_HEADER: secret}, timeout=5)
        text = requests.get(f"{url}/metrics", headers={SECRET_HEADER: secret}, timeout=5).text
        assert "7f3a" not in text and "Z" * 64 not in text
        assert value(scrape(url, secret), "grid_requests_total", route="unmatched", status="404") >= 1
    # A head that cannot be parsed is counted too, under no method a client chose.
    host, port = rawx.addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.sendall(b"GET /chunk/x-7f3a HTTP/1.1\r\nbad header line\r\n\r\n")
        assert b" 400 " in conn.recv(4096).split(b"\r\n")[0] + b" "
    head = b"GET / HTTP/1.1\r\nX-Pad: "
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.sendall(head + b"a" * ((32 << 10) - len(head)))  # exactly the most a head may take, unfinished
        assert b" 431 " in conn.recv(4096).split(b"\r\n")[0]
    invalid = scrape(rawx.url, secret)
    assert value(invalid, "grid_requests_total", method="INVALID", status="400") >= 1
    assert value(invalid, "grid_requests_total", method="INVALID", status="431") >= 1


def test_webhdfs_counts_operations_and_bytes(grid: LocalGrid, client: GridClient) -> None:
    svc = services(grid, "webhdfs")[0]
    before = scrape(svc.url, grid.config().secret)
    for _ in range(2):
        r = requests.get(f"{svc.url}/webhdfs/v1/?op=LISTSTATUS&user.name=me", timeout=10)
        assert r.status_code == 200, r.text
    requests.get(f"{svc.url}/webhdfs/v1/?op=NOSUCHOP-7f3a&user.name=me", timeout=10)
    client.create_bucket("hdfs")  # of the account "default", as an anonymous WebHDFS caller's
    data = os.urandom(200_000)
    r = requests.put(f"{svc.url}/webhdfs/v1/hdfs/f.bin?op=CREATE", allow_redirects=False, timeout=10)
    assert r.status_code == 307, r.text
    assert requests.put(r.headers["Location"], data=data, timeout=30).status_code == 201
    r = requests.get(f"{svc.url}/webhdfs/v1/hdfs/f.bin?op=OPEN", timeout=30)
    assert r.status_code == 200 and r.content == data
    text = requests.get(f"{svc.url}/metrics", headers={SECRET_HEADER: grid.config().secret}, timeout=5).text
    assert "7f3a" not in text
    after = scrape(svc.url, grid.config().secret)
    assert value(after, "grid_request_body_bytes_total", method="PUT", route="CREATE") >= len(data)
    assert value(after, "grid_response_body_bytes_total", method="GET", route="OPEN") >= len(data)
    assert value(after, "grid_request_seconds_count", method="GET", route="OPEN") >= 1
    listed = {"method": "GET", "route": "LISTSTATUS"}
    assert value(after, "grid_requests_total", status="200", **listed) - \
        value(before, "grid_requests_total", status="200", **listed) == 2
    assert value(after, "grid_response_body_bytes_total", **listed) > value(before, "grid_response_body_bytes_total",
                                                                             **listed)
    assert value(after, "grid_requests_total", route="unknown", status="400") >= 1


def test_event_backlog_drains_and_failures_end_as_dead_letters(grid: LocalGrid, client: GridClient) -> None:
    agent = services(grid, "events")[0]
    client.create_bucket("events")
    dead0 = value(of(grid, "events"), "grid_events_dead")
    os.kill(agent.pid, signal.SIGSTOP)  # the agent stops draining: the outbox fills
    try:
        for i in range(5):
            client.put("events", f"dead/{i}" if i < 2 else f"ok/{i}", b"x" * 100)
        assert value(of(grid, "meta2"), "grid_outbox_events") >= 5
    finally:
        os.kill(agent.pid, signal.SIGCONT)
    wait_for(lambda: value(of(grid, "meta2"), "grid_outbox_events") == 0, 20, "the outbox drained")
    wait_for(lambda: value(of(grid, "events"), "grid_events_dead") >= dead0 + 2, 20, "two dead letters")
    events = of(grid, "events")
    assert value(events, "grid_events_handled") >= 5
    lag = events["grid_events_lag_seconds"]  # per source, 0 once a read finds its outbox empty
    assert {lab["source"] for lab, _ in lag} >= {s["id"] for s in client.conscience.services("meta2")}
    wait_for(lambda: all(v == 0 for _, v in of(grid, "events")["grid_events_lag_seconds"]), 10, "no lag left")
    assert value(events, "grid_events_failures") >= 2


def test_a_scrub_pass_counts(grid: LocalGrid, client: GridClient) -> None:
    client.create_bucket("scrub")
    client.put("scrub", "one", os.urandom(50_000))
    svc = services(grid, "rawx")[0]
    secret = grid.config().secret
    before = scrape(svc.url, secret)
    r = requests.post(f"{svc.url}/scrub", headers={SECRET_HEADER: secret}, json={"rate": 0}, timeout=5)
    assert r.status_code in (200, 202), r.text

    def finished() -> bool:
        now = scrape(svc.url, secret)
        return value(now, "grid_rawx_scrub_last_finished_timestamp_seconds") > \
            value(before, "grid_rawx_scrub_last_finished_timestamp_seconds") and \
            value(now, "grid_rawx_scrub_running") == 0

    wait_for(finished, 20, "a scrub pass ended")
    after = scrape(svc.url, secret)
    assert value(after, "grid_rawx_scrub_passes_total") >= value(before, "grid_rawx_scrub_passes_total") + 1
    assert value(after, "grid_rawx_scrub_last_chunks") >= 1
    assert value(after, "grid_rawx_scrub_last_bytes") >= 1
    assert value(after, "grid_rawx_scrub_last_corrupt") == 0


def test_metrics_are_public_only_when_grid_toml_says_so(tmp_path: Path) -> None:
    cfg = GridConfig(secret="s" * 32)
    cfg.extra["metrics"] = {"public": True}
    cfg.save(tmp_path / "grid.toml")
    conscience = spawn_service("gridfs.conscience", ["--config", str(tmp_path / "grid.toml")], tmp_path, "conscience")
    try:
        cfg.conscience_url = conscience.url
        cfg.save(tmp_path / "grid.toml")
        rawx = spawn_service("gridfs.storage", ["--config", str(tmp_path / "grid.toml"), "--volume",
                                                str(tmp_path / "vol"), "--location", "s.r.h.v"], tmp_path, "rawx")
        s3 = spawn_service("gridfs.gateways.s3", ["--config", str(tmp_path / "grid.toml"), "--port", "0",
                                                  "--workers", "1"], tmp_path, "s3")
        try:
            for svc in (conscience, rawx):
                assert "grid_requests_total" in requests.get(f"{svc.url}/metrics", timeout=5).text
                assert requests.get(f"{svc.url}/info" if svc is rawx else f"{svc.url}/v1/services",
                                    timeout=5).status_code == 401  # only /metrics opened
            # The S3 gateway's, under its own path, follows the same setting.
            assert requests.get(f"{s3.url}/_grid/metrics", timeout=5).status_code == 200
        finally:
            s3.stop()
            rawx.stop()
    finally:
        conscience.stop()


@pytest.mark.parametrize("section", [{"public": "true"}, {"public": 1}, {"public": False}, {}, "public"])
def test_only_a_boolean_true_opens_metrics(section: object) -> None:
    cfg = GridConfig(secret="s" * 32)
    cfg.extra["metrics"] = section
    assert public_paths(cfg) == PUBLIC_PATHS == frozenset({"/health"})
    cfg.extra["metrics"] = {"public": True}
    assert public_paths(cfg) == {"/health", "/metrics"}


def test_a_killed_storage_server_shows_at_the_conscience_and_is_rebuilt(grid: LocalGrid, client: GridClient) -> None:
    victim = services(grid, "rawx")[-1]
    victim_id = (Path(victim.args[victim.args.index("--volume") + 1]) / "service.id").read_text().strip()
    conscience = services(grid, "conscience")[0]
    secret = grid.config().secret
    before = scrape(conscience.url, secret)
    assert value(before, "grid_conscience_score_put", id=victim_id) > 0
    for kind in ("meta0", "meta1", "meta2", "rdir", "rawx"):  # every service that registers, scored
        running = len(services(grid, kind))
        assert value(before, "grid_conscience_services", type=kind, state="up") == running, kind
        assert len([lab for lab, _ in before["grid_conscience_score_put"] if lab["type"] == kind]) == running, kind
    assert value(before, "grid_conscience_heartbeats_total") > 0
    os.kill(victim.pid, signal.SIGKILL)

    def silent() -> bool:
        now = scrape(conscience.url, secret)
        return value(now, "grid_conscience_services", type="rawx", state="silent") == 1 and \
            value(now, "grid_conscience_score_put", id=victim_id) == 0

    wait_for(silent, 15, "the killed storage server silent at the conscience")
    rdir, heal = services(grid, "rdir")[0], services(grid, "heal")[0]

    def rebuilt() -> bool:
        return value(scrape(rdir.url, secret), "grid_rdir_job_state", volume=victim_id, kind="rebuild",
                     state="done") == 1

    wait_for(rebuilt, 30, "the rebuild of the killed volume done")
    jobs = scrape(rdir.url, secret)
    assert value(jobs, "grid_rdir_job_chunks_done", volume=victim_id) >= 1
    assert value(jobs, "grid_rdir_volume_chunks") >= 1
    wait_for(lambda: value(scrape(heal.url, secret), "grid_heal_jobs_finished_total", kind="rebuild") >= 1, 5,
             "the rebuilder counted its job")
