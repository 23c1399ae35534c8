"""The HTTP transport to ArcGIS Server, and the one place that turns its replies into errors.

One `requests.Session` per signed-in user: timeouts on every request, TLS always verified
(optionally against the operator's CA bundle), the token's Referer on every request,
redirects never followed (so a password or token never leaves for another host), replies
capped in size and in reading time, and ArcGIS error bodies - which arrive inside HTTP 200 - mapped to the
typed errors of `errors.py`.
"""

from __future__ import annotations

import io
import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from PIL import Image, UnidentifiedImageError

from .config import Settings
from .errors import (
    ArcGISError,
    CertificateError,
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
from .urls import origin

JSON_LIMIT = 5 * 1024 * 1024
IMAGE_LIMIT = 32 * 1024 * 1024
USER_AGENT = "secure-layers/0.1 (+python-requests)"
_REDIRECTS = {301, 302, 303, 307, 308}
_TOKEN_VALUE = re.compile(r"(?i)([?&]token=)[^&#\s\"]*")


class _HideTokensInURLs(logging.Filter):
    """urllib3 logs every request's URL at DEBUG; with SECURE_LAYERS_TOKEN_TRANSPORT=query it holds the token."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _TOKEN_VALUE.sub(r"\1<hidden>", arg) if isinstance(arg, str) else arg for arg in record.args
            )
        return True


logging.getLogger("urllib3.connectionpool").addFilter(_HideTokensInURLs())


@dataclass(frozen=True)
class ImageReply:
    content: bytes
    content_type: str
    width: int
    height: int


class ArcGISClient:
    """GET/POST to one ArcGIS server with the user's Referer and (once signed in) token."""

    def __init__(self, settings: Settings, referer: str, auth: requests.auth.AuthBase | None = None):
        self.settings = settings
        self.referer = referer
        self.session = requests.Session()
        self.session.headers.update({"User-Agent": USER_AGENT, "Referer": referer})
        self.session.auth = auth
        self.session.hooks["response"].append(_refuse_redirects)

    def set_auth(self, auth: requests.auth.AuthBase | None) -> None:
        self.session.auth = auth

    def close(self) -> None:
        self.session.close()

    def get_json(self, url: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self._send("GET", url, params={**(params or {}), "f": "json"})
        return parse_json_reply(response, read_capped(response, JSON_LIMIT, self.settings.read_timeout))

    def post_form(self, url: str, data: dict[str, Any]) -> dict[str, Any]:
        """POST an x-www-form-urlencoded body, without the session's token (this is how tokens are got)."""
        response = self._send("POST", url, data=data, auth=_without_token)
        return parse_json_reply(response, read_capped(response, JSON_LIMIT, self.settings.read_timeout))

    def get_image(self, url: str, params: dict[str, Any]) -> ImageReply:
        response = self._send("GET", url, params=params)
        return parse_image_reply(response, read_capped(response, IMAGE_LIMIT, self.settings.read_timeout))

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        host = urlsplit(url).hostname or url
        try:
            # verify is passed per request: requests lets REQUESTS_CA_BUNDLE override a Session's own.
            response = self.session.request(
                method,
                url,
                timeout=self.settings.timeout,
                verify=self.settings.verify,
                allow_redirects=False,
                stream=True,
                **kwargs,
            )
        except requests.exceptions.SSLError:
            raise CertificateError(
                f"The TLS certificate of {host} could not be verified, so nothing was sent to it. "
                "If the server uses a private certificate authority, the operator can set "
                "SECURE_LAYERS_CA_BUNDLE to that authority's PEM file."
            ) from None
        except requests.exceptions.ConnectTimeout:
            raise TransportError(
                f"{host} did not accept a connection within {self.settings.connect_timeout:g} seconds. "
                "The server may be down or unreachable from here; try again later."
            ) from None
        except requests.exceptions.Timeout:
            raise TransportError(
                f"{host} did not answer within {self.settings.read_timeout:g} seconds. "
                "The server may be busy or down; try again later."
            ) from None
        except requests.exceptions.ConnectionError as exc:
            raise TransportError(_connection_message(host, exc)) from None
        except (requests.exceptions.RequestException, urllib3.exceptions.LocationValueError):
            raise TransportError(f"The request to {host} could not be sent. Check the URL.") from None
        return response


def _refuse_redirects(response: requests.Response, **kwargs: Any) -> requests.Response:
    """Stop at a redirect, before requests parses its Location (it does even with allow_redirects=False)."""
    if response.status_code in _REDIRECTS:
        response.close()
        raise Redirected(_redirect_message(response.request.url, response.headers.get("Location", "")))
    return response


def _without_token(request: requests.PreparedRequest) -> requests.PreparedRequest:
    return request


def arcgis_error(payload: Any) -> ArcGISError | None:
    """Map an ArcGIS error body (either envelope, code as int or string) to a typed error."""
    if not isinstance(payload, dict):
        return None
    error = payload.get("error")
    if isinstance(error, dict):
        code, message, details = error.get("code"), error.get("message"), error.get("details")
    elif payload.get("status") == "error":
        code, message, details = payload.get("code"), None, payload.get("messages")
    else:
        return None
    code = _as_int(code)
    text = _server_text(message, details)
    if code == 498:
        return TokenInvalid(
            "The server no longer accepts your sign-in: the token is invalid or has expired "
            "(the server may have restarted). Sign in again.",
            code,
        )
    if code == 499:
        return TokenRequired(
            "The server says no token came with the request, although the app sends one. Sign in "
            "again; if this keeps happening, a proxy between the app and the server is removing it, "
            "or the server does not read the token header: the app's operator can then set "
            "SECURE_LAYERS_TOKEN_TRANSPORT=query.",
            code,
        )
    if code == 403 and "ssl required" in text.lower():
        return SSLRequired("The server only accepts HTTPS. Use the https:// address of the service.", code)
    if code == 403:
        return Forbidden(
            "Your account is signed in but has no permission to use this service. Sign in with "
            "an account that has access, or ask the service's administrator.",
            code,
        )
    if code == 404:
        return ServiceNotFound(f"The server has no service at this address ({text}). Check the service name.", code)
    return ArcGISError(f"The server reported an error (code {code}): {text}", code)


def parse_json_reply(response: requests.Response, body: bytes) -> dict[str, Any]:
    """Decode a JSON reply, raising the typed error it carries (in any HTTP status)."""
    host = urlsplit(response.url).hostname or "the server"
    payload = decode_json(body)
    error = arcgis_error(payload)
    if error is not None:
        raise error
    if response.status_code != 200 or payload is None:
        raise _status_or_format_error(host, response, body)
    if not isinstance(payload, dict):
        raise MalformedReply(f"{host} sent JSON of an unexpected shape. Check that the URL is an ArcGIS REST URL.")
    return payload


def parse_image_reply(response: requests.Response, body: bytes) -> ImageReply:
    """Accept only a real image; anything else is read as the error it is."""
    try:
        with Image.open(io.BytesIO(body)) as image:
            kind, size = image.format, image.size
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        kind = None
    if kind in {"PNG", "JPEG", "GIF"} and response.status_code == 200:
        return ImageReply(body, Image.MIME[kind], *size)
    parse_json_reply(response, body)  # raises the ArcGIS error, if the body is one
    host = urlsplit(response.url).hostname or "the server"
    raise MalformedReply(f"{host} did not send an image for the map. Try again later.")


def _status_or_format_error(host: str, response: requests.Response, body: bytes) -> Exception:
    status = response.status_code
    if status == 404:
        return NotAnArcGISServer(f"{host} has no ArcGIS REST endpoint at this address (HTTP 404). Check the URL.")
    if status in (401, 407):
        return Forbidden(
            f"{host} asks for a different kind of login (HTTP {status}), such as Windows or web-tier "
            "authentication. This app signs in with ArcGIS tokens only."
        )
    if status >= 500:
        return TransportError(f"{host} had an internal error (HTTP {status}). Try again later.")
    if status != 200:
        return MalformedReply(f"{host} answered with HTTP {status}. Check the URL.")
    if _looks_like_html(response, body):
        return MalformedReply(
            f"{host} answered with a web page instead of ArcGIS data. Check that the URL is the "
            "service's REST address (…/rest/services/…), not a portal or login page."
        )
    return MalformedReply(f"{host} sent a reply that is not valid JSON. Check the URL, or try again later.")


def decode_json(body: bytes) -> Any:
    """The JSON in a body (a BOM allowed), or None for anything that is not JSON."""
    try:
        return json.loads(body.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        return None


def read_capped(response: requests.Response, limit: int, within: float) -> bytes:
    """The whole body, read in at most `within` seconds and `limit` bytes, else a typed error; the response is closed.

    The read timeout alone bounds each wait, not the whole reply: a server that trickles a byte
    at a time would hold a sign-in or a proxy worker for as long as it liked.
    """
    host = urlsplit(response.url).hostname or "the server"
    ends = time.monotonic() + within
    chunks, size = [], 0
    try:
        for chunk in _body_chunks(response):
            size += len(chunk)
            if size > limit:
                raise MalformedReply(f"{host} sent a reply larger than {limit // (1024 * 1024)} MB; it was not read.")
            if time.monotonic() > ends:
                raise TransportError(
                    f"{host} did not finish its reply within {within:g} seconds. The server may be busy "
                    "or the network slow; try again later."
                )
            chunks.append(chunk)
    except (requests.exceptions.Timeout, urllib3.exceptions.TimeoutError):
        raise TransportError(
            f"{host} did not answer within {within:g} seconds. The server may be busy or down; try again later."
        ) from None
    except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError):
        raise TransportError(f"The connection to {host} broke while reading its reply. Try again.") from None
    finally:
        response.close()
    return b"".join(chunks)


def _body_chunks(response: requests.Response):
    """The body as it arrives: `read1` returns whatever one socket read brings, so the deadline is checked often."""
    if response._content_consumed:  # already read (the token auth peeks at small replies)
        yield response.content
        return
    while chunk := response.raw.read1(64 * 1024, decode_content=True):
        yield chunk


def _connection_message(host: str, exc: Exception) -> str:
    text = str(exc)
    if "NameResolution" in text or "Name or service not known" in text or "nodename nor servname" in text:
        return f"The server name {host} could not be found. Check the URL, or your network connection."
    if "Connection refused" in text or "ECONNREFUSED" in text:
        return f"{host} refused the connection: the server is down or the port is wrong. Check the URL, or try later."
    return f"Cannot reach {host}. Check the URL and your network connection, or try again later."


def _redirect_message(url: str, location: str) -> str:
    source = urlsplit(url)
    try:
        target = urlsplit(location)
        target.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        target = urlsplit("")
    if target.hostname in (None, source.hostname) and source.scheme == "http" and target.scheme == "https":
        return f"{source.hostname} only answers over HTTPS. Use the https:// address of the service."
    where = origin(location) if target.hostname else "another address"
    return (
        f"{source.hostname} redirected the request to {where}. The app does not follow "
        "redirects, so your password and token never go to another address; use that address instead."
    )


def _looks_like_html(response: requests.Response, body: bytes) -> bool:
    return "html" in response.headers.get("Content-Type", "").lower() or body.lstrip()[:1] == b"<"


def _as_int(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def _server_text(message: Any, details: Any, limit: int = 300) -> str:
    parts = [str(message)] if message else []
    if isinstance(details, list):
        parts += [str(item) for item in details if item]
    elif details:
        parts.append(str(details))
    text = " ".join(dict.fromkeys(parts)) or "no details given"
    return text if len(text) <= limit else text[: limit - 1] + "…"
