"""The secure-layers dashboard: sign in from the sidebar, see the secured MapServer on the map.

Read top to bottom: finish a sign-in submitted by the form, draw the sidebar (the form, or
who is signed in and until when), then the map. The overlay's images come from the app's
export proxy, so panning never reruns this script and no token reaches the browser.
"""

import time

import folium
import streamlit as st
from streamlit_folium import st_folium

from secure_layers import state
from secure_layers.connection import connect
from secure_layers.errors import SecureLayersError, TokenExpired, TokenRejected
from secure_layers.layers import ProxiedDynamicLayer, base_map
from secure_layers.mapserver import layer_tree, layers_param, visible_leaves
from secure_layers.proxy import REGISTRY, export_path

st.set_page_config(page_title="secure-layers", page_icon="🗺️", layout="wide")
settings = state.settings()

# 1. A sign-in submitted by the form: the password is used once, here, and not kept.
password = state.take_password()
if password is not None:
    with st.sidebar, st.spinner("Signing in…"):
        try:
            conn = connect(
                settings,
                st.session_state.service_url,
                st.session_state.get("username", ""),
                password,
                state.referer(settings),
            )
        except SecureLayersError as failure:
            state.set_error(failure)
        else:
            state.store_connection(conn, REGISTRY)
    del password


# 2. The sidebar.
@st.fragment(run_every=10)
def session_status() -> None:
    """Who is signed in and for how long; re-checked every few seconds without redrawing the map."""
    conn, handle = state.connection(), state.handle()
    if conn is None:
        return
    problem = REGISTRY.problem(handle)
    if isinstance(problem, TokenRejected) or not REGISTRY.is_registered(handle) or conn.expires <= time.time():
        state.sign_out(REGISTRY, problem or TokenExpired("Your sign-in has expired. Sign in again to see the layer."))
        st.rerun()
    st.success(f"Signed in as **{conn.username}**")
    st.markdown(f"**{conn.info.map_name}**  \n`{conn.service.name}` on {conn.service.host}")
    minutes = max(int((conn.expires - time.time()) // 60), 0)
    st.caption(f"Token expires at {state.local_time(conn.expires)} (in {minutes} min)")
    if problem is not None:
        st.warning(f"**{problem.title}.** {problem.message}")
    if st.button("Sign out", use_container_width=True):
        state.sign_out(REGISTRY)
        st.rerun()


def layer_controls() -> tuple[str | None, float]:
    """Sublayer check boxes (nested as the service nests them) and the overlay's opacity."""
    conn = state.connection()
    st.subheader("Layers")
    checked = set()
    for layer, depth in layer_tree(conn.info.layers):
        key = f"sublayer-{layer.id}"
        st.session_state.setdefault(key, layer.default_visible)
        if st.checkbox(("↳ " if depth else "") + layer.name, key=key):
            checked.add(layer.id)
    opacity = st.slider("Opacity", 0.0, 1.0, step=0.05, key="opacity", value=1.0)
    leaves = visible_leaves(conn.info.layers, checked)
    legend_for(conn, leaves)
    return layers_param(leaves), opacity


def legend_for(conn, layer_ids: list[int]) -> None:
    """The symbols of the layers on show; the images come from the app, not from ArcGIS."""
    with st.expander("Legend", expanded=True):
        try:
            legend = conn.legend()
        except SecureLayersError as failure:
            st.caption(f"The legend could not be read: {failure.message}")
            return
        for layer_id in layer_ids:
            if layer_id in legend:
                entry = legend[layer_id]
                st.markdown(f"**{entry.name}**")
                for symbol in entry.symbols:
                    st.image(symbol.png, width=20, caption=symbol.label or None)


with st.sidebar:
    st.title("secure-layers")
    if state.connection() is None:
        st.caption("Sign in to a secured ArcGIS Server map service.")
        state.restore_form(settings.default_service_url)
        with st.form("sign-in"):
            st.text_input("MapServer URL", key="service_url")
            st.text_input("Username", key="username", autocomplete="username")
            st.text_input("Password", key=state.PASSWORD_WIDGET, type="password", autocomplete="current-password")
            st.form_submit_button(
                "Add service", type="primary", on_click=state.stash_password, use_container_width=True
            )
        if (failure := state.error()) is not None:
            st.error(f"**{failure.title}.** {failure.message}")
    else:
        for notice in state.connection().service.notices:
            st.info(notice)
        session_status()
        shown_layers, opacity = layer_controls()
        if shown_layers is None:
            st.caption("No sublayer is ticked: nothing is drawn.")

# 3. The map: Esri Streets, with the secured layer drawn through the proxy.
conn = state.connection()
overlay = folium.FeatureGroup(name="Secured layers", control=False)
if conn is not None and shown_layers is not None:
    ProxiedDynamicLayer(
        export_path(state.handle()),
        name=conn.info.map_name,
        opacity=opacity,
        layers=shown_layers,
        max_size=(conn.info.max_image_width, conn.info.max_image_height),
    ).add_to(overlay)
# returned_objects=[]: panning and zooming never rerun the script; the layer fetches by itself.
st_folium(
    base_map(), key="map", feature_group_to_add=overlay, returned_objects=[], use_container_width=True, height=640
)
