"""A base for fake vendor APIs: a real HTTP server on 127.0.0.1, in a thread.

Connector tests talk HTTP to these fakes — never to a mocked client — so the SDK's client,
headers, pagination and error handling are exercised exactly as in production. A fake:

- subclasses :class:`FakeAPI` and registers routes with :meth:`FakeAPI.route`;
- reproduces the vendor's *documented* behaviour (pagination, rate limits with their
  headers, error bodies), with every limit a constructor argument, since vendors change them;
- shares a :class:`~connectors.clock.Clock` with the client under test: with a
  :class:`~connectors.clock.VirtualClock`, rate limits and ``Retry-After`` cost no real time
  and the :class:`Journal` timestamps are exactly what the client waited.

Fault injection (:meth:`FakeAPI.fail_next`) serves canned responses — a 5xx burst, a 429
with a vendor header, a malformed body, a slow answer — before the routes see the request.
Every request, faulted or not, lands in the journal.

Standard library only: integrators can build their fakes on it without extra dependencies.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from connectors.clock import SYSTEM_CLOCK, Clock

__all__ = ["FakeAPI", "FakeRequest", "FakeResponse", "Journal", "JournalEntry"]


@dataclasses.dataclass(frozen=True)
class FakeRequest:
    method: str
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]  # lower-case names
    body: bytes
    at: float  # the fake's clock, monotonic seconds
    raw_query: str = ""
    params: Mapping[str, str] = dataclasses.field(default_factory=dict)  # route groups

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclasses.dataclass
class FakeResponse:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    #: Real seconds to wait before answering (to trigger client read timeouts).
    delay: float = 0.0

    @classmethod
    def json(
        cls, data: Any, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> FakeResponse:
        return cls(
            status=status,
            body=json.dumps(data, separators=(",", ":")).encode(),
            headers={"Content-Type": "application/json; charset=utf-8", **(headers or {})},
        )

    @classmethod
    def raw_json(
        cls, body: bytes, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> FakeResponse:
        """Pre-encoded JSON (fast path for large pages)."""
        return cls(
            status=status,
            body=body,
            headers={"Content-Type": "application/json; charset=utf-8", **(headers or {})},
        )

    @classmethod
    def malformed(cls, status: int = 200) -> FakeResponse:
        """A truncated JSON body, as a proxy cutting a response short produces."""
        return cls(
            status=status,
            body=b'{"orders": [{"id": 1,',
            headers={"Content-Type": "application/json"},
        )


@dataclasses.dataclass(frozen=True)
class JournalEntry:
    method: str
    path: str
    query: Mapping[str, list[str]]
    raw_query: str
    headers: Mapping[str, str]
    body: bytes
    at: float
    status: int
    faulted: bool
    response_headers: Mapping[str, str] = dataclasses.field(default_factory=dict)


class Journal:
    """Every request the fake received, in arrival order (thread-safe)."""

    def __init__(self) -> None:
        self._entries: list[JournalEntry] = []
        self._lock = threading.Lock()

    def add(self, entry: JournalEntry) -> None:
        with self._lock:
            self._entries.append(entry)

    def entries(self, method: str | None = None, path: str | None = None) -> list[JournalEntry]:
        """Entries, optionally filtered by method and by path regex (``re.search``)."""
        with self._lock:
            entries = list(self._entries)
        if method is not None:
            entries = [e for e in entries if e.method == method]
        if path is not None:
            pattern = re.compile(path)
            entries = [e for e in entries if pattern.search(e.path)]
        return entries

    def count(self, method: str | None = None, path: str | None = None) -> int:
        return len(self.entries(method, path))

    def statuses(self, method: str | None = None, path: str | None = None) -> list[int]:
        return [e.status for e in self.entries(method, path)]

    def times(self, method: str | None = None, path: str | None = None) -> list[float]:
        return [e.at for e in self.entries(method, path)]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __iter__(self) -> Iterator[JournalEntry]:
        return iter(self.entries())

    def __len__(self) -> int:
        return self.count()


Handler = Callable[[FakeRequest], FakeResponse]


class FakeAPI:
    """Base class: routing, fault injection, journal, lifecycle.

    Use as a context manager (or call :meth:`start`/:meth:`stop`). ``url`` is the base URL.
    Subclasses override :meth:`before_route` for cross-cutting behaviour (authentication,
    rate limiting) and add routes in ``__init__``.
    """

    def __init__(self, *, clock: Clock | None = None) -> None:
        self.clock = clock or SYSTEM_CLOCK
        self.journal = Journal()
        self.lock = threading.RLock()
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self._faults: collections.deque[FakeResponse] = collections.deque()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- configuration -------------------------------------------------------------------------

    def route(self, method: str, pattern: str, handler: Handler) -> None:
        """Serve ``method`` requests whose path fully matches ``pattern`` with ``handler``;
        named groups are available as ``request.params``."""
        self._routes.append((method.upper(), re.compile(pattern), handler))

    def fail_next(self, response: FakeResponse, times: int = 1) -> None:
        """Answer the next ``times`` requests with ``response`` (queued after earlier faults)."""
        with self.lock:
            self._faults.extend(dataclasses.replace(response) for _ in range(times))

    def pending_faults(self) -> int:
        with self.lock:
            return len(self._faults)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> FakeAPI:
        if self._server is not None:
            return self
        fake = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real APIs and httpx's pool expect
            # One buffered write per response and no Nagle delay: otherwise headers and body
            # go out separately and delayed ACKs add ~40 ms to every request.
            wbufsize = -1
            disable_nagle_algorithm = True

            def _serve(self) -> None:
                fake._serve(self)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _serve

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        # A short poll interval: shutdown() waits up to one interval, once per test.
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name=f"{type(self).__name__}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("fake server not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def origin_host(self) -> str:
        """``host:port`` as clients see it (for building absolute links)."""
        return self.url.split("://", 1)[1]

    # -- request handling ----------------------------------------------------------------------

    def before_route(self, request: FakeRequest) -> FakeResponse | None:
        """Cross-cutting checks (auth, rate limits). Return a response to short-circuit."""
        return None

    def after_route(self, request: FakeRequest, response: FakeResponse) -> FakeResponse:
        """Decorate every routed response (e.g. rate-limit headers)."""
        return response

    def handle(self, request: FakeRequest) -> tuple[FakeResponse, bool]:
        with self.lock:
            if self._faults:
                return self._faults.popleft(), True
            early = self.before_route(request)
            if early is not None:
                return early, False
            for method, pattern, handler in self._routes:
                if method != request.method:
                    continue
                match = pattern.fullmatch(request.path)
                if match:
                    routed = dataclasses.replace(request, params=match.groupdict())
                    return self.after_route(routed, handler(routed)), False
            return FakeResponse.json({"errors": "Not Found"}, status=404), False

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        parts = urlsplit(handler.path)
        request = FakeRequest(
            method=handler.command,
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            raw_query=parts.query,
            headers={k.lower(): v for k, v in handler.headers.items()},
            body=body,
            at=self.clock.monotonic(),
        )
        try:
            response, faulted = self.handle(request)
        except Exception as exc:  # a bug in the fake must surface as a 500, not a hang
            response, faulted = FakeResponse.json({"errors": f"fake crashed: {exc!r}"}, 500), False
        self.journal.add(
            JournalEntry(
                method=request.method,
                path=request.path,
                query=request.query,
                raw_query=request.raw_query,
                headers=request.headers,
                body=body,
                at=request.at,
                status=response.status,
                faulted=faulted,
                response_headers=dict(response.headers),
            )
        )
        if response.delay:
            time.sleep(response.delay)
        try:
            handler.send_response(response.status)
            for name, value in response.headers.items():
                handler.send_header(name, value)
            handler.send_header("Content-Length", str(len(response.body)))
            handler.end_headers()
            if handler.command != "HEAD":
                handler.wfile.write(response.body)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (e.g. its read timeout fired during `delay`).
            handler.close_connection = True
