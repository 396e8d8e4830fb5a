"""RELIABILITY 4: cross-channel oversell reconciliation.

Stock 5 of one SKU, sold on Shopify and on Amazon. Each channel takes 4 orders for it
(and, as both do, takes them off its own displayed quantity), and Keel ingests both
channels at the same time — two threads each running one connection's sync against the
real database. Keel must reserve exactly 5 units, hold the 3 orders it cannot serve as
`insufficient_stock` (its exception state), never go negative, and the quantity pushes
that follow must converge both channels on what Keel can still sell: on Shopify through
compare-and-swap (`changeFromQuantity`), re-reading after `CHANGE_FROM_QUANTITY_STALE`.
"""

from __future__ import annotations

import threading
from decimal import Decimal

from django.db import connections
from django.db.models import Sum
from django_tenants.utils import schema_context

from catalog.services import map_listing
from inventory import services as stock
from inventory.models import Reservation, StockBalance
from orders.models import Order
from sync import services
from sync.models import AvailablePush, Connection, RunStatus, SyncRun
from tests.factories import SKUFactory, WarehouseFactory
from tests.fakes.amazon import FakeAmazon
from tests.fakes.shopify import FakeShopify
from tests.sync.conftest import connect_shopify, stock_network
from tests.sync.test_available import relay_and_consume

SHOPIFY_SKU = "KEEL-000-S"
AMAZON_SKU = "AMZ-000"
SHOPIFY_API = "2026-04"


def connect_amazon(fake: FakeAmazon) -> Connection:
    return services.create_connection(
        connector="amazon",
        display_name="Amazon US",
        channel_key="amazon",
        settings={
            "seller_id": fake.seller_id,
            "marketplace_ids": [fake.marketplace_id],
            "lwa_client_id": fake.client_id,
            "api_base_url": fake.url,
            "lwa_token_url": fake.token_url,
        },
        credentials={"lwa_client_secret": fake.client_secret, "refresh_token": fake.refresh_token},
    )


def sync_concurrently(run_ids: list[int]) -> list[services.Outcome]:
    outcomes: list[services.Outcome] = []
    errors: list[BaseException] = []
    start = threading.Barrier(len(run_ids))

    def work(run_id: int) -> None:
        try:
            with schema_context("brand_alpha"):
                start.wait()
                outcomes.append(services.execute_run(run_id, worker=f"thread:{run_id}"))
        except BaseException as exc:  # surfaced below, not lost in the thread
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work, args=(run_id,)) for run_id in run_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return outcomes


