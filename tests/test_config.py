"""Operator settings from the environment and st.secrets."""

from __future__ import annotations

import pytest

from secure_layers.config import SAMPLE_SERVICE_URL, load_settings


def test_defaults_are_the_safe_choice():
    settings = load_settings({})
    assert settings.default_service_url == SAMPLE_SERVICE_URL
    assert (settings.allow_http, settings.verify, settings.token_transport) == (False, True, "header")
    assert settings.timeout == (5.0, 20.0)


def test_environment_wins_over_secrets():
    secrets = {
        "secure_layers": {
            "service_url": "https://a.example.test/arcgis/rest/services/A/MapServer",
            "allowed_servers": ["a.example.test", "b.example.test"],
            "token_minutes": 30,
        }
    }
    environ = {
        "SECURE_LAYERS_SERVICE_URL": "https://b.example.test/arcgis/rest/services/B/MapServer",
        "SECURE_LAYERS_ALLOW_HTTP": "yes",
        "SECURE_LAYERS_CA_BUNDLE": "/etc/ssl/private-ca.pem",
        "UNRELATED": "x",
    }
    settings = load_settings(environ, secrets)
    assert settings.default_service_url.startswith("https://b.example.test")
    assert settings.allowed_servers == ("a.example.test", "b.example.test")
    assert settings.allow_http is True
    assert settings.verify == "/etc/ssl/private-ca.pem"
    assert settings.token_minutes == 30


def test_allowed_servers_from_the_environment_are_comma_separated():
    settings = load_settings({"SECURE_LAYERS_ALLOWED_SERVERS": " gis.example.test , https://maps.example.org/arcgis "})
    assert settings.allowed_servers == ("gis.example.test", "https://maps.example.org/arcgis")


def test_an_unknown_token_transport_is_refused():
    with pytest.raises(ValueError, match="header' or 'query"):
        load_settings({"SECURE_LAYERS_TOKEN_TRANSPORT": "cookie"})
