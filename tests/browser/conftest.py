"""Real-browser fixtures: the ArcGIS Server double, `streamlit run app.py`, offline Chromium.

* `arcgis_double` (session): the strict double, on a thread in this pytest process.
* `app_server` (session): `streamlit run app.py` as a subprocess, cwd = repo root, with
  `SECURE_LAYERS_SERVICE_URL` pointing at the double; ready when `/_stcore/health` answers.
* pytest-playwright overrides: Debian's `/usr/bin/chromium` (no `playwright install` here),
  a 1300x900 viewport, and a `context` whose non-loopback requests are all answered locally
  (`offline_assets`). Each test gets a fresh context and page, so a fresh Streamlit session.

Without chromium or the npm copy of Leaflet the tests skip, or FAIL when the env var CI is set.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.arcgis_double import ArcGISDouble
from tests.browser import offline_assets
from tests.browser.app_page import AppPage, AppServer

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 60.0


@pytest.fixture(scope="session", autouse=True)
def browser_prerequisites() -> None:
    """Skip (locally) or fail (CI) the whole folder when chromium or Leaflet's files are missing."""
    missing = offline_assets.missing_prerequisites()
    if not missing:
        return
    message = "browser tests cannot run: " + "; ".join(missing)
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode} before it was healthy:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {STARTUP_TIMEOUT:.0f}s:\n{_tail(log)}")


@pytest.fixture(scope="session")
def arcgis_double() -> Iterator[ArcGISDouble]:
    double = ArcGISDouble().start()
    try:
        yield double
    finally:
        double.stop()


@pytest.fixture
def double(arcgis_double: ArcGISDouble) -> ArcGISDouble:
    """The session's double with an empty request log, so a test sees only its own traffic."""
    arcgis_double.clear_requests()
    return arcgis_double


@pytest.fixture(scope="session")
def app_server(arcgis_double: ArcGISDouble, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    port = _free_port()
    log = tmp_path_factory.mktemp("streamlit") / "streamlit.log"
    env = {**os.environ, "SECURE_LAYERS_SERVICE_URL": arcgis_double.service_url}
    command = [
        sys.executable, "-m", "streamlit", "run", "app.py",
        "--server.port", str(port),
        "--server.headless", "true",
        "--server.address", "127.0.0.1",
        "--browser.gatherUsageStats", "false",
        "--server.fileWatcherType", "none",
    ]  # fmt: skip
    with open(log, "w") as out:
        proc = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_healthy(f"http://127.0.0.1:{port}/_stcore/health", proc, log)
        yield AppServer(f"http://127.0.0.1:{port}/", f"http://127.0.0.1:{port}", port, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


# --- pytest-playwright: Debian chromium, fixed viewport, no network ------------------------


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict, browser_prerequisites: None) -> dict:
    return {
        **browser_type_launch_args,
        "executable_path": offline_assets.CHROMIUM,
        "args": offline_assets.CHROMIUM_ARGS,
    }


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args: dict) -> dict:
    return {**browser_context_args, "viewport": {"width": 1300, "height": 900}}


@pytest.fixture
def offline() -> offline_assets.OfflineAssets:
    return offline_assets.OfflineAssets()


@pytest.fixture
def context(context, offline: offline_assets.OfflineAssets):
    offline.install(context)
    yield context


@pytest.fixture
def app(page, app_server: AppServer) -> AppPage:
    """A fresh page (so a fresh Streamlit session) with the app loaded and the basemap drawn."""
    return AppPage(page, app_server).open()
