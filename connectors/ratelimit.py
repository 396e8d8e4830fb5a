"""Client-side rate limiters: pace requests so the vendor never has to answer 429.

A limiter does not sleep. :meth:`RateLimiter.reserve` books the next send slot under a lock
and returns how long the caller must wait for it, so concurrent threads sharing one client
queue up fairly instead of racing (the "virtual scheduling" form of GCRA). The client then
sleeps on its injected clock, reports the response with :meth:`observe` — vendors publish
their view of the budget in headers, which corrects our estimate — and calls
:meth:`penalize` after a 429.
"""

from __future__ import annotations

import bisect
import collections
import threading
from typing import Protocol

import httpx


class RateLimiter(Protocol):
    """Paces one client's requests."""

    def reserve(self, now: float) -> float:
        """Book a slot for a request about to be sent; return seconds to wait before sending."""
        ...

    def observe(self, response: httpx.Response, now: float) -> None:
        """Learn from a response's headers (the vendor's view of our budget)."""
        ...

    def release(self) -> None:
        """A booked request was never answered (network error): forget it is in flight."""
        ...

    def penalize(self, now: float, retry_after: float | None) -> None:
        """The vendor answered 429 (saying when to come back, if it did): assume the budget
        is exhausted until then."""
        ...


class LeakyBucketLimiter:
    """Shopify's REST model: a bucket of ``capacity`` requests leaking ``leak_rate`` per second.

    Bursts up to ``capacity - headroom`` requests, then sends one every ``1/leak_rate`` s —
    the fastest pace that never overflows. ``header`` (``"used/capacity"``, e.g. Shopify's
    ``X-Shopify-Shop-Api-Call-Limit``) resynchronises the estimate with the server's count,
    which also covers other processes spending the same budget. ``headroom`` absorbs the
    server rounding its count up and requests in flight from elsewhere.
    """

    def __init__(
        self,
        *,
        capacity: float = 40,
        leak_rate: float = 2.0,
        header: str | None = "X-Shopify-Shop-Api-Call-Limit",
        headroom: float = 1.0,
    ) -> None:
        if capacity <= headroom or leak_rate <= 0:
            raise ValueError("capacity must exceed headroom and leak_rate must be positive")
        self.capacity = float(capacity)
        self.leak_rate = float(leak_rate)
        self.header = header
        self.headroom = headroom
        self._level = 0.0
        self._at: float | None = None
        self._in_flight = 0
        self._lock = threading.Lock()

    def _drain(self, now: float) -> None:
        if self._at is not None:
            self._level = max(0.0, self._level - (now - self._at) * self.leak_rate)
        self._at = now

    def level(self, now: float) -> float:
        """Estimated requests in the bucket at ``now``."""
        with self._lock:
            self._drain(now)
            return self._level

    def reserve(self, now: float) -> float:
        with self._lock:
            self._drain(now)
            limit = self.capacity - self.headroom
            wait = max(0.0, (self._level + 1 - limit) / self.leak_rate)
            # Book the slot now: the level may exceed the limit on paper; it leaks down to
            # exactly the limit by the time this request goes out.
            self._level += 1
            self._in_flight += 1
            return wait

    def observe(self, response: httpx.Response, now: float) -> None:
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)
            value = response.headers.get(self.header) if self.header else None
            if not value:
                return
            try:
                used_s, cap_s = value.split("/", 1)
                used, capacity = float(used_s), float(cap_s)
            except ValueError:
                return
            if capacity > self.headroom:
                self.capacity = capacity
            self._drain(now)
            if self._in_flight == 0:
                # Nothing else of ours is on the wire: the server's count is the truth.
                self._level = used
            else:
                # Our own bookings may not have reached the server yet; never go below them.
                self._level = max(self._level, used)

    def release(self) -> None:
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)

    def penalize(self, now: float, retry_after: float | None) -> None:
        # The client's gate honours retry_after itself; the bucket only has to stop
        # assuming there is room.
        with self._lock:
            self._drain(now)
            self._level = max(self._level, self.capacity)


class SlidingWindowLimiter:
    """At most ``limit`` requests in any ``window`` seconds (ShipBob: 150 per 60 s).

    A request may go out once the ``limit``-th most recent one is older than the window
    (plus ``margin``, for the vendor stamping our requests a little later than we sent them).
    ``remaining_header`` (e.g. ``x-remaining-calls``) lowers our estimate when the vendor has
    counted more than we did.
    """

    def __init__(
        self,
        *,
        limit: int = 150,
        window: float = 60.0,
        margin: float | None = None,
        remaining_header: str | None = "x-remaining-calls",
    ) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("limit must be >= 1 and window positive")
        self.limit = limit
        self.window = window
        self.margin = margin if margin is not None else max(0.05, window * 0.01)
        self.remaining_header = remaining_header
        self._sent: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()

    def _trim(self, now: float) -> None:
        horizon = now - self.window - self.margin
        while self._sent and self._sent[0] <= horizon:
            self._sent.popleft()

    def _book(self, times: list[float]) -> None:
        # Kept sorted: penalties and header corrections book "now" behind future bookings.
        for t in times:
            bisect.insort(self._sent, t)
        # Only the newest `limit` bookings can delay the next request.
        while len(self._sent) > self.limit:
            self._sent.popleft()

    def reserve(self, now: float) -> float:
        with self._lock:
            self._trim(now)
            at = now
            if len(self._sent) >= self.limit:
                at = max(now, self._sent[-self.limit] + self.window + self.margin)
            self._book([at])
            return at - now

    def observe(self, response: httpx.Response, now: float) -> None:
        if not self.remaining_header:
            return
        value = response.headers.get(self.remaining_header)
        if value is None:
            return
        try:
            remaining = int(float(value))
        except ValueError:
            return
        with self._lock:
            self._trim(now)
            ours = self.limit - sum(1 for t in self._sent if t > now - self.window)
            self._book([now] * max(0, min(ours - remaining, self.limit)))

    def release(self) -> None:
        """Nothing to undo: an unanswered request may still have been counted."""

    def penalize(self, now: float, retry_after: float | None) -> None:
        # Full window: the next slot opens when the vendor said (or a whole window later).
        at = now if retry_after is None else now + retry_after - self.window - self.margin
        with self._lock:
            self._book([at] * self.limit)


def pages_rate_floor(pages: int, capacity: int, leak_rate: float) -> float:
    """Least wall time a leaky bucket allows for ``pages`` requests: the first ``capacity``
    go at once, the rest at ``leak_rate`` per second."""
    return max(0.0, (pages - capacity) / leak_rate) if pages > 0 else 0.0


__all__ = [
    "LeakyBucketLimiter",
    "RateLimiter",
    "SlidingWindowLimiter",
    "pages_rate_floor",
]
