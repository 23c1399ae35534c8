"""The secure-layers dashboard: sign in from the sidebar, see secured MapServer services on the map.

Read top to bottom: finish what a form submitted (adding a service, or signing in again),
draw the sidebar (the sign-ins and their expiry, each service's sublayers, opacity and
legend, the form to add one), then the map, then what is at a clicked point. The overlays'
images come from the app's export proxy, so panning never reruns this script and no token
reaches the browser.
"""

import math
import re
import time
from urllib.parse import urlsplit

import folium
import streamlit as st
from streamlit_folium import st_folium

from secure_layers import state
from secure_layers.connection import open_service, sign_in_and_open
from secure_layers.errors import (
    InvalidInput,
    SecureLayersError,
    TokenExpired,
    TokenRejected,
    TransportError,
    as_problem,
)
from secure_layers.layers import ProxiedDynamicLayer, base_map
from secure_layers.mapserver import identify, layer_tree, layers_param, visible_leaves
from secure_layers.proxy import REGISTRY, export_path
from secure_layers.tables import attribute_tables, csv_text
from secure_layers.urls import parse_service_url

WARN_BEFORE_EXPIRY = 5 * 60  # seconds
_MARKDOWN = re.compile(r"([\\`*_\[\]<>#|~$:])")  # ":" too: Streamlit's :red[…] directives
# Markdown turns bare web and mail addresses into links even when escaped; a zero-width space stops it.
_AUTOLINK = re.compile(r"(?i)(?<=:)(?=//)|(?<=www)(?=\.)|(?=@)")


def plain(text: object) -> str:
    """Text from a server or a user, shown as typed: no bold, no links, no formatting."""
    unlinked = _AUTOLINK.sub("\u200b", " ".join(str(text).split()))
    return _MARKDOWN.sub(r"\\\1", unlinked)


def minutes(seconds: float) -> str:
    """Time left, never rounded down to nothing: "1 min" up to the last second."""
    return f"{max(math.ceil(seconds / 60), 0)} min"


def problem_text(problem: SecureLayersError) -> str:
    return f"**{problem.title}.** {plain(problem.message)}"


st.set_page_config(page_title="secure-layers", page_icon="🗺️", layout="wide")
settings = state.settings()
view = state.opened_link()  # a shared link's view, services, sublayers and opacity


# 1. Passwords submitted by a form: each is used once, here, and not kept (unless the user
#    chose "Stay signed in", when it stays inside this session's token renewal).
def add_service(password: str) -> None:
    """The add-service form: a server signed in already needs no password again."""
    service = parse_service_url(st.session_state.get("service_url", ""), settings)
    if state.on_map(service.url):
        raise InvalidInput(f"“{service.name}” is on the map already.")
    signed_in = state.sign_in_for(service.server_root)
    if signed_in is None and state.sign_ins() and not password:
        raise InvalidInput(
            f"{service.host} is another server: you are not signed in to it yet. "
            f"Enter your user name and password for {service.host}."
        )
    if signed_in is None:
        map_service = sign_in_and_open(
            settings,
            service,
            st.session_state.get("username", ""),
            password,
            state.referer(settings),
            stay_signed_in=st.session_state.get("stay_signed_in", False),
        )
        state.keep_sign_in(map_service.sign_in)
    else:
        map_service = open_service(signed_in, service)
    added = state.add_service(map_service, REGISTRY)
    for shared in state.services_from_link():
        if normalised(shared.url) == service.url:
            state.link_service_added(shared, added)


def normalised(url: str) -> str | None:
    try:
        return parse_service_url(url, settings).url
    except SecureLayersError:
        return None


def add_services_from_link() -> None:
    """The link's services whose server is signed in now: added below the others, as linked."""
    for shared in state.services_from_link():
        try:
            service = parse_service_url(shared.url, settings)
            signed_in = state.sign_in_for(service.server_root)
            if signed_in is None:
                continue
            if state.on_map(service.url):
                state.link_service_added(shared, None)
                continue
            state.link_service_added(shared, state.add_service(open_service(signed_in, service), REGISTRY, False))
        except Exception as failure:  # nothing may escape to a blank page
            state.set_error(as_problem(failure, "adding a service from the link"))
            state.link_service_added(shared, None)


if (password := state.take_password()) is not None:
    with st.sidebar, st.spinner("Signing in…"):
        try:
            add_service(password)
        except Exception as failure:  # nothing may escape to a blank page
            state.set_error(as_problem(failure, "signing in"))
    state.drop_secrets_from_url()
for root in state.servers_needing_password():
    if (password := state.take_password(state.reauth_widget(root))) is not None:
        with st.sidebar, st.spinner("Signing in again…"):
            try:
                state.sign_in_for(root).reauthenticate(password)
            except Exception as failure:  # nothing may escape to a blank page
                state.require_password(root, as_problem(failure, "signing in again"))
            else:
                state.password_accepted(root, REGISTRY)
password = None
add_services_from_link()


