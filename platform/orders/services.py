"""Order ingestion, routing, fulfillment orders and the review queue.

`ingest_order` is the one entry point for connectors, the API, CSV and manual entry:
the same (channel, external id) never makes a second order, and channel updates apply
in the order of the channel's update time (an older update is logged and ignored).

Routing runs in the same transaction as the order: facts are gathered, the pure engine
in orders.routing decides, and the chosen plan becomes fulfillment orders whose lines
reserve stock (inventory.services.reserve). A reservation that loses a race to another
order makes the order re-route once against fresh stock, then hold.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Q
from django.utils import timezone

from audit.context import current_actor
from audit.services import record, record_many
from catalog.models import SKU, BundleComponent, ListingMapping
from catalog.services import resolve_listing
from inventory import services as stock
from inventory.models import Reservation, ReservationStatus, Warehouse
from inventory.services import InsufficientStock, Reference, ReserveLine
from orders import routing
from orders.events import order_event
from orders.models import (
    DecisionLayer,
    FulfillmentLine,
    FulfillmentOrder,
    FulfillmentStatus,
    HoldReason,
    Order,
    OrderLine,
    OrderStatus,
    OrderType,
    RoutingDecision,
    RoutingSettings,
    Rule,
    RuleSet,
    RuleSetStatus,
    ServiceLevel,
    ShipType,
)
from outbox.services import publish_domain_event
from tenants.models import Brand

log = logging.getLogger(__name__)

OPEN_FULFILLMENT = (FulfillmentStatus.OPEN, FulfillmentStatus.SENT)
ROUTABLE = (OrderStatus.RECEIVED, OrderStatus.HELD)


# --- Input -----------------------------------------------------------------------------


@dataclass(frozen=True)
class LineInput:
    external_line_id: str
    external_sku: str
    quantity: int
    unit_price: Decimal
    title: str = ""
    external_listing_id: str = ""


@dataclass(frozen=True)
class OrderInput:
    """A channel-neutral order, as connectors, the API and CSV hand it over."""

    channel: str
    external_id: str
    placed_at: datetime
    updated_at: datetime
    currency: str
    lines: Sequence[LineInput]
    status: str = "open"  # open | cancelled
    order_type: str = OrderType.DTC
    service_level: str = ServiceLevel.STANDARD
    customer_name: str = ""
    customer_email: str = ""
    ship_name: str = ""
    ship_company: str = ""
    ship_line1: str = ""
    ship_line2: str = ""
    ship_city: str = ""
    ship_state: str = ""
    ship_postal_code: str = ""
    ship_country: str = ""
    ship_phone: str = ""
    is_gift: bool = False
    is_vip: bool = False
    is_repeat_customer: bool = False
    fraud_flag: bool = False
    note: str = ""
    total: Decimal | None = None


HEADER_FIELDS = [
    "order_type",
    "service_level",
    "customer_name",
    "customer_email",
    "ship_name",
    "ship_company",
    "ship_line1",
    "ship_line2",
    "ship_city",
    "ship_state",
    "ship_postal_code",
    "ship_country",
    "ship_phone",
    "is_gift",
    "is_vip",
    "is_repeat_customer",
    "fraud_flag",
    "note",
    "currency",
]


@dataclass
class IngestResult:
    order: Order
    created: bool
    applied: bool  # False for a stale or identical update
    messages: list[str] = field(default_factory=list)


def _validate(data: OrderInput) -> None:
    errors = {}
    if not data.channel or not data.external_id:
        errors["external_id"] = "Channel and external id are required."
    if not data.lines:
        errors["lines"] = "An order needs at least one line."
    ids = [line.external_line_id for line in data.lines]
    if len(set(ids)) != len(ids):
        errors["lines"] = "Line ids repeat."
    if any(line.quantity < 1 for line in data.lines):
        errors["lines"] = "Line quantities are whole numbers above zero."
    if data.order_type not in OrderType.values:
        errors["order_type"] = "Unknown order type."
    if data.service_level not in ServiceLevel.values:
        errors["service_level"] = "Unknown service level."
    if len(data.currency) != 3:
        errors["currency"] = "Use an ISO 4217 code."
    if timezone.is_naive(data.placed_at) or timezone.is_naive(data.updated_at):
        errors["placed_at"] = "Times must carry a timezone."
    if errors:
        raise ValidationError(errors, code="invalid_order")


def _address_problem(order: Order) -> str:
    if len(order.ship_country) != 2:
        return "Ship-to country is missing."
    if not order.ship_line1 or not order.ship_city:
        return "Ship-to street or city is missing."
    if not order.ship_postal_code:
        return "Ship-to postal code is missing."
    if order.ship_country.upper() == "US" and order.ship_state.upper() not in (
        routing.US_STATE_CENTROIDS
    ):
        return f"“{order.ship_state}” is not a US state code."
    return ""


def ingest_order(data: OrderInput) -> IngestResult:
    """Create or update an order from its channel, then route it if it is new or changed."""
    _validate(data)
    with transaction.atomic():
        order = (
            Order.objects.select_for_update()
            .filter(channel=data.channel, external_id=data.external_id)
            .first()
        )
        if order is None:
            try:
                with transaction.atomic():
                    order = _create(data)
            except IntegrityError:
                # A concurrent twin created it first: apply ours as an update.
                order = Order.objects.select_for_update().get(
                    channel=data.channel, external_id=data.external_id
                )
            else:
                # An order cancelled on the channel before Keel saw it is recorded, not routed.
                if order.status != OrderStatus.CANCELLED:
                    _route_new(order)
                return IngestResult(order, created=True, applied=True)
        return _update(order, data)


def _new_lines(order: Order, lines: Sequence[LineInput]) -> list[OrderLine]:
    """Insert the order's lines, each with its SKU when a listing mapping names one.

    One mapping query for the whole order: the hot path of ingestion. Lines left without
    a SKU go through catalog.services.resolve_listing in _map_lines, which parks them in
    the unmapped queue with this order waiting.
    """
    mapped = dict(
        ListingMapping.objects.filter(
            channel=order.channel, external_sku__in={ln.external_sku for ln in lines}
        ).values_list("external_sku", "sku_id")
    )
    return OrderLine.objects.bulk_create(
        [
            OrderLine(
                order=order,
                external_line_id=ln.external_line_id,
                external_sku=ln.external_sku,
                external_listing_id=ln.external_listing_id,
                sku_id=mapped.get(ln.external_sku),
                title=ln.title[:255],
                quantity=ln.quantity,
                unit_price=ln.unit_price,
            )
            for ln in lines
        ]
    )


def _create(data: OrderInput) -> Order:
    total = data.total
    if total is None:
        total = sum((line.unit_price * line.quantity for line in data.lines), Decimal("0"))
    order = Order.objects.create(
        channel=data.channel,
        external_id=data.external_id,
        placed_at=data.placed_at,
        channel_updated_at=data.updated_at,
        total=total,
        **{f: getattr(data, f) for f in HEADER_FIELDS},
    )
    _new_lines(order, data.lines)
    record(
        "order.received", obj=order, changes={"channel": order.channel, "lines": len(data.lines)}
    )
    publish_domain_event("order.created", order.pk, lambda: order_event(order))
    if data.status == "cancelled":
        _cancel(order, "Cancelled on the channel before Keel saw it.")
    return order


def _update(order: Order, data: OrderInput) -> IngestResult:
    if data.updated_at <= order.channel_updated_at:
        record(
            "order.stale_update_ignored",
            obj=order,
            changes={
                "update_at": data.updated_at.isoformat(),
                "current": order.channel_updated_at.isoformat(),
            },
        )
        return IngestResult(
            order, created=False, applied=False, messages=["Older or repeated update ignored."]
        )
    order.channel_updated_at = data.updated_at
    if order.status in (OrderStatus.CANCELLED, OrderStatus.CLOSED):
        order.save(update_fields=["channel_updated_at", "updated_at"])
        return IngestResult(
            order,
            created=False,
            applied=False,
            messages=[f"Order is {order.get_status_display().lower()}; update ignored."],
        )
    if data.status == "cancelled":
        order.save(update_fields=["channel_updated_at", "updated_at"])
        _cancel(order, "Cancelled on the channel.")
        return IngestResult(order, created=False, applied=True)

    changes = {}
    for name in HEADER_FIELDS:
        if getattr(order, name) != getattr(data, name):
            changes[name] = [getattr(order, name), getattr(data, name)]
            setattr(order, name, getattr(data, name))
    old_lines = {(ln.external_line_id, ln.external_sku, ln.quantity) for ln in order.lines.all()}
    new_lines = {(ln.external_line_id, ln.external_sku, ln.quantity) for ln in data.lines}
    lines_changed = old_lines != new_lines
    if data.total is not None:
        order.total = data.total
    if "fraud_flag" in changes and order.fraud_flag:
        # The channel raised the flag again: an earlier release no longer covers it.
        order.fraud_cleared_at, order.fraud_cleared_by_label = None, ""
    order.save()
    if lines_changed:
        if order.fulfillments.filter(status=FulfillmentStatus.SHIPPED).exists():
            record("order.update_after_shipment", obj=order, changes={"lines": "changed"})
            return IngestResult(
                order,
                created=False,
                applied=False,
                messages=["Lines changed after shipment; needs a person."],
            )
        _release_open_fulfillments(order, "Lines changed on the channel.")
        order.lines.all().delete()
        _new_lines(order, data.lines)
        changes["lines"] = [sorted(map(list, old_lines)), sorted(map(list, new_lines))]
    logged = {k: [str(a), str(b)] for k, (a, b) in changes.items() if k != "lines"}
    if lines_changed:
        logged["lines"] = changes["lines"]
    record("order.updated", obj=order, changes=logged)
    publish_domain_event(
        "order.updated", order.pk, lambda: order_event(order, changed=sorted(logged))
    )
    routing_relevant = lines_changed or any(
        k.startswith("ship_") or k in ("order_type", "service_level", "fraud_flag") for k in changes
    )
    if routing_relevant and order.status in (*ROUTABLE, OrderStatus.ROUTED):
        if order.status == OrderStatus.ROUTED and not lines_changed:
            _release_open_fulfillments(order, "Ship-to or service changed on the channel.")
        _set_status(order, OrderStatus.RECEIVED)
        _route_new(order)
    return IngestResult(order, created=False, applied=True)


# --- Routing ---------------------------------------------------------------------------


def _settings() -> RoutingSettings:
    obj = RoutingSettings.objects.first()
    return obj or RoutingSettings.objects.create()


def published_rules() -> tuple[int | None, list[routing.RuleInfo]]:
    # One query on the ingestion hot path; the rule set is read apart only when it has
    # no active rules (its version is still what the decision log records).
    rows = list(
        Rule.objects.filter(rule_set__status=RuleSetStatus.PUBLISHED, is_active=True)
        .order_by("position")
        .values_list("rule_set__version", "pk", "name", "position", "conditions", "actions")
    )
    if not rows:
        version = (
            RuleSet.objects.filter(status=RuleSetStatus.PUBLISHED)
            .values_list("version", flat=True)
            .first()
        )
        return version, []
    return rows[0][0], [routing.RuleInfo(*row[1:]) for row in rows]


def rules_of(rule_set: RuleSet) -> list[routing.RuleInfo]:
    return [
        routing.RuleInfo(r.pk, r.name, r.position, r.conditions, r.actions)
        for r in rule_set.rules.filter(is_active=True)
    ]


def warehouse_infos() -> list[routing.WarehouseInfo]:
    return [_warehouse_info(w) for w in Warehouse.objects.filter(is_active=True)]


def _warehouse_info(w: Warehouse) -> routing.WarehouseInfo:
    return routing.WarehouseInfo(
        id=w.pk,
        code=w.code,
        country=w.country,
        state=w.state,
        lat=float(w.latitude) if w.latitude is not None else None,
        lon=float(w.longitude) if w.longitude is not None else None,
        capabilities=frozenset(w.capabilities),
        priority=w.priority,
        cutoff=(w.cutoff_time.hour, w.cutoff_time.minute) if w.cutoff_time else None,
        timezone=w.timezone,
        postal_code=w.postal_code,
    )


CARRIER_HISTORY_WEEKS = 12  # when the brand has no shipping settings yet


def carrier_record(
    facts: routing.OrderFacts,
    warehouses: Iterable[routing.WarehouseInfo],
    cache: dict | None = None,
) -> routing.CarrierRecord:
    """On-time delivery history from each warehouse to the order's destination state, from
    the shipping app's carrier outcomes on those lanes (the brand's shipping history window).

    `cache` (a dict the caller keeps for one batch) saves the query for orders going to the
    same place at the same moment.
    """
    # Imported here: shipping builds on orders (its models point at fulfillment orders),
    # so orders reads shipping's history late rather than depending on it at import.
    from shipping.models import CarrierOutcome, ShippingSettings
    from shipping.scoring import lane_of

    whs = sorted(warehouses, key=lambda w: w.id)
    lanes = {w.id: lane_of(w.postal_code, facts.state, facts.postal_code) for w in whs}
    key = ("carrier", tuple(sorted(lanes.items())), facts.now)
    if cache is not None and key in cache:
        return cache[key]
    weeks = (
        ShippingSettings.objects.values_list("history_weeks", flat=True).first()
        or CARRIER_HISTORY_WEEKS
    )
    rows = (
        CarrierOutcome.objects.filter(
            lane__in=set(lanes.values()),
            delivered_at__gte=facts.now - timedelta(weeks=weeks),
            delivered_at__lte=facts.now,
            on_time__isnull=False,
        )
        .values("lane")
        .annotate(timed=Count("id"), on_time=Count("id", filter=Q(on_time=True)))
    )
    by_lane = {row["lane"]: (row["on_time"], row["timed"]) for row in rows}
    record_ = routing.CarrierRecord(
        {w: by_lane[lane] for w, lane in lanes.items() if lane in by_lane}
    )
    if cache is not None:
        cache[key] = record_
    return record_


def decide(
    facts: routing.OrderFacts,
    *,
    warehouses: list[routing.WarehouseInfo],
    atp: dict[tuple[int, int], int],
    rules: list[routing.RuleInfo],
    threshold: float,
    weights: routing.Weights,
    exclude: frozenset[int] = frozenset(),
    cache: dict | None = None,
) -> tuple[routing.Decision, routing.CarrierRecord | None]:
    """routing.decide with carrier history read only when it can matter.

    Most orders are settled by a rule or have one candidate plan: for those no history is
    read. When plans compete and some of their warehouses have delivery history to the
    destination, the order is scored again with it, so the same facts and history always
    give the same decision (the history is returned for the decision log).
    """
    decision = routing.decide(
        facts,
        warehouses=warehouses,
        atp=atp,
        rules=rules,
        threshold=threshold,
        weights=weights,
        exclude=exclude,
    )
    if decision.layer not in ("scoring", "review") or len(decision.candidates) < 2:
        return decision, None
    carrier = carrier_record(facts, [w for w in warehouses if w.id not in exclude], cache)
    if not carrier:
        return decision, None
    return (
        routing.decide(
            facts,
            warehouses=warehouses,
            atp=atp,
            rules=rules,
            threshold=threshold,
            weights=weights,
            exclude=exclude,
            carrier=carrier,
        ),
        carrier,
    )


@dataclass(frozen=True)
class SkuFacts:
    """SKUs by id and bundle recipes (bundle id → [(component id, per bundle)])."""

    skus: dict[int, SKU]
    components: dict[int, list[tuple[int, int]]]


def sku_facts(sku_ids: Iterable[int]) -> SkuFacts:
    skus = SKU.objects.in_bulk(set(sku_ids))
    components: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for bc in BundleComponent.objects.filter(
        bundle_id__in=[s for s, o in skus.items() if o.is_bundle]
    ):
        components[bc.bundle_id].append((bc.component_id, bc.quantity))
    return SkuFacts(skus, components)


def order_facts(
    order: Order,
    lines: list[OrderLine],
    now: datetime | None = None,
    *,
    catalog: SkuFacts | None = None,
    currency: str | None = None,
) -> routing.OrderFacts:
    """What routing sees of `order`. Pass `catalog` (covering the lines' SKUs) and the
    brand's `currency` when they were read already: it saves queries per order."""
    catalog = catalog or sku_facts(ln.sku_id for ln in lines)
    currency = currency or brand_currency()
    skus, components = catalog.skus, catalog.components
    infos = []
    for ln in lines:
        sku = skus[ln.sku_id]
        infos.append(
            routing.LineInfo(
                line_id=ln.pk,
                sku_id=sku.pk,
                quantity=ln.quantity,
                tags=frozenset(sku.tags),
                weight_g=float(sku.weight_grams or 0),
                hazmat=sku.is_hazmat,
                components=tuple(sorted(components.get(sku.pk, ()))),
                code=sku.code,
            )
        )
    return routing.OrderFacts(
        channel=order.channel,
        order_type=order.order_type,
        service_level=order.service_level,
        country=order.ship_country,
        state=order.ship_state,
        postal_code=order.ship_postal_code,
        value=order.total if order.currency.upper() == currency.upper() else None,
        lines=tuple(infos),
        now=now or timezone.now(),
    )


def brand_currency() -> str:
    tenant = getattr(connection, "tenant", None)
    if isinstance(tenant, Brand):
        return tenant.currency
    return Brand.objects.only("currency").get(schema_name=connection.schema_name).currency


def _weights(cfg: RoutingSettings) -> routing.Weights:
    return routing.Weights(
        distance=float(cfg.weight_distance),
        cover=float(cfg.weight_cover),
        cutoff=float(cfg.weight_cutoff),
        packages=float(cfg.weight_packages),
    )


def _atp_for(facts: routing.OrderFacts) -> dict[tuple[int, int], int]:
    skus = {sku for line in facts.lines for sku in line.needs()}
    return stock.available_to_promise(sku_ids=skus)


def _hold(
    order: Order,
    reason: str,
    detail: str,
    *,
    decision_layer: str = DecisionLayer.HOLD,
    inputs: dict | None = None,
    **decision_fields,
) -> None:
    order.status = OrderStatus.HELD
    order.hold_reason = reason
    order.hold_detail = detail[:500]
    order.save(update_fields=["status", "hold_reason", "hold_detail", "updated_at"])
    RoutingDecision.objects.create(
        order=order,
        layer=decision_layer,
        inputs=inputs or {},
        explanation=detail,
        actor_label=current_actor().label[:200],
        **decision_fields,
    )
    record("order.held", obj=order, changes={"reason": reason, "detail": detail})


def _hold_for(order: Order, decision: routing.Decision, inputs: dict, version: int | None) -> None:
    """Hold an order the router could not place (layer "hold") or left to a person."""
    if decision.layer == "hold":
        _hold(order, decision.hold_reason, decision.explanation, inputs=inputs)
        return
    _hold(
        order,
        HoldReason.AWAITING_REVIEW,
        decision.explanation,
        decision_layer=DecisionLayer.REVIEW,
        inputs=inputs,
        candidates=decision.candidates,
        confidence=decision.confidence,
        rule_set_version=version,
        rule_name=decision.rule.name if decision.rule else "",
    )


def _set_status(order: Order, status: str) -> None:
    order.status = status
    order.hold_reason = "" if status != OrderStatus.HELD else order.hold_reason
    order.hold_detail = "" if status != OrderStatus.HELD else order.hold_detail
    order.save(update_fields=["status", "hold_reason", "hold_detail", "updated_at"])


def _map_lines(order: Order) -> list[OrderLine]:
    lines = list(order.lines.all())
    unmapped = []
    for line in lines:
        if line.sku_id is None:
            sku = resolve_listing(
                channel=order.channel,
                external_sku=line.external_sku,
                external_listing_id=line.external_listing_id,
                title=line.title,
                waiting={"kind": "order", "id": order.pk},
            )
            if sku is not None:
                line.sku = sku
                line.save(update_fields=["sku"])
            else:
                unmapped.append(line.external_sku)
    if unmapped:
        _hold(
            order,
            HoldReason.UNMAPPED_SKU,
            f"No SKU is mapped to {', '.join(sorted(set(unmapped)))} on {order.channel}.",
        )
        return []
    return lines


def _covered_line_ids(order: Order) -> set[int]:
    """Order lines that already have a live or shipped fulfillment order."""
    return set(
        FulfillmentLine.objects.filter(
            fulfillment__order=order,
            fulfillment__status__in=(*OPEN_FULFILLMENT, FulfillmentStatus.SHIPPED),
        ).values_list("order_line_id", flat=True)
    )


def _progress_status(order: Order) -> str:
    """Routed, or partially fulfilled when part of it already shipped."""
    shipped = order.fulfillments.filter(status=FulfillmentStatus.SHIPPED).exists()
    return OrderStatus.PARTIALLY_FULFILLED if shipped else OrderStatus.ROUTED


def _route_new(order: Order, *, exclude: frozenset[int] = frozenset()) -> None:
    """Route the order's not-yet-fulfilled lines end to end, or hold it with a reason."""
    if order.fraud_flag and order.fraud_cleared_at is None:
        _hold(order, HoldReason.FRAUD, "The channel flagged this order as possible fraud.")
        return
    lines = _map_lines(order)
    if not lines:
        return
    if order.pk and order.fulfillments.exists():
        # Parts already placed (or shipped) keep their warehouse; route only the rest.
        covered = _covered_line_ids(order)
        lines = [ln for ln in lines if ln.pk not in covered]
        if not lines:
            _set_status(order, _progress_status(order))
            return
    problem = _address_problem(order)
    if problem:
        _hold(order, HoldReason.INVALID_ADDRESS, problem)
        return
    cfg = _settings()
    catalog = sku_facts(ln.sku_id for ln in lines)
    for attempt in range(2):
        facts = order_facts(order, lines, catalog=catalog)
        atp = _atp_for(facts)
        version, rules = published_rules()
        warehouses = {w.pk: w for w in Warehouse.objects.filter(is_active=True)}
        infos = [_warehouse_info(w) for w in warehouses.values()]
        decision, carrier = decide(
            facts,
            warehouses=infos,
            atp=atp,
            rules=rules,
            threshold=float(cfg.confidence_threshold),
            weights=_weights(cfg),
            exclude=exclude,
        )
        inputs = _inputs(facts, atp, version, exclude, carrier, infos)
        if decision.layer in ("hold", "review"):
            _hold_for(order, decision, inputs, version)
            return
        record_ = RoutingDecision(
            order=order,
            layer=decision.layer,
            rule_set_version=version,
            rule_name=decision.rule.name if decision.rule else "",
            inputs=inputs,
            candidates=decision.candidates,
            chosen=decision.plan.as_json({w.pk: w.code for w in warehouses.values()}),
            confidence=decision.confidence,
            explanation=decision.explanation,
            actor_label=current_actor().label[:200],
        )
        try:
            with transaction.atomic():
                record_.save()
                _fulfill_plan(
                    order,
                    lines,
                    decision.plan,
                    decision.ship_type,
                    record_,
                    warehouses=warehouses,
                    skus=catalog.skus,
                    cfg=cfg,
                )
        except InsufficientStock as exc:
            # Another order took the stock between our read and our lock: try once more
            # against fresh numbers, then hold.
            if attempt == 0:
                continue
            _hold(order, HoldReason.INSUFFICIENT_STOCK, str(exc.messages[0]), inputs=inputs)
            return
        _set_status(order, _progress_status(order))
        record(
            "order.routed",
            obj=order,
            changes={
                "layer": decision.layer,
                "plan": record_.chosen,
                "confidence": decision.confidence,
            },
        )
        publish_domain_event(
            "order.routed", order.pk, lambda layer=decision.layer: order_event(order, layer=layer)
        )
        return


def _inputs(
    facts: routing.OrderFacts,
    atp: dict,
    version: int | None,
    exclude: frozenset[int],
    carrier: routing.CarrierRecord | None = None,
    warehouses: Iterable[routing.WarehouseInfo] = (),
) -> dict:
    inputs = {
        "ship_to": [facts.country, facts.state, facts.postal_code],
        "channel": facts.channel,
        "order_type": facts.order_type,
        "service_level": facts.service_level,
        "value": None if facts.value is None else str(facts.value),
        "weight_kg": round(facts.weight_kg, 3),
        "lines": [[ln.line_id, ln.sku_id, ln.quantity] for ln in facts.lines],
        "stock": sorted([s, w, q] for (s, w), q in atp.items()),
        "rule_set_version": version,
        "excluded_warehouses": sorted(exclude),
        "at": facts.now.isoformat(),
    }
    if carrier:
        # On time / deliveries timed, per warehouse code, on the lanes to this customer.
        codes = {w.id: w.code for w in warehouses}
        inputs["carrier_on_time"] = {
            codes.get(w, str(w)): list(record) for w, record in sorted(carrier.lanes.items())
        }
    return inputs


def _fulfill_plan(
    order: Order,
    lines: list[OrderLine],
    plan: routing.Plan,
    ship_type: str | None,
    decision: RoutingDecision,
    *,
    warehouses: dict[int, Warehouse] | None = None,
    skus: dict[int, SKU] | None = None,
    cfg: RoutingSettings | None = None,
) -> list[FulfillmentOrder]:
    """Fulfillment orders for `plan`, reserving their stock. The keyword arguments pass
    rows the caller read already (they must cover the plan's warehouses and SKUs)."""
    by_id = {ln.pk: ln for ln in lines}
    if warehouses is None:
        warehouses = Warehouse.objects.in_bulk([w for w, _ in plan.allocations])
    if skus is None:
        skus = SKU.objects.in_bulk([ln.sku_id for ln in lines])
    cfg = cfg or _settings()
    created = []
    for wh_id, line_ids in plan.allocations:
        fo_lines = [by_id[i] for i in line_ids]
        fo = FulfillmentOrder.objects.create(
            order=order,
            warehouse=warehouses[wh_id],
            decision=decision,
            ship_type=ship_type or _ship_type(fo_lines, skus, cfg),
        )
        FulfillmentLine.objects.bulk_create(
            [
                FulfillmentLine(
                    fulfillment=fo, order_line=ln, sku_id=ln.sku_id, quantity=ln.quantity
                )
                for ln in fo_lines
            ]
        )
        stock.reserve(
            lines=[ReserveLine(skus[ln.sku_id], warehouses[wh_id], ln.quantity) for ln in fo_lines],
            kind="order_line",
            reference=Reference(*fo.reservation_reference),
        )
        _publish_fulfillment("fulfillment.opened", fo, order)
        created.append(fo)
    return created


def _publish_fulfillment(event_type: str, fo: FulfillmentOrder, order: Order) -> None:
    """Internal outbox event (see outbox.events): a 3PL serving the warehouse must receive
    the fulfillment order, its channel must hear that it shipped. Keyed per fulfillment
    order and fact, so publishing it again writes nothing."""
    data = {
        "fulfillment": fo.pk,
        "order": order.pk,
        "channel": order.channel,
        "warehouse": fo.warehouse_id,
    }
    if event_type == "fulfillment.shipped":
        data |= {"tracking_number": fo.tracking_number, "carrier": fo.carrier}
    publish_domain_event(
        event_type, fo.pk, data, key=f"fulfillment:{fo.pk}:{event_type.split('.')[1]}"
    )


def _ship_type(lines: list[OrderLine], skus: dict[int, SKU], cfg: RoutingSettings) -> str:
    grams = sum(float(skus[ln.sku_id].weight_grams or 0) * ln.quantity for ln in lines)
    units = sum(ln.quantity for ln in lines)
    if grams / 1000 >= float(cfg.ltl_weight_kg) or units >= cfg.ltl_units:
        return ShipType.LTL
    return ShipType.PARCEL


# --- People and warehouses acting on orders --------------------------------------------


def _cancel(order: Order, reason: str) -> None:
    _release_open_fulfillments(order, reason)
    order.status = OrderStatus.CANCELLED
    order.hold_reason = ""
    order.hold_detail = ""
    order.save(update_fields=["status", "hold_reason", "hold_detail", "updated_at"])
    record("order.cancelled", obj=order, changes={"reason": reason})
    publish_domain_event("order.cancelled", order.pk, lambda: order_event(order, reason=reason))


def cancel_order(order: Order, *, reason: str = "Cancelled by a person.") -> Order:
    with transaction.atomic():
        order = Order.objects.select_for_update().get(pk=order.pk)
        if order.status == OrderStatus.CANCELLED:
            return order
        if order.fulfillments.filter(status=FulfillmentStatus.SHIPPED).exists():
            raise ValidationError(
                "Part of this order has shipped; it cannot be cancelled.", code="already_shipped"
            )
        _cancel(order, reason)
    return order


def close_order(order: Order, *, note: str = "") -> Order:
    """A fulfilled order is done: it leaves the working lists, and later channel updates
    (a late edit, a replay) are recorded and ignored. Only fully fulfilled orders close:
    anything still open or held needs finishing or cancelling first."""
    with transaction.atomic():
        order = Order.objects.select_for_update().get(pk=order.pk)
        if order.status == OrderStatus.CLOSED:
            return order
        if order.status != OrderStatus.FULFILLED:
            raise ValidationError(
                f"Only a fulfilled order can be closed; this one is "
                f"{order.get_status_display().lower()}.",
                code="not_fulfilled",
            )
        _set_status(order, OrderStatus.CLOSED)
        record("order.closed", obj=order, changes={"note": note[:500]} if note else {})
        publish_domain_event("order.closed", order.pk, lambda: order_event(order, note=note[:500]))
    return order


def _release_open_fulfillments(order: Order, reason: str) -> None:
    for fo in order.fulfillments.filter(status__in=OPEN_FULFILLMENT):
        stock.release(reference=Reference(*fo.reservation_reference))
        fo.status = FulfillmentStatus.CANCELLED
        fo.closed_at = timezone.now()
        fo.save(update_fields=["status", "closed_at"])
        record("fulfillment.cancelled", obj=fo, changes={"reason": reason})


def route_held_order(order: Order) -> Order:
    """Try routing a held order again (after stock arrived, a mapping, an address fix)."""
    with transaction.atomic():
        order = Order.objects.select_for_update().get(pk=order.pk)
        if order.status != OrderStatus.HELD:
            raise ValidationError("Only held orders are routed again.", code="not_held")
        _set_status(order, OrderStatus.RECEIVED)
        _route_new(order)
    return order


def _held_for(order: Order, reason: str, what: str) -> Order:
    order = Order.objects.select_for_update().get(pk=order.pk)
    if order.status != OrderStatus.HELD or order.hold_reason != reason:
        raise ValidationError(
            f"Order {order.external_id} is not held for {what}.", code="not_held_for_that"
        )
    return order


def release_fraud_hold(order: Order, *, actor: object, note: str) -> Order:
    """A person checked an order the channel flagged as possible fraud: route it.

    The flag itself stays (it is the channel's fact); the release is recorded with who
    made it and why, and a later flag from the channel holds the order again.
    """
    note = (note or "").strip()
    if not note:
        raise ValidationError({"note": ValidationError("Say what you checked.", code="required")})
    with transaction.atomic():
        order = _held_for(order, HoldReason.FRAUD, "a fraud flag")
        order.fraud_cleared_at = timezone.now()
        order.fraud_cleared_by_label = _person_label(actor)
        order.save(update_fields=["fraud_cleared_at", "fraud_cleared_by_label", "updated_at"])
        record("order.fraud_released", obj=order, changes={"note": note[:500]})
        _set_status(order, OrderStatus.RECEIVED)
        _route_new(order)
    return order


ADDRESS_FIELDS = (
    "ship_name",
    "ship_company",
    "ship_line1",
    "ship_line2",
    "ship_city",
    "ship_state",
    "ship_postal_code",
    "ship_country",
    "ship_phone",
)


def correct_address(order: Order, *, actor: object, **fields: str) -> Order:
    """Fix the ship-to of an order held for an invalid address, then route it.

    An address that is still invalid is refused and nothing is saved. The channel stays
    the source of truth: a newer update from it replaces this correction.
    """
    unknown = set(fields) - set(ADDRESS_FIELDS)
    if unknown:
        raise ValidationError(f"Not address fields: {', '.join(sorted(unknown))}.", code="invalid")
    with transaction.atomic():
        order = _held_for(order, HoldReason.INVALID_ADDRESS, "an invalid address")
        changes = {}
        for name, value in fields.items():
            value = (value or "").strip()
            if name in ("ship_state", "ship_country"):
                value = value.upper()
            if getattr(order, name) != value:
                changes[name] = [getattr(order, name), value]
                setattr(order, name, value)
        problem = _address_problem(order)
        if problem:
            raise ValidationError(problem, code="invalid_address")
        order.save(update_fields=[*changes, "updated_at"])
        record("order.address_corrected", obj=order, changes=changes)
        _set_status(order, OrderStatus.RECEIVED)
        _route_new(order)
    return order


def _person_label(actor: object) -> str:
    return (getattr(actor, "email", "") or current_actor().label)[:200]


def reprocess_held_order(entry: dict, sku: SKU) -> None:
    """catalog.services reprocessor: a listing this order waited for is now mapped."""
    order = Order.objects.filter(
        pk=entry.get("id"), status=OrderStatus.HELD, hold_reason=HoldReason.UNMAPPED_SKU
    ).first()
    if order is not None:
        route_held_order(order)


def choose_plan(order: Order, *, allocations: dict[str, list[int]], actor, note: str = "") -> Order:
    """A person routes a held order: warehouse code → order line ids (all lines, once)."""
    with transaction.atomic():
        order = Order.objects.select_for_update().get(pk=order.pk)
        if order.status != OrderStatus.HELD:
            raise ValidationError("This order is not waiting for a decision.", code="not_held")
        lines = _map_lines_for_choice(order)
        codes = {w.code: w for w in Warehouse.objects.filter(is_active=True)}
        unknown = set(allocations) - set(codes)
        if unknown:
            raise ValidationError(
                f"Unknown warehouse {', '.join(sorted(unknown))}.", code="unknown_warehouse"
            )
        chosen = [i for ids in allocations.values() for i in ids]
        if sorted(chosen) != sorted(ln.pk for ln in lines):
            raise ValidationError(
                "Give every order line to exactly one warehouse.", code="lines_not_covered"
            )
        plan = routing.Plan(
            tuple(
                sorted((codes[c].pk, tuple(sorted(ids))) for c, ids in allocations.items() if ids)
            )
        )
        decision = RoutingDecision.objects.create(
            order=order,
            layer=DecisionLayer.MANUAL,
            chosen=allocations,
            inputs={"previous_hold": order.hold_reason},
            explanation=f"{actor} chose {' + '.join(sorted(allocations))}."
            + (f" Note: {note}" if note else ""),
            actor_label=current_actor().label[:200],
        )
        _fulfill_plan(order, lines, plan, None, decision)
        _set_status(order, OrderStatus.ROUTED)
        record("order.routed", obj=order, changes={"layer": "manual", "plan": allocations})
        publish_domain_event("order.routed", order.pk, lambda: order_event(order, layer="manual"))
    return order


def _map_lines_for_choice(order: Order) -> list[OrderLine]:
    lines = list(order.lines.all())
    missing = [ln.external_sku for ln in lines if ln.sku_id is None]
    if missing:
        raise ValidationError(f"Map {', '.join(missing)} to a SKU first.", code="unmapped_sku")
    return lines


def reject_fulfillment(fo: FulfillmentOrder, *, reason: str) -> Order:
    """A warehouse cannot ship this: release it and re-route the lines elsewhere."""
    with transaction.atomic():
        order = Order.objects.select_for_update().get(pk=fo.order_id)
        fo = FulfillmentOrder.objects.select_for_update().get(pk=fo.pk)
        if fo.status not in OPEN_FULFILLMENT:
            raise ValidationError("This fulfillment order is closed.", code="closed")
        _reroute_without(
            order,
            fo,
            reason=reason,
            inputs={"rejected_by": fo.warehouse.code},
            explanation=f"{fo.warehouse.code} rejected its part ({reason}); re-routing without it.",
        )
    return order


def _reroute_without(
    order: Order, fo: FulfillmentOrder, *, reason: str, inputs: dict, explanation: str
) -> None:
    """Close `fo` as rejected, log why, and route its lines again without its warehouse.

    Only the rejected lines are routed again: other parts keep their warehouse, and
    shipped parts are never sent twice. Callers hold the order's and the FO's row locks.
    """
    stock.release(reference=Reference(*fo.reservation_reference))
    fo.status = FulfillmentStatus.REJECTED
    fo.closed_at = timezone.now()
    fo.save(update_fields=["status", "closed_at"])
    record("fulfillment.rejected", obj=fo, changes={"reason": reason})
    RoutingDecision.objects.create(
        order=order,
        layer=DecisionLayer.REROUTE,
        inputs=inputs,
        explanation=explanation,
        actor_label=current_actor().label[:200],
    )
    _set_status(order, OrderStatus.RECEIVED)
    _route_new(order, exclude=frozenset({fo.warehouse_id}))


def reroute_shortage(*, warehouse: Warehouse, sku: SKU, on_hand: int, source: str) -> list[Order]:
    """`warehouse` reports only `on_hand` sellable units of `sku`, fewer than its open
    fulfillment orders have reserved: re-route enough of them elsewhere that the rest fit.

    The newest fulfillment orders move first, so orders that waited longest keep their
    stock. Each moved one is closed as rejected with a re-route decision saying what ran
    short, and its order is routed again without this warehouse (or held with a reason).
    Afterwards the ledger can take the lower count (inventory refuses counts below what is
    reserved). Returns the orders that were re-routed.
    """
    if on_hand < 0:
        raise ValidationError("On-hand cannot be negative.", code="invalid_quantity")
    reserved = (
        stock.StockBalance.objects.filter(sku=sku, warehouse=warehouse, status=stock.SELLABLE)
        .values_list("reserved", flat=True)
        .first()
    ) or 0
    excess = reserved - on_hand
    held = dict(
        Reservation.objects.filter(
            sku=sku,
            warehouse=warehouse,
            status=ReservationStatus.ACTIVE,
            reference_type="fulfillment_order",
        ).values_list("reference_id", "quantity")
    )
    candidates = list(
        FulfillmentOrder.objects.filter(
            warehouse=warehouse, status__in=OPEN_FULFILLMENT, pk__in=[int(ref) for ref in held]
        )
        .order_by("-created_at", "-id")
        .values_list("pk", "order_id")
    )
    moved: list[Order] = []
    for fo_id, order_id in candidates:
        if excess <= 0:
            break
        # One transaction per fulfillment order, locking its order then itself (the lock
        # order ingestion uses): each move stands on its own, and no lock is held across
        # orders. A reservation racing in meanwhile only means the lower count is refused
        # again by the ledger, never an oversell.
        with transaction.atomic():
            order = Order.objects.select_for_update().get(pk=order_id)
            fo = FulfillmentOrder.objects.select_for_update().get(pk=fo_id)
            if fo.status not in OPEN_FULFILLMENT:
                continue
            _reroute_without(
                order,
                fo,
                reason=f"Short of {sku.code}",
                inputs={
                    "short_at": warehouse.code,
                    "sku": sku.code,
                    "on_hand": on_hand,
                    "reserved": reserved,
                    "source": source,
                },
                explanation=(
                    f"{warehouse.code} ran short of {sku.code} ({source}: {on_hand} on hand, "
                    f"{reserved} reserved); re-routing FO-{fo.pk} without it."
                ),
            )
        excess -= held[str(fo_id)]
        moved.append(order)
    return moved


def mark_sent(
    fo: FulfillmentOrder, *, via: str, external_id: str = "", request_id: str = ""
) -> bool:
    """The warehouse (a 3PL, a WMS) accepted the fulfillment order: OPEN → SENT.

    False when it was no longer open (a person or a re-route closed it meanwhile, or it
    was already sent): nothing changes then.
    """
    sent = FulfillmentOrder.objects.filter(pk=fo.pk, status=FulfillmentStatus.OPEN).update(
        status=FulfillmentStatus.SENT
    )
    if sent:
        record(
            "fulfillment.sent",
            obj=fo,
            changes={"connection": via, "request_id": request_id, "external_id": external_id},
        )
    return bool(sent)


def mark_shipped(
    fo: FulfillmentOrder, *, tracking_number: str = "", carrier: str = ""
) -> FulfillmentOrder:
    """Stock leaves the warehouse: reservations are consumed, the order progresses."""
    with transaction.atomic():
        fo = FulfillmentOrder.objects.select_for_update().get(pk=fo.pk)
        if fo.status == FulfillmentStatus.SHIPPED:
            return fo
        if fo.status not in OPEN_FULFILLMENT:
            raise ValidationError("This fulfillment order is closed.", code="closed")
        stock.consume(reference=Reference(*fo.reservation_reference))
        fo.status = FulfillmentStatus.SHIPPED
        fo.tracking_number, fo.carrier = tracking_number, carrier
        fo.closed_at = timezone.now()
        fo.save(update_fields=["status", "tracking_number", "carrier", "closed_at"])
        record(
            "fulfillment.shipped", obj=fo, changes={"tracking": tracking_number, "carrier": carrier}
        )
        order = Order.objects.select_for_update().get(pk=fo.order_id)
        open_left = order.fulfillments.filter(status__in=OPEN_FULFILLMENT).exists()
        _set_status(order, OrderStatus.PARTIALLY_FULFILLED if open_left else OrderStatus.FULFILLED)
        _publish_fulfillment("fulfillment.shipped", fo, order)
    return fo


# --- Rules -----------------------------------------------------------------------------


def _validate_rules(rules: Sequence[dict]) -> None:
    codes = set(Warehouse.objects.values_list("code", flat=True))
    errors = {}
    for i, rule in enumerate(rules, start=1):
        problems = routing.validate_rule(rule.get("conditions", {}), rule.get("actions", {}), codes)
        if not rule.get("name"):
            problems.append("A rule needs a name.")
        if problems:
            errors[f"rule {i}"] = problems
    if errors:
        raise ValidationError(errors, code="invalid_rules")


def _store_rules(rule_set: RuleSet, rules: Sequence[dict]) -> None:
    Rule.objects.bulk_create(
        [
            Rule(
                rule_set=rule_set,
                position=i,
                name=r["name"],
                conditions=r.get("conditions", {}),
                actions=r.get("actions", {}),
                is_active=r.get("is_active", True),
            )
            for i, r in enumerate(rules, start=1)
        ]
    )


def draft_rule_set(*, actor, rules: Sequence[dict], note: str = "") -> RuleSet:
    """A new draft version holding `rules` ([{name, conditions, actions}], in order)."""
    _validate_rules(rules)
    with transaction.atomic():
        last = RuleSet.objects.select_for_update().order_by("-version").first()
        rule_set = RuleSet.objects.create(
            version=(last.version + 1) if last else 1,
            note=note,
            created_by=actor
            if getattr(actor, "is_authenticated", False) and hasattr(actor, "email")
            else None,
        )
        _store_rules(rule_set, rules)
        record("rules.drafted", obj=rule_set, changes={"rules": len(rules)})
    return rule_set


def _rule_summary(rule: dict) -> list:
    return [
        rule.get("name", ""),
        rule.get("conditions", {}),
        rule.get("actions", {}),
        rule.get("is_active", True),
    ]


def update_draft_rule_set(
    rule_set: RuleSet, *, actor, rules: Sequence[dict], note: str | None = None
) -> RuleSet:
    """Replace the rules (and note) of a draft in place: same version, new contents.

    Only drafts change: nothing has routed by a draft, so no decision in the log names
    its version, and published or archived versions stay exactly what routed orders saw.
    Invalid rules are refused whole and the draft keeps its old rules.
    """
    _validate_rules(rules)
    with transaction.atomic():
        # The same lock publish_rule_set takes: an edit and a publish never interleave.
        rule_set = RuleSet.objects.select_for_update().get(pk=rule_set.pk)
        if rule_set.status != RuleSetStatus.DRAFT:
            raise ValidationError(
                f"Rules v{rule_set.version} is {rule_set.get_status_display().lower()}: only "
                "a draft can be edited. Copy it to a new draft instead.",
                code="not_draft",
            )
        stored = list(rule_set.rules.all())
        before = [[r.name, r.conditions, r.actions, r.is_active] for r in stored]
        after = [_rule_summary(r) for r in rules]
        changes: dict = {}
        if before != after:
            changes["rules"] = [[r.name for r in stored], [r["name"] for r in rules]]
            rule_set.rules.all().delete()
            _store_rules(rule_set, rules)
        if note is not None and note != rule_set.note:
            changes["note"] = [rule_set.note, note]
            rule_set.note = note
            rule_set.save(update_fields=["note"])
        if changes:
            record("rules.draft_edited", obj=rule_set, changes=changes)
    return rule_set


def publish_rule_set(rule_set: RuleSet) -> RuleSet:
    with transaction.atomic():
        rule_set = RuleSet.objects.select_for_update().get(pk=rule_set.pk)
        if rule_set.status != RuleSetStatus.DRAFT:
            raise ValidationError("Only a draft can be published.", code="not_draft")
        RuleSet.objects.filter(status=RuleSetStatus.PUBLISHED).update(status=RuleSetStatus.ARCHIVED)
        rule_set.status = RuleSetStatus.PUBLISHED
        rule_set.published_at = timezone.now()
        rule_set.save(update_fields=["status", "published_at"])
        record("rules.published", obj=rule_set, changes={"version": rule_set.version})
    return rule_set


@dataclass
class SimulationRow:
    order_id: int
    external_id: str
    current: str
    proposed: str
    explanation: str

    @property
    def changed(self) -> bool:
        return self.current != self.proposed


def simulate(rule_set: RuleSet, *, last: int = 500) -> list[SimulationRow]:
    """What `rule_set` would decide for the last N routable orders vs the published rules.

    Uses today's stock and warehouses for both sides, so differences come from the rules.
    """
    _, current_rules = published_rules()
    proposed_rules = rules_of(rule_set)
    cfg = _settings()
    whs = warehouse_infos()
    codes = {w.id: w.code for w in whs}
    orders = list(
        Order.objects.exclude(status=OrderStatus.CANCELLED)
        .order_by("-placed_at")
        .prefetch_related("lines")[:last]
    )
    lines_by_order = {o.pk: [ln for ln in o.lines.all() if ln.sku_id] for o in orders}
    all_skus = {ln.sku_id for ls in lines_by_order.values() for ln in ls}
    # SKUs and bundle recipes are read once for every order, not once per order.
    catalog = sku_facts(all_skus)
    components = {c for parts in catalog.components.values() for c, _ in parts}
    atp = stock.available_to_promise(sku_ids=all_skus | components) if all_skus else {}
    threshold, weights = float(cfg.confidence_threshold), _weights(cfg)
    now, currency = timezone.now(), brand_currency()
    cache: dict = {}  # carrier history per destination, read once for the whole replay
    rows = []
    for order in orders:
        lines = lines_by_order[order.pk]
        if not lines or len(lines) != order.lines.count():
            continue
        facts = order_facts(order, lines, now=now, catalog=catalog, currency=currency)
        decisions = [
            decide(
                facts,
                warehouses=whs,
                atp=atp,
                rules=r,
                threshold=threshold,
                weights=weights,
                cache=cache,
            )[0]
            for r in (current_rules, proposed_rules)
        ]
        current, proposed = (_summary(d, codes) for d in decisions)
        rows.append(
            SimulationRow(order.pk, order.external_id, current, proposed, decisions[1].explanation)
        )
    return rows


def _summary(decision: routing.Decision, codes: dict[int, str]) -> str:
    if decision.plan is None:
        return f"hold: {decision.hold_reason}"
    plan = " + ".join(codes[w] for w in decision.plan.warehouse_ids)
    return f"{decision.layer}: {plan}"


def suggested_rules(*, minimum: int = 3) -> list[dict]:
    """Repeated manual choices summarised as candidate rules: state → warehouse."""
    counts: dict[tuple[str, str, str], int] = defaultdict(int)
    for decision in RoutingDecision.objects.filter(layer=DecisionLayer.MANUAL).select_related(
        "order"
    ):
        chosen = decision.chosen or {}
        if len(chosen) == 1:
            code = next(iter(chosen))
            key = (decision.order.ship_country, decision.order.ship_state, code)
            counts[key] += 1
    return [
        {
            "name": f"{state or country} → {code}",
            "count": n,
            "conditions": {"country_in": [country], "state_in": [state]}
            if state
            else {"country_in": [country]},
            "actions": {"ship_from": code},
        }
        for (country, state, code), n in sorted(counts.items(), key=lambda kv: -kv[1])
        if n >= minimum
    ]


# --- Bulk ingestion --------------------------------------------------------------------


def ingest_orders(batch: Sequence[OrderInput]) -> list[IngestResult]:
    """Ingest a page of orders (a connector's page, a backfill) in one transaction.

    Same outcome as calling `ingest_order` for each in turn, at a fraction of the cost:
    the rules, warehouses, SKUs and stock are read once; the sellable rows of every SKU in
    the batch are locked up front, so decisions made against that stock cannot be undercut
    by another writer; orders, lines, decisions, fulfillment orders, reservations and
    activity are written in bulk. Updates to known orders, and orders needing the unmapped
    queue, take the one-at-a-time path inside the same transaction.
    """
    for data in batch:
        _validate(data)
    keys = [(d.channel, d.external_id) for d in batch]
    if len(set(keys)) != len(keys):
        # Repeats inside one page apply in order through the single path.
        with transaction.atomic():
            return [ingest_order(d) for d in batch]
    with transaction.atomic():
        existing = {
            (o.channel, o.external_id): o
            for o in Order.objects.select_for_update().filter(
                channel__in={c for c, _ in keys}, external_id__in={e for _, e in keys}
            )
        }
        results: dict[int, IngestResult] = {}
        fresh: list[tuple[int, OrderInput]] = []
        for i, data in enumerate(batch):
            order = existing.get((data.channel, data.external_id))
            if order is not None:
                results[i] = _update(order, data)
            else:
                fresh.append((i, data))
        for i, order in _bulk_route(fresh):
            results[i] = IngestResult(order, created=True, applied=True)
    return [results[i] for i in range(len(batch))]


def _bulk_route(fresh: list[tuple[int, OrderInput]]) -> list[tuple[int, Order]]:
    if not fresh:
        return []
    orders = Order.objects.bulk_create(
        [
            Order(
                channel=d.channel,
                external_id=d.external_id,
                placed_at=d.placed_at,
                channel_updated_at=d.updated_at,
                total=d.total
                if d.total is not None
                else sum((ln.unit_price * ln.quantity for ln in d.lines), Decimal("0")),
                **{f: getattr(d, f) for f in HEADER_FIELDS},
            )
            for _, d in fresh
        ]
    )
    mapped: dict[tuple[str, str], int] = {
        (c, e): s
        for c, e, s in ListingMapping.objects.filter(
            channel__in={o.channel for o in orders},
            external_sku__in={ln.external_sku for _, d in fresh for ln in d.lines},
        ).values_list("channel", "external_sku", "sku_id")
    }
    all_lines = OrderLine.objects.bulk_create(
        [
            OrderLine(
                order=order,
                external_line_id=ln.external_line_id,
                external_sku=ln.external_sku,
                external_listing_id=ln.external_listing_id,
                sku_id=mapped.get((order.channel, ln.external_sku)),
                title=ln.title[:255],
                quantity=ln.quantity,
                unit_price=ln.unit_price,
            )
            for order, (_, d) in zip(orders, fresh, strict=True)
            for ln in d.lines
        ]
    )
    data_of = {o.pk: d for o, (_, d) in zip(orders, fresh, strict=True)}
    lines_of: dict[int, list[OrderLine]] = defaultdict(list)
    for line in all_lines:
        lines_of[line.order_id].append(line)
    activity = [
        ("order.received", o, {"channel": o.channel, "lines": len(lines_of[o.pk])}) for o in orders
    ]

    cfg = _settings()
    version, rules = published_rules()
    warehouses = {w.pk: w for w in Warehouse.objects.filter(is_active=True)}
    infos = [_warehouse_info(w) for w in warehouses.values()]
    codes = {w.pk: w.code for w in warehouses.values()}
    catalog = sku_facts(ln.sku_id for ln in all_lines if ln.sku_id)
    stock_skus = {c for comps in catalog.components.values() for c, _ in comps} | {
        s for s, sku in catalog.skus.items() if not sku.is_bundle
    }
    # Lock first, then read: the stock these decisions spend is ours until commit.
    list(
        stock.StockBalance.objects.select_for_update()
        .filter(sku_id__in=stock_skus, status=stock.SELLABLE)
        .order_by("sku_id", "warehouse_id", "status")
        .values_list("pk")
    )
    atp = stock.available_to_promise(sku_ids=stock_skus) if stock_skus else {}
    weights, threshold, now = _weights(cfg), float(cfg.confidence_threshold), timezone.now()
    actor_label = current_actor().label[:200]
    cache: dict = {}

    routed: list[tuple[Order, routing.Decision, RoutingDecision]] = []
    one_by_one: list[Order] = []
    held: list[tuple[Order, routing.Decision, dict]] = []
    currency = brand_currency()
    for order, (_, data) in zip(orders, fresh, strict=True):
        lines = lines_of[order.pk]
        needs_single = (
            data.status == "cancelled"
            or order.fraud_flag
            or any(ln.sku_id is None for ln in lines)
            or _address_problem(order)
        )
        if needs_single:
            one_by_one.append(order)  # holds and cancellations: the single path says why
            continue
        facts = order_facts(order, lines, now=now, catalog=catalog, currency=currency)
        decision, carrier = decide(
            facts,
            warehouses=infos,
            atp=atp,
            rules=rules,
            threshold=threshold,
            weights=weights,
            cache=cache,
        )
        if decision.layer in ("hold", "review"):
            # Decided against the stock of this moment, as the single path would: routing
            # it again after later orders spent stock could reach a different answer.
            needed = {sku for line in facts.lines for sku in line.needs()}
            seen = {k: v for k, v in atp.items() if k[0] in needed}
            held.append(
                (order, decision, _inputs(facts, seen, version, frozenset(), carrier, infos))
            )
            continue
        for wh_id, line_ids in decision.plan.allocations:
            for line_id in line_ids:
                line = next(ln for ln in lines if ln.pk == line_id)
                for sku_id, qty in (
                    routing.LineInfo(
                        line_id,
                        line.sku_id,
                        line.quantity,
                        components=tuple(catalog.components.get(line.sku_id, ())),
                    )
                    .needs()
                    .items()
                ):
                    atp[(sku_id, wh_id)] = atp.get((sku_id, wh_id), 0) - qty
        routed.append(
            (
                order,
                decision,
                RoutingDecision(
                    order=order,
                    layer=decision.layer,
                    rule_set_version=version,
                    rule_name=decision.rule.name if decision.rule else "",
                    inputs=_inputs(facts, {}, version, frozenset(), carrier, infos),
                    candidates=decision.candidates,
                    chosen=decision.plan.as_json(codes),
                    confidence=decision.confidence,
                    explanation=decision.explanation,
                    actor_label=actor_label,
                ),
            )
        )

    RoutingDecision.objects.bulk_create([r for _, _, r in routed])
    fos: list[tuple[FulfillmentOrder, list[OrderLine]]] = []
    for order, decision, record_ in routed:
        by_id = {ln.pk: ln for ln in lines_of[order.pk]}
        for wh_id, line_ids in decision.plan.allocations:
            fo_lines = [by_id[i] for i in line_ids]
            fos.append(
                (
                    FulfillmentOrder(
                        order=order,
                        warehouse=warehouses[wh_id],
                        decision=record_,
                        ship_type=decision.ship_type or _ship_type(fo_lines, catalog.skus, cfg),
                    ),
                    fo_lines,
                )
            )
    FulfillmentOrder.objects.bulk_create([fo for fo, _ in fos])
    FulfillmentLine.objects.bulk_create(
        [
            FulfillmentLine(fulfillment=fo, order_line=ln, sku_id=ln.sku_id, quantity=ln.quantity)
            for fo, fo_lines in fos
            for ln in fo_lines
        ]
    )
    stock.reserve_many(
        [
            (
                [
                    ReserveLine(catalog.skus[ln.sku_id], fo.warehouse, ln.quantity)
                    for ln in fo_lines
                ],
                Reference(*fo.reservation_reference),
            )
            for fo, fo_lines in fos
        ],
        kind="order_line",
    )
    for fo, _ in fos:
        _publish_fulfillment("fulfillment.opened", fo, fo.order)
    for order, _, _ in routed:
        order.status = OrderStatus.ROUTED
    Order.objects.bulk_update([o for o, _, _ in routed], ["status"])
    activity += [
        ("order.routed", o, {"layer": d.layer, "plan": r.chosen, "confidence": d.confidence})
        for o, d, r in routed
    ]
    record_many(activity)
    for order in orders:
        publish_domain_event("order.created", order.pk, lambda o=order: order_event(o))
    for order, decision, _ in routed:
        publish_domain_event(
            "order.routed",
            order.pk,
            lambda o=order, layer=decision.layer: order_event(o, layer=layer),
        )
    for order, decision, inputs in held:
        _hold_for(order, decision, inputs, version)
    for order in one_by_one:
        if data_of[order.pk].status == "cancelled":
            _cancel(order, "Cancelled on the channel before Keel saw it.")
        else:
            _route_new(order)
    return [(i, order) for order, (i, _) in zip(orders, fresh, strict=True)]
