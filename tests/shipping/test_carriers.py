"""The shipping flows against the Shippo- and EasyPost-shaped connectors and their fake
servers (real HTTP on loopback): rate shopping across connections, label purchase with
the carrier's own document, a crash or a lost answer after the carrier sold the label
(exactly one label there and here), tracking webhooks through the sync inbox, polling."""

from __future__ import annotations

from collections.abc import Iterator
from unittest import mock

import pytest

from connectors.clock import VirtualClock
from shipping import services
from shipping.models import Label, LabelStatus, ShipmentState
from sync import plugins
from sync import services as sync
from sync.models import Connection
from tests.fakes.easypost import FakeEasyPost
from tests.fakes.shippo import FakeShippo
from tests.shipping.factories import make_fo


@pytest.fixture
def clock(monkeypatch, settings) -> VirtualClock:
    settings.KEEL_CONNECTOR_EGRESS_PERMISSIVE = True
    clock = VirtualClock()
    monkeypatch.setattr(plugins, "clock", clock)
    return clock


@pytest.fixture
def shippo(alpha, clock) -> Iterator[tuple[FakeShippo, Connection]]:
    with FakeShippo(clock=clock) as fake:
        conn = sync.create_connection(
            connector="shippo",
            display_name="Shippo",
            channel_key="shippo-main",
            settings={"api_base_url": fake.url},
            credentials={"api_key": fake.api_key, "webhook_secret": fake.webhook_secret},
        )
        yield fake, conn


@pytest.fixture
def easypost(alpha, clock) -> Iterator[tuple[FakeEasyPost, Connection]]:
    with FakeEasyPost(clock=clock) as fake:
        conn = sync.create_connection(
            connector="easypost",
            display_name="EasyPost",
            channel_key="easypost-main",
            settings={"api_base_url": fake.url},
            credentials={"api_key": fake.api_key, "webhook_secret": fake.webhook_secret},
        )
        yield fake, conn


def rated_on(conn: Connection, **kw):
    shipment = services.rate_shipment(services.create_shipment(make_fo(**kw)))
    quote = shipment.quotes.filter(connection=conn).order_by("amount").first()
    assert quote is not None, shipment.choice_inputs
    return services.choose_quote(shipment, quote, actor=None)


def test_rates_come_from_every_carrier_connection(shippo, easypost):
    services.update_settings(actor=None, sandbox_carrier="always")
    shipment = services.rate_shipment(services.create_shipment(make_fo(weight_kg="2")))
    by_connection = {
        name: shipment.quotes.filter(connection__display_name=name).count()
        for name in ("Shippo", "EasyPost", "Sandbox carrier (built-in)")
    }
    assert all(count > 0 for count in by_connection.values()), by_connection
    assert len(shipment.choice_table) == shipment.quotes.count()
    assert shipment.choice_inputs["errors"] == {}


def test_a_shippo_label_is_bought_once_with_the_carriers_document(shippo, oncommit):
    fake, conn = shippo
    shipment = rated_on(conn)
    oncommit(services.request_label, shipment)
    label = Label.objects.get(shipment=shipment)
    assert label.status == LabelStatus.PURCHASED
    assert fake.labels_bought == 1
    assert label.document.read().startswith(b"%PDF")
    assert label.tracking_number


def test_shippo_crash_after_the_sale_is_recovered_without_a_second_purchase(shippo, oncommit):
    fake, conn = shippo
    shipment = rated_on(conn)
    with mock.patch.object(services, "commit_label", side_effect=RuntimeError("killed")):
        oncommit(services.request_label, shipment)
    label = Label.objects.get(shipment=shipment)
    assert label.status == LabelStatus.PURCHASING
    assert fake.labels_bought == 1
    services.recover_purchases(now=label.created_at + services.RECOVER_AFTER)
    label.refresh_from_db()
    assert label.status == LabelStatus.PURCHASED
    assert fake.labels_bought == 1
    assert Label.objects.filter(shipment=shipment).count() == 1


def test_easypost_lost_answer_ends_with_one_label(easypost, oncommit):
    # given: EasyPost buys the label but its answer never reaches us (504)
    fake, conn = easypost
    shipment = rated_on(conn)
    fake.lose_next_answer("POST", r"/v2/shipments/shp_\w+/buy")
    # when
    oncommit(services.request_label, shipment)
    services.recover_purchases(
        now=Label.objects.get(shipment=shipment).created_at + services.RECOVER_AFTER
    )
    # then: the connector's retry (or our recovery) found the purchase: one label
    label = Label.objects.get(shipment=shipment)
    assert label.status == LabelStatus.PURCHASED
    assert fake.labels_bought == 1


