"""MapServer metadata, the export whitelist, and reading export replies (field cases F05, F11)."""

from __future__ import annotations

import base64
import gzip
import io
import json

import pytest
from PIL import Image

from secure_layers.connection import connect
from secure_layers.errors import InvalidInput, MalformedReply, NotAMapServer, TokenInvalid, TokenRequired
from secure_layers.mapserver import (
    ExportParams,
    export_image,
    fetch_legend,
    fetch_mapserver_info,
    identify,
    layer_tree,
    layers_param,
    parse_mapserver_info,
    visible_leaves,
)
from secure_layers.urls import ServiceURL
from tests.arcgis_double import FIRE_PERIMETER_FILL, PROBES, pixel_for
from tests.conftest import APP_URL

# Field case F11's view: SW (45.50, -122.70), NE (45.55, -122.60) in Web Mercator metres, widget 800x600.
PORTLAND_VIEW = {"bbox": "-13658901.52,5700582.73,-13647769.57,5708527.34", "bboxSR": "102100", "size": "800,600"}
FEATURESERVER_REPLY = {
    "currentVersion": 10.91,
    "layers": [{"id": 0, "name": "Points"}],
    "spatialReference": {"wkid": 102100},
    "capabilities": "Query",
}


@pytest.fixture
def conn(double, settings):
    connection = connect(settings, double.service_url, "user1", "user1", APP_URL)
    double.clear_requests()
    yield connection
    connection.sign_in.close()


def test_a_featureserver_reply_is_not_taken_for_a_mapserver():
    service = ServiceURL(
        "https://gis.example.test/arcgis/rest/services/Roads/MapServer", "https://gis.example.test/arcgis", "Roads"
    )
    with pytest.raises(NotAMapServer, match="does not describe itself as a MapServer"):
        parse_mapserver_info(service, FEATURESERVER_REPLY)


def test_a_bare_400_for_the_service_says_there_is_no_mapserver_there(double, settings):
    invalid_url = {"error": {"code": 400, "message": "Invalid URL", "details": ["Invalid URL"]}}
    double.script("/Wildfire_secure_ac/MapServer", json.dumps(invalid_url).encode(), "application/json")
    with pytest.raises(NotAMapServer, match="did not describe “Wildfire_secure_ac” as a MapServer .*Invalid URL"):
        connect(settings, double.service_url, "user1", "user1", APP_URL)


def test_metadata_is_read_with_the_token(conn, double):
    info = fetch_mapserver_info(conn.client, conn.service)
    assert (info.wkid, info.max_image_width, info.max_image_height) == (3857, 4096, 4096)
    assert double.requests[0].query["f"] == ["json"]


def test_export_sends_one_f_image_request_in_the_map_crs(conn, double):
    # Field case F11: metres labelled as Web Mercator, image in Web Mercator.
    image = export_image(conn.client, conn.info.url, ExportParams.from_query(PORTLAND_VIEW, conn.info))
    [request] = double.requests
    assert request.path.endswith("/MapServer/export")
    assert {key: value[0] for key, value in request.query.items()} == {
        "bbox": "-13658901.52,5700582.73,-13647769.57,5708527.34",
        "bboxSR": "102100",
        "imageSR": "102100",
        "size": "800,600",
        "dpi": "96",
        "format": "png32",
        "transparent": "true",
        "f": "image",
    }
    assert (image.content_type, image.width, image.height) == ("image/png", 800, 600)


def test_the_exported_image_shows_the_feature_where_it_is(conn):
    lat, lon, colour = PROBES["fire_perimeter_interior"]
    view = {"bbox": "-13050000,4000000,-12950000,4100000", "bboxSR": "3857", "size": "500,500"}
    image = export_image(conn.client, conn.info.url, ExportParams.from_query(view, conn.info))
    x, y = pixel_for(lat, lon, (-13050000, 4000000, -12950000, 4100000), (500, 500), 3857)
    assert Image.open(io.BytesIO(image.content)).convert("RGB").getpixel((int(x), int(y))) == FIRE_PERIMETER_FILL
    assert colour == FIRE_PERIMETER_FILL


