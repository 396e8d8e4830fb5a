"""LTL: quotes from two freight sources (broker and direct carrier fakes over HTTP), the
variance rule behind the "freight_booking" approval, booking with a BOL PDF stored under
bol/active/ then bol/shipped/, and proof of delivery completing the shipment."""

from __future__ import annotations

import io
from collections.abc import Iterator
from decimal import Decimal

import pytest
from django.core.files.storage import default_storage
from pypdf import PdfReader

from approvals import services as approvals
from approvals.registry import Facts
from connectors.clock import VirtualClock
from shipping import freight, services
from shipping.models import BookingStatus, CarrierOutcome, FreightBooking, ShipmentState
from sync import plugins
from sync import services as sync
from tests.fakes.ltl_broker import FakeLtlBroker
from tests.fakes.ltl_direct import FakeLtlDirect
from tests.shipping.factories import make_fo


@pytest.mark.parametrize(
    ("variance_pct", "needs_approval"),
    [
        (Decimal("0"), False),
        (Decimal("20"), False),
        (Decimal("50.00"), False),  # "over 50 %": exactly 50 passes
        (Decimal("50.01"), True),
        (Decimal("180"), True),
        (None, True),  # one quote: the spread is unknown, never assumed small
    ],
)
def test_the_variance_rule(alpha, variance_pct, needs_approval):
    facts = Facts(title="Freight", amount=Decimal("400"), variance_pct=variance_pct)
    assert (approvals.requirement("freight_booking", facts) is not None) is needs_approval


@pytest.fixture
def ltl(alpha, monkeypatch, settings, request) -> Iterator[tuple[FakeLtlBroker, FakeLtlDirect]]:
    settings.KEEL_CONNECTOR_EGRESS_PERMISSIVE = True
    clock = VirtualClock()
    monkeypatch.setattr(plugins, "clock", clock)
    factor = getattr(request, "param", Decimal("1.1"))
    with (
        FakeLtlBroker(clock=clock) as broker,
        FakeLtlDirect(clock=clock, price_factor=factor) as direct,
    ):
        sync.create_connection(
            connector="ltl_broker",
            display_name="Freight broker",
            channel_key="ltl-broker",
            settings={"api_base_url": broker.base_url},
            credentials={"api_key": broker.api_key},
        )
        sync.create_connection(
            connector="ltl_direct",
            display_name="Direct LTL carrier",
            channel_key="ltl-direct",
            settings={"api_base_url": direct.base_url, "account_number": direct.account_number},
            credentials={"api_key": direct.api_key},
        )
        yield broker, direct


def ltl_shipment(**kw):
    fo = make_fo(
        weight_kg="400",
        dest_state="TX",
        dest_postal="75201",
        company="Big Box Stores",
        order_type="wholesale",
        **kw,
    )
    fo.order.note = "Dock 4, call 30 min ahead"
    fo.order.save()
    shipment = services.create_shipment(fo)
    assert shipment.ship_type == "ltl"
    return shipment


def test_quotes_come_from_both_sources_and_a_close_spread_books_without_approval(ltl, oncommit):
    broker, direct = ltl
    shipment = freight.quote_freight(ltl_shipment())
    sources = set(shipment.freight_quotes.values_list("source", flat=True))
    assert sources == {"Freight broker", "Direct LTL carrier"}
    assert shipment.freight_variance_pct is not None
    assert shipment.freight_variance_pct <= Decimal("50")
    assert shipment.chosen_freight_quote.total == min(
        q.total for q in shipment.freight_quotes.all()
    )
    assert shipment.state == ShipmentState.RATED
    # when
    result = oncommit(freight.request_booking, shipment)
    # then: booked at once with the BOL under bol/active/
    assert result["state"] == "booking" and "approval" not in result
    booking = FreightBooking.objects.get(shipment=shipment)
    assert booking.status == BookingStatus.BOOKED and booking.bol_number
    assert booking.bol_document.name.startswith("bol/active/")
    text = PdfReader(io.BytesIO(booking.bol_document.read())).pages[0].extract_text()
    wh = shipment.warehouse
    for expected in (
        "BILL OF LADING",
        booking.bol_number,
        wh.name,
        "1 Dock Rd",
        "Big Box Stores",
        "75201",
        "Pallets: 1",
        "Freight class: 70",
        "882 lb",
        f"FO-{shipment.fulfillment_id}",
        shipment.reference,
        "Dock 4, call 30 min ahead",
    ):
        assert expected in text, expected
    shipment.refresh_from_db()
    assert shipment.state == ShipmentState.LABEL_PURCHASED
    assert shipment.tracking_number in (booking.pro_number, booking.bol_number)


@pytest.mark.parametrize("ltl", [Decimal("2.2")], indirect=True)
def test_a_wide_spread_needs_approval_before_booking(ltl, owner, ops, oncommit):
    broker, direct = ltl
    shipment = freight.quote_freight(ltl_shipment())
    assert shipment.freight_variance_pct > Decimal("50")
    result = oncommit(freight.request_booking, shipment, actor=ops)
    assert result["state"] == "pending"
    assert not FreightBooking.objects.filter(shipment=shipment).exists()
    assert broker.booked_count() == 0 and direct.booked_count() == 0
    request = result["approval"]
    assert request.facts["variance_pct"] == str(shipment.freight_variance_pct)
    # approved: booked once
    oncommit(approvals.approve, request.pk, actor=owner)
    booking = FreightBooking.objects.get(shipment=shipment)
    assert booking.status == BookingStatus.BOOKED
    assert booking.approval_request_id == request.pk
    assert broker.booked_count() + direct.booked_count() == 1


