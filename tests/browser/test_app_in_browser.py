"""The dashboard in a real browser: what a user sees, and what goes over the wire.

One `streamlit run app.py` and one ArcGIS Server double serve the whole module (see
conftest.py); every test opens its own page, so it has its own Streamlit session.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Page, WebSocket, expect
from streamlit.proto.BackMsg_pb2 import BackMsg

from tests.arcgis_double import FIRE_PERIMETER_FILL, PROBES, ArcGISDouble
from tests.browser import offline_assets
from tests.browser.app_page import (
    OVERLAY,
    OVERLAY_TIMEOUT,
    SIGN_IN_TIMEOUT,
    AppPage,
    AppServer,
    bbox_of,
    close_to,
    colour_at,
)

pytestmark = pytest.mark.browser

# The README's picture is rewritten only on request (it shows a clock time, so it would
# change every run), with docs/reliability.md: SECURE_LAYERS_UPDATE_DOCS=1 bash scripts/test.sh
REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO / ("docs" if os.environ.get("SECURE_LAYERS_UPDATE_DOCS") == "1" else "test-artifacts")
SCREENSHOT = SCREENSHOT / "screenshot.png"
FIRE = PROBES["fire_perimeter_interior"][:2]
EMPTY = PROBES["empty"][:2]  # well away from every feature: only the basemap shows there
EXPORT_SUFFIX = "/MapServer/export"
SESSION_EXPIRED_TIMEOUT = 15_000  # the sidebar fragment re-checks every 10 s


def _header(headers: dict[str, str], name: str) -> str | None:
    return next((value for key, value in headers.items() if key.lower() == name.lower()), None)


def _exports(double: ArcGISDouble) -> list:
    return [r for r in double.requests if r.path.endswith(EXPORT_SUFFIX)]


def _assert_fire_drawn_at_its_place(app: AppPage, save_to: Path | None = None) -> None:
    fire_at, empty_at = app.screen_point(*FIRE), app.screen_point(*EMPTY)
    shot = app.screenshot(str(save_to) if save_to else None)
    fire_colour, empty_colour = colour_at(shot, fire_at), colour_at(shot, empty_at)
    assert close_to(fire_colour, FIRE_PERIMETER_FILL), (
        f"at the fire perimeter's interior {fire_at} the page shows {fire_colour}, not the fill {FIRE_PERIMETER_FILL}"
    )
    assert any(close_to(empty_colour, c) for c in offline_assets.BASEMAP_COLOURS), (
        f"away from every feature {empty_at} the page shows {empty_colour}, not the basemap"
    )


def _assert_form_kept(app: AppPage, url: str, username: str) -> None:
    """After a sign-out the form is back with what was typed (Streamlit drops the values of
    widgets not drawn while signed in, so the app has to keep them itself), password empty."""
    expect(app.add_service).to_be_visible()
    expect(app.password_field).to_have_value("")
    expect(app.url_field).to_have_value(url)
    expect(app.username_field).to_have_value(username)


class _Wire:
    """Everything one page sends and receives: requests, app responses, websocket frames."""

    def __init__(self, page: Page):
        self.requests: list[str] = []
        self.finished = []  # requests whose response body has fully arrived
        self.sent: list[bytes | str] = []
        self.received: list[bytes | str] = []
        page.context.on("request", lambda request: self.requests.append(request.url))
        page.on("requestfinished", lambda request: self.finished.append(request))
        page.on("websocket", self._on_websocket)

    def _on_websocket(self, ws: WebSocket) -> None:
        ws.on("framesent", lambda payload: self.sent.append(payload))
        ws.on("framereceived", lambda payload: self.received.append(payload))

    def reruns(self, since: int = 0) -> list:
        """The `rerun_script` BackMsgs sent from message number `since` on."""
        messages = [BackMsg.FromString(p) for p in self.sent[since:] if isinstance(p, bytes)]
        return [m.rerun_script for m in messages if m.WhichOneof("type") == "rerun_script"]


# 1 ------------------------------------------------------------------------------------------


def test_sign_in_shows_the_layer_where_the_features_are(
    app: AppPage, double: ArcGISDouble, app_server: AppServer, offline: offline_assets.OfflineAssets
):
    app.sign_in("user1", "user1")

    sidebar = app.sidebar
    expect(sidebar).to_contain_text("Signed in as user1")
    expect(sidebar).to_contain_text("Wildfire")
    expect(sidebar).to_contain_text(re.compile(r"token expires at .+ \(in \d+ min\)"))
    expect(app.sign_out_button).to_be_visible()
    assert offline.tiles, "the basemap tiles did not come from the (routed) Esri Streets URL"

    # The overlay is placed, not just present: the fire's fill is where Leaflet puts the
    # fire's coordinates, and the basemap shows where there is nothing.
    _assert_fire_drawn_at_its_place(app)

    # Zoom in one level (as a user would, with the + button) for a closer look; the layer follows.
    start_zoom = app.zoom()
    app.map_frame.get_by_role("button", name="Zoom in").click()
    app.wait_until_settled()
    assert app.zoom() == start_zoom + 1
    app.page.mouse.move(5, 895)  # no hover highlight in the picture
    SCREENSHOT.parent.mkdir(exist_ok=True)
    _assert_fire_drawn_at_its_place(app, save_to=SCREENSHOT)

    # What reached the ArcGIS server: the export, with the token in a header, bound to the app's origin.
    exports = _exports(double)
    assert exports, "the double never saw an export"
    tokens = double.issued_tokens
    assert tokens, "the double issued no token"
    for export in exports:
        assert _header(export.headers, "Referer") == app_server.origin
        assert _header(export.headers, "X-Esri-Authorization") in {f"Bearer {t}" for t in tokens}
        assert "token" not in export.query
        assert not any(t in export.raw_query for t in tokens)
    sign_ins = [r for r in double.requests if r.path.endswith("/generateToken")]
    assert sign_ins and sign_ins[-1].form.get("referer") == [app_server.origin]


# 2 ------------------------------------------------------------------------------------------


def test_panning_fetches_a_new_image_without_rerunning_the_script(
    page: Page, app_server: AppServer, double: ArcGISDouble
):
    wire = _Wire(page)
    app = AppPage(page, app_server).open()
    app.sign_in()
    assert wire.reruns(), "the sign-in's rerun_script was not seen: the websocket frames are not decoded"

    before_src, before_fire = app.overlay_src(), app.screen_point(*FIRE)
    exports_before = len(_exports(double))
    sent_before = len(wire.sent)

    app.drag_map(-300, 0)  # drag the map 300 px to the left, i.e. look further east
    app.wait_until_settled()
    after_src, after_fire = app.overlay_src(), app.screen_point(*FIRE)

    assert after_src != before_src
    assert bbox_of(after_src) != bbox_of(before_src)
    new_exports = _exports(double)[exports_before:]
    assert new_exports, "panning did not reach the ArcGIS server"
    assert {e.query["bbox"][0] for e in new_exports} - {bbox_of(before_src)}, "no export with a new bbox"
    # The map moved with the mouse (301 px: the drag ends with a 1-px move), and so did the drawn fire.
    assert after_fire[0] - before_fire[0] == pytest.approx(-301, abs=2)
    assert after_fire[1] == pytest.approx(before_fire[1], abs=2)
    _assert_fire_drawn_at_its_place(app)

    page.wait_for_timeout(1500)  # streamlit-folium debounces component values: give a rerun time to show
    script_reruns = [r for r in wire.reruns(sent_before) if not r.fragment_id]
    assert script_reruns == [], f"panning reran the script: {script_reruns}"
    # The only thing allowed meanwhile is the sidebar fragment's own 10-s timer (not the map).
    assert len(wire.reruns(sent_before)) <= 1


# 3 ------------------------------------------------------------------------------------------


DISTINCTIVE_PASSWORD = "Pw-e2e-7c1f9a-never-echoed"  # noqa: S105 - a probe, not a credential
RANGER, RANGER_PASSWORD = "ranger", "Ridge-Line-4471!"  # noqa: S105 - the double's second allowed account


def _texts_the_browser_got(page: Page, app: AppPage, wire: _Wire, origin: str) -> dict[str, str | bytes]:
    """Everything the app gave this browser: the pages' HTML, app response bodies, websocket frames."""
    texts: dict[str, str | bytes] = {"page HTML": page.content(), "map iframe HTML": app.frame.content()}
    for number, request in enumerate(wire.finished):
        response = request.response()
        if response is not None and request.url.startswith(origin) and 200 <= response.status < 300:
            texts[f"response {number} {request.url}"] = response.body()
    assert any("/proxy/" in key for key in texts), "no export image body was checked"
    for number, payload in enumerate(wire.received):
        texts[f"websocket frame {number} from the app"] = payload
    return texts