F05_REPLIES = [
    (json.dumps({"error": {"code": 498, "message": "Invalid Token", "details": []}}).encode(), {}, TokenInvalid),
    (json.dumps({"status": "error", "messages": ["Token Expired."], "code": 498}).encode(), {}, TokenInvalid),
    (
        gzip.compress(
            json.dumps({"error": {"code": "498", "message": "Invalid Token", "details": []}}, indent=2).encode()
        ),
        {"Content-Encoding": "gzip"},
        TokenInvalid,
    ),
    (json.dumps({"error": {"code": 499, "message": "Token Required", "details": []}}).encode(), {}, TokenRequired),
]


@pytest.mark.parametrize(("body", "headers", "kind"), F05_REPLIES)
def test_a_token_error_in_place_of_an_image_is_read_as_that_error(conn, double, body, headers, kind):
    # Field case F05: HTTP 200, text/plain, in every envelope shape; never shown as an image.
    double.script("/MapServer/export", body, "text/plain; charset=utf-8", headers=headers)
    with pytest.raises(kind):
        export_image(conn.client, conn.info.url, ExportParams.from_query(PORTLAND_VIEW, conn.info))
    assert len(double.requests) == 1  # no retry loop


def test_a_reply_labelled_as_png_that_is_not_one_is_refused(conn, double):
    double.script("/MapServer/export", b"<html>Proxy error</html>", "image/png")
    with pytest.raises(MalformedReply, match="web page instead"):
        export_image(conn.client, conn.info.url, ExportParams.from_query(PORTLAND_VIEW, conn.info))


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ({**PORTLAND_VIEW, "token": "abc"}, "Parameter not allowed: token"),
        ({**PORTLAND_VIEW, "layerDefs": "{}"}, "Parameter not allowed: layerDefs"),
        ({**PORTLAND_VIEW, "f": "json"}, "Only f=image"),
        ({**PORTLAND_VIEW, "size": "5000,600"}, "width must be between 1 and 4096"),
        ({**PORTLAND_VIEW, "size": "800"}, "size must be width,height"),
        ({**PORTLAND_VIEW, "bbox": "1,2,3"}, "bbox must be four numbers"),
        ({**PORTLAND_VIEW, "bbox": "nan,1,2,3"}, "bbox must be four numbers"),
        ({**PORTLAND_VIEW, "bbox": "10,10,5,5"}, "bbox is empty"),
        ({**PORTLAND_VIEW, "bboxSR": "4326"}, "bbox is empty or outside the world"),  # metres labelled degrees
        ({**PORTLAND_VIEW, "bboxSR": "2229"}, "Only Web Mercator"),
        ({**PORTLAND_VIEW, "format": "pdf"}, "format must be one of"),
        ({**PORTLAND_VIEW, "dpi": "9000"}, "dpi must be between"),
        ({**PORTLAND_VIEW, "transparent": "yes"}, "transparent must be one of"),
        ({**PORTLAND_VIEW, "layers": "show:"}, "layers must look like show:0,2"),
        ({**PORTLAND_VIEW, "layers": "show:0;drop"}, "layers must look like show:0,2"),
        ({**PORTLAND_VIEW, "layers": "show:0\n"}, "layers must look like show:0,2"),
    ],
)
def test_the_export_whitelist_refuses_anything_else(conn, query, words):
    with pytest.raises(InvalidInput, match=words):
        ExportParams.from_query(query, conn.info)


def test_a_valid_sublayer_choice_passes_through(conn, double):
    params = ExportParams.from_query({**PORTLAND_VIEW, "layers": "show:0,2"}, conn.info)
    export_image(conn.client, conn.info.url, params)
    assert double.requests[0].query["layers"] == ["show:0,2"]


# A MapServer with a group layer, as `MapServer?f=json` lists it (protocol.md §5).
ROADS_LAYERS = parse_mapserver_info(
    ServiceURL(
        "https://gis.example.test/arcgis/rest/services/Secure/Roads/MapServer",
        "https://gis.example.test/arcgis",
        "Secure/Roads",
    ),
    {
        "mapName": "Roads",
        "spatialReference": {"wkid": 102100, "latestWkid": 3857},
        "layers": [
            {"id": 0, "name": "Bridges", "parentLayerId": -1, "defaultVisibility": True, "subLayerIds": None},
            {"id": 1, "name": "Road network", "parentLayerId": -1, "defaultVisibility": True, "subLayerIds": [2, 3]},
            {"id": 2, "name": "Highways", "parentLayerId": 1, "defaultVisibility": True, "subLayerIds": None},
            {"id": 3, "name": "Local roads", "parentLayerId": 1, "defaultVisibility": False, "subLayerIds": None},
            {"id": 4, "name": "Closures", "parentLayerId": -1, "defaultVisibility": False, "subLayerIds": None},
        ],
    },
).layers


