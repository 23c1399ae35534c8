"""Per-session state in `st.session_state`: the only module of the package that imports Streamlit.

What a session keeps: its sign-ins (one per server: client + token, no password), the
services added from them in drawing order, each with a proxy handle and a lease that
forgets the handle when the session's state is garbage-collected, and the last error to
show. A password passes through `st.session_state` only between a form's callback and the
top of the next script run, where `take_password` removes it.
"""

from __future__ import annotations

import hashlib
import os
import weakref
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import streamlit as st
from streamlit.errors import StreamlitSecretNotFoundError
from streamlit.runtime import Runtime
from streamlit.runtime.scriptrunner import get_script_run_ctx

from .config import Settings, load_settings
from .connection import MapService, ServerSignIn
from .errors import SecureLayersError
from .proxy import HandleRegistry
from .share import SharedService, View, read_services, read_view, ticked_for, write_services
from .urls import without_secrets

_SIGN_INS = "_secure_layers_sign_ins"
_SERVICES = "_secure_layers_services"
_REAUTH = "_secure_layers_reauth"
_ERROR = "_secure_layers_error"
_IDENTIFIED = "_secure_layers_identified"
_PENDING_PASSWORD = "_secure_layers_pending_password"  # noqa: S105 - a key name
_KEPT = "_secure_layers_kept_"
_UIDS = "_secure_layers_uids"
_VIEW = "_secure_layers_view"
_FROM_LINK = "_secure_layers_from_link"
_VIEW_PARAMS = ("lat", "lng", "z")
KEPT_FIELDS = ("service_url", "username")
PASSWORD_WIDGET = "password"  # noqa: S105 - a widget key
MAP_KEY = "map"


class _HandleLease:
    """Forgets a proxy handle when it is released or garbage-collected with the session."""

    def __init__(self, registry: HandleRegistry, handle: str):
        self._finalizer = weakref.finalize(self, registry.forget, handle)

    def release(self) -> None:
        self._finalizer()


@dataclass
class AddedService:
    """A service on this session's map: `uid` keys its widgets, `handle` its proxy URL."""

    uid: str
    map_service: MapService
    handle: str
    lease: _HandleLease


def settings() -> Settings:
    try:
        secrets = st.secrets.to_dict()
    except (FileNotFoundError, StreamlitSecretNotFoundError):
        secrets = {}
    return load_settings(os.environ, secrets)


def referer(config: Settings) -> str:
    """The Referer the token is bound to: configured, else the app's own URL."""
    return config.referer or st.context.url or "http://localhost:8501"


def stash_password(widget: str = PASSWORD_WIDGET) -> None:
    """Form callback: move the password out of its widget, so the widget never keeps it.

    The URL and user name are copied aside too: Streamlit forgets a widget's value while the
    widget is not drawn (the form is hidden while signed in), and they must survive sign-out.
    """
    st.session_state[_PENDING_PASSWORD + widget] = st.session_state.get(widget, "")
    st.session_state[widget] = ""
    if widget == PASSWORD_WIDGET:
        for key in KEPT_FIELDS:
            st.session_state[_KEPT + key] = st.session_state.get(key, "")


def drop_secrets_from_url() -> None:
    """A token or password typed into the URL field is not shown back (the user was told it was removed)."""
    typed = st.session_state.get("service_url", "")
    cleaned = without_secrets(typed)
    if cleaned != typed:
        st.session_state["service_url"] = st.session_state[_KEPT + "service_url"] = cleaned


def take_password(widget: str = PASSWORD_WIDGET) -> str | None:
    """The password submitted just now, removed from the session; None if nothing was submitted."""
    return st.session_state.pop(_PENDING_PASSWORD + widget, None)


def restore_form(default_service_url: str) -> None:
    """Before the form is drawn: refill the URL and user name the user typed last."""
    defaults = {"service_url": default_service_url, "username": ""}
    for key in KEPT_FIELDS:
        if key not in st.session_state:
            st.session_state[key] = st.session_state.get(_KEPT + key, defaults[key])


def sign_in_for(server_root: str) -> ServerSignIn | None:
    return st.session_state.get(_SIGN_INS, {}).get(server_root)


def sign_ins() -> list[ServerSignIn]:
    return list(st.session_state.get(_SIGN_INS, {}).values())


def keep_sign_in(signed_in: ServerSignIn) -> None:
    st.session_state.setdefault(_SIGN_INS, {})[signed_in.server_root] = signed_in


def services() -> list[AddedService]:
    return st.session_state.get(_SERVICES, [])


def on_map(service_url: str) -> bool:
    return any(added.map_service.service.url == service_url for added in services())


def services_of(server_root: str) -> list[AddedService]:
    return [added for added in services() if added.map_service.sign_in.server_root == server_root]


def add_service(map_service: MapService, registry: HandleRegistry, on_top: bool = True) -> AddedService:
    """Put a service on the map and register it with the proxy."""
    st.session_state[_UIDS] = st.session_state.get(_UIDS, 0) + 1
    added = AddedService(f"s{st.session_state[_UIDS]}", map_service, "", None)  # type: ignore[arg-type]
    _register(added, registry)
    st.session_state[_SERVICES] = [added, *services()] if on_top else [*services(), added]
    st.session_state.pop(_ERROR, None)
    return added


