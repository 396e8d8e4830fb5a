"""LTL freight: the canonical freight types, the broker (``ltl_broker``) and single-carrier
(``ltl_direct``) connectors against their fakes, and comparing quotes across both sources.

Behaviour tests run against both sources (``source`` fixture) unless they are about one
vendor's peculiarity.
"""

from __future__ import annotations

import dataclasses
import email.utils
import io
import json
import random
import threading
import tomllib
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pypdf import PdfReader

import connectors.ltl as ltl_plugin
import connectors.threepl as threepl_plugin
from connectors.clock import VirtualClock
from connectors.errors import (
    AuthError,
    ConfigurationError,
    NotFoundError,
    PermanentError,
    TransientError,
)
from connectors.fakeapi import FakeAPI, FakeResponse
from connectors.freight import (
    FREIGHT_CAPABILITY_METHODS,
    NMFC_CLASSES,
    Accessorial,
    DimensionUnit,
    FreightCapability,
    FreightConnector,
    FreightQuote,
    FreightQuoteRequest,
    FreightStatusCode,
    HandlingUnit,
    QuoteComparison,
    QuoteExpiredError,
    WeightUnit,
    cheapest_first,
    compare_quotes,
    density_class,
    freight_capabilities,
    freight_to_primitive,
    price_spread,
    quote_from_primitive,
    request_from_primitive,
)
from connectors.http import EgressPolicy, HttpContext
from connectors.manager import make_test_manager
from connectors.state import MemoryState
from connectors.testing import ConnectorContract, ContractHarness
from connectors.types import Address, Money, TrackingStatus
from tests.fakes import ltl_common
from tests.fakes.ltl_broker import FakeLtlBroker, throttled
from tests.fakes.ltl_direct import FakeLtlDirect

ROOT = Path(__file__).resolve().parents[2]

# The virtual clock starts on Monday 2024-06-03 12:00 UTC.
MONDAY = date(2024, 6, 3)
TUESDAY = date(2024, 6, 4)
FRIDAY = date(2024, 6, 7)

RENO = Address(
    name="Dock 3",
    company="Keel Brands Warehouse",
    line1="400 Edison Way",
    city="Reno",
    region="NV",
    postal_code="89502",
    country="US",
    phone="+1 775 555 0100",
)
COLUMBUS = Address(
    name="Receiving",
    company="Buckeye Home Stores",
    line1="20 Spring St",
    city="Columbus",
    region="OH",
    postal_code="43215",
    country="US",
)
SACRAMENTO = dataclasses.replace(COLUMBUS, city="Sacramento", region="CA", postal_code="95814")


def pallet(**overrides: Any) -> HandlingUnit:
    values: dict[str, Any] = {
        "pieces": 2,
        "length": 48,
        "width": 40,
        "height": 48,
        "weight": 500,
        "freight_class": "70",
    }
    values.update(overrides)
    return HandlingUnit(**values)


def freight(**overrides: Any) -> FreightQuoteRequest:
    values: dict[str, Any] = {
        "origin": RENO,
        "destination": COLUMBUS,
        "pickup_date": TUESDAY,
        "units": (pallet(),),
        "reference": "PO-4471",
    }
    values.update(overrides)
    return FreightQuoteRequest(**values)


def http_context(clock: VirtualClock) -> HttpContext:
    return HttpContext(
        clock=clock, egress=EgressPolicy.permissive(), uniform=random.Random(7).uniform
    )


@dataclasses.dataclass
class Source:
    """One quote source under test: its fake and how to build its connector."""

    name: str
    clock: VirtualClock
    fake: Any
    settings: dict[str, Any]
    credentials: dict[str, str]
    revoke: Callable[[], None]

    def build(self, **settings: Any) -> Any:
        pm = make_test_manager(ltl_plugin)
        connector = pm.hook.keel_connector_factory(
            name=self.name,
            settings={**self.settings, **settings},
            credentials=self.credentials,
            http=http_context(self.clock),
            state=MemoryState(),
            clock=self.clock,
        )
        assert connector is not None
        return connector

    def booked(self) -> int:
        return self.fake.booked_count()

    def booking_path(self) -> str:
        return "/shipments$" if self.name == "ltl_broker" else "/bookings"


def broker_source(clock: VirtualClock, fake: FakeLtlBroker) -> Source:
    return Source(
        name="ltl_broker",
        clock=clock,
        fake=fake,
        settings={"api_base_url": fake.base_url},
        credentials={"api_key": fake.api_key},
        revoke=fake.revoke_token,
    )


def direct_source(clock: VirtualClock, fake: FakeLtlDirect) -> Source:
    return Source(
        name="ltl_direct",
        clock=clock,
        fake=fake,
        settings={"api_base_url": fake.base_url, "account_number": fake.account_number},
        credentials={"api_key": fake.api_key},
        revoke=fake.revoke_key,
    )


