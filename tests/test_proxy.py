"""The export proxy over real HTTP: it serves a registered service's images and nothing else."""

from __future__ import annotations

import gc
import threading
import time

import pytest
import requests
import uvicorn
from starlette.applications import Starlette

import secure_layers.proxy as proxy_module
from secure_layers.connection import connect
from secure_layers.proxy import HandleRegistry, export_path, routes
from secure_layers.state import _HandleLease
from tests.conftest import APP_URL

VIEW = {
    "bbox": "-13050000,4000000,-12950000,4100000",
    "bboxSR": "3857",
    "imageSR": "3857",
    "size": "600,400",
    "format": "png32",
    "transparent": "true",
    "f": "image",
}


class ProxyServer:
    """The proxy routes alone, served by uvicorn on a free loopback port."""

    def __init__(self, registry: HandleRegistry, alive: set[str] | None = None):
        check = (lambda session: session in alive) if alive is not None else (lambda _: True)
        app = Starlette(routes=routes(registry, session_alive=check))
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *_) -> None:
        self.server.should_exit = True
        self.thread.join(5)


@pytest.fixture
def registry():
    return HandleRegistry(max_entries=8)


@pytest.fixture
def conn(double, settings):
    connection = connect(settings, double.service_url, "user1", "user1", APP_URL)
    yield connection
    connection.sign_in.close()


@pytest.fixture
def proxy(registry):
    with ProxyServer(registry) as base:
        yield base


def register(registry, conn, session="session-a") -> str:
    return registry.register(session, conn.client, conn.info, conn.sign_in.deadline)


def test_a_registered_handle_serves_the_export_with_the_token_added_server_side(registry, conn, proxy, double):
    handle = register(registry, conn)
    double.clear_requests()
    reply = requests.get(proxy + export_path(handle), params=VIEW, timeout=5)
    assert reply.status_code == 200
    assert reply.headers["Content-Type"] == "image/png"
    assert reply.headers["Cache-Control"] == "private, no-store"
    assert reply.content.startswith(b"\x89PNG")
    [upstream] = double.requests
    assert upstream.headers["X-Esri-Authorization"] == f"Bearer {double.issued_tokens[0]}"
    assert upstream.headers["Referer"] == APP_URL
    for secret in double.issued_tokens:
        assert secret not in reply.url and secret.encode() not in reply.content
        assert all(secret not in value for value in reply.headers.values())


def test_browser_headers_and_cookies_are_not_forwarded(registry, conn, proxy, double):
    handle = register(registry, conn)
    double.clear_requests()
    requests.get(
        proxy + export_path(handle),
        params=VIEW,
        timeout=5,
        headers={"Cookie": "_streamlit_xsrf=abc", "Authorization": "Bearer browser", "X-Forwarded-For": "1.2.3.4"},
    )
    [upstream] = double.requests
    assert not {"Cookie", "Authorization", "X-Forwarded-For"} & set(upstream.headers)


def test_handles_are_unguessable_and_distinct(registry, conn):
    handles = {register(registry, conn) for _ in range(8)}
    assert len(handles) == 8
    assert all(len(handle) >= 43 for handle in handles)  # 32 random bytes, base64url


@pytest.mark.parametrize("handle", ["unknown", "A" * 43, "..%2F..%2Fetc"])
def test_an_unknown_handle_is_refused(proxy, handle):
    reply = requests.get(proxy + export_path(handle), params=VIEW, timeout=5)
    assert reply.status_code == 404


def test_sign_out_kills_the_handle(registry, conn, proxy):
    handle = register(registry, conn)
    assert requests.get(proxy + export_path(handle), params=VIEW, timeout=5).status_code == 200
    registry.forget(handle)
    assert requests.get(proxy + export_path(handle), params=VIEW, timeout=5).status_code == 404


def test_a_handle_dies_with_its_token(conn, double):
    now = [time.time()]
    registry = HandleRegistry(clock=lambda: now[0])
    handle = register(registry, conn)
    with ProxyServer(registry) as base:
        now[0] = conn.sign_in.expires + 1
        assert requests.get(base + export_path(handle), params=VIEW, timeout=5).status_code == 404
    assert len(registry) == 0


def test_a_handle_whose_token_renews_itself_outlives_the_first_token(double, settings):
    conn = connect(settings, double.service_url, "user1", "user1", APP_URL, stay_signed_in=True)
    now = [conn.sign_in.expires + 1]
    registry = HandleRegistry(clock=lambda: now[0])
    handle = register(registry, conn)
    assert registry.is_registered(handle)
    conn.sign_in.close()


def test_a_handle_dies_when_its_session_ends(registry, conn):
    alive = {"session-a"}
    handle = register(registry, conn, session="session-a")
    with ProxyServer(registry, alive) as base:
        assert requests.get(base + export_path(handle), params=VIEW, timeout=5).status_code == 200
        alive.clear()
        assert requests.get(base + export_path(handle), params=VIEW, timeout=5).status_code == 404


