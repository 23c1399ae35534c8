"""The double's map content: georeferenced wildfire features and the export renderer.

Features are defined in WGS84 (lon, lat) and drawn with Pillow after projecting them
with pyproj into the export's image spatial reference, so a misplaced overlay shows.
`parse_export` validates export parameters the way the real server does (raising
`InvalidExportParams`), `render_export(params) -> (bytes, content_type)` is pure.
Layer 2 (polygon) is drawn first, then layer 1 (line), then layer 0 (points) on top.
"""

from __future__ import annotations

import base64
import io
import itertools
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

from PIL import Image, ImageDraw
from pyproj import Transformer

# --- colours and sizes (RGB; all features are drawn fully opaque) -----------------
FIRE_PERIMETER_FILL = (230, 60, 30)
FIRE_PERIMETER_OUTLINE = (140, 30, 10)
CONTAINMENT_LINE_COLOUR = (30, 30, 200)
POINT_COLOUR = (20, 160, 40)
BACKGROUND_OPAQUE = (255, 255, 255)
POINT_RADIUS_PX = 6
LINE_WIDTH_PX = 4
OUTLINE_WIDTH_PX = 2

MERCATOR_WKIDS = frozenset({3857, 102100, 102113})
GEOGRAPHIC_WKIDS = frozenset({4326})
SERVICE_WKID = 102100
MAX_IMAGE_SIZE = 4096
IMAGE_FORMATS = {
    "png": "image/png",
    "png8": "image/png",
    "png24": "image/png",
    "png32": "image/png",
    "jpg": "image/jpeg",
}
METRES_PER_DEGREE = 111319.49079327357
MERCATOR_MAX_LAT = 85.0511287798
_INCH_METRES = 0.0254
_CLIP_MARGIN_PX = 50


@dataclass(frozen=True)
class Feature:
    """One map feature. `parts` are rings (polygon), paths (polyline) or one point,
    each a tuple of (lon, lat) pairs in WGS84 degrees."""

    layer_id: int
    name: str
    geometry_type: str  # "esriGeometryPoint" | "esriGeometryPolyline" | "esriGeometryPolygon"
    parts: tuple[tuple[tuple[float, float], ...], ...]
    colour: tuple[int, int, int]


LAYER_NAMES = {0: "Wildfire Response Points", 1: "Wildfire Response Lines", 2: "Wildfire Response Polygons"}
LAYER_GEOMETRY = {0: "esriGeometryPoint", 1: "esriGeometryPolyline", 2: "esriGeometryPolygon"}

FEATURES: tuple[Feature, ...] = (
    Feature(
        2,
        "Fire perimeter",
        "esriGeometryPolygon",
        (
            (
                (-116.950, 34.085),
                (-116.942, 34.104),
                (-116.930, 34.118),
                (-116.915, 34.122),
                (-116.905, 34.138),
                (-116.887, 34.146),
                (-116.870, 34.150),
                (-116.852, 34.141),
                (-116.835, 34.143),
                (-116.815, 34.136),
                (-116.800, 34.125),
                (-116.792, 34.110),
                (-116.780, 34.095),
                (-116.786, 34.078),
                (-116.790, 34.060),
                (-116.805, 34.052),
                (-116.815, 34.040),
                (-116.833, 34.038),
                (-116.850, 34.030),
                (-116.872, 34.041),
                (-116.890, 34.035),
                (-116.908, 34.046),
                (-116.925, 34.050),
                (-116.938, 34.058),
                (-116.945, 34.065),
                (-116.950, 34.085),
            ),
        ),
        FIRE_PERIMETER_FILL,
    ),
    Feature(
        1,
        "Containment line",
        "esriGeometryPolyline",
        (((-116.965, 34.155), (-116.975, 34.125), (-116.972, 34.090), (-116.980, 34.055), (-116.968, 34.025)),),
        CONTAINMENT_LINE_COLOUR,
    ),
    Feature(0, "Incident command post", "esriGeometryPoint", (((-116.9114, 34.2439),),), POINT_COLOUR),
    Feature(0, "Staging area", "esriGeometryPoint", (((-116.6, 33.95),),), POINT_COLOUR),
)

