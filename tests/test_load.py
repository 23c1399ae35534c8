"""Many users at once (issue 4, item 5): 20 sessions, each its own account, drawing through one proxy.

Bounded in count and time, loopback only. It asserts no cross-talk (every export reached the
server with its own session's token), no failures and bounded growth; the figures are printed
(`pytest -s`), never asserted as timings.
"""

from __future__ import annotations

import resource
import statistics
import threading
import time

import requests

from secure_layers.config import Settings
from secure_layers.connection import connect
from secure_layers.proxy import HandleRegistry, export_path
from tests.arcgis_double import ArcGISDouble
from tests.conftest import APP_URL
from tests.test_proxy import ProxyServer

SESSIONS = 20
EXPORTS_PER_SESSION = 8


def view_for(session: int, step: int) -> dict[str, str]:
    """A bbox unique to each session and step, so every export can be traced to its session."""
    x = -13050000 + session * 1000 + step
    return {"bbox": f"{x},4000000,{x + 50000},4050000", "bboxSR": "3857", "size": "256,256", "f": "image"}


def test_twenty_sessions_at_once_never_cross():
    settings = Settings(connect_timeout=10.0, read_timeout=30.0)  # 20 sign-ins at once on 2 cores
    threads_before = threading.active_count()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    registry = HandleRegistry(max_entries=64)
    with ArcGISDouble() as double, ProxyServer(registry) as proxy:
        results: dict[int, list] = {}

        def user_session(index: int) -> None:
            name = f"crew{index + 1:02d}"
            conn = connect(settings, double.service_url, name, name, APP_URL)
            handle = registry.register(f"session-{index}", conn.client, conn.info, conn.sign_in.deadline)
            token = conn.sign_in.auth.current_token().value
            timings, statuses = [], []
            with requests.Session() as browser:
                for step in range(EXPORTS_PER_SESSION):
                    started = time.perf_counter()
                    reply = browser.get(proxy + export_path(handle), params=view_for(index, step), timeout=20)
                    timings.append(time.perf_counter() - started)
                    statuses.append((reply.status_code, reply.content[:4]))
            registry.forget(handle)
            conn.sign_in.close()
            results[index] = [token, timings, statuses]

        started = time.perf_counter()
        workers = [threading.Thread(target=user_session, args=(i,)) for i in range(SESSIONS)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
        elapsed = time.perf_counter() - started

        assert sorted(results) == list(range(SESSIONS))
        assert all(s == (200, b"\x89PNG") for _, _, statuses in results.values() for s in statuses)
        tokens = {index: token for index, (token, _, _) in results.items()}
        assert len(set(tokens.values())) == SESSIONS
        exports = [r for r in double.requests if r.path.endswith("/MapServer/export")]
        assert len(exports) == SESSIONS * EXPORTS_PER_SESSION
        for export in exports:  # each export carried the token of the session whose bbox it asked for
            session = (int(float(export.query["bbox"][0].split(",")[0])) + 13050000) // 1000
            assert export.headers["X-Esri-Authorization"] == f"Bearer {tokens[session]}"
        assert len(registry) == 0

    timings = sorted(t for _, session_timings, _ in results.values() for t in session_timings)
    time.sleep(0.5)
    threads_after = threading.active_count()
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        f"\nload: {SESSIONS} sessions x {EXPORTS_PER_SESSION} exports = {len(timings)} images in {elapsed:.2f} s; "
        f"median {statistics.median(timings) * 1000:.0f} ms, p95 {timings[int(len(timings) * 0.95)] * 1000:.0f} ms; "
        f"threads {threads_before} -> {threads_after}; max RSS {rss_before // 1024} -> {rss_after // 1024} MiB; "
        "cross-talk 0"
    )
    assert threads_after <= threads_before + 2
