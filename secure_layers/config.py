"""The operator's settings: read once from the environment and `st.secrets`, never from users.

Environment variables win over secrets, so a deployment can override a shared secrets file.
Nothing here is a user secret; passwords and tokens never pass through this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SAMPLE_SERVICE_URL = "https://sampleserver6.arcgisonline.com/arcgis/rest/services/Wildfire_secure_ac/MapServer"
MAP_CENTER = (34.089, -116.865)
MAP_ZOOM = 9

_PREFIX = "SECURE_LAYERS_"
_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    """What the operator decides; the defaults are the safe choice."""

    default_service_url: str = SAMPLE_SERVICE_URL
    # Servers users may add: URL prefixes ("https://gis.example.org/arcgis") or host names.
    # Empty means any server.
    allowed_servers: tuple[str, ...] = ()
    # Plain http is always allowed to loopback; anywhere else only when this is on.
    allow_http: bool = False
    # A CA bundle (PEM file) for servers signed by a private CA; TLS is always verified.
    ca_bundle: str | None = None
    # The Referer the token is bound to; None means the app's own URL.
    referer: str | None = None
    token_minutes: int = 60
    connect_timeout: float = 5.0
    read_timeout: float = 20.0
    # "header" sends X-Esri-Authorization; "query" appends token= for old servers.
    token_transport: str = "header"  # noqa: S105 - a mode name, not a secret

    @property
    def timeout(self) -> tuple[float, float]:
        return (self.connect_timeout, self.read_timeout)

    @property
    def verify(self) -> str | bool:
        return self.ca_bundle or True


def load_settings(environ: Mapping[str, str], secrets: Mapping[str, Any] | None = None) -> Settings:
    """Merge `[secure_layers]` from secrets with `SECURE_LAYERS_*` environment variables."""
    merged: dict[str, Any] = dict((secrets or {}).get("secure_layers", {}))
    for key, value in environ.items():
        if key.startswith(_PREFIX):
            merged[key[len(_PREFIX) :].lower()] = value
    if "service_url" in merged:
        merged["default_service_url"] = merged.pop("service_url")
    return Settings(
        default_service_url=str(merged.get("default_service_url") or SAMPLE_SERVICE_URL),
        allowed_servers=_as_tuple(merged.get("allowed_servers")),
        allow_http=_as_bool(merged.get("allow_http", False)),
        ca_bundle=merged.get("ca_bundle") or None,
        referer=merged.get("referer") or None,
        token_minutes=int(merged.get("token_minutes", 60)),
        connect_timeout=float(merged.get("connect_timeout", 5.0)),
        read_timeout=float(merged.get("read_timeout", 20.0)),
        token_transport=_transport(merged.get("token_transport", "header")),
    )


def _as_tuple(value: Any) -> tuple[str, ...]:
    if not value:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(str(item).strip() for item in items if str(item).strip())


def _as_bool(value: Any) -> bool:
    return value is True or str(value).strip().lower() in _TRUE


def _transport(value: Any) -> str:
    text = str(value).strip().lower()
    if text not in {"header", "query"}:
        raise ValueError("SECURE_LAYERS_TOKEN_TRANSPORT must be 'header' or 'query'")
    return text
