"""`MapServer/identify` for the double: the features within `tolerance` pixels of a point.

As strict as field case F12 asks: `layers` must be `top|visible|all[:ids]`, `tolerance`,
`mapExtent` and `imageDisplay` are required, and the search radius comes from them (the
map's resolution), so a client that sends a wrong extent or display gets no results.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping

from .features import (
    FEATURES,
    LAYER_NAMES,
    Feature,
    InvalidExportParams,
    _parse_numbers,
    convert_bbox,
    parse_wkid,
    project,
)

_LAYERS = re.compile(r"^(top|visible|all)(:(\d+(,\d+)*))?$")
DRAW_ORDER = (0, 1, 2)  # points over lines over polygons, as the export draws them

ATTRIBUTES: dict[str, dict] = {
    "Fire perimeter": {"OBJECTID": 1, "Name": "Fire perimeter", "Acres": 9820, "Containment": "45%"},
    "Containment line": {"OBJECTID": 1, "Name": "Containment line", "Crew": "Division Z", "Length_km": 14.2},
    "Incident command post": {"OBJECTID": 1, "Name": "Incident command post", "Status": "Active"},
    "Staging area": {"OBJECTID": 2, "Name": "Staging area", "Status": "Standby"},
}


def identify(params: Mapping[str, str | None]) -> dict:
    """Validate the parameters and return `{"results": [...]}` in ArcGIS's shape."""
    point_sr = parse_wkid(params.get("sr"))
    x, y, point_sr = _point(params.get("geometry"), point_sr)
    if (params.get("geometryType") or "esriGeometryPoint") != "esriGeometryPoint":
        raise InvalidExportParams("Only esriGeometryPoint is supported")
    mode, ids = _layers(params.get("layers"))
    tolerance = _parse_numbers(_required(params, "tolerance"), 1, "tolerance")[0]
    extent = convert_bbox(tuple(_parse_numbers(_required(params, "mapExtent"), 4, "mapExtent")), point_sr, 3857)
    width, height, _dpi = _parse_numbers(_required(params, "imageDisplay"), 3, "imageDisplay")
    if tolerance < 0 or width <= 0 or height <= 0 or extent[2] <= extent[0]:
        raise InvalidExportParams("Invalid tolerance, mapExtent or imageDisplay")
    radius = tolerance * (extent[2] - extent[0]) / width
    here = _to_mercator(x, y, point_sr)
    hits = [f for f in FEATURES if (ids is None or f.layer_id in ids) and _near(f, here, radius)]
    if mode == "top" and hits:
        top = min(DRAW_ORDER.index(f.layer_id) for f in hits)
        hits = [f for f in hits if DRAW_ORDER.index(f.layer_id) == top]
    return {"results": [_result(f) for f in hits]}


def _required(params: Mapping[str, str | None], name: str) -> str:
    value = params.get(name)
    if not value:
        raise InvalidExportParams(f"'{name}' is required")
    return value


def _point(text: str | None, sr: int) -> tuple[float, float, int]:
    text = (text or "").strip()
    if text.startswith("{"):
        try:
            geometry = json.loads(text)
            wkid = (geometry.get("spatialReference") or {}).get("wkid")
            return float(geometry["x"]), float(geometry["y"]), parse_wkid(str(wkid)) if wkid else sr
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InvalidExportParams("Invalid geometry") from exc
    x, y = _parse_numbers(_required({"geometry": text}, "geometry"), 2, "geometry")
    return x, y, sr


def _layers(text: str | None) -> tuple[str, set[int] | None]:
    match = _LAYERS.match(text or "top")
    if not match:
        raise InvalidExportParams("Invalid 'layers': use top|visible|all, optionally with :ids")
    ids = {int(i) for i in match.group(3).split(",")} if match.group(3) else None
    return match.group(1), ids


def _to_mercator(x: float, y: float, sr: int) -> tuple[float, float]:
    if sr == 4326:
        return project(x, y, 3857)
    return x, y


def _near(feature: Feature, point: tuple[float, float], radius: float) -> bool:
    parts = [[project(lon, lat, 3857) for lon, lat in part] for part in feature.parts]
    if feature.geometry_type == "esriGeometryPoint":
        return any(math.dist(point, vertex) <= radius for part in parts for vertex in part)
    segments = [(a, b) for part in parts for a, b in zip(part, part[1:], strict=False)]
    if any(_segment_distance(point, a, b) <= radius for a, b in segments):
        return True
    return feature.geometry_type == "esriGeometryPolygon" and any(_inside(point, part) for part in parts)


def _segment_distance(p, a, b) -> float:
    dx, dy = b[0] - a[0], b[1] - a[1]
    length = dx * dx + dy * dy
    t = 0.0 if length == 0 else max(0.0, min(1.0, ((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / length))
    return math.dist(p, (a[0] + t * dx, a[1] + t * dy))


def _inside(point, ring) -> bool:
    x, y = point
    inside = False
    for (x0, y0), (x1, y1) in zip(ring, ring[1:] + ring[:1], strict=False):
        if (y0 > y) != (y1 > y) and x < x0 + (y - y0) * (x1 - x0) / (y1 - y0):
            inside = not inside
    return inside


def _result(feature: Feature) -> dict:
    return {
        "layerId": feature.layer_id,
        "layerName": LAYER_NAMES[feature.layer_id],
        "value": feature.name,
        "displayFieldName": "Name",
        "attributes": ATTRIBUTES[feature.name],
        "geometryType": feature.geometry_type,
    }
