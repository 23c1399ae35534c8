"""The shareable link: services, sublayers, opacity and view in the query string, nothing secret."""

from __future__ import annotations

from secure_layers.mapserver import Sublayer
from secure_layers.share import SharedService, View, read_services, read_view, ticked_for, write_services

WILDFIRE = "https://gis.example.test/arcgis/rest/services/Wildfire/MapServer"
ROADS = "https://gis.example.test/arcgis/rest/services/Roads/MapServer"
ROAD_LAYERS = (
    Sublayer(0, "Bridges"),
    Sublayer(1, "Road network", sublayer_ids=(2, 3)),
    Sublayer(2, "Highways", parent_id=1),
    Sublayer(3, "Local roads", parent_id=1, default_visible=False),
)


def test_a_link_round_trips_services_sublayers_and_opacity():
    params = write_services([(WILDFIRE, [2, 0], 1.0), (ROADS, [], 0.5)])
    assert params == {"service": [WILDFIRE, ROADS], "show": ["0,2", "none"], "opacity": ["1", "0.5"]}
    assert read_services(params) == [SharedService(WILDFIRE, (0, 2), 1.0), SharedService(ROADS, (), 0.5)]


def test_a_link_without_sublayers_or_opacity_uses_the_defaults():
    assert read_services({"service": [WILDFIRE]}) == [SharedService(WILDFIRE, None, 1.0)]


def test_nonsense_in_a_link_is_ignored():
    params = {"service": [WILDFIRE], "show": ["0,x,;drop,2,²," + "9" * 5000], "opacity": ["nan"]}
    assert read_services(params) == [SharedService(WILDFIRE, (0, 2), 1.0)]
    many = [f"https://gis.example.test/arcgis/rest/services/S{i}/MapServer" for i in range(50)]
    assert len(read_services({"service": many})) == 10


def test_the_view_is_read_back_or_falls_back_to_the_sample():
    assert read_view({"lat": ["34.2"], "lng": ["-116.9"], "z": ["11"]}) == View(34.2, -116.9, 11)
    for broken in (
        {},
        {"lat": ["north"], "lng": ["1"], "z": ["3"]},
        {"lat": ["95"], "lng": ["0"], "z": ["3"]},
        {"lat": ["1"], "lng": ["1"], "z": ["40"]},
    ):
        assert read_view(broken) == View(34.089, -116.865, 9)


def test_ticking_restores_exactly_the_shown_leaves_with_their_groups():
    assert ticked_for((3,), ROAD_LAYERS) == {1, 3}
    assert ticked_for((0, 2), ROAD_LAYERS) == {0, 1, 2}
    assert ticked_for((), ROAD_LAYERS) == set()


def test_a_link_never_keeps_a_query_string_and_counts_each_service_once():
    params = {"service": [WILDFIRE + "?token=PASTED-SECRET", WILDFIRE + "#top", ROADS]}
    assert read_services(params) == [SharedService(WILDFIRE, None, 1.0), SharedService(ROADS, None, 1.0)]
