"""Maps one parsed request to one reply: `route(request, state, base_url) -> Reply`.

Holds the resources the double serves (rest/info, catalog, the secured MapServer and
FeatureServer, export and its output directory) and the optional control API.
"""

from __future__ import annotations

import json
import uuid

from . import features
from .identify import identify
from .replies import (
    HTML_TYPE,
    JSON_TYPE,
    Incoming,
    Reply,
    error_reply,
    html_reply,
    invalid_params,
    json_reply,
    not_found_html,
)
from .state import DoubleState
from .tokens import check_token, generate_token

SERVICE_NAME = "Wildfire_secure_ac"
SERVICES = "/arcgis/rest/services"
MAPSERVER = f"{SERVICES}/{SERVICE_NAME}/MapServer"
# A second secured MapServer on the same server (same features, its own name), so tests can
# add two services that share one sign-in.
SECOND_SERVICE_NAME = "Incidents_secure"
SECOND_MAPSERVER = f"{SERVICES}/{SECOND_SERVICE_NAME}/MapServer"
FEATURESERVER = f"{SERVICES}/{SERVICE_NAME}/FeatureServer"
TOKEN_PATHS = ("/arcgis/tokens/generateToken", "/arcgis/tokens/")
OUTPUT_DIR = f"/arcgis/rest/directories/arcgisoutput/{SERVICE_NAME}_MapServer/"
CONTROL_PREFIX = "/__double__/"
VERSION = 10.91
JSON_FORMATS = ("json", "pjson")


def route(request: Incoming, state: DoubleState, base_url: str) -> Reply:
    """The one place that decides what a request gets back."""
    path = request.path
    if path.startswith(CONTROL_PREFIX):
        return control(request, state) if state.settings.control_api else not_found_html()
    if not (path == "/arcgis" or path.startswith("/arcgis/")):
        return not_found_html()
    if state.settings.require_ssl:
        return error_reply(403, "SSL Required", ["SSL Required"], request.f)
    if path in TOKEN_PATHS:
        if not state.settings.token_based_security:
            return not_found_html()
        return generate_token(request, state)
    if request.method not in ("GET", "POST"):
        return html_reply("Error: 405 Method Not Allowed", [request.method], 405)
    if path == "/arcgis/rest/info":
        return rest_info(request, state, base_url)
    if path in (SERVICES, SERVICES + "/"):
        return catalog(request)
    if path == MAPSERVER or path.startswith(MAPSERVER + "/"):
        return mapserver(request, state, base_url, path[len(MAPSERVER) :])
    if path == SECOND_MAPSERVER or path.startswith(SECOND_MAPSERVER + "/"):
        return mapserver(request, state, base_url, path[len(SECOND_MAPSERVER) :], map_name="Incidents")
    if path == FEATURESERVER or path.startswith(FEATURESERVER + "/"):
        return featureserver(request, state, path[len(FEATURESERVER) :])
    if path.startswith(SERVICES + "/"):
        return error_reply(404, "Service not found", [], request.f)
    if path.startswith(OUTPUT_DIR) and request.method == "GET":
        return output_image(state, path[len(OUTPUT_DIR) :])
    if path.startswith("/arcgis/rest/"):
        return error_reply(400, "Invalid URL", ["Invalid URL"], request.f)
    return not_found_html()


# --- unsecured resources ----------------------------------------------------------------
def rest_info(request: Incoming, state: DoubleState, base_url: str) -> Reply:
    settings = state.settings
    auth: dict = {"isTokenBasedSecurity": settings.token_based_security}
    if settings.token_based_security:
        auth["tokenServicesUrl"] = base_url + settings.advertised_token_path
        auth["shortLivedTokenValidity"] = settings.short_timeout
    info = {
        "currentVersion": VERSION,
        "fullVersion": "10.9.1",
        "soapUrl": base_url + "/arcgis/services",
        "secureSoapUrl": base_url.replace("http://", "https://", 1) + "/arcgis/services",
        "authInfo": auth,
    }
    return _json_or_html(request, info, "Server Info")


