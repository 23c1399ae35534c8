"""Getting a token: discovery, the POST itself, and what the server's answers mean."""

from __future__ import annotations

import json
import time

import pytest

from secure_layers.errors import CredentialsRejected, InsecureURL, InvalidInput, MalformedReply, SSLRequired
from secure_layers.tokens import Token, discover_token_url, generate_token, normalise_token_url, parse_token_reply
from tests.conftest import APP_URL


def sign_in(client, token_url, username="user1", password="user1", minutes=60) -> Token:
    return generate_token(client, token_url, username=username, password=password, referer=APP_URL, minutes=minutes)


def test_the_token_url_comes_from_rest_info(double, client):
    assert discover_token_url(client, double.root) == double.root + "/tokens/generateToken"
    assert double.requests[0].path == "/arcgis/rest/info"


def test_an_advertised_tokens_folder_means_its_generate_token(double, client):
    # sampleserver6 advertises ".../arcgis/tokens/" (protocol.md §3).
    double.settings.advertised_token_path = "/arcgis/tokens/"
    assert discover_token_url(client, double.root) == double.root + "/tokens/generateToken"


def test_an_advertised_token_url_that_is_not_a_url_falls_back_to_the_conventional_one(double, client):
    info = {
        "currentVersion": 10.91,
        "authInfo": {"isTokenBasedSecurity": True, "tokenServicesUrl": "https://[gis/tokens/"},
    }
    double.script("/rest/info", json.dumps(info).encode(), "application/json")
    assert discover_token_url(client, double.root) == double.root + "/tokens/generateToken"


def test_without_rest_info_the_conventional_token_url_is_used(double, client):
    double.script("/rest/info", b"<html>Not here</html>", "text/html", status=404)
    assert discover_token_url(client, double.root) == double.root + "/tokens/generateToken"


@pytest.mark.parametrize(
    ("advertised", "expected"),
    [
        ("https://GIS.example.test/arcgis/tokens/", "https://gis.example.test/arcgis/tokens/generateToken"),
        ("https://gis.example.test/arcgis/tokens", "https://gis.example.test/arcgis/tokens/generateToken"),
        (
            "https://gis.example.test/portal/sharing/rest/generateToken",
            "https://gis.example.test/portal/sharing/rest/generateToken",
        ),
    ],
)
def test_token_url_normalisation(advertised, expected):
    assert normalise_token_url(advertised) == expected


def test_credentials_go_in_one_post_body_never_in_a_url(double, client):
    # Field case F03.
    token = sign_in(client, double.token_url)
    [request] = double.requests
    assert (request.method, request.path, request.raw_query) == ("POST", "/arcgis/tokens/generateToken", "")
    assert {key: values[0] for key, values in request.form.items()} == {
        "username": "user1",
        "password": "user1",
        "client": "referer",
        "referer": APP_URL,
        "expiration": "60",
        "f": "json",
    }
    assert request.error_code is None
    assert token.value in double.issued_tokens
    assert 59 * 60 < token.seconds_left() <= 60 * 60


def test_the_token_value_never_shows_in_a_repr(double, client):
    token = sign_in(client, double.token_url)
    assert token.value not in repr(token)


def test_the_server_clamps_expiration_and_we_trust_its_expires(double, client):
    token = sign_in(client, double.token_url, minutes=86400)  # what Esri's own sample asks for
    assert token.seconds_left() == pytest.approx(1440 * 60, abs=5)


def test_a_wrong_password_is_a_plain_message_without_the_password(double, client):
    with pytest.raises(CredentialsRejected) as raised:
        sign_in(client, double.token_url, password="Wr0ng-Passw0rd!")
    assert "did not accept the user name or password" in str(raised.value)
    assert "Wr0ng-Passw0rd!" not in str(raised.value) + repr(raised.value)


def test_empty_credentials_are_refused_before_anything_is_sent(double, client):
    with pytest.raises(InvalidInput, match="user name and your password"):
        sign_in(client, double.token_url, username="  ", password="")
    assert double.requests == []


def test_a_remote_http_token_service_is_refused_before_sending_the_password(client):
    # Field case F04: an http:// token URL (advertised or typed) never receives the password.
    with pytest.raises(InsecureURL, match="unencrypted"):
        sign_in(client, "http://gis.example.test/arcgis/tokens/generateToken")


def test_ssl_required_is_reported_as_such(double, client):
    double.settings.require_ssl = True
    with pytest.raises(SSLRequired, match="only accepts HTTPS"):
        sign_in(client, double.token_url)


@pytest.mark.parametrize(
    "reply",
    [
        {},
        {"token": ""},
        {"token": "abc"},
        {"token": "abc", "expires": "soon"},
        {"token": 5, "expires": 1},
        {"token": "abc", "expires": 1e17},  # year 5,000,000: no real token, and no date can show it
        {"token": "abc", "expires": 253402300800000},  # the first moment of year 10000
    ],
)
def test_a_reply_without_token_and_expiry_is_malformed(reply):
    with pytest.raises(MalformedReply, match="did not return a token"):
        parse_token_reply(reply, "gis.example.test")


def test_expires_may_be_a_numeric_string():
    expires_ms = int((time.time() + 3600) * 1000)
    assert parse_token_reply({"token": "abc", "expires": str(expires_ms)}, "h").expires == expires_ms / 1000
