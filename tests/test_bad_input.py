"""Bad input, table-driven (issue 4, item 1): each case is typed into the real sidebar form.

Every row signs in through `dashboard.py` (Streamlit AppTest) against the double over real
HTTP, with the fault the row names. The person must get a plain message that says what went
wrong and what to do, keep the URL and user name they typed, see no traceback and no layer,
and no request may carry their password anywhere it should not go.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import trustme
from streamlit.testing.v1 import AppTest

import secure_layers.connection
from tests.arcgis_double import ArcGISDouble
from tests.test_dashboard import APP_URL, a_bug, as_read, map_args, shown_text, sign_in

TIMEOUT_SECONDS = 2
RANGER, RANGER_PASSWORD = "ranger", "Ridge-Line-4471!"  # a distinctive password: finding it means a leak
SERVICE_PATH = "/arcgis/rest/services/Wildfire_secure_ac/MapServer"
LOGIN_PORTAL = b"<!DOCTYPE html><html><head><title>County sign-in</title></head><body><form>...</form></body></html>"
URL_PASSWORD = "Url-Typed-Secret-5520"  # a password typed into the URL: never shown back
TRUNCATED_JSON = b'{"currentVersion": 10.91, "mapName": "Wildfire", "layers": [{"id": 0, "name": "Fire'


@dataclass(frozen=True)
class BadInput:
    """One row: what the person typed, what the server did, and the words they must be shown."""

    name: str
    expected: str
    url: Callable[[ArcGISDouble], str] = lambda double: double.service_url
    username: str = RANGER
    password: str = RANGER_PASSWORD
    fault: Callable[[ArcGISDouble], None] = lambda double: None
    env: dict[str, str] = field(default_factory=dict)
    signs_in: bool = False  # the input is repaired and the sign-in goes ahead (with a notice)
    kept_url: Callable[[str], str] = lambda typed: typed  # what the URL field shows afterwards


def closed_port_url(double: ArcGISDouble) -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}{SERVICE_PATH}"


def stall_sign_in(double: ArcGISDouble) -> None:
    double.stall("/generateToken", seconds=10)


def login_portal_instead_of_json(double: ArcGISDouble) -> None:
    double.script("/generateToken", LOGIN_PORTAL, "text/html")


def broken_json(double: ArcGISDouble) -> None:
    double.script("/Wildfire_secure_ac/MapServer", TRUNCATED_JSON, "application/json")


def oversized_reply(double: ArcGISDouble) -> None:
    double.script("/Wildfire_secure_ac/MapServer", b"[" + b"0," * (3 * 1024 * 1024) + b"0]", "application/json")


def nested_too_deep(double: ArcGISDouble) -> None:
    double.script("/Wildfire_secure_ac/MapServer", b"[" * 100_000, "application/json")


def trickled_reply(double: ArcGISDouble) -> None:
    double.trickle("/Wildfire_secure_ac/MapServer", seconds_per_byte=0.2)  # a full reply would take minutes


def bad_gateway(double: ArcGISDouble) -> None:
    double.script("/generateToken", b"<html><body>502 Bad Gateway</body></html>", "text/html", status=502)


CASES = [
    BadInput("empty fields", "Enter both your user name and your password", username="", password=""),
    BadInput("blank user name", "Enter both your user name and your password", username="   "),
    BadInput("empty password", "Enter both your user name and your password", password=""),
    BadInput("empty URL", "Enter the MapServer URL", url=lambda d: ""),
    BadInput("not a URL", "is not a web address", url=lambda d: "wildfire map please"),
    BadInput("ftp URL", "is not a web address", url=lambda d: "ftp://gis.example.test" + SERVICE_PATH),
    BadInput(
        "user name inside the URL",
        "user name and password were taken out of the URL",
        url=lambda d: d.service_url.replace("http://", f"http://user1:{URL_PASSWORD}@"),
        kept_url=lambda typed: typed.replace(f"user1:{URL_PASSWORD}@", ""),
    ),
    BadInput(
        "a password inside an ftp URL",
        "user name and password were taken out of the URL",
        url=lambda d: f"ftp://user1:{URL_PASSWORD}@gis.example.test" + SERVICE_PATH,
        kept_url=lambda typed: typed.replace(f"user1:{URL_PASSWORD}@", ""),
    ),
    BadInput(
        "a password with a slash inside the URL",
        "user name and password were taken out of the URL",
        url=lambda d: d.service_url.replace("http://", f"http://user1:{URL_PASSWORD}/x@"),
        kept_url=lambda typed: typed.replace(f"user1:{URL_PASSWORD}/x@", ""),
    ),
    BadInput("an unclosed IPv6 bracket", "is not a valid web address", url=lambda d: "http://[::1" + SERVICE_PATH),
    BadInput(
        "a server name with a label over 63 characters",
        "is not a valid server name",
        url=lambda d: "https://" + "fire" * 18 + ".example.test" + SERVICE_PATH,
    ),
    BadInput(
        "a space in the server name",
        "is not a valid server name",
        url=lambda d: "http://gis example.test" + SERVICE_PATH,
    ),
    BadInput(
        "a FeatureServer",
        "is a FeatureServer; this app draws MapServer services",
        url=lambda d: d.service_url.replace("MapServer", "FeatureServer/0"),
    ),
    BadInput(
        "an ImageServer",
        "ImageServer",
        url=lambda d: d.service_url.replace("MapServer", "ImageServer"),
    ),
    BadInput("the services catalog", "services directory", url=lambda d: d.base_url + "/arcgis/rest/services"),
    BadInput(
        "plain http to a remote host",
        "SECURE_LAYERS_ALLOW_HTTP=1",
        url=lambda d: "http://gis.example.test" + SERVICE_PATH,
    ),
    BadInput(
        "a server not on the allow-list",
        "is not one of them. Ask the app's operator to add it",
        env={"SECURE_LAYERS_ALLOWED_SERVERS": "https://gis.example.test"},
    ),
    BadInput("unknown host", "could not be found", url=lambda d: "https://nowhere.invalid" + SERVICE_PATH),
    BadInput("connection refused", "refused the connection", url=closed_port_url),
    BadInput("server never answers", f"did not answer within {TIMEOUT_SECONDS} seconds", fault=stall_sign_in),
    BadInput("login portal page instead of JSON", "web page instead", fault=login_portal_instead_of_json),
    BadInput("broken JSON", "not valid JSON", fault=broken_json),
    BadInput("oversized reply", "larger than 5 MB", fault=oversized_reply),
    BadInput("JSON nested 100000 deep", "not valid JSON", fault=nested_too_deep),
    BadInput(
        "a server that trickles its reply a byte at a time",
        f"did not finish its reply within {TIMEOUT_SECONDS} seconds",
        fault=trickled_reply,
    ),
    BadInput("HTTP 502 from a gateway", "internal error (HTTP 502)", fault=bad_gateway),
    BadInput("wrong password", "did not accept the user name or password", password="Ridge-Line-4472!"),
    BadInput(
        "no permission for the service", "has no permission to use this service", username="user2", password="user2"
    ),
    BadInput(
        "a token pasted into the URL",
        "token pasted in the URL was removed",
        url=lambda d: d.service_url + "?token=PASTED-OLD-TOKEN",
        signs_in=True,
        kept_url=lambda typed: typed.removesuffix("?token=PASTED-OLD-TOKEN"),  # never shown back
    ),
    BadInput(
        "a token pasted after # in the URL",
        "token pasted in the URL was removed",
        url=lambda d: d.service_url + "#token=PASTED-OLD-TOKEN",
        signs_in=True,
        kept_url=lambda typed: typed.removesuffix("#token=PASTED-OLD-TOKEN"),
    ),
    BadInput(
        "a pasted token in a URL that fails",
        "could not be found",
        url=lambda d: "https://nowhere.invalid" + SERVICE_PATH + "?f=json&token=PASTED-OLD-TOKEN",
        kept_url=lambda typed: typed.removesuffix("&token=PASTED-OLD-TOKEN"),
    ),
]


def open_app(monkeypatch, double: ArcGISDouble, env: dict[str, str]) -> AppTest:
    monkeypatch.setenv("SECURE_LAYERS_SERVICE_URL", double.service_url)
    monkeypatch.setenv("SECURE_LAYERS_CONNECT_TIMEOUT", str(TIMEOUT_SECONDS))
    monkeypatch.setenv("SECURE_LAYERS_READ_TIMEOUT", str(TIMEOUT_SECONDS))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    at = AppTest.from_file("../dashboard.py", default_timeout=30)
    at.context = {"url": APP_URL, "timezone": "Europe/London"}
    return at.run()


def layer_on_map(at: AppTest) -> bool:
    return "/api/secure-layers/proxy/" in (map_args(at)["feature_group"] or "")


def message(at: AppTest, signs_in: bool) -> str:
    shown = at.info if signs_in else at.error
    assert len(shown) >= 1, shown_text(at)
    return as_read(shown[0].value)


def assert_password_kept_to_the_sign_in(double: ArcGISDouble, password: str) -> None:
    for request in double.requests:
        assert password not in request.raw_query and password not in str(request.headers)
        if not request.path.endswith("/generateToken"):
            assert password.encode() not in request.body


@pytest.mark.reliability("Bad input")
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gets_a_clear_message_and_keeps_the_form(case, double, monkeypatch, reliability):
    at = open_app(monkeypatch, double, case.env)
    case.fault(double)
    url = case.url(double)
    password = case.password
    started = time.monotonic()
    sign_in(at, case.username, password, url)
    elapsed = time.monotonic() - started

    assert not at.exception
    shown = message(at, case.signs_in)
    assert case.expected in shown
    reliability.saw(shown)
    assert at.text_input(key="service_url").value == case.kept_url(url)
    assert "PASTED-OLD-TOKEN" not in shown_text(at) and URL_PASSWORD not in shown_text(at)
    assert at.text_input(key="username").value == case.username
    assert layer_on_map(at) is case.signs_in
    assert elapsed < 4 * TIMEOUT_SECONDS + 10  # a dead server never holds the page for long
    assert at.text_input(key="password").value == ""  # a password is never kept in the form
    if password and password != case.username:
        assert password not in shown_text(at)
        assert password not in repr(at.session_state.to_dict())
        assert_password_kept_to_the_sign_in(double, password)
    at.run()  # the page stays usable: the next rerun works and still shows the form as typed
    assert not at.exception and at.text_input(key="service_url").value == case.kept_url(url)


@pytest.mark.reliability("Bad input")
def test_a_fault_nobody_foresaw_is_said_plainly_and_keeps_the_form(double, monkeypatch, caplog, reliability):
    monkeypatch.setattr(secure_layers.connection, "sign_in_and_open", a_bug)  # the dashboard imports it anew each run
    at = sign_in(open_app(monkeypatch, double, {}), RANGER, RANGER_PASSWORD)
    assert not at.exception
    shown = as_read(at.error[0].value)
    assert shown.startswith("**Something went wrong.** Signing in failed on a problem the app did not expect")
    assert "(RuntimeError)" in shown and "What you typed is kept" in shown
    reliability.saw(shown)
    assert at.text_input(key="service_url").value == double.service_url
    assert at.text_input(key="username").value == RANGER
    assert "TOKEN-IN-BUG-TEXT" not in shown_text(at) + caplog.text
    assert "Unexpected RuntimeError while signing in" in caplog.text


def untrusted_tls_double(authority: trustme.CA) -> ArcGISDouble:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    return ArcGISDouble(tls=context)


@pytest.mark.reliability("Bad input")
def test_a_certificate_nobody_trusts_is_refused_then_works_with_the_operators_ca_bundle(
    monkeypatch, tmp_path, reliability
):
    authority = trustme.CA(organization_name="Example County GIS test CA")
    with untrusted_tls_double(authority) as server:
        at = sign_in(open_app(monkeypatch, server, {}), RANGER, RANGER_PASSWORD, server.service_url)
        assert not at.exception
        shown = as_read(at.error[0].value)
        assert "could not be verified, so nothing was sent to it" in shown
        assert "SECURE_LAYERS_CA_BUNDLE" in shown
        reliability.saw(shown)
        assert server.requests == []  # the handshake failed before any request, so before the password
        assert at.text_input(key="service_url").value == server.service_url

        bundle = tmp_path / "county-ca.pem"
        authority.cert_pem.write_to_path(str(bundle))
        trusting = open_app(monkeypatch, server, {"SECURE_LAYERS_CA_BUNDLE": str(bundle)})
        at = sign_in(trusting, RANGER, RANGER_PASSWORD, server.service_url)
        assert not at.exception and not at.error
        assert at.success[0].value == f"Signed in as **{RANGER}**"
        reliability.saw(at.success[0].value + " (over https, with SECURE_LAYERS_CA_BUNDLE)")
        assert layer_on_map(at)


@pytest.mark.reliability("Bad input")
def test_a_redirect_to_another_host_forwards_neither_password_nor_token(double, monkeypatch, reliability):
    with ArcGISDouble() as elsewhere:
        double.script(
            "/generateToken",
            b"",
            "text/html",
            status=307,
            headers={"Location": elsewhere.token_url.replace("127.0.0.1", "localhost")},
        )
        at = sign_in(open_app(monkeypatch, double, {}), RANGER, RANGER_PASSWORD, double.service_url)
        assert not at.exception
        shown = as_read(at.error[0].value)
        assert shown.startswith("**Redirected elsewhere.**") and "redirected the request to http://localhost:" in shown
        reliability.saw(shown)
        assert elsewhere.requests == []
        assert not layer_on_map(at)
