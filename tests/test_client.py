"""The transport: every kind of ArcGIS reply or failure becomes one typed, plain-worded error."""

from __future__ import annotations

import gzip
import json
import socket
import time

import pytest

from secure_layers.client import arcgis_error
from secure_layers.errors import (
    ArcGISError,
    Forbidden,
    MalformedReply,
    NotAnArcGISServer,
    Redirected,
    ServiceNotFound,
    SSLRequired,
    TokenInvalid,
    TokenRequired,
    TransportError,
)

INVALID_TOKEN = {"error": {"code": 498, "message": "Invalid Token", "details": []}}
TOKEN_EXPIRED_ADMIN = {"status": "error", "messages": ["Token Expired."], "code": 498}
TOKEN_REQUIRED_AGOL = {
    "error": {"code": 499, "message": "Token Required", "messageCode": "GWM_0003", "details": ["Token Required"]}
}
NO_PERMISSION = {
    "error": {
        "code": 403,
        "message": "You do not have permissions to access this resource or perform this operation.",
        "details": [],
    }
}
SSL_REQUIRED = {"error": {"code": 403, "message": "SSL Required", "details": ["SSL Required"]}}
SERVICE_NOT_FOUND = {"error": {"code": 404, "message": "Service not found", "details": "Folder/Missing"}}
SERVER_FAULT = {"error": {"code": 500, "message": "Error performing query operation", "details": None}}


@pytest.mark.parametrize(
    ("body", "kind", "code"),
    [
        (INVALID_TOKEN, TokenInvalid, 498),
        (TOKEN_EXPIRED_ADMIN, TokenInvalid, 498),
        ({"error": {"code": "498", "message": "Invalid Token"}}, TokenInvalid, 498),
        (TOKEN_REQUIRED_AGOL, TokenRequired, 499),
        (NO_PERMISSION, Forbidden, 403),
        (SSL_REQUIRED, SSLRequired, 403),
        (SERVICE_NOT_FOUND, ServiceNotFound, 404),
        (SERVER_FAULT, ArcGISError, 500),
    ],
)
def test_each_error_envelope_maps_to_its_type(body, kind, code):
    error = arcgis_error(body)
    assert type(error) is kind
    assert error.code == code
    assert error.message.endswith(".") or "Error performing query operation" in error.message


def test_a_reply_without_an_error_is_not_an_error():
    assert arcgis_error({"currentVersion": 10.91}) is None
    assert arcgis_error(["error"]) is None


def test_errors_inside_http_200_are_raised(double, client):
    double.script("/rest/info", json.dumps(NO_PERMISSION).encode(), "text/plain; charset=utf-8")
    with pytest.raises(Forbidden, match="no permission"):
        client.get_json(double.root + "/rest/info")


def test_a_498_with_an_http_error_status_is_still_read_from_the_body(double, client):
    double.script("/rest/info", json.dumps(INVALID_TOKEN).encode(), "application/json", status=498)
    with pytest.raises(TokenInvalid):
        client.get_json(double.root + "/rest/info")


@pytest.mark.parametrize(
    ("body", "content_type", "status", "kind", "words"),
    [
        (b"<html><body>Sign in to the portal</body></html>", "text/html", 200, MalformedReply, "web page instead"),
        (b'{"currentVersion": 10.91, "authInfo": {', "application/json", 200, MalformedReply, "not valid JSON"),
        (b"Bad gateway", "text/plain", 502, TransportError, r"internal error \(HTTP 502\)"),
        (b"<html>Not found</html>", "text/html", 404, NotAnArcGISServer, "HTTP 404"),
        (b"Unauthorized", "text/plain", 401, Forbidden, "different kind of login"),
        (b'["just", "a", "list"]', "application/json", 200, MalformedReply, "unexpected shape"),
    ],
)
def test_replies_that_are_not_arcgis_json(double, client, body, content_type, status, kind, words):
    double.script("/rest/info", body, content_type, status=status)
    with pytest.raises(kind, match=words):
        client.get_json(double.root + "/rest/info")


