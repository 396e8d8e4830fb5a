"""The EasyPost connector against its fake: the contract kit, then EasyPost's own behaviour
— rates, purchase (once per shipment, so retries and crashes cannot buy twice), refunds,
trackers, HMAC-signed webhooks, list throttling, and which failures are (not) retried."""

from __future__ import annotations

import base64
import io
import json
import random
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pypdf import PdfReader

import connectors.easypost as easypost_plugin
from connectors.clock import VirtualClock
from connectors.easypost.connector import DETAIL_EXCEPTION, TRACKING_STATUS, tracking_events
from connectors.errors import PermanentError, TransientError, WebhookVerificationError
from connectors.fakeapi import FakeResponse
from connectors.http import EgressPolicy, HttpContext
from connectors.manager import make_test_manager
from connectors.protocols import CarrierConnector, CarrierLabels, CarrierWebhooks
from connectors.state import MemoryState
from connectors.testing import ConnectorContract, ContractHarness, WebhookCase
from connectors.types import (
    Address,
    LabelStatus,
    Parcel,
    RateRequest,
    ServiceLevel,
    TrackingException,
    TrackingStatus,
)
from tests.fakes.easypost import FakeEasyPost, sign_webhook, throttled

SHIP_FROM = Address(
    name="Keel Warehouse",
    line1="100 Harbor Blvd",
    city="San Diego",
    region="CA",
    postal_code="92101",
    country="US",
)
SHIP_TO = Address(
    name="Grace Hopper",
    line1="2 Navy Way",
    city="Arlington",
    region="VA",
    postal_code="22201",
    country="US",
)
REQUEST = RateRequest(
    ship_from=SHIP_FROM,
    ship_to=SHIP_TO,
    parcels=(Parcel(weight_g=900, length_mm=300, width_mm=200, height_mm=100),),
    reference="SHP-2002",
)


def settings(fake: FakeEasyPost, **overrides: Any) -> dict[str, Any]:
    return {"api_base_url": fake.url, **overrides}


def credentials(fake: FakeEasyPost) -> dict[str, str]:
    return {"api_key": fake.api_key, "webhook_secret": fake.webhook_secret}


def build(
    fake: FakeEasyPost, clock: VirtualClock, state: MemoryState | None = None, **overrides: Any
) -> Any:
    pm = make_test_manager(easypost_plugin)
    return pm.hook.keel_connector_factory(
        name="easypost",
        settings=settings(fake, **overrides),
        credentials=credentials(fake),
        http=HttpContext(
            clock=clock, egress=EgressPolicy.permissive(), uniform=random.Random(7).uniform
        ),
        state=state if state is not None else MemoryState(),
        clock=clock,
    )


@pytest.fixture
def fake(clock: VirtualClock) -> Iterator[FakeEasyPost]:
    with FakeEasyPost(clock=clock) as fake:
        yield fake


@pytest.fixture
def easypost(fake: FakeEasyPost, clock: VirtualClock) -> Iterator[Any]:
    connector = build(fake, clock)
    yield connector
    connector.close()


class TestEasyPostContract(ConnectorContract):
    @pytest.fixture
    def harness(self) -> Iterator[ContractHarness]:
        clock = VirtualClock()
        with FakeEasyPost(clock=clock) as fake:
            [seeded] = fake.seed_labels(1)
            body = fake.event(fake.trackers[fake.shipments[seeded]["tracking_code"]])
            yield ContractHarness(
                plugin=easypost_plugin,
                name="easypost",
                clock=clock,
                fake=fake,
                settings=settings(fake, page_size=10),
                credentials=credentials(fake),
                seed_items=lambda n: set(fake.seed_labels(n)) | {seeded},
                page_items=35,
                pull=lambda c, cursor: c.list_labels(cursor=cursor),
                item_id=lambda label: label.label_id,
                probe=lambda c: c.check_connection(),
                throttle_response=throttled,
                revoke_credentials=fake.revoke_key,
                webhook=WebhookCase(
                    body=body,
                    secret=fake.webhook_secret,
                    sign=lambda b, s: {"X-Hmac-Signature": sign_webhook(b, s)},
                    signature_header="X-Hmac-Signature",
                ),
                rate_request=REQUEST,
            )


