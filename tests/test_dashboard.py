"""The sidebar flow as a person sees it (Streamlit AppTest, no browser), against the double."""

from __future__ import annotations

import json
import re

import pytest
from streamlit.testing.v1 import AppTest

import secure_layers.connection
from secure_layers.connection import ServerSignIn
from secure_layers.errors import TokenInvalid
from secure_layers.proxy import REGISTRY
from tests.arcgis_double import ArcGISDouble

APP_URL = "http://localhost:8501"


@pytest.fixture
def app(double, monkeypatch):
    monkeypatch.setenv("SECURE_LAYERS_SERVICE_URL", double.service_url)
    monkeypatch.setenv("SECURE_LAYERS_CONNECT_TIMEOUT", "2")
    monkeypatch.setenv("SECURE_LAYERS_READ_TIMEOUT", "2")
    at = AppTest.from_file("../dashboard.py", default_timeout=30)
    at.context = {"url": APP_URL, "timezone": "America/Los_Angeles"}
    at.run()
    return at


def sign_in(at: AppTest, username: str, password: str, url: str | None = None) -> AppTest:
    if url is not None:
        at.text_input(key="service_url").input(url)
    at.text_input(key="username").input(username)
    at.text_input(key="password").input(password)
    [submit] = [b for b in at.button if b.label == "Add service"]
    submit.click()
    return at.run()


def sublayer_labels(at: AppTest) -> list[str]:
    return [box.label for box in at.checkbox if box.key.startswith("s1-sublayer-")]


def map_args(at: AppTest) -> dict:
    [component] = at.get("component_instance")
    return json.loads(component.proto.json_args)


def shown_text(at: AppTest) -> str:
    """Everything the page shows as text: messages, markdown, captions, inputs."""
    parts = [
        e.value for kind in ("success", "error", "warning", "info", "markdown", "caption") for e in getattr(at, kind)
    ]
    parts += [str(w.value) for w in at.text_input]
    return "\n".join(str(p) for p in parts)


def test_the_form_starts_with_the_configured_service(app, double):
    assert app.text_input(key="service_url").value == double.service_url
    assert app.text_input(key="password").value == ""
    assert not app.exception


def test_signing_in_shows_who_what_and_until_when_and_draws_through_the_proxy(app, double):
    sign_in(app, "user1", "user1")
    assert not app.exception
    assert app.success[0].value == "Signed in as **user1**"
    assert "**Wildfire**" in app.markdown[0].value
    assert "to 127.0.0.1 · token expires at" in app.caption[0].value and "PST" in app.caption[0].value
    args = map_args(app)
    assert "/api/secure-layers/proxy/" in args["feature_group"]
    assert double.service_url not in args["feature_group"] + args["script"]
    handle = args["feature_group"].split("/api/secure-layers/proxy/")[1].split("/")[0]
    assert REGISTRY.is_registered(handle)
    assert [r.path.rsplit("/", 1)[-1] for r in double.requests] == [
        "info",
        "generateToken",
        "MapServer",
        "legend",
    ]
    assert {r.headers["Referer"] for r in double.requests} == {APP_URL}


def test_sign_out_drops_the_layer_and_the_handle_and_keeps_the_url_and_user(app, double):
    sign_in(app, "user1", "user1")
    handle = map_args(app)["feature_group"].split("/api/secure-layers/proxy/")[1].split("/")[0]
    [sign_out] = [b for b in app.button if b.label == "Sign out"]
    sign_out.click()
    app.run()
    assert not REGISTRY.is_registered(handle)
    assert "/api/secure-layers/proxy/" not in (map_args(app)["feature_group"] or "")
    assert app.text_input(key="username").value == "user1"
    assert app.text_input(key="service_url").value == double.service_url


def proxy_handle(at: AppTest) -> str:
    return map_args(at)["feature_group"].split("/api/secure-layers/proxy/")[1].split("/")[0]


def sign_in_again(at: AppTest, password: str) -> AppTest:
    [field] = [w for w in at.text_input if w.key.startswith("reauth_password_")]
    field.input(password)
    [button] = [b for b in at.button if b.label == "Continue"]
    button.click()
    return at.run()