def catalog(request: Incoming) -> Reply:
    body = {
        "currentVersion": VERSION,
        "folders": [],
        "services": [
            {"name": SERVICE_NAME, "type": "MapServer"},
            {"name": SERVICE_NAME, "type": "FeatureServer"},
            {"name": SECOND_SERVICE_NAME, "type": "MapServer"},
        ],
    }
    return _json_or_html(request, body, "Folder: /")


def _json_or_html(request: Incoming, body: dict, title: str) -> Reply:
    if request.f in JSON_FORMATS:
        return json_reply(body, request.f)
    if request.f in ("", "html"):
        return html_reply(
            f"ArcGIS REST Services Directory - {title}", [f"{k}: {json.dumps(v)}" for k, v in body.items()]
        )
    return invalid_params(f"Unsupported f: {request.f}", "json")


def output_image(state: DoubleState, name: str) -> Reply:
    image = state.fetch_output(name)
    if image is None:
        return not_found_html()
    return Reply(200, image.body, image.content_type)


# --- secured services ---------------------------------------------------------------------
def _layers_json() -> list[dict]:
    return [
        {
            "id": layer_id,
            "name": name,
            "parentLayerId": -1,
            "defaultVisibility": True,
            "subLayerIds": None,
            "minScale": 0,
            "maxScale": 0,
            "type": "Feature Layer",
            "geometryType": features.LAYER_GEOMETRY[layer_id],
        }
        for layer_id, name in features.LAYER_NAMES.items()
    ]


GROUP_LAYER_ID = 3


def grouped_layers_json() -> list[dict]:
    """The Incidents service nests lines and polygons in a group layer (protocol.md §5)."""
    layers = _layers_json()
    for layer in layers[1:]:
        layer["parentLayerId"] = GROUP_LAYER_ID
    group = {
        **layers[0],
        "id": GROUP_LAYER_ID,
        "name": "Fire response",
        "type": "Group Layer",
        "subLayerIds": [1, 2],
        "geometryType": None,
    }
    return [layers[0], group, *layers[1:]]


def mapserver_json() -> dict:
    sr = {"wkid": 102100, "latestWkid": 3857}
    return {
        "currentVersion": VERSION,
        "serviceDescription": "Wildfire response features "
        "(perimeter, containment lines, incident points) in the San Bernardino Mountains.",
        "mapName": "Wildfire",
        "description": "",
        "copyrightText": "Local ArcGIS double",
        "supportsDynamicLayers": False,
        "layers": _layers_json(),
        "tables": [],
        "spatialReference": sr,
        "singleFusedMapCache": False,
        "initialExtent": features.mercator_extent(0.1),
        "fullExtent": features.mercator_extent(0.3),
        "minScale": 0,
        "maxScale": 0,
        "units": "esriMeters",
        "supportedImageFormatTypes": "PNG32,PNG24,PNG,JPG,DIB,TIFF,EMF,PS,PDF,GIF,SVG,SVGZ,BMP",
        "documentInfo": {"Title": "Wildfire", "Author": "", "Keywords": ""},
        "capabilities": "Map,Query,Data",
        "supportedQueryFormats": "JSON, geoJSON, PBF",
        "exportTilesAllowed": False,
        "maxRecordCount": 1000,
        "maxImageHeight": features.MAX_IMAGE_SIZE,
        "maxImageWidth": features.MAX_IMAGE_SIZE,
    }