def test_instances_satisfy_the_carrier_protocols(easypost):
    assert isinstance(easypost, CarrierConnector)
    assert isinstance(easypost, CarrierLabels)
    assert isinstance(easypost, CarrierWebhooks)


def test_requests_use_basic_auth_with_the_key_as_user_name(easypost, fake):
    easypost.check_connection()
    [entry] = fake.journal.entries("GET", "/v2/addresses")
    user, _, password = (
        base64.b64decode(entry.headers["authorization"].split()[1]).decode().partition(":")
    )
    assert (user, password) == (fake.api_key, "")


# -- rates --------------------------------------------------------------------------------------


def test_rates_come_cheapest_first_with_levels_and_the_shipment_to_buy_on(easypost, fake):
    rates = easypost.quote_rates(request=REQUEST)

    amounts = [r.amount.amount for r in rates]
    assert amounts == sorted(amounts) and len(rates) == 4
    by_service = {r.service: r for r in rates}
    assert by_service["Express"].service_level is ServiceLevel.OVERNIGHT
    assert by_service["Priority"].service_level is ServiceLevel.EXPEDITED
    assert by_service["Ground"].service_level is ServiceLevel.STANDARD
    [shipment] = fake.shipments.values()
    assert {r.shipment_ref for r in rates} == {shipment["id"]}
    sent = json.loads(fake.journal.entries("POST", "/v2/shipments")[0].body)["shipment"]
    # 900 g, 300×200×100 mm in EasyPost's ounces and inches.
    assert sent["parcel"] == {"weight": 31.7, "length": 11.8, "width": 7.9, "height": 3.9}
    assert sent["reference"] == "SHP-2002" and sent["options"] == {"label_format": "PDF"}


def test_service_level_overrides_and_filters(fake, clock):
    connector = build(fake, clock, service_levels={"UPS:Ground": "economy"})
    try:
        request = RateRequest(
            ship_from=SHIP_FROM,
            ship_to=SHIP_TO,
            parcels=REQUEST.parcels,
            service_levels=frozenset({ServiceLevel.ECONOMY}),
        )
        rates = connector.quote_rates(request=request)
    finally:
        connector.close()
    assert [(r.carrier, r.service) for r in rates] == [("UPS", "Ground")]


def test_an_invalid_address_is_a_clear_error_and_is_not_retried(easypost, fake):
    bad = RateRequest(
        ship_from=SHIP_FROM,
        ship_to=Address(line1="2 Navy Way", city="Arlington", postal_code="00000", country="US"),
        parcels=REQUEST.parcels,
    )
    with pytest.raises(PermanentError) as raised:
        easypost.quote_rates(request=bad)
    assert raised.value.status == 422
    assert "ADDRESS.VERIFY.FAILURE" in raised.value.message
    assert "to_address.zip: Invalid ZIP Code." in raised.value.message
    assert fake.journal.count("POST", "/v2/shipments") == 1


def test_several_parcels_are_refused_before_any_request(easypost, fake):
    request = RateRequest(
        ship_from=SHIP_FROM, ship_to=SHIP_TO, parcels=(Parcel(weight_g=500), Parcel(weight_g=700))
    )
    with pytest.raises(PermanentError, match="one parcel"):
        easypost.quote_rates(request=request)
    assert len(fake.journal) == 0


def test_a_5xx_burst_is_retried(easypost, fake, clock):
    fake.fail_next(FakeResponse(status=502, body=b"<html>502 Bad Gateway</html>"), times=3)
    assert easypost.quote_rates(request=REQUEST)
    assert fake.journal.statuses("POST", "/v2/shipments") == [502, 502, 502, 201]
    assert len([s for s in clock.sleeps if s > 0]) == 3


# -- purchase -----------------------------------------------------------------------------------


