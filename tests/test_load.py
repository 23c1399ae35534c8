"""Many users at once (issue 4, item 5): sessions with their own accounts drawing through one proxy.

Loopback only, bounded in count and time. A burst: 20 sessions sign in and draw a few images at
once. A soak: 20 sessions draw without pause for `SECURE_LAYERS_SOAK_SECONDS` (default 20) while
the double's clock jumps past their short-lived tokens, so each session renews again and again.
Both assert no cross-talk (every export reached the server with its own session's token), no
failures and bounded growth (registry, threads, memory). The figures go to the reliability report
and are printed (`pytest -s`); timings are never asserted.
"""

from __future__ import annotations

import os
import resource
import statistics
import threading
import time
from array import array
from dataclasses import dataclass, field

import pytest
import requests

from secure_layers.config import Settings
from secure_layers.connection import connect
from secure_layers.proxy import HandleRegistry, export_path
from tests.arcgis_double import ArcGISDouble, RecordedRequest
from tests.conftest import APP_URL
from tests.test_proxy import ProxyServer

SESSIONS = 20
EXPORTS_PER_SESSION = 8
PNG = b"\x89PNG"
LOAD = pytest.mark.reliability("Load")

SOAK_SECONDS = max(float(os.environ.get("SECURE_LAYERS_SOAK_SECONDS", "20")), 5.0)
TOKEN_MINUTES = 1  # the soak's tokens live one minute on the double's clock
CLOCK_JUMP = TOKEN_MINUTES * 60 + 1  # seconds: past the end of every token issued so far
JUMP_EVERY = 2.0  # seconds of real time between jumps: each session renews about this often
SAMPLE_EVERY = 0.25  # seconds between RSS / thread-count samples
WARM_UP = 0.25  # the first quarter of the soak fills pools and caches; growth is measured after it
GROWTH_LIMIT_MIB = 64  # generous: a leak per image (20 sessions x hundreds of images) goes far past it


def view_for(session: int, step: int) -> dict[str, str]:
    """A bbox unique to each session (and step, up to 1000), so every export can be traced to its session."""
    x = -13050000 + session * 1000 + step % 1000
    return {"bbox": f"{x},4000000,{x + 50000},4050000", "bboxSR": "3857", "size": "256,256", "f": "image"}


def session_of(export: RecordedRequest) -> int:
    """The session whose view an export (as the double received it) asked for."""
    return (int(float(export.query["bbox"][0].split(",")[0])) + 13050000) // 1000


def token_of(request: RecordedRequest) -> str:
    return request.headers.get("X-Esri-Authorization", "").removeprefix("Bearer ")


def median_and_p95_ms(timings) -> tuple[int, int]:
    ordered = sorted(timings)
    return round(statistics.median(ordered) * 1000), round(ordered[int(len(ordered) * 0.95)] * 1000)