def test_the_session_lease_forgets_the_handle_when_collected(registry, conn):
    handle = register(registry, conn)
    lease = _HandleLease(registry, handle)
    assert registry.is_registered(handle)
    del lease
    gc.collect()
    assert not registry.is_registered(handle)


def test_the_registry_is_bounded(conn):
    registry = HandleRegistry(max_entries=3)
    handles = [register(registry, conn) for _ in range(5)]
    assert len(registry) == 3
    assert [registry.is_registered(h) for h in handles] == [False, False, True, True, True]


@pytest.mark.parametrize(
    "extra",
    [{"token": "stolen"}, {"where": "1=1"}, {"f": "json"}, {"size": "9000,9000"}, {"bbox": "x"}, {"layers": "all"}],
)
def test_parameters_outside_the_whitelist_are_refused(registry, conn, proxy, double, extra):
    handle = register(registry, conn)
    double.clear_requests()
    reply = requests.get(proxy + export_path(handle), params={**VIEW, **extra}, timeout=5)
    assert reply.status_code == 400
    assert reply.text.startswith("Bad export request:")
    assert double.requests == []


def test_a_repeated_parameter_is_refused(registry, conn, proxy):
    handle = register(registry, conn)
    reply = requests.get(
        proxy + export_path(handle) + "?bbox=1,2,3,4&bbox=-13050000,4000000,-12950000,4100000", timeout=5
    )
    assert reply.status_code == 400


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_only_get_is_served(registry, conn, proxy, method):
    handle = register(registry, conn)
    assert requests.request(method, proxy + export_path(handle), params=VIEW, timeout=5).status_code == 405


def test_other_paths_under_a_handle_are_not_served(registry, conn, proxy):
    handle = register(registry, conn)
    path = export_path(handle).replace("/export", "/identify")
    assert requests.get(proxy + path, params=VIEW, timeout=5).status_code == 404
    assert requests.get(proxy + path.replace("/MapServer/identify", "/MapServer"), timeout=5).status_code == 404


def test_a_rejected_token_is_recorded_for_the_session_and_answered_401(registry, conn, proxy, double):
    handle = register(registry, conn)
    double.revoke_all_tokens()
    reply = requests.get(proxy + export_path(handle), params=VIEW, timeout=5)
    assert reply.status_code == 401
    assert type(registry.problem(handle)).__name__ == "TokenInvalid"
    assert "Sign in again" in registry.problem(handle).message


@pytest.mark.reliability("Faults")
def test_a_server_that_went_down_is_recorded_and_cleared_when_it_answers_again(
    registry, conn, proxy, double, reliability
):
    handle = register(registry, conn)
    double.stall("/MapServer/export", seconds=5)
    assert requests.get(proxy + export_path(handle), params=VIEW, timeout=10).status_code == 502
    assert "did not answer" in registry.problem(handle).message
    reliability.saw(registry.problem(handle).message)
    assert requests.get(proxy + export_path(handle), params=VIEW, timeout=10).status_code == 200
    assert registry.problem(handle) is None


def test_a_fault_nobody_foresaw_is_reported_by_name_and_the_next_image_works(
    registry, conn, proxy, monkeypatch, caplog
):
    handle = register(registry, conn)
    real_export = proxy_module.export_image

    def a_bug_on_the_first_image(*args, **kwargs):
        monkeypatch.setattr(proxy_module, "export_image", real_export)
        raise KeyError("https://gis.example.test/arcgis/rest/services/x/MapServer/export?token=TOKEN-IN-BUG-TEXT")

    monkeypatch.setattr(proxy_module, "export_image", a_bug_on_the_first_image)
    reply = requests.get(proxy + export_path(handle), params=VIEW, timeout=10)
    assert (reply.status_code, reply.text) == (502, "Something went wrong")
    assert "Drawing the map failed on a problem the app did not expect (KeyError)" in registry.problem(handle).message
    assert "Unexpected KeyError while drawing the map" in caplog.text
    assert "TOKEN-IN-BUG-TEXT" not in caplog.text + registry.problem(handle).message
    assert requests.get(proxy + export_path(handle), params=VIEW, timeout=10).status_code == 200
    assert registry.problem(handle) is None


def test_the_layer_script_is_served(proxy):
    reply = requests.get(proxy + "/api/secure-layers/assets/dynamic-layer.js", timeout=5)
    assert reply.status_code == 200
    assert reply.headers["Content-Type"].startswith("application/javascript")
    assert "L.secureLayers" in reply.text


def test_head_is_refused_without_reaching_the_server(registry, conn, proxy, double):
    handle = register(registry, conn)
    double.clear_requests()
    assert requests.head(proxy + export_path(handle), params=VIEW, timeout=5).status_code == 405
    assert double.requests == []


@pytest.mark.parametrize("path", ["/MapServer", "/MapServer/identify", "/MapServer/legend", "/anything"])
def test_nothing_else_under_the_prefix_is_served(registry, conn, proxy, path):
    handle = register(registry, conn)
    reply = requests.get(
        proxy + export_path(handle).replace("/MapServer/export", path), params={"f": "json"}, timeout=5
    )
    assert reply.status_code == 404 and reply.text == "Not found."
