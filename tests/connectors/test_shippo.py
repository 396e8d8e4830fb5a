"""The Shippo connector against its fake: the contract kit, then Shippo's own behaviour —
rates, asynchronous purchase, idempotent purchase after a lost answer, refunds, tracking,
signed webhooks, list throttling, and which failures are (not) retried."""

from __future__ import annotations

import io
import json
import random
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pypdf import PdfReader

import connectors.shippo as shippo_plugin
from connectors.clock import VirtualClock
from connectors.errors import PermanentError, TransientError, WebhookVerificationError
from connectors.fakeapi import FakeResponse
from connectors.http import EgressPolicy, HttpContext
from connectors.manager import make_test_manager
from connectors.protocols import CarrierConnector, CarrierLabels, CarrierWebhooks
from connectors.shippo.connector import SUBSTATUS_EXCEPTION, tracking_events
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
from tests.fakes.shippo import FakeShippo, sign_webhook, throttled

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
    reference="SHP-1001",
)


def settings(fake: FakeShippo, **overrides: Any) -> dict[str, Any]:
    return {"api_base_url": fake.url, **overrides}


def credentials(fake: FakeShippo) -> dict[str, str]:
    return {"api_key": fake.api_key, "webhook_secret": fake.webhook_secret}


def build(
    fake: FakeShippo, clock: VirtualClock, state: MemoryState | None = None, **overrides: Any
) -> Any:
    pm = make_test_manager(shippo_plugin)
    return pm.hook.keel_connector_factory(
        name="shippo",
        settings=settings(fake, **overrides),
        credentials=credentials(fake),
        http=HttpContext(
            clock=clock, egress=EgressPolicy.permissive(), uniform=random.Random(7).uniform
        ),
        state=state if state is not None else MemoryState(),
        clock=clock,
    )


@pytest.fixture
def fake(clock: VirtualClock) -> Iterator[FakeShippo]:
    with FakeShippo(clock=clock) as fake:
        yield fake


@pytest.fixture
def shippo(fake: FakeShippo, clock: VirtualClock) -> Iterator[Any]:
    connector = build(fake, clock)
    yield connector
    connector.close()


class TestShippoContract(ConnectorContract):
    @pytest.fixture
    def harness(self) -> Iterator[ContractHarness]:
        clock = VirtualClock()
        with FakeShippo(clock=clock) as fake:
            [seeded] = fake.seed_labels(1)
            track = fake.tracks[fake.transactions[seeded]["tracking_number"]]
            _, body = fake.webhook_delivery(track)
            yield ContractHarness(
                plugin=shippo_plugin,
                name="shippo",
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
                revoke_credentials=fake.revoke_token,
                webhook=WebhookCase(
                    body=body,
                    secret=fake.webhook_secret,
                    sign=lambda b, s: {
                        "Shippo-Auth-Signature": sign_webhook(b, s, int(clock.now().timestamp()))
                    },
                    signature_header="Shippo-Auth-Signature",
                ),
                rate_request=REQUEST,
            )


def test_instances_satisfy_the_carrier_protocols(shippo):
    assert isinstance(shippo, CarrierConnector)
    assert isinstance(shippo, CarrierLabels)
    assert isinstance(shippo, CarrierWebhooks)


# -- rates --------------------------------------------------------------------------------------


def test_rates_come_cheapest_first_with_service_levels_and_quote_details(shippo, fake):
    rates = shippo.quote_rates(request=REQUEST)

    amounts = [r.amount.amount for r in rates]
    assert amounts == sorted(amounts) and len(rates) == 4
    by_code = {r.service_code: r for r in rates}
    assert by_code["ups_next_day_air"].service_level is ServiceLevel.OVERNIGHT
    assert by_code["usps_priority"].service_level is ServiceLevel.EXPEDITED
    assert by_code["usps_ground_advantage"].service_level is ServiceLevel.STANDARD
    assert by_code["usps_priority"].estimated_days == 2
    shipment = next(iter(fake.shipments.values()))
    assert {r.shipment_ref for r in rates} == {shipment["object_id"]}
    assert all(r.quoted_at is not None for r in rates)
    # Keel's grams and millimetres reach Shippo with explicit units.
    sent = json.loads(fake.journal.entries("POST", "/shipments")[0].body)
    assert sent["parcels"] == [
        {
            "weight": "900",
            "mass_unit": "g",
            "length": "30",
            "width": "20",
            "height": "10",
            "distance_unit": "cm",
        }
    ]
    assert sent["address_to"]["zip"] == "22201" and sent["metadata"] == "SHP-1001"


