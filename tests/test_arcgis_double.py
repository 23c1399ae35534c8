"""Tests of the ArcGIS Server double itself, over real HTTP on loopback."""

from __future__ import annotations

import gzip
import io
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from PIL import Image
from pyproj import Transformer

from tests.arcgis_double import PROBES, ArcGISDouble

APP = "http://localhost:8501/"
VIEW_LONLAT = (-117.2, 33.8, -116.5, 34.4)  # lon/lat box around every feature
TO_MERCATOR = Transformer.from_crs(4326, 3857, always_xy=True)


@pytest.fixture
def double():
    with ArcGISDouble() as d:
        yield d


def sign_in(d: ArcGISDouble, user: str = "user1", url: str | None = None, **fields) -> str:
    form = {"username": user, "password": user, "f": "json", **fields}
    answer = requests.post(url or d.token_url, data=form, timeout=5).json()
    return answer["token"]


def error_code(response: requests.Response) -> int | None:
    assert response.status_code == 200
    return response.json().get("error", {}).get("code")


def service(d: ArcGISDouble, token: str | None, suffix: str = "", **params) -> requests.Response:
    headers = {"X-Esri-Authorization": f"Bearer {token}"} if token else {}
    return requests.get(d.service_url + suffix, params={"f": "json", **params}, headers=headers, timeout=5)


def mercator_bbox() -> tuple[float, ...]:
    x0, y0 = TO_MERCATOR.transform(*VIEW_LONLAT[:2])
    x1, y1 = TO_MERCATOR.transform(*VIEW_LONLAT[2:])
    return x0, y0, x1, y1


def export_image(d: ArcGISDouble, token: str, **params) -> Image.Image:
    params = {
        "bbox": ",".join(map(str, mercator_bbox())),
        "bboxSR": "3857",
        "imageSR": "3857",
        "size": "700,600",
        "format": "png32",
        "transparent": "true",
        "f": "image",
        **params,
    }
    response = service(d, token, "/export", **params)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("image/")
    return Image.open(io.BytesIO(response.content)).convert("RGBA")


def probe(image: Image.Image, name: str, image_sr: int = 3857) -> tuple[int, int, int, int]:
    lat, lon, _ = PROBES[name]
    if image_sr == 4326:
        (xmin, ymin, xmax, ymax), (x, y) = VIEW_LONLAT, (lon, lat)
    else:
        (xmin, ymin, xmax, ymax), (x, y) = mercator_bbox(), TO_MERCATOR.transform(lon, lat)
    col = (x - xmin) / (xmax - xmin) * image.width
    row = (ymax - y) / (ymax - ymin) * image.height
    return image.getpixel((int(col), int(row)))


def test_rest_info_advertises_the_token_service(double):
    info = requests.get(double.root + "/rest/info", params={"f": "json"}, timeout=5).json()
    assert info["currentVersion"] == 10.91
    assert info["authInfo"] == {
        "isTokenBasedSecurity": True,
        "tokenServicesUrl": double.token_url,
        "shortLivedTokenValidity": 60,
    }
    double.settings.advertised_token_path = "/arcgis/tokens/"
    info = requests.get(double.root + "/rest/info?f=pjson", timeout=5).json()
    assert info["authInfo"]["tokenServicesUrl"] == double.root + "/tokens/"
    sign_in(double, url=info["authInfo"]["tokenServicesUrl"])  # the trailing-slash form works
    double.settings.token_based_security = False
    info = requests.get(double.root + "/rest/info?f=json", timeout=5).json()
    assert "tokenServicesUrl" not in info["authInfo"]


def test_generate_token_refuses_get_and_credentials_in_the_query(double):
    creds = {"username": "user1", "password": "user1", "f": "json"}
    refused = [
        requests.get(double.token_url, params=creds, timeout=5),
        requests.post(double.token_url, params=creds, data={"f": "json"}, timeout=5),
    ]
    for response in refused:
        assert response.json()["error"]["code"] == 405
        assert "query string" in response.json()["error"]["details"][0]
    assert double.issued_tokens == []
    assert [r.error_code for r in double.requests] == [405, 405]


@pytest.mark.parametrize(
    "fields, detail",
    [
        ({"password": "wrong"}, "Invalid username or password."),
        ({"expiration": "120"}, "Client ID is required for long expiration tokens."),
        ({"client": "referer"}, "referer"),
        ({"client": "ip"}, "'ip'"),
        ({"client": "browser"}, "Invalid client"),
        ({"client": "referer", "referer": APP, "expiration": "1.5"}, "expiration"),
    ],
)
def test_generate_token_refuses_bad_input(double, fields, detail):
    form = {"username": "user1", "password": "user1", "f": "json", **fields}
    error = requests.post(double.token_url, data=form, timeout=5).json()["error"]
    assert error["code"] == 400 and error["message"] == "Unable to generate token."
    assert detail in error["details"][0]
    assert ("extendedCode" in error) == (detail == "Invalid username or password.")


