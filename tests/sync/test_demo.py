"""The demo brand's sandbox connections: orders arrive, route, go to the 3PL, ship."""

from __future__ import annotations

from django.utils import timezone

from orders.models import FulfillmentOrder, Order
from sync import services
from sync.demo import connect_demo
from sync.models import Connection, FulfillmentPush, SyncRun


def test_demo_connections_make_orders_flow_through_the_sandbox(in_alpha, tasks):
    # given
    assert connect_demo()[0].startswith("Connected the sandbox channel, 3PL and carrier")
    channel = Connection.objects.get(channel_key="sandbox")
    # (a lighter stream than the demo's, to keep the test quick)
    services.update_connection(
        channel, settings={**channel.settings, "orders_per_day": 24, "backfill_days": 2}
    )

    # when: the schedule runs, then the 3PL's next poll
    services.poll_connections()
    tasks.drain()
    Connection.objects.update(last_polled_at=None)
    services.poll_connections(now=timezone.now())
    tasks.drain()

    # then: orders from the sandbox store, routed, some sent to the sandbox 3PL
    assert Order.objects.filter(channel="sandbox").count() > 10
    assert FulfillmentOrder.objects.filter(warehouse__code="NJ-3PL").exists()
    assert FulfillmentPush.objects.filter(status="sent").exists()
    assert set(SyncRun.objects.values_list("status", flat=True)) == {"succeeded"}
    assert sorted(Connection.objects.values_list("kind", flat=True)) == [
        "3pl",
        "carrier",
        "channel",
    ]
    # and running the bootstrap again changes nothing
    assert connect_demo() == ["Demo connections already exist."]
