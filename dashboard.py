"""The secure-layers dashboard: sign in from the sidebar, see the secured MapServer on the map.

Read top to bottom: finish a sign-in (or a sign-in again) submitted by a form, draw the
sidebar (the form, or who is signed in and until when, the sublayers, the legend), then the
map. The overlay's images come from the app's export proxy, so panning never reruns this
script and no token reaches the browser.
"""

import re
import time

import folium
import pandas as pd
import streamlit as st
from streamlit_folium import st_folium

from secure_layers import state
from secure_layers.connection import connect
from secure_layers.errors import SecureLayersError, TokenExpired, TokenRejected
from secure_layers.layers import ProxiedDynamicLayer, base_map
from secure_layers.mapserver import identify, layer_tree, layers_param, visible_leaves
from secure_layers.proxy import REGISTRY, export_path

WARN_BEFORE_EXPIRY = 5 * 60  # seconds
_MARKDOWN = re.compile(r"([\\`*_\[\]<>#|~$])")


def plain(text: object) -> str:
    """Text from a server or a user, shown as typed: no bold, no links, no formatting."""
    return _MARKDOWN.sub(r"\\\1", " ".join(str(text).split()))


def problem_text(problem: SecureLayersError) -> str:
    return f"**{problem.title}.** {plain(problem.message)}"


st.set_page_config(page_title="secure-layers", page_icon="🗺️", layout="wide")
settings = state.settings()

# 1. Passwords submitted by a form: each is used once, here, and not kept (unless the user
#    chose "Stay signed in", when it stays inside this session's token renewal).
# A second submit of the same form (a double click) finds the user signed in already: ignored.
if (password := state.take_password()) is not None and state.connection() is None:
    with st.sidebar, st.spinner("Signing in…"):
        try:
            conn = connect(
                settings,
                st.session_state.get("service_url", ""),
                st.session_state.get("username", ""),
                password,
                state.referer(settings),
                stay_signed_in=st.session_state.get("stay_signed_in", False),
            )
        except SecureLayersError as failure:
            state.set_error(failure)
        else:
            state.store_connection(conn, REGISTRY)
if (password := state.take_password(state.REAUTH_PASSWORD_WIDGET)) is not None:
    with st.sidebar, st.spinner("Signing in again…"):
        try:
            state.connection().reauthenticate(password)
        except SecureLayersError as failure:
            state.require_password(failure)
        else:
            state.password_accepted(REGISTRY)
del password


# 2. The sidebar.
@st.fragment(run_every=5)
def session_status() -> None:
    """Who is signed in and for how long; re-checked every few seconds without redrawing the map."""
    conn, handle = state.connection(), state.handle()
    problem = REGISTRY.problem(handle)
    try:
        conn.auth.current_token()  # renews it now if it is about to expire and may be renewed
    except SecureLayersError as failure:
        problem = failure
    if isinstance(problem, TokenRejected) or not REGISTRY.is_registered(handle) or conn.deadline() <= time.time():
        state.require_password(problem or TokenExpired("Your sign-in has expired.", 498))
        st.rerun()
    st.success(f"Signed in as **{plain(conn.username)}**")
    st.markdown(f"**{plain(conn.info.map_name)}**  \n{plain(conn.service.name)} on {conn.service.host}")
    seconds_left = conn.expires - time.time()
    renews = " · renewed automatically" if conn.auth.can_renew else ""
    st.caption(f"Token expires at {state.local_time(conn.expires)} (in {int(seconds_left // 60)} min){renews}")
    if problem is not None:
        st.warning(problem_text(problem))
    if not conn.auth.can_renew and seconds_left < WARN_BEFORE_EXPIRY:
        st.warning(f"Your sign-in ends in {max(int(seconds_left // 60), 0)} min. Renew it to keep the map.")
        if st.button("Renew sign-in", use_container_width=True):
            state.require_password(None)
            st.rerun()
    if st.button("Sign out", use_container_width=True):
        state.sign_out(REGISTRY)
        st.rerun()


def sign_in_form() -> None:
    st.caption("Sign in to a secured ArcGIS Server map service.")
    state.restore_form(settings.default_service_url)
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
    if (failure := state.error()) is not None:
        st.error(problem_text(failure))