@pytest.mark.reliability("Faults")
def test_a_token_rejected_mid_session_asks_for_the_password_alone_and_keeps_the_choices(app, double, reliability):
    # Field cases F05/F06 as the user meets them: the proxy saw a 498 (the server restarted).
    sign_in(app, "user1", "user1")
    app.checkbox(key="s1-sublayer-1").uncheck()
    app.slider(key="s1-opacity").set_value(0.6).run()
    old_handle = proxy_handle(app)
    REGISTRY.report(old_handle, TokenInvalid("The server no longer accepts your sign-in. Sign in again.", 498))
    app.run()
    assert "**Session expired.**" in app.error[0].value
    reliability.saw(app.error[0].value)
    assert "Sign in again as **user1**" in [m.value for m in app.markdown][0]
    assert "dynamicLayer" not in layer_options(app)  # no layer that cannot be drawn

    sign_in_again(app, "wrong")
    assert "did not accept the user name or password" in app.error[0].value

    sign_in_again(app, "user1")
    assert not app.error
    assert app.success[0].value == "Signed in as **user1**"
    assert '"layers": "show:0,2"' in layer_options(app) and '"opacity": 0.6' in layer_options(app)
    assert proxy_handle(app) != old_handle and not REGISTRY.is_registered(old_handle)
    assert REGISTRY.is_registered(proxy_handle(app))


def a_bug(*args, **kwargs):
    """A fault nobody foresaw, whose text quotes a token: neither may reach the page or the log."""
    raise RuntimeError("quoting https://gis.example.test/arcgis?token=TOKEN-IN-BUG-TEXT")


def test_a_fault_nobody_foresaw_while_signing_in_again_keeps_the_password_form(app, monkeypatch):
    sign_in(app, "user1", "user1")
    REGISTRY.report(proxy_handle(app), TokenInvalid("The server no longer accepts your sign-in. Sign in again.", 498))
    app.run()
    monkeypatch.setattr(ServerSignIn, "reauthenticate", a_bug)
    sign_in_again(app, "user1")
    assert not app.exception
    shown = [e.value for e in app.error]
    assert any("Signing in again failed on a problem the app did not expect (RuntimeError)" in e for e in shown)
    assert "TOKEN-IN-BUG-TEXT" not in shown_text(app)
    monkeypatch.undo()
    sign_in_again(app, "user1")  # the form is still there, and works once the fault is gone
    assert app.success[0].value == "Signed in as **user1**"


def test_a_fault_nobody_foresaw_in_a_linked_service_leaves_the_others_on_the_map(double, monkeypatch):
    real_open = secure_layers.connection.open_service

    def fails_for_incidents(signed_in, service):
        return a_bug() if service.url == double.second_service_url else real_open(signed_in, service)

    monkeypatch.setattr(secure_layers.connection, "open_service", fails_for_incidents)
    at = AppTest.from_file("../dashboard.py", default_timeout=30)
    at.context = {"url": APP_URL}
    at.query_params["service"] = [double.service_url, double.second_service_url]
    at.run()
    sign_in(at, "user1", "user1", url=double.service_url)
    assert not at.exception
    assert any(
        "Adding a service from the link failed on a problem the app did not expect (RuntimeError)" in e.value
        for e in at.error
    )
    assert [b.value for b in at.checkbox if b.key.startswith("s1-sublayer-")]  # the first service is on the map
    assert not [b for b in at.checkbox if b.key.startswith("s2-sublayer-")]
    assert "TOKEN-IN-BUG-TEXT" not in shown_text(at)


def test_a_warning_comes_before_expiry_and_renewing_keeps_everything(app, double):
    double.advance(-(3600 - 180))  # the double's clock is behind: its token ends in 3 minutes of ours
    sign_in(app, "user1", "user1")
    double.advance(3600 - 180)
    assert "Your sign-in to 127.0.0.1 ends in 3 min" in app.warning[0].value
    [renew] = [b for b in app.button if b.label == "Renew sign-in"]
    renew.click()
    app.run()
    assert "dynamicLayer" in layer_options(app)  # the token still works: the layer stays while asked
    sign_in_again(app, "user1")
    assert not app.warning
    assert "(in 60 min)" in app.caption[0].value


