"""Errors every connector raises, so the sync engine can decide what to do without knowing
the vendor.

The engine's policy, by class:

- :class:`AuthError` — credentials expired, revoked or lacking a scope. Never retried: the
  connection is marked "needs attention" until a person reconnects it.
- :class:`RateLimited` — the vendor asked us to slow down and the wait was longer than the
  client would block for (or attempts ran out). Retry after ``retry_after`` seconds.
- :class:`TransientError` — 5xx, timeouts, dropped connections, malformed bodies. Retry later
  with backoff.
- :class:`PermanentError` — the request itself is wrong (invalid address, unknown SKU,
  validation failure). Retrying the same request cannot succeed: record it and surface it.
- :class:`WebhookVerificationError` — a delivery whose signature does not verify. Answer 401
  and store nothing beyond a security log entry.

Messages never contain credential values: the HTTP client redacts them before building an
error, and connectors must do the same for anything they add.
"""

from __future__ import annotations


class ConnectorError(Exception):
    """Base class of every error a connector raises on purpose."""

    retryable: bool = False

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: HTTP status of the response that caused the error, when there was one.
        self.status = status


class AuthError(ConnectorError):
    """Credentials are invalid, expired or lack permission (401/403). Never retried."""


class RateLimited(ConnectorError):
    """The vendor throttled us; try again no sooner than ``retry_after`` seconds."""

    retryable = True

    def __init__(
        self, message: str, *, retry_after: float | None, status: int | None = 429
    ) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class TransientError(ConnectorError):
    """A failure that may succeed later: 5xx, timeouts, network errors, malformed bodies."""

    retryable = True

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class PermanentError(ConnectorError):
    """The request is wrong and repeating it cannot succeed (most 4xx). Not retried."""

    def __init__(self, message: str, *, status: int | None = None, detail: str = "") -> None:
        super().__init__(message, status=status)
        #: A short, redacted excerpt of the vendor's explanation.
        self.detail = detail


class NotFoundError(PermanentError):
    """The remote object does not exist (404, or a lookup that found nothing)."""


class ConfigurationError(PermanentError):
    """The connection's settings or credentials are missing or invalid.

    Raised by factories before any request is sent. Messages name the fields, never
    their values.
    """


class WebhookVerificationError(ConnectorError):
    """A webhook delivery failed verification: missing, malformed or wrong signature."""
