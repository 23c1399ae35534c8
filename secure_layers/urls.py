"""Turn what a user typed into a clean MapServer URL, and decide where secrets may travel.

A URL is parsed with `urllib.parse`, never built by string concatenation of user text; any
query string (a pasted `?token=` included) is dropped; credentials may go over plain http
only to loopback or when the operator allows it.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from .config import Settings
from .errors import InsecureURL, InvalidInput, NotAMapServer, ServerNotAllowed

_SERVICE_TYPES = {
    "mapserver": "MapServer",
    "featureserver": "FeatureServer",
    "imageserver": "ImageServer",
    "gpserver": "GPServer",
    "geocodeserver": "GeocodeServer",
    "geometryserver": "GeometryServer",
    "networkserver": "NAServer",
    "naserver": "NAServer",
    "sceneserver": "SceneServer",
    "vectortileserver": "VectorTileServer",
}
EXAMPLE = "https://<host>/arcgis/rest/services/<name>/MapServer"
_TOKEN_PARAM = re.compile(r"(?i)(?<=[?&#])token=[^&#]*&?")
_AUTHORITY_START = re.compile(r"([a-z][a-z0-9+.-]*:)?//", re.IGNORECASE)
_ZERO_WIDTH = re.compile("[\u200b\u200c\u200d\u2060\ufeff]")
_AUTHORITY_END = re.compile(r"[/?#]|$")
_PASSWORD_START = re.compile(r"[^/?#@:\[]*:(?!\d*(?:[/?#]|$))")  # "user:" - not "host:8443/"
_LABEL = r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST_NAME = re.compile(rf"{_LABEL}(\.{_LABEL})*", re.IGNORECASE)


@dataclass(frozen=True)
class ServiceURL:
    """A normalised MapServer URL and the server root it belongs to."""

    url: str  # e.g. https://gis.example.org/arcgis/rest/services/Fire/Perimeters/MapServer
    server_root: str  # e.g. https://gis.example.org/arcgis
    name: str  # e.g. Fire/Perimeters
    notices: tuple[str, ...] = ()  # what we changed in the user's URL, to tell them

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    def operation(self, name: str) -> str:
        return f"{self.url}/{name}"


def parse_service_url(text: str, settings: Settings) -> ServiceURL:
    """Validate and normalise a MapServer URL, or raise an InvalidInput saying what to fix."""
    raw = _ZERO_WIDTH.sub("", text or "").strip()  # pasted from a message, which breaks links with them
    if not raw:
        raise InvalidInput(f"Enter the MapServer URL, like {EXAMPLE}.")
    if _without_userinfo(raw) != raw:
        raise InvalidInput(
            "The user name and password were taken out of the URL, so they are not shown or sent "
            "that way; type them in the fields below."
        )
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise InvalidInput(f"“{_shorten(raw)}” is not a valid web address. Enter a URL like {EXAMPLE}.") from None
    if parts.scheme.lower() not in {"http", "https"} or not parts.hostname:
        raise InvalidInput(f"“{_shorten(raw)}” is not a web address. Enter a URL like {EXAMPLE}.")
    if not _is_host_name(parts.hostname):
        raise InvalidInput(f"“{_shorten(parts.hostname, 60)}” is not a valid server name. Check the URL.")
    notices = _token_notices(raw)
    root, name, kind, extra = _split_service_path(parts.path, raw)
    if kind != "MapServer":
        raise NotAMapServer(_not_a_mapserver_message(kind, name))
    if extra:
        left_out = _shorten("/" + "/".join(extra), 60)
        notices += (f"Showing the whole MapServer; the part after it (“{left_out}”) was left out.",)
    netloc = _netloc(parts)
    scheme = parts.scheme.lower()
    service = ServiceURL(
        url=urlunsplit((scheme, netloc, f"{root}/rest/services/{name}/MapServer", "", "")),
        server_root=urlunsplit((scheme, netloc, root, "", "")),
        name=name,
        notices=notices,
    )
    check_secure_transport(service.url, settings)
    check_allowed(service, settings)
    return service


def check_secure_transport(url: str, settings: Settings) -> None:
    """Refuse to send credentials or tokens over plain http, except to loopback or by opt-in."""
    parts = urlsplit(url)
    if parts.scheme == "https" or settings.allow_http or is_loopback(parts.hostname or ""):
        return
    if parts.scheme != "http":
        raise InsecureURL(f"Only https:// addresses can be used (got {parts.scheme}://).")
    raise InsecureURL(
        f"{parts.hostname} is addressed with plain http://, which would send your password "
        "and token unencrypted. Use https://. (An operator who must use http can set "
        "SECURE_LAYERS_ALLOW_HTTP=1.)"
    )


def check_allowed(service: ServiceURL, settings: Settings) -> None:
    """Apply the operator's allow-list of servers, if there is one."""
    if _allowed(service.url, settings):
        return
    raise ServerNotAllowed(
        f"This app is set up to show services from {', '.join(settings.allowed_servers)} only; "
        f"{service.host} is not one of them. Ask the app's operator to add it."
    )