def _leaks(texts: dict[str, str | bytes], secrets: dict[str, str]) -> list[str]:
    found = []
    for where, text in texts.items():
        for name, secret in secrets.items():
            if (secret.encode() if isinstance(text, bytes) else secret) in text:
                found.append(f"{name} in {where}")
    return found


def _export_sizes(wire: _Wire) -> set[str]:
    return {parse_qs(urlsplit(url).query)["size"][0] for url in wire.requests if "/proxy/" in url and "size=" in url}


@pytest.mark.reliability("Secrets")
def test_two_users_at_once_never_see_or_send_each_others_token_or_any_password(
    page: Page, browser, browser_context_args: dict, app_server: AppServer, double: ArcGISDouble, reliability
):
    # A second person, in their own browser (context), with a smaller window, so the export
    # size tells their map's images apart from the first person's.
    other_context = browser.new_context(**{**browser_context_args, "viewport": {"width": 1100, "height": 800}})
    offline_assets.install(other_context)
    other_page = other_context.new_page()
    wires = {"user1": _Wire(page), RANGER: _Wire(other_page)}
    apps = {"user1": AppPage(page, app_server).open(), RANGER: AppPage(other_page, app_server).open()}

    apps["user1"].submit("user1", DISTINCTIVE_PASSWORD)  # a failed attempt with a password nobody else uses
    expect(apps["user1"].sidebar).to_contain_text("Sign-in failed.", timeout=OVERLAY_TIMEOUT)
    apps["user1"].submit("user1", "user1")
    apps[RANGER].submit(RANGER, RANGER_PASSWORD)  # both sign-ins are in flight at once
    for app in apps.values():
        expect(app.signed_in).to_be_visible(timeout=SIGN_IN_TIMEOUT)
        expect(app.map_frame.locator(OVERLAY)).to_have_count(1, timeout=OVERLAY_TIMEOUT)
    apps["user1"].drag_map(200, 100)
    apps[RANGER].drag_map(-150, 80)
    for app in apps.values():
        app.wait_until_settled()

    tokens = {double.lookup_token(t).user: t for t in double.issued_tokens}
    assert set(tokens) == {"user1", RANGER}
    secrets = {
        "user1's token": tokens["user1"],
        f"{RANGER}'s token": tokens[RANGER],
        "the wrong password": DISTINCTIVE_PASSWORD,
        f"{RANGER}'s password": RANGER_PASSWORD,
    }
    texts = {
        f"{user}'s browser: {where}": text
        for user, app in apps.items()
        for where, text in _texts_the_browser_got(app.page, app, wires[user], app_server.origin).items()
    }
    leaks = _leaks(texts, secrets)
    reliability.figure("places scanned", len(texts))
    reliability.figure("secrets found", len(leaks))
    assert leaks == []
    for user, wire in wires.items():
        assert wire.requests
        for url in wire.requests:
            assert "token=" not in url.lower(), url
            assert not any(secret in url for secret in secrets.values()), url
            assert f":{double.port}" not in url, f"{user}'s browser contacted the ArcGIS server directly: {url}"

    # What went to the server: every export drawn for one person carried that person's token.
    sizes = {user: _export_sizes(wire) for user, wire in wires.items()}
    assert sizes["user1"] and sizes[RANGER] and not sizes["user1"] & sizes[RANGER]
    exports = _exports(double)
    for export in exports:
        [user] = [u for u, s in sizes.items() if export.query["size"][0] in s]
        assert _header(export.headers, "X-Esri-Authorization") == f"Bearer {tokens[user]}"
    assert {u for u in sizes if any(e.query["size"][0] in sizes[u] for e in exports)} == {"user1", RANGER}
    for request in double.requests:  # every request came from the app's server side, none from a browser
        agent = _header(request.headers, "User-Agent") or ""
        assert "Mozilla" not in agent and "Chrome" not in agent, f"{request.path} came from a browser: {agent}"
    reliability.saw(
        f"two people signed in at once; {len(exports)} exports each carried only their own token; "
        f"{len(texts)} pages, responses and websocket frames scanned for 4 secrets: none found"
    )
    other_context.close()