def test_two_channels_overselling_one_sku_reserve_five_hold_three_and_converge(
    committed_sync, tasks, clock
):
    with (
        FakeShopify(clock=clock, api_version=SHOPIFY_API) as shopify,
        FakeAmazon(clock=clock) as amazon,
    ):
        # given: 5 units of one SKU, listed on both channels
        shop = connect_shopify(shopify, api_version=SHOPIFY_API)
        amz = connect_amazon(amazon)
        warehouse = WarehouseFactory(
            code="EAST",
            state="NJ",
            postal_code="07001",
            latitude=Decimal("40.58"),
            longitude=Decimal("-74.27"),
        )
        sku = SKUFactory(code=SHOPIFY_SKU)
        map_listing(channel=shop.channel_key, external_sku=SHOPIFY_SKU, sku=sku)
        map_listing(channel=amz.channel_key, external_sku=AMAZON_SKU, sku=sku)
        stock.receive(sku=sku, warehouse=warehouse, quantity=5)
        for conn in (shop, amz):
            services.request_sync(conn, trigger="manual", streams=["listings"])
        tasks.drain(clock=clock)
        relay_and_consume()
        tasks.drain(clock=clock)
        item = shopify.variant_for(SHOPIFY_SKU)["inventory_item_id"]
        assert shopify.available(item) == 5
        assert amazon.listings[AMAZON_SKU]["quantity"] == 5

        # each channel sells 4 — and shows 1 left, which Keel has not seen
        shopify_orders = shopify.add_orders_for(SHOPIFY_SKU, 4)
        amazon_orders = amazon.add_orders(4, sku=AMAZON_SKU)
        assert shopify.available(item) == 1 and amazon.listings[AMAZON_SKU]["quantity"] == 1

        # when: both connections' syncs ingest at the same time
        runs = [
            services.request_sync(conn, trigger="manual", streams=["orders"])[0].pk
            for conn in (shop, amz)
        ]
        tasks.sent.clear()  # run here, in two threads, instead of through the recorder
        sync_concurrently(runs)
        assert set(SyncRun.objects.filter(pk__in=runs).values_list("status", flat=True)) == {
            RunStatus.SUCCEEDED
        }

        # then: every order arrived once; 5 units reserved, the 3 others held
        orders = Order.objects.filter(external_id__in=[*map(str, shopify_orders), *amazon_orders])
        assert orders.count() == 8
        held = orders.filter(status="held")
        assert held.count() == 3
        assert set(held.values_list("hold_reason", flat=True)) == {"insufficient_stock"}
        assert orders.exclude(status="held").count() == 5
        active = Reservation.objects.filter(sku=sku, status="active")
        assert active.aggregate(total=Sum("quantity"))["total"] == 5
        balances = StockBalance.objects.filter(sku=sku)
        assert all(b.quantity >= 0 and 0 <= b.reserved <= b.quantity for b in balances)
        assert sum(b.reserved for b in balances) == 5
        assert services.available_quantities([sku.pk]) == {sku.pk: 0}

        # and the pushes that follow converge both channels on 0
        shopify.inventory_attempts.clear()
        relay_and_consume()
        tasks.drain(clock=clock)
        assert shopify.available(item) == 0
        assert amazon.listings[AMAZON_SKU]["quantity"] == 0
        # Shopify's write compared against the 5 Keel had published, was refused as stale
        # (Shopify's own sales had moved it to 1), re-read, and swapped 1 → 0
        attempts = [
            (a["quantities"][0]["changeFromQuantity"], a["codes"])
            for a in shopify.inventory_attempts
        ]
        assert attempts == [(5, ["CHANGE_FROM_QUANTITY_STALE"]), (1, [])]
        assert shopify.inventory_writes[-1] == {"item": item, "from": 1, "to": 0}
        pushed = dict(
            AvailablePush.objects.filter(sku=sku).values_list("connection_id", "quantity")
        )
        assert pushed == {shop.pk: 0, amz.pk: 0}
        assert set(AvailablePush.objects.filter(sku=sku).values_list("outcome", flat=True)) == {
            "applied"
        }


def test_a_push_that_stays_stale_is_recorded_and_pushed_again_later(in_alpha, tasks, clock):
    with FakeShopify(clock=clock, api_version=SHOPIFY_API) as shopify:
        shop = connect_shopify(shopify, api_version=SHOPIFY_API)
        network = stock_network(shop.channel_key, [SHOPIFY_SKU], quantity=20)
        sku = network["skus"][SHOPIFY_SKU]
        services.request_sync(shop, trigger="manual", streams=["listings"])
        tasks.drain(clock=clock)
        relay_and_consume()
        tasks.drain(clock=clock)
        item = shopify.variant_for(SHOPIFY_SKU)["inventory_item_id"]
        assert shopify.available(item) == 20

        # given: Shopify's quantity keeps moving under every write
        stock.receive(sku=sku, warehouse=network["warehouse"], quantity=5)
        shopify.change_available(item, -1)
        shopify.interleave_sales(10)
        relay_and_consume()
        tasks.drain(clock=clock)

        # then: the connector gave up after 1 + 3 attempts and the engine recorded it
        push = AvailablePush.objects.get(connection=shop, sku=sku)
        assert (push.outcome, push.quantity) == ("stale", 20)
        assert "kept changing" in push.message
        assert len(shopify.inventory_attempts) - 1 == 4  # after the opening push
        assert shopify.inventory_writes[-1]["to"] == 20

        # when the channel settles, the next push (quantity still differs) applies it
        shopify.interleave_sales(0)
        services.mark_available_changed([sku.pk])
        tasks.drain(clock=clock)
        push.refresh_from_db()
        assert (push.outcome, push.quantity) == ("applied", 25)
        assert shopify.available(item) == 25
