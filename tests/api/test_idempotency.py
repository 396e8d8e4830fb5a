"""Idempotency-Key on stock POSTs (RELIABILITY.md item 11, Stripe's contract).

(a) concurrent identical requests → one effect, the others replay the same response;
(b) same key, different body → 422 idempotency_key_reused, no effect;
(c) a replay 23 h later still replays; (d) after the 24 h TTL the key is new again;
keys are scoped per brand and per principal; a failed request stores nothing.
"""

import json
import threading
from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.db import connections
from django.test import Client
from django.utils import timezone
from django_tenants.utils import schema_context

from accounts.models import User
from accounts.services import create_api_key
from audit.models import ActivityEntry
from idempotency.models import IdempotencyRecord
from inventory import services as stock
from inventory.models import Reservation, StockBalance, StockMovement
from tenants.services import domain_for
from tests.conftest import brand_client
from tests.factories import SKUFactory, WarehouseFactory

JSON = "application/json"


@pytest.fixture(autouse=True)
def _generous_rate_limit(settings):
    # Budgets live in the shared cache across tests; these tests count behaviour, not rate.
    settings.API_RATE_LIMIT = "100000/min"


@dataclass(frozen=True)
class Endpoint:
    url: str

    def body(self, sku, warehouse, quantity: int) -> dict:
        if self.url == "/api/v1/movements/":
            return {
                "kind": "receipt",
                "sku": sku.pk,
                "warehouse": warehouse.pk,
                "quantity": quantity,
                "reference_type": "asn",
                "reference_id": "ASN-1",
            }
        return {
            "kind": "manual_hold",
            "reference_type": "customer",
            "reference_id": "ACME",
            "lines": [{"sku": sku.pk, "warehouse": warehouse.pk, "quantity": quantity}],
        }

    def effects(self) -> int:
        """Rows the endpoint created: ledger movements or reservations (not setup stock)."""
        if self.url == "/api/v1/movements/":
            return StockMovement.objects.filter(reference_id="ASN-1").count()
        return Reservation.objects.count()

    def undo_effect(self) -> None:
        # A hold's reference may hold one active reservation per SKU and warehouse; release
        # it so a request treated as new can create another.
        if self.url == "/api/v1/reservations/":
            stock.release(reference=stock.Reference("customer", "ACME"))


MOVEMENTS = Endpoint("/api/v1/movements/")
RESERVATIONS = Endpoint("/api/v1/reservations/")
ENDPOINTS = pytest.mark.parametrize(
    "endpoint", [MOVEMENTS, RESERVATIONS], ids=["movements", "reservations"]
)


def stocked(quantity: int = 50):
    sku, warehouse = SKUFactory(), WarehouseFactory()
    stock.receive(sku=sku, warehouse=warehouse, quantity=quantity)
    return sku, warehouse


def post(client: Client, endpoint: Endpoint, body: dict, key: str | None, **headers):
    if key is not None:
        headers["HTTP_IDEMPOTENCY_KEY"] = key
    return client.post(endpoint.url, body, content_type=JSON, **headers)


# --- (a) concurrency: committed data, one connection per thread -------------------------


@pytest.fixture
def committed_key(committed_alpha):
    """A write-scope API key of brand alpha, committed so request threads can use it."""
    started = timezone.now()
    owner = User.objects.get(email="owner@alpha.example")
    issued = create_api_key(actor=owner, name="Concurrent writer", scope="write")
    yield issued
    # committed_alpha empties the stock tables; remove what else these requests committed.
    IdempotencyRecord.objects.all().delete()
    ActivityEntry.objects.filter(created_at__gte=started).delete()
    issued.api_key.delete()


def post_concurrently(n: int, endpoint: Endpoint, body: dict, key: str, secret: str) -> list:
    barrier = threading.Barrier(n)
    responses: list = [None] * n

    def worker(i: int) -> None:
        client = Client(HTTP_HOST=domain_for("alpha"))
        try:
            barrier.wait()
            responses[i] = post(client, endpoint, body, key, HTTP_AUTHORIZATION=f"Api-Key {secret}")
        except Exception as exc:  # noqa: BLE001 - the test reports every outcome
            responses[i] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return responses


@ENDPOINTS
def test_ten_concurrent_identical_posts_take_effect_once(committed_key, endpoint):
    sku, warehouse = stocked(quantity=50)
    body = endpoint.body(sku, warehouse, quantity=3)

    responses = post_concurrently(10, endpoint, body, "storm-key-1", committed_key.secret)

    assert [getattr(r, "status_code", r) for r in responses] == [201] * 10
    replayed = [r for r in responses if r.get("Idempotent-Replayed") == "true"]
    assert len(replayed) == 9
    assert len({json.dumps(r.json(), sort_keys=True) for r in responses}) == 1
    assert endpoint.effects() == 1
    balance = StockBalance.objects.get(sku=sku, warehouse=warehouse, status="sellable")
    if endpoint is MOVEMENTS:
        assert (balance.quantity, balance.reserved) == (53, 0)
    else:
        assert (balance.quantity, balance.reserved) == (50, 3)
    assert IdempotencyRecord.objects.filter(key="storm-key-1").count() == 1


# --- (b)–(d) and scoping: one connection, rolled back -----------------------------------


