"""What a test does to the dashboard in the browser, and how it reads the map back.

The map lives in streamlit-folium's iframe; streamlit-folium keeps the Leaflet map as
`window.map` there. Screen positions come from `map.latLngToContainerPoint` plus the map
container's place in the iframe and the iframe's place in the page, so they can be looked
up in a page screenshot.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from PIL import Image
from playwright.sync_api import Frame, Locator, Page, expect


@dataclass(frozen=True)
class AppServer:
    """The running `streamlit run app.py`."""

    url: str  # what the browser opens, e.g. http://127.0.0.1:8765/
    origin: str  # st.context.url for that page, e.g. http://127.0.0.1:8765 (the token's Referer)
    port: int
    log: Path


MAP_IFRAME = 'iframe[title="streamlit_folium.st_folium"]'
OVERLAY = "img.secure-layers-overlay"
MAP_TIMEOUT = 30_000
SIGN_IN_TIMEOUT = 20_000
OVERLAY_TIMEOUT = 15_000

# True once the map is still, exactly one overlay is loaded for exactly the current view,
# the layer's status box is hidden, and every basemap tile has loaded and finished fading
# in: a screenshot now is final.
_VIEW_SETTLED_JS = """
() => {
  const map = window.map;
  if (!map || map._animatingZoom || (map._panAnim && map._panAnim._inProgress)) return false;
  const images = document.querySelectorAll("img.secure-layers-overlay");
  if (images.length !== 1) return false;
  const image = images[0];
  if (!image.complete || image.naturalWidth === 0) return false;
  const crs = map.options.crs, bounds = map.getBounds();
  const sw = crs.project(bounds.getSouthWest()), ne = crs.project(bounds.getNorthEast());
  if (new URL(image.src).searchParams.get("bbox") !== [sw.x, sw.y, ne.x, ne.y].join(",")) return false;
  const status = document.querySelector(".secure-layers-status");  // "Drawing layer…" while loading
  if (status && getComputedStyle(status).display !== "none") return false;
  const tiles = Array.from(document.querySelectorAll("img.leaflet-tile"));
  return tiles.length > 0 && tiles.every(
    (tile) => tile.classList.contains("leaflet-tile-loaded") && getComputedStyle(tile).opacity === "1");
}
"""

_CONTAINER_POINT_JS = """
([lat, lon]) => {
  const point = window.map.latLngToContainerPoint([lat, lon]);
  const box = window.map.getContainer().getBoundingClientRect();
  return [box.left + point.x, box.top + point.y];
}
"""


class AppPage:
    def __init__(self, page: Page, app: AppServer):
        self.page = page
        self.app = app

    # --- the page and its sidebar ---------------------------------------------------------

    @property
    def sidebar(self) -> Locator:
        return self.page.get_by_test_id("stSidebar")

    @property
    def url_field(self) -> Locator:
        return self.sidebar.get_by_label("MapServer URL", exact=True)

    @property
    def username_field(self) -> Locator:
        return self.sidebar.get_by_label("Username", exact=True)

    @property
    def password_field(self) -> Locator:
        return self.sidebar.get_by_label("Password", exact=True)

    @property
    def add_service(self) -> Locator:
        return self.sidebar.get_by_role("button", name="Add service")

    @property
    def sign_out_button(self) -> Locator:
        return self.sidebar.get_by_role("button", name="Sign out")

    @property
    def signed_in(self) -> Locator:
        return self.sidebar.get_by_text("Signed in as")

    def open(self) -> AppPage:
        """Load the app and wait until the form and the basemap are there."""
        self.page.goto(self.app.url)
        expect(self.add_service).to_be_visible(timeout=MAP_TIMEOUT)
        expect(self.map_frame.locator("img.leaflet-tile-loaded").first).to_be_visible(timeout=MAP_TIMEOUT)
        return self

    def submit(self, username: str, password: str, url: str | None = None) -> None:
        if url is not None:
            self.url_field.fill(url)
        self.username_field.fill(username)
        self.password_field.fill(password)
        self.add_service.click()

    def sign_in(self, username: str = "user1", password: str = "user1", url: str | None = None) -> None:  # noqa: S107
        """Sign in (user1 is the double's allowed account) and wait until the layer is drawn for the view."""
        self.submit(username, password, url)
        expect(self.signed_in).to_be_visible(timeout=SIGN_IN_TIMEOUT)
        expect(self.map_frame.locator(OVERLAY)).to_have_count(1, timeout=OVERLAY_TIMEOUT)
        self.wait_until_settled()

    # --- the map ------------------------------------------------------------------------------

    @property
    def map_frame(self):
        return self.page.frame_locator(MAP_IFRAME)

    @property
    def frame(self) -> Frame:
        frame = self.page.locator(MAP_IFRAME).element_handle().content_frame()
        assert frame is not None, "the map iframe has no document"
        return frame

    def wait_until_settled(self, timeout: float = OVERLAY_TIMEOUT) -> None:
        self.frame.wait_for_function(_VIEW_SETTLED_JS, timeout=timeout)

    def overlay_src(self) -> str:
        """The absolute URL of the overlay image now on the map."""
        return self.map_frame.locator(OVERLAY).evaluate("image => image.src")

    def zoom(self) -> int:
        return self.frame.evaluate("() => window.map.getZoom()")

    def screen_point(self, lat: float, lon: float) -> tuple[float, float]:
        """Where (lat, lon) is in the page viewport, in CSS pixels."""
        x, y = self.frame.evaluate(_CONTAINER_POINT_JS, [lat, lon])
        box = self.page.locator(MAP_IFRAME).bounding_box()
        assert box is not None, "the map iframe is not laid out"
        return box["x"] + x, box["y"] + y

    def map_centre_on_screen(self) -> tuple[float, float]:
        box = self.page.locator(MAP_IFRAME).bounding_box()
        assert box is not None, "the map iframe is not laid out"
        return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2

    def drag_map(self, dx: int, dy: int) -> None:
        """Pan with the mouse like a user, by (dx + 1, dy) pixels, ending slowly so Leaflet adds no inertia."""
        x, y = self.map_centre_on_screen()
        mouse = self.page.mouse
        mouse.move(x, y)
        mouse.down()
        mouse.move(x + dx / 2, y + dy / 2, steps=8)
        mouse.move(x + dx, y + dy, steps=8)
        # Leaflet's inertia looks at the last 50 ms of movement: a pause, then one last
        # 1-pixel move, leaves it a single sample and so no throw.
        self.page.wait_for_timeout(120)
        mouse.move(x + dx + 1, y + dy)
        mouse.up()

    def screenshot(self, path: str | None = None) -> Image.Image:
        return Image.open(io.BytesIO(self.page.screenshot(path=path))).convert("RGB")


def bbox_of(url: str) -> str:
    values = parse_qs(urlsplit(url).query).get("bbox", [])
    assert len(values) == 1, f"no single bbox in {url}"
    return values[0]


def colour_at(image: Image.Image, point: tuple[float, float]) -> tuple[int, int, int]:
    return image.getpixel((round(point[0]), round(point[1])))


def close_to(actual: tuple[int, ...], expected: tuple[int, ...], tolerance: int = 12) -> bool:
    """True when every colour channel is within `tolerance`."""
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))
