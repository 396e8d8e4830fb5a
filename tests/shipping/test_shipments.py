"""Shipments: parcel vs LTL, rate shopping with the sandbox carrier, lane-scored choice."""

from __future__ import annotations

from decimal import Decimal

import pytest

from orders.models import DecisionLayer, RoutingDecision, Rule, RuleSet, ShipType
from shipping import services
from shipping.models import RateQuote, ShipmentState
from tests.shipping.factories import history, make_fo


@pytest.mark.parametrize(
    ("weight_kg", "quantity", "order_type", "company", "expected", "why"),
    [
        ("2", 1, "dtc", "", ShipType.PARCEL, "under every LTL threshold"),
        ("70", 1, "dtc", "", ShipType.LTL, "68"),
        ("10", 7, "dtc", "", ShipType.LTL, "cartons"),  # 70 kg → also weight; see next
        ("5", 1, "wholesale", "Target Corp", ShipType.LTL, "retail chain"),
        ("5", 1, "wholesale", "", ShipType.PARCEL, "under every LTL threshold"),
    ],
)
def test_ship_type_follows_the_brand_thresholds(
    alpha, weight_kg, quantity, order_type, company, expected, why
):
    # given: a fulfillment order of that weight and kind
    fo = make_fo(weight_kg=weight_kg, quantity=quantity, order_type=order_type, company=company)
    # when
    shipment = services.create_shipment(fo)
    # then
    assert shipment.ship_type == expected
    assert why in shipment.ship_type_reason or why == "cartons"


def test_carton_threshold_alone_sends_it_ltl(alpha):
    fo = make_fo(weight_kg="1")
    shipment = services.create_shipment(fo, cartons=6)
    assert shipment.ship_type == ShipType.LTL
    assert "6 cartons" in shipment.ship_type_reason


def test_a_routing_rule_that_set_the_ship_type_wins_over_thresholds(alpha):
    # given: a rule "ship as LTL" decided this fulfillment order, although it weighs 2 kg
    rule_set = RuleSet.objects.create(version=77, status="published")
    Rule.objects.create(
        rule_set=rule_set, position=1, name="Pallets for B2B", actions={"ship_type": "ltl"}
    )
    fo = make_fo(weight_kg="2", ship_type="ltl")
    RoutingDecision.objects.filter(pk=fo.decision_id).update(
        layer=DecisionLayer.RULES, rule_set_version=77, rule_name="Pallets for B2B"
    )
    fo.refresh_from_db()
    # when
    shipment = services.create_shipment(fo)
    # then
    assert shipment.ship_type == ShipType.LTL
    assert "Pallets for B2B" in shipment.ship_type_reason


def test_creating_twice_returns_the_live_shipment(alpha):
    fo = make_fo()
    assert services.create_shipment(fo).pk == services.create_shipment(fo).pk


def test_rating_quotes_the_sandbox_and_stores_the_table_and_reason(alpha):
    # given
    shipment = services.create_shipment(make_fo(weight_kg="2"))
    # when
    shipment = services.rate_shipment(shipment)
    # then: four sandbox services quoted, every one scored, one chosen with a sentence
    quotes = list(RateQuote.objects.filter(shipment=shipment))
    assert len(quotes) == 4
    assert all(q.score is not None for q in quotes)
    assert shipment.state == ShipmentState.RATED
    assert shipment.chosen_quote_id in {q.pk for q in quotes}
    assert len(shipment.choice_table) == 4
    assert shipment.choice_table[0]["ref"] == str(shipment.chosen_quote_id)
    assert shipment.choice_inputs["weights"] == {"price": 0.5, "reliability": 0.35, "transit": 0.15}
    assert shipment.choice_reason.startswith(shipment.chosen_quote.label)
    assert shipment.lane == "900→NY"


