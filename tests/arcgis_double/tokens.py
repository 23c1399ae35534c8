"""Token issuing (`/tokens/generateToken`) and token checking on secured requests.

Mirrors ArcGIS Server 10.3+ defaults: POST only with credentials in the body, expiration
in minutes (clamped to the long timeout), no client id only for short tokens, tokens
bound to a Referer header or an IP.
"""

from __future__ import annotations

import secrets

from .replies import Incoming, Reply, error_reply, html_reply, json_reply
from .state import DoubleState, IssuedToken

# Crew accounts (crew01/crew01 … crew24/crew24) may use the service too: the load test signs
# each concurrent session in as its own user.
CREW = {f"crew{i:02d}": f"crew{i:02d}" for i in range(1, 25)}
# The ranger's password is distinctive, so a test that finds it somewhere knows it leaked.
RANGER = {"ranger": "Ridge-Line-4471!"}
USERS = {"user1": "user1", "user2": "user2", **RANGER, **CREW}
AUTHORISED_USERS = frozenset({"user1", *RANGER, *CREW})
CLIENT_TYPES = ("referer", "requestip", "ip")

NO_PERMISSION = "You do not have permissions to access this resource or perform this operation."
QUERY_CREDENTIALS = "Generate Token request should not contain username and password in the query string."


class TokenRefused(Exception):
    """generateToken input the server refuses with 400 "Unable to generate token."."""

    def __init__(self, detail: str, extended: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extended = extended


def generate_token(request: Incoming, state: DoubleState) -> Reply:
    """Handle a generateToken call (either token path)."""
    if request.method != "POST" or "username" in request.query or "password" in request.query:
        return error_reply(405, "Method not supported", [QUERY_CREDENTIALS], request.f)
    try:
        user = _authenticate(request)
        client, referer, ip = _client_binding(request)
        minutes = _expiration_minutes(request, client, state)
    except TokenRefused as refused:
        extra = {"extendedCode": -2147467259} if refused.extended else {}
        return error_reply(400, "Unable to generate token.", [refused.detail], request.f, **extra)
    token = secrets.token_urlsafe(32)
    expires = state.now() + minutes * 60
    state.add_token(token, IssuedToken(user, expires, client, referer, ip))
    answer = {"token": token, "expires": int(expires * 1000), "ssl": False}
    if request.f in ("json", "pjson"):
        return json_reply(answer, request.f)
    return html_reply("ArcGIS Token", [f"token: {token}", f"expires: {answer['expires']}"])


def _authenticate(request: Incoming) -> str:
    username = request.form.get("username", [None])[0]
    password = request.form.get("password", [None])[0]
    if not username or password is None or USERS.get(username) != password:
        raise TokenRefused("Invalid username or password.", extended=True)
    return username


def _client_binding(request: Incoming) -> tuple[str | None, str | None, str | None]:
    client = request.param("client")
    if client is None or client == "":
        return None, None, None
    if client not in CLIENT_TYPES:
        raise TokenRefused(f"Invalid client type '{client}'. Use referer, requestip or ip.")
    if client == "referer":
        referer = request.param("referer")
        if not referer:
            raise TokenRefused("The 'referer' parameter is required when client is 'referer'.")
        return client, referer, None
    if client == "ip":
        ip = request.param("ip")
        if not ip:
            raise TokenRefused("The 'ip' parameter is required when client is 'ip'.")
        return client, None, ip
    return client, None, request.client_ip


def _expiration_minutes(request: Incoming, client: str | None, state: DoubleState) -> int:
    raw = request.param("expiration")
    settings = state.settings
    if raw is None or raw == "":
        return settings.short_timeout
    try:
        minutes = int(raw)
    except ValueError as exc:
        detail = f"Invalid expiration '{raw}': must be a whole number of minutes."
        raise TokenRefused(detail) from exc
    if minutes <= 0:
        raise TokenRefused(f"Invalid expiration '{raw}': must be positive.")
    if client is None and minutes > settings.short_timeout:
        raise TokenRefused("Client ID is required for long expiration tokens.")
    return min(minutes, settings.long_timeout)


# --- checking tokens on secured resources ----------------------------------------------
def _presented_tokens(request: Incoming) -> set[str]:
    """Every token value the request carries (query, form, bearer headers)."""
    found = set(request.query.get("token", [])) | set(request.form.get("token", []))
    for name in ("x-esri-authorization", "authorization"):
        scheme, _, value = (request.header(name) or "").strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            found.add(value.strip())
    return {t for t in found if t}


def _binding_ok(issued: IssuedToken, request: Incoming, referer_rule: str) -> bool:
    if issued.client == "referer" and referer_rule != "ignore":
        sent = request.header("referer")
        if not sent:
            return False
        if referer_rule == "exact":
            return sent == issued.referer
        return sent.startswith(issued.referer)
    if issued.client in ("requestip", "ip"):
        return request.client_ip == issued.ip
    return True


def check_token(request: Incoming, state: DoubleState, f: str) -> str | Reply:
    """The signed-in user allowed on the secured service, or the ArcGIS error reply.

    Two different token values in one request count as an invalid token."""
    presented = _presented_tokens(request)
    if not presented:
        return error_reply(499, "Token Required", [], f)
    issued = state.lookup_token(next(iter(presented))) if len(presented) == 1 else None
    if issued is None or issued.expires <= state.now() or not _binding_ok(issued, request, state.settings.referer_rule):
        return error_reply(498, "Invalid Token", [], f)
    if issued.user not in AUTHORISED_USERS:
        return error_reply(403, NO_PERMISSION, [], f)
    return issued.user
