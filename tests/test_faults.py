"""Faults mid-session (issue 4, item 4): the server goes down, restarts, or stalls while a user is working.

Each case drives the app's own code paths: the dashboard script under Streamlit's AppTest for
what the user sees, and the export proxy over real HTTP for the map's images (what the browser
asks each time the map moves). Each asserts the message shown, what went over the wire to the
double, and that nothing the user chose (sublayers, opacity, the service itself) was lost.
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from streamlit.testing.v1 import AppTest

from secure_layers.proxy import REGISTRY, export_path
from tests.test_dashboard import APP_URL, layer_options, map_args, proxy_handle, sign_in, sign_in_again
from tests.test_proxy import VIEW, ProxyServer

FAULTS = pytest.mark.reliability("Faults")
READ_TIMEOUT = 2.0  # seconds: the operator's SECURE_LAYERS_READ_TIMEOUT in these tests
STALL = 3 * READ_TIMEOUT  # a reply that takes far longer than the app waits
SLACK = 3.0  # seconds on top of the read timeout for a busy test machine
PNG = b"\x89PNG"
FIRE_PERIMETER = (34.09, -116.865)  # a click here finds the fire perimeter polygon
# What the user chose before the fault: the containment lines hidden, the layer at 60 %.
CHOICES = {"s1-sublayer-0": True, "s1-sublayer-1": False, "s1-sublayer-2": True, "s1-opacity": 0.6}


@pytest.fixture
def app(double, monkeypatch):
    """Signed in as user1, the Wildfire service on the map, the user's CHOICES made."""
    monkeypatch.setenv("SECURE_LAYERS_SERVICE_URL", double.service_url)
    monkeypatch.setenv("SECURE_LAYERS_CONNECT_TIMEOUT", "2")
    monkeypatch.setenv("SECURE_LAYERS_READ_TIMEOUT", f"{READ_TIMEOUT:g}")
    at = AppTest.from_file("../dashboard.py", default_timeout=30)
    at.context = {"url": APP_URL, "timezone": "America/Los_Angeles"}
    at.run()
    sign_in(at, "user1", "user1")
    at.checkbox(key="s1-sublayer-1").uncheck()
    at.slider(key="s1-opacity").set_value(CHOICES["s1-opacity"]).run()
    assert choices(at) == CHOICES
    return at


@pytest.fixture
def proxy():
    """The app's export proxy on the app's own registry, as `app.py` serves it."""
    with ProxyServer(REGISTRY) as base:
        yield base


def choices(at: AppTest) -> dict:
    """Sublayer ticks and opacity of the first service, as the sidebar shows them."""
    ticks = {box.key: box.value for box in at.checkbox if box.key.startswith("s1-sublayer-")}
    return {**ticks, "s1-opacity": at.slider(key="s1-opacity").value}


def draw(proxy: str, at: AppTest, handle: str | None = None) -> requests.Response:
    """What the browser asks the proxy after a pan: the view plus the sublayers the map was given."""
    layers = re.search(r'"layers": "([^"]+)"', layer_options(at))
    params = {**VIEW, "layers": layers.group(1)} if layers else VIEW
    return requests.get(proxy + export_path(handle or proxy_handle(at)), params=params, timeout=STALL + 10)


def is_png(reply: requests.Response) -> bool:
    return reply.status_code == 200 and reply.content.startswith(PNG)


def sidebar_messages(at: AppTest) -> list[str]:
    return [m.value for kind in ("error", "warning") for m in getattr(at.sidebar, kind)]


def asks_for_password(at: AppTest) -> bool:
    return any(field.key.startswith("reauth_password_") for field in at.text_input)


def exports(double) -> list:
    return [r for r in double.requests if r.path.endswith("/MapServer/export")]


def sign_ins(double) -> int:
    return len([r for r in double.requests if r.path.endswith("/generateToken")])


def still_as_chosen(at: AppTest, handle: str) -> None:
    """The map, the service and the choices are all as the user left them; no password asked."""
    assert not at.exception
    assert choices(at) == CHOICES
    assert at.success[0].value == "Signed in as **user1**"
    assert proxy_handle(at) == handle and REGISTRY.is_registered(handle)
    assert '"layers": "show:0,2"' in layer_options(at) and '"opacity": 0.6' in layer_options(at)
    assert not asks_for_password(at)


