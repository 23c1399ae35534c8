"""What a user may type as a service URL, and where credentials may travel."""

from __future__ import annotations

import pytest

from secure_layers.config import Settings
from secure_layers.errors import InsecureURL, InvalidInput, NotAMapServer, ServerNotAllowed
from secure_layers.urls import check_secure_transport, check_token_service_allowed, parse_service_url, without_secrets

ROADS = "https://gis.example.test/arcgis/rest/services/Secure/Roads/MapServer"


def test_a_pasted_url_with_token_and_format_is_normalised_and_the_user_told():
    # Field case F13 (c): the old token must never be reused, and no "/legend" lands after "?f=".
    service = parse_service_url(
        " https://GIS.example.test/arcgis/rest/services/Secure/Roads/MapServer/?f=pjson&token=OLD ", Settings()
    )
    assert service.url == ROADS
    assert service.server_root == "https://gis.example.test/arcgis"
    assert service.name == "Secure/Roads"
    assert service.operation("legend") == ROADS + "/legend"
    assert "OLD" not in repr(service)
    assert any("token pasted in the URL was removed" in notice for notice in service.notices)


def test_a_token_after_the_hash_is_dropped_and_the_user_told():
    service = parse_service_url(ROADS + "#token=OLD", Settings())
    assert service.url == ROADS and "OLD" not in repr(service)
    assert any("token pasted in the URL was removed" in notice for notice in service.notices)


def test_a_sublayer_url_shows_the_whole_mapserver():
    service = parse_service_url(ROADS + "/0", Settings())
    assert service.url == ROADS
    assert any("/0" in notice for notice in service.notices)


def test_default_ports_are_dropped_and_others_kept():
    assert parse_service_url(ROADS.replace("test/", "test:443/"), Settings()).url == ROADS
    assert parse_service_url(ROADS.replace("test/", "test:6443/"), Settings()).url.startswith(
        "https://gis.example.test:6443/arcgis/rest/services/"
    )


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("", "Enter the MapServer URL"),
        ("   ", "Enter the MapServer URL"),
        ("wildfire map", "is not a web address"),
        ("ftp://gis.example.test/arcgis/rest/services/Roads/MapServer", "is not a web address"),
        ("https://gis.example.test:http/arcgis/rest/services/Roads/MapServer", "not a valid web address"),
        ("https://gis.example.test/maps/roads", "is not an ArcGIS REST service URL"),
        ("https://bob:pw@gis.example.test/arcgis/rest/services/Roads/MapServer", "were taken out of the URL"),
        ("ftp://bob:pw@gis.example.test/arcgis/rest/services/Roads/MapServer", "were taken out of the URL"),
        ("bob:pw@gis.example.test/arcgis/rest/services/Roads/MapServer", "were taken out of the URL"),
        ("//bob:pw@gis.example.test/arcgis/rest/services/Roads/MapServer", "were taken out of the URL"),
        ("https://bob:p/w@gis.example.test/arcgis/services/Roads/MapServer", "were taken out of the URL"),  # no /rest/
        ("https://bob:p?w@gis.example.test/arcgis/services/Roads/MapServer", "were taken out of the URL"),
        ("https://bob:p#w@gis.example.test/arcgis/services/Roads/MapServer", "were taken out of the URL"),
        ("https://bob:p/rest/w@gis.example.test/arcgis/rest/services/Roads/MapServer", "were taken out of the URL"),
        ("https://bob:8443@gis.example.test/arcgis/rest/services/Roads/MapServer", "were taken out of the URL"),
        ("https://bob:p/w@gis.example.test/arcgis/rest/services/Roads/MapServer", "were taken out of the URL"),
        ("https://bob:p?w@gis.example.test/arcgis/rest/services/Roads/MapServer", "were taken out of the URL"),
        ("https://bob:p#w@gis.example.test/arcgis/rest/services/Roads/MapServer", "were taken out of the URL"),
        ("http://[::1/arcgis/rest/services/Roads/MapServer?token=pw", "not a valid web address"),
        ("https://" + "a" * 64 + ".example.test/arcgis/rest/services/Roads/MapServer", "not a valid server name"),
        ("https://gis example.test/arcgis/rest/services/Roads/MapServer", "not a valid server name"),
        ("https://gis..example.test/arcgis/rest/services/Roads/MapServer", "not a valid server name"),
        ("https://-gis.example.test/arcgis/rest/services/Roads/MapServer", "not a valid server name"),
    ],
)
def test_unusable_input_says_what_to_fix(typed, expected):
    with pytest.raises(InvalidInput, match=expected) as raised:
        parse_service_url(typed, Settings())
    assert "pw" not in str(raised.value)


@pytest.mark.parametrize(
    "host", ["gis.example.test", "GIS-01.example.test", "arcgis_prod", "münchen.example", "10.0.0.7", "[fd00::7]"]
)
def test_real_server_names_are_accepted(host):
    assert parse_service_url(f"https://{host}/arcgis/rest/services/Roads/MapServer", Settings()).name == "Roads"


