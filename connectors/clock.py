"""Time, injectable.

Connectors and the HTTP client never call ``time.sleep`` or ``datetime.now`` directly; they
use a :class:`Clock`. Production passes :data:`SYSTEM_CLOCK`. Tests pass a
:class:`VirtualClock` shared with the fake servers, so a 30-second ``Retry-After`` costs no
real time and the fake's rate limiter measures exactly what the client waited.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """What connectors need to know about time."""

    def monotonic(self) -> float:
        """Seconds on a monotonic scale, for measuring intervals."""
        ...

    def now(self) -> datetime:
        """The current wall-clock time, timezone-aware UTC."""
        ...

    def sleep(self, seconds: float) -> None:
        """Block for ``seconds`` (a virtual clock advances instead)."""
        ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


SYSTEM_CLOCK = SystemClock()


class VirtualClock:
    """A clock that only moves when told to; ``sleep`` advances it instantly.

    Thread-safe: fake servers read it from their handler threads while the client under test
    sleeps on it. ``sleeps`` records every requested sleep, for assertions on backoff.
    """

    def __init__(self, start: datetime | None = None) -> None:
        start = start or datetime(2024, 6, 3, 12, 0, tzinfo=UTC)
        if start.tzinfo is None:
            raise ValueError("VirtualClock start must be timezone-aware")
        self._start = start.astimezone(UTC)
        self._elapsed = 0.0
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        with self._lock:
            return self._elapsed

    def now(self) -> datetime:
        with self._lock:
            return self._start + timedelta(seconds=self._elapsed)

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            if seconds > 0:
                self._elapsed += seconds

    def advance(self, seconds: float) -> None:
        """Move time forward without recording a sleep (time passing between calls)."""
        if seconds < 0:
            raise ValueError("time does not run backwards")
        with self._lock:
            self._elapsed += seconds
