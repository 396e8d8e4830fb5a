"""Sandbox channel, 3PL and carrier: realistic behaviour with no network and no account.

- :class:`SandboxChannel` serves the deterministic order stream of
  :mod:`connectors.sandbox.simulation`. A pull pass covers (previous watermark, now at the
  pass's start] in ``page_hours`` windows and returns each changed order once, as of the
  pass's end; the stream for any past interval never changes, so the end is an exact
  resume point. Pushes are recorded in the connection state.
- :class:`SandboxWarehouse` accepts fulfillment orders into the connection state and "ships"
  each one a deterministic 30–240 minutes later; stock is the initial quantity minus shipped
  units plus received inbound shipments.
- :class:`SandboxCarrier` quotes rates from weight and distance between postal zones, buys
  labels idempotently by key, voids them and produces a tracking timeline.

Everything depends only on (settings, state, clock), so tests and the demo brand see the same
behaviour every time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from connectors.clock import Clock
from connectors.config import validate_connection
from connectors.errors import NotFoundError, PermanentError, WebhookVerificationError
from connectors.sandbox import CHANNEL_INFO
from connectors.sandbox.simulation import Simulation, SimulationConfig, demo_skus, stable_int
from connectors.state import ConnectionState
from connectors.types import (
    AvailablePushResult,
    AvailableQuantity,
    ChannelFulfillmentResult,
    ConnectorInfo,
    FulfillmentConfirmation,
    FulfillmentLine,
    FulfillmentOrderAck,
    FulfillmentRequest,
    InboundAck,
    InboundShipment,
    Label,
    Listing,
    Money,
    Order,
    PullResult,
    PushOutcome,
    Rate,
    RateRequest,
    ServiceLevel,
    StockLevel,
    TrackingEvent,
    TrackingStatus,
    WebhookEvent,
    utc,
)

SIGNATURE_HEADER = "x-sandbox-signature"
WAREHOUSE = "SBX-WH1"


def sign_webhook(body: bytes, secret: str) -> str:
    """``X-Sandbox-Signature`` value: ``sha256=`` + hex HMAC of the raw body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_delivery(
    *, secret: str, order_id: str, topic: str = "orders/create", event_id: str = ""
) -> tuple[dict[str, str], bytes]:
    """A signed sandbox delivery (headers, body) announcing ``order_id``."""
    body = json.dumps({"order_id": order_id}).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Sandbox-Topic": topic,
        "X-Sandbox-Event-Id": event_id or f"{topic}:{order_id}",
        "X-Sandbox-Signature": sign_webhook(body, secret),
    }
    return headers, body


def _watermark(cursor: str | None) -> dict[str, Any]:
    if not cursor:
        return {}
    try:
        data = json.loads(cursor)
        if not isinstance(data, dict):
            raise ValueError
        return data
    except ValueError:
        raise PermanentError("unreadable sandbox cursor") from None


class _Base:
    def __init__(
        self,
        *,
        info: ConnectorInfo,
        settings: Mapping[str, Any],
        credentials: Mapping[str, str],
        state: ConnectionState,
        clock: Clock,
    ) -> None:
        self.info = info
        self.config = validate_connection(info, settings, credentials)
        self.credentials = dict(credentials)
        self.state = state
        self.clock = clock
        self.currency: str = self.config["currency"]
        self.skus: tuple[str, ...] = tuple(self.config.get("skus") or demo_skus())
        self.page_size: int = self.config["page_size"]

    def check_connection(self) -> None:
        """Nothing to reach: a sandbox connection always works."""

    def close(self) -> None:
        """Nothing to release."""


def channel_simulation(config: Mapping[str, Any]) -> Simulation:
    """The traffic a sandbox channel with these validated settings simulates."""
    skus = tuple(config.get("skus") or demo_skus())
    trending = config.get("trending_skus") or list(skus[:2])
    return Simulation(
        SimulationConfig(
            seed=config["seed"],
            skus=skus,
            trending_skus=frozenset(trending),
            orders_per_day=float(config["orders_per_day"]),
            trend_multiplier=float(config["trend_multiplier"]),
            currency=config["currency"],
            channel=CHANNEL_INFO.name,
        )
    )