def test_token_expiration_defaults_and_clamps(double):
    before = double.now()
    answer = requests.post(
        double.token_url, timeout=5, data={"username": "user1", "password": "user1", "f": "json"}
    ).json()
    assert answer["ssl"] is False and len(answer["token"]) >= 40
    assert abs(answer["expires"] / 1000 - (before + 3600)) < 5
    double.advance(7200)
    long = requests.post(
        double.token_url,
        timeout=5,
        data={
            "username": "user1",
            "password": "user1",
            "f": "json",
            "client": "referer",
            "referer": APP,
            "expiration": "86400",
        },
    ).json()
    assert abs(long["expires"] / 1000 - (double.now() + 1440 * 60)) < 5
    assert double.issued_tokens == [answer["token"], long["token"]]


def test_every_token_transport_is_accepted_and_missing_or_bad_tokens_refused(double):
    token = sign_in(double)
    assert error_code(service(double, None)) == 499
    assert error_code(service(double, "not-a-token")) == 498
    url = double.service_url
    accepted = [
        service(double, token),
        requests.get(url, params={"f": "json", "token": token}, timeout=5),
        requests.post(url, data={"f": "json", "token": token}, timeout=5),
        requests.get(url + "/", params={"f": "pjson"}, timeout=5, headers={"Authorization": f"Bearer {token}"}),
    ]
    assert all(r.json()["mapName"] == "Wildfire" for r in accepted)
    conflicting = requests.get(
        url, params={"f": "json", "token": "OLD"}, timeout=5, headers={"X-Esri-Authorization": f"Bearer {token}"}
    )
    assert error_code(conflicting) == 498


@pytest.mark.parametrize(
    "rule, sent, ok",
    [
        ("prefix", None, False),
        ("prefix", APP, True),
        ("prefix", APP + "page?x=1", True),
        ("prefix", "http://evil.test/", False),
        ("exact", APP + "page", False),
        ("exact", APP, True),
        ("ignore", None, True),
    ],
)
def test_referer_bound_tokens_need_the_referer_header(double, rule, sent, ok):
    token = sign_in(double, client="referer", referer=APP, expiration="600")
    double.settings.referer_rule = rule
    headers = {"X-Esri-Authorization": f"Bearer {token}", **({"Referer": sent} if sent else {})}
    response = requests.get(double.service_url, params={"f": "json"}, headers=headers, timeout=5)
    assert error_code(response) == (None if ok else 498)


def test_ip_bound_tokens(double):
    assert error_code(service(double, sign_in(double, client="requestip"))) is None
    assert error_code(service(double, sign_in(double, client="ip", ip="127.0.0.1"))) is None
    assert error_code(service(double, sign_in(double, client="ip", ip="10.1.2.3"))) == 498


def test_tokens_expire_on_the_double_clock_and_can_be_revoked(double):
    token = sign_in(double, expiration="1")
    assert error_code(service(double, token)) is None
    double.advance(61)
    assert error_code(service(double, token)) == 498
    token = sign_in(double)
    double.revoke_all_tokens()
    assert error_code(service(double, token)) == 498
    assert token in double.issued_tokens


def test_user2_signs_in_but_is_forbidden(double):
    token = sign_in(double, "user2")
    for suffix in ("", "/export"):
        error = service(double, token, suffix, bbox="0,0,1,1").json()["error"]
        assert error["code"] == 403
        assert error["message"].startswith("You do not have permissions")


def test_mapserver_metadata_and_html(double):
    token = sign_in(double)
    meta = service(double, token).json()
    assert [(layer["id"], layer["name"], layer["geometryType"]) for layer in meta["layers"]] == [
        (0, "Wildfire Response Points", "esriGeometryPoint"),
        (1, "Wildfire Response Lines", "esriGeometryPolyline"),
        (2, "Wildfire Response Polygons", "esriGeometryPolygon"),
    ]
    assert all(lyr["parentLayerId"] == -1 and lyr["subLayerIds"] is None for lyr in meta["layers"])
    assert meta["spatialReference"] == {"wkid": 102100, "latestWkid": 3857}
    assert meta["maxImageWidth"] == meta["maxImageHeight"] == 4096 and meta["tables"] == []
    x, y = TO_MERCATOR.transform(-116.865, 34.089)
    extent = meta["initialExtent"]
    assert extent["xmin"] < x < extent["xmax"] and extent["ymin"] < y < extent["ymax"]
    page = requests.get(double.service_url, params={"token": token}, timeout=5)
    assert page.headers["Content-Type"].startswith("text/html")


