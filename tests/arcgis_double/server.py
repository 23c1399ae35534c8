"""HTTP plumbing: parse each request, apply scripted faults, route, record, answer.

`ArcGISDouble` runs a stdlib ThreadingHTTPServer on a background thread and exposes the
test-facing API (URLs, clock, tokens, recorded requests, fault injection).
"""

from __future__ import annotations

import gzip
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self
from urllib.parse import parse_qs, unquote

from .replies import Incoming, Reply
from .routes import CONTROL_PREFIX, MAPSERVER, SECOND_MAPSERVER, route
from .state import (
    CannedReply,
    DoubleSettings,
    DoubleState,
    RecordedRequest,
    Stall,
    error_code_of,
)

# A scripted reply with this header goes out without Content-Length, ended by closing the
# connection: the length is unknown until the end, as with a chunked reply.
NO_LENGTH = "X-Double-No-Length"


def parse_form(content_type: str | None, body: bytes) -> dict[str, list[str]]:
    """Fields of an x-www-form-urlencoded body, else {}."""
    if not content_type or not content_type.lower().startswith("application/x-www-form-urlencoded"):
        return {}
    return parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)


def _canned_error_code(canned: CannedReply) -> int | None:
    body = canned.body
    if len(body) > 65536:  # an error envelope is small; do not parse a huge scripted body
        return None
    encoding = {k.lower(): v for k, v in canned.headers.items()}.get("content-encoding", "")
    if encoding.lower() == "gzip":
        try:
            body = gzip.decompress(body)
        except OSError:
            return None
    return error_code_of(body)


class _Handler(BaseHTTPRequestHandler):
    """One handler for every method; the server object carries the double."""

    server_version = "ArcGISDouble/10.9.1"
    protocol_version = "HTTP/1.0"  # one request per connection: a stopped double stays stopped

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = do_GET

    def log_message(self, format: str, *args) -> None:
        """Silent: tests read `ArcGISDouble.requests` instead of stderr."""

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _handle(self) -> None:
        double: ArcGISDouble = self.server.double  # type: ignore[attr-defined]
        raw_path, _, raw_query = self.path.partition("?")
        body = self._read_body()
        headers = dict(self.headers.items())
        query = parse_qs(raw_query, keep_blank_values=True)
        form = parse_form(self.headers.get("Content-Type"), body)
        incoming = Incoming(
            self.command,
            unquote(raw_path),
            query,
            form,
            {k.lower(): v for k, v in headers.items()},
            self.client_address[0],
        )
        reply, stall = double._answer(incoming, raw_path)
        if not (raw_path.startswith(CONTROL_PREFIX) and double.settings.control_api):
            double._state.record(
                RecordedRequest(
                    self.command, raw_path, query, raw_query, form, headers, body, reply.status, reply.error_code
                )
            )
        if stall and not stall.trickle:
            double._stopping.wait(stall.seconds)
        try:
            self._send(reply, stall.seconds if stall and stall.trickle else None)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting (a stalled reply and a timeout): nothing to answer

    def _send(self, reply: Reply, trickle_every: float | None = None) -> None:
        headers = dict(reply.headers)
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        if headers.pop(NO_LENGTH, None) is None:
            self.send_header("Content-Length", str(len(reply.body)))
        self.send_header("Access-Control-Allow-Origin", "*")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command == "HEAD":
            return
        if trickle_every is None:
            self.wfile.write(reply.body)
            return
        for offset in range(len(reply.body)):
            self.wfile.write(reply.body[offset : offset + 1])
            self.wfile.flush()
            if self.server.double._stopping.wait(trickle_every):  # type: ignore[attr-defined]
                return


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # like a real server's backlog: many sessions connect at once


class ArcGISDouble:
    """A strict fake ArcGIS Server 10.9.1 with one secured service, on loopback."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        settings: DoubleSettings | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.host, self._port = host, port
        self._tls = tls  # serve https with this server-side context
        self._state = DoubleState(settings)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._base_url: str | None = None

    # lifecycle
    def start(self) -> Self:
        server = _Server((self.host, self._port), _Handler)
        server.double = self  # type: ignore[attr-defined]
        if self._tls is not None:
            server.socket = self._tls.wrap_socket(server.socket, server_side=True)
        self._server, self._port = server, server.server_address[1]
        self._base_url = f"{'https' if self._tls else 'http'}://{self.host}:{self._port}"
        self._stopping.clear()
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="arcgis-double", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # URLs
    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("ArcGISDouble is not started")
        return self._base_url

    @property
    def root(self) -> str:
        return self.base_url + "/arcgis"

    @property
    def service_url(self) -> str:
        return self.base_url + MAPSERVER

    @property
    def second_service_url(self) -> str:
        """Another secured MapServer on the same server ("Incidents"): it shares the sign-in."""
        return self.base_url + SECOND_MAPSERVER

    @property
    def token_url(self) -> str:
        return self.root + "/tokens/generateToken"

    # state
    @property
    def settings(self) -> DoubleSettings:
        return self._state.settings

    @property
    def requests(self) -> list[RecordedRequest]:
        return self._state.requests

    def clear_requests(self) -> None:
        self._state.clear_requests()

    def take_requests(self) -> list[RecordedRequest]:
        """Hand over the recorded requests and forget them: a long run checks as it goes, in bounded memory."""
        return self._state.take_requests()

    def now(self) -> float:
        return self._state.now()

    def advance(self, seconds: float) -> None:
        self._state.advance(seconds)

    def revoke_all_tokens(self) -> None:
        self._state.revoke_all_tokens()

    @property
    def issued_tokens(self) -> list[str]:
        return self._state.issued_tokens

    def lookup_token(self, token: str):
        """Who a token was issued to, when and with what binding (None once revoked)."""
        return self._state.lookup_token(token)

    # faults
    def script(
        self,
        path_suffix: str,
        body: bytes,
        content_type: str,
        status: int = 200,
        times: int = 1,
        headers: dict | None = None,
    ) -> None:
        """The next `times` requests whose path ends with `path_suffix` get this reply."""
        self._state.add_canned(CannedReply(path_suffix, body, content_type, status, times, dict(headers or {})))

    def stall(self, path_suffix: str, seconds: float, times: int = 1) -> None:
        """The next `times` matching requests wait `seconds` before the answer is sent."""
        self._state.add_stall(Stall(path_suffix, seconds, times))

    def trickle(self, path_suffix: str, seconds_per_byte: float, times: int = 1) -> None:
        """The next `times` matching replies start at once, then send one byte every `seconds_per_byte`."""
        self._state.add_stall(Stall(path_suffix, seconds_per_byte, times, trickle=True))

    def _answer(self, incoming: Incoming, raw_path: str) -> tuple[Reply, Stall | None]:
        if raw_path.startswith(CONTROL_PREFIX) and self.settings.control_api:
            return route(incoming, self._state, self._base_url), None
        stall = self._state.take_stall(raw_path)
        canned = self._state.take_canned(raw_path)
        if canned:
            reply = Reply(canned.status, canned.body, canned.content_type, _canned_error_code(canned), canned.headers)
        else:
            reply = route(incoming, self._state, self._base_url)
        return reply, stall
