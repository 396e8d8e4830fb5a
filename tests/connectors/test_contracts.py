"""The contract-test kit run against every connector Keel ships, each with its fake."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

import connectors.sandbox as sandbox_plugin
import connectors.shopify as shopify_plugin
import connectors.threepl as threepl_plugin
from connectors.clock import VirtualClock
from connectors.sandbox.connectors import sign_webhook
from connectors.testing import ConnectorContract, ContractHarness, WebhookCase
from connectors.types import (
    Address,
    FulfillmentConfirmation,
    FulfillmentLine,
    FulfillmentRequest,
    InboundLine,
    InboundShipment,
    Parcel,
    RateRequest,
)
from tests.connectors.conftest import WEBHOOK_SECRET, shopify_credentials, shopify_settings
from tests.fakes.shopify import FakeShopify, ShopifyWebhookSender, throttled_response
from tests.fakes.threepl import FakeThreePL, throttled

SHIP_TO = Address(
    name="Grace Hopper",
    line1="2 Navy Way",
    city="Arlington",
    region="VA",
    postal_code="22201",
    country="US",
)


def shopify_shipment(fake: FakeShopify, order_id: int, at) -> FulfillmentConfirmation:
    """What the platform reports when Keel ships a Shopify order: Shopify's ids."""
    return FulfillmentConfirmation(
        external_id="FO-contract",
        order_ref=str(order_id),
        carrier="UPS",
        tracking_numbers=("1ZCONTRACT0001",),
        lines=tuple(
            FulfillmentLine(line["sku"], line["quantity"], external_line_id=str(line["id"]))
            for line in fake.order(order_id)["line_items"]
        ),
        shipped_at=at,
    )


def inbound(location: str, sku: str) -> InboundShipment:
    return InboundShipment(
        reference="PO-contract-1",
        location=location,
        lines=(InboundLine(sku, 24),),
        tracking_numbers=("1ZINBOUND0001",),
    )


class TestShopifyContract(ConnectorContract):
    @pytest.fixture
    def harness(self) -> Iterator[ContractHarness]:
        clock = VirtualClock()
        with FakeShopify(clock=clock) as fake:
            sender = ShopifyWebhookSender(secret=WEBHOOK_SECRET, shop_domain=fake.shop)
            fake.add_orders(1)
            shipped = fake.order_ids[0]
            body = json.dumps(fake.order(shipped)).encode()

            def seed(n: int) -> set[str]:
                clock.advance(1)
                return {str(i) for i in fake.add_orders(n)}

            yield ContractHarness(
                plugin=shopify_plugin,
                name="shopify",
                clock=clock,
                fake=fake,
                settings=shopify_settings(fake, orders_page_size=20, backfill_days=0),
                credentials=shopify_credentials(fake),
                seed_items=seed,
                page_items=55,
                pull=lambda c, cursor: c.pull_orders(
                    cursor=cursor, updated_since=clock.now() if cursor is None else None
                ),
                probe=lambda c: c.check_connection(),
                throttle_response=lambda s: throttled_response(s),
                revoke_credentials=fake.revoke_token,
                webhook=WebhookCase(
                    body=body,
                    secret=WEBHOOK_SECRET,
                    sign=lambda b, s: {
                        **sender.delivery("orders/create", b, secret=s).headers,
                    },
                    signature_header="X-Shopify-Hmac-Sha256",
                ),
                channel_shipment=shopify_shipment(fake, shipped, clock.now()),
                count_channel_fulfillments=lambda: len(fake.fulfillments.get(shipped, [])),
            )