@pytest.fixture(params=["ltl_broker", "ltl_direct"])
def source(request: pytest.FixtureRequest) -> Iterator[Source]:
    clock = VirtualClock()
    if request.param == "ltl_broker":
        with FakeLtlBroker(clock=clock) as fake:
            yield broker_source(clock, fake)
    else:
        with FakeLtlDirect(clock=clock) as fake:
            yield direct_source(clock, fake)


@pytest.fixture
def connector(source: Source) -> Iterator[Any]:
    instance = source.build()
    yield instance
    instance.close()


def standard(quotes: list[FreightQuote], scac: str | None = None) -> FreightQuote:
    """The standard-service quote (of one carrier, for the broker's several)."""
    for quote in quotes:
        if not quote.guaranteed and (scac is None or quote.scac == scac):
            return quote
    raise AssertionError(f"no standard quote for {scac}")


# -- contract kit -------------------------------------------------------------------------------


def check_idempotent_booking(harness: ContractHarness) -> None:
    """The kit's idempotent-push check, for freight: one key, one booking."""
    assert harness.fake is not None
    connector = harness.build()
    try:
        request = freight()
        quote = connector.quote_freight(request=request)[0]
        first = connector.book_freight(quote=quote, request=request, idempotency_key="bk-1")
        again = connector.book_freight(quote=quote, request=request, idempotency_key="bk-1")
    finally:
        connector.close()
    assert again == first
    assert harness.fake.booked_count() == 1


class TestLtlBrokerContract(ConnectorContract):
    @pytest.fixture
    def harness(self) -> Iterator[ContractHarness]:
        clock = VirtualClock()
        with FakeLtlBroker(clock=clock) as fake:
            yield ContractHarness(
                plugin=ltl_plugin,
                name="ltl_broker",
                clock=clock,
                fake=fake,
                settings={"api_base_url": fake.base_url},
                credentials={"api_key": fake.api_key},
                probe=lambda c: c.check_connection(),
                throttle_response=throttled,
                revoke_credentials=fake.revoke_token,
            )

    def test_pushes_are_idempotent(self, harness: ContractHarness) -> None:
        check_idempotent_booking(harness)


class TestLtlDirectContract(ConnectorContract):
    @pytest.fixture
    def harness(self) -> Iterator[ContractHarness]:
        clock = VirtualClock()
        with FakeLtlDirect(clock=clock) as fake:
            yield ContractHarness(
                plugin=ltl_plugin,
                name="ltl_direct",
                clock=clock,
                fake=fake,
                settings={"api_base_url": fake.base_url, "account_number": fake.account_number},
                credentials={"api_key": fake.api_key},
                probe=lambda c: c.check_connection(),
                # Retry-After as an HTTP date, computed when the 429 is served.
                throttle_response=fake.throttle_response,
                revoke_credentials=fake.revoke_key,
            )

    def test_pushes_are_idempotent(self, harness: ContractHarness) -> None:
        check_idempotent_booking(harness)


# -- canonical types ----------------------------------------------------------------------------


def test_handling_units_validate_on_construction():
    with pytest.raises(TypeError):
        pallet(weight=500.0)  # floats are refused like Money's
    with pytest.raises(ValueError):
        pallet(freight_class="80")  # not an NMFC class
    with pytest.raises(ValueError):
        pallet(height=0)
    with pytest.raises(ValueError):
        pallet(pieces=0)
    with pytest.raises(ValueError):
        pallet(dimension_unit="ft")
    assert pallet(freight_class=None).freight_class is None
    assert pallet(freight_class="77.5").freight_class == "77.5"


def test_units_convert_explicitly():
    metric = HandlingUnit(
        pieces=1,
        length="121.92",
        width="101.6",
        height="121.92",
        weight="226.796",
        dimension_unit=DimensionUnit.CENTIMETRE,
        weight_unit=WeightUnit.KILOGRAM,
    )
    assert metric.dimensions_in(DimensionUnit.INCH) == (Decimal(48), Decimal(40), Decimal(48))
    assert metric.weight_in(WeightUnit.POUND) == Decimal("500.00")
    assert pallet().weight_in(WeightUnit.KILOGRAM) == Decimal("226.80")
    assert pallet().total_weight_lb() == Decimal("1000.00")


@pytest.mark.parametrize(
    ("weight", "expected"),
    [(3000, "50"), (1000, "70"), (500, "100"), (300, "175"), (150, "300"), (20, "500")],
)
def test_density_class_follows_the_density_scale(weight: int, expected: str):
    # A 48x40x48 pallet is 53.33 ft³.
    assert density_class(pallet(weight=weight, freight_class=None)) == expected


measures = st.decimals(min_value="1", max_value="400", places=2)
classes = st.sampled_from(NMFC_CLASSES)


