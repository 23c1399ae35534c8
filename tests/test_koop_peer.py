"""Our client against Koop, an independent ArcGIS token + FeatureServer implementation, over real HTTP.

Koop (`tests/peers/koop`, started here by the session fixture `koop`) is third-party software, so
these tests check our token discovery, sign-in, error mapping, renew-and-retry and secrecy against
answers we did not write ourselves. Koop's auth plugin (auth-direct-file 2.0.3) reads a token only
from `?token=` or a raw `Authorization` header, so most tests use `token_transport="query"`; one
test documents what our default `X-Esri-Authorization` header gets from it. Koop has no MapServer.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from requests.adapters import HTTPAdapter

from secure_layers.auth import ArcGISTokenAuth
from secure_layers.client import ArcGISClient
from secure_layers.config import Settings
from secure_layers.connection import connect, sign_in
from secure_layers.errors import (
    CredentialsRejected,
    NotAMapServer,
    TokenExpired,
    TokenInvalid,
    TokenRejected,
    TokenRequired,
)
from secure_layers.tokens import Token, discover_token_url, generate_token
from secure_layers.urls import parse_service_url
from tests.conftest import APP_URL
from tests.peers import koop_peer
from tests.peers.koop_peer import KoopPeer

PEER = "Third-party peer (Koop)"
CREW_LEAD = koop_peer.accounts()[0]
WRONG_PASSWORD = "not-the-crew-leads-Pw9"  # noqa: S105 - a deliberately wrong test password
ASKED_MINUTES = 60  # what our client asks for; Koop always gives koop_peer.TOKEN_MINUTES
PERIMETER_FIELDS = {"OBJECTID", "incident", "status", "acres"}


# --- the peer and our client -------------------------------------------------------------


@pytest.fixture(scope="session")
def koop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KoopPeer]:
    """`node server.js` on a free loopback port; skip locally, FAIL under CI, when it cannot run."""
    missing = koop_peer.missing_prerequisites()
    if missing:
        message = "Koop peer tests cannot run: " + "; ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    peer = KoopPeer.start(tmp_path_factory.mktemp("koop") / "koop.log")
    try:
        yield peer
    finally:
        peer.stop()


class WireLog(HTTPAdapter):
    """A real HTTP adapter that keeps a copy of every request it sends, retries included."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, *args, **kwargs) -> requests.Response:
        self.sent.append(request.copy())
        return super().send(request, *args, **kwargs)

    def calls(self) -> list[tuple[str, str]]:
        """(method, last path segment) of each request, e.g. ("POST", "generateToken")."""
        return [(r.method, urlsplit(r.url).path.rsplit("/", 1)[-1]) for r in self.sent]


def record_wire(client: ArcGISClient) -> WireLog:
    wire = WireLog()
    client.session.mount("http://", wire)
    return wire


@pytest.fixture
def query_settings() -> Settings:
    return Settings(token_transport="query", connect_timeout=5.0, read_timeout=10.0)


@pytest.fixture
def peer_client(query_settings: Settings) -> Iterator[ArcGISClient]:
    client = ArcGISClient(query_settings, APP_URL)
    yield client
    client.close()


@pytest.fixture
def wire(peer_client: ArcGISClient) -> WireLog:
    return record_wire(peer_client)


# --- helpers -----------------------------------------------------------------------------


def sign_in_as_crew_lead(client: ArcGISClient, koop: KoopPeer) -> Token:
    return generate_token(
        client,
        koop.token_url,
        username=CREW_LEAD.username,
        password=CREW_LEAD.password,
        referer=APP_URL,
        minutes=ASKED_MINUTES,
    )