def test_an_oversized_reply_is_cut_off(double, client):
    double.script("/rest/info", b"[" + b"0," * (3 * 1024 * 1024) + b"0]", "application/json")
    with pytest.raises(MalformedReply, match="larger than 5 MB"):
        client.get_json(double.root + "/rest/info")


def test_a_gzip_encoded_reply_is_decoded(double, client):
    body = gzip.compress(json.dumps({"currentVersion": 10.91}).encode())
    double.script("/rest/info", body, "application/json", headers={"Content-Encoding": "gzip"})
    assert client.get_json(double.root + "/rest/info") == {"currentVersion": 10.91}


def test_a_redirect_to_another_host_is_not_followed(double, client):
    double.script(
        "/rest/info",
        b"",
        "text/html",
        status=307,
        headers={"Location": "https://elsewhere.example.test/arcgis/rest/info?f=json"},
    )
    with pytest.raises(Redirected, match="redirected the request to https://elsewhere.example.test"):
        client.post_form(double.root + "/rest/info", {"password": "hunter2"})
    assert len(double.requests) == 1


def test_a_redirect_to_https_says_to_use_https(double, client):
    double.script(
        "/rest/info",
        b"",
        "text/html",
        status=301,
        headers={"Location": double.root.replace("http://", "https://") + "/rest/info"},
    )
    with pytest.raises(TransportError, match="only answers over HTTPS"):
        client.get_json(double.root + "/rest/info")


@pytest.mark.reliability("Faults")
def test_a_stalled_server_times_out_within_the_stated_bound(double, client, reliability):
    double.stall("/rest/info", seconds=10)
    started = time.monotonic()
    with pytest.raises(TransportError, match="did not answer within 2 seconds") as raised:
        client.get_json(double.root + "/rest/info")
    reliability.saw(raised.value.message)
    assert time.monotonic() - started < 8


@pytest.mark.reliability("Faults")
def test_a_server_that_trickles_its_reply_is_cut_off_within_the_stated_bound(double, client, reliability):
    double.trickle("/rest/info", seconds_per_byte=0.2)  # each read is quick; the whole reply would take minutes
    started = time.monotonic()
    with pytest.raises(TransportError, match="did not finish its reply within 2 seconds") as raised:
        client.get_json(double.root + "/rest/info")
    reliability.saw(raised.value.message)
    assert time.monotonic() - started < 8


def test_json_nested_absurdly_deep_is_not_valid_json(double, client):
    double.script("/rest/info", b"[" * 100_000 + b"]" * 100_000, "application/json")
    with pytest.raises(MalformedReply, match="not valid JSON"):
        client.get_json(double.root + "/rest/info")


def test_a_redirect_to_a_location_that_is_not_a_url_is_still_refused(double, client):
    double.script("/rest/info", b"", "text/html", status=302, headers={"Location": "https://[gis/arcgis/rest/info"})
    with pytest.raises(Redirected, match="redirected the request to another address"):
        client.get_json(double.root + "/rest/info")


def test_a_host_name_urllib3_cannot_use_is_a_transport_error(client):
    with pytest.raises(TransportError, match="could not be sent. Check the URL"):
        client.get_json("https://" + "a" * 70 + ".invalid/arcgis/rest/info")


def test_a_closed_port_says_the_server_is_down(client):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(TransportError, match="refused the connection"):
        client.get_json(f"http://127.0.0.1:{port}/arcgis/rest/info")


def test_an_unknown_host_says_the_name_was_not_found(client):
    with pytest.raises(TransportError, match="nowhere.invalid could not be found"):
        client.get_json("https://nowhere.invalid/arcgis/rest/info")


def test_every_request_carries_the_referer_and_no_library_default(double, client):
    client.get_json(double.root + "/rest/info")
    assert double.requests[0].headers["Referer"] == "http://localhost:8501"
    assert "python-requests/" not in double.requests[0].headers["User-Agent"].split(" ")[0]
