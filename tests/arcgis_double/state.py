"""The double's mutable state: settings, clock, issued tokens, recorded requests, faults.

Everything here is shared between the HTTP handler threads and the test thread, so
each collection sits behind one lock; readers get copies.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field


@dataclass
class DoubleSettings:
    """Knobs tests flip between requests."""

    require_ssl: bool = False
    referer_rule: str = "prefix"  # "prefix" | "exact" | "ignore"
    short_timeout: int = 60  # minutes
    long_timeout: int = 1440  # minutes
    advertised_token_path: str = "/arcgis/tokens/generateToken"
    token_based_security: bool = True
    control_api: bool = False


@dataclass(frozen=True)
class RecordedRequest:
    """One request as received, plus what the double answered."""

    method: str
    path: str
    query: dict[str, list[str]]
    raw_query: str
    form: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    status: int
    error_code: int | None

    def to_json(self) -> dict:
        """JSON-safe form for the control API (body as a latin-1 string)."""
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "raw_query": self.raw_query,
            "form": self.form,
            "headers": self.headers,
            "body": self.body.decode("latin-1"),
            "status": self.status,
            "error_code": self.error_code,
        }


@dataclass(frozen=True)
class IssuedToken:
    user: str
    expires: float  # epoch seconds on the double's clock
    client: str | None  # "referer" | "requestip" | "ip" | None
    referer: str | None
    ip: str | None


@dataclass
class CannedReply:
    path_suffix: str
    body: bytes
    content_type: str
    status: int
    remaining: int
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Stall:
    path_suffix: str
    seconds: float
    remaining: int
    trickle: bool = False  # send the headers at once, then one byte of the body every `seconds`


@dataclass(frozen=True)
class OutputImage:
    body: bytes
    content_type: str
    created: float


OUTPUT_LIFETIME_SECONDS = 600.0


class DoubleState:
    """Thread-safe store behind ArcGISDouble."""

    def __init__(self, settings: DoubleSettings | None = None) -> None:
        self.settings = settings or DoubleSettings()
        self._lock = threading.Lock()
        self._offset = 0.0
        self._tokens: dict[str, IssuedToken] = {}
        self._issued: list[str] = []
        self._requests: list[RecordedRequest] = []
        self._canned: list[CannedReply] = []
        self._stalls: list[Stall] = []
        self._outputs: dict[str, OutputImage] = {}

    # clock
    def now(self) -> float:
        with self._lock:
            return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset += float(seconds)

    # tokens
    def add_token(self, token: str, issued: IssuedToken) -> None:
        with self._lock:
            self._tokens[token] = issued
            self._issued.append(token)

    def lookup_token(self, token: str) -> IssuedToken | None:
        with self._lock:
            return self._tokens.get(token)

    def revoke_all_tokens(self) -> None:
        with self._lock:
            self._tokens.clear()

    @property
    def issued_tokens(self) -> list[str]:
        with self._lock:
            return list(self._issued)

    # recorded requests
    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def take_requests(self) -> list[RecordedRequest]:
        """The requests recorded so far, forgotten in the same step: none is lost or seen twice."""
        with self._lock:
            taken, self._requests = self._requests, []
            return taken

    # faults
    def add_canned(self, reply: CannedReply) -> None:
        with self._lock:
            self._canned.append(reply)

    def take_canned(self, path: str) -> CannedReply | None:
        with self._lock:
            return _take(self._canned, path)

    def add_stall(self, stall: Stall) -> None:
        with self._lock:
            self._stalls.append(stall)

    def take_stall(self, path: str) -> Stall | None:
        with self._lock:
            return _take(self._stalls, path)

    # export output directory
    def store_output(self, name: str, body: bytes, content_type: str) -> None:
        created = self.now()
        with self._lock:
            self._outputs[name] = OutputImage(body, content_type, created)

    def fetch_output(self, name: str) -> OutputImage | None:
        now = self.now()
        with self._lock:
            image = self._outputs.get(name)
            if image and now - image.created > OUTPUT_LIFETIME_SECONDS:
                del self._outputs[name]
                return None
            return image


def _take(entries: list, path: str):
    """Use up one match (first registered first) for `path`; drop it when spent."""
    for entry in entries:
        if path.endswith(entry.path_suffix):
            entry.remaining -= 1
            if entry.remaining <= 0:
                entries.remove(entry)
            return entry
    return None


def error_code_of(body: bytes) -> int | None:
    """The ArcGIS error code in a JSON body (either envelope), else None."""
    try:
        obj = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(obj, dict):
        return None
    code = obj["error"].get("code") if isinstance(obj.get("error"), dict) else obj.get("code")
    try:
        return int(code) if code is not None else None
    except (TypeError, ValueError):
        return None
