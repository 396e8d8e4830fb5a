"""Layer 1's whole vocabulary routes real orders: every condition (country, state, postal
prefix, channel, order type, service level, SKU tags, weight, value) matches what it
says and nothing else, and every action (ship from, prefer, require capability, ship type)
does what it says."""

from __future__ import annotations

from decimal import Decimal

import pytest

from catalog.services import map_listing
from inventory import services as stock
from orders.models import Order
from orders.services import draft_rule_set, ingest_order, publish_rule_set
from tests.orders.conftest import order_input

pytestmark = pytest.mark.usefixtures("in_alpha")


def publish(conditions: dict, actions: dict) -> None:
    rule = {"name": "Under test", "conditions": conditions, "actions": actions}
    publish_rule_set(draft_rule_set(actor=None, rules=[rule]))


def routed(order: Order) -> tuple[str, list[str]]:
    decision = order.decisions.get()
    codes = sorted(order.fulfillments.values_list("warehouse__code", flat=True))
    return decision.rule_name, codes


CANADA = {
    "ship_country": "CA",
    "ship_state": "ON",
    "ship_postal_code": "M5V 2T6",
    "currency": "USD",
}

# (conditions, an order that matches, an order that does not); the action is ship from FBA,
# a warehouse scoring never picks for these east-coast orders on its own.
CONDITIONS = [
    ({"country_in": ["ca"]}, CANADA, {"state": "NY"}),
    ({"state_in": ["ny", "NJ"]}, {"state": "NY"}, {"state": "PA"}),
    ({"postal_prefix_in": ["100", "101"]}, {"ship_postal_code": "10001"}, {}),
    ({"channel_in": ["amazon"]}, {"channel": "amazon"}, {}),
    ({"order_type_in": ["marketplace"]}, {"order_type": "marketplace"}, {}),
    ({"service_level_in": ["specialty"]}, {"service_level": "specialty"}, {}),
    ({"sku_tag_any": ["fragile", "glass"]}, {"lines": [("MUG", 1)]}, {"lines": [("TEE", 1)]}),
    # SKUs weigh 500 g: two are 1 kg.
    ({"weight_kg_gte": 1}, {"lines": [("TEE", 2)]}, {"lines": [("TEE", 1)]}),
    ({"weight_kg_lt": 1}, {"lines": [("TEE", 1)]}, {"lines": [("TEE", 2)]}),
    ({"order_value_gte": "50"}, {"total": Decimal("50.00")}, {"total": Decimal("49.99")}),
    ({"order_value_lt": "50"}, {"total": Decimal("49.99")}, {"total": Decimal("50.00")}),
    (
        {"state_in": ["NY"], "order_type_in": ["wholesale"]},
        {"state": "NY", "order_type": "wholesale"},
        {"state": "NY"},
    ),
]


@pytest.mark.parametrize(("conditions", "matching", "other"), CONDITIONS)
def test_each_condition_matches_exactly_what_it_says(network, conditions, matching, other):
    skus = network["skus"]
    skus["MUG"].tags = ["glass"]
    skus["MUG"].save(update_fields=["tags"])
    for code, sku in skus.items():
        map_listing(channel="amazon", external_sku=f"ext-{code}", sku=sku)
    publish(conditions, {"ship_from": "FBA"})
    base = {"state": "NY"}

    hit = ingest_order(order_input(**{**base, **matching})).order
    miss = ingest_order(order_input(**{**base, **other})).order

    assert routed(hit) == ("Under test", ["FBA"])
    assert hit.decisions.get().layer == "rules"
    rule_name, codes = routed(miss)
    assert rule_name == "" and codes != ["FBA"]


def test_require_capability_limits_the_warehouses(network):
    # California is WEST's, but only TX ships expedited.
    publish({"state_in": ["CA"]}, {"require_capability": "expedited"})

    order = ingest_order(order_input(state="CA")).order

    assert routed(order) == ("Under test", ["TX"])
    decision = order.decisions.get()
    assert decision.layer == "scoring"
    assert [c["warehouses"] for c in decision.candidates] == [["TX"]]


def test_a_required_capability_no_warehouse_with_stock_has_holds_the_order(network):
    publish({"state_in": ["CA"]}, {"require_capability": "cold_chain"})

    order = ingest_order(order_input(state="CA")).order

    assert (order.status, order.hold_reason) == ("held", "insufficient_stock")
    assert "no warehouse with cold_chain has stock" in order.hold_detail


def test_prefer_tips_a_close_call_toward_the_preferred_warehouse(network):
    unpreferred = ingest_order(order_input(state="CA")).order
    publish({"state_in": ["CA"]}, {"prefer": ["FBA"]})

    preferred = ingest_order(order_input(state="CA")).order

    # Without a preference Los Angeles narrowly beats Reno for California (close enough
    # for a person to review); a preference of 0.10 outweighs the ~140 km difference.
    assert [c["warehouses"] for c in unpreferred.decisions.get().candidates[:2]] == [
        ["WEST"],
        ["FBA"],
    ]
    assert routed(preferred) == ("Under test", ["FBA"])
    assert preferred.decisions.get().explanation.startswith("Rule “Under test”; scored 4 plans")


def test_prefer_does_not_override_a_much_closer_warehouse(network):
    publish({"state_in": ["CA"]}, {"prefer": ["PA"]})

    order = ingest_order(order_input(state="CA")).order

    candidates = order.decisions.get().candidates
    assert candidates[0]["warehouses"] == ["WEST"]
    pa = next(c for c in candidates if c["warehouses"] == ["PA"])
    assert pa["score"] < candidates[0]["score"]


@pytest.mark.parametrize(("ship_type", "quantity"), [("ltl", 1), ("parcel", 150)])
def test_ship_type_action_overrides_the_weight_and_carton_thresholds(network, ship_type, quantity):
    # 150 × 500 g = 75 kg, above the 68 kg LTL threshold: parcel only because a rule says so.
    stock.receive(sku=network["skus"]["TEE"], warehouse=network["warehouses"]["PA"], quantity=100)
    publish({"state_in": ["NY"]}, {"ship_from": "PA", "ship_type": ship_type})

    order = ingest_order(order_input(state="NY", lines=[("TEE", quantity)])).order

    assert order.fulfillments.get().ship_type == ship_type


@pytest.mark.parametrize(("quantity", "ship_type"), [(135, "parcel"), (136, "ltl")])
def test_without_a_rule_heavy_shipments_go_ltl_by_the_brands_threshold(
    network, quantity, ship_type
):
    # 68 kg default threshold; TEE weighs 500 g: 136 × 0.5 = 68 kg.
    stock.receive(sku=network["skus"]["TEE"], warehouse=network["warehouses"]["PA"], quantity=100)
    order = ingest_order(order_input(state="NY", lines=[("TEE", quantity)])).order

    assert order.fulfillments.get().ship_type == ship_type


def test_ltl_by_unit_count_threshold(network):
    from orders.models import RoutingSettings

    RoutingSettings.objects.update_or_create(defaults={"ltl_units": 20})

    small = ingest_order(order_input(state="NY", lines=[("TEE", 19)])).order
    large = ingest_order(order_input(state="NY", lines=[("TEE", 20)])).order

    assert (small.fulfillments.get().ship_type, large.fulfillments.get().ship_type) == (
        "parcel",
        "ltl",
    )