def test_rates_can_be_restricted_to_service_levels_and_overridden(fake, clock):
    connector = build(fake, clock, service_levels={"usps_priority": "overnight"})
    try:
        request = RateRequest(
            ship_from=SHIP_FROM,
            ship_to=SHIP_TO,
            parcels=REQUEST.parcels,
            service_levels=frozenset({ServiceLevel.OVERNIGHT}),
        )
        rates = connector.quote_rates(request=request)
    finally:
        connector.close()
    assert [r.service_code for r in rates] == ["usps_priority", "ups_next_day_air"]


def test_an_invalid_address_is_a_clear_error_and_is_not_retried(shippo, fake):
    bad = RateRequest(
        ship_from=SHIP_FROM,
        ship_to=Address(line1="2 Navy Way", city="Arlington", postal_code="00000", country="US"),
        parcels=REQUEST.parcels,
    )
    with pytest.raises(PermanentError) as raised:
        shippo.quote_rates(request=bad)
    assert raised.value.status == 400
    assert "address_to.zip" in raised.value.message
    assert "could not be verified" in raised.value.message
    assert fake.journal.count("POST", "/shipments") == 1


def test_a_5xx_burst_on_a_quote_is_retried(shippo, fake, clock):
    fake.fail_next(FakeResponse.json({"detail": "Service Unavailable"}, 503), times=2)
    rates = shippo.quote_rates(request=REQUEST)
    assert rates
    assert fake.journal.statuses("POST", "/shipments") == [503, 503, 201]
    assert len([s for s in clock.sleeps if s > 0]) == 2


# -- purchase -----------------------------------------------------------------------------------


def test_purchase_is_asynchronous_and_polls_until_the_label_exists(shippo, fake, clock):
    rate = shippo.quote_rates(request=REQUEST)[0]
    label = shippo.buy_label(rate=rate, request=REQUEST, idempotency_key="ful-1")

    assert label.status is LabelStatus.PURCHASED
    assert label.tracking_number and label.carrier == rate.carrier
    assert label.cost == rate.amount and label.rate_id == rate.rate_id
    assert label.idempotency_key == "ful-1" and label.label_format == "PDF"
    text = PdfReader(io.BytesIO(label.document)).pages[0].extract_text()
    assert label.tracking_number in text
    posted = json.loads(fake.journal.entries("POST", "/transactions")[0].body)
    assert posted == {
        "rate": rate.rate_id,
        "label_file_type": "PDF_4x6",
        "async": True,
        "metadata": "keel:ful-1",
    }
    # QUEUED, then WAITING, then SUCCESS: three reads, two poll intervals apart.
    reads = fake.journal.entries("GET", rf"/transactions/{label.label_id}")
    assert len(reads) == 3
    assert reads[1].at - reads[0].at >= 2 and reads[2].at - reads[1].at >= 2
    # The pre-signed file URL never receives the API token.
    [download] = fake.journal.entries("GET", "/labels/")
    assert "authorization" not in download.headers
    assert fake.labels_bought == 1


def test_zpl_labels_for_thermal_printers(fake, clock):
    connector = build(fake, clock, label_file_type="ZPLII")
    try:
        rate = connector.quote_rates(request=REQUEST)[0]
        label = connector.buy_label(rate=rate, request=REQUEST, idempotency_key="zpl-1")
    finally:
        connector.close()
    assert label.label_format == "ZPL"
    assert label.document.startswith(b"^XA") and label.tracking_number.encode() in label.document


