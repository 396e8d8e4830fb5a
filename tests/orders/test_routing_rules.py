"""Layer 1: the hard rules of a typical $50M brand route orders as its ops team expects."""

import pytest

from orders.models import FulfillmentOrder, Order, RoutingDecision
from orders.services import ingest_order
from tests.orders.conftest import order_input

pytestmark = pytest.mark.usefixtures("typical_rules")


def routed_to(order: Order) -> list[str]:
    return sorted(fo.warehouse.code for fo in order.fulfillments.all())


@pytest.mark.parametrize(
    ("kw", "warehouse"),
    [
        ({"state": "CA"}, "WEST"),
        ({"state": "NV"}, "WEST"),
        ({"state": "WA"}, "WEST"),
        ({"state": "TX"}, "TX"),
        ({"state": "LA"}, "TX"),
        ({"state": "NY"}, "PA"),
        ({"state": "MA"}, "PA"),
        ({"state": "CA", "service_level": "expedited"}, "TX"),
        ({"state": "CA", "order_type": "wholesale"}, "PA"),
        ({"state": "TX", "order_type": "subscription"}, "FBA"),
    ],
)
def test_typical_brand_rules(kw, warehouse):
    order = ingest_order(order_input(**kw)).order

    assert order.status == "routed"
    assert routed_to(order) == [warehouse]
    decision = RoutingDecision.objects.get(order=order)
    assert (decision.layer, decision.rule_set_version) == ("rules", 1)
    assert decision.explanation.endswith(f"ships everything from {warehouse}.")


def test_wholesale_rule_sets_ltl():
    order = ingest_order(order_input(state="NJ", order_type="wholesale")).order
    assert FulfillmentOrder.objects.get(order=order).ship_type == "ltl"


def test_rule_warehouse_short_of_stock_falls_to_scoring(network):
    from inventory import services as stock

    tee, west = network["skus"]["TEE"], network["warehouses"]["WEST"]
    stock.adjust(sku=tee, warehouse=west, delta=-100, reason_code="lost")

    order = ingest_order(order_input(state="CA", lines=[("TEE", 2)])).order

    decision = order.decisions.get()
    assert decision.layer == "scoring"
    assert "wanted WEST, which is short of stock" in decision.explanation
    # FBA (Reno) is closest to California of the rest.
    assert routed_to(order) == ["FBA"]


@pytest.mark.parametrize(
    ("currency", "total", "warehouse"),
    [("USD", "900.00", "TX"), ("USD", "100.00", "WEST"), ("EUR", "900.00", "WEST")],
)
def test_order_value_rules_compare_in_the_brand_currency_only(currency, total, warehouse):
    """Keel does not convert currencies: 900 EUR is not "at least 500" of the brand's USD,
    so a value rule never matches an order in another currency."""
    from decimal import Decimal

    from orders.services import draft_rule_set, publish_rule_set
    from tests.orders.conftest import TYPICAL_RULES

    big = {
        "name": "Big orders from TX",
        "conditions": {"order_value_gte": 500},
        "actions": {"ship_from": "TX"},
    }
    publish_rule_set(draft_rule_set(actor=None, rules=[big, *TYPICAL_RULES]))

    order = ingest_order(order_input(state="CA", currency=currency, total=Decimal(total))).order

    assert routed_to(order) == [warehouse]
    inputs = RoutingDecision.objects.get(order=order).inputs
    assert inputs["value"] == (None if currency == "EUR" else total)
