"""The folium pieces: what the browser is given to draw the map and the proxied layer."""

from __future__ import annotations

import folium

from secure_layers.layers import DYNAMIC_LAYER_JS_URL, STREETS_URL, ProxiedDynamicLayer, base_map
from secure_layers.share import View

SAMPLE_VIEW = View(34.089, -116.865, 9)
EXPORT = "/api/secure-layers/proxy/HANDLE/MapServer/export"


def rendered(figure: folium.Map) -> str:
    return figure.get_root().render()


def test_the_base_map_is_esri_streets_at_the_sample_view_and_loads_the_layer_script():
    html = rendered(base_map(SAMPLE_VIEW))
    assert STREETS_URL in html
    assert "Powered by" in html and "esri.com" in html
    assert "[34.089, -116.865]" in html and '"zoom": 9' in html
    assert f'<script src="{DYNAMIC_LAYER_JS_URL}"></script>' in html


def test_the_proxied_layer_points_at_the_proxy_with_its_options():
    figure = base_map(SAMPLE_VIEW)
    ProxiedDynamicLayer(EXPORT, name="Wildfire", max_size=(2048, 1024), layers="show:0,2").add_to(figure)
    html = rendered(figure)
    assert f'L.secureLayers.dynamicLayer(\n                "{EXPORT}",' in html
    options = html[html.index("dynamicLayer(") :].split(")", 1)[0]
    assert (
        " ".join(options.split())
        == f'dynamicLayer( "{EXPORT}", {{ "opacity": 1.0, "maxSize": [ 2048, 1024, ], "layers": "show:0,2", }}'
    )

    assert "token" not in html.lower()


def test_the_script_url_changes_with_the_script():
    assert DYNAMIC_LAYER_JS_URL.startswith("/api/secure-layers/assets/dynamic-layer.js?v=")