def test_a_retry_after_a_lost_answer_finds_the_label_instead_of_buying_again(fake, clock):
    first = build(fake, clock)
    rate = first.quote_rates(request=REQUEST)[0]
    fake.lose_next_answer("POST", "/transactions")
    with pytest.raises(TransientError):
        first.buy_label(rate=rate, request=REQUEST, idempotency_key="ful-crash")
    first.close()  # the worker dies; nothing of this attempt was committed anywhere
    assert fake.labels_bought == 1  # Shippo did take the order

    # A fresh worker with no local memory of the attempt retries with the same key.
    second = build(fake, clock, state=MemoryState())
    try:
        label = second.buy_label(rate=rate, request=REQUEST, idempotency_key="ful-crash")
    finally:
        second.close()

    assert fake.labels_bought == 1
    assert fake.journal.count("POST", "/transactions") == 1
    [only] = fake.transactions.values()
    assert label.label_id == only["object_id"] and label.status is LabelStatus.PURCHASED
    # The lookup listed only what was created since the quote.
    lookup = fake.journal.entries("GET", r"^/transactions/$")[0]
    assert lookup.query["object_created_gt"]


def test_a_5xx_on_the_purchase_is_not_blindly_repeated_and_the_retry_buys_once(shippo, fake):
    rate = shippo.quote_rates(request=REQUEST)[0]
    fake.fail_on("POST", "/transactions", FakeResponse.json({"detail": "Server Error"}, 500))
    # Shippo does not dedupe purchases: a 5xx may hide a purchase, so the client must not
    # repeat the POST on its own.
    with pytest.raises(TransientError):
        shippo.buy_label(rate=rate, request=REQUEST, idempotency_key="ful-500")
    assert fake.journal.statuses("POST", "/transactions") == [500]

    label = shippo.buy_label(rate=rate, request=REQUEST, idempotency_key="ful-500")
    assert label.status is LabelStatus.PURCHASED and fake.labels_bought == 1


def test_a_5xx_burst_on_the_purchase_lookup_is_retried(shippo, fake):
    rate = shippo.quote_rates(request=REQUEST)[0]
    fake.fail_on("GET", r"^/transactions/$", FakeResponse.json({"detail": "busy"}, 503), times=2)
    shippo.buy_label(rate=rate, request=REQUEST, idempotency_key="ful-6")
    assert fake.journal.statuses("GET", r"^/transactions/$") == [503, 503, 200]
    assert fake.labels_bought == 1


def test_a_label_still_queued_raises_transient_and_the_retry_resumes_it(fake, clock):
    fake.queued_polls = 6
    state = MemoryState()
    impatient = build(fake, clock, state=state, purchase_wait_seconds=4)
    rate = impatient.quote_rates(request=REQUEST)[0]
    with pytest.raises(TransientError, match="same idempotency key"):
        impatient.buy_label(rate=rate, request=REQUEST, idempotency_key="ful-slow")
    impatient.close()

    patient = build(fake, clock, state=state)
    try:
        label = patient.buy_label(rate=rate, request=REQUEST, idempotency_key="ful-slow")
    finally:
        patient.close()
    assert label.status is LabelStatus.PURCHASED
    assert fake.journal.count("POST", "/transactions") == 1 and fake.labels_bought == 1
    # The first attempt looked for an earlier purchase before buying; the retry resumed
    # from the remembered transaction id without listing again.
    assert fake.journal.count("GET", r"^/transactions/$") == 1


def test_a_refused_purchase_is_an_error_and_may_be_bought_again(shippo, fake):
    rate = shippo.quote_rates(request=REQUEST)[0]
    fake.refuse_next_purchase("Address is not serviceable by the carrier.")
    with pytest.raises(PermanentError, match="not serviceable"):
        shippo.buy_label(rate=rate, request=REQUEST, idempotency_key="ful-2")
    label = shippo.buy_label(rate=rate, request=REQUEST, idempotency_key="ful-2")
    assert label.status is LabelStatus.PURCHASED
    assert fake.journal.count("POST", "/transactions") == 2 and fake.labels_bought == 1


# -- refunds ------------------------------------------------------------------------------------