def channel_history(settings: Mapping[str, Any], start: datetime, end: datetime) -> Iterator[Order]:
    """Orders a sandbox channel with these settings had placed in ``[start, end)``: the
    sales history it would have had before Keel (the demo brand imports it)."""
    config = validate_connection(CHANNEL_INFO, settings, {})
    return channel_simulation(config).placed_between(start, end)


class SandboxChannel(_Base):
    """Simulated sales channel."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.simulation = channel_simulation(self.config)
        self.backfill = timedelta(days=self.config["backfill_days"])
        self.page_span = timedelta(hours=self.config["page_hours"])

    def pull_orders(
        self, *, cursor: str | None, updated_since: datetime | None = None
    ) -> PullResult[Order]:
        now = self.clock.now()
        data = _watermark(cursor)
        if "until" in data:  # mid-pass
            pass_start = datetime.fromisoformat(data["pass_start"])
            until = datetime.fromisoformat(data["until"])
            start = datetime.fromisoformat(data["at"])
        else:
            if "watermark" in data:
                pass_start = datetime.fromisoformat(data["watermark"])
            elif updated_since is not None:
                pass_start = utc(updated_since)
            else:
                pass_start = now - self.backfill
            until, start = max(now, pass_start), pass_start
        end = min(until, start + self.page_span)
        orders = self.simulation.changes_between(start, end, pass_start=pass_start, as_of=until)
        if end < until:
            position = {
                "pass_start": pass_start.isoformat(),
                "until": until.isoformat(),
                "at": end.isoformat(),
            }
            return PullResult(items=tuple(orders), next_cursor=json.dumps(position), has_more=True)
        # The stream up to `until` never changes, so it is an exact resume point.
        return PullResult(
            items=tuple(orders),
            next_cursor=json.dumps({"watermark": until.isoformat()}),
            has_more=False,
        )

    def verify_webhook(self, *, headers: Mapping[str, str], body: bytes) -> None:
        secret = self.credentials.get("webhook_secret")
        if not secret:
            raise WebhookVerificationError("this sandbox connection has no webhook secret")
        received = {k.lower(): v for k, v in headers.items()}.get(SIGNATURE_HEADER)
        if not received:
            raise WebhookVerificationError("missing X-Sandbox-Signature header")
        if not hmac.compare_digest(sign_webhook(body, secret).encode(), received.encode()):
            raise WebhookVerificationError("webhook signature does not match")

    def parse_webhook(self, *, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        lowered = {k.lower(): v for k, v in headers.items()}
        try:
            payload = json.loads(body)
            order_id = str(payload["order_id"])
        except (ValueError, KeyError, TypeError):
            raise PermanentError('sandbox webhook body must be {"order_id": ...}') from None
        now = self.clock.now()
        return WebhookEvent(
            event_id=lowered.get("x-sandbox-event-id") or f"order:{order_id}",
            topic=lowered.get("x-sandbox-topic") or "orders/updated",
            occurred_at=now,
            payload=payload,
            order=self.simulation.order(order_id, now),
        )

    def push_available(self, *, levels: Sequence[AvailableQuantity]) -> list[AvailablePushResult]:
        results: list[AvailablePushResult] = []

        def apply(current: dict[str, int]) -> dict[str, int]:
            for level in levels:
                key = f"{level.inventory_ref}@{level.location_ref or WAREHOUSE}"
                results.append(
                    AvailablePushResult(
                        level.inventory_ref,
                        level.location_ref or WAREHOUSE,
                        PushOutcome.APPLIED,
                        previous=current.get(key),
                    )
                )
                current[key] = level.available
            return current

        self.state.update("available", apply, default={})
        return results

    def push_fulfillment(self, *, shipment: FulfillmentConfirmation) -> ChannelFulfillmentResult:
        key = f"{shipment.order_ref}:{','.join(shipment.tracking_numbers)}"
        external_id = f"SBX-F-{stable_int(key) % 10**10}"
        existed = False

        def record(current: dict[str, str]) -> dict[str, str]:
            nonlocal existed
            existed = key in current
            current.setdefault(key, external_id)
            return current

        self.state.update("fulfillments", record, default={})
        return ChannelFulfillmentResult(
            external_id=external_id, order_ref=shipment.order_ref, already_existed=existed
        )

    def list_listings(self, *, cursor: str | None) -> PullResult[Listing]:
        offset = int(_watermark(cursor).get("offset", 0))
        page = self.skus[offset : offset + self.page_size]
        listings = tuple(
            Listing(
                external_id=f"SBX-L-{sku}",
                sku=sku,
                title=sku.replace("-", " ").title(),
                inventory_ref=f"SBX-INV-{sku}",
                product_id=f"SBX-P-{sku.rsplit('-', 1)[0]}",
                price=self.simulation.price(sku),
            )
            for sku in page
        )
        more = offset + self.page_size < len(self.skus)
        return PullResult(
            items=listings,
            next_cursor=json.dumps({"offset": offset + self.page_size}) if more else None,
            has_more=more,
        )


class SandboxWarehouse(_Base):
    """Simulated 3PL."""

    def _delay(self, request_id: str) -> timedelta:
        low, high = self.config["ship_after_minutes"]
        span = max(0, high - low)
        return timedelta(minutes=low + stable_int(self.config["seed"], request_id) % (span + 1))

    def _initial(self, sku: str) -> int:
        base = self.config["initial_stock"]
        return base + stable_int(self.config["seed"], "stock", sku) % max(1, base // 2)

    def push_fulfillment_order(
        self, *, request: FulfillmentRequest, idempotency_key: str
    ) -> FulfillmentOrderAck:
        now = self.clock.now()
        unknown = sorted({line.sku for line in request.lines} - set(self.skus))
        if unknown:
            raise PermanentError(f"unknown SKUs at the sandbox warehouse: {', '.join(unknown)}")

        def accept(current: dict[str, Any]) -> dict[str, Any]:
            current.setdefault(
                request.request_id,
                {
                    "order_ref": request.order_ref,
                    "accepted_at": now.isoformat(),
                    "service": request.service_level.value,
                    "lines": [[line.sku, line.quantity] for line in request.lines],
                },
            )
            return current

        self.state.update("fulfillment_orders", accept, default={})
        return FulfillmentOrderAck(
            external_id=f"SBX-FO-{stable_int(request.request_id) % 10**10}",
            request_id=request.request_id,
        )

    def _shipments(self, until: datetime) -> list[FulfillmentConfirmation]:
        shipped = []
        for request_id, order in self.state.get("fulfillment_orders", {}).items():
            at = datetime.fromisoformat(order["accepted_at"]) + self._delay(request_id)
            if at > until:
                continue
            number = f"SBX1Z{stable_int(self.config['seed'], 'track', request_id) % 10**12:012d}"
            shipped.append(
                FulfillmentConfirmation(
                    external_id=f"SBX-S-{stable_int(request_id) % 10**10}",
                    order_ref=order["order_ref"],
                    request_id=request_id,
                    carrier="SandboxPost",
                    service=order["service"],
                    tracking_numbers=(number,),
                    tracking_urls=(f"https://sandbox.keel.invalid/track/{number}",),
                    lines=tuple(FulfillmentLine(sku, qty) for sku, qty in order["lines"]),
                    shipped_at=at,
                    location=WAREHOUSE,
                )
            )
        shipped.sort(key=lambda s: (s.shipped_at, s.request_id))
        return shipped

    def pull_shipment_confirmations(
        self, *, cursor: str | None, since: datetime | None = None
    ) -> PullResult[FulfillmentConfirmation]:
        now = self.clock.now()
        data = _watermark(cursor)
        start = (
            datetime.fromisoformat(data["watermark"])
            if "watermark" in data
            else (utc(since) if since else datetime.min.replace(tzinfo=now.tzinfo))
        )
        # A pass ends at `until`; orders accepted later ship later still, so `until` is an
        # exact resume point.
        until = datetime.fromisoformat(data["until"]) if "until" in data else now
        after = tuple(data.get("after") or ("", ""))
        window = [
            s
            for s in self._shipments(until)
            if s.shipped_at > start and (s.shipped_at.isoformat(), s.request_id) > after
        ]
        page = window[: self.page_size]
        if len(window) > self.page_size:
            last = page[-1]
            cursor_data = {
                "watermark": start.isoformat(),
                "until": until.isoformat(),
                "after": [last.shipped_at.isoformat(), last.request_id],
            }
            return PullResult(items=tuple(page), next_cursor=json.dumps(cursor_data), has_more=True)
        return PullResult(
            items=tuple(page),
            next_cursor=json.dumps({"watermark": until.isoformat()}),
            has_more=False,
        )

    def pull_stock_levels(self, *, cursor: str | None) -> PullResult[StockLevel]:
        now = self.clock.now()
        offset = int(_watermark(cursor).get("offset", 0))
        shipped: dict[str, int] = {}
        for shipment in self._shipments(now):
            for line in shipment.lines:
                shipped[line.sku] = shipped.get(line.sku, 0) + line.quantity
        committed: dict[str, int] = {}
        shipped_ids = {s.request_id for s in self._shipments(now)}
        for request_id, order in self.state.get("fulfillment_orders", {}).items():
            if request_id not in shipped_ids:
                for sku, qty in order["lines"]:
                    committed[sku] = committed.get(sku, 0) + qty
        received: dict[str, int] = {}
        for inbound in self.state.get("inbound", {}).values():
            if inbound["expected_at"] and datetime.fromisoformat(inbound["expected_at"]) <= now:
                for sku, qty in inbound["lines"]:
                    received[sku] = received.get(sku, 0) + qty
        levels = []
        for sku in self.skus[offset : offset + self.page_size]:
            on_hand = self._initial(sku) - shipped.get(sku, 0) + received.get(sku, 0)
            levels.append(
                StockLevel(
                    sku=sku,
                    location=WAREHOUSE,
                    on_hand=on_hand,
                    available=on_hand - committed.get(sku, 0),
                    as_of=now,
                )
            )
        more = offset + self.page_size < len(self.skus)
        return PullResult(
            items=tuple(levels),
            next_cursor=json.dumps({"offset": offset + self.page_size}) if more else None,
            has_more=more,
        )

    def push_inbound(self, *, shipment: InboundShipment, idempotency_key: str) -> InboundAck:
        expected = shipment.expected_at or self.clock.now() + timedelta(days=3)

        def record(current: dict[str, Any]) -> dict[str, Any]:
            current.setdefault(
                shipment.reference,
                {
                    "expected_at": expected.isoformat(),
                    "lines": [[line.sku, line.quantity] for line in shipment.lines],
                },
            )
            return current

        self.state.update("inbound", record, default={})
        return InboundAck(
            external_id=f"SBX-ASN-{stable_int(shipment.reference) % 10**10}",
            reference=shipment.reference,
        )


# (carrier, service, level, base, per kg, base days)
SERVICES = (
    ("SandboxPost", "Ground Saver", ServiceLevel.ECONOMY, "4.10", "0.85", 5),
    ("SandboxPost", "Ground", ServiceLevel.STANDARD, "5.40", "1.05", 3),
    ("SandboxPost", "Priority 2-Day", ServiceLevel.EXPEDITED, "8.90", "1.60", 2),
    ("Sandbox Express", "Next Day Air", ServiceLevel.OVERNIGHT, "21.50", "3.10", 1),
)


def _zone(ship_from: str, ship_to: str) -> int:
    if ship_from[:1].isdigit() and ship_to[:1].isdigit():
        return 1 + abs(int(ship_from[0]) - int(ship_to[0]))
    return 5


class SandboxCarrier(_Base):
    """Simulated parcel carrier."""

    def _rates(self, request: RateRequest) -> list[Rate]:
        grams = sum(p.weight_g for p in request.parcels)
        kg = Decimal(max(grams, 100)) / 1000
        zone = _zone(request.ship_from.postal_code, request.ship_to.postal_code)
        fingerprint = json.dumps(
            [
                request.ship_from.postal_code,
                request.ship_to.postal_code,
                grams,
                len(request.parcels),
            ]
        )
        expires = self.clock.now() + timedelta(hours=24)
        rates = []
        for carrier, service, level, base, per_kg, days in SERVICES:
            if request.service_levels and level not in request.service_levels:
                continue
            amount = (Decimal(base) + Decimal(per_kg) * kg) * (1 + Decimal("0.07") * zone)
            amount *= len(request.parcels)
            rates.append(
                Rate(
                    rate_id=f"rate_{stable_int(fingerprint, service) % 16**16:016x}",
                    carrier=carrier,
                    service=service,
                    service_level=level,
                    amount=Money(amount.quantize(Decimal("0.01")), self.currency),
                    estimated_days=days + (zone // 4 if level is ServiceLevel.ECONOMY else 0),
                    expires_at=expires,
                )
            )
        return sorted(rates, key=lambda r: r.amount.amount)

    def quote_rates(self, *, request: RateRequest) -> list[Rate]:
        return self._rates(request)

    def buy_label(self, *, rate: Rate, request: RateRequest, idempotency_key: str) -> Label:
        if not idempotency_key:
            raise PermanentError("buy_label needs an idempotency key")
        if rate.rate_id not in {r.rate_id for r in self._rates(request)}:
            raise PermanentError("rate does not belong to this shipment (quote again)")
        now = self.clock.now()
        number = f"SBX1Z{stable_int(self.config['seed'], 'label', idempotency_key) % 10**12:012d}"

        def buy(current: dict[str, Any]) -> dict[str, Any]:
            current.setdefault(
                idempotency_key,
                {
                    "label_id": f"lbl_{stable_int(idempotency_key) % 16**12:012x}",
                    "tracking_number": number,
                    "carrier": rate.carrier,
                    "service": rate.service,
                    "amount": str(rate.amount.amount),
                    "currency": rate.amount.currency,
                    "created_at": now.isoformat(),
                    "days": rate.estimated_days or 3,
                    "voided": False,
                },
            )
            return current

        label = self.state.update("labels", buy, default={})[idempotency_key]
        return self._label(idempotency_key, label)

    @staticmethod
    def _label(key: str, data: Mapping[str, Any]) -> Label:
        return Label(
            label_id=data["label_id"],
            tracking_number=data["tracking_number"],
            carrier=data["carrier"],
            service=data["service"],
            cost=Money(data["amount"], data["currency"]),
            created_at=datetime.fromisoformat(data["created_at"]),
            label_url=f"https://sandbox.keel.invalid/labels/{data['label_id']}.pdf",
            idempotency_key=key,
        )

    def void_label(self, *, label_id: str) -> None:
        found = False

        def void(current: dict[str, Any]) -> dict[str, Any]:
            nonlocal found
            for label in current.values():
                if label["label_id"] == label_id:
                    label["voided"] = True
                    found = True
            return current

        self.state.update("labels", void, default={})
        if not found:
            raise NotFoundError(f"no sandbox label {label_id}")

    def track(self, *, tracking_number: str) -> list[TrackingEvent]:
        label = next(
            (
                data
                for data in self.state.get("labels", {}).values()
                if data["tracking_number"] == tracking_number
            ),
            None,
        )
        if label is None:
            raise NotFoundError(f"unknown sandbox tracking number {tracking_number}")
        created = datetime.fromisoformat(label["created_at"])
        days = int(label["days"])
        timeline = [
            (timedelta(hours=1), TrackingStatus.PRE_TRANSIT, "Label created"),
        ]
        if not label["voided"]:
            timeline += [
                (timedelta(hours=8), TrackingStatus.IN_TRANSIT, "Accepted at origin facility"),
                (
                    timedelta(days=days, hours=-6),
                    TrackingStatus.OUT_FOR_DELIVERY,
                    "Out for delivery",
                ),
                (timedelta(days=days), TrackingStatus.DELIVERED, "Delivered, front door"),
            ]
        now = self.clock.now()
        return [
            TrackingEvent(tracking_number, status, created + offset, description)
            for offset, status, description in timeline
            if created + offset <= now
        ]