def test_stay_signed_in_renews_by_itself(app, double):
    app.checkbox(key="stay_signed_in").check()
    sign_in(app, "user1", "user1")
    assert "renewed automatically" in app.caption[0].value
    double.revoke_all_tokens()  # the server restarts: one silent renewal, no question asked
    REGISTRY.report(proxy_handle(app), None)
    conn_client = app.session_state["_secure_layers_services"][0].map_service.client
    assert conn_client.get_json(double.service_url)["mapName"] == "Wildfire"
    assert len([r for r in double.requests if r.path.endswith("/generateToken")]) == 2


def layer_options(at: AppTest) -> str:
    """The proxied layer's JS call in the map's overlay group, whitespace folded."""
    group = map_args(at)["feature_group"] or ""
    return " ".join(group.split())


def test_sublayers_are_listed_and_toggling_one_redraws_with_show(app):
    sign_in(app, "user1", "user1")
    assert sublayer_labels(app) == [
        "Wildfire Response Points",
        "Wildfire Response Lines",
        "Wildfire Response Polygons",
    ]
    assert '"layers": "show:0,1,2"' in layer_options(app)
    app.checkbox(key="s1-sublayer-1").uncheck().run()
    assert '"layers": "show:0,2"' in layer_options(app)


def test_with_no_sublayer_ticked_nothing_is_requested_or_drawn(app):
    sign_in(app, "user1", "user1")
    for box in app.checkbox:
        if box.key.startswith("s1-sublayer-"):
            box.uncheck()
    app.run()
    assert "dynamicLayer" not in layer_options(app)
    assert any("nothing is drawn" in caption.value for caption in app.caption)


def test_opacity_changes_the_layer_option(app):
    sign_in(app, "user1", "user1")
    assert '"opacity": 1.0' in layer_options(app)
    app.slider(key="s1-opacity").set_value(0.4).run()
    assert '"opacity": 0.4' in layer_options(app)


def test_the_legend_shows_the_visible_layers_symbols_inline(app, double):
    sign_in(app, "user1", "user1")
    legend_requests = [r for r in double.requests if r.path.endswith("/legend")]
    assert len(legend_requests) == 1
    assert "Wildfire Response Polygons" in [c.value for c in app.sidebar.caption]
    assert len(app.sidebar.get("image")) == 3
    app.checkbox(key="s1-sublayer-2").uncheck().run()
    assert "Wildfire Response Polygons" not in [c.value for c in app.sidebar.caption]
    assert len(app.sidebar.get("image")) == 2
    assert len([r for r in double.requests if r.path.endswith("/legend")]) == 1  # once per sign-in


def as_read(markdown: str) -> str:
    """The message as the person reads it: markdown's backslash escapes and zero-width spaces gone."""
    return re.sub(r"\\(.)", r"\1", markdown).replace("\u200b", "")


def click_map(at: AppTest, lat: float, lng: float, zoom: int = 10) -> AppTest:
    """What streamlit-folium reports for a click on the map."""
    at.session_state["map"] = {"last_clicked": {"lat": lat, "lng": lng}, "zoom": zoom}
    return at.run()


def test_a_click_on_a_feature_shows_its_attributes_with_a_csv_download(app, double):
    sign_in(app, "user1", "user1")
    click_map(app, 34.09, -116.865)
    assert not app.exception
    assert "At 34.09000, -116.86500" in [header.value for header in app.main.subheader]
    [table] = app.dataframe
    assert table.value.to_dict("records") == [
        {"OBJECTID": 1, "Name": "Fire perimeter", "Acres": 9820, "Containment": "45%"}
    ]
    [download] = app.get("download_button")
    assert download.proto.label == "Download Wildfire Response Polygons as CSV"
    assert "L.circleMarker(\n" in map_args(app)["feature_group"]  # the clicked point is marked
    identifies = [r for r in double.requests if r.path.endswith("/identify")]
    app.run()  # an unrelated rerun does not ask again
    assert len([r for r in double.requests if r.path.endswith("/identify")]) == len(identifies) == 1