def test_buying_a_label_returns_its_document_and_tracking(easypost, fake):
    rate = easypost.quote_rates(request=REQUEST)[0]
    label = easypost.buy_label(rate=rate, request=REQUEST, idempotency_key="ful-1")

    assert label.status is LabelStatus.PURCHASED and label.label_format == "PDF"
    assert label.label_id == rate.shipment_ref and label.rate_id == rate.rate_id
    assert label.cost == rate.amount and label.carrier == rate.carrier
    assert label.tracking_url.endswith(label.tracking_number)
    text = PdfReader(io.BytesIO(label.document)).pages[0].extract_text()
    assert label.tracking_number in text
    [download] = fake.journal.entries("GET", "/files/")
    assert "authorization" not in download.headers  # the API key stays with the API
    assert fake.labels_bought == 1


def test_zpl_labels(fake, clock):
    connector = build(fake, clock, label_format="ZPL")
    try:
        rate = connector.quote_rates(request=REQUEST)[0]
        label = connector.buy_label(rate=rate, request=REQUEST, idempotency_key="zpl-1")
    finally:
        connector.close()
    assert label.label_format == "ZPL" and label.document.startswith(b"^XA")


def test_a_lost_answer_to_the_buy_is_retried_without_buying_twice(easypost, fake):
    rate = easypost.quote_rates(request=REQUEST)[0]
    fake.lose_next_answer("POST", r"/buy$")

    label = easypost.buy_label(rate=rate, request=REQUEST, idempotency_key="ful-lost")

    assert fake.labels_bought == 1
    assert fake.journal.statuses("POST", r"/buy$") == [504, 422]  # POSTAGE.EXISTS on retry
    assert label.tracking_number == fake.shipments[rate.shipment_ref]["tracking_code"]


def test_a_crash_after_the_purchase_gets_the_same_label_back(fake, clock):
    first = build(fake, clock)
    rate = first.quote_rates(request=REQUEST)[0]
    bought = first.buy_label(rate=rate, request=REQUEST, idempotency_key="ful-crash")
    first.close()  # the worker dies before committing the label; its state is lost too

    second = build(fake, clock, state=MemoryState())
    try:
        again = second.buy_label(rate=rate, request=REQUEST, idempotency_key="ful-crash")
    finally:
        second.close()

    assert again == bought
    assert fake.labels_bought == 1 and fake.journal.count("POST", r"/buy$") == 1


def test_a_retry_on_a_new_quote_returns_the_first_purchase_while_state_survives(fake, clock):
    state = MemoryState()
    first = build(fake, clock, state=state)
    rate = first.quote_rates(request=REQUEST)[0]
    bought = first.buy_label(rate=rate, request=REQUEST, idempotency_key="ful-requote")
    requoted = first.quote_rates(request=REQUEST)[0]
    first.close()

    second = build(fake, clock, state=state)
    try:
        again = second.buy_label(rate=requoted, request=REQUEST, idempotency_key="ful-requote")
    finally:
        second.close()
    assert again.label_id == bought.label_id and fake.labels_bought == 1


def test_a_shipment_bought_with_another_rate_is_refused(easypost, fake):
    rates = easypost.quote_rates(request=REQUEST)
    easypost.buy_label(rate=rates[0], request=REQUEST, idempotency_key="ful-a")
    with pytest.raises(PermanentError, match="another rate"):
        easypost.buy_label(rate=rates[1], request=REQUEST, idempotency_key="ful-b")
    assert fake.labels_bought == 1


def test_a_5xx_burst_on_the_buy_is_retried_and_buys_once(easypost, fake):
    rate = easypost.quote_rates(request=REQUEST)[0]
    fake.fail_on("POST", r"/buy$", FakeResponse(status=503, body=b"busy"), times=2)
    label = easypost.buy_label(rate=rate, request=REQUEST, idempotency_key="ful-5xx")
    assert label.status is LabelStatus.PURCHASED and fake.labels_bought == 1
    assert fake.journal.statuses("POST", r"/buy$") == [503, 503, 200]


# -- refunds ------------------------------------------------------------------------------------


