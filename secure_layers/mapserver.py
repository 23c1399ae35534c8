"""A MapServer's metadata and its `export` operation, with export parameters validated.

`ExportParams.from_query` is the whitelist the proxy applies to what a browser asks for:
only these parameters, each checked, the image size capped at the service's maximum.
"""

from __future__ import annotations

import base64
import io
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from PIL import Image
from pyproj import Transformer

from .client import ArcGISClient, ImageReply
from .errors import ArcGISError, InvalidInput, NotAMapServer
from .urls import ServiceURL

WEB_MERCATOR = {3857, 102100, 102113, 900913}
GEOGRAPHIC = {4326}
IMAGE_FORMATS = {"png", "png8", "png24", "png32", "jpg", "gif"}
_LAYERS = re.compile(r"(show|hide|include|exclude):\d{1,6}(,\d{1,6}){0,199}")
_DEFAULT_MAX_IMAGE = 4096


@dataclass(frozen=True)
class Sublayer:
    id: int
    name: str
    parent_id: int = -1
    default_visible: bool = True
    sublayer_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class MapServerInfo:
    """What the app needs from `MapServer?f=json`."""

    url: str
    name: str  # the service's name from its URL, e.g. "Wildfire_secure_ac"
    map_name: str  # the map's own title, e.g. "Wildfire"
    description: str
    layers: tuple[Sublayer, ...]
    wkid: int | None
    max_image_width: int
    max_image_height: int
    extent: dict[str, Any] | None


def fetch_mapserver_info(client: ArcGISClient, service: ServiceURL) -> MapServerInfo:
    try:
        payload = client.get_json(service.url)
    except ArcGISError as refused:
        if type(refused) is not ArcGISError or refused.code != 400:
            raise
        # A bare 400 for the service itself: the server has no MapServer at that address.
        raise NotAMapServer(
            f"{service.host} did not describe “{service.name}” as a MapServer ({refused.message}). "
            "Check the service URL.",
            refused.code,
        ) from None
    return parse_mapserver_info(service, payload)


def parse_mapserver_info(service: ServiceURL, payload: Mapping[str, Any]) -> MapServerInfo:
    """Check the reply really describes a MapServer, and keep the fields we use."""
    if (
        not isinstance(payload.get("layers"), list)
        or "spatialReference" not in payload
        or ("mapName" not in payload and "singleFusedMapCache" not in payload)
    ):
        raise NotAMapServer(
            f"{service.host} answered, but “{service.name}” does not describe itself as a MapServer. "
            "Check the service URL."
        )
    spatial_reference = _dict(payload.get("spatialReference"))
    return MapServerInfo(
        url=service.url,
        name=service.name,
        map_name=str(payload.get("mapName") or service.name),
        description=str(payload.get("serviceDescription") or payload.get("description") or ""),
        layers=_unique_sublayers(payload["layers"]),
        wkid=_int(spatial_reference.get("latestWkid") or spatial_reference.get("wkid")),
        max_image_width=_image_limit(payload.get("maxImageWidth")),
        max_image_height=_image_limit(payload.get("maxImageHeight")),
        extent=payload.get("fullExtent") if isinstance(payload.get("fullExtent"), dict) else None,
    )


@dataclass(frozen=True)
class ExportParams:
    """A validated `export` request: only whitelisted parameters, each checked."""

    bbox: tuple[float, float, float, float]
    bbox_sr: int
    image_sr: int
    width: int
    height: int
    dpi: int = 96
    format: str = "png32"
    transparent: bool = True
    layers: str | None = None

    ALLOWED = frozenset({"bbox", "bboxSR", "imageSR", "size", "dpi", "format", "transparent", "layers", "f"})

    @classmethod
    def from_query(cls, query: Mapping[str, str], info: MapServerInfo) -> ExportParams:
        unknown = sorted(set(query) - cls.ALLOWED)
        if unknown:
            raise InvalidInput(f"Parameter not allowed: {', '.join(unknown)[:100]}")
        if query.get("f", "image") != "image":
            raise InvalidInput("Only f=image is served.")
        width, height = _size(query.get("size", "400,400"), info)
        bbox_sr = _sr(query.get("bboxSR", "3857"))
        return cls(
            bbox=_bbox(query.get("bbox", ""), bbox_sr),
            bbox_sr=bbox_sr,
            image_sr=_sr(query.get("imageSR", str(bbox_sr))),
            width=width,
            height=height,
            dpi=_bounded_int(query.get("dpi", "96"), "dpi", 24, 600),
            format=_choice(query.get("format", "png32").lower(), IMAGE_FORMATS, "format"),
            transparent=_choice(query.get("transparent", "true").lower(), {"true", "false"}, "transparent") == "true",
            layers=_layers(query.get("layers")),
        )

    def as_arcgis_params(self) -> dict[str, str]:
        params = {
            "bbox": ",".join(repr(value) for value in self.bbox),
            "bboxSR": str(self.bbox_sr),
            "imageSR": str(self.image_sr),
            "size": f"{self.width},{self.height}",
            "dpi": str(self.dpi),
            "format": self.format,
            "transparent": "true" if self.transparent else "false",
            "f": "image",
        }
        if self.layers:
            params["layers"] = self.layers
        return params