@pytest.mark.parametrize(
    ("typed", "shown_back"),
    [
        (ROADS + "?token=OLD", ROADS),
        (ROADS + "?f=pjson&TOKEN=OLD", ROADS + "?f=pjson"),
        (ROADS + "?token=OLD&f=pjson", ROADS + "?f=pjson"),
        (ROADS + "#token=OLD", ROADS),
        ("http://[::1/arcgis?token=OLD", "http://[::1/arcgis"),  # even what urlsplit refuses
        (ROADS + "?mytoken=kept", ROADS + "?mytoken=kept"),
        (ROADS.replace("https://", "https://bob:OLD@"), ROADS),
        (ROADS.replace("https://", "//bob:OLD@"), ROADS.replace("https://", "//")),
        (ROADS.replace("https://", "https://bob:O/L?D#x@"), ROADS),  # a password may hold / ? #
        (ROADS + "?f=json&contact=gis@example.test", ROADS + "?f=json&contact=gis@example.test"),
        (
            ROADS.replace("test/", "test:6443/") + "?contact=gis@example.test",  # a port is not a password
            ROADS.replace("test/", "test:6443/") + "?contact=gis@example.test",
        ),
        (
            "bob:O//L@gis.example.test/arcgis/rest/services/Roads/MapServer",
            "gis.example.test/arcgis/rest/services/Roads/MapServer",
        ),
        (
            "https://www.arcgis.com/home/item.html?id=abc123&owner=bob@example.test",
            "https://www.arcgis.com/home/item.html?id=abc123&owner=bob@example.test",
        ),
    ],
)
def test_what_is_shown_back_of_a_typed_url_holds_no_token_or_password(typed, shown_back):
    assert without_secrets(typed) == shown_back


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("https://gis.example.test/arcgis/rest/services/Secure/Roads/FeatureServer", "is a FeatureServer"),
        ("https://gis.example.test/arcgis/rest/services/Elevation/ImageServer/", "is an ImageServer"),
        ("https://gis.example.test/arcgis/rest/services", "the services directory"),
        ("https://gis.example.test/arcgis/rest/services/Secure", "the folder “Secure”"),
    ],
)
def test_other_services_are_refused_with_the_reason(url, kind):
    with pytest.raises(NotAMapServer, match=kind):
        parse_service_url(url, Settings())


def test_plain_http_to_a_remote_host_is_refused_with_the_operator_setting_named():
    # Field case F04: no password or token ever goes to an http:// URL off this machine.
    with pytest.raises(InsecureURL, match="SECURE_LAYERS_ALLOW_HTTP"):
        parse_service_url(ROADS.replace("https://", "http://"), Settings())


def test_plain_http_is_allowed_to_loopback_or_by_operator_opt_in():
    for host in ("127.0.0.1:8090", "localhost", "[::1]:8090"):
        check_secure_transport(f"http://{host}/arcgis/tokens/generateToken", Settings())
    check_secure_transport("http://gis.example.test/arcgis/tokens/generateToken", Settings(allow_http=True))


def test_an_allow_list_entry_may_be_a_folder_or_the_service_itself():
    for entry in ("https://gis.example.test/arcgis/rest/services/Secure", ROADS):
        assert parse_service_url(ROADS, Settings(allowed_servers=(entry,))).url == ROADS


def test_a_url_copied_from_a_message_with_its_zero_width_spaces_still_works():
    # Messages break addresses with zero-width spaces so Markdown does not link them.
    assert parse_service_url(ROADS.replace("https://", "https:\u200b//"), Settings()).url == ROADS


@pytest.mark.parametrize(
    "token_url",
    [
        "https://gis.example.test:443/arcgis/tokens/generateToken",  # the server's own, default port spelt out
        "https://gis.example.test/portal/sharing/rest/generateToken",  # a portal on the same machine
        "https://portal.example.test/portal/sharing/rest/generateToken",  # listed by its host
    ],
)
def test_a_token_service_on_the_same_server_or_on_the_list_is_used(token_url):
    settings = Settings(allowed_servers=("https://gis.example.test/arcgis/rest/services", "portal.example.test"))
    check_token_service_allowed(token_url, parse_service_url(ROADS, settings), settings)


def test_a_token_service_elsewhere_is_refused_by_its_full_address():
    settings = Settings(allowed_servers=("https://gis.example.test/arcgis/rest/services",))
    with pytest.raises(ServerNotAllowed, match="signs in through https://gis.example.test:8443/arcgis/tokens/gen"):
        check_token_service_allowed(
            "https://gis.example.test:8443/arcgis/tokens/generateToken", parse_service_url(ROADS, settings), settings
        )


def test_a_portal_item_url_is_not_mistaken_for_one_with_a_password():
    with pytest.raises(InvalidInput, match="is not an ArcGIS REST service URL"):
        parse_service_url("https://www.arcgis.com/home/item.html?id=abc123&owner=bob@example.test", Settings())


def test_the_operator_allow_list_limits_which_servers_can_be_added():
    settings = Settings(allowed_servers=("https://gis.example.test/arcgis", "maps.example.org"))
    assert parse_service_url(ROADS, settings).url == ROADS
    assert parse_service_url("https://maps.example.org/server/rest/services/A/MapServer", settings)
    with pytest.raises(ServerNotAllowed, match="other.example.test is not one of them"):
        parse_service_url("https://other.example.test/arcgis/rest/services/A/MapServer", settings)
    with pytest.raises(ServerNotAllowed):
        parse_service_url("https://gis.example.test/arcgis2/rest/services/A/MapServer", settings)


def test_a_long_tail_after_mapserver_is_shortened_in_the_notice():
    service = parse_service_url(ROADS + "/" + "B" * 5000, Settings())
    assert service.url == ROADS
    assert max(len(notice) for notice in service.notices) < 200