@pytest.mark.reliability("Faults")
def test_when_the_server_comes_back_the_map_redraws_by_itself(app: AppPage, double: ArcGISDouble, reliability):
    app.sign_in()
    status = app.map_frame.locator(".secure-layers-status")
    double.stop()
    try:
        app.drag_map(150, 60)
        expect(status).to_contain_text("could not be drawn", timeout=OVERLAY_TIMEOUT)
        outage = app.sidebar.get_by_test_id("stAlertContentWarning")
        expect(outage).to_contain_text("Cannot reach the server.", timeout=SESSION_EXPIRED_TIMEOUT)
        expect(outage).to_contain_text("redraws them when 127.0.0.1 answers again")
        reliability.saw(outage.inner_text())
        stale = app.overlay_src()
    finally:
        double.start()  # same port, same tokens: as after a network blip or a quick restart
    # No pan, no click: the layer tries the same view again and the sidebar clears by itself.
    expect(status).to_be_hidden(timeout=30_000)
    app.wait_until_settled()
    assert bbox_of(app.overlay_src()) != bbox_of(stale)
    _assert_fire_drawn_at_its_place(app)
    expect(app.sidebar.get_by_test_id("stAlertContentWarning")).to_have_count(0, timeout=SESSION_EXPIRED_TIMEOUT)
    assert not [r for r in double.requests if r.path.endswith("/generateToken")][1:]  # no new sign-in
    reliability.saw("the server came back: the layer redrew the panned view and the message cleared, no action")