@ENDPOINTS
def test_same_key_with_a_different_body_is_refused_without_effect(brand_a, owner_a, endpoint):
    with schema_context(brand_a.schema_name):
        sku, warehouse = stocked()
    client = brand_client(brand_a, owner_a)
    first = post(client, endpoint, endpoint.body(sku, warehouse, 2), "key-b")

    reused = post(client, endpoint, endpoint.body(sku, warehouse, 7), "key-b")

    assert first.status_code == 201
    assert reused.status_code == 422
    assert reused.json()["error"]["code"] == "idempotency_key_reused"
    assert "Idempotent-Replayed" not in reused
    with schema_context(brand_a.schema_name):
        assert endpoint.effects() == 1
        balance = StockBalance.objects.get(sku=sku, warehouse=warehouse, status="sellable")
        expected = (52, 0) if endpoint is MOVEMENTS else (50, 2)
        assert (balance.quantity, balance.reserved) == expected


@ENDPOINTS
def test_replay_after_23_hours_returns_the_stored_response(brand_a, owner_a, endpoint):
    with schema_context(brand_a.schema_name):
        sku, warehouse = stocked()
    client = brand_client(brand_a, owner_a)
    body = endpoint.body(sku, warehouse, 2)
    first = post(client, endpoint, body, "key-c")
    with schema_context(brand_a.schema_name):
        IdempotencyRecord.objects.filter(key="key-c").update(
            created_at=timezone.now() - timedelta(hours=23)
        )

    replay = post(client, endpoint, body, "key-c")

    assert first.status_code == 201
    assert replay.status_code == 201
    assert replay["Idempotent-Replayed"] == "true"
    assert replay.json() == first.json()
    with schema_context(brand_a.schema_name):
        assert endpoint.effects() == 1


@ENDPOINTS
def test_after_the_24_hour_ttl_the_key_is_new_again(brand_a, owner_a, endpoint):
    with schema_context(brand_a.schema_name):
        sku, warehouse = stocked()
    client = brand_client(brand_a, owner_a)
    body = endpoint.body(sku, warehouse, 2)
    first = post(client, endpoint, body, "key-d")
    with schema_context(brand_a.schema_name):
        IdempotencyRecord.objects.filter(key="key-d").update(
            created_at=timezone.now() - timedelta(hours=24, minutes=1)
        )
        endpoint.undo_effect()

    again = post(client, endpoint, body, "key-d")

    assert first.status_code == again.status_code == 201
    assert "Idempotent-Replayed" not in again
    assert again.json() != first.json()
    with schema_context(brand_a.schema_name):
        assert endpoint.effects() == 2
        # The expired record was replaced by the new request's outcome.
        record = IdempotencyRecord.objects.get(key="key-d")
        assert record.body == again.json()


@ENDPOINTS
def test_keys_are_scoped_per_brand(brand_a, brand_b, owner_a, owner_b, endpoint):
    with schema_context(brand_a.schema_name):
        sku_a, warehouse_a = stocked()
    with schema_context(brand_b.schema_name):
        sku_b, warehouse_b = stocked()

    in_a = post(brand_client(brand_a, owner_a), endpoint, endpoint.body(sku_a, warehouse_a, 1), "K")
    in_b = post(brand_client(brand_b, owner_b), endpoint, endpoint.body(sku_b, warehouse_b, 1), "K")

    assert in_a.status_code == in_b.status_code == 201
    assert "Idempotent-Replayed" not in in_b
    for brand in (brand_a, brand_b):
        with schema_context(brand.schema_name):
            assert endpoint.effects() == 1
            assert IdempotencyRecord.objects.filter(key="K").count() == 1


def test_keys_are_scoped_per_principal(brand_a, owner_a):
    with schema_context(brand_a.schema_name):
        sku, warehouse = stocked()
        first_key = create_api_key(actor=owner_a, name="ERP", scope="write")
        second_key = create_api_key(actor=owner_a, name="WMS", scope="write")
    client = brand_client(brand_a)
    body = MOVEMENTS.body(sku, warehouse, 4)

    responses = [
        post(client, MOVEMENTS, body, "shared", HTTP_AUTHORIZATION=f"Api-Key {key.secret}")
        for key in (first_key, second_key, first_key)
    ]

    assert [r.status_code for r in responses] == [201, 201, 201]
    assert [r.get("Idempotent-Replayed") for r in responses] == [None, None, "true"]
    assert responses[2].json() == responses[0].json()
    with schema_context(brand_a.schema_name):
        assert MOVEMENTS.effects() == 2
        assert sorted(IdempotencyRecord.objects.values_list("principal", flat=True)) == sorted(
            [f"key:{first_key.api_key.pk}", f"key:{second_key.api_key.pk}"]
        )


def test_a_refused_request_stores_nothing_so_the_key_can_be_retried(brand_a, owner_a):
    with schema_context(brand_a.schema_name):
        sku, warehouse = SKUFactory(), WarehouseFactory()
    client = brand_client(brand_a, owner_a)
    body = RESERVATIONS.body(sku, warehouse, 2)

    short = post(client, RESERVATIONS, body, "retry-me")
    with schema_context(brand_a.schema_name):
        assert IdempotencyRecord.objects.count() == 0
        stock.receive(sku=sku, warehouse=warehouse, quantity=2)
    retried = post(client, RESERVATIONS, body, "retry-me")

    assert short.status_code == 409
    assert short.json()["error"]["code"] == "insufficient_stock"
    assert retried.status_code == 201
    assert "Idempotent-Replayed" not in retried
    with schema_context(brand_a.schema_name):
        assert Reservation.objects.count() == 1


def test_malformed_key_is_a_400(brand_a, owner_a):
    with schema_context(brand_a.schema_name):
        sku, warehouse = stocked()

    response = post(
        brand_client(brand_a, owner_a), MOVEMENTS, MOVEMENTS.body(sku, warehouse, 1), "x" * 256
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_idempotency_key"
    with schema_context(brand_a.schema_name):
        assert MOVEMENTS.effects() == 0