def click_map(at: AppTest, lat: float, lng: float) -> AppTest:
    at.session_state["map"] = {"last_clicked": {"lat": lat, "lng": lng}, "zoom": 10}
    return at.run()


@FAULTS
def test_the_server_goes_down_mid_session_and_comes_back_on_the_same_port(app, proxy, double, reliability):
    handle, port = proxy_handle(app), double.port
    assert is_png(draw(proxy, app))
    token = double.issued_tokens[0]

    double.stop()
    refused = draw(proxy, app)  # the map's next image
    assert refused.status_code == 502 and refused.text == "Cannot reach the server"
    app.run()
    [warning] = sidebar_messages(app)
    assert warning.startswith("**Cannot reach the server.** 127.0.0.1 refused the connection")
    assert "the server is down" in warning and "redraws them when 127.0.0.1 answers again" in warning
    reliability.saw(warning)
    still_as_chosen(app, handle)

    click_map(app, *FIRE_PERIMETER)  # the next thing the user does: asks what is at a point
    [error] = app.main.error
    assert error.value.startswith("**Cannot reach the server.**") and "refused the connection" in error.value
    reliability.saw(error.value)
    still_as_chosen(app, handle)

    double.start()  # back on the same port with the same state: the token survived
    assert double.port == port
    double.clear_requests()
    assert is_png(draw(proxy, app))
    app.run()
    assert sidebar_messages(app) == [] and not app.main.error
    assert app.dataframe[0].value.to_dict("records")[0]["Name"] == "Fire perimeter"  # the click is answered now
    still_as_chosen(app, handle)
    [export] = exports(double)
    assert export.headers["X-Esri-Authorization"] == f"Bearer {token}"
    assert export.query["layers"] == ["show:0,2"]
    assert sign_ins(double) == 0 and double.issued_tokens == [token]  # no new sign-in


@FAULTS
def test_a_restart_that_drops_every_token_asks_for_the_password_alone_and_keeps_the_choices(
    app, proxy, double, reliability
):
    old_handle = proxy_handle(app)
    old_token = double.issued_tokens[0]
    double.stop()
    double.revoke_all_tokens()  # what a restart does to the tokens it had issued
    double.start()
    double.clear_requests()

    assert draw(proxy, app, old_handle).status_code == 401  # the map's next image
    app.run()
    [error] = app.sidebar.error
    assert error.value.startswith("**Session expired.**") and "the server may have restarted" in error.value
    assert "Sign in again as **user1** to 127.0.0.1" in [m.value for m in app.sidebar.markdown]
    [hidden] = app.main.warning
    assert "Enter your password in the sidebar to bring them back" in hidden.value
    reliability.saw(error.value)
    reliability.saw(hidden.value)
    assert "dynamicLayer" not in layer_options(app)  # no layer that cannot be drawn
    assert choices(app) == CHOICES

    sign_in_again(app, "user1")  # the password alone: no URL, no user name
    assert not app.error and not app.warning
    still_as_chosen(app, proxy_handle(app))
    assert proxy_handle(app) != old_handle and not REGISTRY.is_registered(old_handle)
    assert is_png(draw(proxy, app))
    assert draw(proxy, app, old_handle).status_code == 404
    rejected, drawn = exports(double)
    assert (rejected.error_code, rejected.headers["X-Esri-Authorization"]) == (498, f"Bearer {old_token}")
    new_token = double.issued_tokens[-1]
    assert (drawn.error_code, drawn.headers["X-Esri-Authorization"]) == (None, f"Bearer {new_token}")
    assert drawn.query["layers"] == ["show:0,2"] and new_token != old_token
    [again] = [r for r in double.requests if r.path.endswith("/generateToken")]
    assert again.form["username"] == ["user1"]


