"""An Amazon connection added through the generated form, then synced by the engine like
any channel: orders through the `orders` stream (FBA orders skipped), listings, and
quantities pushed after stock changes — no platform code knows about Amazon."""

from __future__ import annotations

import pytest

from orders.models import Order
from sync import services
from sync.models import AvailablePush, ChannelListing, Connection
from sync.plugins import conn_credentials
from tests.conftest import brand_client
from tests.fakes.amazon import FakeAmazon
from tests.sync.conftest import stock_network
from tests.sync.test_available import relay_and_consume


@pytest.fixture
def amazon(clock):
    with FakeAmazon(clock=clock) as fake:
        yield fake


def test_amazon_connection_is_added_through_the_form_and_synced(
    brand_a, owner_a, in_alpha, amazon, tasks, clock
):
    client = brand_client(brand_a, owner_a)
    page = client.get("/connections/add/amazon/").content.decode()
    assert 'name="cfg_refresh_token"' in page and 'name="cfg_marketplace_ids"' in page
    response = client.post(
        "/connections/add/amazon/",
        {
            "display_name": "Amazon US",
            "channel_key": "amazon",
            "poll_interval": 120,
            "cfg_seller_id": amazon.seller_id,
            "cfg_marketplace_ids": amazon.marketplace_id,
            "cfg_lwa_client_id": amazon.client_id,
            "cfg_lwa_client_secret": amazon.client_secret,
            "cfg_refresh_token": amazon.refresh_token,
            "cfg_include_pii": "on",
            "cfg_orders_page_size": 50,
            "cfg_backfill_days": 30,
            "cfg_rate_limits": "getOrders = 0.0167/20",
            "cfg_api_base_url": amazon.url,
            "cfg_lwa_token_url": amazon.token_url,
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    conn = Connection.objects.get(connector="amazon")
    assert conn.settings["marketplace_ids"] == [amazon.marketplace_id]
    assert conn.settings["rate_limits"] == {"getOrders": "0.0167/20"}
    assert "refresh_token" not in conn.settings
    assert conn_credentials(conn)["refresh_token"] == amazon.refresh_token
    detail = client.get(f"/connections/{conn.pk}/").content.decode()
    assert amazon.refresh_token not in detail and amazon.client_secret not in detail

    # the engine syncs it through the hooks: listings, then orders
    network = stock_network("amazon", ["AMZ-000", "AMZ-001"], quantity=10)
    mfn = amazon.add_orders(3, sku="AMZ-000")
    fba = amazon.add_orders(2, sku="AMZ-001", fulfillment="AFN")
    services.request_sync(conn, trigger="manual")
    tasks.drain(clock=clock)
    assert ChannelListing.objects.filter(connection=conn).count() == len(amazon.listings)
    assert set(Order.objects.values_list("external_id", flat=True)) == set(mfn)
    assert not Order.objects.filter(external_id__in=fba).exists()  # Amazon ships those
    order = Order.objects.get(external_id=mfn[0])
    assert (order.channel, order.order_type, order.status) == ("amazon", "marketplace", "routed")
    assert order.ship_line1 and order.customer_email  # read with a Restricted Data Token

    # and Keel's availability goes back: 10 received − 3 reserved
    relay_and_consume()
    tasks.drain(clock=clock)
    assert amazon.listings["AMZ-000"]["quantity"] == 7
    push = AvailablePush.objects.get(connection=conn, sku=network["skus"]["AMZ-000"])
    assert (push.outcome, push.quantity) == ("applied", 7)
