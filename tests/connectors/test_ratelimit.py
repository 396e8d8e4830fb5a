"""Client-side pacing: leaky bucket and sliding window, on a virtual clock."""

from __future__ import annotations

import httpx
import pytest

from connectors.clock import VirtualClock
from connectors.ratelimit import LeakyBucketLimiter, SlidingWindowLimiter, pages_rate_floor


def _response(headers: dict[str, str]) -> httpx.Response:
    return httpx.Response(200, headers=headers)


def send(limiter, clock: VirtualClock, n: int) -> list[float]:
    """Send n requests one after another; return their send times."""
    times = []
    for _ in range(n):
        clock.sleep(limiter.reserve(clock.monotonic()))
        times.append(clock.monotonic())
        limiter.observe(_response({}), clock.monotonic())
    return times


def test_leaky_bucket_bursts_to_capacity_minus_headroom_then_paces_at_leak_rate():
    clock = VirtualClock()
    limiter = LeakyBucketLimiter(capacity=40, leak_rate=2.0, header=None, headroom=1)
    times = send(limiter, clock, 60)
    assert times[:39] == [0.0] * 39
    gaps = [b - a for a, b in zip(times[39:], times[40:], strict=False)]
    assert all(gap == pytest.approx(0.5) for gap in gaps)
    assert times[-1] == pytest.approx(0.5 * 21)


def test_leaky_bucket_resyncs_with_the_vendor_header():
    clock = VirtualClock()
    limiter = LeakyBucketLimiter(capacity=40, leak_rate=2.0)
    limiter.reserve(0.0)
    # Another process already spent most of the shared budget.
    limiter.observe(_response({"X-Shopify-Shop-Api-Call-Limit": "39/40"}), 0.0)
    assert limiter.reserve(0.0) == pytest.approx(0.5)
    # A bigger plan is learned from the header.
    limiter.observe(_response({"X-Shopify-Shop-Api-Call-Limit": "3/80"}), 10.0)
    assert limiter.capacity == 80
    assert clock.monotonic() == 0.0


def test_leaky_bucket_penalty_after_429_waits_for_a_leak():
    limiter = LeakyBucketLimiter(capacity=10, leak_rate=5.0, header=None)
    limiter.penalize(0.0, retry_after=None)
    assert limiter.reserve(0.0) == pytest.approx((10 + 1 - 9) / 5.0)


def test_sliding_window_never_exceeds_limit_in_any_window():
    clock = VirtualClock()
    limiter = SlidingWindowLimiter(limit=150, window=60.0, margin=0.5, remaining_header=None)
    times = send(limiter, clock, 400)
    for i in range(len(times) - 150):
        assert times[i + 150] - times[i] >= 60.0
    assert times[149] == 0.0 and times[150] == pytest.approx(60.5)


def test_sliding_window_follows_remaining_header_and_retry_after():
    limiter = SlidingWindowLimiter(limit=10, window=60.0, margin=0.0)
    assert limiter.reserve(0.0) == 0.0
    limiter.observe(_response({"x-remaining-calls": "0"}), 0.0)
    assert limiter.reserve(0.0) == pytest.approx(60.0)
    limiter = SlidingWindowLimiter(limit=10, window=60.0, margin=0.0)
    limiter.penalize(5.0, retry_after=25.0)
    assert limiter.reserve(5.0) == pytest.approx(25.0)


def test_rate_floor_is_pages_beyond_the_bucket_over_the_leak_rate():
    assert pages_rate_floor(200, 40, 2.0) == 80.0
    assert pages_rate_floor(20, 40, 2.0) == 0.0
