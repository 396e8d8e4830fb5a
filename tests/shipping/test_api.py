"""Shipping over the REST API: create, rate, label (bought or 202 behind approval),
tracking, exceptions, lanes; permissions and the error format."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django_tenants.utils import schema_context

from accounts.roles import Role
from connectors import types as ct
from shipping import services
from shipping.models import Label, Shipment, ShipmentException
from tests.conftest import brand_client, make_user
from tests.shipping.factories import make_fo

JSON = "application/json"


@pytest.fixture(autouse=True)
def _generous_rate_limit(settings):
    settings.API_RATE_LIMIT = "100000/min"


@pytest.fixture
def ops_client(brand_a):
    return brand_client(brand_a, make_user(brand_a, role=Role.OPS_MANAGER))


def test_create_rate_and_buy_a_label(brand_a, ops_client, django_capture_on_commit_callbacks):
    with schema_context(brand_a.schema_name):
        fo = make_fo(weight_kg="2")
    created = ops_client.post(
        "/api/v1/shipping/shipments/", {"fulfillment_order": fo.pk}, content_type=JSON
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert (body["ship_type"], body["state"], body["lane"]) == ("parcel", "draft", "900→NY")

    rated = ops_client.post(f"/api/v1/shipping/shipments/{body['id']}/rate/")
    assert rated.status_code == 200
    rated = rated.json()
    assert rated["state"] == "rated" and len(rated["quotes"]) == 4
    assert rated["choice_reason"]

    with django_capture_on_commit_callbacks(execute=True):
        bought = ops_client.post(
            f"/api/v1/shipping/shipments/{body['id']}/label/", {"format": "pdf"}, content_type=JSON
        )
    # (the test's transaction defers the after-commit purchase past the response: a client
    # may get 202 "purchasing" and read the label again)
    assert bought.status_code in (201, 202), bought.content
    label = ops_client.get(f"/api/v1/shipping/labels/{bought.json()['id']}/").json()
    assert label["status"] == "purchased" and label["tracking_number"].startswith("SBX1Z")
    document = ops_client.get(label["document_url"])
    assert document.status_code == 200
    assert document["Content-Type"] == "application/pdf"
    assert b"".join(document.streaming_content).startswith(b"%PDF")


def test_an_expensive_label_answers_202_with_the_approval_request(brand_a, ops_client):
    with schema_context(brand_a.schema_name):
        shipment = services.rate_shipment(services.create_shipment(make_fo(weight_kg="30")))
        quote = shipment.quotes.filter(amount__gt=Decimal("75")).order_by("amount").first()
    chosen = ops_client.post(
        f"/api/v1/shipping/shipments/{shipment.pk}/choose/", {"quote": quote.pk}, content_type=JSON
    )
    assert chosen.status_code == 200
    response = ops_client.post(f"/api/v1/shipping/shipments/{shipment.pk}/label/")
    assert response.status_code == 202
    body = response.json()
    assert body["state"] == "pending"
    with schema_context(brand_a.schema_name):
        assert not Label.objects.filter(shipment=shipment).exists()
        from approvals.models import ApprovalRequest

        request = ApprovalRequest.objects.get(pk=body["approval_request"])
        assert request.subject_type == "shipping_label" and request.amount == quote.amount


def test_viewers_read_but_cannot_buy(brand_a):
    viewer = brand_client(brand_a, make_user(brand_a, role=Role.VIEWER))
    with schema_context(brand_a.schema_name):
        shipment = services.rate_shipment(services.create_shipment(make_fo()))
    assert viewer.get("/api/v1/shipping/shipments/").status_code == 200
    refused = viewer.post(f"/api/v1/shipping/shipments/{shipment.pk}/label/")
    assert refused.status_code == 403
    assert "error" in refused.json()
    with schema_context(brand_a.schema_name):
        assert not Label.objects.exists()
        assert Shipment.objects.get(pk=shipment.pk).state == "rated"


def test_a_refused_state_change_uses_the_error_format(brand_a, ops_client):
    with schema_context(brand_a.schema_name):
        shipment = services.create_shipment(make_fo())
    response = ops_client.post(f"/api/v1/shipping/shipments/{shipment.pk}/label/")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "state"


def test_tracking_exceptions_and_lanes(brand_a, ops_client, django_capture_on_commit_callbacks):
    with schema_context(brand_a.schema_name):
        shipment = services.rate_shipment(services.create_shipment(make_fo()))
        with django_capture_on_commit_callbacks(execute=True):
            services.request_label(shipment)
        shipment.refresh_from_db()
        at = datetime(2026, 11, 20, tzinfo=UTC)
        services.ingest_tracking(
            shipment,
            [
                ct.TrackingEvent(shipment.tracking_number, "in_transit", at),
                ct.TrackingEvent(
                    shipment.tracking_number,
                    "exception",
                    at,
                    "Address issue",
                    exception="address_issue",
                ),
            ],
        )
        exc = ShipmentException.objects.get(shipment=shipment)
    events = ops_client.get(f"/api/v1/shipping/shipments/{shipment.pk}/tracking/").json()
    assert [e["status"] for e in events] == ["in_transit", "exception"]
    listed = ops_client.get("/api/v1/shipping/exceptions/?status=open").json()["results"]
    assert [(e["id"], e["kind"], e["suggested_action"]) for e in listed] == [
        (exc.pk, "address", "fix_address")
    ]
    ack = ops_client.post(f"/api/v1/shipping/exceptions/{exc.pk}/acknowledge/")
    assert ack.status_code == 200 and ack.json()["status"] == "acknowledged"
    resolved = ops_client.post(
        f"/api/v1/shipping/exceptions/{exc.pk}/resolve/",
        {"resolution": "Customer confirmed apartment 4B"},
        content_type=JSON,
    )
    assert resolved.json()["status"] == "resolved"
    lanes = ops_client.get("/api/v1/shipping/lanes/")
    assert lanes.status_code == 200 and lanes.json() == []