# 2. The sidebar.
@st.fragment(run_every=5)
def sign_in_status() -> None:
    """Who is signed in where, and for how long; re-checked every few seconds without redrawing the map."""
    for signed_in in state.sign_ins():
        if signed_in.server_root in state.servers_needing_password():
            continue
        problems = [REGISTRY.problem(added.handle) for added in state.services_of(signed_in.server_root)]
        problem = next((p for p in problems if p is not None), None)
        try:
            signed_in.auth.current_token()  # renews it now if it is about to expire and may be renewed
        except SecureLayersError as failure:
            problem = failure
        handles_alive = all(REGISTRY.is_registered(a.handle) for a in state.services_of(signed_in.server_root))
        if isinstance(problem, TokenRejected) or not handles_alive or signed_in.deadline() <= time.time():
            state.require_password(signed_in.server_root, problem or TokenExpired("Your sign-in has expired.", 498))
            st.rerun()
        server_status(signed_in, problem)
    if st.button("Sign out", use_container_width=True):
        state.sign_out(REGISTRY)
        st.rerun()


def server_status(signed_in, problem: SecureLayersError | None) -> None:
    host = urlsplit(signed_in.server_root).hostname
    seconds_left = signed_in.expires - time.time()
    renews = " · renewed automatically" if signed_in.auth.can_renew else ""
    st.success(f"Signed in as **{plain(signed_in.username)}**")
    st.caption(
        f"to {host} · token expires at {state.local_time(signed_in.expires)} (in {minutes(seconds_left)}){renews}"
    )
    if isinstance(problem, TransportError):  # mid-session: the URL worked, so say what happens next
        st.warning(f"{problem_text(problem)} The map keeps your layers and redraws them when {host} answers again.")
    elif problem is not None:
        st.warning(problem_text(problem))
    if not signed_in.auth.can_renew and seconds_left < WARN_BEFORE_EXPIRY:
        st.warning(f"Your sign-in to {host} ends in {minutes(seconds_left)}. Renew it to keep the map.")
        if st.button("Renew sign-in", key=f"renew-{signed_in.server_root}", use_container_width=True):
            state.require_password(signed_in.server_root, None)
            st.rerun()


def add_service_form() -> None:
    linked = state.services_from_link()
    if linked:
        hosts = sorted({urlsplit(shared.url).hostname or "?" for shared in linked})
        st.info(
            f"This link shows {len(linked)} service(s) from {', '.join(hosts)} not on the map yet. Sign in to add them."
        )
    state.restore_form(settings.default_service_url)
    if linked:
        st.session_state["service_url"] = linked[0].url  # the next service the link still needs
    with st.form("sign-in"):
        st.text_input("MapServer URL", key="service_url")
        st.text_input("Username", key="username", autocomplete="username")
        st.text_input("Password", key=state.PASSWORD_WIDGET, type="password", autocomplete="current-password")
        st.checkbox(
            "Stay signed in",
            key="stay_signed_in",
            help="Keeps your password in this browser session's memory on the server (never on disk, "
            "never sent to the browser) to renew the token before it expires. Signing out forgets it.",
        )
        st.form_submit_button("Add service", type="primary", on_click=state.stash_password, use_container_width=True)
    if state.services():
        st.caption("A service on a server you are signed in to needs no password.")
    if (failure := state.error()) is not None:
        st.error(problem_text(failure))


def password_again_form(server_root: str, reason: SecureLayersError | None) -> None:
    """Expired, rejected or about to end: the password alone brings the layers back as they were."""
    signed_in = state.sign_in_for(server_root)
    host = state.services_of(server_root)[0].map_service.service.host
    if reason is not None:
        st.error(problem_text(reason))
    widget = state.reauth_widget(server_root)
    with st.form(f"sign-in-again-{widget}"):
        st.markdown(f"Sign in again as **{plain(signed_in.username)}** to {host}")
        st.text_input("Password", key=widget, type="password", autocomplete="current-password")
        st.form_submit_button(
            "Continue", type="primary", on_click=state.stash_password, args=(widget,), use_container_width=True
        )


def service_controls(added, first: bool, last: bool) -> tuple[list[int], float]:
    """One service: its sublayers (nested as the service nests them), opacity, legend and order."""
    service = added.map_service
    st.markdown(f"**{plain(service.info.map_name)}**  \n{plain(service.service.name)} on {service.service.host}")
    for notice in service.service.notices:
        st.info(plain(notice))
    checked = set()
    for layer, depth in layer_tree(service.info.layers):
        key = f"{added.uid}-sublayer-{layer.id}"
        st.session_state.setdefault(key, layer.default_visible)
        if st.checkbox(("↳ " if depth else "") + plain(layer.name), key=key):
            checked.add(layer.id)
    st.session_state.setdefault(f"{added.uid}-opacity", 1.0)
    opacity = st.slider("Opacity", 0.0, 1.0, step=0.05, key=f"{added.uid}-opacity")
    leaves = visible_leaves(service.info.layers, checked)
    if not leaves:
        st.caption("No sublayer is ticked: nothing is drawn.")
    if leaves:
        legend_for(service, leaves)
    up, down, remove = st.columns([1, 1, 2])
    if up.button("↑", key=f"{added.uid}-up", help="Draw it above", disabled=first, use_container_width=True):
        state.move_service(added.uid, -1)
        st.rerun()
    if down.button("↓", key=f"{added.uid}-down", help="Draw it below", disabled=last, use_container_width=True):
        state.move_service(added.uid, +1)
        st.rerun()
    if remove.button("Remove", key=f"{added.uid}-remove", use_container_width=True):
        state.remove_service(added.uid, REGISTRY)
        st.rerun()
    return leaves, opacity