# Known places and the colour an export (transparent or not) must show there, as
# (lat, lon, rgb); None means background. Each is at least ~1 km from any other feature.
PROBES: dict[str, tuple[float, float, tuple[int, int, int] | None]] = {
    "fire_perimeter_interior": (34.090, -116.865, FIRE_PERIMETER_FILL),
    "containment_line_vertex": (34.090, -116.972, CONTAINMENT_LINE_COLOUR),
    "incident_command_post": (34.2439, -116.9114, POINT_COLOUR),
    "staging_area": (33.95, -116.6, POINT_COLOUR),
    "empty": (34.35, -116.60, None),
}
PROBE_LAYERS = {
    "fire_perimeter_interior": 2,
    "containment_line_vertex": 1,
    "incident_command_post": 0,
    "staging_area": 0,
    "empty": None,
}


class InvalidExportParams(ValueError):
    """Export parameters the real server would refuse with 400."""


@dataclass(frozen=True)
class ExportSpec:
    """A validated export request; `bbox` is already in `image_sr` units."""

    bbox: tuple[float, float, float, float]
    image_sr: int
    width: int
    height: int
    dpi: float
    image_format: str
    transparent: bool
    layers: frozenset[int]

    @property
    def content_type(self) -> str:
        return IMAGE_FORMATS[self.image_format]

    @property
    def extension(self) -> str:
        return "jpg" if self.image_format == "jpg" else "png"


# --- projection helpers ---------------------------------------------------------------
@cache
def _transformer(src: int, dst: int) -> Transformer:
    return Transformer.from_crs(src, dst, always_xy=True)


def _family(wkid: int) -> int:
    return 3857 if wkid in MERCATOR_WKIDS else 4326


def project(lon: float, lat: float, wkid: int) -> tuple[float, float]:
    """WGS84 lon/lat into `wkid` coordinates (metres for web mercator)."""
    if _family(wkid) == 4326:
        return lon, lat
    lat = max(-MERCATOR_MAX_LAT, min(MERCATOR_MAX_LAT, lat))
    return _transformer(4326, 3857).transform(lon, lat)


def convert_bbox(bbox: tuple[float, float, float, float], src: int, dst: int):
    """Re-express an axis-aligned bbox in another SR (exact: both SRs are cylindrical)."""
    if _family(src) == _family(dst):
        return bbox
    if _family(src) == 4326:
        (x0, y0), (x1, y1) = project(bbox[0], bbox[1], dst), project(bbox[2], bbox[3], dst)
    else:
        to_geo = _transformer(3857, 4326)
        (x0, y0), (x1, y1) = to_geo.transform(bbox[0], bbox[1]), to_geo.transform(bbox[2], bbox[3])
    return (x0, y0, x1, y1)


def pixel_for(lat: float, lon: float, bbox, size: tuple[int, int], wkid: int = SERVICE_WKID):
    """Pixel (col, row) where (lat, lon) lands in an export of `bbox` (in `wkid`) at `size`."""
    x, y = project(lon, lat, wkid)
    xmin, ymin, xmax, ymax = bbox
    return ((x - xmin) / (xmax - xmin) * size[0], (ymax - y) / (ymax - ymin) * size[1])


# --- parameter parsing ----------------------------------------------------------------
def parse_wkid(value: str | None, default: int = SERVICE_WKID) -> int:
    """A WKID from `102100` or `{"wkid":102100}`; only web mercator and 4326 are known."""
    if value is None or value.strip() == "":
        return default
    text = value.strip()
    if text.startswith("{"):
        try:
            obj = json.loads(text)
            text = str(obj.get("latestWkid") or obj.get("wkid"))
        except (ValueError, AttributeError) as exc:
            raise InvalidExportParams(f"Invalid spatial reference: {value}") from exc
    if not text.isdigit() or int(text) not in MERCATOR_WKIDS | GEOGRAPHIC_WKIDS:
        raise InvalidExportParams(f"Invalid spatial reference: {value}")
    return int(text)


