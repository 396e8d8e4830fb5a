"""The SDK's HTTP client: one way for every connector to talk to a vendor politely.

``http.client(...)`` (an :class:`HttpContext` is passed to ``keel_connector_factory``)
returns an :class:`ApiClient` wrapping ``httpx.Client`` with:

- timeouts on every phase (connect, read, write, pool);
- bounded retries with exponential backoff and full jitter for 5xx, 408/425, timeouts and
  dropped connections — only for requests that are safe to repeat (GET/HEAD/PUT/DELETE, or
  a POST the caller marks idempotent, e.g. because it carries an idempotency key);
- 429 handling that honours ``Retry-After`` (seconds or HTTP date) and vendor headers
  (``x-retry-after``); no request leaves this client before the announced time, and waits
  longer than ``RetryPolicy.max_retry_after`` are handed back to the caller as
  :class:`~connectors.errors.RateLimited` instead of blocking a worker;
- optional client-side pacing (:mod:`connectors.ratelimit`) fed by the vendor's budget
  headers, so 429s are the exception;
- 4xx never retried: 401/403 raise :class:`~connectors.errors.AuthError` and make the client
  refuse every later request without sending it (no retry storm on revoked credentials),
  404 raises :class:`~connectors.errors.NotFoundError`, the rest
  :class:`~connectors.errors.PermanentError`;
- request logging with credentials redacted: sensitive headers, sensitive query parameters
  and every configured secret value (raw and URL-encoded) wherever it appears — and httpx's
  and httpcore's own request logs, which are not redacted, suppressed;
- an egress policy (https only, no private or loopback addresses unless allowed) and
  same-origin checks on absolute URLs taken from responses (pagination links), so a
  connection's settings cannot point our workers, or its token, somewhere else.

Time comes from an injectable :class:`~connectors.clock.Clock`, so tests drive backoff and
``Retry-After`` with a virtual clock and assert on exact delays.
"""

from __future__ import annotations

import dataclasses
import email.utils
import ipaddress
import json
import logging
import random
import re
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, urlencode, urlsplit, urlunsplit

import httpx

from connectors import __version__
from connectors.clock import SYSTEM_CLOCK, Clock
from connectors.errors import (
    AuthError,
    ConfigurationError,
    NotFoundError,
    PermanentError,
    RateLimited,
    TransientError,
)
from connectors.ratelimit import RateLimiter

__all__ = [
    "ApiClient",
    "EgressPolicy",
    "HttpContext",
    "JsonResponse",
    "Redactor",
    "RetryPolicy",
    "parse_link_header",
    "parse_retry_after",
]

DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=30.0, write=30.0, pool=5.0)
REDACTED = "[REDACTED]"

#: Headers whose values are never logged, whatever the connector configures.
SENSITIVE_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-shopify-access-token",
        "x-api-key",
        "api-key",
        "x-auth-token",
        "x-shopify-hmac-sha256",
    }
)
_SENSITIVE_PARAM = re.compile(
    r"(token|secret|password|passwd|signature|sig|api[_-]?key|apikey|key|auth|code|credential)",
    re.IGNORECASE,
)
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
_RETRY_AFTER_HEADERS = ("retry-after", "x-retry-after")
_LINK = re.compile(r"<([^>]*)>\s*((?:;\s*[^;,]+)*)")
_REL = re.compile(r'rel\s*=\s*"?([^";,]+)"?', re.IGNORECASE)


