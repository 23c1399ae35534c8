"""`ArcGISTokenAuth`: attach the token to requests to its own server, renew, retry once.

It follows requests' own idiom (like `HTTPDigestAuth`): `__call__` attaches the token and
registers a response hook. Before expiry (minus a margin) the token is renewed under a lock,
if a renew function was given; otherwise an expired token is never sent and `TokenExpired`
is raised. On a 498/499 reply the request is re-sent once with a fresh token - never in a loop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import requests
from requests.auth import AuthBase

from .client import JSON_LIMIT, arcgis_error, decode_json, read_capped
from .errors import TokenExpired, TokenRejected
from .tokens import Token
from .urls import origin, without_token

_RETRIED = "_secure_layers_retried"


class ArcGISTokenAuth(AuthBase):
    def __init__(
        self,
        token: Token,
        server_url: str,
        *,
        renew: Callable[[], Token] | None = None,
        transport: str = "header",
        clock: Callable[[], float] = time.time,
    ):
        self._origin = origin(server_url)
        self._renew = renew
        self._transport = transport
        self._clock = clock
        self._lock = threading.Lock()
        self._set(token)

    def __repr__(self) -> str:
        return f"ArcGISTokenAuth(server={self._origin!r}, expires={self._token.expires:.0f})"

    @property
    def expires(self) -> float:
        return self._token.expires

    @property
    def can_renew(self) -> bool:
        return self._renew is not None

    def replace_token(self, token: Token) -> None:
        """Use a token got by signing in again (with the password typed anew)."""
        with self._lock:
            self._set(token)

    def _set(self, token: Token) -> None:
        self._token = token
        self._lifetime = max(token.seconds_left(self._clock()), 0.0)

    def current_token(self) -> Token:
        """The token to send now: renewed early if possible, never one that has expired."""
        with self._lock:
            if self._token.seconds_left(self._clock()) <= self._margin():
                if self._renew is not None:
                    self._set(self._renew())
                elif self._token.seconds_left(self._clock()) <= 0:
                    raise TokenExpired("Your sign-in has expired. Sign in again to keep seeing the layer.", 498)
            return self._token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if origin(request.url) != self._origin:
            return request  # never hand the token to another server
        token = self.current_token()
        self._attach(request, token)
        request.register_hook("response", self._retry_once_on_rejection)
        return request

    def _attach(self, request: requests.PreparedRequest, token: Token) -> None:
        if self._transport == "query":
            request.prepare_url(request.url, {"token": token.value})
        else:
            request.headers["X-Esri-Authorization"] = f"Bearer {token.value}"

    def _margin(self) -> float:
        """Renew two minutes (or a tenth of the lifetime) early, but never past half of it."""
        if self._renew is None:
            return 0.0
        return min(max(120.0, 0.1 * self._lifetime), 0.5 * self._lifetime)

    def _retry_once_on_rejection(self, response: requests.Response, **kwargs) -> requests.Response:
        request = response.request
        if self._renew is None or getattr(request, _RETRIED, False):
            return response
        if not _is_token_rejection(response, kwargs.get("timeout")):
            return response
        with self._lock:
            self._set(self._renew())
            token = self._token
        retry = request.copy()
        retry.url = without_token(retry.url)
        self._attach(retry, token)
        setattr(retry, _RETRIED, True)
        response.close()
        new_response = response.connection.send(retry, **kwargs)
        new_response.history.append(response)
        new_response.request = retry
        return new_response


def _is_token_rejection(response: requests.Response, timeout: Any) -> bool:
    """A 498/499 in the body (any HTTP status); images and large bodies are never errors."""
    content_type = response.headers.get("Content-Type", "").lower()
    if content_type.startswith("image/") or _declared_length(response) > 65536:
        return False
    # Read under the client's own caps (a chunked reply has no Content-Length), then keep the
    # body on the response so the client reads it from there.
    read_seconds = timeout[1] if isinstance(timeout, tuple) else timeout
    body = read_capped(response, JSON_LIMIT, float(read_seconds or 20))
    response._content, response._content_consumed = body, True
    return isinstance(arcgis_error(decode_json(body)), TokenRejected)


def _declared_length(response: requests.Response) -> int:
    try:
        return int(response.headers.get("Content-Length") or 0)
    except ValueError:  # a malformed header: treat the body as one of unknown length
        return 0
