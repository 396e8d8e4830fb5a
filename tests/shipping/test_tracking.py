"""Tracking events (webhook and poll), delivery completion and the exception monitor."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from connectors import types as ct
from orders.models import FulfillmentStatus
from shipping import services
from shipping.models import (
    CarrierOutcome,
    ExceptionStatus,
    ShipmentException,
    ShipmentState,
    TrackingEvent,
)

T = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def ev(shipment, status, at, description="", exception=None):
    return ct.TrackingEvent(shipment.tracking_number, status, at, description, exception=exception)


def test_events_are_stored_once_and_move_the_shipment(alpha, shipped):
    shipment = shipped()
    events = [
        ev(shipment, "pre_transit", T - timedelta(days=2), "Label created"),
        ev(shipment, "in_transit", T - timedelta(days=1), "Accepted"),
    ]
    assert services.ingest_tracking(shipment, events) == 2
    assert services.ingest_tracking(shipment, events) == 0
    shipment.refresh_from_db()
    assert shipment.state == ShipmentState.IN_TRANSIT
    assert shipment.shipped_at == T - timedelta(days=1)
    assert shipment.last_scan_at == T - timedelta(days=1)
    assert shipment.fulfillment.status == FulfillmentStatus.SHIPPED
    assert shipment.fulfillment.tracking_number == shipment.tracking_number
    assert TrackingEvent.objects.filter(shipment=shipment).count() == 2


def test_a_delivered_scan_completes_feeds_the_lane_and_publishes(alpha, shipped, events_seen):
    shipment = shipped()
    promised = shipment.promised_days
    start = T - timedelta(days=promised)
    services.ingest_tracking(
        shipment,
        [
            ev(shipment, "in_transit", start),
            ev(shipment, "delivered", start + timedelta(days=promised, hours=-2), "Front door"),
        ],
        source="webhook",
    )
    shipment.refresh_from_db()
    assert shipment.state == ShipmentState.DELIVERED
    outcome = CarrierOutcome.objects.get(shipment=shipment)
    assert outcome.on_time is True
    assert outcome.lane == shipment.lane == "900→NY"
    assert outcome.quoted_cost == outcome.invoiced_cost == shipment.chosen_quote.amount
    assert events_seen() == [("shipment.delivered", str(shipment.pk))]
    # the lane statistics see it
    rows = services.carrier_performance(lane="900→NY")
    assert [(r.carrier, r.service, r.deliveries, r.on_time) for r in rows] == [
        (shipment.carrier, shipment.service, 1, 1.0)
    ]


def test_a_delivered_scan_with_an_open_exception_waits_for_its_resolution(
    alpha, shipped, ops, events_seen
):
    shipment = shipped()
    services.ingest_tracking(
        shipment,
        [
            ev(shipment, "in_transit", T - timedelta(days=2)),
            ev(
                shipment,
                "exception",
                T - timedelta(days=1),
                "Damaged in handling",
                exception="damaged",
            ),
            ev(shipment, "delivered", T),
        ],
    )
    shipment.refresh_from_db()
    assert shipment.state == ShipmentState.EXCEPTION
    exc = ShipmentException.objects.get(shipment=shipment)
    assert (exc.kind, exc.suggested_action) == ("damage", "reship")
    assert not CarrierOutcome.objects.filter(shipment=shipment).exists()
    services.resolve_exception(exc, actor=ops, resolution="Customer kept it, partial refund")
    shipment.refresh_from_db()
    assert shipment.state == ShipmentState.DELIVERED
    assert CarrierOutcome.objects.get(shipment=shipment).damaged is True
    assert events_seen() == [
        ("shipment.exception", str(exc.pk)),
        ("shipment.delivered", str(shipment.pk)),
    ]


def test_the_monitor_raises_exactly_the_expected_exceptions_once(alpha, shipped, owner):
    # given (clock frozen at T): five shipments with scan histories
    silent = shipped()  # last scan 40 h ago
    services.ingest_tracking(silent, [ev(silent, "in_transit", T - timedelta(hours=40))])
    late = shipped()  # on its way 5 days against a 3-day quote (+20 % = 3.6 days)
    late.promised_days = 3
    late.save()
    services.ingest_tracking(
        late,
        [
            ev(late, "in_transit", T - timedelta(days=5)),
            ev(late, "in_transit", T - timedelta(hours=10), "Hub"),
        ],
    )
    address = shipped()  # a carrier address problem, stored without the raise
    services.ingest_tracking(address, [ev(address, "in_transit", T - timedelta(hours=5))])
    TrackingEvent.objects.create(
        shipment=address,
        event_key="addr-1",
        status="exception",
        occurred_at=T - timedelta(hours=3),
        description="Address issue: apartment number missing",
        exception_kind="address",
    )
    fine = shipped()  # scanned 2 h ago, 1 day out of 3
    services.ingest_tracking(
        fine,
        [
            ev(fine, "in_transit", T - timedelta(days=1)),
            ev(fine, "in_transit", T - timedelta(hours=2)),
        ],
    )
    delivered = shipped()
    services.ingest_tracking(
        delivered,
        [
            ev(delivered, "in_transit", T - timedelta(days=6)),
            ev(delivered, "delivered", T - timedelta(days=4)),
        ],
    )
    assert not ShipmentException.objects.exists()

    # when: one monitor run
    counts = services.monitor_exceptions(now=T)

    # then: exactly these
    raised = sorted(
        (e.shipment_id, e.kind, e.suggested_action) for e in ShipmentException.objects.all()
    )
    assert raised == sorted(
        [
            (silent.pk, "no_scan", "contact_carrier"),
            (late.pk, "late", "contact_carrier"),
            (address.pk, "address", "fix_address"),
        ]
    )
    assert counts == {"no_scan": 1, "late": 1, "carrier": 1, "escalated": 0}
    for s in (silent, late, address):
        s.refresh_from_db()
        assert s.state == ShipmentState.EXCEPTION

    # a second run: nothing new
    assert services.monitor_exceptions(now=T + timedelta(minutes=15)) == {
        "no_scan": 0,
        "late": 0,
        "carrier": 0,
        "escalated": 0,
    }
    assert ShipmentException.objects.count() == 3

    # unattended for 8 hours: escalated to the owner, once
    acknowledged = ShipmentException.objects.get(kind="late")
    services.acknowledge_exception(acknowledged, actor=owner)
    later = services.monitor_exceptions(now=T + timedelta(hours=9))
    assert later["escalated"] == 2
    escalated = ShipmentException.objects.filter(escalated_at__isnull=False)
    assert {e.kind for e in escalated} == {"no_scan", "address"}
    assert all(e.owner_id == owner.pk for e in escalated)
    assert services.monitor_exceptions(now=T + timedelta(hours=10))["escalated"] == 0


def test_a_new_scan_then_new_silence_is_a_new_cause(alpha, shipped):
    shipment = shipped()
    services.ingest_tracking(shipment, [ev(shipment, "in_transit", T - timedelta(hours=40))])
    services.monitor_exceptions(now=T)
    services.ingest_tracking(shipment, [ev(shipment, "in_transit", T + timedelta(hours=1))])
    services.monitor_exceptions(now=T + timedelta(hours=2))
    assert ShipmentException.objects.filter(shipment=shipment, kind="no_scan").count() == 1
    services.monitor_exceptions(now=T + timedelta(hours=40))
    assert ShipmentException.objects.filter(shipment=shipment, kind="no_scan").count() == 2


def test_polling_asks_the_carrier_and_ingests_its_timeline(alpha, shipped, monkeypatch):
    # given: the sandbox carrier on a virtual clock; the label is bought at T
    from connectors.clock import VirtualClock
    from sync import plugins

    clock = VirtualClock(T)
    monkeypatch.setattr(plugins, "clock", clock)
    shipment = shipped()
    # when: polled 10 hours later, then again after its quoted days
    clock.advance(10 * 3600)
    assert services.poll_tracking() == {"polled": 1, "events": 2, "errors": 0}
    shipment.refresh_from_db()
    assert shipment.state == ShipmentState.IN_TRANSIT
    clock.advance(10 * 86400)
    assert services.poll_tracking()["events"] == 2
    # then
    shipment.refresh_from_db()
    assert shipment.state == ShipmentState.DELIVERED
    assert [e.status for e in shipment.events.all()] == [
        "pre_transit",
        "in_transit",
        "out_for_delivery",
        "delivered",
    ]
    assert services.poll_tracking() == {"polled": 0, "events": 0, "errors": 0}


def test_resolving_needs_a_resolution(alpha, shipped, ops):
    shipment = shipped()
    services.ingest_tracking(shipment, [ev(shipment, "returned", T, "Return to sender")])
    exc = ShipmentException.objects.get(shipment=shipment)
    assert exc.kind == "return_to_sender"
    shipment.refresh_from_db()
    assert shipment.state == ShipmentState.RETURNED
    with pytest.raises(services.ShippingError) as err:
        services.resolve_exception(exc, actor=ops, resolution=" ")
    assert "resolution" in err.value.message_dict
    exc.refresh_from_db()
    assert exc.status == ExceptionStatus.OPEN


def test_a_reship_is_a_new_shipment_whose_label_goes_through_approval(
    alpha, shipped, ops, owner, oncommit
):
    from decimal import Decimal

    shipment = shipped()
    services.ingest_tracking(
        shipment, [ev(shipment, "exception", T, "Damaged", exception="damaged")]
    )
    exc = ShipmentException.objects.get(shipment=shipment)
    replacement = services.propose_reship(exc, actor=ops)
    assert replacement.pk != shipment.pk
    assert replacement.fulfillment_id == shipment.fulfillment_id
    assert replacement.state == ShipmentState.DRAFT
    assert "Reship of" in replacement.ship_type_reason
    # a reship priced above the threshold waits for approval like any label
    from approvals import services as approvals
    from approvals.models import ApprovalPolicy

    approvals.update_policy(
        ApprovalPolicy.objects.get(subject_type="shipping_label"),
        actor=owner,
        amount_above=Decimal("1"),
    )
    replacement = services.rate_shipment(replacement)
    result = oncommit(services.request_label, replacement, actor=ops)
    assert result.state == "pending"
    assert not replacement.labels.exists()


def test_ops_rate_a_delivery_and_it_feeds_reliability(alpha, shipped, ops):
    shipment = shipped()
    services.ingest_tracking(shipment, [ev(shipment, "delivered", T)])
    outcome = services.rate_delivery(shipment, 1, actor=ops)
    assert outcome.rating == 1
    rows = services.carrier_performance(lane=shipment.lane)
    assert rows[0].rating == 1.0
    with pytest.raises(services.ShippingError) as err:
        services.rate_delivery(shipment, 9, actor=ops)
    assert "rating" in err.value.message_dict
