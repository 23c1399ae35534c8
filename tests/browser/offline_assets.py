"""Keep the browser offline: answer every non-loopback request with local content.

folium and streamlit-folium load Leaflet and friends from public CDNs, and the basemap is
Esri World Street Map. There is no internet where these tests run, so `install(context)`
routes every request that does not go to 127.0.0.1/localhost through one handler:

* Leaflet 1.9.3 (`leaflet.js`, `leaflet.css`, its marker/layer images) comes from
  `tests/browser_assets/node_modules` (installed by `npm ci` from `tests/browser_assets/package.json`).
  Without the real leaflet.js/leaflet.css the map never appears or is laid out wrongly.
* Esri Streets tiles (`World_Street_Map/MapServer/tile/{z}/{y}/{x}`) get one locally drawn
  256x256 PNG: a pale background with a faint grid, so the screenshot looks like a light map
  and a pixel that no feature covers has a known colour (`BASEMAP_BACKGROUND`/`BASEMAP_GRID`).
* Every other URL (jQuery, Bootstrap, Font Awesome, awesome-markers, ...) gets an EMPTY 200 with
  a fitting content type (a 1x1 transparent PNG for images). It must never fail:
  streamlit-folium loads its scripts one after another and a single `onerror` aborts the map.

Loopback requests (the app itself, and anything else on 127.0.0.1) are not touched, and
`route()` does not see websockets, so Streamlit's `/_stcore/stream` is unaffected.
Each `OfflineAssets` records what it served, so a test can check where the basemap came from.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path
from urllib.parse import urlsplit

from PIL import Image, ImageDraw

NODE_MODULES = Path(__file__).resolve().parent.parent / "browser_assets" / "node_modules"
LEAFLET_DIST = NODE_MODULES / "leaflet" / "dist"
LEAFLET_CDN_PREFIX = "https://cdn.jsdelivr.net/npm/leaflet@1.9.3/dist/"
STREETS_TILE_MARKER = "/ArcGIS/rest/services/World_Street_Map/MapServer/tile/"

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-quic",
    "--disable-gpu",
]

BASEMAP_BACKGROUND = (242, 239, 233)
BASEMAP_GRID = (226, 222, 214)
BASEMAP_COLOURS = (BASEMAP_BACKGROUND, BASEMAP_GRID)
_GRID_STEP = 64

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})
CONTENT_TYPES = {
    ".js": "application/javascript",
    ".mjs": "application/javascript",
    ".css": "text/css",
    ".png": "image/png",
    ".gif": "image/gif",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".svg": "image/svg+xml",
    ".woff2": "font/woff2",
    ".woff": "font/woff",
    ".ttf": "font/ttf",
    ".eot": "application/vnd.ms-fontobject",
    ".json": "application/json",
    ".map": "application/json",
}


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def _basemap_tile() -> bytes:
    tile = Image.new("RGB", (256, 256), BASEMAP_BACKGROUND)
    draw = ImageDraw.Draw(tile)
    for at in range(0, 256, _GRID_STEP):
        draw.line([(at, 0), (at, 255)], fill=BASEMAP_GRID, width=1)
        draw.line([(0, at), (255, at)], fill=BASEMAP_GRID, width=1)
    return _png(tile)


BASEMAP_TILE_PNG = _basemap_tile()
TRANSPARENT_PNG = _png(Image.new("RGBA", (1, 1), (0, 0, 0, 0)))


def missing_prerequisites() -> list[str]:
    """What the browser tests need on this machine and do not find, as readable sentences."""
    missing = []
    if not Path(CHROMIUM).is_file():
        missing.append(
            f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium fonts-liberation); "
            "`playwright install` cannot download browsers here"
        )
    for name in ("leaflet.js", "leaflet.css"):
        if not (LEAFLET_DIST / name).is_file():
            missing.append(f"{LEAFLET_DIST / name} not found: run `npm ci` in tests/browser_assets")
    return missing


def is_local(url: str) -> bool:
    return (urlsplit(url).hostname or "") in LOCAL_HOSTS


def is_external(url: str) -> bool:
    """True for every http(s) URL that does not go to this machine: those are routed."""
    return url.startswith(("http://", "https://")) and not is_local(url)


def content_type_for(url: str) -> str:
    path = urlsplit(url).path.lower()
    for suffix, content_type in CONTENT_TYPES.items():
        if path.endswith(suffix):
            return content_type
    return "text/plain"


def _leaflet_file(url: str) -> Path | None:
    if not url.startswith(LEAFLET_CDN_PREFIX):
        return None
    relative = urlsplit(url).path.split("/dist/", 1)[1]
    candidate = (LEAFLET_DIST / relative).resolve()
    if LEAFLET_DIST.resolve() in candidate.parents and candidate.is_file():
        return candidate
    return None


class OfflineAssets:
    """One context's route handler and the log of what it answered."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.served: list[str] = []  # real files from node_modules
        self.tiles: list[str] = []  # Esri Streets tiles answered with the local basemap tile
        self.stubbed: list[str] = []  # everything else, answered empty

    def install(self, context) -> OfflineAssets:
        """Route every non-loopback request of a Playwright BrowserContext (or Page); returns self."""
        context.route(is_external, self.handle)
        return self

    def _log(self, bucket: list[str], url: str) -> None:
        with self._lock:
            bucket.append(url)

    def handle(self, route) -> None:
        url = route.request.url
        cors = {"Access-Control-Allow-Origin": "*"}
        if STREETS_TILE_MARKER in url:
            self._log(self.tiles, url)
            route.fulfill(status=200, body=BASEMAP_TILE_PNG, content_type="image/png", headers=cors)
            return
        local = _leaflet_file(url)
        if local is not None:
            self._log(self.served, url)
            route.fulfill(status=200, body=local.read_bytes(), content_type=content_type_for(url), headers=cors)
            return
        self._log(self.stubbed, url)
        content_type = content_type_for(url)
        body = TRANSPARENT_PNG if content_type == "image/png" else b""
        route.fulfill(status=200, body=body, content_type=content_type, headers=cors)


def install(context) -> OfflineAssets:
    """Make a Playwright BrowserContext (or Page) fully offline; see the module docstring."""
    return OfflineAssets().install(context)