def test_void_submits_one_refund_and_reports_the_outcome(easypost, fake):
    rate = easypost.quote_rates(request=REQUEST)[0]
    label = easypost.buy_label(rate=rate, request=REQUEST, idempotency_key="ful-void")

    easypost.void_label(label_id=label.label_id)
    easypost.void_label(label_id=label.label_id)

    assert fake.journal.count("POST", r"/refund$") == 1
    assert easypost.get_label(label_id=label.label_id).status is LabelStatus.VOID_PENDING
    fake.settle_refunds()
    assert easypost.get_label(label_id=label.label_id).status is LabelStatus.VOIDED


def test_a_used_label_refund_is_rejected(easypost, fake):
    rate = easypost.quote_rates(request=REQUEST)[0]
    label = easypost.buy_label(rate=rate, request=REQUEST, idempotency_key="ful-used")
    fake.scan(label.tracking_number, "in_transit", "arrived_at_facility", "Arrived at facility")
    easypost.void_label(label_id=label.label_id)
    fake.settle_refunds()
    assert easypost.get_label(label_id=label.label_id).status is LabelStatus.VOID_REJECTED
    with pytest.raises(PermanentError, match="rejected"):
        easypost.void_label(label_id=label.label_id)


# -- tracking -----------------------------------------------------------------------------------


def test_tracking_pull_maps_statuses_and_carrier_exceptions(easypost, fake):
    rate = easypost.quote_rates(request=REQUEST)[0]
    label = easypost.buy_label(rate=rate, request=REQUEST, idempotency_key="ful-track")
    code = label.tracking_number
    fake.scan(code, "in_transit", "arrived_at_facility", "Arrived at USPS facility")
    fake.scan(code, "in_transit", "address_correction", "Addressee's address incomplete")
    fake.scan(code, "in_transit", "damaged", "Damaged in transit")
    fake.scan(code, "out_for_delivery", "out_for_delivery", "Out for delivery")
    fake.scan(code, "return_to_sender", "return", "Return to sender", city="San Diego")

    events = easypost.track(tracking_number=code)

    assert [e.status for e in events] == [
        TrackingStatus.PRE_TRANSIT,
        TrackingStatus.IN_TRANSIT,
        TrackingStatus.EXCEPTION,
        TrackingStatus.EXCEPTION,
        TrackingStatus.OUT_FOR_DELIVERY,
        TrackingStatus.RETURNED,
    ]
    assert [e.exception for e in events] == [
        None,
        None,
        TrackingException.ADDRESS_ISSUE,
        TrackingException.DAMAGED,
        None,
        TrackingException.RETURN_TO_SENDER,
    ]
    assert events[3].carrier_status == "in_transit/damaged"
    assert events[-1].location == "San Diego, TN, US"


def test_tracking_a_number_bought_elsewhere_creates_its_tracker(easypost, fake):
    assert easypost.track(tracking_number="EZ1000000001", carrier="USPS") == []
    assert "EZ1000000001" in fake.trackers
    sent = json.loads(fake.journal.entries("POST", "/v2/trackers")[0].body)
    assert sent == {"tracker": {"tracking_code": "EZ1000000001", "carrier": "USPS"}}


def test_signed_tracker_updated_events_are_verified_and_parsed(easypost, fake):
    [shipment_id] = fake.seed_labels(1)
    code = fake.shipments[shipment_id]["tracking_code"]
    tracker = fake.scan(code, "in_transit", "damaged", "Package damaged")
    headers, body = fake.webhook_delivery(fake.event(tracker))

    easypost.verify_webhook(headers=headers, body=body)
    event = easypost.parse_webhook(headers=headers, body=body)

    assert event.topic == "tracker.updated" and event.event_id.startswith("evt_")
    assert event.tracking[-1].exception is TrackingException.DAMAGED
    assert event.tracking[-1].tracking_number == code

    forged, _ = fake.webhook_delivery(body, secret="another-secret-entirely")
    for bad_headers, bad_body in (
        (forged, body),
        (headers, body.replace(b"damaged", b"delivered")),
        ({"X-Hmac-Signature": headers["X-Hmac-Signature"].split("=", 1)[1]}, body),
        ({}, body),
    ):
        with pytest.raises(WebhookVerificationError):
            easypost.verify_webhook(headers=bad_headers, body=bad_body)