# An identify answer from a service whose data nobody cleaned: two sublayers share a name, one
# id is past 64 bits, one attribute is an object, and names that would make the same CSV key.
UNTIDY_IDENTIFY = {
    "results": [
        {"layerId": 0, "layerName": "Fire-Lines", "attributes": {"GlobalKey": 10**30, "Crew": {"lead": "Ortiz"}}},
        {"layerId": 1, "layerName": "Fire-Lines", "attributes": {"GlobalKey": 7, "Crew": None}},
        {"layerId": 2, "layerName": "Lines", "attributes": {"Name": "Dozer line"}},
    ]
}


def test_untidy_identify_answers_are_shown_as_tables_not_a_crash(app, double):
    sign_in(app, "user1", "user1")
    double.script("/MapServer/identify", json.dumps(UNTIDY_IDENTIFY).encode(), "application/json")
    click_map(app, 34.09, -116.865)
    assert not app.exception
    tables = [t.value.to_dict("records") for t in app.dataframe]
    assert tables == [
        [{"GlobalKey": str(10**30), "Crew": '{"lead": "Ortiz"}'}],
        [{"GlobalKey": 7, "Crew": None}],
        [{"Name": "Dozer line"}],
    ]
    assert len(app.get("download_button")) == 3


def test_when_one_service_cannot_answer_a_click_the_others_still_do(app, double):
    sign_in(app, "user1", "user1")
    add_service(app, double.second_service_url)
    double.script("/Incidents_secure/MapServer/identify", b"<html>Bad gateway</html>", "text/html", status=502)
    click_map(app, 34.09, -116.865)
    assert not app.exception
    [failure] = [as_read(e.value) for e in app.error]
    assert failure.startswith("Incidents: **Cannot reach the server.** 127.0.0.1 had an internal error (HTTP 502)")
    assert [t.value.to_dict("records")[0]["Name"] for t in app.dataframe] == ["Fire perimeter"]  # from Wildfire
    app.run()  # the failed look-up was not kept: the next rerun asks again, and now it answers
    assert not app.error and len(app.dataframe) == 2


def test_a_click_the_only_service_cannot_answer_is_not_called_nothing_here(app, double):
    sign_in(app, "user1", "user1")
    double.script("/MapServer/identify", b"<html>Bad gateway</html>", "text/html", status=502)
    click_map(app, 34.09, -116.865)
    assert as_read(app.error[0].value).startswith("**Cannot reach the server.** 127.0.0.1 had an internal error")
    assert not any("Nothing here" in i.value for i in app.main.info)


def test_a_fault_nobody_foresaw_in_the_legend_is_said_in_the_legend(app, monkeypatch):
    monkeypatch.setattr(secure_layers.connection.MapService, "legend", a_bug)
    sign_in(app, "user1", "user1")
    assert not app.exception
    [said] = [c.value for c in app.sidebar.caption if c.value.startswith("The legend could not be read")]
    assert "Reading the legend failed on a problem the app did not expect (RuntimeError)" in as_read(said)
    assert app.success[0].value == "Signed in as **user1**"  # the rest of the sidebar is there


def test_the_answer_follows_what_is_on_show(app):
    sign_in(app, "user1", "user1")
    click_map(app, 34.09, -116.865)
    assert [t.value.to_dict("records")[0]["Name"] for t in app.dataframe] == ["Fire perimeter"]
    app.checkbox(key="s1-sublayer-2").uncheck().run()  # the polygons are hidden: asked again
    assert "Nothing here" in app.main.info[-1].value and not app.dataframe


def test_a_click_on_nothing_says_so(app):
    sign_in(app, "user1", "user1")
    click_map(app, 34.35, -116.60)
    assert "Nothing here" in app.main.info[-1].value
    assert not app.dataframe


def test_text_from_the_server_is_shown_as_typed_not_as_markdown(app, double):
    from tests.arcgis_double.routes import mapserver_json

    hostile = {
        **mapserver_json(),
        "mapName": "Roads **now** [click](http://evil.example/phish) or https://evil.example, ops@evil.example :red[!]",
    }
    double.script("/Wildfire_secure_ac/MapServer", json.dumps(hostile).encode(), "application/json")
    sign_in(app, "user1", "user1")
    # Escaped, and every bare address broken by a zero-width space: Markdown links those even when escaped.
    z = "\u200b"
    assert app.markdown[0].value.startswith(
        r"**Roads \*\*now\*\* \[click\](http\:" + z + r"//evil.example/phish) or https\:" + z + r"//evil.example, "
        r"ops" + z + r"@evil.example \:red\[!\]**"
    )


