"""Fixtures for the connector SDK tests: a virtual clock shared by clients and fakes, an
HTTP context allowed to reach loopback, and started fake servers.

Nothing here touches Django: these tests also run with
``pytest tests/connectors -p no:django --confcutdir=tests/connectors``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from connectors.clock import VirtualClock
from connectors.http import EgressPolicy, HttpContext
from connectors.state import MemoryState
from tests.fakes.carrier import FakeCarrier
from tests.fakes.shopify import FakeShopify
from tests.fakes.threepl import FakeThreePL

WEBHOOK_SECRET = "shpss_webhook_secret_current_0001"
OLD_WEBHOOK_SECRET = "shpss_webhook_secret_previous_0000"


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def http(clock: VirtualClock) -> HttpContext:
    # Seeded jitter: backoff assertions are exact and reproducible.
    return HttpContext(
        clock=clock, egress=EgressPolicy.permissive(), uniform=random.Random(99).uniform
    )


@pytest.fixture
def state() -> MemoryState:
    return MemoryState()


@pytest.fixture
def shopify_fake(clock: VirtualClock) -> Iterator[FakeShopify]:
    with FakeShopify(clock=clock) as fake:
        yield fake


@pytest.fixture
def threepl_fake(clock: VirtualClock) -> Iterator[FakeThreePL]:
    with FakeThreePL(clock=clock) as fake:
        yield fake


@pytest.fixture
def carrier_fake(clock: VirtualClock) -> Iterator[FakeCarrier]:
    with FakeCarrier(clock=clock) as fake:
        yield fake


def shopify_settings(fake: FakeShopify, **overrides: object) -> dict[str, object]:
    return {
        "shop_domain": fake.shop,
        "api_base_url": fake.url,
        "location_id": str(fake.location_id),
        "backfill_days": 3650,
        **overrides,
    }


def shopify_credentials(fake: FakeShopify, **overrides: str) -> dict[str, str]:
    return {"access_token": fake.access_token, "webhook_secret": WEBHOOK_SECRET, **overrides}


def threepl_settings(fake: FakeThreePL, **overrides: object) -> dict[str, object]:
    return {"api_base_url": fake.base_url, "channel_id": str(fake.channel_id), **overrides}