@FAULTS
def test_with_stay_signed_in_a_restart_that_drops_every_token_goes_unnoticed(double, monkeypatch, proxy, reliability):
    monkeypatch.setenv("SECURE_LAYERS_SERVICE_URL", double.service_url)
    at = AppTest.from_file("../dashboard.py", default_timeout=30)
    at.context = {"url": APP_URL}
    at.run()
    at.checkbox(key="stay_signed_in").check()
    sign_in(at, "user1", "user1")
    double.stop()
    double.revoke_all_tokens()
    double.start()
    double.clear_requests()

    assert is_png(draw(proxy, at))  # one silent renewal inside the proxy's request
    at.run()
    assert sidebar_messages(at) == [] and not asks_for_password(at)
    reliability.saw(at.caption[0].value)
    assert "renewed automatically" in at.caption[0].value
    assert [(r.path.rsplit("/", 1)[-1], r.error_code) for r in double.requests] == [
        ("export", 498),
        ("generateToken", None),
        ("export", None),
    ]
    assert double.requests[-1].headers["X-Esri-Authorization"] == f"Bearer {double.issued_tokens[-1]}"


@FAULTS
def test_a_stalled_export_times_out_within_the_read_timeout_and_the_map_recovers(app, proxy, double, reliability):
    handle = proxy_handle(app)
    double.stall("/MapServer/export", seconds=STALL)
    with ThreadPoolExecutor(1) as browser:
        started = time.monotonic()
        pending = browser.submit(draw, proxy, app)  # the map waits for its image...
        app.slider(key="s1-opacity").set_value(0.8).run()  # ...while the user goes on in the sidebar
        assert not pending.done() and '"opacity": 0.8' in layer_options(app)
        stalled = pending.result()
        waited = time.monotonic() - started
    assert stalled.status_code == 502 and stalled.text == "Cannot reach the server"
    assert READ_TIMEOUT <= waited < READ_TIMEOUT + SLACK

    app.slider(key="s1-opacity").set_value(CHOICES["s1-opacity"]).run()
    [warning] = sidebar_messages(app)
    assert warning == (
        "**Cannot reach the server.** 127.0.0.1 did not answer within 2 seconds. "
        "The server may be busy or down; try again later. "
        "The map keeps your layers and redraws them when 127.0.0.1 answers again."
    )
    reliability.saw(warning)
    still_as_chosen(app, handle)

    assert is_png(draw(proxy, app))  # the stall is over
    app.run()
    assert sidebar_messages(app) == []
    still_as_chosen(app, handle)
    first, second = exports(double)
    assert first.headers["X-Esri-Authorization"] == second.headers["X-Esri-Authorization"]
    assert first.query["layers"] == second.query["layers"] == ["show:0,2"]
    assert sign_ins(double) == 1


@FAULTS
def test_a_stalled_reply_to_a_sidebar_action_times_out_and_the_action_works_once_it_ends(
    app, proxy, double, reliability
):
    handle = proxy_handle(app)
    double.stall("/Incidents_secure/MapServer", seconds=STALL)
    started = time.monotonic()
    sign_in(app, "", "", url=double.second_service_url)  # "Add another service" on the same server
    waited = time.monotonic() - started
    assert READ_TIMEOUT <= waited < READ_TIMEOUT + SLACK
    [error] = app.sidebar.error
    assert error.value == (
        "**Cannot reach the server.** 127.0.0.1 did not answer within 2 seconds. "
        "The server may be busy or down; try again later."
    )
    reliability.saw(error.value)
    assert len(re.findall(r"dynamicLayer\(", map_args(app)["feature_group"])) == 1
    still_as_chosen(app, handle)
    assert app.text_input(key="service_url").value == double.second_service_url  # the form as typed
    assert is_png(draw(proxy, app))  # the map kept drawing meanwhile

    sign_in(app, "", "", url=double.second_service_url)  # the same action again, the stall over
    assert not app.error
    assert len(re.findall(r"dynamicLayer\(", map_args(app)["feature_group"])) == 2
    assert choices(app) == CHOICES
    asked = [r for r in double.requests if r.path.endswith("/Incidents_secure/MapServer")]
    assert len(asked) == 2 and asked[0].headers["X-Esri-Authorization"] == asked[1].headers["X-Esri-Authorization"]
    assert sign_ins(double) == 1  # the one sign-in served both services
