"""A strict local ArcGIS Server double for tests and offline demos (see server.ArcGISDouble)."""

from .features import (
    CONTAINMENT_LINE_COLOUR,
    FEATURES,
    FIRE_PERIMETER_FILL,
    FIRE_PERIMETER_OUTLINE,
    POINT_COLOUR,
    PROBES,
    Feature,
    pixel_for,
    render_export,
)
from .server import ArcGISDouble
from .state import DoubleSettings, RecordedRequest
from .tokens import USERS

__all__ = [
    "CONTAINMENT_LINE_COLOUR",
    "FEATURES",
    "FIRE_PERIMETER_FILL",
    "FIRE_PERIMETER_OUTLINE",
    "POINT_COLOUR",
    "PROBES",
    "USERS",
    "ArcGISDouble",
    "DoubleSettings",
    "Feature",
    "RecordedRequest",
    "pixel_for",
    "render_export",
]
