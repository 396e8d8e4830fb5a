"""Shipping: shipments, rate shopping scored on the brand's lanes, labels behind approval,
tracking, exception monitoring and delivery outcomes.

Shipments — `create_shipment(fo)` decides parcel vs LTL (a routing rule's explicit
`ship_type` wins; otherwise the brand's thresholds: weight, cartons, pallets, "wholesale to
a retail chain"), `rate_shipment` quotes every active carrier connection (plus the built-in
sandbox carrier when the settings say so) and scores the rates with shipping.scoring
against the lane's delivered history; the table, the weights and one sentence are stored.

Labels — `request_label` puts the chosen rate behind the "shipping_label" approval policy
(shipping.approval_subject). Below the threshold, or once approved, a Label row is
committed in state `purchasing` with its idempotency key before the carrier is called
(`purchase_label`, after commit). The carrier call carries the key; a worker killed after
the carrier sold the label but before we stored it leaves the `purchasing` row, and
`recover_purchases` (beat) asks again with the same key: the carrier returns the label it
already sold. A partial unique index allows one live label per shipment. `purchase_label`
checks again that the purchase is covered (approved request, or no policy requires one).

Tracking — `ingest_tracking` stores carrier events once (carrier event id, else time +
status), moves the shipment (in transit → delivered / returned) and raises carrier
exceptions; `poll_tracking` (beat) asks carriers for shipments on their way.

Exceptions — `monitor_exceptions(now)` (beat, `monitor` queue, per brand): no scan for
`no_scan_hours` while in transit, transit beyond the quoted window by more than
`late_tolerance_pct`, carrier exception events; each cause has a unique key so it is never
raised twice. Unattended exceptions escalate to the brand owner after
`escalate_after_hours`. A delivered scan with no open exception completes the shipment,
records a CarrierOutcome (lane statistics) and publishes `shipment.delivered`.

Decisions:
- Carriers are called outside database transactions: a carrier's answer is never rolled
  back with ours, and no row lock waits on a network call.
- When a carrier returns a label URL but no document bytes (the sandbox), Keel renders the
  4×6 label document itself from the carrier's answer (PDF with reportlab, or ZPL text).
- An LTL shipment is created and its ship type recorded, but parcel rate shopping skips
  it (freight quoting is the LTL flow's).
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from accounts.roles import Role, has_permission
from approvals import services as approvals
from approvals.models import ApprovalRequest, RequestState
from audit.context import current_actor
from audit.services import record
from connectors import types as ct
from connectors.errors import ConnectorError, NotFoundError, PermanentError
from orders.models import DecisionLayer, FulfillmentOrder, OrderType, Rule, ShipType
from outbox.services import publish_domain_event
from shipping import scoring
from shipping.models import (
    CarrierOutcome,
    CarrierWebhookCursor,
    ExceptionKind,
    ExceptionStatus,
    Label,
    LabelFormat,
    LabelStatus,
    RateQuote,
    Shipment,
    ShipmentException,
    ShipmentState,
    ShippingSettings,
    SuggestedAction,
    TrackingEvent,
)
from sync import plugins
from sync.models import Connection, ConnectionKind, ConnectionStatus

log = logging.getLogger(__name__)

LABEL_SUBJECT = "shipping_label"
SANDBOX_CONNECTOR = "sandbox_carrier"
SANDBOX_CHANNEL_KEY = "shipping-sandbox"
# A carton holds at most this much; a pallet this much (estimates when the warehouse did
# not say how it packed).
CARTON_KG = Decimal("20")
PALLET_KG = Decimal("450")
RECOVER_AFTER = timedelta(minutes=2)
MAX_PURCHASE_ATTEMPTS = 5
RATEABLE = (ShipmentState.DRAFT, ShipmentState.RATED, ShipmentState.VOIDED)
ON_THE_WAY = (ShipmentState.LABEL_PURCHASED, ShipmentState.IN_TRANSIT, ShipmentState.EXCEPTION)
MOVING = (ct.TrackingStatus.IN_TRANSIT, ct.TrackingStatus.OUT_FOR_DELIVERY)


class ShippingError(ValidationError):
    """Refused input or state; carries a code."""


def _err(message: str, code: str, field: str | None = None) -> ShippingError:
    if field:
        return ShippingError({field: ValidationError(message, code=code)})
    return ShippingError(message, code=code)


def _require(actor: object, permission: str) -> None:
    if actor is not None and not has_permission(actor, permission):
        raise PermissionDenied("Your role does not allow this.")


def _now() -> datetime:
    return timezone.now()


# --- Settings -------------------------------------------------------------------------------


def load_settings() -> ShippingSettings:
    cfg = ShippingSettings.objects.order_by("pk").first()
    if cfg is None:
        cfg = ShippingSettings.objects.create()
    return cfg


SETTINGS_FIELDS = (
    "label_approval_threshold",
    "ltl_weight_kg",
    "ltl_cartons",
    "ltl_pallets",
    "wholesale_retail_ltl",
    "weight_price",
    "weight_reliability",
    "weight_transit",
    "channel_weights",
    "history_weeks",
    "min_history",
    "no_scan_hours",
    "late_tolerance_pct",
    "escalate_after_hours",
    "sandbox_carrier",
)


def _clean_weights(values: dict[str, Any], prefix: str = "") -> dict[str, Decimal]:
    out = {}
    for name in ("price", "reliability", "transit"):
        try:
            value = Decimal(str(values.get(name, "0")))
        except ArithmeticError:
            raise _err("Weights are numbers between 0 and 1.", "invalid", prefix + name) from None
        if not value.is_finite() or value < 0 or value > 1:
            raise _err("Weights are numbers between 0 and 1.", "invalid", prefix + name)
        out[name] = value
    if sum(out.values()) <= 0:
        raise _err("At least one weight must be above zero.", "invalid", prefix + "price")
    return out


def update_settings(*, actor: object, **fields: Any) -> ShippingSettings:
    """Change the brand's shipping settings. The label threshold is mirrored into the
    enabled "shipping_label" approval policy, which is what actually gates purchases."""
    _require(actor, "shipping.settings")
    unknown = set(fields) - set(SETTINGS_FIELDS)
    if unknown:
        raise _err(f"Unknown settings: {', '.join(sorted(unknown))}", "invalid")
    with transaction.atomic():
        cfg = ShippingSettings.objects.select_for_update().get(pk=load_settings().pk)
        before = {name: str(getattr(cfg, name)) for name in SETTINGS_FIELDS}
        weights = _clean_weights(
            {
                "price": fields.get("weight_price", cfg.weight_price),
                "reliability": fields.get("weight_reliability", cfg.weight_reliability),
                "transit": fields.get("weight_transit", cfg.weight_transit),
            },
            prefix="weight_",
        )
        channel_weights = {}
        for channel, values in (fields.get("channel_weights", cfg.channel_weights) or {}).items():
            if not isinstance(values, dict):
                raise _err(
                    "Per-channel weights map names to numbers.", "invalid", "channel_weights"
                )
            cleaned = _clean_weights(values, prefix="channel_weights.")
            channel_weights[str(channel)] = {k: str(v) for k, v in cleaned.items()}
        threshold = fields.get("label_approval_threshold", cfg.label_approval_threshold)
        try:
            threshold = Decimal(str(threshold)).quantize(Decimal("0.01"))
        except ArithmeticError:
            raise _err("Enter an amount.", "invalid", "label_approval_threshold") from None
        if threshold < 0:
            raise _err("Enter an amount of zero or more.", "invalid", "label_approval_threshold")
        for name, value in fields.items():
            setattr(cfg, name, value)
        cfg.weight_price = weights["price"]
        cfg.weight_reliability = weights["reliability"]
        cfg.weight_transit = weights["transit"]
        cfg.channel_weights = channel_weights
        cfg.label_approval_threshold = threshold
        try:
            cfg.full_clean()
        except ValidationError as exc:
            raise ShippingError(exc.message_dict) from None
        cfg.save()
        after = {name: str(getattr(cfg, name)) for name in SETTINGS_FIELDS}
        changes = {k: [before[k], after[k]] for k in after if before[k] != after[k]}
        if "label_approval_threshold" in changes:
            _mirror_threshold(threshold, actor)
        if changes:
            record("shipping.settings_changed", obj=cfg, changes=changes)
    return cfg


def _mirror_threshold(threshold: Decimal, actor: object) -> None:
    from approvals.models import ApprovalPolicy

    policy = (
        ApprovalPolicy.objects.filter(subject_type=LABEL_SUBJECT, is_enabled=True)
        .order_by("position", "id")
        .first()
    )
    if policy is None:
        return
    if not has_permission(actor, "approvals.manage_policies"):
        raise _err(
            "Changing the label threshold changes the approval policy; ask an owner or admin.",
            "forbidden",
            "label_approval_threshold",
        )
    approvals.update_policy(policy, actor=actor, amount_above=threshold)


def label_threshold() -> Decimal | None:
    """The amount above which labels need approval, as the enabled policy says."""
    from approvals.models import ApprovalPolicy

    policy = (
        ApprovalPolicy.objects.filter(subject_type=LABEL_SUBJECT, is_enabled=True)
        .order_by("position", "id")
        .first()
    )
    return None if policy is None else policy.amount_above


def weights_for(cfg: ShippingSettings, channel: str) -> scoring.Weights:
    default = scoring.Weights(
        float(cfg.weight_price), float(cfg.weight_reliability), float(cfg.weight_transit)
    )
    return scoring.weights_from((cfg.channel_weights or {}).get(channel), default)


# --- Shipments ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShipTypeDecision:
    ship_type: str
    reason: str


def _rule_set_ship_type(fo: FulfillmentOrder) -> str | None:
    decision = fo.decision
    if decision.layer != DecisionLayer.RULES or not decision.rule_name:
        return None
    rule = Rule.objects.filter(
        rule_set__version=decision.rule_set_version, name=decision.rule_name
    ).first()
    if rule is None:
        return None
    return (rule.actions or {}).get("ship_type") or None


def fulfillment_weight_g(fo: FulfillmentOrder) -> int:
    grams = Decimal(0)
    for line in fo.lines.select_related("sku"):
        grams += (line.sku.weight_grams or Decimal(0)) * line.quantity
    return int(grams.to_integral_value())


def estimate_packing(weight_g: int, ship_type: str) -> tuple[int, int]:
    """(cartons, pallets) when the warehouse has not said."""
    kg = Decimal(weight_g) / 1000
    cartons = max(1, math.ceil(kg / CARTON_KG))
    pallets = max(1, math.ceil(kg / PALLET_KG)) if ship_type == ShipType.LTL else 0
    return cartons, pallets


def decide_ship_type(
    fo: FulfillmentOrder,
    cfg: ShippingSettings,
    *,
    weight_g: int,
    cartons: int,
    pallets: int,
) -> ShipTypeDecision:
    explicit = _rule_set_ship_type(fo)
    if explicit:
        label = ShipType(explicit).label
        return ShipTypeDecision(
            explicit, f"Routing rule “{fo.decision.rule_name}” ships this as {label}."
        )
    order = fo.order
    kg = Decimal(weight_g) / 1000
    if cfg.wholesale_retail_ltl and order.order_type == OrderType.WHOLESALE and order.ship_company:
        return ShipTypeDecision(
            ShipType.LTL, f"Wholesale order to a retail chain ({order.ship_company}) goes LTL."
        )
    if kg >= cfg.ltl_weight_kg:
        return ShipTypeDecision(
            ShipType.LTL, f"{kg:.1f} kg is at or over the {cfg.ltl_weight_kg} kg LTL threshold."
        )
    if pallets >= cfg.ltl_pallets and pallets > 0:
        return ShipTypeDecision(ShipType.LTL, f"{pallets} pallet(s) go LTL.")
    if cartons >= cfg.ltl_cartons:
        return ShipTypeDecision(
            ShipType.LTL, f"{cartons} cartons reach the {cfg.ltl_cartons}-carton LTL threshold."
        )
    return ShipTypeDecision(
        ShipType.PARCEL,
        f"{kg:.1f} kg in {cartons} carton(s) is under every LTL threshold: parcel.",
    )


def create_shipment(
    fo: FulfillmentOrder,
    *,
    actor: object = None,
    weight_g: int | None = None,
    cartons: int | None = None,
    pallets: int | None = None,
) -> Shipment:
    """The fulfillment order's shipment (an existing live one is returned as it is)."""
    _require(actor, "shipping.operate")
    cfg = load_settings()
    with transaction.atomic():
        fo = (
            FulfillmentOrder.objects.select_for_update()
            .select_related("order", "warehouse", "decision")
            .get(pk=fo.pk)
        )
        existing = (
            fo.shipments.exclude(state__in=[ShipmentState.VOIDED, ShipmentState.RETURNED])
            .order_by("-id")
            .first()
        )
        if existing is not None:
            return existing
        grams = fulfillment_weight_g(fo) if weight_g is None else int(weight_g)
        if grams < 0:
            raise _err("Weight cannot be negative.", "invalid", "weight_g")
        guess_cartons, guess_pallets = estimate_packing(grams, fo.ship_type)
        cartons = guess_cartons if cartons is None else max(1, int(cartons))
        pallets = guess_pallets if pallets is None else max(0, int(pallets))
        decided = decide_ship_type(fo, cfg, weight_g=grams, cartons=cartons, pallets=pallets)
        if decided.ship_type == ShipType.LTL and pallets == 0:
            pallets = estimate_packing(grams, ShipType.LTL)[1]
        order, wh = fo.order, fo.warehouse
        per = max(1, grams // cartons) if grams else 100
        shipment = Shipment.objects.create(
            fulfillment=fo,
            ship_type=decided.ship_type,
            ship_type_reason=decided.reason[:300],
            warehouse=wh,
            channel=order.channel[:100],
            origin_postal=wh.postal_code,
            origin_state=wh.state,
            origin_country=wh.country or "US",
            dest_name=order.ship_name,
            dest_company=order.ship_company,
            dest_line1=order.ship_line1,
            dest_city=order.ship_city,
            dest_state=order.ship_state,
            dest_postal=order.ship_postal_code,
            dest_country=order.ship_country,
            lane=scoring.lane_of(wh.postal_code, order.ship_state, order.ship_postal_code),
            weight_g=grams,
            parcels=[{"weight_g": per} for _ in range(cartons)],
            cartons=cartons,
            pallets=pallets,
            currency=approvals.current_brand().currency,
        )
        record(
            "shipment.created",
            obj=shipment,
            changes={
                "fulfillment": fo.pk,
                "ship_type": shipment.ship_type,
                "reason": shipment.ship_type_reason,
                "weight_g": grams,
                "cartons": cartons,
                "pallets": pallets,
            },
        )
    return shipment


def carrier_connections(cfg: ShippingSettings | None = None) -> list[Connection]:
    """Every active carrier connection that quotes parcels; the built-in sandbox carrier
    (connected on first use) joins them as the `sandbox_carrier` setting says."""
    cfg = cfg or load_settings()
    conns = [
        c
        for c in Connection.objects.active().filter(kind=ConnectionKind.CARRIER)
        if _quotes_parcels(c)
    ]
    real = [c for c in conns if c.connector != SANDBOX_CONNECTOR]
    wanted = cfg.sandbox_carrier == "always" or (cfg.sandbox_carrier == "auto" and not real)
    if not wanted:
        return real
    sandbox = [c for c in conns if c.connector == SANDBOX_CONNECTOR]
    if not sandbox:
        existing = Connection.objects.filter(channel_key=SANDBOX_CHANNEL_KEY).first()
        if existing is None:
            from sync.services import create_connection

            try:
                with transaction.atomic():
                    existing = create_connection(
                        connector=SANDBOX_CONNECTOR,
                        display_name="Sandbox carrier (built-in)",
                        channel_key=SANDBOX_CHANNEL_KEY,
                        settings={},
                    )
            except IntegrityError:
                existing = Connection.objects.get(channel_key=SANDBOX_CHANNEL_KEY)
        if existing.status == ConnectionStatus.ACTIVE:
            sandbox = [existing]
    return real + sandbox


def _quotes_parcels(conn: Connection) -> bool:
    info = plugins.infos().get(conn.connector)
    return info is not None and ct.Capability.RATES_QUOTE in info.capabilities


def _address(
    *, name: str, company: str, line1: str, city: str, state: str, postal: str, country: str
) -> ct.Address:
    return ct.Address(
        name=name,
        company=company,
        line1=line1,
        city=city,
        region=state,
        postal_code=postal,
        country=(country or "US").upper()[:2],
    )


def rate_request(shipment: Shipment) -> ct.RateRequest:
    wh = shipment.warehouse
    return ct.RateRequest(
        ship_from=_address(
            name=wh.name,
            company="",
            line1=wh.address_line1,
            city=wh.city,
            state=wh.state,
            postal=shipment.origin_postal,
            country=shipment.origin_country,
        ),
        ship_to=_address(
            name=shipment.dest_name,
            company=shipment.dest_company,
            line1=shipment.dest_line1,
            city=shipment.dest_city,
            state=shipment.dest_state,
            postal=shipment.dest_postal,
            country=shipment.dest_country,
        ),
        parcels=tuple(
            ct.Parcel(weight_g=max(1, int(p.get("weight_g") or 1))) for p in shipment.parcels
        )
        or (ct.Parcel(weight_g=max(1, shipment.weight_g)),),
        reference=shipment.reference,
    )


def _request_from_json(data: dict[str, Any]) -> ct.RateRequest:
    def addr(values: dict[str, Any]) -> ct.Address:
        return ct.Address(**values)

    return ct.RateRequest(
        ship_from=addr(data["ship_from"]),
        ship_to=addr(data["ship_to"]),
        parcels=tuple(ct.Parcel(**p) for p in data["parcels"]),
        reference=data.get("reference", ""),
    )


def _request_json(request: ct.RateRequest) -> dict[str, Any]:
    prim = ct.to_primitive(request)
    return {
        "ship_from": prim["ship_from"],
        "ship_to": prim["ship_to"],
        "parcels": prim["parcels"],
        "reference": prim.get("reference", ""),
    }


def lane_history(lane: str | None = None, *, weeks: int, now: datetime | None = None):
    """Delivered outcomes inside the window, as scoring.Outcome (lane None: every lane)."""
    now = now or _now()
    since = now - timedelta(weeks=weeks)
    rows = CarrierOutcome.objects.filter(delivered_at__gte=since)
    if lane is not None:
        rows = rows.filter(lane=lane)
    out = []
    for row in rows.values(
        "carrier",
        "service",
        "lane",
        "on_time",
        "damaged",
        "quoted_cost",
        "invoiced_cost",
        "rating",
        "delivered_at",
    ):
        out.append(
            scoring.Outcome(
                carrier=row["carrier"],
                service=row["service"],
                lane=row["lane"],
                on_time=row["on_time"],
                damaged=row["damaged"],
                quoted=row["quoted_cost"],
                invoiced=row["invoiced_cost"],
                rating=row["rating"],
                week=int((now - row["delivered_at"]).days // 7),
            )
        )
    return out


def scoring_history(lane: str, *, weeks: int, now: datetime | None = None) -> scoring.History:
    """What the scorer needs for one lane: that lane's outcomes, and each carrier's overall
    record over every lane aggregated in the database (not every row of the window)."""
    from django.db.models import Count, Q, Sum
    from django.db.models.functions import Abs

    now = now or _now()
    history = scoring.History.of(lane_history(lane, weeks=weeks, now=now))
    costed = Q(quoted_cost__gt=0, invoiced_cost__isnull=False)
    rated = Q(rating__isnull=False)
    totals = (
        CarrierOutcome.objects.filter(delivered_at__gte=now - timedelta(weeks=weeks))
        .values("carrier")
        .annotate(
            deliveries=Count("id"),
            timed=Count("id", filter=Q(on_time__isnull=False)),
            on_time_n=Count("id", filter=Q(on_time=True)),
            damaged_n=Count("id", filter=Q(damaged=True)),
            variance_n=Count("id", filter=costed),
            variance_sum=Sum(
                Abs(F("invoiced_cost") - F("quoted_cost")) / F("quoted_cost"), filter=costed
            ),
            rating_n=Count("id", filter=rated),
            rating_sum=Sum(F("rating"), filter=rated),
        )
    )
    history.carrier.clear()
    for row in totals:
        history.carrier[row["carrier"]] = scoring.Stats(
            deliveries=row["deliveries"],
            timed=row["timed"],
            on_time=row["on_time_n"],
            damaged=row["damaged_n"],
            variance_sum=float(row["variance_sum"] or 0),
            variance_n=row["variance_n"],
            # Ratings 1–5 map to 0–1: Σ(r − 1)/4 = (Σr − n)/4.
            rating_sum=float(((row["rating_sum"] or 0) - row["rating_n"]) / 4),
            rating_n=row["rating_n"],
        )
    return history


@dataclass
class QuoteResult:
    connection: Connection
    rates: list[ct.Rate]
    error: str = ""


def _quote_all(request: ct.RateRequest, conns: Sequence[Connection]) -> list[QuoteResult]:
    results = []
    for conn in conns:
        try:
            with plugins.connector_for(conn) as carrier:
                rates = list(carrier.quote_rates(request=request))
            results.append(QuoteResult(conn, rates))
        except ConnectorError as exc:
            results.append(QuoteResult(conn, [], exc.message[:300]))
    return results


def rate_shipment(shipment: Shipment, *, actor: object = None) -> Shipment:
    """Quote every carrier connection and choose by lane-scored composite."""
    _require(actor, "shipping.operate")
    shipment = Shipment.objects.select_related("warehouse").get(pk=shipment.pk)
    if shipment.state not in RATEABLE:
        raise _err(
            f"A shipment that is {shipment.get_state_display().lower()} cannot be rated again.",
            "state",
        )
    if shipment.ship_type == ShipType.LTL:
        raise _err("LTL shipments are quoted as freight, not parcel rates.", "ltl")
    cfg = load_settings()
    request = rate_request(shipment)
    # Carriers answer outside any transaction: nothing waits on them under a lock.
    results = _quote_all(request, carrier_connections(cfg))
    history = scoring_history(shipment.lane, weeks=cfg.history_weeks)
    weights = weights_for(cfg, shipment.channel)
    request_json = _request_json(request)
    with transaction.atomic():
        shipment = Shipment.objects.select_for_update().get(pk=shipment.pk)
        if shipment.state not in RATEABLE:
            raise _err("The shipment moved on while it was being rated.", "state")
        shipment.quotes.filter(labels__isnull=True).delete()
        quotes = []
        for result in results:
            for rate in result.rates:
                quotes.append(
                    RateQuote(
                        shipment=shipment,
                        connection=result.connection,
                        rate_id=rate.rate_id[:255],
                        carrier=rate.carrier[:100],
                        service=rate.service[:100],
                        service_level=str(rate.service_level)[:20],
                        amount=rate.amount.amount.quantize(Decimal("0.01")),
                        currency=rate.amount.currency,
                        estimated_days=rate.estimated_days,
                        expires_at=rate.expires_at,
                        raw=ct.to_primitive(rate),
                        request=request_json,
                    )
                )
        RateQuote.objects.bulk_create(quotes)
        comparable = [q for q in quotes if q.currency == shipment.currency] or quotes
        candidates = [
            scoring.Candidate(str(q.pk), q.carrier, q.service, q.amount, q.estimated_days)
            for q in comparable
        ]
        choice = scoring.score(
            candidates,
            history,
            shipment.lane,
            weights,
            min_history=cfg.min_history,
            weeks=cfg.history_weeks,
        )
        by_ref = {s.candidate.ref: s for s in choice.table}
        for q in quotes:
            scored = by_ref.get(str(q.pk))
            if scored is not None:
                q.score = Decimal(str(round(scored.score, 4)))
                q.do_not_use = scored.do_not_use
        RateQuote.objects.bulk_update(quotes, ["score", "do_not_use"])
        chosen = next(
            (q for q in quotes if choice.chosen and str(q.pk) == choice.chosen.candidate.ref), None
        )
        shipment.chosen_quote = chosen
        shipment.choice_table = [s.as_json() for s in choice.table]
        shipment.choice_inputs = {
            "weights": {
                "price": round(weights.price, 4),
                "reliability": round(weights.reliability, 4),
                "transit": round(weights.transit, 4),
            },
            "lane": shipment.lane,
            "history_weeks": cfg.history_weeks,
            "min_history": cfg.min_history,
            "errors": {str(r.connection.pk): r.error for r in results if r.error},
            "connections": [r.connection.display_name for r in results],
        }
        shipment.choice_reason = choice.reason if chosen else _no_rates(results)
        if chosen is not None:
            shipment.carrier, shipment.service = chosen.carrier, chosen.service
            shipment.promised_days = chosen.estimated_days
        shipment.state = ShipmentState.RATED if chosen else ShipmentState.DRAFT
        shipment.save()
        record(
            "shipment.rated",
            obj=shipment,
            changes={
                "quotes": len(quotes),
                "chosen": chosen.label if chosen else None,
                "price": str(chosen.amount) if chosen else None,
                "reason": shipment.choice_reason,
                "weights": shipment.choice_inputs["weights"],
            },
        )
    return shipment


def _no_rates(results: Sequence[QuoteResult]) -> str:
    errors = [f"{r.connection.display_name}: {r.error}" for r in results if r.error]
    if not results:
        return "No carrier is connected: connect one under Connections."
    return "No carrier quoted this shipment." + (f" ({'; '.join(errors)})" if errors else "")


def choose_quote(shipment: Shipment, quote: RateQuote, *, actor: object) -> Shipment:
    """A person overrides the scored choice (before buying)."""
    _require(actor, "shipping.operate")
    with transaction.atomic():
        approvals.lock_subject(LABEL_SUBJECT, shipment.pk)
        shipment = Shipment.objects.select_for_update().get(pk=shipment.pk)
        if shipment.state != ShipmentState.RATED or quote.shipment_id != shipment.pk:
            raise _err("Only a rated shipment's own rates can be chosen.", "state")
        before = shipment.chosen_quote.label if shipment.chosen_quote else None
        shipment.chosen_quote = quote
        shipment.carrier, shipment.service = quote.carrier, quote.service
        shipment.promised_days = quote.estimated_days
        who = getattr(actor, "email", None) or current_actor().label
        shipment.choice_reason = f"{quote.label} chosen by {who} over the scored suggestion."
        shipment.save()
        record(
            "shipment.rate_overridden",
            obj=shipment,
            changes={"chosen": [before, quote.label], "price": str(quote.amount)},
        )
    return shipment


# --- Labels ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelRequest:
    """What asking for a label came to: `state` is "purchased", "purchasing" (the carrier
    is being asked), "pending" (approval waits: `approval`) or "failed"."""

    state: str
    shipment: Shipment
    label: Label | None = None
    approval: ApprovalRequest | None = None


def label_facts(shipment_id: str):
    from approvals.registry import Facts

    shipment = Shipment.objects.select_related("chosen_quote").get(pk=int(shipment_id))
    quote = shipment.chosen_quote
    brand_currency = approvals.current_brand().currency
    amount = None
    if quote is not None and quote.currency == brand_currency:
        amount = quote.amount
    title = f"Label for {shipment.reference}"
    if quote is not None:
        title += f": {quote.label}, {quote.amount} {quote.currency}"
    return Facts(title=title, amount=amount, version=quote.pk if quote else 1)


def request_label(
    shipment: Shipment, *, actor: object = None, label_format: str = LabelFormat.PDF
) -> LabelRequest:
    """Buy the chosen rate's label, or put it behind approval when the policy says so."""
    _require(actor, "shipping.operate")
    if label_format not in LabelFormat.values:
        raise _err("Label format is pdf or zpl.", "invalid", "label_format")
    with transaction.atomic():
        approvals.lock_subject(LABEL_SUBJECT, shipment.pk)
        shipment = Shipment.objects.select_for_update().get(pk=shipment.pk)
        live = shipment.labels.filter(
            status__in=[LabelStatus.PURCHASING, LabelStatus.PURCHASED]
        ).first()
        if live is not None:
            state = "purchased" if live.status == LabelStatus.PURCHASED else "purchasing"
            return LabelRequest(state, shipment, live)
        if shipment.state == ShipmentState.AWAITING_APPROVAL:
            pending = (
                ApprovalRequest.objects.for_subject(LABEL_SUBJECT, shipment.pk).pending().first()
            )
            if pending is not None:
                return LabelRequest("pending", shipment, approval=pending)
        if shipment.state != ShipmentState.RATED or shipment.chosen_quote_id is None:
            raise _err("Rate the shipment and choose a rate before buying its label.", "state")
        # The format travels with the shipment to the approval's continuation.
        shipment.label_format = label_format
        shipment.save(update_fields=["label_format", "updated_at"])
        outcome = approvals.open_request(LABEL_SUBJECT, shipment.pk, requested_by=actor)
        if outcome.state == approvals.NOT_REQUIRED:
            label = _start_purchase(
                shipment, key=f"shipment:{shipment.pk}:{shipment.labels.count() + 1}"
            )
            return LabelRequest("purchasing", _fresh(shipment), label)
        if outcome.pending:
            shipment.state = ShipmentState.AWAITING_APPROVAL
            shipment.save(update_fields=["state", "updated_at"])
            record(
                "shipment.label_awaiting_approval",
                obj=shipment,
                changes={"approval_request": outcome.request.pk},
            )
            return LabelRequest("pending", _fresh(shipment), approval=outcome.request)
        # Auto-approved: the continuation has already started the purchase.
        label = shipment.labels.filter(approval_request_id=outcome.request.pk).first()
        return LabelRequest("purchasing", _fresh(shipment), label, outcome.request)


def _fresh(shipment: Shipment) -> Shipment:
    return Shipment.objects.get(pk=shipment.pk)


def _start_purchase(
    shipment: Shipment, *, key: str, approval_request_id: int | None = None
) -> Label:
    """Commit the purchasing row (with its key) in the caller's transaction; the carrier
    is called after commit."""
    quote = shipment.chosen_quote
    label = Label.objects.create(
        shipment=shipment,
        quote=quote,
        connection=quote.connection,
        idempotency_key=key,
        approval_request_id=approval_request_id,
        cost=quote.amount,
        currency=quote.currency,
        carrier=quote.carrier,
        service=quote.service,
        label_format=shipment.label_format,
        requested_by_label=current_actor().label[:200],
    )
    record(
        "label.purchase_started",
        obj=shipment,
        changes={"label": label.pk, "key": key, "quote": quote.label, "price": str(quote.amount)},
    )
    transaction.on_commit(lambda: dispatch_purchase(label.pk))
    return label


def _purchase_after_commit(label_id: int) -> None:
    try:
        purchase_label(label_id)
    except Exception:  # noqa: BLE001  (the row stays "purchasing"; recovery retries it)
        log.exception("label %s: purchase after commit failed; recovery will retry", label_id)


#: What runs after the purchasing row commits. Inline by default (a person waiting on the
#: page gets the label at once); tests may swap it, recovery covers a lost call.
dispatch_purchase = _purchase_after_commit


def on_label_approved(request: ApprovalRequest, continuation_key: str) -> None:
    shipment = Shipment.objects.select_for_update().get(pk=int(request.subject_id))
    if shipment.labels.filter(idempotency_key=continuation_key).exists():
        return
    if shipment.chosen_quote_id is None:
        raise _err("The shipment has no chosen rate any more.", "state")
    if shipment.labels.filter(status__in=[LabelStatus.PURCHASING, LabelStatus.PURCHASED]).exists():
        raise _err("This shipment already has a label.", "state")
    _start_purchase(shipment, key=continuation_key, approval_request_id=request.pk)


def on_label_closed(request: ApprovalRequest) -> None:
    shipment = Shipment.objects.select_for_update().get(pk=int(request.subject_id))
    if shipment.state == ShipmentState.AWAITING_APPROVAL and not shipment.labels.filter(
        status__in=[LabelStatus.PURCHASING, LabelStatus.PURCHASED]
    ):
        shipment.state = ShipmentState.RATED
        shipment.save(update_fields=["state", "updated_at"])
    record(
        "shipment.label_not_approved",
        obj=shipment,
        changes={"approval_request": request.pk, "state": request.state},
    )


class PurchaseNotCovered(ShippingError):
    pass


def _check_covered(label: Label) -> None:
    """Defence in depth: a label is bought only with an approved request or when no policy
    requires one for its amount."""
    if label.approval_request_id is not None:
        state = (
            ApprovalRequest.objects.filter(pk=label.approval_request_id)
            .values_list("state", flat=True)
            .first()
        )
        if state != RequestState.APPROVED:
            raise PurchaseNotCovered(
                "The label's approval request is not approved.", code="approval"
            )
        return
    if approvals.requirement(LABEL_SUBJECT, label_facts(str(label.shipment_id))) is not None:
        raise PurchaseNotCovered("This label needs an approved request.", code="approval")


def _rate_of(quote: RateQuote) -> ct.Rate:
    """The carrier's Rate as quoted (every field the connector gave, from `raw`), so a
    purchase hands back exactly what the carrier sent (its shipment ref, service code)."""
    import dataclasses

    raw = dict(quote.raw or {})
    values: dict[str, Any] = {}
    for f in dataclasses.fields(ct.Rate):
        if f.name not in raw or raw[f.name] is None:
            continue
        value = raw[f.name]
        if f.name == "amount":
            value = ct.Money(str(value["amount"]), value["currency"])
        elif f.name in ("expires_at", "quoted_at"):
            value = datetime.fromisoformat(value)
        values[f.name] = value
    if not values:
        values = {
            "rate_id": quote.rate_id,
            "carrier": quote.carrier,
            "service": quote.service,
            "service_level": quote.service_level or "standard",
            "amount": ct.Money(quote.amount, quote.currency),
            "estimated_days": quote.estimated_days,
            "expires_at": quote.expires_at,
        }
    return ct.Rate(**values)


def purchase_label(label_id: int) -> Label:
    """Ask the carrier for the label of a `purchasing` row (again, after a crash: the same
    key returns the label the carrier already sold) and store it."""
    label = Label.objects.select_related("quote", "shipment", "connection").get(pk=label_id)
    if label.status != LabelStatus.PURCHASING:
        return label
    _check_covered(label)
    Label.objects.filter(pk=label.pk).update(attempts=F("attempts") + 1)
    request = _request_from_json(label.quote.request)
    try:
        with plugins.connector_for(label.connection) as carrier:
            bought = carrier.buy_label(
                rate=_rate_of(label.quote), request=request, idempotency_key=label.idempotency_key
            )
    except PermanentError as exc:
        return _purchase_failed(label, exc.message)
    except ConnectorError as exc:
        Label.objects.filter(pk=label.pk).update(error=exc.message[:500])
        raise
    status = str(getattr(bought, "status", "purchased"))
    if status == "failed":
        return _purchase_failed(label, "The carrier could not produce the label.")
    if status == "pending":
        # Still being produced: recovery asks again with the same key later.
        Label.objects.filter(pk=label.pk).update(
            external_id=bought.label_id[:255], error="The carrier is still producing the label."
        )
        return Label.objects.get(pk=label.pk)
    document, fmt = _document_for(label, bought)
    if fmt != label.label_format:
        Label.objects.filter(pk=label.pk).update(label_format=fmt)
    return commit_label(label.pk, bought, document)


def _document_for(label: Label, bought: ct.Label) -> tuple[bytes, str]:
    """The label file and its format: the carrier's own document when it sent one (in the
    format the connection is set up for), else one Keel renders from the carrier's data."""
    data = getattr(bought, "document", b"")
    if isinstance(data, bytes | bytearray) and data:
        fmt = LabelFormat.ZPL if "zpl" in (bought.label_format or "").lower() else LabelFormat.PDF
        return bytes(data), fmt
    if label.label_format == LabelFormat.ZPL:
        return render_zpl(label.shipment, bought).encode(), LabelFormat.ZPL
    return render_label_pdf(label.shipment, bought), LabelFormat.PDF


def commit_label(label_id: int, bought: ct.Label, document: bytes) -> Label:
    """Store what the carrier sold, once."""
    with transaction.atomic():
        label = Label.objects.select_for_update().select_related("shipment").get(pk=label_id)
        if label.status != LabelStatus.PURCHASING:
            return label
        ext = "zpl" if label.label_format == LabelFormat.ZPL else "pdf"
        name = f"labels/{hashlib.sha256(label.idempotency_key.encode()).hexdigest()[:24]}.{ext}"
        if default_storage.exists(name):
            default_storage.delete(name)
        label.document.save(name.rsplit("/", 1)[1], ContentFile(document), save=False)
        label.status = LabelStatus.PURCHASED
        label.external_id = bought.label_id[:255]
        label.tracking_number = bought.tracking_number[:100]
        label.carrier = bought.carrier[:100]
        label.service = bought.service[:100]
        label.cost = bought.cost.amount.quantize(Decimal("0.01"))
        label.currency = bought.cost.currency
        label.label_url = bought.label_url[:500]
        label.purchased_at = _now()
        label.error = ""
        label.save()
        shipment = Shipment.objects.select_for_update().get(pk=label.shipment_id)
        shipment.state = ShipmentState.LABEL_PURCHASED
        shipment.tracking_number = label.tracking_number
        shipment.carrier, shipment.service = label.carrier, label.service
        shipment.label_purchased_at = label.purchased_at
        shipment.save()
        record(
            "label.purchased",
            obj=shipment,
            changes={
                "label": label.pk,
                "tracking": label.tracking_number,
                "carrier": f"{label.carrier} {label.service}",
                "cost": str(label.cost),
                "key": label.idempotency_key,
            },
        )
    return label


def _purchase_failed(label: Label, message: str) -> Label:
    with transaction.atomic():
        label = Label.objects.select_for_update().get(pk=label.pk)
        if label.status != LabelStatus.PURCHASING:
            return label
        label.status = LabelStatus.FAILED
        label.error = message[:500]
        label.save(update_fields=["status", "error"])
        shipment = Shipment.objects.select_for_update().get(pk=label.shipment_id)
        shipment.state = ShipmentState.RATED
        shipment.save(update_fields=["state", "updated_at"])
        record("label.purchase_failed", obj=shipment, changes={"label": label.pk, "error": message})
    return label


def recover_purchases(now: datetime | None = None) -> dict[str, int]:
    """Purchasing rows left by a crash (or a lost after-commit call): ask again, same key."""
    now = now or _now()
    counts = {"recovered": 0, "failed": 0, "waiting": 0}
    stale = Label.objects.filter(
        status=LabelStatus.PURCHASING, created_at__lte=now - RECOVER_AFTER
    ).values_list("pk", "attempts")
    for pk, attempts in stale:
        if attempts >= MAX_PURCHASE_ATTEMPTS:
            _purchase_failed(Label.objects.get(pk=pk), "Given up after repeated attempts.")
            counts["failed"] += 1
            continue
        try:
            label = purchase_label(pk)
        except (ConnectorError, PurchaseNotCovered) as exc:
            log.warning("label %s: recovery attempt failed: %s", pk, exc)
            counts["waiting"] += 1
            continue
        counts["recovered" if label.status == LabelStatus.PURCHASED else "failed"] += 1
    return counts


def void_label(label: Label, *, actor: object = None, reason: str = "") -> Label:
    """Void (refund) an unused label at the carrier, then here."""
    _require(actor, "shipping.operate")
    label = Label.objects.select_related("shipment", "connection").get(pk=label.pk)
    if label.status != LabelStatus.PURCHASED:
        raise _err("Only a purchased label can be voided.", "state")
    if label.shipment.state not in (ShipmentState.LABEL_PURCHASED, ShipmentState.EXCEPTION):
        raise _err("The carrier has scanned this parcel: it can no longer be voided.", "state")
    try:
        with plugins.connector_for(label.connection) as carrier:
            carrier.void_label(label_id=label.external_id)
    except NotFoundError:
        pass  # already gone at the carrier: voiding twice is not an error
    with transaction.atomic():
        label = Label.objects.select_for_update().get(pk=label.pk)
        if label.status != LabelStatus.PURCHASED:
            return label
        label.status = LabelStatus.VOIDED
        label.voided_at = _now()
        label.save(update_fields=["status", "voided_at"])
        shipment = Shipment.objects.select_for_update().get(pk=label.shipment_id)
        shipment.state = ShipmentState.VOIDED
        shipment.tracking_number = ""
        shipment.save(update_fields=["state", "tracking_number", "updated_at"])
        record(
            "label.voided",
            obj=shipment,
            changes={"label": label.pk, "tracking": label.tracking_number, "reason": reason},
        )
    return label


def render_label_pdf(shipment: Shipment, bought: ct.Label) -> bytes:
    from reportlab.lib.units import inch
    from reportlab.pdfgen import canvas

    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=(4 * inch, 6 * inch))
    pdf.setTitle(f"Label {bought.tracking_number}")
    y = 5.6 * inch
    lines = [
        ("Helvetica-Bold", 14, f"{bought.carrier} {bought.service}"),
        ("Helvetica", 9, f"FROM: {shipment.warehouse.name}"),
        ("Helvetica", 9, f"{shipment.warehouse.address_line1}"),
        (
            "Helvetica",
            9,
            f"{shipment.warehouse.city} {shipment.origin_state} {shipment.origin_postal}",
        ),
        ("Helvetica-Bold", 11, f"SHIP TO: {shipment.dest_name}"),
        ("Helvetica", 11, shipment.dest_company),
        ("Helvetica", 11, shipment.dest_line1),
        (
            "Helvetica",
            11,
            f"{shipment.dest_city} {shipment.dest_state} {shipment.dest_postal} "
            f"{shipment.dest_country}",
        ),
        ("Helvetica-Bold", 13, f"TRACKING: {bought.tracking_number}"),
        ("Helvetica", 9, f"Weight: {shipment.weight_g / 1000:.2f} kg  Ref: {shipment.reference}"),
    ]
    for font, size, text in lines:
        if not text.strip():
            continue
        pdf.setFont(font, size)
        pdf.drawString(0.25 * inch, y, text[:60])
        y -= (size + 6) / 72 * inch
    pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def render_zpl(shipment: Shipment, bought: ct.Label) -> str:
    return "\n".join(
        [
            "^XA",
            f"^FO30,30^A0N,40,40^FD{bought.carrier} {bought.service}^FS",
            f"^FO30,100^A0N,30,30^FDSHIP TO: {shipment.dest_name}^FS",
            f"^FO30,140^A0N,30,30^FD{shipment.dest_line1}^FS",
            f"^FO30,180^A0N,30,30^FD{shipment.dest_city} {shipment.dest_state} "
            f"{shipment.dest_postal}^FS",
            f"^FO30,260^BCN,120,Y,N,N^FD{bought.tracking_number}^FS",
            f"^FO30,420^A0N,25,25^FDRef {shipment.reference}^FS",
            "^XZ",
        ]
    )


# --- Tracking -------------------------------------------------------------------------------


_EXCEPTION_KINDS = {
    "address_issue": ExceptionKind.ADDRESS,
    "damaged": ExceptionKind.DAMAGE,
    "return_to_sender": ExceptionKind.RETURN_TO_SENDER,
}


def classify_exception(status: str, description: str, reason: str | None = None) -> str:
    """The exception kind a carrier event stands for ("" when it is none). The carrier's
    own reason (TrackingEvent.exception) wins; otherwise the description's words."""
    if reason:
        return _EXCEPTION_KINDS.get(str(reason), ExceptionKind.CARRIER)
    text = (description or "").lower()
    if status == ct.TrackingStatus.RETURNED or "return to sender" in text:
        return ExceptionKind.RETURN_TO_SENDER
    if status != ct.TrackingStatus.EXCEPTION:
        return ""
    if "address" in text:
        return ExceptionKind.ADDRESS
    if "damage" in text:
        return ExceptionKind.DAMAGE
    return ExceptionKind.CARRIER


SUGGESTIONS = {
    ExceptionKind.NO_SCAN: SuggestedAction.CONTACT_CARRIER,
    ExceptionKind.LATE: SuggestedAction.CONTACT_CARRIER,
    ExceptionKind.ADDRESS: SuggestedAction.FIX_ADDRESS,
    ExceptionKind.DAMAGE: SuggestedAction.RESHIP,
    ExceptionKind.RETURN_TO_SENDER: SuggestedAction.RESHIP,
    ExceptionKind.CARRIER: SuggestedAction.CONTACT_CARRIER,
    ExceptionKind.PURCHASE_FAILED: SuggestedAction.CONTACT_CARRIER,
}


def _event_key(event: ct.TrackingEvent) -> str:
    carrier_id = getattr(event, "event_id", "") or getattr(event, "external_id", "")
    if carrier_id:
        return str(carrier_id)[:255]
    return f"{event.occurred_at.isoformat()}|{event.status}"


def ingest_tracking(
    shipment: Shipment, events: Iterable[ct.TrackingEvent], *, source: str = "poll"
) -> int:
    """Store carrier events once and move the shipment on. Returns how many were new."""
    new = 0
    with transaction.atomic():
        shipment = Shipment.objects.select_for_update().get(pk=shipment.pk)
        for event in sorted(events, key=lambda e: e.occurred_at):
            key = _event_key(event)
            kind = classify_exception(
                str(event.status), event.description, getattr(event, "exception", None)
            )
            row, created = TrackingEvent.objects.get_or_create(
                shipment=shipment,
                event_key=key,
                defaults={
                    "status": str(event.status),
                    "occurred_at": event.occurred_at,
                    "description": event.description[:500],
                    "location": event.location[:200],
                    "exception_kind": kind,
                    "source": source,
                },
            )
            if not created:
                continue
            new += 1
            _apply_event(shipment, row)
        if new:
            shipment.save()
    return new


def _apply_event(shipment: Shipment, event: TrackingEvent) -> None:
    status = event.status
    if status != ct.TrackingStatus.PRE_TRANSIT:
        shipment.last_scan_at = max(filter(None, [shipment.last_scan_at, event.occurred_at]))
    if status in MOVING and shipment.state == ShipmentState.LABEL_PURCHASED:
        shipment.state = ShipmentState.IN_TRANSIT
        shipment.shipped_at = shipment.shipped_at or event.occurred_at
        _mark_fulfillment_shipped(shipment)
        record("shipment.in_transit", obj=shipment, changes={"at": event.occurred_at.isoformat()})
        if shipment.ship_type == ShipType.LTL:
            from shipping.freight import on_freight_moving

            on_freight_moving(shipment)
    if event.exception_kind:
        if status == ct.TrackingStatus.RETURNED:
            shipment.state = ShipmentState.RETURNED
        raise_exception(
            shipment,
            event.exception_kind,
            cause_key=f"event:{shipment.pk}:{event.event_key}",
            detail=f"{event.description or event.status} ({event.occurred_at:%Y-%m-%d %H:%M})",
            now=event.occurred_at,
        )
    if status == ct.TrackingStatus.DELIVERED:
        shipment.shipped_at = shipment.shipped_at or shipment.label_purchased_at
        shipment.delivered_at = event.occurred_at
        _mark_fulfillment_shipped(shipment)
        # LTL completes with its proof of delivery (and the final freight bill).
        if shipment.ship_type != ShipType.LTL:
            complete_if_delivered(shipment)


def _mark_fulfillment_shipped(shipment: Shipment) -> None:
    from orders.models import FulfillmentStatus
    from orders.services import OPEN_FULFILLMENT, mark_shipped

    fo = shipment.fulfillment
    if fo.status in OPEN_FULFILLMENT:
        mark_shipped(fo, tracking_number=shipment.tracking_number, carrier=shipment.carrier)
    elif fo.status == FulfillmentStatus.SHIPPED and not fo.tracking_number:
        FulfillmentOrder.objects.filter(pk=fo.pk).update(
            tracking_number=shipment.tracking_number, carrier=shipment.carrier
        )


def complete_if_delivered(
    shipment: Shipment, *, quoted: Decimal | None = None, invoiced: Decimal | None = None
) -> bool:
    """Delivered with no open exception: complete, record the lane outcome, publish.
    (Caller holds the shipment row and saves it.)"""
    if shipment.delivered_at is None or shipment.state == ShipmentState.DELIVERED:
        return False
    if shipment.exceptions.exclude(status=ExceptionStatus.RESOLVED).exists():
        return False
    shipment.state = ShipmentState.DELIVERED
    started = shipment.shipped_at or shipment.label_purchased_at or shipment.created_at
    actual = Decimal((shipment.delivered_at - started).total_seconds()) / Decimal(86400)
    promised = shipment.promised_days
    label = shipment.labels.filter(status=LabelStatus.PURCHASED).first()
    quote = shipment.chosen_quote
    CarrierOutcome.objects.update_or_create(
        shipment=shipment,
        defaults={
            "carrier": shipment.carrier,
            "service": shipment.service,
            "lane": shipment.lane,
            "promised_days": promised,
            "actual_days": actual.quantize(Decimal("0.01")),
            "on_time": None if promised is None else actual <= promised,
            "damaged": shipment.exceptions.filter(kind=ExceptionKind.DAMAGE).exists(),
            "claim": False,
            "quoted_cost": quoted if quoted is not None else (quote.amount if quote else None),
            "invoiced_cost": (
                invoiced if invoiced is not None else (label.cost if label else None)
            ),
            "delivered_at": shipment.delivered_at,
        },
    )
    record(
        "shipment.delivered",
        obj=shipment,
        changes={
            "at": shipment.delivered_at.isoformat(),
            "days": str(actual.quantize(Decimal("0.1"))),
        },
    )
    publish_domain_event(
        "shipment.delivered",
        shipment.pk,
        lambda: shipment_event(shipment),
        key=f"shipment.delivered:{shipment.pk}",
    )
    return True


def shipment_event(shipment: Shipment) -> dict[str, Any]:
    return {
        "id": shipment.pk,
        "reference": shipment.reference,
        "fulfillment_order": shipment.fulfillment_id,
        "order": shipment.fulfillment.order_id,
        "state": shipment.state,
        "ship_type": shipment.ship_type,
        "carrier": shipment.carrier,
        "service": shipment.service,
        "tracking_number": shipment.tracking_number,
        "lane": shipment.lane,
        "delivered_at": shipment.delivered_at.isoformat() if shipment.delivered_at else None,
    }


def tracking_connection(shipment: Shipment) -> Connection | None:
    """The connection that sold the label (parcel) or booked the freight (LTL)."""
    label = (
        shipment.labels.filter(status=LabelStatus.PURCHASED).select_related("connection").first()
    )
    if label is not None:
        return label.connection
    booking = shipment.bookings.filter(status="booked").select_related("connection").first()
    return booking.connection if booking else None


def poll_tracking(limit: int = 200) -> dict[str, int]:
    """Ask carriers about shipments on their way (oldest scan first)."""
    counts = {"polled": 0, "events": 0, "errors": 0}
    shipments = (
        Shipment.objects.filter(state__in=ON_THE_WAY, delivered_at__isnull=True)
        .exclude(tracking_number="")
        .order_by(F("last_scan_at").asc(nulls_first=True), "id")[:limit]
    )
    for shipment in shipments:
        conn = tracking_connection(shipment)
        if conn is None or conn.status != ConnectionStatus.ACTIVE:
            continue
        try:
            with plugins.connector_for(conn) as carrier:
                events = carrier.track(tracking_number=shipment.tracking_number)
        except ConnectorError as exc:
            log.warning("tracking %s: %s", shipment.tracking_number, exc)
            counts["errors"] += 1
            continue
        counts["polled"] += 1
        counts["events"] += ingest_tracking(shipment, events, source="poll")
    return counts


def apply_tracking_webhook(conn: Connection, events: Iterable[ct.TrackingEvent]) -> int:
    """Carrier webhook events (already verified and parsed through the sync inbox): each
    goes to the shipment with its tracking number on this connection's labels."""
    by_number: dict[str, list[ct.TrackingEvent]] = {}
    for event in events:
        by_number.setdefault(event.tracking_number, []).append(event)
    new = 0
    for number, batch in by_number.items():
        label = (
            Label.objects.filter(connection=conn, tracking_number=number)
            .exclude(status=LabelStatus.PURCHASING)
            .order_by("-id")
            .first()
        )
        if label is not None:
            new += ingest_tracking(label.shipment, batch, source="webhook")
    return new


WEBHOOK_BATCH = 200


def apply_carrier_webhooks() -> dict[str, int]:
    """Tracking updates carriers pushed to the sync webhook inbox (`/hooks/<uuid>/`).

    Sync verifies, stores and acknowledges each delivery once; a carrier delivery carries
    no order, so sync's order ingestion passes it by. Here each stored delivery of a
    carrier connection is parsed again by its connector (`WebhookEvent.tracking`) and
    applied, in receipt order, once per receipt (a cursor per connection); events are
    deduplicated per shipment anyway, so a re-read changes nothing."""
    from sync.models import ReceiptStatus, WebhookReceipt

    counts = {"receipts": 0, "events": 0}
    for conn in Connection.objects.filter(kind=ConnectionKind.CARRIER):
        cursor, _ = CarrierWebhookCursor.objects.get_or_create(connection=conn)
        receipts = []
        # Only the run of receipts sync is done with: one still waiting stops the cursor.
        for receipt in WebhookReceipt.objects.filter(
            connection=conn, pk__gt=cursor.last_receipt_id
        ).order_by("pk")[:WEBHOOK_BATCH]:
            if receipt.status in (ReceiptStatus.RECEIVED, ReceiptStatus.PROCESSING):
                break
            receipts.append(receipt)
        if not receipts:
            continue
        try:
            with plugins.connector_for(conn) as carrier:
                for receipt in receipts:
                    counts["receipts"] += 1
                    try:
                        event = carrier.parse_webhook(
                            headers=dict(receipt.headers), body=bytes(receipt.body)
                        )
                    except (PermanentError, ValueError, TypeError):
                        continue
                    tracking = tuple(getattr(event, "tracking", ()) or ())
                    if tracking:
                        counts["events"] += apply_tracking_webhook(conn, tracking)
        except ConnectorError as exc:
            log.warning("carrier webhooks of connection %s: %s", conn.pk, exc)
            continue
        CarrierWebhookCursor.objects.filter(pk=cursor.pk).update(last_receipt_id=receipts[-1].pk)
    return counts


# --- Exceptions -----------------------------------------------------------------------------


def raise_exception(
    shipment: Shipment,
    kind: str,
    *,
    cause_key: str,
    detail: str,
    now: datetime | None = None,
) -> ShipmentException | None:
    """Open an exception once per cause (None when this cause was raised before)."""
    now = now or _now()
    cfg = load_settings()
    with transaction.atomic():
        if ShipmentException.objects.filter(cause_key=cause_key[:255]).exists():
            return None
        exc = ShipmentException.objects.create(
            shipment=shipment,
            kind=kind,
            cause_key=cause_key[:255],
            detail=detail[:500],
            suggested_action=SUGGESTIONS.get(kind, SuggestedAction.CONTACT_CARRIER),
            opened_at=now,
            escalate_at=now + timedelta(hours=cfg.escalate_after_hours),
        )
        if shipment.state in (ShipmentState.IN_TRANSIT, ShipmentState.LABEL_PURCHASED):
            Shipment.objects.filter(pk=shipment.pk).update(state=ShipmentState.EXCEPTION)
            shipment.state = ShipmentState.EXCEPTION
        record(
            "shipment.exception_raised",
            obj=shipment,
            changes={"kind": kind, "detail": exc.detail, "cause": exc.cause_key},
        )
        publish_domain_event(
            "shipment.exception",
            exc.pk,
            lambda: {
                **shipment_event(shipment),
                "exception": {"id": exc.pk, "kind": kind, "detail": exc.detail},
            },
            key=f"shipment.exception:{exc.cause_key}",
        )
    return exc


def monitor_exceptions(now: datetime | None = None) -> dict[str, int]:
    """One pass of the exception monitor; raising twice for one cause is impossible."""
    now = now or _now()
    cfg = load_settings()
    counts = {"no_scan": 0, "late": 0, "carrier": 0, "escalated": 0}
    watched = Shipment.objects.filter(
        state__in=[ShipmentState.IN_TRANSIT, ShipmentState.EXCEPTION],
        delivered_at__isnull=True,
    )
    silence = timedelta(hours=cfg.no_scan_hours)
    tolerance = Decimal(100 + cfg.late_tolerance_pct) / 100
    for shipment in watched:
        last = shipment.last_scan_at or shipment.shipped_at
        if last is not None and now - last > silence:
            hours = int((now - last).total_seconds() // 3600)
            if raise_exception(
                shipment,
                ExceptionKind.NO_SCAN,
                cause_key=f"no_scan:{shipment.pk}:{last.isoformat()}",
                detail=f"No carrier scan for {hours} h (last {last:%Y-%m-%d %H:%M} UTC).",
                now=now,
            ):
                counts["no_scan"] += 1
        started = shipment.shipped_at or shipment.label_purchased_at
        if shipment.promised_days and started is not None:
            window = timedelta(days=float(Decimal(shipment.promised_days) * tolerance))
            if now - started > window:
                days = (now - started).total_seconds() / 86400
                if raise_exception(
                    shipment,
                    ExceptionKind.LATE,
                    cause_key=f"late:{shipment.pk}",
                    detail=(
                        f"{days:.1f} days in transit; {shipment.carrier} quoted "
                        f"{shipment.promised_days} (+{cfg.late_tolerance_pct} % tolerance)."
                    ),
                    now=now,
                ):
                    counts["late"] += 1
    # Carrier exception events whose exception was never raised (e.g. ingested before
    # this code, or a rolled-back raise).
    flagged = TrackingEvent.objects.exclude(exception_kind="").filter(
        shipment__delivered_at__isnull=True
    )
    for event in flagged.select_related("shipment"):
        if raise_exception(
            event.shipment,
            event.exception_kind,
            cause_key=f"event:{event.shipment_id}:{event.event_key}",
            detail=f"{event.description or event.status} ({event.occurred_at:%Y-%m-%d %H:%M})",
            now=now,
        ):
            counts["carrier"] += 1
    counts["escalated"] = escalate_exceptions(now)
    return counts


def _brand_owner():
    from accounts.models import User

    return User.objects.filter(role=Role.OWNER, is_active=True).order_by("id").first()


def escalate_exceptions(now: datetime) -> int:
    due = ShipmentException.objects.filter(
        status=ExceptionStatus.OPEN, escalated_at__isnull=True, escalate_at__lte=now
    )
    owner = _brand_owner()
    done = 0
    for exc in due:
        with transaction.atomic():
            row = ShipmentException.objects.select_for_update().get(pk=exc.pk)
            if row.escalated_at is not None or row.status != ExceptionStatus.OPEN:
                continue
            row.escalated_at = now
            previous = row.owner_id
            if owner is not None:
                row.owner = owner
            row.save(update_fields=["escalated_at", "owner"])
            record(
                "shipment.exception_escalated",
                obj=row.shipment,
                changes={"exception": row.pk, "owner": [previous, row.owner_id]},
            )
            if owner is not None and owner.email:
                transaction.on_commit(lambda r=row, o=owner: _mail_escalation(r, o))
            done += 1
    return done


def _mail_escalation(exc: ShipmentException, owner) -> None:
    from django.core.mail import send_mail

    try:
        send_mail(
            f"Unattended shipment exception on {exc.shipment.reference}",
            f"{exc.get_kind_display()}: {exc.detail}\nSuggested: "
            f"{exc.get_suggested_action_display()}.",
            None,
            [owner.email],
        )
    except Exception:  # noqa: BLE001  (mail is best effort; the queue shows it anyway)
        log.warning("escalation mail for exception %s failed", exc.pk)


def _exception_locked(exc: ShipmentException) -> ShipmentException:
    return ShipmentException.objects.select_for_update().select_related("shipment").get(pk=exc.pk)


def acknowledge_exception(exc: ShipmentException, *, actor: object) -> ShipmentException:
    _require(actor, "shipping.exceptions")
    with transaction.atomic():
        exc = _exception_locked(exc)
        if exc.status != ExceptionStatus.OPEN:
            raise _err("Only an open exception can be acknowledged.", "state")
        exc.status = ExceptionStatus.ACKNOWLEDGED
        exc.acknowledged_at = _now()
        if exc.owner_id is None and getattr(actor, "pk", None):
            exc.owner = actor
        exc.save()
        record("shipment.exception_acknowledged", obj=exc.shipment, changes={"exception": exc.pk})
    return exc


def assign_exception(exc: ShipmentException, owner, *, actor: object) -> ShipmentException:
    _require(actor, "shipping.exceptions")
    if owner is not None and not has_permission(owner, "shipping.exceptions"):
        raise _err("That person cannot work shipment exceptions.", "invalid", "owner")
    with transaction.atomic():
        exc = _exception_locked(exc)
        before = exc.owner_id
        exc.owner = owner
        exc.save(update_fields=["owner"])
        record(
            "shipment.exception_assigned",
            obj=exc.shipment,
            changes={"exception": exc.pk, "owner": [before, getattr(owner, "pk", None)]},
        )
    return exc


def resolve_exception(
    exc: ShipmentException, *, actor: object, resolution: str
) -> ShipmentException:
    _require(actor, "shipping.exceptions")
    resolution = (resolution or "").strip()
    if not resolution:
        raise _err("Say how it was resolved.", "required", "resolution")
    with transaction.atomic():
        exc = _exception_locked(exc)
        if exc.status == ExceptionStatus.RESOLVED:
            raise _err("This exception is already resolved.", "state")
        exc.status = ExceptionStatus.RESOLVED
        exc.resolved_at = _now()
        exc.resolution = resolution[:500]
        exc.save()
        record(
            "shipment.exception_resolved",
            obj=exc.shipment,
            changes={"exception": exc.pk, "resolution": exc.resolution},
        )
        shipment = Shipment.objects.select_for_update().get(pk=exc.shipment_id)
        if not shipment.exceptions.exclude(status=ExceptionStatus.RESOLVED).exists():
            if shipment.delivered_at is not None:
                complete_if_delivered(shipment)
            elif shipment.state == ShipmentState.EXCEPTION:
                shipment.state = ShipmentState.IN_TRANSIT
            shipment.save()
    return exc


def propose_reship(exc: ShipmentException, *, actor: object) -> Shipment:
    """A replacement shipment for the same fulfillment order. Its label goes through the
    same "shipping_label" approval as any other, so a reship above the threshold waits for
    an approver."""
    _require(actor, "shipping.exceptions")
    original = exc.shipment
    with transaction.atomic():
        replacement = Shipment.objects.create(
            fulfillment=original.fulfillment,
            ship_type=original.ship_type,
            ship_type_reason=f"Reship of {original.reference}: {exc.get_kind_display()}.",
            warehouse=original.warehouse,
            channel=original.channel,
            origin_postal=original.origin_postal,
            origin_state=original.origin_state,
            origin_country=original.origin_country,
            dest_name=original.dest_name,
            dest_company=original.dest_company,
            dest_line1=original.dest_line1,
            dest_city=original.dest_city,
            dest_state=original.dest_state,
            dest_postal=original.dest_postal,
            dest_country=original.dest_country,
            lane=original.lane,
            weight_g=original.weight_g,
            parcels=original.parcels,
            cartons=original.cartons,
            pallets=original.pallets,
            currency=original.currency,
        )
        record(
            "shipment.reship_proposed",
            obj=original,
            changes={"exception": exc.pk, "replacement": replacement.pk},
        )
    return replacement


def rate_delivery(shipment: Shipment, rating: int, *, actor: object) -> CarrierOutcome:
    """One click after delivery: 1–5 (thumbs up = 5, down = 1). Feeds carrier reliability."""
    _require(actor, "shipping.operate")
    if not isinstance(rating, int) or not 1 <= rating <= 5:
        raise _err("A rating is 1 to 5.", "invalid", "rating")
    with transaction.atomic():
        outcome = CarrierOutcome.objects.select_for_update().filter(shipment=shipment).first()
        if outcome is None:
            raise _err("Only a delivered shipment can be rated.", "state")
        before = outcome.rating
        outcome.rating = rating
        outcome.rated_by = actor if getattr(actor, "pk", None) else None
        outcome.save(update_fields=["rating", "rated_by"])
        record("shipment.rated_by_ops", obj=shipment, changes={"rating": [before, rating]})
    return outcome


def report_damage(shipment: Shipment, *, actor: object, claim: bool = False) -> CarrierOutcome:
    _require(actor, "shipping.exceptions")
    with transaction.atomic():
        outcome = CarrierOutcome.objects.select_for_update().filter(shipment=shipment).first()
        if outcome is None:
            raise _err("Only a delivered shipment can be reported damaged.", "state")
        outcome.damaged = True
        outcome.claim = outcome.claim or claim
        outcome.save(update_fields=["damaged", "claim"])
        record("shipment.damage_reported", obj=shipment, changes={"claim": claim})
    return outcome


# --- Reading --------------------------------------------------------------------------------


@dataclass(frozen=True)
class LaneRow:
    lane: str
    carrier: str
    service: str
    deliveries: int
    on_time: float | None
    damage: float
    variance: float | None
    rating: float | None
    reliability: float
    do_not_use: bool


def carrier_performance(*, weeks: int | None = None, lane: str = "") -> list[LaneRow]:
    cfg = load_settings()
    weeks = weeks or cfg.history_weeks
    outcomes = lane_history(weeks=weeks)
    history = scoring.History.of(outcomes)
    names = {o.key: (o.carrier, o.service) for o in outcomes}
    avoid: dict[str, set[str]] = {}
    rows = []
    for (lane_key, key), stats in sorted(history.lane.items()):
        if lane and lane_key != lane:
            continue
        if lane_key not in avoid:
            avoid[lane_key] = scoring.do_not_use(history, lane_key, cfg.min_history)
        carrier, service = names[key]
        rel = scoring.reliability(history, lane_key, carrier, service)
        rows.append(
            LaneRow(
                lane=lane_key,
                carrier=carrier,
                service=service,
                deliveries=stats.deliveries,
                on_time=stats.on_time_rate,
                damage=stats.damaged / stats.deliveries if stats.deliveries else 0.0,
                variance=stats.variance_sum / stats.variance_n if stats.variance_n else None,
                rating=(1 + 4 * stats.rating_sum / stats.rating_n) if stats.rating_n else None,
                reliability=rel.score,
                do_not_use=key in avoid[lane_key],
            )
        )
    return rows


def open_exceptions():
    return ShipmentException.objects.exclude(status=ExceptionStatus.RESOLVED).select_related(
        "shipment", "owner"
    )


def open_exception_count() -> int:
    return ShipmentException.objects.filter(status=ExceptionStatus.OPEN).count()