def password_again_form() -> None:
    """Expired, rejected or about to end: the password alone brings the map back as it was."""
    conn = state.connection()
    if (reason := state.reauth_reason()) is not None:
        st.error(problem_text(reason))
    with st.form("sign-in-again"):
        st.markdown(f"Sign in again as **{plain(conn.username)}** to {conn.service.host}")
        st.text_input("Password", key=state.REAUTH_PASSWORD_WIDGET, type="password", autocomplete="current-password")
        st.form_submit_button(
            "Continue",
            type="primary",
            on_click=state.stash_password,
            args=(state.REAUTH_PASSWORD_WIDGET,),
            use_container_width=True,
        )
    if st.button("Sign out", use_container_width=True):
        state.sign_out(REGISTRY)
        st.rerun()


def layer_controls() -> tuple[str | None, float]:
    """Sublayer check boxes (nested as the service nests them), the opacity, and the legend."""
    conn = state.connection()
    st.subheader("Layers")
    checked = set()
    for layer, depth in layer_tree(conn.info.layers):
        key = f"sublayer-{layer.id}"
        st.session_state.setdefault(key, layer.default_visible)
        if st.checkbox(("↳ " if depth else "") + plain(layer.name), key=key):
            checked.add(layer.id)
    opacity = st.slider("Opacity", 0.0, 1.0, step=0.05, key="opacity", value=1.0)
    leaves = visible_leaves(conn.info.layers, checked)
    if not leaves:
        st.caption("No sublayer is ticked: nothing is drawn.")
    legend_for(conn, leaves)
    return leaves, opacity


def identify_click(conn, click: dict, zoom: int, layer_ids: list[int]) -> None:
    """A map click: what the ticked sublayers have there, a table per layer with a CSV download."""
    results = state.identified(click)
    if results is None:
        with st.spinner("Looking up what is here…"):
            try:
                results = identify(conn.client, conn.info, click["lat"], click["lng"], zoom, layer_ids)
            except SecureLayersError as failure:
                st.error(problem_text(failure))
                return
        state.keep_identified(click, results)
    st.subheader(f"At {click['lat']:.5f}, {click['lng']:.5f}")
    if not results:
        st.info("Nothing here: no feature of the ticked sublayers at this point. Zoom in and click on a feature.")
    for layer_name in dict.fromkeys(r.layer_name for r in results):
        table = pd.DataFrame([r.attributes for r in results if r.layer_name == layer_name])
        st.markdown(f"**{plain(layer_name)}**")
        st.dataframe(table, hide_index=True)
        st.download_button(
            f"Download {plain(layer_name)} as CSV",
            table.to_csv(index=False),
            file_name=f"{layer_name}.csv",
            mime="text/csv",
            key=f"csv-{layer_name}",
        )


def legend_for(conn, layer_ids: list[int]) -> None:
    """The symbols of the layers on show; the images come from the app, not from ArcGIS."""
    with st.expander("Legend", expanded=True):
        try:
            legend = conn.legend()
        except SecureLayersError as failure:
            st.caption(f"The legend could not be read: {plain(failure.message)}")
            return
        for layer_id in layer_ids:
            if layer_id in legend:
                entry = legend[layer_id]
                st.markdown(f"**{plain(entry.name)}**")
                for symbol in entry.symbols:
                    st.image(symbol.png, width=20, caption=symbol.label or None)


shown_layers, opacity = [], 1.0
with st.sidebar:
    st.title("secure-layers")
    if state.connection() is None:
        sign_in_form()
    else:
        for notice in state.connection().service.notices:
            st.info(plain(notice))
        if state.needs_password():
            password_again_form()
        else:
            session_status()
        shown_layers, opacity = layer_controls()

# 3. The map: Esri Streets, with the secured layer drawn through the proxy.
conn = state.connection()
drawing = conn is not None and bool(shown_layers) and not state.needs_password()
click, zoom = state.map_interaction()
overlay = folium.FeatureGroup(name="Secured layers", control=False)
if drawing:
    ProxiedDynamicLayer(
        export_path(state.handle()),
        name=conn.info.map_name,
        opacity=opacity,
        layers=layers_param(shown_layers),
        max_size=(conn.info.max_image_width, conn.info.max_image_height),
    ).add_to(overlay)
    if click:
        folium.CircleMarker([click["lat"], click["lng"]], radius=6, color="#1f4e99", fill=True).add_to(overlay)
# Only a click or a zoom reruns the script; a pan does not: the layer fetches its images itself.
st_folium(
    base_map(),
    key=state.MAP_KEY,
    feature_group_to_add=overlay,
    returned_objects=["last_clicked", "zoom"],
    use_container_width=True,
    height=640,
)

# 4. What is at the clicked point.
if drawing and click:
    identify_click(conn, click, zoom or 9, shown_layers)
