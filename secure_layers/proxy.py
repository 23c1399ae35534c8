"""The same-origin export proxy: the browser asks here, the token is added on the server.

`HandleRegistry` is the one deliberate process-wide store of secrets: bounded, keyed by
unguessable handles (256 bits), each entry dying at sign-out, at token expiry and when its
Streamlit session ends. The routes serve only the registered service's `export`, GET only,
with whitelisted and validated parameters; nothing from the browser (headers, cookies,
unknown parameters) is forwarded. This is not an open proxy.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from .client import ArcGISClient
from .errors import InvalidInput, SecureLayersError, TokenRejected, as_problem
from .layers import DYNAMIC_LAYER_JS, ROUTE_PREFIX
from .mapserver import ExportParams, MapServerInfo, export_image

log = logging.getLogger(__name__)

_NO_STORE = {"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"}


@dataclass
class ProxyEntry:
    client: ArcGISClient
    info: MapServerInfo
    session_id: str
    deadline: Callable[[], float]  # when the handle dies: the token's expiry, or never if it renews itself
    problem: SecureLayersError | None = None


class HandleRegistry:
    """handle -> (client, service) for the proxy; thread-safe and bounded (least recently used goes)."""

    def __init__(self, max_entries: int = 256, clock: Callable[[], float] = time.time):
        self._entries: OrderedDict[str, ProxyEntry] = OrderedDict()
        self._lock = threading.Lock()
        self._max = max_entries
        self._clock = clock

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def register(
        self, session_id: str, client: ArcGISClient, info: MapServerInfo, deadline: Callable[[], float]
    ) -> str:
        handle = secrets.token_urlsafe(32)
        with self._lock:
            self._drop_expired()
            while len(self._entries) >= self._max:
                self._entries.popitem(last=False)
            self._entries[handle] = ProxyEntry(client, info, session_id, deadline)
        return handle

    def lookup(self, handle: str) -> ProxyEntry | None:
        """The live entry for a handle, or None; an expired entry is dropped on sight."""
        with self._lock:
            entry = self._entries.get(handle)
            if entry is None:
                return None
            if entry.deadline() <= self._clock():
                del self._entries[handle]
                return None
            self._entries.move_to_end(handle)
            return entry

    def forget(self, handle: str) -> None:
        with self._lock:
            self._entries.pop(handle, None)

    def report(self, handle: str, problem: SecureLayersError | None) -> None:
        """Record what the last export met, so the session's UI can say it."""
        with self._lock:
            entry = self._entries.get(handle)
            if entry is not None:
                entry.problem = problem

    def problem(self, handle: str) -> SecureLayersError | None:
        with self._lock:
            entry = self._entries.get(handle)
            return entry.problem if entry else None

    def is_registered(self, handle: str) -> bool:
        return self.lookup(handle) is not None

    def _drop_expired(self) -> None:
        now = self._clock()
        for handle in [h for h, e in self._entries.items() if e.deadline() <= now]:
            del self._entries[handle]


REGISTRY = HandleRegistry()


def export_path(handle: str) -> str:
    """The browser-visible URL of a handle's export: same origin, no token."""
    return f"{ROUTE_PREFIX}/proxy/{handle}/MapServer/export"


def routes(registry: HandleRegistry = REGISTRY, session_alive: Callable[[str], bool] = lambda _: True) -> list[Route]:
    """Starlette routes for `st.App(routes=...)`: the export proxy and the layer's script."""

    def export(request: Request) -> Response:
        if request.method != "GET":  # Starlette answers HEAD for GET routes; that would still fetch
            return PlainTextResponse("Method not allowed.", 405, headers=_NO_STORE)
        handle = request.path_params["handle"]
        entry = registry.lookup(handle)
        if entry is None or not session_alive(entry.session_id):
            return PlainTextResponse("Unknown or expired map layer.", 404, headers=_NO_STORE)
        try:
            params = ExportParams.from_query(_single_values(request), entry.info)
        except InvalidInput as error:
            return PlainTextResponse(f"Bad export request: {error}", 400, headers=_NO_STORE)
        try:
            image = export_image(entry.client, entry.info.url, params)
        except Exception as failure:  # the sidebar says what went wrong; the browser gets the title only
            error = as_problem(failure, "drawing the map")
            registry.report(handle, error)
            log.info("export for %s failed: %s", entry.info.name, type(error).__name__)
            status = 401 if isinstance(error, TokenRejected) else 502
            return PlainTextResponse(error.title, status, headers=_NO_STORE)
        registry.report(handle, None)
        return Response(image.content, media_type=image.content_type, headers=_NO_STORE)

    def script(_: Request) -> Response:
        return Response(
            DYNAMIC_LAYER_JS,
            media_type="application/javascript",
            headers={"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"},
        )

    def unknown(_: Request) -> Response:
        return PlainTextResponse("Not found.", 404, headers=_NO_STORE)

    return [
        Route(f"{ROUTE_PREFIX}/proxy/{{handle}}/MapServer/export", export, methods=["GET"]),
        Route(f"{ROUTE_PREFIX}/assets/dynamic-layer.js", script, methods=["GET"]),
        # Anything else under the prefix: a plain 404, never Streamlit's own page.
        Route(f"{ROUTE_PREFIX}/{{rest:path}}", unknown),
    ]


def _single_values(request: Request) -> dict[str, str]:
    """Query parameters, refusing repeats (which could smuggle a second value past checks)."""
    items = request.query_params.multi_items()
    keys = [key for key, _ in items]
    if len(keys) != len(set(keys)):
        raise InvalidInput("a parameter is repeated")
    return dict(items)
