"""One exception hierarchy for everything that can go wrong talking to ArcGIS Server.

Each error carries a message a person can act on: what went wrong and what to do. No
error text ever contains a password or a token; messages name hosts and services only.
"""

from __future__ import annotations

import logging
import traceback

_log = logging.getLogger(__name__)


class SecureLayersError(Exception):
    """Base class: `str(error)` is the plain message shown to the user."""

    title = "Something went wrong"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


# --- input the user or the operator gave -------------------------------------------


class InvalidInput(SecureLayersError):
    """A field is empty or not what we can use."""

    title = "Check the form"


class InsecureURL(InvalidInput):
    """Plain http to a non-loopback host, where the password or token would travel in clear."""

    title = "HTTPS is required"


class ServerNotAllowed(InvalidInput):
    """The operator restricted which servers may be added."""

    title = "Server not allowed"


# --- the server's answers ----------------------------------------------------------


class ArcGISError(SecureLayersError):
    """The server answered with an ArcGIS error envelope."""

    title = "The server refused the request"

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        self.code = code


class CredentialsRejected(ArcGISError):
    """generateToken said the username or password is wrong (code 400)."""

    title = "Sign-in failed"


class TokenRejected(ArcGISError):
    """The token was not accepted; the user has to sign in again."""

    title = "Session expired"


class TokenRequired(TokenRejected):
    """The server saw no token (code 499); we always send one, so this is a bug or a proxy."""

    title = "Token required"


class TokenInvalid(TokenRejected):
    """The token is invalid, expired, revoked or bound to another referer (code 498)."""


class TokenExpired(TokenInvalid):
    """The token's own expiry time has passed; nothing was sent with it."""


class Forbidden(ArcGISError):
    """The user is signed in but may not use this service (code 403)."""

    title = "No permission"


class SSLRequired(ArcGISError):
    """The server only accepts HTTPS (403 "SSL Required")."""

    title = "HTTPS is required"


class NotAnArcGISServer(ArcGISError):
    """The URL does not lead to an ArcGIS Server REST endpoint."""

    title = "Not an ArcGIS server"


class ServiceNotFound(NotAnArcGISServer):
    """An ArcGIS server answered that it has no such service (code 404 in the body)."""

    title = "Service not found"


class NotAMapServer(ArcGISError):
    """The URL is an ArcGIS service, but not a MapServer."""

    title = "Not a MapServer"


class MalformedReply(ArcGISError):
    """HTML, broken JSON or an unexpected shape where JSON was expected."""

    title = "Unexpected reply"


# --- the way there -----------------------------------------------------------------


class TransportError(SecureLayersError):
    """The server could not be reached: DNS, refused connection, timeout, TLS, redirect."""

    title = "Cannot reach the server"


class CertificateError(TransportError):
    """The server's TLS certificate could not be verified."""

    title = "Certificate not trusted"


class Redirected(TransportError):
    """The server answered with a redirect, which the app never follows (it would carry secrets along)."""

    title = "Redirected elsewhere"


# --- what the app did not foresee --------------------------------------------------


class Unexpected(SecureLayersError):
    """A fault the app has no words for (a bug, or a reply nobody imagined): said plainly, never as a traceback."""


def as_problem(failure: Exception, doing: str) -> SecureLayersError:
    """`failure` as an error to show: itself if typed, else an `Unexpected` that is logged by type and place.

    The unexpected failure's own text is neither shown nor logged: it may quote a URL with a token in it.
    """
    if isinstance(failure, SecureLayersError):
        return failure
    frames = traceback.extract_tb(failure.__traceback__)
    where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "an unknown place"
    _log.error("Unexpected %s while %s, raised at %s", type(failure).__name__, doing, where)
    return Unexpected(
        f"{doing[:1].upper()}{doing[1:]} failed on a problem the app did not expect ({type(failure).__name__}). "
        "What you typed is kept: try again, and if it happens again tell the app's operator."
    )