def test_the_layer_tree_nests_groups():
    assert [(layer.name, depth) for layer, depth in layer_tree(ROADS_LAYERS)] == [
        ("Bridges", 0),
        ("Road network", 0),
        ("Highways", 1),
        ("Local roads", 1),
        ("Closures", 0),
    ]


@pytest.mark.parametrize(
    ("checked", "expected"),
    [
        ({0, 1, 2}, "show:0,2"),  # the defaults
        ({3, 0, 1}, "show:0,3"),  # field case F13 (a): ticked 3 then 0 -> sorted, no spaces
        ({0, 2, 3}, "show:0"),  # the group is unticked: its children are hidden with it
        ({1}, None),  # a group alone draws nothing
        (set(), None),  # field case F13 (b): nothing ticked -> no export at all
    ],
)
def test_the_export_shows_exactly_the_visible_leaves(checked, expected):
    assert layers_param(visible_leaves(ROADS_LAYERS, checked)) == expected


def test_the_legend_is_read_with_its_symbols_decoded(conn, double):
    legend = fetch_legend(conn.client, conn.info.url)
    assert [layer.name for layer in legend.values()] == [
        "Wildfire Response Points",
        "Wildfire Response Lines",
        "Wildfire Response Polygons",
    ]
    assert all(symbol.png.startswith(b"\x89PNG") for layer in legend.values() for symbol in layer.symbols)
    assert double.requests[-1].query["f"] == ["json"]


def test_legend_entries_that_are_not_small_pngs_are_skipped(conn, double):
    not_png = base64.b64encode(b"<svg onload=alert(1)>").decode()
    reply = {
        "layers": [
            {
                "layerId": 0,
                "layerName": "Points",
                "legend": [
                    {"label": "bad", "imageData": not_png},
                    {"label": "broken", "imageData": "%%%"},
                    {"label": "none"},
                ],
            },
            {"layerName": "no id"},
        ]
    }
    double.script("/MapServer/legend", json.dumps(reply).encode(), "application/json")
    legend = fetch_legend(conn.client, conn.info.url)
    assert list(legend) == [0] and legend[0].symbols == ()


def test_identify_finds_the_feature_under_a_click_with_a_consistent_scale(conn, double):
    # Field case F12: layers as visible:<ids>, tolerance >= 1, mapExtent/imageDisplay at the view's scale.
    lat, lon, _ = PROBES["fire_perimeter_interior"]
    results = identify(conn.client, conn.info, lat, lon, 10, [0, 1, 2])
    assert [(r.layer_name, r.attributes["Name"]) for r in results] == [("Wildfire Response Polygons", "Fire perimeter")]
    params = {key: value[0] for key, value in double.requests[-1].query.items()}
    assert (params["layers"], params["tolerance"], params["imageDisplay"]) == ("visible:0,1,2", "5", "400,400,96")
    xmin, _, xmax, _ = (float(v) for v in params["mapExtent"].split(","))
    assert (xmax - xmin) / 400 == pytest.approx(156543.03392804097 / 2**10)  # metres per pixel at zoom 10
    assert json.loads(params["geometry"])["spatialReference"] == {"wkid": 3857}


def test_identify_near_a_point_depends_on_the_zoom(conn):
    lat, lon, _ = PROBES["incident_command_post"]
    nearby = (lat + 0.01, lon)  # about 1.1 km north of the point
    assert identify(conn.client, conn.info, *nearby, 9, [0, 1, 2])  # 5 px at zoom 9 is ~1.5 km
    assert identify(conn.client, conn.info, *nearby, 14, [0, 1, 2]) == []  # ~50 m at zoom 14


def test_identify_only_asks_the_ticked_sublayers(conn, double):
    lat, lon, _ = PROBES["fire_perimeter_interior"]
    assert identify(conn.client, conn.info, lat, lon, 10, [0, 1]) == []
    assert double.requests[-1].query["layers"] == ["visible:0,1"]
    requests_before = len(double.requests)
    assert identify(conn.client, conn.info, lat, lon, 10, []) == []
    assert len(double.requests) == requests_before