# 4 ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("username", "password", "message"),
    [
        pytest.param("user1", "not-the-password", r"Sign-in failed\..*did not accept the user name or password",
                     id="wrong-password"),
        pytest.param("user2", "user2", r"No permission\..*signed in but has no permission", id="forbidden"),
        pytest.param("user1", "", r"Check the form\..*Enter both your user name and your password", id="no-password"),
        pytest.param("", "user1", r"Check the form\..*Enter both your user name and your password", id="no-username"),
    ],
)  # fmt: skip
def test_a_failed_sign_in_says_why_and_keeps_the_form(
    app: AppPage, double: ArcGISDouble, username: str, password: str, message: str
):
    typed_url = double.service_url + "/"  # differs from the default, to see it kept
    app.submit(username, password, url=typed_url)

    error = app.sidebar.get_by_test_id("stAlertContentError")
    expect(error).to_be_visible(timeout=SIGN_IN_TIMEOUT)
    expect(error).to_contain_text(re.compile(message, re.DOTALL))
    expect(app.add_service).to_be_visible()
    expect(app.signed_in).to_have_count(0)
    expect(app.url_field).to_have_value(typed_url)
    expect(app.username_field).to_have_value(username)
    expect(app.password_field).to_have_value("")
    expect(app.page.get_by_test_id("stException")).to_have_count(0)
    body = app.page.locator("body").inner_text()
    assert "Traceback" not in body and 'File "' not in body
    expect(app.map_frame.locator(OVERLAY)).to_have_count(0)


# 5 ------------------------------------------------------------------------------------------


def test_sign_out_kills_the_layers_handle(app: AppPage, double: ArcGISDouble):
    typed_url = double.service_url + "/"
    app.sign_in(url=typed_url)
    export_url = app.overlay_src()
    assert "/api/secure-layers/proxy/" in export_url

    live = app.page.request.get(export_url)
    assert live.status == 200 and live.headers["content-type"].startswith("image/")

    app.sign_out_button.click()
    expect(app.add_service).to_be_visible(timeout=SIGN_IN_TIMEOUT)
    expect(app.map_frame.locator(OVERLAY)).to_have_count(0, timeout=OVERLAY_TIMEOUT)

    exports_before = len(_exports(double))
    dead = app.page.request.get(export_url)
    assert dead.status == 404
    assert len(_exports(double)) == exports_before, "a signed-out handle still reached the ArcGIS server"
    _assert_form_kept(app, typed_url, "user1")


