"""The web console against a real grid, through its API and in headless Chromium (selenium).

Chromium and its driver are Debian packages (``chromium``, ``chromium-driver``) that ``make test`` installs:
a machine without them fails here with a message saying so, rather than skipping the console's only
browser test. The handler ``poisoned`` below is run by the grid's event agent (this folder is on its
PYTHONPATH): it fails for objects named ``poison/...`` until a flag file exists, which makes a dead letter
for the page to list and replay.

Set ``GRID_CONSOLE_SCREENSHOT=PATH`` to keep a screenshot of the page (docs/console.png is one).
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from gridfs.cli.local import LocalGrid, pid_alive
from gridfs.client import GridClient
from gridfs.common.http import SECRET_HEADER
from gridfs.conscience.client import ConscienceClient
from gridfs.console import auth
from tests.conftest import run_grid_cli, wait_for

FLAG_ENV = "GRID_TEST_CONSOLE_FLAG"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def poisoned(event: dict[str, Any]) -> None:
    """Run by the event agent: refuses objects named poison/... until the flag file exists."""
    key = event["data"].get("key", "")
    if key.startswith("poison/") and not Path(os.environ[FLAG_ENV]).exists():
        raise RuntimeError(f"refusing {key} until the flag exists")


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalGrid]:
    """Two nodes of two volumes, the console sampling every second, dead letters after one failure."""
    data = tmp_path_factory.mktemp("console")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
        mp.setenv(FLAG_ENV, str(data / "flag"))
        g = LocalGrid(data / "grid")
        g.up(nodes=2, volumes=2, s3_port=None, webhdfs_port=None, console_port=0, settings={
            "console": {"sample_interval": 1.0},
            "events": {"max_attempts": 1, "handlers": {"content.new": ["test_console:poisoned"]}}})
        try:
            with GridClient(g.config_path) as client:
                client.create_bucket("photos")
                for i in range(3):
                    client.put("photos", f"cat/{i}.jpg", os.urandom(200_000))
                client.put("photos", "poison/1", b"x")
            yield g
        finally:
            g.down()


@pytest.fixture(scope="module")
def url(grid: LocalGrid) -> str:
    return grid.config().extra["console"]["url"]


@pytest.fixture(scope="module")
def token(grid: LocalGrid) -> str:
    return auth.read_token(auth.token_path(grid.config()))


@pytest.fixture
def session(url: str, token: str) -> requests.Session:
    s = requests.Session()
    r = s.post(f"{url}/login", data={"token": token}, allow_redirects=False)
    assert r.status_code == 303 and auth.COOKIE in s.cookies, r.text
    return s


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    if missing:
        pytest.fail(f"{' and '.join(missing)} not found: the console test drives headless Chromium "
                    "(apt-get install -y chromium chromium-driver; make test installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1400"):
        options.add_argument(arg)
    options.binary_location = CHROMIUM
    # The driver is named: selenium must not go looking for one to download.
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def rawx_rows(grid: LocalGrid) -> list[dict[str, Any]]:
    cfg = grid.config()
    return ConscienceClient(cfg.conscience_url, cfg.secret).services("rawx")


# -- who may use it ----------------------------------------------------------------------------------------------


def test_no_session_no_page_no_api(grid: LocalGrid, url: str) -> None:
    token_file = auth.token_path(grid.config())
    assert token_file.parent == grid.data and stat.S_IMODE(token_file.stat().st_mode) == 0o600
    r = requests.get(f"{url}/", allow_redirects=False)
    assert r.status_code == 303 and r.headers["Location"] == "/login"
    assert requests.get(f"{url}/login").status_code == 200
    for path in ("/api/cluster", "/api/session", "/api/dead", "/static/console.js"):
        assert requests.get(f"{url}{path}", allow_redirects=False).status_code in (401, 303), path
    assert requests.get(f"{url}/api/cluster").json()["error"]["code"] == 401
    # A forged cookie (right form, wrong signature) is no session either.
    forged = {auth.COOKIE: "1700000000." + "0" * 64}
    assert requests.get(f"{url}/api/cluster", cookies=forged).status_code == 401
    # /metrics wants the namespace secret, as on every service.
    assert requests.get(f"{url}/metrics").status_code == 401
    scraped = requests.get(f"{url}/metrics", headers={SECRET_HEADER: grid.config().secret})
    assert scraped.status_code == 200 and "grid_requests_total" in scraped.text


def test_wrong_token_is_refused(url: str, token: str) -> None:
    s = requests.Session()
    for wrong in ("", "nope", token[:-1], token + "x"):
        r = s.post(f"{url}/login", data={"token": wrong}, allow_redirects=False)
        assert r.status_code == 401 and "Set-Cookie" not in r.headers, wrong
        assert "Wrong token" in r.text
    assert s.get(f"{url}/api/cluster").status_code == 401


def test_changes_need_the_csrf_token(grid: LocalGrid, url: str, session: requests.Session) -> None:
    volume = rawx_rows(grid)[0]["id"]
    lock = f"{url}/api/volumes/{volume}/lock"
    assert session.post(lock).status_code == 403
    assert session.post(lock, headers={"X-CSRF-Token": "0" * 64}).status_code == 403
    assert session.post(f"{url}/api/dead/retry", json={}).status_code == 403
    csrf = session.get(f"{url}/api/session").json()["csrf"]
    # The right token from a page of another origin: refused too.
    assert session.post(lock, headers={"X-CSRF-Token": csrf, "Origin": "http://evil.example"}).status_code == 403
    assert not any(r["locked"] for r in rawx_rows(grid))
    # Without the session cookie, the CSRF token alone is nothing.
    assert requests.post(lock, headers={"X-CSRF-Token": csrf}).status_code == 401
    assert session.post(f"{url}/api/volumes/rawx-0000000000000000/lock", headers={"X-CSRF-Token": csrf}
                        ).status_code == 404
    assert session.post(f"{url}/logout").status_code == 403
    out = session.post(f"{url}/logout", headers={"X-CSRF-Token": csrf}, allow_redirects=False)
    assert out.status_code == 303 and auth.COOKIE not in session.cookies


def test_grid_console_prints_the_url_and_token(grid: LocalGrid, url: str, token: str) -> None:
    shown = run_grid_cli(grid.config_path, "console", env={**os.environ, "COLUMNS": "250"}).stdout.decode()
    assert url in shown and token in shown


def test_api_lists_buckets_series_and_volumes(session: requests.Session, url: str) -> None:
    buckets = session.get(f"{url}/api/buckets").json()["buckets"]
    photos = next(b for b in buckets if b["bucket"] == "photos")
    assert photos["objects"] == 4 and photos["bytes"] == 3 * 200_000 + 1 and photos["policy"]
    def samples() -> list[dict[str, Any]]:
        got = session.get(f"{url}/api/series").json()["samples"]
        return got if len(got) >= 2 else []

    samples = wait_for("two samples", samples)
    assert samples[-1]["up"] == 4 and samples[-1]["free_bytes"] > 0 and samples[-1]["bytes_in"] is not None
    volumes = session.get(f"{url}/api/cluster").json()["volumes"]
    assert len(volumes) == 4 and all(v["location"].startswith("site1.rack1.node") and not v["dead"] for v in volumes)


# -- in the browser ------------------------------------------------------------------------------------------------


def login(browser: Any, url: str, token: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{url}/")
    assert browser.current_url.endswith("/login")
    browser.find_element(By.ID, "token").send_keys(token)
    browser.find_element(By.ID, "login").click()
    wait_for("the cluster picture", lambda: browser.find_elements(By.CSS_SELECTOR, "#cluster g.volume"), 10)
    cookie = browser.get_cookie(auth.COOKIE)
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"


def volume_state(browser: Any, volume: str) -> str | None:
    """The state the picture draws for a volume, read in one script: the page redraws it every 2 s, so an
    element found in one call may be gone by the next."""
    return browser.execute_script(
        "const g = document.querySelector(`#cluster g.volume[data-volume='${arguments[0]}']`);"
        "return g ? g.dataset.state : null;", volume)


def click(browser: Any, css: str) -> bool:
    """Click a button in one script (see :func:`volume_state`); whether it was there."""
    return browser.execute_script("const b = document.querySelector(arguments[0]); if (b) b.click(); return !!b;",
                                  css)


def test_browser_locks_and_unlocks_a_volume(browser: Any, grid: LocalGrid, url: str, token: str) -> None:

    login(browser, url, token)
    volume = rawx_rows(grid)[1]["id"]
    wait_for("the lock button", lambda: click(browser, f'button[id="lock-{volume}"]'), 10)
    wait_for("the conscience to lock it", lambda: next(r for r in rawx_rows(grid) if r["id"] == volume)["locked"], 10)
    assert next(r for r in rawx_rows(grid) if r["id"] == volume)["score_put"] == 0
    wait_for("the page to show it locked", lambda: volume_state(browser, volume) == "LOCKED", 10)
    wait_for("the unlock button", lambda: click(browser, f'button[id="unlock-{volume}"]'), 10)
    wait_for("the conscience to unlock it",
             lambda: not next(r for r in rawx_rows(grid) if r["id"] == volume)["locked"], 10)
    wait_for("the page to show it up", lambda: volume_state(browser, volume) == "up", 10)


def test_browser_lists_and_replays_dead_letters(browser: Any, grid: LocalGrid, url: str) -> None:
    from selenium.webdriver.common.by import By

    rows = wait_for("the dead letter on the page", lambda: browser.execute_script(
        "return [...document.querySelectorAll('#dead tbody tr')].map((r) => r.textContent);"), 20)
    assert len(rows) == 1 and "photos/poison/1" in rows[0] and "refusing poison/1" in rows[0]
    buckets = browser.find_element(By.ID, "buckets").text
    assert "photos" in buckets and "4" in buckets
    Path(os.environ[FLAG_ENV]).touch()
    assert click(browser, "#dead button.retry")
    wait_for("the dead letters to empty", lambda: browser.find_element(By.ID, "no-dead").is_displayed(), 15)


def test_browser_shows_a_killed_storage_server_down_within_seconds(
        browser: Any, grid: LocalGrid, url: str) -> None:
    from selenium.webdriver.common.by import By

    victim = next(s for s in grid.services() if s.type == "rawx" and s.location.endswith("node2.vol2"))
    volume = next(r["id"] for r in rawx_rows(grid) if r["addr"] == victim.addr)
    assert volume_state(browser, volume) == "up"
    os.kill(victim.pid, signal.SIGKILL)
    wait_for("the process to die", lambda: not pid_alive(victim.pid), 5)
    # The console's scrape is refused at once; the conscience calls it silent after its timeout (5 s).
    wait_for("the page to mark it dead", lambda: volume_state(browser, volume) in ("UNREACHABLE", "DOWN"), 6)
    wait_for("the page to show it down", lambda: volume_state(browser, volume) == "DOWN", 12)
    row = browser.execute_script("const r = document.querySelector(`#volumes tr[data-volume='${arguments[0]}']`);"
                                 "return [r.className, r.textContent];", volume)
    assert "dead" in row[0] and "DOWN" in row[1]
    wait_for("the health line", lambda: "DEGRADED" in browser.find_element(By.ID, "health").text, 10)
    if shot := os.environ.get("GRID_CONSOLE_SCREENSHOT"):
        browser.save_screenshot(shot)