def layer_tree(layers: tuple[Sublayer, ...]) -> list[tuple[Sublayer, int]]:
    """Sublayers in display order, each with its depth (groups before their children), each once.

    A loop rather than recursion: a server's nesting can be arbitrarily deep, or even circular.
    """
    by_parent: dict[int, list[Sublayer]] = {}
    for layer in layers:
        by_parent.setdefault(layer.parent_id, []).append(layer)
    ordered: list[tuple[Sublayer, int]] = []
    seen: set[int] = set()
    pending = [(layer, 0) for layer in reversed(by_parent.get(-1, []))]
    while pending:
        layer, depth = pending.pop()
        if layer.id in seen:
            continue
        seen.add(layer.id)
        ordered.append((layer, depth))
        pending.extend((child, depth + 1) for child in reversed(by_parent.get(layer.id, [])))
    return ordered


def visible_leaves(layers: tuple[Sublayer, ...], checked: set[int]) -> list[int]:
    """The non-group sublayers to draw: checked themselves, and every group above them checked."""
    parents = {layer.id: layer.parent_id for layer in layers}
    groups = {layer.parent_id for layer in layers}

    def shown(layer_id: int) -> bool:
        seen: set[int] = set()
        while layer_id != -1 and layer_id not in seen:
            if layer_id not in checked:
                return False
            seen.add(layer_id)
            layer_id = parents.get(layer_id, -1)
        return True

    return sorted(layer.id for layer in layers if layer.id not in groups and shown(layer.id))


def layers_param(leaves: list[int]) -> str | None:
    """`show:0,3` for the export (sorted, no spaces); None when nothing is to be drawn."""
    return f"show:{','.join(str(i) for i in sorted(leaves))}" if leaves else None


@dataclass(frozen=True)
class LegendSymbol:
    label: str
    png: bytes


@dataclass(frozen=True)
class LegendLayer:
    layer_id: int
    name: str
    symbols: tuple[LegendSymbol, ...]


def fetch_legend(client: ArcGISClient, service_url: str) -> dict[int, LegendLayer]:
    """`legend?f=json`, symbols decoded here so the browser gets image bytes, never a server URL."""
    return parse_legend(client.get_json(f"{service_url}/legend"))


def parse_legend(reply: Mapping[str, Any]) -> dict[int, LegendLayer]:
    layers = reply.get("layers") if isinstance(reply.get("layers"), list) else []
    legend = {}
    for item in layers:
        layer_id = _int(_dict(item).get("layerId"))
        if layer_id is not None:
            entries = item.get("legend") if isinstance(item.get("legend"), list) else []
            symbols = tuple(filter(None, (_symbol(entry) for entry in entries)))
            legend[layer_id] = LegendLayer(layer_id, str(item.get("layerName") or f"Layer {layer_id}"), symbols)
    return legend


def _symbol(entry: Any) -> LegendSymbol | None:
    """One legend entry whose inline image really is a small PNG; anything else is skipped."""
    if not isinstance(entry, dict) or not isinstance(entry.get("imageData"), str):
        return None
    try:
        png = base64.b64decode(entry["imageData"], validate=True)
        with Image.open(io.BytesIO(png)) as image:
            if image.format != "PNG" or max(image.size) > 256:
                return None
    except (ValueError, OSError, Image.DecompressionBombError):
        return None
    return LegendSymbol(str(entry.get("label") or ""), png)


@dataclass(frozen=True)
class IdentifyResult:
    layer_id: int
    layer_name: str
    attributes: dict[str, Any]


WEB_MERCATOR_RESOLUTION_Z0 = 156543.03392804097  # metres per pixel at zoom 0 (256-pixel tiles)
IDENTIFY_TOLERANCE_PX = 5
_IDENTIFY_DISPLAY_PX = 400
_TO_MERCATOR = Transformer.from_crs(4326, 3857, always_xy=True)