def test_pod_upload_completes_the_shipment_and_moves_the_bol(ltl, ops, oncommit, events_seen):
    shipment = freight.quote_freight(ltl_shipment())
    oncommit(freight.request_booking, shipment)
    booking = FreightBooking.objects.get(shipment=shipment)
    active = booking.bol_document.name
    # when: the signed delivery receipt comes back with the invoiced cost
    final = booking.quoted_total + Decimal("35.00")
    freight.upload_pod(
        shipment,
        content=b"%PDF-1.4 signed",
        filename="signed-bol.pdf",
        signed_by="J. Doe",
        final_total=final,
        actor=ops,
    )
    # then
    booking.refresh_from_db()
    shipment.refresh_from_db()
    assert shipment.state == ShipmentState.DELIVERED
    assert booking.status == BookingStatus.DELIVERED
    assert booking.bol_document.name.startswith("bol/shipped/")
    assert not default_storage.exists(active)
    assert default_storage.exists(booking.bol_document.name)
    assert booking.pod_document.read() == b"%PDF-1.4 signed"
    outcome = CarrierOutcome.objects.get(shipment=shipment)
    assert (outcome.quoted_cost, outcome.invoiced_cost) == (booking.quoted_total, final)
    assert outcome.lane == shipment.lane
    assert events_seen() == [("shipment.delivered", str(shipment.pk))]
    with pytest.raises(services.ShippingError):
        freight.upload_pod(shipment, content=b"again", actor=ops)


def test_a_crash_after_booking_is_recovered_with_one_booking(ltl, oncommit):
    from unittest import mock

    broker, direct = ltl
    shipment = freight.quote_freight(ltl_shipment())
    with mock.patch.object(freight, "commit_booking", side_effect=RuntimeError("killed")):
        oncommit(freight.request_booking, shipment)
    booking = FreightBooking.objects.get(shipment=shipment)
    assert booking.status == BookingStatus.BOOKING
    assert broker.booked_count() + direct.booked_count() == 1
    assert freight.recover_bookings(now=booking.created_at + freight.RECOVER_AFTER) == 1
    booking.refresh_from_db()
    assert booking.status == BookingStatus.BOOKED
    assert broker.booked_count() + direct.booked_count() == 1


def test_freight_over_the_api_and_the_page(ltl, brand_a, django_capture_on_commit_callbacks):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from accounts.roles import Role
    from tests.conftest import brand_client, make_user

    client = brand_client(brand_a, make_user(brand_a, role=Role.OPS_MANAGER))
    shipment = ltl_shipment()
    quoted = client.post(f"/api/v1/shipping/shipments/{shipment.pk}/freight-quote/")
    assert quoted.status_code == 200, quoted.content
    with django_capture_on_commit_callbacks(execute=True):
        booked = client.post(f"/api/v1/shipping/shipments/{shipment.pk}/book/")
    assert booked.status_code in (201, 202), booked.content
    booking = FreightBooking.objects.get(shipment=shipment)
    page = client.get(f"/shipping/{shipment.pk}/").content.decode()
    assert "Bill of lading (PDF)" in page and "Upload proof of delivery" in page
    bol = client.get(f"/shipping/bookings/{booking.pk}/bol/")
    assert bol.status_code == 200 and bol["Content-Type"] == "application/pdf"
    pod = client.post(
        f"/api/v1/shipping/shipments/{shipment.pk}/pod/",
        {
            "document": SimpleUploadedFile("signed.pdf", b"%PDF-1.4 signed", "application/pdf"),
            "signed_by": "R. Receiver",
            "final_total": "210.00",
        },
    )
    assert pod.status_code == 200, pod.content
    assert pod.json()["status"] == "delivered" and pod.json()["final_total"] == "210.00"
    shipment.refresh_from_db()
    assert shipment.state == ShipmentState.DELIVERED


def test_freight_tracking_then_the_carriers_pod_completes_it(ltl, oncommit):
    # given: booked freight; the fakes' timeline runs on the virtual clock
    broker, direct = ltl
    shipment = freight.quote_freight(ltl_shipment())
    oncommit(freight.request_booking, shipment)
    booking = FreightBooking.objects.get(shipment=shipment)
    # when: days pass and tracking is polled, then the POD is collected
    plugins.clock.advance(10 * 86400)
    counts = services.poll_tracking()
    assert counts["polled"] == 1 and counts["errors"] == 0
    shipment.refresh_from_db()
    assert shipment.delivered_at is not None
    assert shipment.state != ShipmentState.DELIVERED  # LTL completes with its POD
    assert freight.collect_pods() == 1
    # then
    booking.refresh_from_db()
    shipment.refresh_from_db()
    assert booking.status == BookingStatus.DELIVERED and booking.pod_document
    assert booking.bol_document.name.startswith("bol/shipped/")
    assert shipment.state == ShipmentState.DELIVERED


@pytest.mark.parametrize("ltl", [Decimal("2.2")], indirect=True)
def test_the_inbox_shows_the_freight_quotes_and_the_spread(ltl, ops, oncommit):
    from shipping.approval_subject import freight_context

    shipment = freight.quote_freight(ltl_shipment())
    request = oncommit(freight.request_booking, shipment, actor=ops)["approval"]
    context = freight_context(request)
    assert ("Spread between quotes", f"{shipment.freight_variance_pct} %") in context.facts
    table = context.tables[0]
    assert table.caption == "Freight quotes"
    assert len(table.rows) == shipment.freight_quotes.count() >= 2
    assert {row[0] for row in table.rows} == {"Freight broker", "Direct LTL carrier"}