def rss_mib() -> float:
    """This process's resident memory now (VmRSS), in MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def threads_settled(baseline: int, seconds: float = 5.0) -> int:
    """The thread count once finished workers have exited (polled, never slept blindly)."""
    until = time.monotonic() + seconds
    while threading.active_count() > baseline + 2 and time.monotonic() < until:
        time.sleep(0.05)
    return threading.active_count()


def report(reliability, title: str, figures: dict[str, object]) -> None:
    """Into the reliability report, and printed for `pytest -s`."""
    for name, value in figures.items():
        reliability.figure(name, value)
    reliability.saw(
        f"{figures['sessions held']} sessions, each its own account, drew {figures['images drawn']} images "
        f"through one proxy: no failure, cross-talk {figures['cross-talk']}, registry drained"
    )
    print(f"\n{title}: " + "; ".join(f"{name} {value}" for name, value in figures.items()))


@LOAD
def test_twenty_sessions_at_once_never_cross(reliability):
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
        assert all(s == (200, PNG) for _, _, statuses in results.values() for s in statuses)
        tokens = {index: token for index, (token, _, _) in results.items()}
        assert len(set(tokens.values())) == SESSIONS
        exports = [r for r in double.requests if r.path.endswith("/MapServer/export")]
        assert len(exports) == SESSIONS * EXPORTS_PER_SESSION
        # Each export must carry the token of the session whose bbox it asked for.
        crossed = [export.path for export in exports if token_of(export) != tokens[session_of(export)]]
        assert crossed == []
        assert len(registry) == 0

    timings = [t for _, session_timings, _ in results.values() for t in session_timings]
    threads_after = threads_settled(threads_before)
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    median, p95 = median_and_p95_ms(timings)
    report(
        reliability,
        "load",
        {
            "sessions held": SESSIONS,
            "images drawn": len(timings),
            "seconds": round(elapsed, 2),
            "median ms": median,
            "p95 ms": p95,
            "threads start": threads_before,
            "threads end": threads_after,
            "max RSS start MiB": rss_before // 1024,
            "max RSS end MiB": rss_after // 1024,
            "cross-talk": len(crossed),
        },
    )
    assert threads_after <= threads_before + 2


# --- the soak -------------------------------------------------------------------------------------


@dataclass
class SoakSession:
    """What one soak session met: every token it held, its timings and any failed image."""

    index: int
    tokens: set[str] = field(default_factory=set)
    timings: array = field(default_factory=lambda: array("d"))
    failures: list[str] = field(default_factory=list)

    @property
    def account(self) -> str:
        return f"crew{self.index + 1:02d}"


@dataclass
class Wire:
    """What reached the double, drained as the soak goes so its record stays small."""

    images: int = 0
    rejected: int = 0  # exports answered 498: their token had expired on the double's clock
    unexpected: int = 0
    token_requests: int = 0
    seen: set[tuple[int, str]] = field(default_factory=set)  # (session of the bbox, token sent)

    def drain(self, double: ArcGISDouble) -> None:
        for request in double.take_requests():
            if request.path.endswith("/generateToken"):
                self.token_requests += 1
            elif request.path.endswith("/MapServer/export"):
                self.seen.add((session_of(request), token_of(request)))
                if request.error_code == 498:
                    self.rejected += 1
                elif request.error_code is None and request.status == 200:
                    self.images += 1
                else:
                    self.unexpected += 1


@dataclass
class Sample:
    at: float
    rss_mib: float
    threads: int


class Monitor(threading.Thread):
    """Every SAMPLE_EVERY: sample memory and threads, drain the wire; every JUMP_EVERY: jump the clock."""

    def __init__(self, double: ArcGISDouble, wire: Wire) -> None:
        super().__init__(name="soak-monitor", daemon=True)
        self.double, self.wire = double, wire
        self.samples: list[Sample] = []
        self.jumps = 0
        self.halt = threading.Event()

    def run(self) -> None:
        next_jump = time.monotonic() + JUMP_EVERY
        while not self.halt.wait(SAMPLE_EVERY):
            self.samples.append(Sample(time.monotonic(), rss_mib(), threading.active_count()))
            self.wire.drain(self.double)
            if time.monotonic() >= next_jump:
                self.double.advance(CLOCK_JUMP)  # every token issued so far expires on the double
                self.jumps += 1
                next_jump += JUMP_EVERY


def soak_session(session: SoakSession, double, proxy: str, registry, start: threading.Barrier, until: list) -> None:
    """Sign in as its own account, wait for the others, then draw without pause until the soak ends."""
    settings = Settings(connect_timeout=10.0, read_timeout=30.0, token_minutes=TOKEN_MINUTES)
    conn = connect(settings, double.service_url, session.account, session.account, APP_URL, stay_signed_in=True)
    handle = registry.register(f"soak-{session.index}", conn.client, conn.info, conn.sign_in.deadline)
    auth = conn.sign_in.auth
    session.tokens.add(auth.current_token().value)
    try:
        start.wait(60)
        with requests.Session() as browser:
            step = 0
            while time.monotonic() < until[0]:
                started = time.perf_counter()
                reply = browser.get(proxy + export_path(handle), params=view_for(session.index, step), timeout=60)
                session.timings.append(time.perf_counter() - started)
                if reply.status_code != 200 or not reply.content.startswith(PNG):
                    session.failures.append(f"{reply.status_code} {reply.text[:80]}")
                session.tokens.add(auth.current_token().value)  # renewed inside that export, if it expired
                step += 1
    finally:
        registry.forget(handle)
        conn.sign_in.close()


def cross_talk(sessions: list[SoakSession], wire: Wire) -> int:
    """Exports that reached the double with a token the session asking for that view never held."""
    return sum(token not in sessions[index].tokens for index, token in wire.seen)


def growth_after_warm_up(samples: list[Sample], started: float) -> tuple[float, float]:
    """Median RSS of the first and of the last third of the samples taken after the warm-up."""
    settled = [s.rss_mib for s in samples if s.at >= started + WARM_UP * SOAK_SECONDS]
    assert len(settled) >= 6, "too few samples to judge memory"
    third = len(settled) // 3
    return statistics.median(settled[:third]), statistics.median(settled[-third:])


@LOAD
@pytest.mark.timeout(SOAK_SECONDS + 180)
def test_twenty_sessions_soak_with_renewals_and_nothing_grows(reliability):
    threads_start, rss_start = threading.active_count(), rss_mib()
    registry = HandleRegistry(max_entries=64)
    sessions = [SoakSession(index) for index in range(SESSIONS)]
    wire, until = Wire(), [0.0]
    with ArcGISDouble() as double, ProxyServer(registry) as proxy:
        monitor = Monitor(double, wire)

        def begin() -> None:  # runs once, when all 20 are signed in and before any of them draws
            until[0] = time.monotonic() + SOAK_SECONDS
            monitor.start()

        start = threading.Barrier(SESSIONS, action=begin)
        workers = [
            threading.Thread(target=soak_session, args=(s, double, proxy, registry, start, until)) for s in sessions
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(SOAK_SECONDS + 120)
        monitor.halt.set()
        monitor.join(10)
        wire.drain(double)
        soak_started = until[0] - SOAK_SECONDS

    threads_end = threads_settled(threads_start)
    timings = [t for s in sessions for t in s.timings]
    failures = [f"{s.account}: {f}" for s in sessions for f in s.failures]
    renewals = wire.token_requests - SESSIONS
    early, late = growth_after_warm_up(monitor.samples, soak_started)
    median, p95 = median_and_p95_ms(timings)
    report(
        reliability,
        "soak",
        {
            "sessions held": SESSIONS,
            "seconds": round(SOAK_SECONDS),
            "images drawn": wire.images,
            "renewals": renewals,
            "clock jumps": monitor.jumps,
            "median ms": median,
            "p95 ms": p95,
            "RSS start MiB": round(rss_start),
            "RSS after warm-up MiB": round(early),
            "RSS end MiB": round(late),
            "threads start": threads_start,
            "threads peak": max(s.threads for s in monitor.samples),
            "threads end": threads_end,
            "cross-talk": cross_talk(sessions, wire),
        },
    )
    assert not any(worker.is_alive() for worker in workers)
    assert all(s.timings for s in sessions)  # every session drew, none fell out
    assert failures == [] and wire.unexpected == 0
    assert wire.images == len(timings)  # every image a session got came from one export, none lost
    assert cross_talk(sessions, wire) == 0
    tokens = [token for s in sessions for token in s.tokens]
    assert len(tokens) == len(set(tokens))  # no token was ever held by two sessions
    assert monitor.jumps >= 2 and all(len(s.tokens) >= 2 for s in sessions)  # every session renewed
    assert renewals == wire.rejected  # each renewal answered an expired token, retried once, never looped
    assert len(registry) == 0
    assert threads_end <= threads_start + 2
    assert late - early < GROWTH_LIMIT_MIB
