"""Request/reply value types and the ArcGIS reply builders (JSON, error envelopes, HTML)."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field

JSON_TYPE = "application/json; charset=utf-8"
TEXT_TYPE = "text/plain; charset=utf-8"
HTML_TYPE = "text/html; charset=utf-8"

INVALID_PARAMS = "Invalid or missing input parameters."


@dataclass(frozen=True)
class Incoming:
    """A parsed HTTP request as the router sees it."""

    method: str
    path: str  # percent-decoded, no query
    query: dict[str, list[str]]
    form: dict[str, list[str]]
    headers: dict[str, str]  # keys lower-cased
    client_ip: str

    def param(self, name: str) -> str | None:
        """First value of a parameter, body before query (both are accepted)."""
        for source in (self.form, self.query):
            if name in source:
                return source[name][0]
        return None

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def f(self) -> str:
        return (self.param("f") or "").lower()


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str
    error_code: int | None = None
    headers: dict[str, str] = field(default_factory=dict)


def json_reply(obj: dict, f: str = "json") -> Reply:
    indent = 2 if f == "pjson" else None
    separators = None if indent else (",", ":")
    return Reply(200, json.dumps(obj, indent=indent, separators=separators).encode(), JSON_TYPE)


def error_reply(code: int, message: str, details: list[str] | None = None, f: str = "json", **extra) -> Reply:
    """HTTP 200 + ArcGIS envelope; text/plain for image requests like the real server."""
    envelope = {"error": {"code": code, **extra, "message": message, "details": details or []}}
    reply = json_reply(envelope, f)
    content_type = TEXT_TYPE if f == "image" else JSON_TYPE
    return Reply(200, reply.body, content_type, error_code=code)


def invalid_params(detail: str, f: str) -> Reply:
    return error_reply(400, INVALID_PARAMS, [detail], f)


def html_reply(title: str, rows: list[str], status: int = 200) -> Reply:
    items = "".join(f"<li>{html.escape(row)}</li>" for row in rows)
    page = (
        f"<!DOCTYPE html><html><head><title>{html.escape(title)}</title></head>"
        f"<body><h2>{html.escape(title)}</h2><ul>{items}</ul></body></html>"
    )
    return Reply(status, page.encode(), HTML_TYPE)


def not_found_html() -> Reply:
    return html_reply("Error: 404 Not Found", ["The requested resource was not found."], 404)
