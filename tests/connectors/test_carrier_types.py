"""The carrier additions to the canonical types: label status and document, tracking
exceptions, tracking events on webhook events, carrier webhooks and label listing as
capabilities — all optional, so existing connectors and callers are unaffected."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from connectors.types import (
    KIND_CAPABILITIES,
    Capability,
    ConnectorInfo,
    ConnectorKind,
    Label,
    LabelStatus,
    Money,
    Rate,
    ServiceLevel,
    TrackingEvent,
    TrackingException,
    TrackingStatus,
    WebhookEvent,
    to_primitive,
)

NOW = datetime(2024, 6, 3, 12, 0, tzinfo=UTC)


def label(**overrides: object) -> Label:
    values: dict[str, object] = {
        "label_id": "tx_1",
        "tracking_number": "9400",
        "carrier": "USPS",
        "service": "Priority Mail",
        "cost": Money(Decimal("8.70"), "USD"),
        "created_at": NOW,
        **overrides,
    }
    return Label(**values)  # type: ignore[arg-type]


def test_labels_default_to_purchased_without_a_document():
    plain = label()
    assert plain.status is LabelStatus.PURCHASED and plain.document == b""


def test_label_status_is_coerced_and_documents_must_be_bytes():
    assert label(status="void_pending").status is LabelStatus.VOID_PENDING
    with pytest.raises(ValueError):
        label(status="lost_in_space")
    with pytest.raises(TypeError):
        label(document="%PDF-1.4")


def test_to_primitive_encodes_documents_as_base64_json():
    data = to_primitive(label(document=b"%PDF-1.4\x00\xff"))
    json.dumps(data)
    assert base64.b64decode(data["document"]) == b"%PDF-1.4\x00\xff"
    assert data["status"] == "purchased"


def test_tracking_exceptions_are_coerced_and_times_normalised():
    event = TrackingEvent(
        tracking_number="9400",
        status="exception",  # type: ignore[arg-type]
        occurred_at=datetime(2024, 6, 3, 8, 0, tzinfo=timezone(timedelta(hours=-4))),
        exception="address_issue",  # type: ignore[arg-type]
        carrier_status="TRANSIT/address_issue",
    )
    assert event.status is TrackingStatus.EXCEPTION
    assert event.exception is TrackingException.ADDRESS_ISSUE
    assert event.occurred_at == NOW
    with pytest.raises(ValueError):
        TrackingEvent(
            "9400",
            TrackingStatus.EXCEPTION,
            NOW,
            exception="gremlins",  # type: ignore[arg-type]
        )


def test_rates_take_an_aware_quote_time_only():
    rate = Rate(
        rate_id="r1",
        carrier="UPS",
        service="Ground",
        service_level=ServiceLevel.STANDARD,
        amount=Money("9.80", "USD"),
        quoted_at=NOW,
        shipment_ref="shp_1",
    )
    assert rate.quoted_at == NOW and rate.shipment_ref == "shp_1"
    with pytest.raises(ValueError):
        Rate(
            rate_id="r2",
            carrier="UPS",
            service="Ground",
            service_level=ServiceLevel.STANDARD,
            amount=Money("9.80", "USD"),
            quoted_at=datetime(2024, 1, 1),  # naive: its zone is a guess
        )


def test_webhook_events_carry_tracking_as_a_tuple():
    event = WebhookEvent(
        event_id="evt_1",
        topic="tracker.updated",
        occurred_at=NOW,
        payload={},
        tracking=[TrackingEvent("9400", TrackingStatus.DELIVERED, NOW)],
    )
    assert isinstance(event.tracking, tuple) and event.order is None
    assert WebhookEvent(event_id="e", topic="t", occurred_at=NOW, payload={}).tracking == ()


def test_carriers_may_declare_webhooks_and_label_listing():
    carrier = KIND_CAPABILITIES[ConnectorKind.CARRIER]
    assert carrier[Capability.WEBHOOKS] == ("verify_webhook", "parse_webhook")
    assert carrier[Capability.LABELS_LIST] == ("list_labels", "get_label")
    info = ConnectorInfo(
        name="acme_parcels",
        kind=ConnectorKind.CARRIER,
        version="1",
        display_name="Acme",
        capabilities=frozenset({Capability.RATES_QUOTE, Capability.WEBHOOKS}),
        settings_schema={"type": "object"},
    )
    assert "verify_webhook" in info.methods()
    # Label listing stays a carrier capability.
    with pytest.raises(ValueError):
        ConnectorInfo(
            name="acme_shop",
            kind=ConnectorKind.CHANNEL,
            version="1",
            display_name="Acme",
            capabilities=frozenset({Capability.LABELS_LIST}),
            settings_schema={"type": "object"},
        )
