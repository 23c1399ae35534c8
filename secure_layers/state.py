"""Per-session state in `st.session_state`: the only module of the package that imports Streamlit.

What a session keeps: its `Connection` (client + token, no password), the proxy handle with a
lease that forgets the handle when the session's state is garbage-collected, and the last
error to show. The password passes through `st.session_state` only between the form's
callback and the top of the next script run, where `take_password` removes it.
"""

from __future__ import annotations

import os
import weakref
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import streamlit as st
from streamlit.errors import StreamlitSecretNotFoundError
from streamlit.runtime import Runtime
from streamlit.runtime.scriptrunner import get_script_run_ctx

from .config import Settings, load_settings
from .connection import Connection
from .errors import SecureLayersError
from .proxy import HandleRegistry

_CONNECTION = "_secure_layers_connection"
_HANDLE = "_secure_layers_handle"
_LEASE = "_secure_layers_lease"
_ERROR = "_secure_layers_error"
_PENDING_PASSWORD = "_secure_layers_pending_password"  # noqa: S105 - a key name
_KEPT = "_secure_layers_kept_"
KEPT_FIELDS = ("service_url", "username")
PASSWORD_WIDGET = "password"  # noqa: S105 - a widget key
REAUTH_PASSWORD_WIDGET = "reauth_password"  # noqa: S105 - a widget key
_REAUTH = "_secure_layers_reauth"
_IDENTIFIED = "_secure_layers_identified"
MAP_KEY = "map"


class _HandleLease:
    """Forgets a proxy handle when it is released or garbage-collected with the session."""

    def __init__(self, registry: HandleRegistry, handle: str):
        self._finalizer = weakref.finalize(self, registry.forget, handle)

    def release(self) -> None:
        self._finalizer()


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


def take_password(widget: str = PASSWORD_WIDGET) -> str | None:
    """The password submitted just now, removed from the session; None if nothing was submitted."""
    return st.session_state.pop(_PENDING_PASSWORD + widget, None)


def restore_form(default_service_url: str) -> None:
    """Before the form is drawn: refill the URL and user name the user typed last."""
    defaults = {"service_url": default_service_url, "username": ""}
    for key in KEPT_FIELDS:
        if key not in st.session_state:
            st.session_state[key] = st.session_state.get(_KEPT + key, defaults[key])


def connection() -> Connection | None:
    return st.session_state.get(_CONNECTION)


def handle() -> str | None:
    return st.session_state.get(_HANDLE)


def store_connection(conn: Connection, registry: HandleRegistry) -> str:
    """Keep the connection in this session and register it with the proxy."""
    new_handle = registry.register(session_id(), conn.client, conn.info, conn.deadline)
    st.session_state[_CONNECTION] = conn
    st.session_state[_HANDLE] = new_handle
    st.session_state[_LEASE] = _HandleLease(registry, new_handle)
    st.session_state.pop(_ERROR, None)
    return new_handle


def require_password(reason: SecureLayersError | None) -> None:
    """Ask for the password alone (token expired, rejected, or about to end); keep everything else."""
    st.session_state[_REAUTH] = reason


def needs_password() -> bool:
    return _REAUTH in st.session_state


def reauth_reason() -> SecureLayersError | None:
    return st.session_state.get(_REAUTH)


def password_accepted(registry: HandleRegistry) -> None:
    """After signing in again: a fresh proxy handle for the renewed connection."""
    st.session_state.pop(_REAUTH, None)
    old = st.session_state.pop(_HANDLE, None)
    if old:
        registry.forget(old)
    store_connection(connection(), registry)


def map_interaction() -> tuple[dict | None, int | None]:
    """The map's last click ({lat, lng}) and zoom, as streamlit-folium reported them."""
    returned = st.session_state.get(MAP_KEY) or {}
    return returned.get("last_clicked"), returned.get("zoom")


def identified(click: dict) -> list | None:
    """Identify results kept for this click, if it was identified already."""
    kept = st.session_state.get(_IDENTIFIED)
    return kept[1] if kept and kept[0] == click else None


def keep_identified(click: dict, results: list) -> None:
    st.session_state[_IDENTIFIED] = (click, results)


def sign_out(registry: HandleRegistry, reason: SecureLayersError | None = None) -> None:
    """Drop token, session and layer; keep the URL and user name in their widgets."""
    st.session_state.pop(_LEASE, None)
    current = st.session_state.pop(_HANDLE, None)
    if current:
        registry.forget(current)
    st.session_state.pop(_REAUTH, None)
    st.session_state.pop(_IDENTIFIED, None)
    conn = st.session_state.pop(_CONNECTION, None)
    if conn is not None:
        conn.close()
    set_error(reason)


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
    return datetime.fromtimestamp(epoch, tz=zone).strftime("%H:%M %Z")