def test_void_requests_a_refund_once_and_reports_its_outcome(shippo, fake):
    rate = shippo.quote_rates(request=REQUEST)[0]
    label = shippo.buy_label(rate=rate, request=REQUEST, idempotency_key="ful-3")

    shippo.void_label(label_id=label.label_id)
    shippo.void_label(label_id=label.label_id)  # voiding twice is not an error

    assert fake.journal.count("POST", "/refunds") == 1
    assert shippo.get_label(label_id=label.label_id).status is LabelStatus.VOID_PENDING
    fake.settle_refunds()
    voided = shippo.get_label(label_id=label.label_id)
    assert voided.status is LabelStatus.VOIDED and voided.document == b""


def test_a_scanned_label_refund_is_rejected(shippo, fake):
    rate = shippo.quote_rates(request=REQUEST)[0]
    label = shippo.buy_label(rate=rate, request=REQUEST, idempotency_key="ful-4")
    fake.scan(label.tracking_number, "TRANSIT", "Accepted at USPS origin facility")
    shippo.void_label(label_id=label.label_id)
    fake.settle_refunds()
    assert shippo.get_label(label_id=label.label_id).status is LabelStatus.VOID_REJECTED
    with pytest.raises(PermanentError, match="rejected"):
        shippo.void_label(label_id=label.label_id)


# -- tracking -----------------------------------------------------------------------------------


def test_tracking_pull_maps_statuses_and_carrier_exceptions(shippo, fake):
    rate = shippo.quote_rates(request=REQUEST)[0]
    label = shippo.buy_label(rate=rate, request=REQUEST, idempotency_key="ful-5")
    number = label.tracking_number
    fake.scan(number, "TRANSIT", "Arrived at USPS Regional Facility")
    fake.scan(number, "TRANSIT", "Out for delivery", substatus="out_for_delivery")
    fake.scan(number, "TRANSIT", "Addressee unknown", substatus="address_issue")
    fake.scan(number, "TRANSIT", "Package damaged in transit", substatus="package_damaged")
    fake.scan(number, "RETURNED", "Returned to sender", substatus="return_to_sender")

    events = shippo.track(tracking_number=number)

    assert [e.status for e in events] == [
        TrackingStatus.PRE_TRANSIT,
        TrackingStatus.IN_TRANSIT,
        TrackingStatus.OUT_FOR_DELIVERY,
        TrackingStatus.EXCEPTION,
        TrackingStatus.EXCEPTION,
        TrackingStatus.RETURNED,
    ]
    assert [e.exception for e in events[3:]] == [
        TrackingException.ADDRESS_ISSUE,
        TrackingException.DAMAGED,
        TrackingException.RETURN_TO_SENDER,
    ]
    assert events[3].carrier_status == "TRANSIT/address_issue"
    assert events[1].location == "Louisville, KY, US" and events[1].tracking_number == number
    # The carrier token comes from the purchase.
    assert fake.journal.entries("GET", "/tracks/")[0].path == f"/tracks/usps/{number}"


def test_tracking_an_unknown_number_gives_no_events(shippo, fake):
    assert shippo.track(tracking_number="1Z999", carrier="ups") == []
    assert fake.journal.entries("GET", "/tracks/")[0].path == "/tracks/ups/1Z999"


def test_signed_track_updated_webhooks_are_verified_and_parsed(shippo, fake, clock):
    fake.seed_labels(1)
    [number] = fake.tracks
    track = fake.scan(number, "TRANSIT", "Package damaged", substatus="package_damaged")
    headers, body = fake.webhook_delivery(track)

    shippo.verify_webhook(headers=headers, body=body)
    event = shippo.parse_webhook(headers=headers, body=body)

    assert event.topic == "track_updated" and event.order is None
    assert event.event_id.startswith(f"track_updated:usps:{number}:")
    assert event.tracking[-1].status is TrackingStatus.EXCEPTION
    assert event.tracking[-1].exception is TrackingException.DAMAGED
    # Same delivery again (Shippo retries): same event id, so the platform dedupes it.
    assert shippo.parse_webhook(headers=headers, body=body).event_id == event.event_id

    stale_headers, _ = fake.webhook_delivery(track, timestamp=int(clock.now().timestamp()) - 900)
    forged_headers, _ = fake.webhook_delivery(track, secret="not-the-shippo-secret-0000")
    for bad_headers, bad_body in (
        (stale_headers, body),  # a replayed old delivery
        (forged_headers, body),
        (headers, body.replace(b"TRANSIT", b"DELIVERED")),
        ({"Shippo-Auth-Signature": "v1=abc"}, body),
    ):
        with pytest.raises(WebhookVerificationError):
            shippo.verify_webhook(headers=bad_headers, body=bad_body)