@dataclasses.dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try. ``max_attempts`` counts the first attempt."""

    max_attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 30.0
    #: A Retry-After longer than this is not waited for in-process: RateLimited is raised
    #: so the task can be rescheduled instead of holding a worker.
    max_retry_after: float = 120.0
    retry_statuses: frozenset[int] = frozenset({408, 425, 429, 500, 502, 503, 504})

    def backoff_cap(self, attempt: int) -> float:
        """Upper bound of the delay after failed attempt ``attempt`` (1-based): 1, 2, 4, ..."""
        return min(self.max_delay, self.base_delay * 2 ** (attempt - 1))


@dataclasses.dataclass(frozen=True, slots=True)
class EgressPolicy:
    """Where connectors may send requests.

    The default (https, public addresses only) is for production, where a brand's settings
    choose the host. Tests and the fake servers use :meth:`permissive`. Addresses are checked
    when a client is built; DNS answers that change later are the network layer's to police
    (an egress proxy), not this check's.
    """

    allow_http: bool = False
    allow_private_networks: bool = False

    @classmethod
    def permissive(cls) -> EgressPolicy:
        return cls(allow_http=True, allow_private_networks=True)

    def check(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ConfigurationError(f"not an absolute http(s) URL: {parts.scheme}://…")
        if parts.scheme == "http" and not self.allow_http:
            raise ConfigurationError("plain http is not allowed; use https")
        if self.allow_private_networks:
            return
        for address in _addresses(parts.hostname):
            if not address.is_global:
                raise ConfigurationError(
                    f"{parts.hostname} resolves to a non-public address; refused by egress policy"
                )


def _addresses(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        raise TransientError(f"cannot resolve {host}: {exc.strerror or exc}") from None
    return [ipaddress.ip_address(info[4][0]) for info in infos]


class Redactor:
    """Removes credentials from anything about to be logged or put in an error message."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        values: set[str] = set()
        for secret in secrets:
            # Very short values would redact ordinary text; credentials are never that short.
            if secret and len(secret) >= 6:
                values.update({secret, quote(secret, safe=""), quote_plus(secret)})
        # Longest first, so a secret containing another is replaced whole.
        self._values = sorted(values, key=len, reverse=True)

    def text(self, value: str) -> str:
        for secret in self._values:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value

    def url(self, url: str | httpx.URL) -> str:
        parts = urlsplit(str(url))
        if parts.query:
            query = urlencode(
                [
                    (k, REDACTED if _SENSITIVE_PARAM.search(k) else v)
                    for k, v in parse_qsl(parts.query, keep_blank_values=True)
                ],
                safe="[]",
            )
            parts = parts._replace(query=query)
        if parts.password or parts.username:
            parts = parts._replace(netloc=f"{REDACTED}@{parts.hostname}")
        return self.text(urlunsplit(parts))

    def headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        return {
            k: (REDACTED if k.lower() in SENSITIVE_HEADERS else self.text(v))
            for k, v in headers.items()
        }


def parse_retry_after(headers: Mapping[str, str], now: Callable[[], Any]) -> float | None:
    """Seconds to wait according to ``Retry-After`` (seconds or HTTP date) or
    ``x-retry-after``; ``None`` when absent or unreadable."""
    for name in _RETRY_AFTER_HEADERS:
        value = headers.get(name)
        if not value:
            continue
        value = value.strip()
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            continue
        if when.tzinfo is None:
            continue
        return max(0.0, (when - now()).total_seconds())
    return None


def parse_link_header(value: str | None) -> dict[str, str]:
    """``Link`` header → {rel: url}; URLs are returned exactly as sent (use them verbatim)."""
    links: dict[str, str] = {}
    if not value:
        return links
    for match in _LINK.finditer(value):
        url, params = match.group(1), match.group(2)
        rel = _REL.search(params or "")
        if rel:
            for name in rel.group(1).split():
                links.setdefault(name.lower(), url)
    return links