def test_other_resources_and_unknown_paths(double):
    token = sign_in(double)
    feature_server = double.service_url.replace("MapServer", "FeatureServer")
    assert error_code(requests.get(feature_server + "?f=json", timeout=5)) == 499
    fs = requests.get(feature_server, params={"f": "json", "token": token}, timeout=5).json()
    assert fs["capabilities"] == "Query" and "mapName" not in fs and len(fs["layers"]) == 3
    catalog = requests.get(double.root + "/rest/services?f=json", timeout=5).json()
    assert {s["type"] for s in catalog["services"]} == {"MapServer", "FeatureServer"}
    missing = requests.get(double.root + "/rest/services/Nope/MapServer?f=json", timeout=5)
    assert error_code(missing) == 404
    assert requests.get(double.base_url + "/elsewhere", timeout=5).status_code == 404
    assert error_code(service(double, None, "/identify")) == 499
    unsupported = service(double, token, "/find").json()["error"]
    assert unsupported["code"] == 400 and unsupported["details"] == ["Unsupported operation"]


@pytest.mark.parametrize(
    "bbox_sr, image_sr", [("3857", "3857"), ("102100", "102100"), ("4326", "102113"), ("4326", "4326")]
)
def test_export_draws_each_feature_where_it_is(double, bbox_sr, image_sr):
    bbox = VIEW_LONLAT if bbox_sr == "4326" else mercator_bbox()
    image = export_image(double, sign_in(double), bbox=",".join(map(str, bbox)), bboxSR=bbox_sr, imageSR=image_sr)
    assert image.size == (700, 600)
    for name, (_, _, colour) in PROBES.items():
        expected = colour + (255,) if colour else (0, 0, 0, 0)
        assert probe(image, name, int(image_sr) if image_sr == "4326" else 3857) == expected, name


def test_export_layers_background_and_formats(double):
    token = sign_in(double)
    points_only = export_image(double, token, layers="show:0")
    assert probe(points_only, "staging_area")[:3] == PROBES["staging_area"][2]
    assert probe(points_only, "fire_perimeter_interior") == (0, 0, 0, 0)
    no_points = export_image(double, token, layers="hide:0", transparent="false")
    assert probe(no_points, "staging_area") == (255, 255, 255, 255)
    assert probe(no_points, "containment_line_vertex")[:3] == PROBES["containment_line_vertex"][2]
    jpg = service(double, token, "/export", bbox=",".join(map(str, mercator_bbox())), f="image", format="jpg")
    assert jpg.headers["Content-Type"] == "image/jpeg" and jpg.content[:2] == b"\xff\xd8"


def test_export_json_href_is_served_without_token_for_a_while(double):
    token = sign_in(double)
    answer = service(
        double,
        token,
        "/export",
        bbox=",".join(map(str, mercator_bbox())),
        bboxSR="3857",
        imageSR="102100",
        size="500,400",
    ).json()
    assert re.fullmatch(
        re.escape(double.root) + r"/rest/directories/arcgisoutput/"
        r"Wildfire_secure_ac_MapServer/_ags_map[0-9a-f]+\.png",
        answer["href"],
    )
    assert (answer["width"], answer["height"]) == (500, 400)
    assert answer["extent"]["spatialReference"]["wkid"] == 102100 and answer["scale"] > 0
    image = requests.get(answer["href"], timeout=5)
    assert image.headers["Content-Type"] == "image/png" and image.content[:4] == b"\x89PNG"
    double.advance(3600)
    assert requests.get(answer["href"], timeout=5).status_code == 404


@pytest.mark.parametrize(
    "params",
    [
        {"bbox": ""},
        {"bbox": "1,2,3"},
        {"bboxSR": "2229"},
        {"imageSR": "900913"},
        {"size": "5000,10"},
        {"size": "400x400"},
        {"layers": "visible:0"},
        {"layers": "show:"},
        {"format": "tiff"},
        {"bboxSR": "4326"},  # metres labelled as degrees
    ],
)
def test_export_rejects_bad_parameters(double, params):
    base = {"bbox": ",".join(map(str, mercator_bbox())), "f": "image"}
    response = service(double, sign_in(double), "/export", **{**base, **params})
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    error = response.json()["error"]
    assert error["code"] == 400 and error["message"] == "Invalid or missing input parameters."