@settings(max_examples=200, deadline=None)
@given(length=measures, width=measures, height=measures, weight=measures)
def test_unit_conversions_round_trip_within_rounding(length, width, height, weight):
    unit = HandlingUnit(pieces=1, length=length, width=width, height=height, weight=weight)
    metric = HandlingUnit(
        pieces=1,
        length=unit.dimensions_in(DimensionUnit.CENTIMETRE)[0],
        width=unit.dimensions_in(DimensionUnit.CENTIMETRE)[1],
        height=unit.dimensions_in(DimensionUnit.CENTIMETRE)[2],
        weight=unit.weight_in(WeightUnit.KILOGRAM),
        dimension_unit=DimensionUnit.CENTIMETRE,
        weight_unit=WeightUnit.KILOGRAM,
    )
    # Two-decimal rounding on the way out and back moves a measure by at most a cent.
    for back, original in zip(
        metric.dimensions_in(DimensionUnit.INCH), (length, width, height), strict=True
    ):
        assert abs(back - original) <= Decimal("0.01")
    assert abs(metric.weight_in(WeightUnit.POUND) - weight) <= Decimal("0.02")


@settings(max_examples=200, deadline=None)
@given(weight=measures, extra=measures)
def test_heavier_freight_of_the_same_size_never_rates_a_higher_density_class(weight, extra):
    light = pallet(weight=weight, freight_class=None)
    heavy = pallet(weight=weight + extra, freight_class=None)
    assert Decimal(density_class(heavy)) <= Decimal(density_class(light))


@settings(max_examples=200, deadline=None)
@given(
    weight=measures,
    extra=measures,
    low=classes,
    high=classes,
    near=st.integers(min_value=0, max_value=999),
    far=st.integers(min_value=0, max_value=999),
    accessorials=st.sets(st.sampled_from(sorted(ltl_common.ACCESSORIAL_FEES))),
)
def test_the_fake_tariff_is_monotonic(weight, extra, low, high, near, far, accessorials):
    """More weight, a higher class, a longer lane or more services never cost less."""
    low, high = sorted((low, high), key=Decimal)
    near, far = sorted((near, far))

    def total(w: Decimal, freight_class: str, zip3: int, services: list[str]) -> Decimal:
        miles = ltl_common.lane_miles("000", f"{zip3:03d}")
        line = ltl_common.Line(pieces=1, weight_lb=w, freight_class=freight_class)
        return ltl_common.rate(miles=miles, lines=[line], accessorials=services)[0]

    base = total(weight, low, near, [])
    assert total(weight + extra, low, near, []) >= base
    assert total(weight, high, near, []) >= base
    assert total(weight, low, far, []) >= base
    assert total(weight, low, near, sorted(accessorials)) == base + sum(
        (ltl_common.ACCESSORIAL_FEES[a] for a in accessorials), Decimal(0)
    )


def test_quote_requests_and_quotes_validate():
    with pytest.raises(TypeError):
        freight(pickup_date=datetime(2024, 6, 4, tzinfo=UTC))  # a day, not an instant
    with pytest.raises(ValueError):
        freight(units=())
    with pytest.raises(ValueError):
        freight(accessorials={"teleport"})
    with pytest.raises(ValueError, match="destination"):
        freight(destination=dataclasses.replace(COLUMBUS, postal_code=""))
    quote = FreightQuote(
        quote_id="q1",
        source="ltl_direct",
        carrier="Keystone Freight",
        scac="KYFR",
        total=Money("420.00", "USD"),
        transit_days=3,
        expires_at=datetime(2024, 6, 4, 12, tzinfo=UTC),
    )
    assert quote.expired(datetime(2024, 6, 4, 12, tzinfo=UTC))
    assert not quote.expired(datetime(2024, 6, 4, 11, 59, tzinfo=UTC))
    with pytest.raises(ValueError):
        dataclasses.replace(quote, scac="keystone")
    with pytest.raises(ValueError):
        dataclasses.replace(quote, expires_at=datetime(2024, 6, 4))  # naive


def test_price_spread_and_ordering():
    def q(amount: str, days: int, scac: str) -> FreightQuote:
        return FreightQuote(
            quote_id=f"{scac}-{amount}",
            source="x",
            carrier=scac,
            scac=scac,
            total=Money(amount, "USD"),
            transit_days=days,
            expires_at=datetime(2024, 6, 4, tzinfo=UTC),
        )

    quotes = [q("300", 2, "BBB"), q("200", 4, "CCC"), q("200", 3, "AAA")]
    assert [x.scac for x in cheapest_first(quotes)] == ["AAA", "CCC", "BBB"]
    assert price_spread(quotes) == Decimal("0.5")
    assert price_spread(quotes[:1]) is None
    with pytest.raises(ValueError):
        price_spread([q("1", 1, "AA"), dataclasses.replace(q("1", 1, "BB"), total=Money(1, "EUR"))])


def test_freight_capabilities_are_declared_in_the_schema():
    pm = make_test_manager(ltl_plugin, threepl_plugin)
    infos = {info.name: info for batch in pm.hook.keel_connector_info() for info in batch}
    for name in ("ltl_broker", "ltl_direct"):
        assert freight_capabilities(infos[name]) == frozenset(FreightCapability)
    assert freight_capabilities(infos["threepl"]) == frozenset()


