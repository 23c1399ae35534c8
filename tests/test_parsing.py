"""Parsing never crashes: arbitrary JSON into every reply parser gives a typed result or a typed error."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from secure_layers.client import arcgis_error
from secure_layers.errors import ArcGISError, SecureLayersError
from secure_layers.mapserver import (
    MapServerInfo,
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