def test_require_ssl_refuses_every_arcgis_endpoint(double):
    double.settings.require_ssl = True
    responses = [
        requests.get(double.root + "/rest/info?f=json", timeout=5),
        requests.post(double.token_url, data={"username": "user1"}, timeout=5),
        service(double, None),
    ]
    for response in responses:
        assert response.json() == {"error": {"code": 403, "message": "SSL Required", "details": ["SSL Required"]}}


def test_script_stall_and_recording(double):
    token = sign_in(double)
    envelope = b'{\n  "error": {"code": "498", "message": "Invalid Token", "details": []}\n}'
    double.script("/export", gzip.compress(envelope), "text/plain; charset=utf-8", headers={"Content-Encoding": "gzip"})
    scripted = service(double, token, "/export", f="image")
    assert scripted.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert scripted.json()["error"]["code"] == "498" and double.requests[-1].error_code == 498
    assert error_code(service(double, token, "/export", f="json")) == 400  # script used up
    double.clear_requests()
    double.stall("/rest/info", 1.0)
    with pytest.raises(requests.ReadTimeout):
        requests.post(double.root + "/rest/info?f=json", data={"x": "1"}, timeout=0.3, headers={"Referer": APP})
    [recorded] = double.requests  # recorded before the (stalled) answer went out
    assert (recorded.method, recorded.path, recorded.query, recorded.raw_query) == (
        "POST",
        "/arcgis/rest/info",
        {"f": ["json"]},
        "f=json",
    )
    assert recorded.form == {"x": ["1"]} and recorded.body == b"x=1"
    assert recorded.headers["Referer"] == APP and recorded.status == 200


def test_control_api_only_when_enabled(double):
    assert requests.post(double.base_url + "/__double__/revoke-all", timeout=5).status_code == 404
    double.settings.control_api = True
    token = sign_in(double)
    before = double.now()
    assert requests.post(double.base_url + "/__double__/advance?seconds=120", timeout=5).ok
    assert double.now() - before >= 120
    requests.post(double.base_url + "/__double__/revoke-all", timeout=5)
    assert error_code(service(double, token)) == 498
    log = requests.get(double.base_url + "/__double__/requests", timeout=5).json()
    assert [entry["path"] for entry in log][-2:] == [
        "/arcgis/tokens/generateToken",
        "/arcgis/rest/services/Wildfire_secure_ac/MapServer",
    ]
    assert "password=user1" in log[-2]["body"]
    requests.post(double.base_url + "/__double__/clear", timeout=5)
    assert double.requests == []


def test_cli_serves_until_stopped():
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.arcgis_double", "--port", "0"], cwd=root, stdout=subprocess.PIPE, text=True
    )
    try:
        first = proc.stdout.readline()
        base = re.search(r"http://127\.0\.0\.1:\d+", first).group(0)
        info = requests.get(base + "/arcgis/rest/info?f=json", timeout=5).json()
        assert info["authInfo"]["isTokenBasedSecurity"] is True
        assert requests.get(base + "/__double__/requests", timeout=5).ok  # control API is on
    finally:
        proc.terminate()
        started = time.monotonic()
        proc.wait(timeout=10)
    assert time.monotonic() - started < 10 and proc.returncode == 0


def test_identify_is_as_strict_as_field_case_f12(double):
    token = sign_in(double)
    x, y = TO_MERCATOR.transform(-116.865, 34.09)
    view = {
        "geometry": f"{x},{y}",
        "sr": "3857",
        "tolerance": "3",
        "imageDisplay": "800,600,96",
        "mapExtent": f"{x - 40000},{y - 30000},{x + 40000},{y + 30000}",
    }
    found = service(double, token, "/identify", layers="visible:0,1,2", **view).json()
    assert [r["value"] for r in found["results"]] == ["Fire perimeter"]
    assert service(double, token, "/identify", layers="visible:0,1", **view).json() == {"results": []}
    for broken in (
        {"layers": "ID: 1"},
        {"layers": "visible:0,1,2", "tolerance": ""},
        {"layers": "visible:0,1,2", "mapExtent": "1,2"},
    ):
        assert error_code(service(double, token, "/identify", **{**view, **broken})) == 400


def test_the_legend_carries_one_png_symbol_per_layer(double):
    legend = service(double, sign_in(double), "/legend").json()
    assert [layer["layerName"] for layer in legend["layers"]] == [
        "Wildfire Response Points",
        "Wildfire Response Lines",
        "Wildfire Response Polygons",
    ]
    assert all(layer["legend"][0]["imageData"].startswith("iVBORw0K") for layer in legend["layers"])