def test_both_sources_are_registered_built_ins():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    entry_points = pyproject["project"]["entry-points"]["keel.connectors"]
    assert entry_points["ltl"] == "connectors.ltl"
    pm = make_test_manager(ltl_plugin)
    names = {info.name for batch in pm.hook.keel_connector_info() for info in batch}
    assert names == {"ltl_broker", "ltl_direct"}


def test_connectors_implement_the_freight_protocol(source: Source, connector: Any):
    assert isinstance(connector, FreightConnector)
    for method in FREIGHT_CAPABILITY_METHODS.values():
        assert callable(getattr(connector, method))


def test_direct_settings_are_validated():
    clock = VirtualClock()
    with FakeLtlDirect(clock=clock) as fake:
        with pytest.raises(ConfigurationError) as caught:
            direct_source(clock, fake).build(account_number="ACME-1")
        assert fake.journal.count() == 0
    assert "account_number" in str(caught.value)
    assert "ACME-1" not in str(caught.value)


# -- quotes -------------------------------------------------------------------------------------


def test_quotes_are_deterministic_and_cheapest_first(source: Source, connector: Any):
    first = connector.quote_freight(request=freight())
    again = connector.quote_freight(request=freight())
    assert first, "no quotes"
    totals = [q.total.amount for q in first]
    assert totals == sorted(totals)
    assert totals == [q.total.amount for q in again]
    assert all(q.source == source.name and q.total.currency == "USD" for q in first)
    assert all(q.expires_at > source.clock.now() and q.transit_days >= 1 for q in first)
    assert any(q.guaranteed for q in first) and any(not q.guaranteed for q in first)
    scacs = {q.scac for q in first}
    if source.name == "ltl_broker":
        assert len(scacs) >= 3, "a broker quotes several carriers"
    else:
        assert scacs == {"KYFR"}
    # The breakdown adds up to the total.
    for quote in first:
        assert sum(m.amount for m in quote.charges.values()) == quote.total.amount


def test_price_follows_class_weight_distance_and_accessorials(source: Source, connector: Any):
    def price(request: FreightQuoteRequest) -> Decimal:
        scac = "EXLA" if source.name == "ltl_broker" else None
        return standard(connector.quote_freight(request=request), scac).total.amount

    base = price(freight())
    assert price(freight(units=(pallet(freight_class="150"),))) > base
    assert price(freight(units=(pallet(weight=900),))) > base
    assert price(freight(destination=SACRAMENTO)) < base  # Reno → Sacramento is shorter
    extras = {Accessorial.LIFTGATE_DELIVERY, Accessorial.RESIDENTIAL_DELIVERY}
    with_extras = price(freight(accessorials=extras))
    fees = ltl_common.ACCESSORIAL_FEES
    assert with_extras - base == fees["liftgate_delivery"] + fees["residential_delivery"]
    quote = standard(connector.quote_freight(request=freight(accessorials=extras)))
    assert quote.accessorials == extras


def test_metric_and_imperial_freight_price_the_same(source: Source, connector: Any):
    metric = HandlingUnit(
        pieces=2,
        length="121.92",
        width="101.6",
        height="121.92",
        weight="226.796",
        dimension_unit=DimensionUnit.CENTIMETRE,
        weight_unit=WeightUnit.KILOGRAM,
        freight_class="70",
    )
    imperial = [q.total for q in connector.quote_freight(request=freight())]
    source.fake.journal.clear()
    assert [q.total for q in connector.quote_freight(request=freight(units=(metric,)))] == imperial
    sent = source.fake.journal.entries("POST")[0]
    body = httpx.Response(200, content=sent.body).json()
    if source.name == "ltl_broker":
        # The broker takes either system: units travel as given, unit named.
        unit = body["handling_units"][0]
        assert (unit["length"], unit["dimension_unit"], unit["weight_unit"]) == (
            "121.92",
            "cm",
            "kg",
        )
    else:
        # The carrier takes inches and pounds only: converted before sending.
        item = body["items"][0]
        assert (item["lengthIn"], item["weightLb"]) == ("48.00", "500.00")


def test_broker_classes_freight_by_density_when_no_class_is_given():
    clock = VirtualClock()
    with FakeLtlBroker(clock=clock) as fake:
        connector = broker_source(clock, fake).build()
        unclassed = standard(
            connector.quote_freight(request=freight(units=(pallet(freight_class=None),))), "EXLA"
        )
        # 500 lb on a 53.33 ft³ pallet is 9.4 lb/ft³: class 100 by density.
        as_100 = standard(
            connector.quote_freight(request=freight(units=(pallet(freight_class="100"),))), "EXLA"
        )
        assert unclassed.total == as_100.total
        connector.close()


def test_direct_carrier_refuses_unclassed_freight_without_asking():
    clock = VirtualClock()
    with FakeLtlDirect(clock=clock) as fake:
        connector = direct_source(clock, fake).build()
        with pytest.raises(PermanentError, match="freight class"):
            connector.quote_freight(request=freight(units=(pallet(), pallet(freight_class=None))))
        assert fake.journal.count() == 0
        connector.close()