def _parse_numbers(value: str, count: int, name: str) -> list[float]:
    parts = value.split(",")
    if len(parts) != count:
        raise InvalidExportParams(f"'{name}' must have {count} comma-separated numbers")
    try:
        numbers = [float(p) for p in parts]
    except ValueError as exc:
        raise InvalidExportParams(f"'{name}' is not numeric: {value}") from exc
    if not all(math.isfinite(n) for n in numbers):
        raise InvalidExportParams(f"'{name}' is not finite: {value}")
    return numbers


def parse_bbox(value: str | None, wkid: int) -> tuple[float, float, float, float]:
    if not value:
        raise InvalidExportParams("'bbox' is required")
    xmin, ymin, xmax, ymax = _parse_numbers(value, 4, "bbox")
    if xmin >= xmax or ymin >= ymax:
        raise InvalidExportParams(f"'bbox' is empty or inverted: {value}")
    degrees_ok = max(abs(xmin), abs(xmax)) <= 360 and max(abs(ymin), abs(ymax)) <= 90
    if _family(wkid) == 4326 and not degrees_ok:
        raise InvalidExportParams(f"'bbox' is not in degrees: {value}")
    return xmin, ymin, xmax, ymax


def parse_size(value: str | None) -> tuple[int, int]:
    if value is None or value == "":
        return 400, 400
    if not re.fullmatch(r"\d+,\d+", value):
        raise InvalidExportParams(f"Invalid size: {value}")
    width, height = (int(p) for p in value.split(","))
    if not (0 < width <= MAX_IMAGE_SIZE and 0 < height <= MAX_IMAGE_SIZE):
        raise InvalidExportParams(f"Size {value} outside 1..{MAX_IMAGE_SIZE}")
    return width, height


def parse_layers(value: str | None) -> frozenset[int]:
    """`show:`/`hide:`/`include:`/`exclude:` with ids; every layer is visible by default."""
    every = frozenset(LAYER_NAMES)
    if value is None or value == "":
        return every
    match = re.fullmatch(r"(show|hide|include|exclude):(\d+(?:,\d+)*)", value)
    if not match:
        raise InvalidExportParams(f"Invalid layers: {value}")
    ids = frozenset(int(i) for i in match.group(2).split(","))
    return {"show": ids & every, "hide": every - ids, "include": every, "exclude": every - ids}[match.group(1)]


def _parse_bool(value: str | None, name: str) -> bool:
    if value is None or value == "":
        return False
    if value.lower() not in ("true", "false"):
        raise InvalidExportParams(f"Invalid {name}: {value}")
    return value.lower() == "true"


def parse_export(params: Mapping[str, str]) -> ExportSpec:
    """Validate export parameters (single values) into an ExportSpec."""
    bbox_sr = parse_wkid(params.get("bboxSR"))
    image_sr = parse_wkid(params.get("imageSR"))
    bbox = convert_bbox(parse_bbox(params.get("bbox"), bbox_sr), bbox_sr, image_sr)
    width, height = parse_size(params.get("size"))
    dpi = _parse_numbers(params.get("dpi") or "96", 1, "dpi")[0]
    if dpi <= 0:
        raise InvalidExportParams("'dpi' must be positive")
    image_format = (params.get("format") or "png").lower()
    if image_format not in IMAGE_FORMATS:
        raise InvalidExportParams(f"Unsupported format: {image_format}")
    return ExportSpec(
        bbox,
        image_sr,
        width,
        height,
        dpi,
        image_format,
        _parse_bool(params.get("transparent"), "transparent"),
        parse_layers(params.get("layers")),
    )


