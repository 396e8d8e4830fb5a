"""Fixtures for sync tests: fake vendor servers on loopback, connections to them, and a
task runner that executes what sync.services would publish, in process.

Tasks: `sync.services.send_task` (and the on-commit hop before it) is replaced by a
recorder, so nothing reaches the broker; `tasks.drain()` runs the recorded tasks through
the same service functions the Celery tasks call, honouring retry countdowns on the
virtual clock. Tests that need a real worker (test_worker_kill.py) use committed data and
the real publisher instead.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django_tenants.utils import schema_context

from catalog.services import map_listing
from connectors.clock import VirtualClock
from inventory import services as stock
from sync import plugins, services
from sync.models import Connection
from tests.conftest import purge_task_queues
from tests.factories import SKUFactory, WarehouseFactory
from tests.fakes.shopify import FakeShopify

SHOP_SECRET = "shpss_webhook_signing_secret_0001"
# The real publisher, for tests of what happens when the broker refuses.
REAL_SEND_TASK = services.send_task
SANDBOX_SECRET = "sandbox-webhook-secret-0001"


@dataclasses.dataclass
class Sent:
    name: str
    args: tuple[Any, ...]
    countdown: float | None


class TaskRecorder:
    """What sync.services published, and a way to run it."""

    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self.retries: list[tuple[str, float]] = []

    def __call__(self, name: str, *args: Any, countdown: float | None = None) -> None:
        self.sent.append(Sent(name, args, countdown))

    def names(self) -> list[str]:
        return [s.name for s in self.sent]

    def drain(self, *, clock: VirtualClock | None = None, limit: int = 500) -> int:
        """Run recorded tasks (and what they publish) until none are left. A retry waits
        its countdown on `clock` (the vendor fake's clock) and runs again."""
        ran = 0
        while self.sent:
            ran += 1
            assert ran <= limit, f"more than {limit} tasks: {self.names()[:20]}"
            task = self.sent.pop(0)
            outcome = _run(task)
            if outcome is not None and outcome.retry:
                self.retries.append((task.name, outcome.countdown))
                if clock is not None:
                    clock.sleep(outcome.countdown)
                self.sent.append(Sent(task.name, task.args, outcome.countdown))
        return ran


def _run(task: Sent) -> services.Outcome | None:
    if task.name == services.RUN_TASK:
        return services.execute_run(task.args[0], worker="test:0")
    if task.name == services.WEBHOOK_TASK:
        services.process_receipt(task.args[0])
        return None
    if task.name == services.AVAILABLE_TASK:
        return services.push_available(task.args[0])
    raise AssertionError(f"unexpected task {task.name}")


@pytest.fixture(autouse=True)
def _loopback_connectors(settings):
    # The fakes listen on http://127.0.0.1; production refuses both.
    settings.KEEL_CONNECTOR_EGRESS_PERMISSIVE = True


@pytest.fixture(autouse=True)
def tasks(request, monkeypatch) -> TaskRecorder:
    recorder = TaskRecorder()
    if request.node.get_closest_marker("real_broker"):
        return recorder
    monkeypatch.setattr(services, "send_task", recorder)
    # Test transactions never commit, so on-commit hops would never fire: record at once.
    monkeypatch.setattr(
        services,
        "_after_commit",
        lambda name, *args, countdown=None: recorder(name, *args, countdown=countdown),
    )
    return recorder


@pytest.fixture(autouse=True)
def _clean_debounce_keys():
    # Debounce keys live in the shared cache; a test must not inherit another's.
    from django.core.cache import cache

    _clear(cache)
    yield
    _clear(cache)


def _clear(cache) -> None:
    keys = [f"sync:{kind}:{i}" for kind in ("available", "receipts") for i in range(1, 50)]
    # Cache keys carry the brand's schema (django-tenants' key function).
    for schema in ("brand_alpha", "brand_beta"):
        with schema_context(schema):
            cache.delete_many(keys)


def consume_outbox(*topics: str) -> dict[str, list[str]]:
    """What the outbox workers would do with the pending messages of `topics` (the relay
    and consume tasks, in process): run each once, oldest first; returns the outcomes of
    each topic's messages."""
    from outbox import services as outbox
    from outbox.models import MessageStatus, OutboxMessage

    outcomes: dict[str, list[str]] = {topic: [] for topic in topics}
    pending = OutboxMessage.objects.filter(topic__in=topics, status=MessageStatus.PENDING)
    for pk, topic in pending.order_by("id").values_list("pk", "topic"):
        outcomes[topic].append(outbox.consume(pk))
    return outcomes


@pytest.fixture
def clock(monkeypatch) -> VirtualClock:
    """A virtual clock shared by the connector (its HTTP client sleeps on it) and a fake."""
    virtual = VirtualClock()
    monkeypatch.setattr(plugins, "clock", virtual)
    return virtual


@pytest.fixture
def shopify(clock) -> Iterator[FakeShopify]:
    with FakeShopify(clock=clock, orders=120) as fake:
        yield fake


def shopify_settings(fake: FakeShopify, **extra: Any) -> dict[str, Any]:
    return {
        "shop_domain": fake.shop,
        "api_base_url": fake.url,
        "orders_page_size": 50,
        "location_id": str(fake.location_id),
        **extra,
    }


def connect_shopify(fake: FakeShopify, *, channel_key: str = "shop", **extra: Any) -> Connection:
    return services.create_connection(
        connector="shopify",
        display_name="Keel Test Shop",
        channel_key=channel_key,
        settings=shopify_settings(fake, **extra),
        credentials={"access_token": fake.access_token, "webhook_secret": SHOP_SECRET},
    )


@pytest.fixture
def shop(in_alpha, shopify) -> Connection:
    return connect_shopify(shopify)


def stock_network(channel_key: str, codes: list[str], *, quantity: int = 10_000) -> dict:
    """One warehouse holding plenty of every SKU, each mapped on `channel_key`."""
    warehouse = WarehouseFactory(
        code="EAST",
        state="NJ",
        postal_code="07001",
        latitude=Decimal("40.58"),
        longitude=Decimal("-74.27"),
    )
    skus = {}
    for code in codes:
        sku = SKUFactory(code=code)
        map_listing(channel=channel_key, external_sku=code, sku=sku)
        if quantity:
            stock.receive(sku=sku, warehouse=warehouse, quantity=quantity)
        skus[code] = sku
    return {"warehouse": warehouse, "skus": skus}


@pytest.fixture
def shop_catalog(shop, shopify) -> dict:
    return stock_network(shop.channel_key, [v["sku"] for v in shopify.variants])


@pytest.fixture
def committed_sync(django_db_setup, django_db_blocker) -> Iterator[Callable[[], None]]:
    """Run in brand alpha with autocommit (threads and worker processes see the rows);
    afterwards empty alpha's business and sync tables and drop the activity rows the
    test wrote, restoring what other tests expect."""
    with django_db_blocker.unblock():
        with connection.cursor() as cursor:
            cursor.execute("SELECT COALESCE(MAX(id), 0) FROM brand_alpha.audit_activityentry")
            first_new = cursor.fetchone()[0] + 1
        try:
            with schema_context("brand_alpha"):
                yield lambda: None
        finally:
            _truncate_alpha(first_new)
            connection.set_schema_to_public()
            purge_task_queues()


BUSINESS_PREFIXES = ("catalog_", "inventory_", "orders_", "idempotency_", "sync_", "outbox_")


def _truncate_alpha(first_new_activity: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'brand_alpha' AND table_type = 'BASE TABLE'"
        )
        tables = [t for (t,) in cursor.fetchall() if t.startswith(BUSINESS_PREFIXES)]
        cursor.execute(
            "TRUNCATE "
            + ", ".join(f"brand_alpha.{t}" for t in sorted(tables))
            + " RESTART IDENTITY CASCADE"
        )
        cursor.execute(
            "DELETE FROM brand_alpha.audit_activityentry WHERE id >= %s", [first_new_activity]
        )