def test_oversized_freight_is_a_validation_error_not_retried(source: Source, connector: Any):
    with pytest.raises(PermanentError) as caught:
        connector.quote_freight(request=freight(units=(pallet(height=110),)))
    assert caught.value.status == 422
    assert "height" in caught.value.detail.lower()
    assert source.fake.journal.count() == 1


def test_weekend_pickup_is_refused(source: Source, connector: Any):
    with pytest.raises(PermanentError) as caught:
        connector.quote_freight(request=freight(pickup_date=date(2024, 6, 8)))
    assert caught.value.status == 422
    assert source.fake.journal.count() == 1


@pytest.mark.parametrize("bad_class", ["80", "999"])
def test_fakes_reject_an_invalid_freight_class_with_422(source: Source, bad_class: str):
    # The canonical types never produce such a request; vendors still validate it.
    if source.name == "ltl_broker":
        path = "/quotes"
        headers = {"Authorization": f"Bearer {source.fake.api_key}"}
        body: dict[str, Any] = {
            "origin": {"postal_code": "89502", "country": "US"},
            "destination": {"postal_code": "43215", "country": "US"},
            "pickup_date": "2024-06-04",
            "handling_units": [
                {"quantity": 1, "length": 48, "width": 40, "height": 48, "weight": 500}
                | {"freight_class": bad_class}
            ],
        }
    else:
        path = "/rate-quotes"
        headers = {
            "X-Api-Key": source.fake.api_key,
            "X-Account-Number": source.fake.account_number,
        }
        body = {
            "shipper": {"zip": "89502"},
            "consignee": {"zip": "43215"},
            "pickupDate": "2024-06-04",
            "items": [
                {"pieces": 1, "lengthIn": 48, "widthIn": 40, "heightIn": 48, "weightLb": 500}
                | {"class": bad_class}
            ],
        }
    response = httpx.post(source.fake.base_url + path, json=body, headers=headers)
    assert response.status_code == 422
    assert "class" in response.text


def test_a_5xx_burst_on_quoting_is_retried(source: Source, connector: Any):
    expected = [q.total for q in connector.quote_freight(request=freight())]
    source.fake.journal.clear()
    source.fake.fail_next(FakeResponse.json({"error": "unavailable"}, 503), times=3)
    assert [q.total for q in connector.quote_freight(request=freight())] == expected
    assert source.fake.journal.statuses("POST") == [503, 503, 503, 200]


def test_a_throttled_quote_waits_for_retry_after(source: Source, connector: Any):
    connector.check_connection()
    source.fake.journal.clear()
    if source.name == "ltl_broker":
        source.fake.throttle_next(retry_after=20)
    else:
        source.fake.fail_next(source.fake.throttle_response(20))
    quotes = connector.quote_freight(request=freight())
    assert quotes
    entries = source.fake.journal.entries()
    assert [e.status for e in entries] == [429, 200]
    assert entries[1].at - entries[0].at >= 20


@pytest.mark.parametrize("name", ["ltl_broker", "ltl_direct"])
def test_the_vendor_rate_limit_is_respected(name: str):
    """The server allows 3 requests a minute, fewer than the connection's setting assumes.
    The broker announces its remaining budget, so the client paces itself and is never
    throttled; the carrier does not, so it answers 429 with an HTTP-date Retry-After and the
    client sends nothing more until then. Either way every quote completes and no minute
    holds more than 3 admitted requests."""
    clock = VirtualClock()
    fake: Any = (
        FakeLtlBroker(clock=clock, limit=3, window=60)
        if name == "ltl_broker"
        else FakeLtlDirect(clock=clock, limit=3, window=60)
    )
    with fake:
        src = broker_source(clock, fake) if name == "ltl_broker" else direct_source(clock, fake)
        connector = src.build(rate_limit_per_minute=100)
        results = [connector.quote_freight(request=freight()) for _ in range(7)]
        connector.close()
    assert all(results)
    entries = fake.journal.entries()
    admitted = [e.at for e in entries if e.status == 200]
    assert len(admitted) == 7
    assert all(
        later - earlier >= 60 for earlier, later in zip(admitted, admitted[3:], strict=False)
    )
    throttled_entries = [i for i, e in enumerate(entries) if e.status == 429]
    if name == "ltl_broker":
        assert throttled_entries == []
    else:
        assert throttled_entries
        for i in throttled_entries:
            retry_at = email.utils.parsedate_to_datetime(entries[i].response_headers["Retry-After"])
            waited = entries[i + 1].at - entries[i].at
            assert clock_start(clock) + timedelta(seconds=entries[i].at + waited) >= retry_at


def clock_start(clock: VirtualClock) -> datetime:
    return clock.now() - timedelta(seconds=clock.monotonic())


# -- booking ------------------------------------------------------------------------------------