def export_metadata(spec: ExportSpec) -> dict:
    """`extent` and `scale` as export?f=json reports them (extent = requested bbox)."""
    xmin, ymin, xmax, ymax = spec.bbox
    sr = {"wkid": spec.image_sr}
    if spec.image_sr in MERCATOR_WKIDS:
        sr["latestWkid"] = 3857
    metres = (xmax - xmin) * (METRES_PER_DEGREE if _family(spec.image_sr) == 4326 else 1.0)
    scale = metres / (spec.width / spec.dpi * _INCH_METRES)
    return {
        "width": spec.width,
        "height": spec.height,
        "extent": {"xmin": xmin, "ymin": ymin, "xmax": xmax, "ymax": ymax, "spatialReference": sr},
        "scale": scale,
    }


# --- clipping (keeps Pillow coordinates small when zoomed far in) ---------------------
def _clip_polygon(points, lo_x, lo_y, hi_x, hi_y):
    """Sutherland-Hodgman clip of a ring against an axis-aligned rectangle."""
    edges = [(0, lo_x, True), (0, hi_x, False), (1, lo_y, True), (1, hi_y, False)]
    for axis, bound, keep_above in edges:
        result = []
        for i, cur in enumerate(points):
            prev = points[i - 1]
            cur_in = (cur[axis] >= bound) == keep_above or cur[axis] == bound
            prev_in = (prev[axis] >= bound) == keep_above or prev[axis] == bound
            if cur_in != prev_in:
                t = (bound - prev[axis]) / (cur[axis] - prev[axis])
                result.append((prev[0] + t * (cur[0] - prev[0]), prev[1] + t * (cur[1] - prev[1])))
            if cur_in:
                result.append(cur)
        points = result
        if not points:
            break
    return points


def _clip_segment(p, q, lo_x, lo_y, hi_x, hi_y):
    """Liang-Barsky clip of segment p-q; None when it misses the rectangle."""
    t0, t1 = 0.0, 1.0
    dx, dy = q[0] - p[0], q[1] - p[1]
    edges = ((-dx, p[0] - lo_x), (dx, hi_x - p[0]), (-dy, p[1] - lo_y), (dy, hi_y - p[1]))
    for edge_p, edge_q in edges:
        if edge_p == 0:
            if edge_q < 0:
                return None
            continue
        t = edge_q / edge_p
        if edge_p < 0:
            t0 = max(t0, t)
        else:
            t1 = min(t1, t)
        if t0 > t1:
            return None
    return (p[0] + t0 * dx, p[1] + t0 * dy), (p[0] + t1 * dx, p[1] + t1 * dy)


# --- drawing ----------------------------------------------------------------------------
def _to_pixels(part, spec: ExportSpec):
    return [pixel_for(lat, lon, spec.bbox, (spec.width, spec.height), spec.image_sr) for lon, lat in part]


def _draw_feature(draw: ImageDraw.ImageDraw, feature: Feature, spec: ExportSpec) -> None:
    m = _CLIP_MARGIN_PX
    rect = (-m, -m, spec.width + m, spec.height + m)
    for part in feature.parts:
        pts = _to_pixels(part, spec)
        if feature.geometry_type == "esriGeometryPolygon":
            ring = _clip_polygon(pts, *rect)
            if len(ring) >= 3:
                draw.polygon(
                    ring, fill=feature.colour + (255,), outline=FIRE_PERIMETER_OUTLINE + (255,), width=OUTLINE_WIDTH_PX
                )
        elif feature.geometry_type == "esriGeometryPolyline":
            for p, q in itertools.pairwise(pts):
                seg = _clip_segment(p, q, *rect)
                if seg:
                    draw.line(seg, fill=feature.colour + (255,), width=LINE_WIDTH_PX)
                    _draw_dot(draw, seg[1], LINE_WIDTH_PX / 2, feature.colour)  # round joints
        else:
            ((x, y),) = pts
            if rect[0] <= x <= rect[2] and rect[1] <= y <= rect[3]:
                _draw_dot(draw, (x, y), POINT_RADIUS_PX, feature.colour)


def _draw_dot(draw: ImageDraw.ImageDraw, centre, radius: float, colour) -> None:
    x, y = centre
    draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=colour + (255,))


