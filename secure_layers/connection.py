"""One sign-in, start to finish: URL -> token service -> token -> MapServer metadata.

The password is used for one POST and not kept - unless the user ticks "Stay signed in",
when it stays in this session's memory only, inside the auth's renew function, so the token
can be renewed silently. `Connection` holds the client (with the token inside its auth), the
service, who signed in and where to sign in again.
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
from .urls import ServiceURL, is_loopback, parse_service_url

log = logging.getLogger(__name__)


@dataclass
class Connection:
    """A signed-in MapServer: what the session keeps after sign-in."""

    service: ServiceURL
    info: MapServerInfo
    client: ArcGISClient
    auth: ArcGISTokenAuth
    username: str
    token_url: str
    referer: str
    token_minutes: int
    _legend: dict[int, LegendLayer] | None = field(default=None, repr=False)

    def legend(self) -> dict[int, LegendLayer]:
        """The service's legend, fetched once per sign-in."""
        if self._legend is None:
            self._legend = fetch_legend(self.client, self.service.url)
        return self._legend

    @property
    def expires(self) -> float:
        return self.auth.expires

    def deadline(self) -> float:
        """When the proxy handle must die: at token expiry, unless the token renews itself."""
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


def connect(
    settings: Settings, service_url: str, username: str, password: str, referer: str, stay_signed_in: bool = False
) -> Connection:
    """Sign in to the service's server and read the MapServer; raise a typed error otherwise."""
    service = parse_service_url(service_url, settings)
    if not username.strip() or not password:
        raise InvalidInput("Enter both your user name and your password.")
    client = ArcGISClient(settings, referer)
    try:
        token_url = discover_token_url(client, service.server_root)

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
        info = fetch_mapserver_info(client, service)
    except (TypeError, ValueError, KeyError, AttributeError):
        client.close()
        log.exception("unexpected reply while signing in to %s", service.host)
        raise MalformedReply(
            f"{service.host} sent a reply this app cannot read. Check the service URL, or tell the app's operator."
        ) from None
    except BaseException:
        client.close()
        raise
    return Connection(
        service=service,
        info=info,
        client=client,
        auth=auth,
        username=username.strip(),
        token_url=token_url,
        referer=referer,
        token_minutes=settings.token_minutes,
    )
