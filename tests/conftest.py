"""Fixtures shared by the tests: a fresh ArcGIS Server double on loopback, and app settings."""

from __future__ import annotations

import pytest

from secure_layers.client import ArcGISClient
from secure_layers.config import Settings
from tests.arcgis_double import ArcGISDouble

pytest_plugins = ["tests.reliability"]

APP_URL = "http://localhost:8501"


@pytest.fixture
def double():
    with ArcGISDouble() as server:
        yield server


@pytest.fixture
def settings() -> Settings:
    return Settings(connect_timeout=2.0, read_timeout=2.0)


@pytest.fixture
def client(settings):
    arcgis = ArcGISClient(settings, APP_URL)
    yield arcgis
    arcgis.close()