def remove_service(uid: str, registry: HandleRegistry) -> None:
    """Take a service off the map; a sign-in no service uses any more is dropped too."""
    kept = [added for added in services() if added.uid != uid]
    for added in services():
        if added.uid == uid:
            registry.forget(added.handle)
            root = added.map_service.sign_in.server_root
            if not any(other.map_service.sign_in.server_root == root for other in kept):
                _drop_sign_in(root)
    st.session_state[_SERVICES] = kept
    st.session_state.pop(_IDENTIFIED, None)


def move_service(uid: str, step: int) -> None:
    """Up (-1) or down (+1) in the drawing order; the first is drawn on top."""
    order = services()
    index = next(i for i, added in enumerate(order) if added.uid == uid)
    target = min(max(index + step, 0), len(order) - 1)
    order.insert(target, order.pop(index))
    st.session_state[_SERVICES] = order


def require_password(server_root: str, reason: SecureLayersError | None) -> None:
    """Ask for this server's password alone (token expired, rejected, or about to end)."""
    st.session_state.setdefault(_REAUTH, {})[server_root] = reason


def servers_needing_password() -> dict[str, SecureLayersError | None]:
    return dict(st.session_state.get(_REAUTH, {}))


def reauth_widget(server_root: str) -> str:
    return "reauth_password_" + hashlib.sha256(server_root.encode()).hexdigest()[:10]


def password_accepted(server_root: str, registry: HandleRegistry) -> None:
    """After signing in again: fresh proxy handles for that server's services."""
    st.session_state.get(_REAUTH, {}).pop(server_root, None)
    for added in services_of(server_root):
        registry.forget(added.handle)
        _register(added, registry)


def sign_out(registry: HandleRegistry, reason: SecureLayersError | None = None) -> None:
    """Drop every token, service and layer; keep the URL and user name in their widgets."""
    for added in services():
        registry.forget(added.handle)
    for root in list(st.session_state.get(_SIGN_INS, {})):
        _drop_sign_in(root)
    for key in (_SERVICES, _REAUTH, _IDENTIFIED):
        st.session_state.pop(key, None)
    set_error(reason)


def _register(added: AddedService, registry: HandleRegistry) -> None:
    service = added.map_service
    added.handle = registry.register(session_id(), service.client, service.info, service.sign_in.deadline)
    added.lease = _HandleLease(registry, added.handle)


def _drop_sign_in(server_root: str) -> None:
    signed_in = st.session_state.get(_SIGN_INS, {}).pop(server_root, None)
    if signed_in is not None:
        signed_in.close()
    st.session_state.get(_REAUTH, {}).pop(server_root, None)


def opened_link() -> View:
    """On a session's first run, read the link it was opened with; the map's first view."""
    if _VIEW not in st.session_state:
        params = {key: st.query_params.get_all(key) for key in st.query_params}
        st.session_state[_VIEW] = read_view(params)
        st.session_state[_FROM_LINK] = read_services(params)
    return st.session_state[_VIEW]


def services_from_link() -> list[SharedService]:
    """Services the link shows that are not on the map yet (their server needs a sign-in)."""
    return st.session_state.get(_FROM_LINK, [])


def link_service_added(shared: SharedService, added: AddedService | None) -> None:
    """Done with one service of the link: tick its sublayers and set its opacity as the link says."""
    st.session_state[_FROM_LINK] = [other for other in services_from_link() if other is not shared]
    if added is None:
        return
    layers = added.map_service.info.layers
    if shared.shown is not None:
        ticked = ticked_for(shared.shown, layers)
        for layer in layers:
            st.session_state[f"{added.uid}-sublayer-{layer.id}"] = layer.id in ticked
    st.session_state[f"{added.uid}-opacity"] = shared.opacity


def keep_link(shown: list[tuple[str, list[int], float]]) -> None:
    """Put the services, sublayers and opacity in the address (the map keeps the view there)."""
    if services_from_link():
        return  # the link's own services are still to be added: leave it as it was opened
    wanted = {**write_services(shown), **{k: st.query_params.get_all(k) for k in _VIEW_PARAMS if k in st.query_params}}
    wanted = {key: values for key, values in wanted.items() if values}
    if wanted != {key: st.query_params.get_all(key) for key in st.query_params}:
        st.query_params.from_dict(wanted)


def map_interaction() -> tuple[dict | None, int | None]:
    """The map's last click ({lat, lng}) and zoom, as streamlit-folium reported them."""
    returned = st.session_state.get(MAP_KEY) or {}
    return returned.get("last_clicked"), returned.get("zoom")


def identified(question: tuple) -> list | None:
    """Identify results kept for this question (the click and what was on show), if asked already."""
    kept = st.session_state.get(_IDENTIFIED)
    return kept[1] if kept and kept[0] == question else None


def keep_identified(question: tuple, results: list) -> None:
    st.session_state[_IDENTIFIED] = (question, results)


def set_error(error: SecureLayersError | None) -> None:
    if error is None:
        st.session_state.pop(_ERROR, None)
    else:
        st.session_state[_ERROR] = error


def error() -> SecureLayersError | None:
    return st.session_state.get(_ERROR)


def session_id() -> str:
    ctx = get_script_run_ctx()
    return ctx.session_id if ctx else "no-session"


def session_alive(session: str) -> bool:
    """For the proxy: is this Streamlit session still connected?"""
    return Runtime.exists() and Runtime.instance().is_active_session(session)


def local_time(epoch: float) -> str:
    """A time in the viewer's own time zone (from the browser), else UTC."""
    try:
        zone = ZoneInfo(st.context.timezone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    try:
        return datetime.fromtimestamp(epoch, tz=zone).strftime("%H:%M %Z")
    except (OverflowError, OSError, ValueError):
        return "an unknown time"