def identify(
    client: ArcGISClient, info: MapServerInfo, lat: float, lng: float, zoom: int, layer_ids: list[int]
) -> list[IdentifyResult]:
    """What the ticked sublayers have at a clicked point (field case F12).

    `mapExtent` and `imageDisplay` only tell the server the map's scale, which turns the
    pixel tolerance into map units: a square around the point at the view's resolution does
    that exactly, without needing the browser's view.
    """
    if not layer_ids:
        return []
    wkid = info.wkid if info.wkid in WEB_MERCATOR else 102100
    x, y = _TO_MERCATOR.transform(lng, lat)
    half = _IDENTIFY_DISPLAY_PX / 2 * WEB_MERCATOR_RESOLUTION_Z0 / 2**zoom
    reply = client.get_json(
        f"{info.url}/identify",
        {
            "geometry": json.dumps({"x": x, "y": y, "spatialReference": {"wkid": wkid}}),
            "geometryType": "esriGeometryPoint",
            "sr": str(wkid),
            "layers": "visible:" + ",".join(str(i) for i in sorted(layer_ids)),
            "tolerance": str(IDENTIFY_TOLERANCE_PX),
            "mapExtent": f"{x - half!r},{y - half!r},{x + half!r},{y + half!r}",
            "imageDisplay": f"{_IDENTIFY_DISPLAY_PX},{_IDENTIFY_DISPLAY_PX},96",
            "returnGeometry": "false",
        },
    )
    return parse_identify(reply)


def parse_identify(reply: Mapping[str, Any]) -> list[IdentifyResult]:
    results = reply.get("results") if isinstance(reply.get("results"), list) else []
    return [
        IdentifyResult(
            _int(r.get("layerId")) or 0,
            str(r.get("layerName") or "Layer"),
            {str(name): _cell(value) for name, value in r["attributes"].items()},
        )
        for r in results
        if isinstance(r, dict) and isinstance(r.get("attributes"), dict)
    ]


def _cell(value: Any) -> str | int | float | bool | None:
    """An attribute as a table cell: an integer too big for 64 bits, or a list or object, becomes text."""
    if isinstance(value, bool) or value is None or isinstance(value, (str, float)):
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**63 else str(value)
    return json.dumps(value, ensure_ascii=False)


def export_image(client: ArcGISClient, service_url: str, params: ExportParams) -> ImageReply:
    """One round trip: `export` with f=image returns the image bytes, no second hop."""
    return client.get_image(f"{service_url}/export", params.as_arcgis_params())


def _sublayer(item: Mapping[str, Any]) -> Sublayer:
    children = item.get("subLayerIds")
    layer_id = _int(item["id"])
    parent = _int(item.get("parentLayerId"))
    return Sublayer(
        id=layer_id,
        name=str(item.get("name") or f"Layer {layer_id}"),
        parent_id=-1 if parent is None or parent == layer_id else parent,
        default_visible=item.get("defaultVisibility", True) is not False,
        sublayer_ids=tuple(c for c in children if isinstance(c, int)) if isinstance(children, list) else (),
    )


def _unique_sublayers(items: list[Any]) -> tuple[Sublayer, ...]:
    """Sublayers with an id, the first of each id only (ids key the UI's check boxes)."""
    layers: dict[int, Sublayer] = {}
    for item in items:
        if _int(_dict(item).get("id")) is not None:
            layer = _sublayer(item)
            layers.setdefault(layer.id, layer)
    return tuple(layers.values())


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _image_limit(value: Any) -> int:
    limit = _int(value)
    return min(limit, 16384) if limit and limit > 0 else _DEFAULT_MAX_IMAGE


def _bbox(text: str, sr: int) -> tuple[float, float, float, float]:
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise InvalidInput("bbox must be four numbers: xmin,ymin,xmax,ymax")
    xmin, ymin, xmax, ymax = values
    limit = 180.0 if sr in GEOGRAPHIC else 20037508.3428 * 2
    if xmin >= xmax or ymin >= ymax or max(abs(v) for v in values) > limit:
        raise InvalidInput("bbox is empty or outside the world")
    return values  # type: ignore[return-value]


def _sr(text: str) -> int:
    value = _bounded_int(text, "spatial reference", 1, 999999)
    if value not in WEB_MERCATOR | GEOGRAPHIC:
        raise InvalidInput("Only Web Mercator (3857/102100) or WGS84 (4326) extents are served.")
    return value


def _size(text: str, info: MapServerInfo) -> tuple[int, int]:
    parts = text.split(",")
    if len(parts) != 2:
        raise InvalidInput("size must be width,height")
    width = _bounded_int(parts[0], "width", 1, info.max_image_width)
    height = _bounded_int(parts[1], "height", 1, info.max_image_height)
    return width, height


def _bounded_int(text: str, name: str, low: int, high: int) -> int:
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise InvalidInput(f"{name} must be a whole number") from None
    if not low <= value <= high:
        raise InvalidInput(f"{name} must be between {low} and {high}")
    return value


def _choice(value: str, allowed: set[str], name: str) -> str:
    if value not in allowed:
        raise InvalidInput(f"{name} must be one of {', '.join(sorted(allowed))}")
    return value


def _layers(text: str | None) -> str | None:
    if text is None:
        return None
    if not _LAYERS.fullmatch(text):
        raise InvalidInput("layers must look like show:0,2")
    return text


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return None