def test_webhooks_are_refused_when_no_secret_is_configured(fake, clock):
    pm = make_test_manager(shippo_plugin)
    connector = pm.hook.keel_connector_factory(
        name="shippo",
        settings=settings(fake),
        credentials={"api_key": fake.api_key},
        http=HttpContext(clock=clock, egress=EgressPolicy.permissive()),
        state=MemoryState(),
        clock=clock,
    )
    fake.seed_labels(1)
    headers, body = fake.webhook_delivery(next(iter(fake.tracks.values())))
    with pytest.raises(WebhookVerificationError, match="no webhook secret"):
        connector.verify_webhook(headers=headers, body=body)


# -- list endpoints: throttling -----------------------------------------------------------------


def test_list_throttling_retry_after_is_honoured(fake, clock):
    fake.list_limit = 3
    fake.seed_labels(50)
    # Pacing off (a limit far above Shippo's) so the server's 429 is what we meet.
    connector = build(fake, clock, page_size=10, list_requests_per_minute=1000)
    try:
        labels, cursor = [], None
        while True:
            page = connector.list_labels(cursor=cursor)
            labels += page.items
            cursor = page.next_cursor
            if not page.has_more:
                break
    finally:
        connector.close()

    assert len({label.label_id for label in labels}) == 50
    entries = fake.journal.entries("GET", "/transactions")
    statuses = [e.status for e in entries]
    assert 429 in statuses
    for index, entry in enumerate(entries[:-1]):
        if entry.status == 429:
            wait = float(entry.response_headers["Retry-After"])
            assert entries[index + 1].at - entry.at >= wait


def test_list_requests_are_paced_to_avoid_429s(fake, clock):
    fake.list_limit = 3
    fake.seed_labels(50)
    connector = build(fake, clock, page_size=10, list_requests_per_minute=3)
    try:
        cursor = None
        while True:
            page = connector.list_labels(cursor=cursor)
            cursor = page.next_cursor
            if not page.has_more:
                break
    finally:
        connector.close()
    assert fake.journal.statuses("GET", "/transactions") == [200] * 5


# -- mapping invariants -------------------------------------------------------------------------

SHIPPO_STATUSES = ["UNKNOWN", "PRE_TRANSIT", "TRANSIT", "DELIVERED", "RETURNED", "FAILURE"]


@given(
    history=st.lists(
        st.tuples(
            st.sampled_from([*SHIPPO_STATUSES, "SOMETHING_NEW"]),
            st.one_of(
                st.none(),
                st.sampled_from(sorted(SUBSTATUS_EXCEPTION)),
                st.sampled_from(["out_for_delivery", "information_received"]),
                st.text(alphabet="abcdefghij_", max_size=12),
            ),
            st.integers(min_value=0, max_value=10**6),
        ),
        max_size=8,
    )
)
def test_any_shippo_history_maps_to_ordered_canonical_events(history):
    track = {
        "carrier": "usps",
        "tracking_number": "9400",
        "tracking_history": [
            {
                "status": status,
                "status_date": f"2024-06-{1 + seconds // 86400:02d}T{seconds % 86400 // 3600:02d}"
                f":{seconds % 3600 // 60:02d}:{seconds % 60:02d}Z",
                "substatus": {"code": code} if code is not None else None,
            }
            for status, code, seconds in history
        ],
    }
    events = tracking_events(track)
    assert len(events) == len(history)
    assert [e.occurred_at for e in events] == sorted(e.occurred_at for e in events)
    for event in events:
        # Trouble always says what kind of trouble; good news never claims to be trouble.
        if event.status in (TrackingStatus.EXCEPTION, TrackingStatus.RETURNED):
            assert event.exception is not None
        if event.status in (TrackingStatus.PRE_TRANSIT, TrackingStatus.OUT_FOR_DELIVERY):
            assert event.exception is None