def test_the_webhook_secret_is_nfkd_normalised(fake, clock):
    # "ﬁ" (U+FB01) normalises to "fi": EasyPost signs with the normalised secret.
    pm = make_test_manager(easypost_plugin)
    connector = pm.hook.keel_connector_factory(
        name="easypost",
        settings=settings(fake),
        credentials={"api_key": fake.api_key, "webhook_secret": "con\ufb01dential-hook"},
        http=HttpContext(clock=clock, egress=EgressPolicy.permissive()),
        state=MemoryState(),
        clock=clock,
    )
    body = b'{"object":"Event","id":"evt_1","description":"tracker.updated","result":{}}'
    connector.verify_webhook(
        headers={"X-Hmac-Signature": sign_webhook(body, "confidential-hook")}, body=body
    )


# -- list endpoints -----------------------------------------------------------------------------


def test_list_throttling_waits_out_retry_after(fake, clock):
    fake.list_limit = 2
    fake.seed_labels(45)
    connector = build(fake, clock, page_size=10)
    try:
        ids, cursor = [], None
        while True:
            page = connector.list_labels(cursor=cursor)
            ids += [label.label_id for label in page.items]
            cursor = page.next_cursor
            if not page.has_more:
                break
    finally:
        connector.close()
    assert sorted(ids) == sorted(fake.shipments) and len(ids) == 45
    entries = fake.journal.entries("GET", "/v2/shipments$")
    assert [e.status for e in entries].count(429) >= 1
    for index, entry in enumerate(entries[:-1]):
        if entry.status == 429:
            wait = float(entry.response_headers["Retry-After"])
            assert entries[index + 1].at - entry.at >= wait


def test_a_very_long_retry_after_is_handed_back_as_rate_limited(easypost, fake):
    from connectors.errors import RateLimited

    fake.fail_next(throttled(900))
    with pytest.raises(RateLimited) as raised:
        easypost.list_labels(cursor=None)
    assert raised.value.retry_after == 900 and len(fake.journal) == 1


def test_an_outage_is_transient_and_buys_nothing(easypost, fake):
    rate = easypost.quote_rates(request=REQUEST)[0]
    fake.fail_next(FakeResponse(status=503, body=b"busy"), times=6)
    with pytest.raises(TransientError):
        easypost.buy_label(rate=rate, request=REQUEST, idempotency_key="ful-down")
    assert fake.labels_bought == 0


# -- mapping invariants -------------------------------------------------------------------------


@given(
    details=st.lists(
        st.tuples(
            st.sampled_from([*TRACKING_STATUS, "something_new"]),
            st.one_of(
                st.sampled_from(sorted(DETAIL_EXCEPTION)),
                st.sampled_from(["arrived_at_facility", "label_created", "unknown", ""]),
                st.text(alphabet="abcdefghij_", max_size=12),
            ),
            st.integers(min_value=0, max_value=86399),
        ),
        max_size=8,
    )
)
def test_any_easypost_tracker_maps_to_ordered_canonical_events(details):
    tracker = {
        "tracking_code": "EZ1",
        "carrier": "USPS",
        "tracking_details": [
            {
                "status": status,
                "status_detail": detail,
                "datetime": f"2024-06-03T{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}Z",
            }
            for status, detail, s in details
        ],
    }
    events = tracking_events(tracker)
    assert len(events) == len(details)
    assert [e.occurred_at for e in events] == sorted(e.occurred_at for e in events)
    for event in events:
        if event.status in (TrackingStatus.EXCEPTION, TrackingStatus.RETURNED):
            assert event.exception is not None
        if event.status in (TrackingStatus.PRE_TRANSIT, TrackingStatus.OUT_FOR_DELIVERY):
            assert event.exception is None
