"""ArcGISTokenAuth: the token goes only to its server, is renewed early, and retried once at most."""

from __future__ import annotations

import threading
import time
import tracemalloc

import pytest
import requests

from secure_layers.auth import ArcGISTokenAuth
from secure_layers.errors import MalformedReply, TokenExpired, TokenInvalid, TransportError
from secure_layers.tokens import Token, generate_token
from tests.arcgis_double.server import NO_LENGTH
from tests.conftest import APP_URL


def fresh_token(client, double) -> Token:
    return generate_token(client, double.token_url, username="user1", password="user1", referer=APP_URL, minutes=60)


def metadata(client, double):
    return client.get_json(double.service_url)


def test_an_expired_token_is_never_sent(double, client):
    expired = Token(value="EXPIRED-TOKEN", expires=time.time() - 1)
    client.set_auth(ArcGISTokenAuth(expired, double.service_url))
    with pytest.raises(TokenExpired, match="Sign in again"):
        metadata(client, double)
    assert double.requests == []


def test_the_token_is_renewed_before_expiry_once_even_under_concurrency(double, client):
    # Field case F06: two minutes before expiry, eight threads at once -> one new token.
    calls = []

    def renew() -> Token:
        calls.append(1)
        time.sleep(0.2)
        return fresh_token(client, double)

    now = [time.time()]
    auth = ArcGISTokenAuth(
        Token(value="OLD", expires=now[0] + 3600), double.service_url, renew=renew, clock=lambda: now[0]
    )
    client.set_auth(auth)
    now[0] += 3600 - 100  # 100 s left: inside the 6-minute margin (a tenth of the hour)
    threads = [threading.Thread(target=metadata, args=(client, double)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    service_requests = [r for r in double.requests if r.path.endswith("/MapServer")]
    assert len(service_requests) == 8
    assert all(r.headers["X-Esri-Authorization"] != "Bearer OLD" for r in service_requests)


def test_a_rejected_token_is_renewed_and_the_request_retried_once(double, client):
    # Field case F05: the server restarted and dropped every token.
    auth = ArcGISTokenAuth(fresh_token(client, double), double.service_url, renew=lambda: fresh_token(client, double))
    client.set_auth(auth)
    double.revoke_all_tokens()
    double.clear_requests()
    assert metadata(client, double)["mapName"] == "Wildfire"
    assert [(r.path.rsplit("/", 1)[-1], r.error_code) for r in double.requests] == [
        ("MapServer", 498),
        ("generateToken", None),
        ("MapServer", None),
    ]
    assert "X-Esri-Authorization" not in double.requests[1].headers  # no token with the credentials


def test_the_retry_is_never_a_loop(double, client):
    revoked = fresh_token(client, double)
    double.revoke_all_tokens()
    auth = ArcGISTokenAuth(revoked, double.service_url, renew=lambda: revoked)
    client.set_auth(auth)
    double.clear_requests()
    with pytest.raises(TokenInvalid):
        metadata(client, double)
    assert [r.error_code for r in double.requests] == [498, 498]


def test_without_a_way_to_renew_a_rejection_is_reported_not_retried(double, client):
    client.set_auth(ArcGISTokenAuth(fresh_token(client, double), double.service_url))
    double.revoke_all_tokens()
    double.clear_requests()
    with pytest.raises(TokenInvalid, match="Sign in again"):
        metadata(client, double)
    assert len(double.requests) == 1


def test_the_token_is_never_attached_for_another_server(double):
    auth = ArcGISTokenAuth(Token("SECRET-TOKEN", time.time() + 3600), "https://gis.example.test/arcgis/rest/services")
    prepared = requests.Request("GET", double.service_url).prepare()
    assert "X-Esri-Authorization" not in auth(prepared).headers
    assert "SECRET-TOKEN" not in repr(auth)


def test_a_reply_of_unknown_length_is_read_under_the_cap_when_the_token_can_renew(double, client):
    # The renewal hook peeks at replies for a 498; without a Content-Length it must not read
    # an endless body into memory before the client's 5 MB cap applies.
    client.set_auth(ArcGISTokenAuth(fresh_token(client, double), double.service_url, renew=lambda: None))
    endless = b'{"layers": [' + b'{"id": 0},' * (4 * 1024 * 1024) + b'{"id": 1}]}'  # 40 MB
    double.script("/Wildfire_secure_ac/MapServer", endless, "application/json", headers={NO_LENGTH: "1"})
    tracemalloc.start()
    try:
        with pytest.raises(MalformedReply, match="larger than 5 MB"):
            metadata(client, double)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024, f"{peak // 2**20} MiB held while refusing the reply"
    small = b'{"mapName": "Wildfire"}'
    double.script("/Wildfire_secure_ac/MapServer", small, "application/json", headers={NO_LENGTH: "1"})
    assert metadata(client, double) == {"mapName": "Wildfire"}  # read once, by the hook, and kept for the client


def test_a_malformed_content_length_is_read_as_unknown_not_a_crash(double, client):
    client.set_auth(ArcGISTokenAuth(fresh_token(client, double), double.service_url, renew=lambda: None))
    body = b'{"mapName": "Wildfire"}'
    double.script(
        "/Wildfire_secure_ac/MapServer", body, "application/json", headers={NO_LENGTH: "1", "Content-Length": "2.3e1"}
    )
    assert metadata(client, double) == {"mapName": "Wildfire"}


def test_the_peek_at_a_reply_is_bounded_in_time_too(double, client):
    client.set_auth(ArcGISTokenAuth(fresh_token(client, double), double.service_url, renew=lambda: None))
    double.trickle("/Wildfire_secure_ac/MapServer", seconds_per_byte=0.2)
    started = time.monotonic()
    with pytest.raises(TransportError, match="did not finish its reply within 2 seconds"):
        metadata(client, double)
    assert time.monotonic() - started < 8
