"""folium pieces of the map: the Esri Streets basemap and the proxied MapServer layer.

The layer class itself is JavaScript (`static/dynamic_layer.js`), served by the app and
declared folium-style as a `default_js` dependency. streamlit-folium loads scripts only when
the map first mounts, so `base_map` always carries the script, signed in or not.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import folium
from folium.elements import JSCSSMixin, MacroElement
from folium.map import Layer
from folium.template import Template

from .share import View

ROUTE_PREFIX = "/api/secure-layers"
DYNAMIC_LAYER_JS = (Path(__file__).with_name("static") / "dynamic_layer.js").read_bytes()
_JS_VERSION = hashlib.sha256(DYNAMIC_LAYER_JS).hexdigest()[:12]
DYNAMIC_LAYER_JS_URL = f"{ROUTE_PREFIX}/assets/dynamic-layer.js?v={_JS_VERSION}"

STREETS_URL = "https://server.arcgisonline.com/ArcGIS/rest/services/World_Street_Map/MapServer/tile/{z}/{y}/{x}"
STREETS_ATTRIBUTION = 'Powered by <a href="https://www.esri.com">Esri</a> | Esri, HERE, Garmin, USGS, NOAA'


class DynamicLayerScript(JSCSSMixin):
    """Loads `L.secureLayers.dynamicLayer` with the map, so layers added later find it."""

    _template = Template("")
    default_js = [("secure_layers_dynamic", DYNAMIC_LAYER_JS_URL)]


class ProxiedDynamicLayer(JSCSSMixin, Layer):
    """One export image of a MapServer for the current view, fetched through the app's proxy."""

    _template = Template(
        """
        {% macro script(this, kwargs) %}
            var {{ this.get_name() }} = L.secureLayers.dynamicLayer(
                {{ this.export_url|tojson }},
                {{ this.options|tojavascript }}
            );
        {% endmacro %}
        """
    )
    default_js = DynamicLayerScript.default_js

    def __init__(
        self,
        export_url: str,
        name: str | None = None,
        opacity: float = 1.0,
        layers: str | None = None,
        max_size: tuple[int, int] = (4096, 4096),
        show: bool = True,
    ):
        super().__init__(name=name, overlay=True, control=True, show=show)
        self._name = "SecureLayersDynamic"
        self.export_url = export_url
        self.options = {"opacity": opacity, "maxSize": list(max_size)}
        if layers:
            self.options["layers"] = layers


class ViewInAddressBar(MacroElement):
    """Keeps the map's centre and zoom in the page's address (lat, lng, z) after each move.

    The map writes it itself, with no Streamlit rerun, so the address is always a link to
    the view (within a second of the app rewriting the address for a layer change); the app
    reads it back when such a link is opened.
    """

    _template = Template(
        """
        {% macro script(this, kwargs) %}
            (function (map) {
                function keepView() {
                    try {
                        var page = window.parent;
                        var url = new URL(page.location.href);
                        var centre = map.getCenter();
                        var before = url.search;
                        url.searchParams.set("lat", centre.lat.toFixed(5));
                        url.searchParams.set("lng", centre.lng.toFixed(5));
                        url.searchParams.set("z", String(map.getZoom()));
                        if (url.search !== before) {
                            page.history.replaceState(page.history.state, "", url.toString());
                        }
                    } catch (error) {
                        // not inside a same-origin page: there is no address to keep
                    }
                }
                map.on("moveend", keepView);
                // The app rewrites the address when layers change; put the view back soon after.
                setInterval(keepView, 1000);
            })({{ this._parent.get_name() }});
        {% endmacro %}
        """
    )


def base_map(view: View) -> folium.Map:
    """The Esri Streets basemap at the given view, ready for proxied layers."""
    figure = folium.Map(location=[view.lat, view.lng], zoom_start=view.zoom, tiles=None, control_scale=True)
    folium.TileLayer(tiles=STREETS_URL, attr=STREETS_ATTRIBUTION, name="Esri Streets", max_zoom=19, min_zoom=1).add_to(
        figure
    )
    DynamicLayerScript().add_to(figure)
    ViewInAddressBar().add_to(figure)
    return figure
