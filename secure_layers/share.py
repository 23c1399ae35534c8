"""The shareable link: what goes in the page's query string, and reading it back.

A link carries the services (their URLs), each one's visible sublayers and opacity, and the
map view - never a token, a password or a user name. The view is written by the map itself
(`layers.ViewInAddressBar`), so panning needs no Streamlit rerun.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .config import MAP_CENTER, MAP_ZOOM
from .mapserver import Sublayer

NOTHING = "none"


@dataclass(frozen=True)
class SharedService:
    url: str
    shown: tuple[int, ...] | None  # None: the service's own defaults
    opacity: float = 1.0


@dataclass(frozen=True)
class View:
    lat: float
    lng: float
    zoom: int


def read_services(params: Mapping[str, list[str]]) -> list[SharedService]:
    """`service`, `show` and `opacity` repeat once per service, in the same order."""
    urls, shows, opacities = params.get("service", []), params.get("show", []), params.get("opacity", [])
    shared: dict[str, SharedService] = {}
    for index, url in enumerate(urls[:10]):
        url = url.split("?", 1)[0].split("#", 1)[0]  # a query string (a pasted token, say) is never kept
        shown = _ids(shows[index]) if index < len(shows) else None
        opacity = _opacity(opacities[index] if index < len(opacities) else "1")
        shared.setdefault(url, SharedService(url, shown, opacity))
    return list(shared.values())


def read_view(params: Mapping[str, list[str]]) -> View:
    """The map view in the link, or the sample's view when it is missing or not sensible."""
    try:
        lat, lng, zoom = float(params["lat"][0]), float(params["lng"][0]), int(params["z"][0])
    except (KeyError, IndexError, ValueError):
        return View(*MAP_CENTER, MAP_ZOOM)
    if not (math.isfinite(lat) and math.isfinite(lng) and abs(lat) <= 85 and abs(lng) <= 180 and 1 <= zoom <= 19):
        return View(*MAP_CENTER, MAP_ZOOM)
    return View(lat, lng, zoom)


def write_services(services: Sequence[tuple[str, Sequence[int], float]]) -> dict[str, list[str]]:
    """The query parameters for (url, visible sublayer ids, opacity) of each service."""
    return {
        "service": [url for url, _, _ in services],
        "show": [",".join(str(i) for i in sorted(ids)) or NOTHING for _, ids, _ in services],
        "opacity": [f"{opacity:g}" for _, _, opacity in services],
    }


def ticked_for(shown: tuple[int, ...], layers: tuple[Sublayer, ...]) -> set[int]:
    """The check boxes to tick so that exactly `shown` is drawn: those layers and the groups above them."""
    parents = {layer.id: layer.parent_id for layer in layers}
    ticked: set[int] = set()
    for layer_id in shown:
        while layer_id in parents and layer_id not in ticked:
            ticked.add(layer_id)
            layer_id = parents[layer_id]
    return ticked


_LAYER_ID = re.compile(r"[0-9]{1,6}")  # ASCII digits only: str.isdigit() also accepts "²", which int() refuses


def _ids(text: str) -> tuple[int, ...]:
    if text == NOTHING:
        return ()
    parts = (part.strip() for part in text.split(","))
    return tuple(int(part) for part in parts if _LAYER_ID.fullmatch(part))[:200]


def _opacity(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        return 1.0
    return min(max(value, 0.0), 1.0) if math.isfinite(value) else 1.0