def test_booking_returns_bol_pro_and_pickup_window(source: Source, connector: Any):
    request = freight()
    quote = connector.quote_freight(request=request)[0]
    booking = connector.book_freight(quote=quote, request=request, idempotency_key="ship-1")
    assert booking.bol_number and booking.pro_number
    assert booking.quote_id == quote.quote_id
    assert (booking.carrier, booking.scac) == (quote.carrier, quote.scac)
    assert booking.total == quote.total
    assert booking.reference == "PO-4471" and booking.idempotency_key == "ship-1"
    assert booking.pickup_window_start == datetime(2024, 6, 4, 14, tzinfo=UTC)
    assert booking.pickup_window_end == datetime(2024, 6, 4, 21, tzinfo=UTC)
    sent = httpx.Response(200, content=source.fake.journal.entries("POST")[-1].body).json()
    assert "PO-4471" in sent.values()  # our reference reaches the BOL


def test_booking_twice_with_one_key_books_once(source: Source, connector: Any):
    request = freight()
    quote = connector.quote_freight(request=request)[0]
    first = connector.book_freight(quote=quote, request=request, idempotency_key="ship-1")
    # A fresh instance (the worker died after booking) retries with the same key.
    retry = source.build()
    again = retry.book_freight(quote=quote, request=request, idempotency_key="ship-1")
    retry.close()
    assert again == first
    assert source.booked() == 1