def legend_for(service, layer_ids: list[int]) -> None:
    """The symbols of the layers on show; the images come from the app, not from ArcGIS."""
    with st.expander("Legend", expanded=True):
        try:
            legend = service.legend()
        except Exception as failure:  # nothing may escape to a blank page
            st.caption(f"The legend could not be read: {plain(as_problem(failure, 'reading the legend').message)}")
            return
        for layer_id in layer_ids:
            if layer_id in legend:
                entry = legend[layer_id]
                for symbol in entry.symbols:
                    swatch, label = st.columns([1, 5], vertical_alignment="center")
                    swatch.image(symbol.png, width=20)
                    label.caption(plain(" · ".join(filter(None, [entry.name, symbol.label]))))


drawn = []  # (added service, visible sublayer ids, opacity), top first
shown = []  # (service URL, visible sublayer ids, opacity) of every service, for the link
with st.sidebar:
    st.title("secure-layers")
    if not state.services():
        st.caption("Sign in to a secured ArcGIS Server map service.")
        add_service_form()
    else:
        waiting = state.servers_needing_password()
        for root, reason in waiting.items():
            password_again_form(root, reason)
        sign_in_status()
        order = state.services()
        for index, added in enumerate(order):
            with st.container(border=True):
                leaves, opacity = service_controls(added, index == 0, index == len(order) - 1)
            shown.append((added.map_service.service.url, leaves, opacity))
            root = added.map_service.sign_in.server_root
            if leaves and (root not in waiting or waiting[root] is None):  # a chosen renewal keeps drawing
                drawn.append((added, leaves, opacity))
        with st.expander("Add another service", expanded=bool(state.services_from_link())):
            add_service_form()

state.keep_link(shown)
for root, reason in state.servers_needing_password().items():
    if reason is not None:
        st.warning(
            f"The layers from {urlsplit(root).hostname} are hidden: {plain(reason.message)} "
            "Enter your password in the sidebar to bring them back."
        )

# 3. The map: Esri Streets, with the secured layers drawn through the proxy (first on top).
click, zoom = state.map_interaction()
overlay = folium.FeatureGroup(name="Secured layers", control=False)
for added, leaves, opacity in reversed(drawn):
    info = added.map_service.info
    ProxiedDynamicLayer(
        export_path(added.handle),
        name=info.map_name,
        opacity=opacity,
        layers=layers_param(leaves),
        max_size=(info.max_image_width, info.max_image_height),
    ).add_to(overlay)
if drawn and click:
    folium.CircleMarker([click["lat"], click["lng"]], radius=6, color="#1f4e99", fill=True).add_to(overlay)
# Only a click or a zoom reruns the script; a pan does not: the layers fetch their images themselves.
st_folium(
    base_map(view),
    key=state.MAP_KEY,
    feature_group_to_add=overlay,
    returned_objects=["last_clicked", "zoom"],
    use_container_width=True,
    height=640,
)


# 4. What is at the clicked point, in every service on show.
def identify_click(click: dict, zoom: int) -> None:
    """A table per layer with a CSV download; the point is marked on the map."""
    question = (click, zoom, tuple((added.handle, tuple(leaves)) for added, leaves, _ in drawn))
    results, failed = state.identified(question), False
    if results is None:
        results = []
        with st.spinner("Looking up what is here…"):
            for added, leaves, _ in drawn:
                service = added.map_service
                try:
                    found = identify(service.client, service.info, click["lat"], click["lng"], zoom, leaves)
                except Exception as failure:  # the other services still answer; nothing escapes to a blank page
                    problem = as_problem(failure, "looking up what is here")
                    whose = f"{plain(service.info.map_name)}: " if len(drawn) > 1 else ""
                    st.error(whose + problem_text(problem))
                    failed = True
                    continue
                results += [(added.uid, service.info.map_name, result) for result in found]
        if not failed:  # a failed look-up is asked again on the next rerun
            state.keep_identified(question, results)
    st.subheader(f"At {click['lat']:.5f}, {click['lng']:.5f}")
    if not results and not failed:
        st.info("Nothing here: no feature of the ticked sublayers at this point. Zoom in and click on a feature.")
    for number, table in enumerate(attribute_tables(results)):
        st.markdown(f"**{plain(table.layer_name)}** · {plain(table.map_name)}")
        st.dataframe(table.rows, hide_index=True)
        st.download_button(
            f"Download {plain(table.layer_name)} as CSV",
            csv_text(table.rows),
            file_name=f"{table.layer_name}.csv",
            mime="text/csv",
            key=f"csv-{number}",
        )


if drawn and click:
    identify_click(click, zoom or 9)
elif click and state.services():
    st.info("Tick a sublayer in the sidebar to see what is at a clicked point.")
