"""SP-API usage plans: a token bucket per operation, paced client-side.

Every SP-API operation has its own usage plan — a *rate* (requests per second restored to the
bucket) and a *burst* (the bucket's size): ``getOrders`` restores one request a minute
(0.0167/s) into a bucket of 20. Amazon reports the rate it applied in the
``x-amzn-RateLimit-Limit`` response header (selling partners with bigger plans get bigger
numbers), and answers an empty bucket with ``429 QuotaExceeded`` — usually without
``Retry-After``.

:class:`UsagePlanLimiter` is the SDK's :class:`~connectors.ratelimit.LeakyBucketLimiter`
(a bucket leaking at the rate is the same pacing as a token bucket restoring at it: the
burst goes at once — less a fifth of a token kept back for network jitter —, then one
request per ``1/rate`` s) that learns the rate from that header and, after a 429, assumes
the bucket is empty. Its level can be exported and restored, so a
new connector instance (one per task) does not burst into a bucket an earlier task emptied.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from connectors.ratelimit import LeakyBucketLimiter

RATE_HEADER = "x-amzn-RateLimit-Limit"

#: Published default usage plans (rate per second, burst) of the operations Keel calls.
DEFAULT_PLANS: Mapping[str, tuple[float, int]] = {
    "getOrders": (0.0167, 20),
    "getOrderItems": (0.5, 30),
    "createRestrictedDataToken": (1.0, 10),
    "getMarketplaceParticipations": (0.016, 15),
    "searchListingsItems": (5.0, 5),
    "patchListingsItem": (5.0, 5),
}


class UsagePlanLimiter(LeakyBucketLimiter):
    """Token bucket of ``burst`` requests restored at ``rate`` per second (see module doc)."""

    def __init__(self, *, rate: float, burst: int, reserve: float = 0.2) -> None:
        # Amazon counts a request when it *arrives*; network and connection set-up delay
        # arrivals by varying amounts, so a client pacing to the exact token would now and
        # then be a hair early. ``reserve`` (a fraction of a token) is kept back: the burst
        # is ``burst − 1`` requests at once, the next one ``reserve / rate`` s later, and
        # from then on one per ``1 / rate`` s — the published pace, with that much slack.
        super().__init__(capacity=burst + 1, leak_rate=rate, header=None, headroom=1 + reserve)
        self.burst = burst
        self.reserve_tokens = reserve

    def wait_time(self, now: float) -> float:
        """Seconds the next request would wait, without booking it."""
        with self._lock:
            self._drain(now)
            limit = self.burst - self.reserve_tokens
            return max(0.0, (self._level + 1 - limit) / self.leak_rate)

    def observe(self, response: httpx.Response, now: float) -> None:
        super().observe(response, now)
        value = response.headers.get(RATE_HEADER)
        if not value:
            return
        try:
            rate = float(value)
        except ValueError:
            return
        if rate > 0:
            with self._lock:
                self._drain(now)
                self.leak_rate = rate

    def penalize(self, now: float, retry_after: float | None) -> None:
        # QuotaExceeded: the bucket is empty now; the next token arrives 1/rate later.
        with self._lock:
            self._drain(now)
            self._level = max(self._level, self.burst - self.reserve_tokens)

    def export(self, now: float, wall: float) -> dict[str, float]:
        with self._lock:
            self._drain(now)
            return {"level": round(self._level, 6), "rate": self.leak_rate, "at": wall}

    def restore(self, saved: Mapping[str, Any], now: float, wall: float) -> None:
        """Resume from :meth:`export` output taken at wall time ``saved["at"]``."""
        try:
            level = float(saved["level"])
            rate = float(saved.get("rate") or self.leak_rate)
            at = float(saved["at"])
        except (KeyError, TypeError, ValueError):
            return
        with self._lock:
            if rate > 0:
                self.leak_rate = rate
            elapsed = max(0.0, wall - at)
            self._level = max(0.0, min(float(self.burst), level - elapsed * self.leak_rate))
            self._at = now