def render_image(spec: ExportSpec) -> Image.Image:
    """Draw the visible layers (2, then 1, then 0) on an RGBA canvas."""
    opaque = not spec.transparent or spec.image_format == "jpg"
    background = BACKGROUND_OPAQUE + (255,) if opaque else (0, 0, 0, 0)
    image = Image.new("RGBA", (spec.width, spec.height), background)
    draw = ImageDraw.Draw(image)
    for layer_id in sorted(spec.layers, reverse=True):
        for feature in FEATURES:
            if feature.layer_id == layer_id:
                _draw_feature(draw, feature, spec)
    return image


def encode_image(image: Image.Image, image_format: str) -> bytes:
    buffer = io.BytesIO()
    if image_format == "jpg":
        image.convert("RGB").save(buffer, "JPEG", quality=90)
    elif image_format == "png8":
        _to_palette(image).save(buffer, "PNG")
    elif image_format == "png24" and image.getextrema()[3][0] == 255:
        image.convert("RGB").save(buffer, "PNG")
    else:
        image.save(buffer, "PNG")
    return buffer.getvalue()


def _to_palette(image: Image.Image) -> Image.Image:
    """Exact 8-bit palette copy (the drawing has only a handful of colours; transparent
    pixels are (0, 0, 0, 0) and no feature is black)."""
    paletted = image.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=256)
    if image.getextrema()[3][0] == 0:
        rgb = paletted.getpalette()
        blacks = [i for i in range(len(rgb) // 3) if rgb[3 * i : 3 * i + 3] == [0, 0, 0]]
        if blacks:
            paletted.info["transparency"] = blacks[0]
    return paletted


def render_export(params: Mapping[str, str]) -> tuple[bytes, str]:
    """Pure export renderer: parameters in, (image bytes, content type) out."""
    spec = parse_export(params)
    return encode_image(render_image(spec), spec.image_format), spec.content_type


def mercator_extent(pad_fraction: float) -> dict:
    """Bounds of all features in 102100 metres, padded on each side."""
    xs, ys = [], []
    for feature in FEATURES:
        for part in feature.parts:
            for lon, lat in part:
                x, y = project(lon, lat, 3857)
                xs.append(x)
                ys.append(y)
    pad_x, pad_y = (max(xs) - min(xs)) * pad_fraction, (max(ys) - min(ys)) * pad_fraction
    return {
        "xmin": min(xs) - pad_x,
        "ymin": min(ys) - pad_y,
        "xmax": max(xs) + pad_x,
        "ymax": max(ys) + pad_y,
        "spatialReference": {"wkid": 102100, "latestWkid": 3857},
    }


def _swatch(feature: Feature) -> bytes:
    """A 20x20 legend symbol for a feature's layer, drawn like the export draws it."""
    image = Image.new("RGBA", (20, 20), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    if feature.geometry_type == "esriGeometryPolygon":
        draw.rectangle([2, 2, 17, 17], fill=feature.colour, outline=FIRE_PERIMETER_OUTLINE, width=2)
    elif feature.geometry_type == "esriGeometryPolyline":
        draw.line([2, 10, 17, 10], fill=feature.colour, width=LINE_WIDTH_PX)
    else:
        draw.ellipse([4, 4, 15, 15], fill=feature.colour)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def legend_json() -> dict:
    """`MapServer/legend?f=json`: one symbol per layer, image data inline (protocol.md §7)."""
    layers = []
    for layer_id, name in LAYER_NAMES.items():
        feature = next(f for f in FEATURES if f.layer_id == layer_id)
        layers.append(
            {
                "layerId": layer_id,
                "layerName": name,
                "layerType": "Feature Layer",
                "minScale": 0,
                "maxScale": 0,
                "legend": [
                    {
                        "label": "",
                        "url": f"{layer_id:032x}",
                        "imageData": base64.b64encode(_swatch(feature)).decode("ascii"),
                        "contentType": "image/png",
                        "height": 20,
                        "width": 20,
                    }
                ],
            }
        )
    return {"layers": layers}
