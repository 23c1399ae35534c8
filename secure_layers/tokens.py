"""Get an ArcGIS token: find the server's token service, then POST the credentials to it.

Credentials go only in a POST form body (never a URL), only over HTTPS or to loopback, and
the token is bound to a Referer (`client=referer`). The `Token` value never shows in a repr.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .client import ArcGISClient
from .errors import (
    ArcGISError,
    CredentialsRejected,
    InvalidInput,
    MalformedReply,
    NotAnArcGISServer,
    TransportError,
)
from .urls import check_secure_transport, origin


@dataclass(frozen=True)
class Token:
    """A token and when it stops working (epoch seconds, the server's own clock)."""

    value: str = field(repr=False)
    expires: float
    ssl: bool = False

    def seconds_left(self, now: float | None = None) -> float:
        return self.expires - (time.time() if now is None else now)


def discover_token_url(client: ArcGISClient, server_root: str) -> str:
    """`{root}/rest/info` -> `authInfo.tokenServicesUrl`, else `{root}/tokens/generateToken`."""
    fallback = f"{server_root}/tokens/generateToken"
    try:
        info = client.get_json(f"{server_root}/rest/info")
    except (NotAnArcGISServer, MalformedReply):
        return fallback
    auth_info = info.get("authInfo") if isinstance(info.get("authInfo"), dict) else {}
    advertised = auth_info.get("tokenServicesUrl") or auth_info.get("tokenServiceUrl")
    if not isinstance(advertised, str) or "://" not in advertised:
        return fallback
    try:
        return normalise_token_url(advertised)
    except ValueError:  # not a URL urllib can read (e.g. an unclosed IPv6 bracket)
        return fallback


def normalise_token_url(url: str) -> str:
    """A `…/tokens/` or `…/tokens` endpoint is the same service as `…/tokens/generateToken`.

    Rebuilt from its parsed host and port, so the URL that is checked (allow-list, https) is the
    URL that is sent: `requests` reads a `\\` or user info in the host part differently from
    `urlsplit`, and a server could name one host to the check and another to the request.
    ValueError for anything with user info, a backslash or no host.
    """
    parts = urlsplit(url.strip())
    if "\\" in url or "@" in parts.netloc or not parts.hostname:
        raise ValueError("not a plain token service URL")
    path = parts.path.rstrip("/")
    if path.lower().endswith("/tokens"):
        path += "/generateToken"
    return origin(url.strip()) + path


def generate_token(
    client: ArcGISClient, token_url: str, *, username: str, password: str, referer: str, minutes: int
) -> Token:
    """POST the credentials; the server may clamp `expiration`, so trust the `expires` it returns."""
    if not username.strip() or not password:
        raise InvalidInput("Enter both your user name and your password.")
    check_secure_transport(token_url, client.settings)
    form = {
        "username": username.strip(),
        "password": password,
        "client": "referer",
        "referer": referer,
        "expiration": str(minutes),
        "f": "json",
    }
    host = urlsplit(token_url).hostname
    try:
        reply = client.post_form(token_url, form)
    except TransportError as error:
        raise type(error)(f"Signing in failed. {error.message}") from None
    except ArcGISError as error:
        raise _sign_in_error(error, host) from None
    return parse_token_reply(reply, host or "the server")


def parse_token_reply(reply: dict[str, Any], host: str) -> Token:
    value, expires = reply.get("token"), _epoch_seconds(reply.get("expires"))
    if not isinstance(value, str) or not value or expires is None:
        raise MalformedReply(f"{host} did not return a token. Check that the URL belongs to an ArcGIS Server.")
    return Token(value=value, expires=expires, ssl=bool(reply.get("ssl", False)))


def _sign_in_error(error: ArcGISError, host: str | None) -> ArcGISError:
    if error.code == 400:
        return CredentialsRejected(
            f"{host} did not accept the user name or password. Check both (passwords are "
            "case-sensitive) and try again.",
            400,
        )
    if error.code == 405:
        return ArcGISError(f"{host} refused the sign-in request (code 405). Check the server's token settings.", 405)
    return type(error)(f"Signing in failed. {error.message}", error.code)


_LATEST_EXPIRY = 7_258_118_400.0  # 2200-01-01 UTC: later is no real token's expiry, and past year 9999 dates break


def _epoch_seconds(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        millis = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    seconds = millis / 1000.0 if math.isfinite(millis) else 0.0
    return seconds if 0 < seconds < _LATEST_EXPIRY else None
