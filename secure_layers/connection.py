"""Signing in to a server, and opening its MapServer services with that one sign-in.

`ServerSignIn` is one user's token for one ArcGIS server, shared by every service added
from it (one generateToken per server and user). `MapService` is one added MapServer.
The password is used for one POST and not kept - unless the user ticks "Stay signed in",
when it stays in this session's memory only, inside the auth's renew function, so the
token can be renewed silently.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

from .auth import ArcGISTokenAuth
from .client import ArcGISClient
from .config import Settings
from .errors import InvalidInput, MalformedReply, SSLRequired
from .mapserver import LegendLayer, MapServerInfo, fetch_legend, fetch_mapserver_info
from .tokens import Token, discover_token_url, generate_token
from .urls import ServiceURL, check_token_service_allowed, is_loopback, parse_service_url

log = logging.getLogger(__name__)


@dataclass
class ServerSignIn:
    """One user's token for one server: the client carries it, renewed or replaced in place."""

    server_root: str
    client: ArcGISClient
    auth: ArcGISTokenAuth
    username: str
    token_url: str
    referer: str
    token_minutes: int

    @property
    def expires(self) -> float:
        return self.auth.expires

    def deadline(self) -> float:
        """When proxy handles must die: at token expiry, unless the token renews itself."""
        return math.inf if self.auth.can_renew else self.auth.expires

    def reauthenticate(self, password: str) -> None:
        """Sign in again as the same user (password typed anew); services and choices stay."""
        self.auth.replace_token(
            generate_token(
                self.client,
                self.token_url,
                username=self.username,
                password=password,
                referer=self.referer,
                minutes=self.token_minutes,
            )
        )

    def close(self) -> None:
        self.client.close()


@dataclass
class MapService:
    """An added MapServer and the sign-in it is drawn with."""

    service: ServiceURL
    info: MapServerInfo
    sign_in: ServerSignIn
    _legend: dict[int, LegendLayer] | None = field(default=None, repr=False)

    def legend(self) -> dict[int, LegendLayer]:
        """The service's legend, fetched once per service and sign-in."""
        if self._legend is None:
            self._legend = fetch_legend(self.client, self.service.url)
        return self._legend

    @property
    def client(self) -> ArcGISClient:
        """The sign-in's client: this service is asked with its server's token."""
        return self.sign_in.client


def sign_in(
    settings: Settings, service: ServiceURL, username: str, password: str, referer: str, stay_signed_in: bool = False
) -> ServerSignIn:
    """Get a token from the service's server; raise a typed error otherwise."""
    if not username.strip() or not password:
        raise InvalidInput("Enter both your user name and your password.")
    client = ArcGISClient(settings, referer)
    try:
        token_url = discover_token_url(client, service.server_root)
        check_token_service_allowed(token_url, service, settings)

        def renew() -> Token:
            return generate_token(
                client, token_url, username=username, password=password, referer=referer, minutes=settings.token_minutes
            )

        token = renew()
        if token.ssl and service.url.startswith("http://") and not is_loopback(service.host):
            raise SSLRequired("The server only accepts this token over HTTPS. Use the https:// address of the service.")
        auth = ArcGISTokenAuth(
            token, service.url, renew=renew if stay_signed_in else None, transport=settings.token_transport
        )
        client.set_auth(auth)
    except BaseException:
        client.close()
        raise
    return ServerSignIn(
        server_root=service.server_root,
        client=client,
        auth=auth,
        username=username.strip(),
        token_url=token_url,
        referer=referer,
        token_minutes=settings.token_minutes,
    )


def open_service(signed_in: ServerSignIn, service: ServiceURL) -> MapService:
    """Read a MapServer's metadata with an existing sign-in to its server."""
    try:
        info = fetch_mapserver_info(signed_in.client, service)
    except (TypeError, ValueError, KeyError, AttributeError):
        log.exception("unexpected reply from %s", service.host)
        raise MalformedReply(
            f"{service.host} sent a reply this app cannot read. Check the service URL, or tell the app's operator."
        ) from None
    return MapService(service=service, info=info, sign_in=signed_in)


def sign_in_and_open(
    settings: Settings, service: ServiceURL, username: str, password: str, referer: str, stay_signed_in: bool = False
) -> MapService:
    """The first service of a server: sign in to it, then read the MapServer (its sign-in is `.sign_in`)."""
    signed_in = sign_in(settings, service, username, password, referer, stay_signed_in)
    try:
        return open_service(signed_in, service)
    except BaseException:
        signed_in.close()
        raise


def connect(
    settings: Settings, service_url: str, username: str, password: str, referer: str, stay_signed_in: bool = False
) -> MapService:
    """`sign_in_and_open` for a URL as typed."""
    return sign_in_and_open(
        settings, parse_service_url(service_url, settings), username, password, referer, stay_signed_in
    )