def test_a_second_submit_of_the_form_does_not_sign_in_twice(app, double):
    from secure_layers import state

    sign_in(app, "user1", "user1")
    app.session_state[state._PENDING_PASSWORD + state.PASSWORD_WIDGET] = "user1"  # the double click's submit
    app.run()
    assert len([r for r in double.requests if r.path.endswith("/generateToken")]) == 1
    assert state._PENDING_PASSWORD + state.PASSWORD_WIDGET not in app.session_state


def test_an_unreadable_mapserver_reply_is_a_message_not_a_crash(app, double):
    broken = {"mapName": "Wildfire", "spatialReference": [1], "layers": [{"id": "x"}, {"id": 0, "subLayerIds": 5}]}
    double.script("/Wildfire_secure_ac/MapServer", json.dumps(broken).encode(), "application/json")
    sign_in(app, "user1", "user1")
    assert not app.exception
    assert app.success[0].value == "Signed in as **user1**"
    assert sublayer_labels(app) == ["Layer 0"]


def add_service(at: AppTest, url: str, username: str = "", password: str = "") -> AppTest:
    """The "Add another service" form, shown once a service is on the map."""
    return sign_in(at, username, password, url=url)


def layer_calls(at: AppTest) -> list[str]:
    """The proxy URL of each drawn layer, in the order they are added (the last is on top)."""
    return re.findall(r'dynamicLayer\(\s*"([^"]+)"', map_args(at)["feature_group"] or "")


def test_a_second_service_on_the_same_server_shares_the_sign_in(app, double):
    sign_in(app, "user1", "user1")
    add_service(app, double.second_service_url)  # no user name or password needed
    assert not app.error
    assert len([r for r in double.requests if r.path.endswith("/generateToken")]) == 1
    assert [m.value.split("**")[1] for m in app.markdown if m.value.startswith("**") and "  \n" in m.value] == [
        "Incidents",
        "Wildfire",
    ]
    first, second = layer_calls(app)  # Wildfire drawn first, Incidents (the newest) on top
    assert first != second and all(REGISTRY.is_registered(h.split("/")[4]) for h in (first, second))


def test_a_service_on_another_server_asks_for_its_own_sign_in(app, double):
    with ArcGISDouble() as other:
        sign_in(app, "user1", "user1")
        add_service(app, other.service_url)
        assert "127.0.0.1 is another server: you are not signed in to it yet" in as_read(app.error[0].value)
        add_service(app, other.service_url, "user1", "user1")
        assert not app.error
        assert [s.value for s in app.success] == ["Signed in as **user1**"] * 2
        assert len(layer_calls(app)) == 2
        assert len(other.issued_tokens) == 1 and len(double.issued_tokens) == 1


def test_the_same_service_twice_is_refused(app, double):
    sign_in(app, "user1", "user1")
    add_service(app, double.service_url + "/")
    assert "is on the map already" in app.error[0].value
    assert len(layer_calls(app)) == 1


def test_services_can_be_reordered_and_removed(app, double):
    sign_in(app, "user1", "user1")
    add_service(app, double.second_service_url)
    wildfire, incidents = layer_calls(app)
    [down] = [b for b in app.button if b.key == "s2-down"]  # Incidents, on top, goes down
    down.click()
    app.run()
    assert layer_calls(app) == [incidents, wildfire]
    [remove] = [b for b in app.button if b.key == "s1-remove"]  # Wildfire goes
    remove.click()
    app.run()
    assert layer_calls(app) == [incidents]
    assert not REGISTRY.is_registered(wildfire.split("/")[4])
    [remove] = [b for b in app.button if b.key == "s2-remove"]
    remove.click()
    app.run()
    assert layer_calls(app) == [] and not app.success  # the last service gone: signed out of that server
    assert app.text_input(key="service_url").value == double.second_service_url  # the form as last typed