def test_concurrent_retries_of_one_booking_book_once(source: Source, connector: Any):
    """Two workers retrying the same booking at once (a redelivered task) get one BOL."""
    request = freight()
    quote = connector.quote_freight(request=request)[0]
    results: list[Any] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def book() -> None:
        worker = source.build()
        try:
            barrier.wait()
            results.append(
                worker.book_freight(quote=quote, request=request, idempotency_key="ship-race")
            )
        except BaseException as exc:  # surfaced below with the failing thread's error
            errors.append(exc)
        finally:
            worker.close()

    threads = [threading.Thread(target=book) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors
    assert len(results) == 4 and len({r.bol_number for r in results}) == 1
    assert source.booked() == 1


def test_a_lost_booking_answer_is_retried_without_double_booking(source: Source, connector: Any):
    request = freight()
    quote = connector.quote_freight(request=request)[0]
    source.fake.lose_next_booking_response()
    booking = connector.book_freight(quote=quote, request=request, idempotency_key="ship-2")
    assert source.fake.booking_attempts == 2
    assert source.booked() == 1
    assert source.fake.journal.statuses("POST", source.booking_path())[0] in (502, 504)
    assert connector.freight_status(bol_number=booking.bol_number).status == "booked"


def test_retrying_after_the_quote_expired_returns_the_same_booking(source: Source, connector: Any):
    request = freight(pickup_date=FRIDAY)
    quote = connector.quote_freight(request=request)[0]
    booking = connector.book_freight(quote=quote, request=request, idempotency_key="ship-3")
    source.clock.advance((quote.expires_at - source.clock.now()).total_seconds() + 60)
    assert quote.expired(source.clock.now())
    assert connector.book_freight(quote=quote, request=request, idempotency_key="ship-3") == booking
    assert source.booked() == 1


def test_booking_an_expired_quote_raises_quote_expired(source: Source, connector: Any):
    request = freight(pickup_date=FRIDAY)
    quote = connector.quote_freight(request=request)[0]
    source.clock.advance((quote.expires_at - source.clock.now()).total_seconds())
    source.fake.journal.clear()
    with pytest.raises(QuoteExpiredError):
        connector.book_freight(quote=quote, request=request, idempotency_key="ship-4")
    assert source.fake.journal.count() == 1  # refused, not retried
    assert source.booked() == 0


def test_one_key_for_two_quotes_is_refused(source: Source, connector: Any):
    request = freight()
    first, second = connector.quote_freight(request=request)[:2]
    connector.book_freight(quote=first, request=request, idempotency_key="ship-5")
    with pytest.raises(PermanentError) as caught:
        connector.book_freight(quote=second, request=request, idempotency_key="ship-5")
    assert caught.value.status == 409
    assert source.booked() == 1


def test_revoked_credentials_stop_a_booking_at_one_request(source: Source, connector: Any):
    request = freight()
    quote = connector.quote_freight(request=request)[0]
    source.revoke()
    source.fake.journal.clear()
    with pytest.raises(AuthError):
        connector.book_freight(quote=quote, request=request, idempotency_key="ship-auth")
    with pytest.raises(AuthError):
        connector.freight_status(bol_number="anything")
    assert source.fake.journal.count() == 1
    assert source.booked() == 0


def test_a_quote_books_only_through_its_own_source(source: Source, connector: Any):
    foreign = dataclasses.replace(
        connector.quote_freight(request=freight())[0], source="someone_else"
    )
    source.fake.journal.clear()
    with pytest.raises(PermanentError, match="someone_else"):
        connector.book_freight(quote=foreign, request=freight(), idempotency_key="ship-6")
    assert source.fake.journal.count() == 0


def test_a_stored_quote_books_later(source: Source, connector: Any):
    """The platform keeps quotes as JSON (a comparison, a task payload) and books one later:
    both the quote and the request survive the round trip exactly."""
    request = freight(
        units=(pallet(), pallet(freight_class=None, stackable=False, weight="312.5"))
        if source.name == "ltl_broker"
        else (pallet(), pallet(freight_class="77.5", hazmat=True)),
        accessorials={Accessorial.APPOINTMENT_DELIVERY},
    )
    quote = connector.quote_freight(request=request)[0]
    stored = json.loads(json.dumps(freight_to_primitive({"quote": quote, "request": request})))
    assert quote_from_primitive(stored["quote"]) == quote
    assert request_from_primitive(stored["request"]) == request
    later = source.build()
    booking = later.book_freight(
        quote=quote_from_primitive(stored["quote"]),
        request=request_from_primitive(stored["request"]),
        idempotency_key="ship-json",
    )
    later.close()
    assert booking.quote_id == quote.quote_id and source.booked() == 1


@pytest.mark.parametrize(
    ("pickup_date", "advance_hours", "window_day"),
    [
        (MONDAY, 0, MONDAY),  # 12:00, before the 13:00 cutoff: today
        (MONDAY, 1.5, TUESDAY),  # after the cutoff: next business day
        (FRIDAY, 4 * 24 + 2, date(2024, 6, 10)),  # Friday after cutoff: Monday
    ],
)
def test_pickup_window_respects_the_dispatch_cutoff(
    source: Source, connector: Any, pickup_date: date, advance_hours: float, window_day: date
):
    request = freight(pickup_date=pickup_date)
    source.clock.advance(advance_hours * 3600)
    quote = connector.quote_freight(request=request)[0]
    booking = connector.book_freight(quote=quote, request=request, idempotency_key="ship-7")
    assert booking.pickup_window_start.date() == window_day
    assert booking.pickup_window_end - booking.pickup_window_start == timedelta(hours=7)


# -- status, tracking, POD ----------------------------------------------------------------------


def test_status_progresses_with_the_clock_and_pod_appears_on_delivery(
    source: Source, connector: Any
):
    request = freight()
    quote = standard(connector.quote_freight(request=request))
    booking = connector.book_freight(quote=quote, request=request, idempotency_key="ship-8")
    clock = source.clock

    def status_at(when: datetime) -> Any:
        clock.advance(max(0.0, (when - clock.now()).total_seconds()))
        return connector.freight_status(bol_number=booking.bol_number)

    booked = connector.freight_status(bol_number=booking.bol_number)
    assert booked.status == FreightStatusCode.BOOKED and booked.delivered_at is None
    assert connector.fetch_pod(bol_number=booking.bol_number) is None

    start = booking.pickup_window_start
    assert status_at(start + timedelta(hours=3)).status == FreightStatusCode.PICKED_UP
    in_transit = status_at(start + timedelta(hours=10))
    assert in_transit.status == FreightStatusCode.IN_TRANSIT
    eta = in_transit.estimated_delivery
    assert eta is not None and eta.weekday() < 5
    assert connector.fetch_pod(bol_number=booking.bol_number) is None

    ofd = status_at(datetime(eta.year, eta.month, eta.day, 13, tzinfo=UTC))
    assert ofd.status == FreightStatusCode.OUT_FOR_DELIVERY
    delivered = status_at(datetime(eta.year, eta.month, eta.day, 18, tzinfo=UTC))
    assert delivered.status == FreightStatusCode.DELIVERED
    assert [e.code for e in delivered.events] == [
        FreightStatusCode.BOOKED,
        FreightStatusCode.PICKED_UP,
        FreightStatusCode.IN_TRANSIT,
        FreightStatusCode.OUT_FOR_DELIVERY,
        FreightStatusCode.DELIVERED,
    ]
    assert delivered.delivered_at is not None and delivered.delivered_at.date() == eta
    # Business days only: a 3-4 day lane picked up Tuesday arrives the next week at the latest.
    assert (eta - start.date()).days >= quote.transit_days

    by_pro = connector.freight_status(pro_number=booking.pro_number)
    assert by_pro == delivered

    events = connector.track(tracking_number=booking.pro_number)
    assert [e.status for e in events] == [
        TrackingStatus.PRE_TRANSIT,
        TrackingStatus.IN_TRANSIT,
        TrackingStatus.IN_TRANSIT,
        TrackingStatus.OUT_FOR_DELIVERY,
        TrackingStatus.DELIVERED,
    ]
    assert connector.track(tracking_number=booking.bol_number)[-1].status == "delivered"

    pod = connector.fetch_pod(bol_number=booking.bol_number)
    assert pod is not None and pod.format == "pdf"
    assert pod.content.startswith(b"%PDF-")
    text = PdfReader(io.BytesIO(pod.content)).pages[0].extract_text()
    assert "Proof of Delivery" in text and booking.bol_number in text
    assert booking.pro_number in text


def test_unknown_shipments_are_not_found(source: Source, connector: Any):
    with pytest.raises(NotFoundError):
        connector.freight_status(bol_number="NOPE123")
    with pytest.raises(NotFoundError):
        connector.track(tracking_number="NOPE123")
    with pytest.raises(ValueError):
        connector.freight_status()


def test_a_broker_exception_delays_delivery():
    clock = VirtualClock()
    with FakeLtlBroker(clock=clock) as fake:
        connector = broker_source(clock, fake).build()
        request = freight()
        quote = connector.quote_freight(request=request)[0]
        booking = connector.book_freight(quote=quote, request=request, idempotency_key="s-9")
        clock.advance((booking.pickup_window_start - clock.now()).total_seconds() + 12 * 3600)
        before = connector.freight_status(bol_number=booking.bol_number)
        fake.delay(booking.bol_number, days=2, reason="Weather: terminal closed")
        after = connector.freight_status(bol_number=booking.bol_number)
        connector.close()
    assert after.status == FreightStatusCode.EXCEPTION
    assert after.events[-1].description == "Weather: terminal closed"
    assert before.estimated_delivery is not None and after.estimated_delivery is not None
    assert after.estimated_delivery > before.estimated_delivery


def test_fakes_serve_real_pdfs():
    reader = PdfReader(io.BytesIO(ltl_common.tiny_pdf(["Hello (world)", "second \\ line"])))
    text = reader.pages[0].extract_text()
    assert "Hello (world)" in text and "second \\ line" in text


def test_direct_pod_must_be_valid_base64():
    clock = VirtualClock()

    class BrokenImages(FakeLtlDirect):
        def _images(self, request: Any) -> FakeResponse:
            return FakeResponse.json({"images": [{"type": "POD", "data": "%%%not-base64"}]})

    with BrokenImages(clock=clock) as fake:
        connector = direct_source(clock, fake).build()
        with pytest.raises(PermanentError, match="base64"):
            connector.fetch_pod(bol_number="0000000001")
        connector.close()


def test_pod_links_off_the_brokers_origin_are_not_followed():
    clock = VirtualClock()
    with FakeAPI(clock=clock) as elsewhere:

        class Redirecting(FakeLtlBroker):
            def _documents(self, request: Any) -> FakeResponse:
                return FakeResponse.json(
                    {"documents": [{"type": "proof_of_delivery", "url": elsewhere.url + "/pod"}]}
                )

        with Redirecting(clock=clock) as fake:
            connector = broker_source(clock, fake).build()
            with pytest.raises(PermanentError, match="another origin"):
                connector.fetch_pod(bol_number="FH00000001")
            connector.close()
        assert elsewhere.journal.count() == 0, "the API key went to another host"


# -- two sources --------------------------------------------------------------------------------


def _compare_both(direct_factor: Decimal, *, broker_down: bool = False) -> QuoteComparison:
    clock = VirtualClock()
    with (
        FakeLtlBroker(clock=clock) as broker,
        FakeLtlDirect(clock=clock, price_factor=direct_factor) as direct,
    ):
        if broker_down:
            broker.fail_next(FakeResponse.json({"error": "unavailable"}, 503), times=10)
        connectors = {
            "broker-connection": broker_source(clock, broker).build(include_guaranteed=False),
            "direct-connection": direct_source(clock, direct).build(include_guaranteed=False),
        }
        try:
            return compare_quotes(connectors, request=freight())
        finally:
            for connector in connectors.values():
                connector.close()


def test_quotes_from_two_sources_are_comparable():
    comparison = _compare_both(Decimal(1))
    assert comparison.sources == {"ltl_broker", "ltl_direct"}
    assert not comparison.errors
    assert not any(q.guaranteed for q in comparison.quotes)
    assert comparison.spread is not None and Decimal(0) < comparison.spread < Decimal("0.5")
    assert not comparison.varies_by_more_than(Decimal("0.5"))
    assert list(comparison.quotes) == cheapest_first(comparison.quotes)


def test_one_source_can_be_made_wildly_different():
    comparison = _compare_both(Decimal(3))
    assert comparison.varies_by_more_than(Decimal("0.5"))
    assert comparison.quotes[-1].source == "ltl_direct"
    assert comparison.quotes[0].source == "ltl_broker"


def test_a_source_that_is_down_does_not_hide_the_other():
    comparison = _compare_both(Decimal(1), broker_down=True)
    assert comparison.sources == {"ltl_direct"}
    assert set(comparison.errors) == {"broker-connection"}
    assert isinstance(comparison.errors["broker-connection"], TransientError)
    # One standard quote left: nothing to compare it with, so no spread to judge.
    assert len(comparison.quotes) == 1 and comparison.spread is None
    assert not comparison.varies_by_more_than(Decimal("0.5"))


def test_broker_carrier_filter():
    clock = VirtualClock()
    with FakeLtlBroker(clock=clock) as fake:
        connector = broker_source(clock, fake).build(
            carriers=["SAIA", "EXLA"], include_guaranteed=False
        )
        quotes = connector.quote_freight(request=freight())
        connector.close()
    assert {q.scac for q in quotes} == {"SAIA", "EXLA"}
    assert not any(q.guaranteed for q in quotes)