class _SuppressTransportLogs(logging.Filter):
    """Drops httpx's and httpcore's own request logs.

    httpx logs every request URL at INFO — query strings included, credentials and all —
    and httpcore's DEBUG traces include response headers (``Set-Cookie``). The SDK logs a
    redacted line per request on ``connectors.http`` instead.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return False


_TRANSPORT_LOGGERS = (
    "httpx",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
)
_transport_filter = _SuppressTransportLogs()
_transport_filter_lock = threading.Lock()


def _install_transport_log_filter() -> None:
    with _transport_filter_lock:
        for name in _TRANSPORT_LOGGERS:
            logger = logging.getLogger(name)
            if _transport_filter not in logger.filters:
                logger.addFilter(_transport_filter)


@dataclasses.dataclass(frozen=True, slots=True)
class JsonResponse:
    """A parsed JSON body with the response it came from (for headers such as ``Link``)."""

    data: Any
    response: httpx.Response


class _MalformedBody(Exception):
    pass


@dataclasses.dataclass(frozen=True)
class HttpContext:
    """The platform's HTTP configuration, handed to ``keel_connector_factory`` as ``http``.

    ``log_context`` (e.g. brand and connection id) is attached to every log record;
    ``secrets`` are extra values to redact beyond the ones each client is given.
    """

    clock: Clock = SYSTEM_CLOCK
    timeout: httpx.Timeout = dataclasses.field(default_factory=lambda: DEFAULT_TIMEOUT)
    retry: RetryPolicy = RetryPolicy()
    egress: EgressPolicy = EgressPolicy()
    log_context: Mapping[str, str] = dataclasses.field(default_factory=dict)
    secrets: tuple[str, ...] = ()
    user_agent: str = f"Keel-Connectors/{__version__}"
    logger_name: str = "connectors.http"
    #: Jitter source ``uniform(a, b)``; tests pass a seeded ``random.Random().uniform``.
    uniform: Callable[[float, float], float] = random.uniform
    #: An httpx transport (a proxy, a custom TLS setup). Not for mocking: fakes are servers.
    transport: httpx.BaseTransport | None = None

    def client(
        self,
        *,
        name: str,
        base_url: str,
        headers: Mapping[str, str] | None = None,
        secrets: Iterable[str] = (),
        limiter: RateLimiter | None = None,
        retry: RetryPolicy | None = None,
        timeout: httpx.Timeout | None = None,
    ) -> ApiClient:
        """A client for one vendor API. ``secrets``: credential values this client sends."""
        return ApiClient(
            name=name,
            base_url=base_url,
            headers=headers or {},
            secrets=(*self.secrets, *secrets),
            limiter=limiter,
            retry=retry or self.retry,
            timeout=timeout or self.timeout,
            context=self,
        )


class ApiClient:
    """A polite, redacting HTTP client for one vendor API (see the module docstring).

    Thread-safe: the gate, the limiter and httpx's connection pool are shared safely.
    """

    def __init__(
        self,
        *,
        name: str,
        base_url: str,
        headers: Mapping[str, str],
        secrets: Iterable[str],
        limiter: RateLimiter | None,
        retry: RetryPolicy,
        timeout: httpx.Timeout,
        context: HttpContext,
    ) -> None:
        context.egress.check(base_url)
        _install_transport_log_filter()
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.limiter = limiter
        self.retry = retry
        self.clock = context.clock
        self._uniform = context.uniform
        self.redactor = Redactor(secrets)
        self._log = logging.LoggerAdapter(
            logging.getLogger(context.logger_name),
            {"connector": name, **dict(context.log_context)},
        )
        origin = urlsplit(self.base_url)
        self._origin = (origin.scheme, origin.netloc.lower())
        self._gate_lock = threading.Lock()
        self._not_before = 0.0
        self._auth_failure: str | None = None
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"User-Agent": context.user_agent, **headers},
            timeout=timeout,
            follow_redirects=False,
            transport=context.transport,
        )

    # -- public API ---------------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
    ) -> httpx.Response:
        """Send a request with the retry policy; return a 2xx response or raise.

        ``url`` is a path relative to the base URL, or an absolute URL on the same origin
        (as found in ``Link`` headers — sent verbatim). ``idempotent`` overrides the
        method-based default: mark a POST idempotent only when the vendor dedupes it.
        """
        return self._send(method, url, params, json_body, content, headers, idempotent, False)[0]

    def request_json(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
    ) -> JsonResponse:
        """Like :meth:`request`, and parse the body as JSON. A malformed body counts as a
        transient failure (retried when the request is safe to repeat)."""
        response, data = self._send(method, url, params, json_body, None, headers, idempotent, True)
        return JsonResponse(data=data, response=response)

    # -- internals ----------------------------------------------------------------------------

    def _check_origin(self, url: str) -> None:
        if "://" not in url:
            return
        parts = urlsplit(url)
        if (parts.scheme, parts.netloc.lower()) != self._origin:
            # A pagination link pointing elsewhere must not receive our credentials.
            raise PermanentError(
                f"{self.name}: refusing to follow a URL on another origin "
                f"({parts.scheme}://{parts.hostname})"
            )

    def _wait_turn(self) -> None:
        while True:
            with self._gate_lock:
                gate = self._not_before - self.clock.monotonic()
            if gate <= 0:
                break
            self.clock.sleep(gate)
        if self.limiter is not None:
            wait = self.limiter.reserve(self.clock.monotonic())
            if wait > 0:
                self.clock.sleep(wait)

    def _close_gate(self, seconds: float) -> None:
        with self._gate_lock:
            self._not_before = max(self._not_before, self.clock.monotonic() + seconds)

    def _jitter(self, attempt: int) -> float:
        return self._uniform(0.0, self.retry.backoff_cap(attempt))

    def _send(
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | None,
        json_body: Any,
        content: bytes | None,
        headers: Mapping[str, str] | None,
        idempotent: bool | None,
        expect_json: bool,
    ) -> tuple[httpx.Response, Any]:
        method = method.upper()
        if self._auth_failure is not None:
            # Credentials already failed on this client: don't ask the vendor again.
            raise AuthError(self._auth_failure, status=None)
        self._check_origin(url)
        safe = method in _SAFE_METHODS if idempotent is None else idempotent
        attempt = 0
        while True:
            attempt += 1
            last = attempt >= self.retry.max_attempts
            self._wait_turn()
            started = self.clock.monotonic()
            try:
                response = self._http.request(
                    method,
                    url,
                    params=params,
                    json=json_body,
                    content=content,
                    headers=headers,
                )
            except httpx.TransportError as exc:
                if self.limiter is not None:
                    self.limiter.release()
                # Nothing reached the server when the connection could not be made.
                unsent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
                unsent = unsent or isinstance(exc, httpx.PoolTimeout)
                reason = f"{type(exc).__name__}"
                if last or not (safe or unsent):
                    self._log.warning(
                        "%s %s failed: %s (attempt %d, giving up)",
                        method,
                        self.redactor.url(self._display(url, params)),
                        reason,
                        attempt,
                    )
                    raise TransientError(f"{self.name}: {method} failed: {reason}") from None
                self._retry_later(method, url, params, reason, attempt, None)
                continue
            now = self.clock.monotonic()
            if self.limiter is not None:
                self.limiter.observe(response, now)
            status = response.status_code
            self._log_response(method, url, params, response, attempt, now - started)

            if 200 <= status < 300:
                if not expect_json:
                    return response, None
                try:
                    return response, self._json(response)
                except _MalformedBody:
                    if last or not safe:
                        raise TransientError(
                            f"{self.name}: malformed JSON in the response to {method}",
                            status=status,
                        ) from None
                    self._retry_later(method, url, params, "malformed JSON", attempt, None)
                    continue

            if status in (401, 403):
                detail = self._excerpt(response)
                self._auth_failure = f"{self.name}: credentials rejected ({status})"
                raise AuthError(f"{self._auth_failure}: {detail}", status=status)

            if status in self.retry.retry_statuses:
                retry_after = parse_retry_after(response.headers, self.clock.now)
                if status == 429 and self.limiter is not None:
                    self.limiter.penalize(now, retry_after)
                if retry_after is not None:
                    self._close_gate(retry_after)
                # A 429 was refused before processing, so it is always safe to repeat;
                # a 5xx on a non-idempotent request may have been applied.
                may_repeat = status == 429 or safe
                too_long = retry_after is not None and retry_after > self.retry.max_retry_after
                if last or not may_repeat or too_long:
                    message = f"{self.name}: {method} answered {status}"
                    if status == 429:
                        raise RateLimited(message, retry_after=retry_after, status=status)
                    raise TransientError(message, status=status, retry_after=retry_after)
                self._retry_later(method, url, params, str(status), attempt, retry_after)
                continue

            detail = self._excerpt(response)
            message = f"{self.name}: {method} answered {status}: {detail}"
            if status == 404:
                raise NotFoundError(message, status=status, detail=detail)
            raise PermanentError(message, status=status, detail=detail)

    def _retry_later(
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | None,
        reason: str,
        attempt: int,
        retry_after: float | None,
    ) -> None:
        # With retry_after the gate (already closed until then) does the waiting, for every
        # thread using this client; otherwise back off with full jitter.
        delay = retry_after if retry_after is not None else self._jitter(attempt)
        self._log.warning(
            "%s %s: %s; retry %d/%d in %.2fs",
            method,
            self.redactor.url(self._display(url, params)),
            reason,
            attempt,
            self.retry.max_attempts - 1,
            delay,
        )
        if retry_after is None:
            self.clock.sleep(delay)

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        try:
            return json.loads(response.content)
        except ValueError:
            raise _MalformedBody from None

    def _excerpt(self, response: httpx.Response, limit: int = 300) -> str:
        text = response.text[:limit].replace("\n", " ")
        return self.redactor.text(text)

    def _display(self, url: str, params: Mapping[str, Any] | None) -> str:
        if not params:
            return url
        return f"{url}?{urlencode([(k, str(v)) for k, v in params.items()])}"

    def _log_response(
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | None,
        response: httpx.Response,
        attempt: int,
        elapsed: float,
    ) -> None:
        if not self._log.isEnabledFor(logging.DEBUG):
            return
        self._log.debug(
            "%s %s → %d (attempt %d, %.0f ms) request headers %s",
            method,
            self.redactor.url(response.request.url if response.request else url),
            response.status_code,
            attempt,
            elapsed * 1000,
            self.redactor.headers(dict(response.request.headers)) if response.request else {},
        )