def test_a_carrier_refusal_fails_the_purchase_and_frees_the_shipment(shippo, oncommit):
    fake, conn = shippo
    shipment = rated_on(conn)
    fake.refuse_next_purchase("Address not deliverable")
    oncommit(services.request_label, shipment)
    label = Label.objects.get(shipment=shipment)
    assert label.status == LabelStatus.FAILED
    shipment.refresh_from_db()
    assert shipment.state == ShipmentState.RATED


def test_shippo_tracking_webhooks_arrive_through_the_sync_inbox(shippo, oncommit):
    fake, conn = shippo
    shipment = rated_on(conn)
    oncommit(services.request_label, shipment)
    shipment.refresh_from_db()
    # when: Shippo posts track_updated deliveries to the connection's webhook URL
    for status, details, substatus in (
        ("TRANSIT", "Departed facility", None),
        ("TRANSIT", "Address issue: unit missing", "address_issue"),
    ):
        track = fake.scan(shipment.tracking_number, status, details, substatus=substatus)
        headers, body = fake.webhook_delivery(track)
        outcome = sync.receive_webhook(token=str(conn.uuid), headers=headers, body=body)
        assert outcome.status == 200
        sync.process_receipt(outcome.receipt_id)  # what the sync task does
    counts = services.apply_carrier_webhooks()
    # then
    shipment.refresh_from_db()
    assert counts["receipts"] == 2
    assert shipment.state == ShipmentState.EXCEPTION
    assert shipment.exceptions.get().kind == "address"
    assert shipment.events.filter(source="webhook").count() >= 2
    # read again: nothing new
    assert services.apply_carrier_webhooks() == {"receipts": 0, "events": 0}


def test_easypost_tracking_by_polling(easypost, oncommit):
    fake, conn = easypost
    shipment = rated_on(conn)
    oncommit(services.request_label, shipment)
    shipment.refresh_from_db()
    fake.scan(shipment.tracking_number, "in_transit", "arrived_at_facility", "Arrived")
    fake.scan(shipment.tracking_number, "delivered", "arrived_at_destination", "Delivered")
    counts = services.poll_tracking()
    assert counts["polled"] == 1 and counts["errors"] == 0
    shipment.refresh_from_db()
    assert shipment.state == ShipmentState.DELIVERED


def test_the_sandbox_carrier_steps_aside_once_a_real_carrier_is_connected(shippo):
    fake, conn = shippo
    assert [c.pk for c in services.carrier_connections()] == [conn.pk]
    services.update_settings(actor=None, sandbox_carrier="always")
    assert {c.connector for c in services.carrier_connections()} == {"shippo", "sandbox_carrier"}
    services.update_settings(actor=None, sandbox_carrier="never")
    Connection.objects.filter(pk=conn.pk).update(status="paused")
    assert services.carrier_connections() == []


def test_a_shippo_delivery_posted_to_the_webhook_url_delivers_the_parcel(
    shippo, oncommit, brand_a, events_seen
):
    from sync.models import WebhookReceipt
    from tests.conftest import brand_client

    fake, conn = shippo
    shipment = rated_on(conn)
    oncommit(services.request_label, shipment)
    shipment.refresh_from_db()
    # when: Shippo POSTs track_updated to /hooks/<uuid>/ on the brand's host
    client = brand_client(brand_a)
    for status, details in (("TRANSIT", "Departed facility"), ("DELIVERED", "Delivered")):
        track = fake.scan(shipment.tracking_number, status, details)
        headers, body = fake.webhook_delivery(track)
        response = client.post(
            f"/hooks/{conn.uuid}/",
            data=body,
            content_type="application/json",
            HTTP_SHIPPO_AUTH_SIGNATURE=headers["Shippo-Auth-Signature"],
        )
        assert response.status_code == 200
    for receipt in WebhookReceipt.objects.filter(connection=conn).order_by("id"):
        sync.process_receipt(receipt.pk)  # the sync task
    services.apply_carrier_webhooks()  # shipping.minutely
    # then
    shipment.refresh_from_db()
    assert shipment.state == ShipmentState.DELIVERED
    assert events_seen() == [("shipment.delivered", str(shipment.pk))]