# 6 ------------------------------------------------------------------------------------------


def test_a_token_rejected_mid_session_asks_for_the_password_and_brings_the_map_back(app: AppPage, double: ArcGISDouble):
    """Field case F05: the server stops accepting the token (revoked, or restarted) while the map is open."""
    app.sign_in()
    double.revoke_all_tokens()
    exports_before = len(_exports(double))

    app.drag_map(-150, 80)

    expect(app.sidebar.get_by_text("Session expired.")).to_be_visible(timeout=SESSION_EXPIRED_TIMEOUT)
    expect(app.sidebar).to_contain_text("The server no longer accepts your sign-in")
    expect(app.sidebar).to_contain_text("Sign in again as user1")
    expect(app.signed_in).to_have_count(0)
    expect(app.map_frame.locator(OVERLAY)).to_have_count(0, timeout=OVERLAY_TIMEOUT)
    rejected = _exports(double)[exports_before:]
    assert rejected and all(e.status == 498 or e.error_code == 498 for e in rejected), [
        (e.status, e.error_code) for e in rejected
    ]

    centre = app.frame.evaluate("() => window.map.getCenter()")
    again = app.sidebar.get_by_test_id("stForm").filter(has_text="Sign in again as user1")
    again.get_by_label("Password", exact=True).fill("user1")
    app.sidebar.get_by_role("button", name="Continue").click()
    expect(app.signed_in).to_be_visible(timeout=SIGN_IN_TIMEOUT)
    expect(app.map_frame.locator(OVERLAY)).to_have_count(1, timeout=OVERLAY_TIMEOUT)
    app.wait_until_settled()
    assert app.frame.evaluate("() => window.map.getCenter()") == centre, "signing in again moved the map"
    _assert_fire_drawn_at_its_place(app)


# 7 ------------------------------------------------------------------------------------------


def test_sublayers_and_opacity_redraw_in_place_and_keep_the_view(app: AppPage, double: ArcGISDouble):
    """Unticking a sublayer re-exports with `layers=show:…` for the same view; opacity needs no new image."""
    app.sign_in()
    app.drag_map(-120, 60)
    app.wait_until_settled()
    centre = app.frame.evaluate("() => window.map.getCenter()")
    assert "layers=show%3A0%2C1%2C2" in app.overlay_src()

    app.sidebar.get_by_role("checkbox", name="Wildfire Response Polygons").click(force=True)
    expect(app.map_frame.locator(OVERLAY)).to_have_attribute("src", re.compile(r"layers=show%3A0%2C1(&|$)"))
    app.wait_until_settled()
    assert _exports(double)[-1].query["layers"] == ["show:0,1"]
    assert app.frame.evaluate("() => window.map.getCenter()") == centre, "the rerun moved the map"
    shot = app.screenshot()
    assert not close_to(colour_at(shot, app.screen_point(*FIRE)), FIRE_PERIMETER_FILL), "the polygons still show"

    exports_before = len(_exports(double))
    slider = app.sidebar.get_by_role("slider")
    slider.focus()
    for _ in range(10):  # 1.0 -> 0.5 in 0.05 steps
        app.page.keyboard.press("ArrowLeft")
    expect(app.map_frame.locator(OVERLAY)).to_have_css("opacity", "0.5", timeout=OVERLAY_TIMEOUT)
    assert len(_exports(double)) == exports_before, "an opacity change fetched a new image"


# 8 ------------------------------------------------------------------------------------------