class TestThreePLContract(ConnectorContract):
    @pytest.fixture
    def harness(self) -> Iterator[ContractHarness]:
        clock = VirtualClock()
        with FakeThreePL(clock=clock) as fake:
            n = 0

            def seed(count: int) -> set[str]:
                nonlocal n
                refs = set()
                for _ in range(count):
                    n += 1
                    reference = f"SEED-{n}"
                    fake.orders[reference] = {
                        "id": n,
                        "order_number": f"#{n}",
                        "shipping_method": "Standard",
                        "products": [{"reference_id": "KEEL-000-S", "quantity": 1}],
                    }
                    clock.advance(1)
                    refs.add(str(fake.ship(reference)["id"]))
                return refs

            yield ContractHarness(
                plugin=threepl_plugin,
                name="threepl",
                clock=clock,
                fake=fake,
                settings={
                    "api_base_url": fake.base_url,
                    "channel_id": str(fake.channel_id),
                    "page_size": 10,
                },
                credentials={"access_token": fake.access_token},
                seed_items=seed,
                page_items=35,
                pull=lambda c, cursor: c.pull_shipment_confirmations(cursor=cursor),
                probe=lambda c: c.check_connection(),
                throttle_response=throttled,
                revoke_credentials=fake.revoke_token,
                fulfillment_request=FulfillmentRequest(
                    request_id="FR-contract",
                    order_ref="#1",
                    ship_to=SHIP_TO,
                    lines=(FulfillmentLine("KEEL-003-M", 1),),
                ),
                count_created=lambda: len(fake.orders),
                inbound_shipment=inbound(str(fake.centers[0][0]), "KEEL-003-M"),
                count_inbound=lambda: len(fake.receiving),
            )


def _sandbox(name: str, **kwargs) -> ContractHarness:
    return ContractHarness(
        plugin=sandbox_plugin,
        name=name,
        clock=VirtualClock(),
        settings={"skus": ["A-1", "B-2", "C-3"]},
        credentials={},
        **kwargs,
    )


class TestSandboxChannelContract(ConnectorContract):
    @pytest.fixture
    def harness(self) -> ContractHarness:
        harness = _sandbox(sandbox_plugin.CHANNEL)
        harness.settings = {**harness.settings, "page_hours": 12, "orders_per_day": 120}
        secret = "sandbox-contract-secret"
        harness.credentials = {"webhook_secret": secret}

        def expected(_: int) -> set[str]:
            connector = harness.build()
            everything = []
            cursor = None
            while True:
                page = connector.pull_orders(cursor=cursor)
                everything += [o.external_id for o in page.items]
                cursor = page.next_cursor
                if not page.has_more:
                    return set(everything)

        harness.seed_items = expected
        harness.page_items = 1
        harness.pull = lambda c, cursor: c.pull_orders(cursor=cursor)
        harness.webhook = WebhookCase(
            body=json.dumps({"order_id": "SBX-1-0"}).encode(),
            secret=secret,
            sign=lambda b, s: {
                "X-Sandbox-Signature": sign_webhook(b, s),
                "X-Sandbox-Topic": "orders/create",
            },
            signature_header="X-Sandbox-Signature",
        )
        harness.channel_shipment = FulfillmentConfirmation(
            external_id="FO-contract",
            order_ref="SBX-1-0",
            carrier="SandboxPost",
            tracking_numbers=("SBX1Z0001",),
            lines=(FulfillmentLine("A-1", 1, external_line_id="SBX-1-0-1"),),
            shipped_at=harness.clock.now(),
        )
        harness.count_channel_fulfillments = lambda: len(harness.state.get("fulfillments", {}))
        return harness


class TestSandboxWarehouseContract(ConnectorContract):
    @pytest.fixture
    def harness(self) -> ContractHarness:
        harness = _sandbox(
            sandbox_plugin.THREEPL,
            fulfillment_request=FulfillmentRequest(
                request_id="FR-1",
                order_ref="#1",
                ship_to=SHIP_TO,
                lines=(FulfillmentLine("A-1", 1),),
            ),
            inbound_shipment=inbound("SBX-WH1", "A-1"),
        )
        harness.count_inbound = lambda: len(harness.state.get("inbound", {}))
        return harness


class TestSandboxCarrierContract(ConnectorContract):
    @pytest.fixture
    def harness(self) -> ContractHarness:
        return _sandbox(
            sandbox_plugin.CARRIER,
            rate_request=RateRequest(
                ship_from=Address(postal_code="92101", country="US"),
                ship_to=SHIP_TO,
                parcels=(Parcel(weight_g=900, length_mm=300, width_mm=200, height_mm=100),),
            ),
        )
