"""One whole sign-in against the double: what goes over the wire, and what never leaks."""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import pytest

from secure_layers.connection import connect
from secure_layers.errors import (
    CredentialsRejected,
    Forbidden,
    SecureLayersError,
    ServerNotAllowed,
    TokenInvalid,
    TransportError,
)
from secure_layers.mapserver import ExportParams, export_image
from tests.arcgis_double import ArcGISDouble
from tests.conftest import APP_URL

WILDFIRE_VIEW = {"bbox": "-13050000,4000000,-12950000,4100000", "size": "800,600"}


def test_sign_in_reads_the_service(double, settings):
    conn = connect(settings, double.service_url, "user1", "user1", APP_URL)
    assert conn.sign_in.username == "user1"
    assert conn.info.map_name == "Wildfire"
    assert [layer.name for layer in conn.info.layers] == [
        "Wildfire Response Points",
        "Wildfire Response Lines",
        "Wildfire Response Polygons",
    ]
    assert [r.path for r in double.requests] == [
        "/arcgis/rest/info",
        "/arcgis/tokens/generateToken",
        "/arcgis/rest/services/Wildfire_secure_ac/MapServer",
    ]


def test_every_request_carries_the_bound_referer_and_none_is_refused(double, settings):
    # Field case F01: the double checks the Referer exactly, as a strict server would.
    double.settings.referer_rule = "exact"
    conn = connect(settings, double.service_url, "user1", "user1", APP_URL)
    export_image(conn.client, conn.info.url, ExportParams.from_query(WILDFIRE_VIEW, conn.info))
    assert {r.headers.get("Referer") for r in double.requests} == {APP_URL}
    assert [r.error_code for r in double.requests] == [None] * 4


def test_the_token_travels_in_a_header_never_in_a_url(double, settings):
    # Field case F08.
    conn = connect(settings, double.service_url, "user1", "user1", APP_URL)
    export_image(conn.client, conn.info.url, ExportParams.from_query(WILDFIRE_VIEW, conn.info))
    [token] = double.issued_tokens
    after_sign_in = double.requests[2:]
    assert all(r.headers["X-Esri-Authorization"] == f"Bearer {token}" for r in after_sign_in)
    assert not any("token" in r.raw_query for r in double.requests)


def test_the_query_transport_is_an_operator_choice_for_old_servers(double, settings):
    conn = connect(replace(settings, token_transport="query"), double.service_url, "user1", "user1", APP_URL)
    assert conn.info.map_name == "Wildfire"
    assert double.requests[-1].query["token"] == double.issued_tokens
    assert "X-Esri-Authorization" not in double.requests[-1].headers


@pytest.mark.parametrize("transport", ["header", "query"])
def test_no_secret_in_debug_logs_or_errors(double, settings, caplog, transport):
    # Field case F08: every logger at DEBUG, urllib3 included; a success and three failures. With
    # the query transport (an operator's choice) urllib3 logs URLs that carry the token.
    caplog.set_level(logging.DEBUG)
    settings = replace(settings, token_transport=transport)
    password = "user1"
    conn = connect(settings, double.service_url, "user1", password, APP_URL)
    export_image(conn.client, conn.info.url, ExportParams.from_query(WILDFIRE_VIEW, conn.info))
    double.revoke_all_tokens()
    failures: list[SecureLayersError] = []
    for attempt in (
        lambda: export_image(conn.client, conn.info.url, ExportParams.from_query(WILDFIRE_VIEW, conn.info)),
        lambda: connect(settings, double.service_url, "user1", "Secr3t-Wrong!", APP_URL),
        lambda: connect(settings, double.service_url.replace(str(double.port), "1"), "user1", password, APP_URL),
    ):
        with pytest.raises(SecureLayersError) as raised:
            attempt()
        failures.append(raised.value)
    captured = caplog.text + "".join(f"{e!s}{e!r}" for e in failures) + repr(conn) + repr(conn.sign_in.auth)
    assert "GET /arcgis/rest/services/Wildfire_secure_ac/MapServer/export" in caplog.text  # urllib3 did log
    for secret in [*double.issued_tokens, "Secr3t-Wrong!"]:
        assert secret not in captured
    assert "password=" not in captured
    assert ("token=<hidden>" in caplog.text) is (transport == "query")


@pytest.mark.parametrize(
    ("user", "password", "kind", "words"),
    [
        ("user1", "nope", CredentialsRejected, "did not accept the user name or password"),
        ("user2", "user2", Forbidden, "no permission to use this service"),
    ],
)
def test_sign_in_failures_say_what_happened(double, settings, user, password, kind, words):
    with pytest.raises(kind, match=words):
        connect(settings, double.service_url, user, password, APP_URL)


def test_a_server_that_is_down(double, settings):
    url = double.service_url
    double.stop()
    with pytest.raises(TransportError, match="refused the connection"):
        connect(settings, url, "user1", "user1", APP_URL)


def test_a_servers_own_token_service_needs_no_entry_of_its_own(double, settings):
    folder = replace(settings, allowed_servers=(double.root + "/rest/services",))
    assert connect(folder, double.service_url, "user1", "user1", APP_URL).info.map_name == "Wildfire"


def test_the_allow_list_also_covers_the_token_service_a_server_names(double, settings):
    # A server may name a token service elsewhere (a federated portal): the password goes there.
    with ArcGISDouble() as portal:
        info = {
            "currentVersion": 10.91,
            "authInfo": {"isTokenBasedSecurity": True, "tokenServicesUrl": portal.token_url},
        }
        double.script("/rest/info", json.dumps(info).encode(), "application/json", times=2)
        only_the_server = replace(settings, allowed_servers=(double.root,))
        with pytest.raises(ServerNotAllowed, match="your password was not sent") as raised:
            connect(only_the_server, double.service_url, "user1", "user1", APP_URL)
        assert f"signs in through http://127.0.0.1:{portal.port}" in raised.value.message
        assert portal.requests == []

        with_the_portal = replace(settings, allowed_servers=(double.root, portal.root))
        with pytest.raises(TokenInvalid):  # two doubles share no tokens, unlike a real federation
            connect(with_the_portal, double.service_url, "user1", "user1", APP_URL)
        assert [(r.method, r.path) for r in portal.requests] == [("POST", "/arcgis/tokens/generateToken")]


def test_a_token_url_read_one_way_by_the_check_and_another_by_requests_falls_back_to_the_servers_own(double, settings):
    # urlsplit reads this host part as the allowed server; requests would connect to `elsewhere`.
    with ArcGISDouble() as elsewhere:
        two_faced = f"http://127.0.0.1:{elsewhere.port}\\@127.0.0.1:{double.port}/arcgis/tokens/"
        auth_info = {"isTokenBasedSecurity": True, "tokenServicesUrl": two_faced}
        double.script(
            "/rest/info", json.dumps({"currentVersion": 10.91, "authInfo": auth_info}).encode(), "application/json"
        )
        allowed = replace(settings, allowed_servers=(double.root,))
        conn = connect(allowed, double.service_url, "user1", "user1", APP_URL)
        assert conn.sign_in.token_url == double.token_url
        assert elsewhere.requests == []
