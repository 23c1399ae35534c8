"""Start and stop the Koop peer (`tests/peers/koop`) on a free loopback port, and say where it is.

Koop (npm, installed by `npm ci` in `tests/peers/koop`, which `scripts/test.sh` runs) is an
independent implementation of ArcGIS's `generateToken`, 498/499 envelopes and FeatureServer.
`KoopPeer.start` runs `node server.js` from that folder with `KOOP_NAMESPACE=arcgis` (so its URLs
look like ArcGIS Server's), a fresh signing secret, and its log in a file; it returns when
`/status` answers and shows the log's tail if Koop does not come up.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

KOOP_DIR = Path(__file__).resolve().parent / "koop"
PACKAGES = ("@koopjs/koop-core", "@koopjs/auth-direct-file", "@koopjs/provider-file-geojson")
NAMESPACE = "arcgis"
SERVICE = "fire_perimeters"  # data/fire_perimeters.geojson
TOKEN_MINUTES = 15  # Koop's own lifetime; our client asks for 60 and must trust Koop's `expires`
STARTUP_TIMEOUT = 30.0
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy


@dataclass(frozen=True)
class Account:
    username: str
    password: str = field(repr=False)


def accounts() -> list[Account]:
    """The test-only accounts of `koop/user-store.json`."""
    store = json.loads((KOOP_DIR / "user-store.json").read_text())
    return [Account(entry["username"], entry["password"]) for entry in store]


def missing_prerequisites() -> list[str]:
    """What stops Koop from starting here; empty when node and the npm packages are present."""
    missing = [] if shutil.which("node") else ["`node` is not on PATH"]
    absent = [name for name in PACKAGES if not (KOOP_DIR / "node_modules" / name / "package.json").is_file()]
    if absent:
        missing.append(f"{', '.join(absent)} not installed (run `cd tests/peers/koop && npm ci`)")
    return missing


@dataclass
class KoopPeer:
    """A running `node server.js`; the URLs are ArcGIS Server-shaped under `/arcgis`."""

    port: int
    secret: str = field(repr=False)
    log: Path
    process: subprocess.Popen | None = field(default=None, repr=False)
    startup_seconds: float = 0.0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def server_root(self) -> str:
        return f"{self.base}/{NAMESPACE}"

    @property
    def token_url(self) -> str:
        return f"{self.server_root}/rest/generateToken"

    @property
    def feature_server_url(self) -> str:
        return f"{self.server_root}/rest/services/{SERVICE}/FeatureServer"

    @property
    def layer_url(self) -> str:
        return f"{self.feature_server_url}/0"

    @property
    def map_server_url(self) -> str:
        """Koop has no MapServer; this is where one would be."""
        return f"{self.server_root}/rest/services/{SERVICE}/MapServer"

    @classmethod
    def start(cls, log: Path) -> KoopPeer:
        peer = cls(port=_free_port(), secret=secrets.token_urlsafe(32), log=log)
        env = {key: value for key, value in os.environ.items() if key != "KOOP_TOKEN_SHIM"}  # Koop as it ships
        env.update(
            PORT=str(peer.port),
            HOST="127.0.0.1",
            KOOP_NAMESPACE=NAMESPACE,
            KOOP_SECRET=peer.secret,
            KOOP_TOKEN_MINUTES=str(TOKEN_MINUTES),
            SUPPRESS_NO_CONFIG_WARNING="1",
        )
        started = time.monotonic()
        with open(log, "w") as out:
            peer.process = subprocess.Popen(
                ["node", "server.js"], cwd=KOOP_DIR, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        try:
            peer._wait_until_up()
        except BaseException:
            peer.stop()
            raise
        peer.startup_seconds = time.monotonic() - started
        return peer

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Koop exited with {self.process.returncode} before it was up:\n{self.tail()}")
            try:
                with _NO_PROXY.open(f"{self.base}/status", timeout=1) as response:
                    if json.load(response).get("success") is True:
                        return
            except (OSError, ValueError):
                time.sleep(0.1)
        raise RuntimeError(f"Koop's /status did not answer within {STARTUP_TIMEOUT:.0f}s:\n{self.tail()}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