def mint_jwt(secret: str, *, expires_at: float, subject: str = CREW_LEAD.username) -> str:
    """An HS256 JWT shaped like Koop's own (`{sub, iat, exp}`), signed with `secret`."""

    def b64url(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    header = {"alg": "HS256", "typ": "JWT"}
    payload = {"sub": subject, "iat": int(expires_at) - 900, "exp": int(expires_at)}
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
    signature = hmac.new(secret.encode(), signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def jwt_claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def use_token(client: ArcGISClient, koop: KoopPeer, token: Token, renew: Callable[[], Token] | None = None) -> None:
    client.set_auth(ArcGISTokenAuth(token, koop.feature_server_url, renew=renew, transport="query"))


def token_in_url(request: requests.PreparedRequest) -> str | None:
    return parse_qs(urlsplit(request.url).query).get("token", [None])[0]


def assert_is_the_fire_perimeters_layer(layer: dict) -> None:
    assert (layer["name"], layer["type"], layer["geometryType"]) == (
        "Fire perimeters",
        "Feature Layer",
        "esriGeometryPolygon",
    )
    assert layer["objectIdField"] == "OBJECTID"
    assert {field["name"] for field in layer["fields"]} == PERIMETER_FIELDS


# --- discovery and sign-in ---------------------------------------------------------------


@pytest.mark.reliability(PEER)
def test_the_token_url_is_discovered_from_koops_rest_info(koop, peer_client, wire, reliability):
    token_url = discover_token_url(peer_client, koop.server_root)
    assert token_url == koop.token_url  # not our fallback `{root}/tokens/generateToken`
    [request] = wire.sent
    assert (request.method, urlsplit(request.url).path) == ("GET", "/arcgis/rest/info")
    reliability.saw(f"token service discovered at {urlsplit(token_url).path}")


@pytest.mark.reliability(PEER)
def test_sign_in_posts_the_credentials_in_the_form_body_and_trusts_koops_expiry(koop, peer_client, wire, reliability):
    before = time.time()
    token = sign_in_as_crew_lead(peer_client, koop)
    [request] = wire.sent
    assert request.method == "POST"
    assert urlsplit(request.url).query == ""  # nothing in the URL, so nothing in any access log
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    form = {key: values[0] for key, values in parse_qs(request.body).items()}
    assert form == {
        "username": CREW_LEAD.username,
        "password": CREW_LEAD.password,
        "client": "referer",
        "referer": APP_URL,
        "expiration": str(ASKED_MINUTES),
        "f": "json",
    }
    assert "X-Esri-Authorization" not in request.headers and "Authorization" not in request.headers
    # Koop's `expires` is epoch ms for its own 15-minute lifetime (it ignores `expiration`), and
    # its JWT says the same in whole seconds: proof the milliseconds were read as milliseconds.
    minutes_left = (token.expires - before) / 60
    assert koop_peer.TOKEN_MINUTES - 1 < minutes_left <= koop_peer.TOKEN_MINUTES + 1
    assert 0 <= token.expires - jwt_claims(token.value)["exp"] < 1
    assert token.ssl is False  # Koop sends no `ssl` field; that is not an error
    assert token.value not in repr(token)
    reliability.saw(
        f"signed in; token good for {minutes_left:.0f} min (Koop's lifetime; we asked {ASKED_MINUTES}), "
        f"no ssl field -> ssl={token.ssl}"
    )


@pytest.mark.reliability(PEER)
def test_a_wrong_password_is_reported_as_credentials_rejected(koop, peer_client, reliability):
    with pytest.raises(CredentialsRejected) as caught:
        generate_token(
            peer_client,
            koop.token_url,
            username=CREW_LEAD.username,
            password=WRONG_PASSWORD,
            referer=APP_URL,
            minutes=ASKED_MINUTES,
        )
    error = caught.value
    assert error.code == 400
    assert str(error).startswith("127.0.0.1 did not accept the user name or password.")
    assert WRONG_PASSWORD not in str(error)
    reliability.saw(f"{error.title}: {error}")


# --- Koop's 499 and 498 through our error mapping ----------------------------------------


@pytest.mark.reliability(PEER)
def test_a_request_without_a_token_gets_koops_499_as_token_required(koop, peer_client, wire, reliability):
    with pytest.raises(TokenRequired) as caught:
        peer_client.get_json(koop.layer_url)
    assert caught.value.code == 499
    assert token_in_url(wire.sent[0]) is None
    reliability.saw(f"{caught.value.title}: {caught.value}")


@pytest.mark.reliability(PEER)
def test_a_garbage_token_gets_koops_498_as_token_invalid(koop, peer_client, wire, reliability):
    use_token(peer_client, koop, Token("not-a-jwt-at-all", expires=time.time() + 3600))
    with pytest.raises(TokenInvalid) as caught:
        peer_client.get_json(koop.layer_url)
    assert caught.value.code == 498 and not isinstance(caught.value, TokenExpired)
    [request] = wire.sent  # no renew function: reported, not retried
    assert token_in_url(request) == "not-a-jwt-at-all"
    reliability.saw(f"{caught.value.title}: {caught.value}")


@pytest.mark.reliability(PEER)
def test_a_koop_jwt_past_its_exp_is_refused_with_498(koop, peer_client, reliability):
    # Control first: a JWT minted the same way but still valid is accepted, so the mint is right.
    use_token(peer_client, koop, Token(mint_jwt(koop.secret, expires_at=time.time() + 600), time.time() + 600))
    assert_is_the_fire_perimeters_layer(peer_client.get_json(koop.layer_url))
    # Our clock still trusts the token (e.g. clocks disagree); Koop's JWT check says it expired.
    expired = mint_jwt(koop.secret, expires_at=time.time() - 60)
    use_token(peer_client, koop, Token(expired, expires=time.time() + 600))
    with pytest.raises(TokenInvalid) as caught:
        peer_client.get_json(koop.layer_url)
    assert caught.value.code == 498
    reliability.saw(f"{caught.value.title}: {caught.value}")


@pytest.mark.reliability(PEER)
def test_a_token_we_know_has_expired_is_never_sent_to_koop(koop, peer_client, wire, reliability):
    exp = time.time() - 60
    use_token(peer_client, koop, Token(mint_jwt(koop.secret, expires_at=exp), expires=exp))
    with pytest.raises(TokenExpired) as caught:
        peer_client.get_json(koop.layer_url)
    assert wire.sent == []
    reliability.saw(f"{caught.value.title}: {caught.value}")


# --- renew and retry once ----------------------------------------------------------------


@pytest.mark.reliability(PEER)
def test_a_rejected_token_is_renewed_against_koop_and_the_request_retried_once(koop, peer_client, wire, reliability):
    # Koop restarted with a new secret: our token is well-formed and unexpired but no longer valid.
    stale = mint_jwt("the-secret-before-the-restart", expires_at=time.time() + 3600)
    renewals: list[Token] = []

    def renew() -> Token:
        renewals.append(sign_in_as_crew_lead(peer_client, koop))
        return renewals[-1]

    use_token(peer_client, koop, Token(stale, expires=time.time() + 3600), renew=renew)
    layer = peer_client.get_json(koop.layer_url)
    assert_is_the_fire_perimeters_layer(layer)
    assert len(renewals) == 1
    assert wire.calls() == [("GET", "0"), ("POST", "generateToken"), ("GET", "0")]
    first, token_post, retry = wire.sent
    assert token_in_url(first) == stale
    assert token_in_url(token_post) is None and "token=" not in (token_post.body or "")
    assert token_in_url(retry) == renewals[0].value
    reliability.saw(f"Koop said 498; renewed once, retried once, got layer “{layer['name']}”")


@pytest.mark.reliability(PEER)
def test_the_retry_against_koop_is_never_a_loop(koop, peer_client, wire, reliability):
    stale = mint_jwt("the-secret-before-the-restart", expires_at=time.time() + 3600)
    renewals = []

    def renew_with_another_bad_token() -> Token:
        renewals.append(1)
        return Token(mint_jwt("yet-another-wrong-secret", expires_at=time.time() + 3600), time.time() + 3600)

    use_token(peer_client, koop, Token(stale, expires=time.time() + 3600), renew=renew_with_another_bad_token)
    with pytest.raises(TokenInvalid) as caught:
        peer_client.get_json(koop.layer_url)
    assert len(renewals) == 1
    assert wire.calls() == [("GET", "0"), ("GET", "0")]
    reliability.saw(f"{caught.value.title}: {caught.value}")


# --- our defaults and our MapServer path against Koop -------------------------------------


@pytest.mark.reliability(PEER)
def test_koop_does_not_read_our_default_x_esri_authorization_header(koop, query_settings, reliability):
    # Signed in with the app's defaults (header transport) and "Stay signed in".
    header_settings = Settings(connect_timeout=5.0, read_timeout=10.0)
    assert header_settings.token_transport == "header"
    service = parse_service_url(koop.map_server_url, header_settings)
    signed_in = sign_in(header_settings, service, CREW_LEAD.username, CREW_LEAD.password, APP_URL, True)
    try:
        wire = record_wire(signed_in.client)
        with pytest.raises(TokenRequired) as caught:
            signed_in.client.get_json(koop.layer_url)
        token = signed_in.auth.current_token()
    finally:
        signed_in.close()
    # The token WAS sent (as `Bearer` in X-Esri-Authorization); Koop answered 499 as if it was not,
    # and our 499 retry spent one more generateToken on it.
    assert caught.value.code == 499
    assert wire.calls() == [("GET", "0"), ("POST", "generateToken"), ("GET", "0")]
    assert wire.sent[2].headers["X-Esri-Authorization"] == f"Bearer {token.value}"
    assert token_in_url(wire.sent[2]) is None
    # The very same token in `?token=` is accepted: the header is what Koop does not read.
    query_client = ArcGISClient(query_settings, APP_URL)
    try:
        use_token(query_client, koop, token)
        assert_is_the_fire_perimeters_layer(query_client.get_json(koop.layer_url))
    finally:
        query_client.close()
    reliability.saw(f"{caught.value.title}: {caught.value}")


@pytest.mark.reliability(PEER)
def test_opening_koops_missing_map_server_is_a_typed_error_not_a_crash(koop, query_settings, reliability):
    # The app's whole "Add service" path: parse the URL, discover, sign in, read MapServer?f=json.
    # Koop signs us in, then answers {"error":{"code":400,"message":"Invalid URL"}} for any MapServer.
    with pytest.raises(NotAMapServer) as caught:
        connect(query_settings, koop.map_server_url, CREW_LEAD.username, CREW_LEAD.password, APP_URL)
    error = caught.value
    assert error.code == 400 and "Invalid URL" in str(error) and "Check the service URL" in str(error)
    assert not isinstance(error, TokenRejected)  # the sign-in worked; asking to sign in again would mislead
    reliability.saw(f"{error.title}: {error}")


@pytest.mark.reliability(PEER)
def test_the_password_never_appears_in_a_url_or_a_debug_log(koop, query_settings, caplog, reliability):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="urllib3")
    service = parse_service_url(koop.map_server_url, query_settings)
    signed_in = sign_in(query_settings, service, CREW_LEAD.username, CREW_LEAD.password, APP_URL, True)
    try:
        assert_is_the_fire_perimeters_layer(signed_in.client.get_json(koop.layer_url))
        with pytest.raises(CredentialsRejected) as caught:
            signed_in.reauthenticate(WRONG_PASSWORD)
    finally:
        signed_in.close()
    request_lines = [r.getMessage() for r in caplog.records if r.name.startswith("urllib3") and '"' in r.getMessage()]
    # urllib3 logs every request line (path and query): proof the sign-in POSTs were seen here.
    assert sum("POST /arcgis/rest/generateToken HTTP/1.1" in line for line in request_lines) == 2
    assert any("GET /arcgis/rest/services/fire_perimeters/FeatureServer/0?" in line for line in request_lines)
    places = [caplog.text, *(r.getMessage() for r in caplog.records), str(caught.value)]
    found = sum(secret in place for place in places for secret in (CREW_LEAD.password, WRONG_PASSWORD))
    reliability.figure("places scanned", len(places))
    reliability.figure("secrets found", found)
    assert found == 0  # a count, so a failure does not print the password
    reliability.saw(f"{len(caplog.records)} DEBUG records, {len(request_lines)} request URLs: no password in any")
