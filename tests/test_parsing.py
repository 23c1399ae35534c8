"""Parsing never crashes: arbitrary JSON into every reply parser gives a typed result or a typed error."""

from __future__ import annotations

import io
import json

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from secure_layers.client import ImageReply, arcgis_error, parse_image_reply, parse_json_reply
from secure_layers.errors import ArcGISError, SecureLayersError
from secure_layers.mapserver import (
    MapServerInfo,
    Sublayer,
    layer_tree,
    parse_identify,
    parse_legend,
    parse_mapserver_info,
    visible_leaves,
)
from secure_layers.tokens import Token, parse_token_reply
from secure_layers.urls import ServiceURL

ROADS = ServiceURL(
    "https://gis.example.test/arcgis/rest/services/Roads/MapServer", "https://gis.example.test/arcgis", "Roads"
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
# Replies that look roughly like the real ones, so the parsers get past their first check.
KEYS = st.sampled_from(
    [
        "id",
        "name",
        "parentLayerId",
        "subLayerIds",
        "defaultVisibility",
        "layerId",
        "layerName",
        "legend",
        "imageData",
        "label",
        "attributes",
        "results",
        "layers",
        "token",
        "expires",
        "error",
        "code",
        "message",
        "details",
        "status",
        "messages",
        "spatialReference",
        "mapName",
        "wkid",
        "latestWkid",
        "maxImageWidth",
        "maxImageHeight",
    ]
)
SHAPED = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=6),
    max_leaves=30,
)
REPLIES = st.dictionaries(KEYS | st.text(max_size=6), JSON | SHAPED, max_size=8)
# The `reliability` recorder only counts, so sharing it across examples is safe.
FAST = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
PARSING = pytest.mark.reliability("Parsing")


@PARSING
@FAST
@given(REPLIES)
def test_mapserver_metadata(reliability, reply):
    reliability.add("replies tried")
    try:
        info = parse_mapserver_info(ROADS, reply)
    except SecureLayersError:
        return
    assert isinstance(info, MapServerInfo)
    assert 0 < info.max_image_width <= 16384 and 0 < info.max_image_height <= 16384
    visible_leaves(info.layers, {layer.id for layer in info.layers})
    assert len({layer.id for layer in info.layers}) == len(info.layers)
    assert len(layer_tree(info.layers)) <= len(info.layers)


def test_duplicate_layer_ids_keep_the_first():
    reply = {
        "mapName": "Roads",
        "spatialReference": {"wkid": 102100},
        "layers": [
            {"id": 1, "name": "Roads"},
            {"id": 1, "name": "Again"},
            {"id": 2, "name": "Lanes", "parentLayerId": 1},
        ],
    }
    info = parse_mapserver_info(ROADS, reply)
    assert [(layer.name, depth) for layer, depth in layer_tree(info.layers)] == [("Roads", 0), ("Lanes", 1)]


@PARSING
@FAST
@given(REPLIES)
def test_token_reply(reliability, reply):
    reliability.add("replies tried")
    try:
        token = parse_token_reply(reply, "gis.example.test")
    except SecureLayersError:
        return
    assert isinstance(token, Token) and token.value and token.expires > 0


@PARSING
@FAST
@given(JSON | REPLIES)
def test_error_envelopes(reliability, reply):
    reliability.add("replies tried")
    error = arcgis_error(reply)
    assert error is None or (isinstance(error, ArcGISError) and error.message)


@PARSING
@FAST
@given(REPLIES)
def test_legend_and_identify(reliability, reply):
    reliability.add("replies tried")
    assert all(isinstance(key, int) for key in parse_legend(reply))
    assert all(isinstance(result.attributes, dict) for result in parse_identify(reply))


def a_png() -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", (4, 4), (200, 60, 20, 128)).save(out, "PNG")
    return out.getvalue()


PNG = a_png()
# Whole replies as bytes: noise, JSON of every shape (with and without a BOM), nesting deep enough
# to exhaust the recursion limit, and real or truncated or corrupted images.
BODIES = st.one_of(
    st.binary(max_size=300),
    (JSON | REPLIES).map(lambda value: json.dumps(value).encode()),
    (JSON | REPLIES).map(lambda value: b"\xef\xbb\xbf" + json.dumps(value).encode()),
    st.builds(
        lambda opener, depth: opener * depth, st.sampled_from([b"[", b'{"a":', b'{"error":']), st.integers(1, 50_000)
    ),
    st.builds(lambda cut: PNG[:cut], st.integers(0, len(PNG))),
    st.builds(
        lambda at, byte: PNG[:at] + bytes([byte]) + PNG[at + 1 :], st.integers(0, len(PNG) - 1), st.integers(0, 255)
    ),
)
STATUSES = st.sampled_from([200, 200, 200, 301, 400, 401, 403, 404, 407, 498, 499, 500, 502, 503])
CONTENT_TYPES = st.sampled_from(["application/json", "text/plain;charset=utf-8", "text/html", "image/png", ""])


def reply_head(status: int, content_type: str) -> requests.Response:
    """The status line and headers of a reply, as the client has them once the body is read."""
    response = requests.Response()
    response.status_code, response.url = status, "https://gis.example.test/arcgis/rest/services/Roads/MapServer"
    response.headers["Content-Type"] = content_type
    return response


@PARSING
@FAST
@given(STATUSES, CONTENT_TYPES, BODIES)
def test_raw_reply_bytes(reliability, status, content_type, body):
    reliability.add("replies tried")
    try:
        payload = parse_json_reply(reply_head(status, content_type), body)
    except SecureLayersError as error:
        assert error.message
    else:
        assert isinstance(payload, dict) and status == 200
    try:
        image = parse_image_reply(reply_head(status, content_type), body)
    except SecureLayersError as error:
        assert error.message
    else:
        assert isinstance(image, ImageReply) and image.width > 0 and status == 200


def test_json_nested_past_the_recursion_limit_is_a_typed_error():
    with pytest.raises(SecureLayersError, match="not valid JSON"):
        parse_json_reply(reply_head(200, "application/json"), b"[" * 100_000 + b"]" * 100_000)


def group(layer_id: int, parent: int) -> Sublayer:
    return Sublayer(id=layer_id, name=f"Group {layer_id}", parent_id=parent, default_visible=True)


def test_groups_nested_thousands_deep_are_listed_without_recursion():
    chain = tuple(group(n, n - 1 if n else -1) for n in range(5000))
    tree = layer_tree(chain)
    assert [depth for _, depth in tree] == list(range(5000))
    assert visible_leaves(chain, {layer.id for layer in chain}) == [4999]


def test_groups_that_contain_each_other_are_listed_once():
    circular = (group(1, -1), group(2, 1), group(3, 2), group(2, 3))  # 2 reappears under 3
    assert [(layer.id, depth) for layer, depth in layer_tree(circular)] == [(1, 0), (2, 1), (3, 2)]