def test_lane_history_moves_the_choice_away_from_a_cheap_late_carrier(alpha):
    # given: on 900→NY the cheapest service (Ground Saver) was on time 8 of 40 times,
    # Ground 39 of 40
    lane = "900→NY"
    history(carrier="SandboxPost", service="Ground Saver", lane=lane, on_time=8, late=32)
    history(carrier="SandboxPost", service="Ground", lane=lane, on_time=39, late=1)
    shipment = services.create_shipment(make_fo(weight_kg="2"))
    # when
    shipment = services.rate_shipment(shipment)
    # then
    chosen = shipment.chosen_quote
    assert (chosen.carrier, chosen.service) == ("SandboxPost", "Ground")
    saver = shipment.quotes.get(service="Ground Saver")
    assert saver.amount < chosen.amount
    assert "dearer than the cheapest but 98 % on time on 900→NY" in shipment.choice_reason
    assert "vs 20 % for SandboxPost Ground Saver" in shipment.choice_reason


def test_without_history_the_cheapest_wins(alpha):
    shipment = services.rate_shipment(services.create_shipment(make_fo(weight_kg="2")))
    cheapest = min(shipment.quotes.all(), key=lambda q: q.amount)
    assert shipment.chosen_quote_id == cheapest.pk
    assert "the cheapest" in shipment.choice_reason


def test_per_channel_weights_override_the_brand_weights(alpha, owner):
    # given: wholesale buyers on channel "faire" care only about transit time
    services.update_settings(
        actor=owner, channel_weights={"faire": {"price": "0", "reliability": "0", "transit": "1"}}
    )
    shipment = services.create_shipment(make_fo(weight_kg="2", channel="faire"))
    # when
    shipment = services.rate_shipment(shipment)
    # then: the fastest (next day) wins
    assert shipment.chosen_quote.estimated_days == 1
    assert shipment.choice_inputs["weights"] == {"price": 0.0, "reliability": 0.0, "transit": 1.0}


def test_ltl_shipments_are_not_parcel_rated(alpha):
    shipment = services.create_shipment(make_fo(weight_kg="80"))
    with pytest.raises(services.ShippingError) as err:
        services.rate_shipment(shipment)
    assert err.value.code == "ltl"
    assert not shipment.quotes.exists()


def test_settings_threshold_is_mirrored_into_the_approval_policy(alpha, owner):
    services.update_settings(actor=owner, label_approval_threshold="120")
    assert services.label_threshold() == Decimal("120.00")


def test_weights_must_be_sane(alpha, owner):
    with pytest.raises(services.ShippingError) as err:
        services.update_settings(
            actor=owner, weight_price="0", weight_reliability="0", weight_transit="0"
        )
    assert "weight_price" in err.value.message_dict


def test_the_database_aggregated_history_equals_the_row_by_row_one(alpha):
    # given: outcomes on two lanes with ratings, damage and invoiced costs
    from shipping.models import CarrierOutcome
    from shipping.scoring import History

    history(carrier="UPS", service="Ground", lane="900→CA", on_time=7, late=3)
    history(carrier="UPS", service="Air", lane="100→NY", on_time=4, late=1)
    history(carrier="USPS", service="Ground", lane="900→CA", on_time=2, late=2)
    for i, row in enumerate(CarrierOutcome.objects.order_by("id")):
        row.rating = (i % 5) + 1 if i % 3 else None
        row.damaged = i % 4 == 0
        row.quoted_cost = Decimal("10.00")
        row.invoiced_cost = Decimal("10.00") + Decimal(i % 3)
        row.save()
    # when
    fast = services.scoring_history("900→CA", weeks=12)
    slow = History.of(services.lane_history(weeks=12))
    # then: same carrier records, same lane records for the lane asked
    assert set(fast.carrier) == set(slow.carrier) == {"UPS", "USPS"}
    for carrier, stats in slow.carrier.items():
        got = fast.carrier[carrier]
        assert (got.deliveries, got.timed, got.on_time, got.damaged) == (
            stats.deliveries,
            stats.timed,
            stats.on_time,
            stats.damaged,
        )
        assert (got.variance_n, got.rating_n) == (stats.variance_n, stats.rating_n)
        assert got.variance_sum == pytest.approx(stats.variance_sum)
        assert got.rating_sum == pytest.approx(stats.rating_sum)
    assert set(fast.lane) == {k for k in slow.lane if k[0] == "900→CA"}