def featureserver_json() -> dict:
    return {
        "currentVersion": VERSION,
        "serviceDescription": "",
        "hasVersionedData": False,
        "supportsDisconnectedEditing": False,
        "hasStaticData": False,
        "maxRecordCount": 1000,
        "supportedQueryFormats": "JSON",
        "capabilities": "Query",
        "description": "",
        "copyrightText": "",
        "spatialReference": {"wkid": 102100, "latestWkid": 3857},
        "initialExtent": features.mercator_extent(0.1),
        "fullExtent": features.mercator_extent(0.3),
        "allowGeometryUpdates": True,
        "units": "esriMeters",
        "supportsApplyEditsWithGlobalIds": False,
        "syncEnabled": False,
        "layers": [{k: v for k, v in layer.items() if k != "type"} for layer in _layers_json()],
        "tables": [],
    }


def mapserver(request: Incoming, state: DoubleState, base_url: str, rest: str, map_name: str = "Wildfire") -> Reply:
    f = request.f
    user = check_token(request, state, f)
    if isinstance(user, Reply):
        return user
    if rest in ("", "/"):
        body = mapserver_json() if map_name == "Wildfire" else {**mapserver_json(), "layers": grouped_layers_json()}
        return _json_or_html(request, {**body, "mapName": map_name}, f"{map_name} (MapServer)")
    if rest in ("/export", "/export/"):
        return export(request, state, base_url)
    if rest in ("/identify", "/identify/"):
        params = {name: request.param(name) for name in {*request.query, *request.form}}
        try:
            return _json_or_html(request, identify(params), "Identify (Wildfire_secure_ac)")
        except features.InvalidExportParams as exc:
            return invalid_params(str(exc), f)
    if rest in ("/legend", "/legend/"):
        return _json_or_html(request, features.legend_json(), "Legend (Wildfire_secure_ac)")
    return error_reply(400, "Unable to complete operation.", ["Unsupported operation"], f)


def featureserver(request: Incoming, state: DoubleState, rest: str) -> Reply:
    user = check_token(request, state, request.f)
    if isinstance(user, Reply):
        return user
    if rest in ("", "/"):
        return _json_or_html(request, featureserver_json(), "Wildfire_secure_ac (FeatureServer)")
    return error_reply(400, "Unable to complete operation.", ["Unsupported operation"], request.f)


def export(request: Incoming, state: DoubleState, base_url: str) -> Reply:
    f = request.f
    if f not in ("image", "json", "pjson", "html", ""):
        return invalid_params(f"Unsupported f: {f}", "json")
    params = {name: request.param(name) for name in {*request.query, *request.form}}
    try:
        spec = features.parse_export(params)
    except features.InvalidExportParams as exc:
        return invalid_params(str(exc), f)
    body = features.encode_image(features.render_image(spec), spec.image_format)
    if f == "image":
        return Reply(200, body, spec.content_type)
    name = f"_ags_map{uuid.uuid4().hex}.{spec.extension}"
    state.store_output(name, body, spec.content_type)
    answer = {"href": base_url + OUTPUT_DIR + name, **features.export_metadata(spec)}
    if f in JSON_FORMATS:
        return json_reply(answer, f)
    rows = [f"href: {answer['href']}", f"extent: {json.dumps(answer['extent'])}"]
    return html_reply("Export Map (Wildfire_secure_ac)", rows)


# --- control API (only when settings.control_api) -------------------------------------------
def control(request: Incoming, state: DoubleState) -> Reply:
    action = request.path[len(CONTROL_PREFIX) :].rstrip("/")
    if action == "requests" and request.method == "GET":
        body = json.dumps([r.to_json() for r in state.requests]).encode()
        return Reply(200, body, JSON_TYPE)
    if request.method != "POST":
        return Reply(405, b"POST only", HTML_TYPE)
    if action == "revoke-all":
        state.revoke_all_tokens()
    elif action == "clear":
        state.clear_requests()
    elif action == "advance":
        try:
            state.advance(float(request.param("seconds") or ""))
        except ValueError:
            return Reply(400, b'{"ok":false,"error":"seconds must be a number"}', JSON_TYPE)
    else:
        return not_found_html()
    return Reply(200, json.dumps({"ok": True, "now": state.now()}).encode(), JSON_TYPE)