def test_the_address_carries_services_sublayers_and_opacity_but_nothing_secret(app, double):
    sign_in(app, "user1", "user1")
    app.checkbox(key="s1-sublayer-1").uncheck()
    app.slider(key="s1-opacity").set_value(0.5).run()
    params = {key: app.query_params[key] for key in app.query_params}
    assert params == {"service": double.service_url, "show": "0,2", "opacity": "0.5"}
    everything = str(params)
    assert "user1" not in everything and not any(t in everything for t in double.issued_tokens)


def test_opening_a_link_asks_to_sign_in_then_restores_services_and_choices(double, monkeypatch):
    monkeypatch.setenv("SECURE_LAYERS_CONNECT_TIMEOUT", "2")
    at = AppTest.from_file("../dashboard.py", default_timeout=30)
    at.context = {"url": APP_URL}
    at.query_params["service"] = [double.second_service_url, double.service_url]
    at.query_params["show"] = ["0", "none"]
    at.query_params["opacity"] = ["0.7", "1"]
    at.query_params["lat"], at.query_params["lng"], at.query_params["z"] = "34.2", "-116.9", "11"
    at.run()
    assert "This link shows 2 service(s) from 127.0.0.1 not on the map yet" in at.info[0].value
    assert at.text_input(key="service_url").value == double.second_service_url
    at.text_input(key="username").input("user1")
    at.text_input(key="password").input("user1")
    [submit] = [b for b in at.button if b.label == "Add service"]
    submit.click()
    at.run()
    assert not at.error
    assert len(double.issued_tokens) == 1  # one sign-in for both services of the server
    assert [b.value for b in at.checkbox if b.key.startswith("s1-sublayer-")] == [True, False, False, False]
    assert [b.value for b in at.checkbox if b.key.startswith("s2-sublayer-")] == [False, False, False]
    assert at.slider(key="s1-opacity").value == 0.7
    script = " ".join(map_args(at)["script"].split())
    assert "center: [34.2, -116.9]," in script and '"zoom": 11,' in script


def test_group_layers_are_nested_and_unticking_a_group_hides_its_children(app, double):
    # Field case F13 (a): the Incidents service nests lines and polygons under "Fire response".
    sign_in(app, "user1", "user1", url=double.second_service_url)
    assert sublayer_labels(app) == [
        "Wildfire Response Points",
        "Fire response",
        "↳ Wildfire Response Lines",
        "↳ Wildfire Response Polygons",
    ]
    assert '"layers": "show:0,1,2"' in layer_options(app)
    app.checkbox(key="s1-sublayer-3").uncheck().run()
    assert '"layers": "show:0"' in layer_options(app)
    app.checkbox(key="s1-sublayer-3").check()
    app.checkbox(key="s1-sublayer-1").uncheck().run()
    assert '"layers": "show:0,2"' in layer_options(app)


def test_a_link_across_two_servers_asks_for_each_sign_in_in_turn(double, monkeypatch):
    with ArcGISDouble() as other:
        at = AppTest.from_file("../dashboard.py", default_timeout=30)
        at.context = {"url": APP_URL}
        at.query_params["service"] = [double.service_url, other.service_url]
        at.query_params["show"] = ["0,1,2", "2"]
        at.run()
        sign_in(at, "user1", "user1")
        assert "This link shows 1 service(s) from 127.0.0.1 not on the map yet" in at.info[0].value
        assert at.text_input(key="service_url").value == other.service_url  # the one still missing
        sign_in(at, "user1", "user1")
        assert not at.error and not at.info
        assert len(layer_calls(at)) == 2
        assert [b.value for b in at.checkbox if b.key.startswith("s2-sublayer-")] == [False, False, True]


def test_a_click_with_nothing_on_show_says_what_to_do(app):
    sign_in(app, "user1", "user1")
    for box in app.checkbox:
        if box.key.startswith("s1-sublayer-"):
            box.uncheck()
    click_map(app, 34.09, -116.865)
    assert "Tick a sublayer" in app.main.info[-1].value
    assert [e.label for e in app.sidebar.expander] == ["Add another service"]  # no empty legend