def test_a_click_on_the_fire_shows_its_attributes_and_a_csv(app: AppPage, double: ArcGISDouble):
    """Identify on click (field case F12): the table and its CSV come from the app, not the browser."""
    app.sign_in()
    app.page.mouse.click(*app.screen_point(*FIRE))
    expect(app.page.get_by_text(re.compile(r"^At 34\.\d{5}, -116\.\d{5}$"))).to_be_visible(timeout=SIGN_IN_TIMEOUT)
    download_button = app.page.get_by_role("button", name="Download Wildfire Response Polygons as CSV")
    expect(download_button).to_be_visible()
    with app.page.expect_download() as download:
        download_button.click()
    csv = Path(download.value.path()).read_text()
    assert csv.splitlines() == ["OBJECTID,Name,Acres,Containment", "1,Fire perimeter,9820,45%"]
    [identify_request] = [r for r in double.requests if r.path.endswith("/identify")]
    assert identify_request.query["layers"] == ["visible:0,1,2"]
    expect(app.map_frame.locator("path.leaflet-interactive")).to_have_count(1)  # the clicked point is marked


# 9 ------------------------------------------------------------------------------------------


def test_the_address_is_a_link_to_the_view_and_the_layers(app: AppPage, app_server: AppServer, double: ArcGISDouble):
    """Panning writes the view into the address without a rerun; opening it elsewhere restores it after sign-in."""
    app.sign_in()
    app.sidebar.get_by_role("checkbox", name="Wildfire Response Lines").click(force=True)
    expect(app.map_frame.locator(OVERLAY)).to_have_attribute("src", re.compile(r"layers=show%3A0%2C2(&|$)"))
    app.drag_map(-200, 100)
    app.wait_until_settled()
    expect(app.page).to_have_url(re.compile(r"[?&]lat=.*&z=9"))
    centre = app.frame.evaluate("() => { const c = window.map.getCenter(); return [c.lat, c.lng]; }")
    link = app.page.url
    assert "show=0%2C2" in link or "show=0,2" in link
    assert "user1" not in link and not any(token in link for token in double.issued_tokens)

    # A layer change makes the app rewrite the address; the map puts its view back within a second.
    app.sidebar.get_by_role("checkbox", name="Wildfire Response Points").click(force=True)
    expect(app.page).to_have_url(re.compile(r"[?&]show=2(&|$)"), timeout=OVERLAY_TIMEOUT)
    expect(app.page).to_have_url(re.compile(r"[?&]lat=[-\d.]+&lng=[-\d.]+&z=9"), timeout=5_000)

    other = AppPage(app.page.context.new_page(), app_server)
    other.page.goto(link)
    expect(other.sidebar).to_contain_text("This link shows 1 service(s)", timeout=SIGN_IN_TIMEOUT)
    other.username_field.fill("user1")
    other.password_field.fill("user1")
    other.add_service.click()
    expect(other.signed_in).to_be_visible(timeout=SIGN_IN_TIMEOUT)
    expect(other.map_frame.locator(OVERLAY)).to_have_attribute("src", re.compile(r"layers=show%3A0%2C2(&|$)"))
    restored = other.frame.evaluate("() => { const c = window.map.getCenter(); return [c.lat, c.lng]; }")
    assert restored == pytest.approx(centre, abs=1e-4)  # the same view, to Leaflet's pixel rounding
    other.page.close()


# 10 -----------------------------------------------------------------------------------------


def test_adding_a_service_on_the_same_server_needs_no_password_and_keeps_the_view(app: AppPage, double: ArcGISDouble):
    """Field case F14: a rerun that adds a layer neither resets nor moves the map."""
    app.sign_in()
    app.drag_map(-160, 40)
    app.wait_until_settled()
    centre = app.frame.evaluate("() => window.map.getCenter()")
    tokens_before = len(double.issued_tokens)

    app.sidebar.get_by_text("Add another service").click()
    app.url_field.fill(double.second_service_url)
    app.add_service.click()
    expect(app.sidebar).to_contain_text("Incidents", timeout=SIGN_IN_TIMEOUT)
    expect(app.map_frame.locator(OVERLAY)).to_have_count(2, timeout=OVERLAY_TIMEOUT)
    assert app.frame.evaluate("() => window.map.getCenter()") == centre, "adding a service moved the map"
    assert len(double.issued_tokens) == tokens_before, "the second service signed in again"
