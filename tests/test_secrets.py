"""No secret where it should not be (issue 4, item 3): one whole session, every logger at DEBUG.

The person signs in after one wrong password, the map draws through the proxy, the legend shows,
a click identifies a feature, the server drops the token (a failure the app must explain), the
password is given again, and they sign out. Everything the app logged, showed, raised, put in
the address or answered to the browser is scanned for both passwords and every token. Over the
wire, the password goes only in the generateToken POST body and the token only to the server
that issued it.
"""

from __future__ import annotations

import json
import logging

import pytest
import requests
from streamlit.testing.v1 import AppTest

from secure_layers.proxy import REGISTRY, export_path
from tests.arcgis_double import ArcGISDouble
from tests.test_dashboard import APP_URL, click_map, map_args, proxy_handle, shown_text, sign_in, sign_in_again
from tests.test_proxy import VIEW, ProxyServer

RANGER, RANGER_PASSWORD = "ranger", "Ridge-Line-4471!"
WRONG_PASSWORD = "Ridge-Line-4472!"
FIRE = (34.09, -116.865)


class Scan:
    """Collects every place a secret could surface, named, for one scan at the end."""

    def __init__(self) -> None:
        self.places: dict[str, str | bytes] = {}

    def page(self, at: AppTest, step: str) -> None:
        self.places[f"page after {step}"] = shown_text(at) + json.dumps(map_args(at))
        self.places[f"tables after {step}"] = "".join(t.value.to_csv() for t in at.dataframe)
        self.places[f"address after {step}"] = repr(at.query_params)
        self.places[f"exceptions after {step}"] = "".join(str(e.value) for e in at.exception)

    def answer(self, reply: requests.Response, step: str) -> None:
        self.places[f"proxy answer to the browser ({step})"] = repr(dict(reply.headers)).encode() + reply.content

    def leaks(self, secrets: dict[str, str]) -> list[str]:
        found = []
        for where, text in self.places.items():
            for name, secret in secrets.items():
                if (secret.encode() if isinstance(text, bytes) else secret) in text:
                    found.append(f"{name} in {where}")
        return found


@pytest.fixture
def every_logger_at_debug(caplog):
    """Root and urllib3 at DEBUG into caplog; Streamlit's loggers do not propagate, so caplog joins each."""
    caplog.set_level(logging.DEBUG)
    logging.getLogger("urllib3").setLevel(logging.DEBUG)
    joined: list[tuple[logging.Logger, int]] = []

    def join_streamlit_loggers() -> None:
        for name in list(logging.root.manager.loggerDict):
            logger = logging.getLogger(name)
            if name.startswith("streamlit") and caplog.handler not in logger.handlers:
                joined.append((logger, logger.level))
                logger.setLevel(logging.DEBUG)
                logger.addHandler(caplog.handler)

    yield join_streamlit_loggers
    for logger, level in joined:
        logger.removeHandler(caplog.handler)
        logger.setLevel(level)


def open_app(monkeypatch, double: ArcGISDouble) -> AppTest:
    monkeypatch.setenv("SECURE_LAYERS_SERVICE_URL", double.service_url)
    at = AppTest.from_file("../dashboard.py", default_timeout=30)
    at.context = {"url": APP_URL, "timezone": "America/Los_Angeles"}
    return at.run()


def draw(proxy: str, at: AppTest) -> requests.Response:
    """What the map in the browser does after a pan: ask the proxy for an image."""
    return requests.get(proxy + export_path(proxy_handle(at)), params=VIEW, timeout=10)


@pytest.mark.reliability("Secrets")
def test_a_whole_session_at_debug_leaks_no_password_or_token(
    double, monkeypatch, caplog, every_logger_at_debug, reliability
):
    scan = Scan()
    with ProxyServer(REGISTRY) as proxy:
        at = open_app(monkeypatch, double)
        every_logger_at_debug()  # now that the app has run once, Streamlit's loggers exist
        sign_in(at, RANGER, WRONG_PASSWORD)
        assert "did not accept the user name or password" in at.error[0].value
        scan.page(at, "a wrong password")

        sign_in(at, RANGER, RANGER_PASSWORD)
        assert at.success[0].value == f"Signed in as **{RANGER}**"
        assert "Wildfire Response Polygons" in [c.value for c in at.sidebar.caption]  # the legend is on show
        drawn = draw(proxy, at)
        assert drawn.status_code == 200 and drawn.content.startswith(b"\x89PNG")
        scan.page(at, "signing in")
        scan.answer(drawn, "an image")
        tokens = list(double.issued_tokens)

        click_map(at, *FIRE)
        assert at.dataframe[0].value.to_dict("records")[0]["Name"] == "Fire perimeter"
        scan.page(at, "identify")

        double.revoke_all_tokens()  # the server restarts and forgets every token
        refused = draw(proxy, at)
        assert refused.status_code == 401
        scan.answer(refused, "a dropped token")
        at.run()
        assert "**Session expired.**" in at.error[0].value
        scan.page(at, "the token was dropped")

        sign_in_again(at, RANGER_PASSWORD)
        assert draw(proxy, at).status_code == 200
        tokens += double.issued_tokens
        scan.page(at, "signing in again")

        [sign_out] = [b for b in at.button if b.label == "Sign out"]
        sign_out.click()
        at.run()
        scan.page(at, "signing out")
    scan.places["every log record (DEBUG, urllib3 included)"] = caplog.text

    assert len(set(tokens)) == 2  # one per sign-in
    secrets = {"the password": RANGER_PASSWORD, "the wrong password": WRONG_PASSWORD}
    secrets |= {f"token {n}": token for n, token in enumerate(tokens, 1)}
    leaks = scan.leaks(secrets)
    reliability.figure("places scanned", len(scan.places))
    reliability.figure("secrets found", len(leaks))
    assert "GET /arcgis/rest/services/Wildfire_secure_ac/MapServer/export" in caplog.text  # urllib3 did log
    assert any(record.name.startswith("streamlit") for record in caplog.records)  # so did Streamlit
    assert leaks == []

    passwords = (RANGER_PASSWORD, WRONG_PASSWORD)
    for request in double.requests:  # over the wire, all to the server that issued the tokens
        assert not any(p in request.raw_query + str(request.headers) for p in passwords), request.path
        assert not any(t in request.raw_query for t in tokens), f"{request.path}: a token in a URL"
        in_body = [name for name, secret in secrets.items() if secret.encode() in request.body]
        if request.path.endswith("/generateToken"):
            assert request.method == "POST" and set(in_body) <= {"the password", "the wrong password"}
        else:
            assert in_body == []
    reliability.saw(
        f"a whole session at DEBUG: {len(scan.places)} places scanned for 2 passwords and "
        f"{len(tokens)} tokens, none found; the password went only in the generateToken POST body"
    )