def check_token_service_allowed(token_url: str, service: ServiceURL, settings: Settings) -> None:
    """The password goes to the token service a server names, so the allow-list covers it too (say, a portal).

    A token service on the service's own server (same scheme, host and port) needs no entry of its own.
    """
    if (_normalised(token_url) or "").startswith(origin(service.url) + "/") or _allowed(token_url, settings):
        return
    raise ServerNotAllowed(
        f"This server signs in through {_shorten(token_url)}, which is not among the servers this app "
        "is set up to use, so your password was not sent. Ask the app's operator to add it."
    )


def _allowed(url: str, settings: Settings) -> bool:
    if not settings.allowed_servers:
        return True
    normal = _normalised(url)
    if normal is None:
        return False
    host = (urlsplit(url).hostname or "").lower()
    for entry in settings.allowed_servers:
        if "://" in entry:
            prefix = _normalised(entry.rstrip("/"))
            if prefix is not None and (normal == prefix or normal.startswith(prefix + "/")):
                return True
        elif host == entry.lower():
            return True
    return False


def _normalised(url: str) -> str | None:
    """origin (lower-case, default port dropped) + path, for prefix comparisons; None if malformed."""
    try:
        return origin(url) + urlsplit(url).path.lower()
    except ValueError:
        return None


def is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def origin(url: str) -> str:
    """scheme://host[:port] of a URL, lower-cased, for same-server comparisons."""
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{_netloc(parts)}"


def _split_service_path(path: str, raw: str) -> tuple[str, str, str | None, list[str]]:
    """Return (root path, service name, service type, segments after the type)."""
    lowered = path.lower()
    marker = lowered.find("/rest/services")
    if marker < 0:
        raise InvalidInput(f"“{_shorten(raw)}” is not an ArcGIS REST service URL. It should look like {EXAMPLE}.")
    root = path[:marker].rstrip("/")
    segments = [s for s in path[marker + len("/rest/services") :].split("/") if s]
    for index, segment in enumerate(segments):
        kind = _SERVICE_TYPES.get(segment.lower())
        if kind:
            return root, "/".join(segments[:index]), kind, segments[index + 1 :]
    return root, "/".join(segments), None, []


def _not_a_mapserver_message(kind: str | None, name: str) -> str:
    if kind is None:
        where = f"the folder “{name}”" if name else "the services directory"
        return f"That URL points to {where}, not to a service. Add the MapServer's name, like {EXAMPLE}."
    return (
        f"“{name}” is {'an' if kind[0] in 'AEIOU' else 'a'} {kind}; this app draws MapServer services. "
        f"Use the service's MapServer URL (…/{name}/MapServer) if it has one."
    )


def without_token(url: str) -> str:
    """The URL with any `token` parameter (in the query or the fragment) taken out; unchanged when it has none.

    Text, not a parsed URL: it must work on anything typed, even what `urlsplit` refuses.
    """
    cleaned = _TOKEN_PARAM.sub("", url)
    return url if cleaned == url else cleaned.rstrip("?&#")


def without_secrets(url: str) -> str:
    """What may be shown back of a typed URL: no token parameter, no user name or password before the host."""
    return _without_userinfo(without_token(url))


def _without_userinfo(text: str) -> str:
    """`text` without a `user[:password]@` before the host.

    The standard reading ends the host part at the first `/`, `?` or `#`. But a password may hold
    those, so once a `user:` starts the host part (a colon not followed by a port), user info runs
    to the last `@` before the REST path - or before the end, without one.
    """
    authority = _AUTHORITY_START.match(text)
    start = authority.end() if authority else 0
    at = text.rfind("@", start, _AUTHORITY_END.search(text, start).start())
    if _PASSWORD_START.match(text, start):
        marker = text.lower().rfind("/rest/", start)
        at = max(at, text.rfind("@", start, marker if marker >= 0 else len(text)))
    return text if at < 0 else text[:start] + text[at + 1 :]


def _token_notices(url: str) -> tuple[str, ...]:
    if without_token(url) != url:
        return ("The token pasted in the URL was removed; the app signs in with your user name and password instead.",)
    return ()


def _is_host_name(host: str) -> bool:
    """An IP address, or a DNS name whose labels fit the rules (1-63 characters, letters, digits, - and _)."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    try:
        ascii_host = host.rstrip(".").encode("idna").decode("ascii")
    except UnicodeError:  # a label too long or empty, or characters IDNA refuses
        return False
    return len(ascii_host) <= 253 and _HOST_NAME.fullmatch(ascii_host) is not None


def _netloc(parts) -> str:
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    default = {"http": 80, "https": 443}.get(parts.scheme.lower())
    return host if parts.port in (None, default) else f"{host}:{parts.port}"


def _shorten(text: str, limit: int = 80) -> str:
    """What the user typed, fit to be shown back: no query, fragment, user name or password."""
    text = re.split(r"[?#]", _without_userinfo(text), maxsplit=1)[0]
    return text if len(text) <= limit else text[: limit - 1] + "…"
