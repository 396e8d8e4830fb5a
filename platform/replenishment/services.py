"""Replenishment services: the daily plan, acting on it, transfers and exceptions.

`plan()` looks at every active, non-bundle SKU in each warehouse that stocks it and writes
one `Recommendation` per SKU × warehouse for the brand-local day, replacing that day's rows
when it runs again. The arithmetic is `replenishment.policy`; this module gathers its inputs:

- demand: the SKU's forecast (`forecasting.services.forecast_summary`), split across
  warehouses by each one's share of the last 56 days' routed demand (equal shares when
  nothing was routed). A warehouse's standard deviation is the SKU's × sqrt(share): treating
  the warehouses' demand as independent is more cautious than scaling it by the share.
  An accelerating SKU plans with its 7-day velocity when that is above the forecast, a
  braking one with its 7-day velocity when that is below: the forecast lags a step change.
- service level and review period: the SKU's segment policy (`segments_of`,
  `segment_policies`); 0.95 and the brand's default review period when there is none.
- lead time: measured from receipts (`purchasing.stats.lead_time_stats`, 365 days) when at
  least 3 receipts exist, else the supplier SKU's (or supplier's) quoted lead time with an
  assumed standard deviation of 25 % of the quote (`policy.quoted_lead_time`).
- available: available-to-promise (`inventory.services.available_to_promise`); on order:
  open PO quantities (`purchasing.services.open_quantities`); backorders: units of orders
  held for insufficient stock, counted at the SKU's first stocking warehouse.

Stocking warehouses of a SKU: active warehouses (drop-ship suppliers excluded) where it has
a sellable balance row or units on order; a SKU stocked nowhere plans at the brand's first
warehouse by priority, so a new SKU still shows up (and escalates without forecast).

Acting: `create_draft_pos` (one draft per supplier and warehouse, submitted at once, so
approvals decides: auto-approved under the segment's ceiling, else pending in the inbox),
`pull_forward` (accelerate: reschedule the next open PO earlier), `apply_slowdown` (brake:
the person picks delaying, shrinking or cancelling an unshipped PO — never automatic),
`dismiss`, `accept_transfer` (ships an inventory transfer).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from accounts.models import User
from accounts.roles import has_permission
from approvals.services import current_brand
from audit.context import actor_for_user
from audit.services import record
from catalog.models import SKU, Lifecycle
from forecasting import services as forecasting
from forecasting.models import DemandDay
from inventory import services as inventory
from inventory.models import Warehouse, WarehouseKind
from orders.models import HoldReason, OrderLine, OrderStatus
from purchasing import services as purchasing
from purchasing import stats as purchasing_stats
from purchasing.models import POState, PurchaseOrder, PurchaseOrderLine
from replenishment import policy
from replenishment.models import (
    AlertKind,
    LeadTimeSource,
    Recommendation,
    RecommendationStatus,
    ReplenishmentAlert,
    ReplenishmentSettings,
    State,
    TransferStatus,
    TransferSuggestion,
)

DEFAULT_SERVICE_LEVEL = Decimal("0.950")
MEASURED_MIN_SAMPLES = 3
SHARE_WINDOW_DAYS = 56
VELOCITY_DAYS = 28
# Demand departing from forecast: the last 14 days against the forecast's 95 % band.
SHIFT_DAYS = 14
SHIFT_MIN_KNOWN_DAYS = 7
Z95 = 1.959963984540054
# A supplier is slipping when its on-time rate over 90 days is this far below its
# 365-day rate, with at least this many receipts in the 90 days.
SLIP_DROP = 0.15
SLIP_MIN_SAMPLES = 3
# Actions a recommendation proposes.
ORDER = "order"
PULL_FORWARD = "pull_forward"
SLOW_DOWN = "slow_down"
# POs that have not left the supplier as far as Keel knows: on order, nothing received.
UNSHIPPED = (POState.APPROVED, POState.SENT)
NUMBER_FIELDS = [
    "state",
    "reason",
    "segment",
    "forecast_method",
    "daily_mean",
    "daily_std",
    "velocity_7",
    "velocity_28",
    "lead_time_mean",
    "lead_time_std",
    "lead_time_source",
    "lead_time_samples",
    "service_level",
    "review_period_days",
    "safety_stock",
    "reorder_point",
    "order_up_to",
    "available",
    "on_order",
    "backorders",
    "next_receipt_on",
    "projected_stockout_on",
    "suggested_quantity",
    "supplier",
    "moq",
    "case_pack",
    "unit_cost",
    "currency",
    "action",
    "proposal",
    "updated_at",
]


class ReplenishmentError(ValidationError):
    """A refused replenishment action (code says which)."""


def _require(actor: object, permission: str) -> None:
    # None is Keel itself (the daily task); people and API keys are checked.
    if actor is not None and not has_permission(actor, permission):
        raise PermissionDenied("Your role does not allow this.")


def _label(actor: object) -> str:
    if isinstance(actor, User):
        return actor.email[:200]
    if actor is None:
        return "Keel"
    return str(getattr(actor, "name", "") or actor)[:200]


def _log(action: str, obj: Any, actor: object, changes: dict | None = None) -> None:
    who = actor_for_user(actor) if isinstance(actor, User) else None
    record(action, obj=obj, changes=changes or {}, actor=who)


def brand_now():
    return timezone.now().astimezone(ZoneInfo(current_brand().timezone))


def brand_today() -> date:
    return brand_now().date()


def settings_for_brand() -> ReplenishmentSettings:
    return ReplenishmentSettings.current()


SETTINGS_FIELDS = (
    "accelerate_threshold",
    "brake_threshold",
    "default_review_period_days",
    "auto_draft_pos",
    "transfers_enabled",
    "transfer_min_quantity",
    "transfer_warehouse_kinds",
)


def update_settings(*, actor: object, **fields: Any) -> ReplenishmentSettings:
    """Change the brand's replenishment settings (forecasting.manage)."""
    _require(actor, "forecasting.manage")
    unknown = set(fields) - set(SETTINGS_FIELDS)
    if unknown:
        raise ReplenishmentError(f"Unknown fields: {', '.join(sorted(unknown))}", code="invalid")
    with transaction.atomic():
        row = ReplenishmentSettings.current()
        row = ReplenishmentSettings.objects.select_for_update().get(pk=row.pk)
        before = {name: getattr(row, name) for name in SETTINGS_FIELDS}
        for name, value in fields.items():
            setattr(row, name, value)
        errors = {}
        if not (Decimal("0") < Decimal(str(row.accelerate_threshold)) <= Decimal("5")):
            errors["accelerate_threshold"] = "Between 0 and 5 (500 %)."
        if not (Decimal("0") < Decimal(str(row.brake_threshold)) < Decimal("1")):
            errors["brake_threshold"] = "Between 0 and 1 (100 %)."
        if not 1 <= int(row.default_review_period_days) <= 365:
            errors["default_review_period_days"] = "Between 1 and 365 days."
        bad_kinds = set(row.transfer_warehouse_kinds) - set(WarehouseKind.values)
        if bad_kinds:
            errors["transfer_warehouse_kinds"] = f"Unknown kinds: {', '.join(sorted(bad_kinds))}."
        if errors:
            raise ReplenishmentError(
                {k: ReplenishmentError(v, code="out_of_range") for k, v in errors.items()}
            )
        row.save()
        changes = {
            name: [_jsonable(before[name]), _jsonable(getattr(row, name))]
            for name in SETTINGS_FIELDS
            if before[name] != getattr(row, name)
        }
        if changes:
            _log("replenishment.settings_changed", row, actor, changes)
    return row


def _jsonable(value: object) -> object:
    return str(value) if isinstance(value, Decimal) else value


# --- Gathering inputs ------------------------------------------------------------------------


@dataclass
class _Pair:
    sku: SKU
    warehouse: Warehouse
    share: float


def stocking_warehouses() -> list[Warehouse]:
    return list(
        Warehouse.objects.filter(is_active=True)
        .exclude(kind=WarehouseKind.DROP_SHIP)
        .order_by("priority", "code")
    )


def _pairs(
    skus: Sequence[SKU],
    warehouses: Sequence[Warehouse],
    atp: dict[tuple[int, int], int],
    on_order: dict[tuple[int, int], list[tuple[date, int]]],
    shares: dict[tuple[int, int], int],
) -> list[_Pair]:
    by_id = {w.pk: w for w in warehouses}
    stocked: dict[int, list[int]] = defaultdict(list)
    for sku_id, wh_id in {*atp, *on_order}:
        if wh_id in by_id:
            stocked[sku_id].append(wh_id)
    out = []
    for sku in skus:
        wh_ids = sorted(stocked.get(sku.pk, []), key=lambda w: (by_id[w].priority, by_id[w].code))
        if not wh_ids:
            if not warehouses:
                continue
            wh_ids = [warehouses[0].pk]
        routed = {w: shares.get((sku.pk, w), 0) for w in wh_ids}
        total = sum(routed.values())
        for wh_id in wh_ids:
            share = routed[wh_id] / total if total else 1 / len(wh_ids)
            out.append(_Pair(sku, by_id[wh_id], share))
    return out


def _routed_units(sku_ids: list[int], today: date) -> dict[tuple[int, int], int]:
    rows = (
        DemandDay.objects.filter(
            sku_id__in=sku_ids,
            warehouse__isnull=False,
            day__gte=today - timedelta(days=SHARE_WINDOW_DAYS),
            day__lt=today,
        )
        .values_list("sku_id", "warehouse_id")
        .annotate(units=Sum("units"))
    )
    return {(s, w): u for s, w, u in rows}


def _backorders(sku_ids: list[int]) -> dict[int, int]:
    rows = (
        OrderLine.objects.filter(
            sku_id__in=sku_ids,
            order__status=OrderStatus.HELD,
            order__hold_reason=HoldReason.INSUFFICIENT_STOCK,
        )
        .values_list("sku_id")
        .annotate(units=Sum("quantity"))
    )
    return dict(rows)


@dataclass(frozen=True)
class LeadTime:
    mean: float
    std: float
    source: str
    samples: int
    quoted: float
    contradiction: str = ""


def lead_time_for(supplier_sku, measured) -> LeadTime:
    """Measured lead time when enough receipts exist, else the quote with assumed spread."""
    quoted = float(supplier_sku.effective_lead_time_days)
    contradiction = ""
    if measured is not None and measured.samples >= MEASURED_MIN_SAMPLES:
        if policy.lead_time_contradicts(
            measured_mean=measured.mean_days, samples=measured.samples, quoted_days=quoted
        ):
            contradiction = (
                f"receipts say {supplier_sku.supplier.code} takes {measured.mean_days:.0f} days "
                f"on average ({measured.samples} receipts) but the quote is {quoted:.0f}: "
                "fix the quoted lead time or talk to the supplier"
            )
        return LeadTime(
            measured.mean_days,
            measured.std_days,
            LeadTimeSource.MEASURED,
            measured.samples,
            quoted,
            contradiction,
        )
    mean, std = policy.quoted_lead_time(quoted)
    return LeadTime(mean, std, LeadTimeSource.QUOTED, measured.samples if measured else 0, quoted)


def _open_po_lines(sku_ids: list[int], states: Iterable[str]) -> dict[tuple[int, int], list]:
    """(sku, warehouse) → open PO lines (with their PO), earliest expected first."""
    rows = (
        PurchaseOrderLine.objects.filter(
            sku_id__in=sku_ids, purchase_order__state__in=list(states), closed_short=False
        )
        .select_related("purchase_order")
        .order_by("purchase_order__expected_on", "purchase_order_id")
    )
    out: dict[tuple[int, int], list] = defaultdict(list)
    for line in rows:
        if line.outstanding > 0:
            out[(line.sku_id, line.purchase_order.warehouse_id)].append(line)
    return out


# --- The plan --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanResult:
    day: date
    recommendations: int
    by_state: dict[str, int]
    transfers: int
    alerts: int
    drafted: list[int] = field(default_factory=list)


def plan(*, today: date | None = None) -> PlanResult:
    """Write the day's recommendations, transfer suggestions and exceptions (idempotent:
    running the same day again replaces its open rows; acted and dismissed ones keep their
    status and PO link, with fresh numbers). Demand history is refreshed first: the
    velocities must count the orders that arrived since the night's rebuild."""
    today = today or brand_today()
    forecasting.refresh_demand(today=today)
    conf = settings_for_brand()
    skus = list(SKU.objects.filter(status=Lifecycle.ACTIVE, is_bundle=False).order_by("code", "pk"))
    sku_ids = [s.pk for s in skus]
    warehouses = stocking_warehouses()
    atp = inventory.available_to_promise(sku_ids=sku_ids)
    on_order = purchasing.open_quantities(sku_ids)
    pairs = _pairs(skus, warehouses, atp, on_order, _routed_units(sku_ids, today))
    forecasts = forecasting.forecast_summary(sku_ids)
    segments = forecasting.segments_of(sku_ids)
    policies = forecasting.segment_policies()
    suppliers = purchasing.preferred_supplier_skus(sku_ids)
    measured = purchasing_stats.lead_time_stats(window_days=365, sku_ids=sku_ids, today=today)
    history = forecasting.daily_units(
        sku_ids, start=today - timedelta(days=VELOCITY_DAYS), end=today - timedelta(days=1)
    )
    backorders = _backorders(sku_ids)
    unshipped = _open_po_lines(sku_ids, UNSHIPPED)
    receivable = _open_po_lines(sku_ids, purchasing.ON_ORDER)
    first_warehouse: dict[int, int] = {}
    for pair in pairs:
        first_warehouse.setdefault(pair.sku.pk, pair.warehouse.pk)

    rows: list[Recommendation] = []
    for pair in pairs:
        rows.append(
            _recommend(
                pair,
                today=today,
                conf=conf,
                forecast=forecasts.get(pair.sku.pk),
                segment=segments.get(pair.sku.pk, "tail"),
                policies=policies,
                supplier_sku=suppliers.get(pair.sku.pk),
                measured=measured,
                history=history.get(pair.sku.pk, []),
                available=atp.get((pair.sku.pk, pair.warehouse.pk), 0),
                incoming=on_order.get((pair.sku.pk, pair.warehouse.pk), []),
                backorders=(
                    backorders.get(pair.sku.pk, 0)
                    if first_warehouse[pair.sku.pk] == pair.warehouse.pk
                    else 0
                ),
                unshipped=unshipped.get((pair.sku.pk, pair.warehouse.pk), []),
                receivable=receivable.get((pair.sku.pk, pair.warehouse.pk), []),
            )
        )

    with transaction.atomic():
        now = timezone.now()
        for row in rows:
            row.updated_at = now
        Recommendation.objects.bulk_create(
            rows,
            batch_size=500,
            update_conflicts=True,
            unique_fields=["sku", "warehouse", "day"],
            update_fields=NUMBER_FIELDS,
        )
        keep = {(r.sku_id, r.warehouse_id) for r in rows}
        stale = [
            pk
            for pk, s, w in Recommendation.objects.filter(
                day=today, status=RecommendationStatus.OPEN
            ).values_list("pk", "sku_id", "warehouse_id")
            if (s, w) not in keep
        ]
        Recommendation.objects.filter(pk__in=stale).delete()
        transfers = _plan_transfers(today, conf, rows, warehouses)
        alerts = _store_alerts(today)
        by_state: dict[str, int] = defaultdict(int)
        for row in rows:
            by_state[row.state] += 1
        record(
            "replenishment.planned",
            changes={
                "day": str(today),
                "recommendations": len(rows),
                "by_state": dict(by_state),
                "transfers": transfers,
                "alerts": alerts,
            },
        )
    drafted: list[int] = []
    if conf.auto_draft_pos:
        candidates = Recommendation.objects.filter(
            day=today,
            status=RecommendationStatus.OPEN,
            state__in=[State.HEALTHY, State.ACCELERATE],
            action=ORDER,
            suggested_quantity__gt=0,
            supplier__isnull=False,
        )
        drafted = [po.pk for po in create_draft_pos(candidates, actor=None)]
    return PlanResult(today, len(rows), dict(by_state), transfers, alerts, drafted)


def _recommend(
    pair: _Pair,
    *,
    today: date,
    conf: ReplenishmentSettings,
    forecast,
    segment: str,
    policies: dict,
    supplier_sku,
    measured: dict,
    history: list,
    available: int,
    incoming: list[tuple[date, int]],
    backorders: int,
    unshipped: list,
    receivable: list,
) -> Recommendation:
    seg_policy = policies.get(segment)
    service_level = seg_policy.service_level if seg_policy else DEFAULT_SERVICE_LEVEL
    review = seg_policy.review_cadence_days if seg_policy else conf.default_review_period_days
    v7, v28 = policy.velocities(history)
    share = pair.share
    on_order = sum(q for _, q in incoming)
    next_receipt = incoming[0][0] if incoming else None

    rec = Recommendation(
        day=today,
        sku=pair.sku,
        warehouse=pair.warehouse,
        segment=segment,
        service_level=service_level,
        review_period_days=review,
        velocity_7=v7,
        velocity_28=v28,
        available=available,
        on_order=on_order,
        backorders=backorders,
        next_receipt_on=next_receipt,
    )
    lead = None
    if supplier_sku is not None:
        lead = lead_time_for(supplier_sku, measured.get((supplier_sku.supplier_id, pair.sku.pk)))
        rec.supplier = supplier_sku.supplier
        rec.moq, rec.case_pack = supplier_sku.moq, supplier_sku.case_pack
        rec.unit_cost, rec.currency = supplier_sku.unit_cost, supplier_sku.currency
        rec.lead_time_mean, rec.lead_time_std = lead.mean, lead.std
        rec.lead_time_source, rec.lead_time_samples = lead.source, lead.samples
    if forecast is not None:
        rec.forecast_method = forecast.method
        rec.daily_mean = forecast.daily_mean * share
        rec.daily_std = forecast.daily_std * math.sqrt(share)

    # The state is judged on the forecast demand; the plan then follows a confirmed trend.
    days_to_receipt = None
    if lead is not None:
        days_to_receipt = lead.mean
        if next_receipt is not None:
            days_to_receipt = min(days_to_receipt, max(0, (next_receipt - today).days))
    decision = policy.classify(
        velocity_7=v7,
        velocity_28=v28,
        has_supplier=supplier_sku is not None,
        has_forecast=forecast is not None,
        lead_time_contradiction=lead.contradiction if lead else "",
        available=available - backorders,
        daily_mean=rec.daily_mean,
        days_to_next_receipt=days_to_receipt if forecast is not None else None,
        accelerate_threshold=float(conf.accelerate_threshold),
        brake_threshold=float(conf.brake_threshold),
    )
    rec.state, rec.reason = decision.state, decision.reason
    if rec.daily_mean > 0 and days_to_receipt is not None:
        cover = policy.days_of_cover(available - backorders, rec.daily_mean)
        if cover < days_to_receipt:
            rec.projected_stockout_on = today + timedelta(days=math.floor(cover))
    if v7 is not None and forecast is not None:
        local_v7 = v7 * share
        faster = rec.state == State.ACCELERATE and local_v7 > rec.daily_mean
        slower = rec.state == State.BRAKE and local_v7 < rec.daily_mean
        if faster or slower:
            rec.daily_mean = local_v7
            rec.reason += f" Planning with the recent {local_v7:.1f}/day here."

    if lead is None or forecast is None:
        rec.action = ""
        return rec
    numbers = policy.compute(
        daily_mean=rec.daily_mean,
        daily_std=rec.daily_std,
        lead_time_mean=lead.mean,
        lead_time_std=lead.std,
        service_level=float(service_level),
        review_period_days=review,
        available=available,
        on_order=on_order,
        backorders=backorders,
        moq=supplier_sku.moq,
        case_pack=supplier_sku.case_pack,
        force=rec.state == State.ACCELERATE,
    )
    rec.safety_stock = round(numbers.safety_stock, 2)
    rec.reorder_point = round(numbers.reorder_point, 2)
    rec.order_up_to = round(numbers.order_up_to, 2)
    rec.suggested_quantity = numbers.quantity
    rec.action = ORDER if numbers.quantity > 0 else ""
    if rec.state == State.ACCELERATE:
        proposal = _pull_forward_proposal(rec, receivable, today)
        if proposal:
            rec.proposal, rec.action = proposal, PULL_FORWARD
    elif rec.state == State.BRAKE:
        proposal = _slowdown_proposal(rec, unshipped, supplier_sku)
        if proposal:
            rec.proposal, rec.action = proposal, SLOW_DOWN
            rec.suggested_quantity = 0
    return rec


def _pull_forward_proposal(rec: Recommendation, lines: list, today: date) -> list[dict]:
    """The next open PO arriving after the day stock would fall to safety stock at the new
    pace: bring it forward to that day (never earlier than tomorrow)."""
    if not lines or rec.daily_mean <= 0:
        return []
    spare = max(0.0, rec.available - rec.backorders - rec.safety_stock)
    target = today + timedelta(days=max(1, math.floor(spare / rec.daily_mean)))
    line = lines[0]
    po = line.purchase_order
    if po.expected_on <= target:
        return []
    return [
        {
            "po": po.pk,
            "number": po.number,
            "kind": "pull_forward",
            "expected_on": str(po.expected_on),
            "new_expected_on": str(target),
            "quantity": line.outstanding,
            "text": (
                f"Ask {rec.supplier.code if rec.supplier else 'the supplier'} to deliver "
                f"{po.number} ({line.outstanding} units) by {target:%d %b} instead of "
                f"{po.expected_on:%d %b}."
            ),
        }
    ]


def _slowdown_proposal(rec: Recommendation, lines: list, supplier_sku) -> list[dict]:
    """Delay, shrink or cancel unshipped POs whose units push the position above the
    order-up-to level at the slower pace. Latest arrivals first; a person confirms."""
    position = rec.available + rec.on_order - rec.backorders
    excess = math.floor(position - rec.order_up_to)
    if excess <= 0 or not lines:
        return []
    out = []
    for line in sorted(lines, key=lambda ln: ln.purchase_order.expected_on, reverse=True):
        if excess <= 0:
            break
        po = line.purchase_order
        units = line.outstanding
        delay_days = math.ceil(min(excess, units) / rec.daily_mean) if rec.daily_mean > 0 else 30
        options = [
            {
                "kind": "delay",
                "new_expected_on": str(po.expected_on + timedelta(days=delay_days)),
                "text": f"Delay {po.number} by {delay_days} days",
            }
        ]
        keep = units - excess
        minimum = policy.minimum_order(supplier_sku.moq, supplier_sku.case_pack)
        keep = math.ceil(keep / supplier_sku.case_pack) * supplier_sku.case_pack if keep > 0 else 0
        if 0 < keep < units and keep >= minimum:
            options.append(
                {
                    "kind": "shrink",
                    "quantity": keep,
                    "text": f"Shrink {po.number} from {units} to {keep} units",
                }
            )
        if units <= excess:
            options.append({"kind": "cancel", "text": f"Cancel {po.number}"})
        out.append(
            {
                "po": po.pk,
                "number": po.number,
                "line": line.pk,
                "expected_on": str(po.expected_on),
                "quantity": units,
                "options": options,
            }
        )
        excess -= units
    return out


# --- Transfers -------------------------------------------------------------------------------


def _plan_transfers(
    today: date, conf: ReplenishmentSettings, rows: list[Recommendation], warehouses
) -> int:
    TransferSuggestion.objects.filter(day=today, status=TransferStatus.OPEN).delete()
    if not conf.transfers_enabled:
        return 0
    kinds = set(conf.transfer_warehouse_kinds)
    eligible = {w.pk for w in warehouses if w.kind in kinds}
    by_sku: dict[int, list[Recommendation]] = defaultdict(list)
    for row in rows:
        if row.warehouse_id in eligible and row.forecast_method:
            by_sku[row.sku_id].append(row)
    decided = set(
        TransferSuggestion.objects.filter(day=today).values_list(
            "sku_id", "from_warehouse_id", "to_warehouse_id"
        )
    )
    created = []
    for sku_id, group in by_sku.items():
        if len(group) < 2:
            continue
        by_wh = {r.warehouse_id: r for r in group}
        moves = policy.transfers(
            [
                policy.WarehousePosition(
                    r.warehouse_id,
                    r.available - r.backorders,
                    r.on_order,
                    r.reorder_point,
                    r.order_up_to,
                )
                for r in group
            ],
            min_quantity=max(1, conf.transfer_min_quantity),
        )
        for move in moves:
            if (sku_id, move.from_warehouse_id, move.to_warehouse_id) in decided:
                continue
            source, target = by_wh[move.from_warehouse_id], by_wh[move.to_warehouse_id]
            created.append(
                TransferSuggestion(
                    day=today,
                    sku_id=sku_id,
                    from_warehouse_id=move.from_warehouse_id,
                    to_warehouse_id=move.to_warehouse_id,
                    quantity=move.quantity,
                    reason=(
                        f"{target.warehouse.code} is at {target.available + target.on_order} "
                        f"(reorder point {target.reorder_point:.0f}); "
                        f"{source.warehouse.code} holds {source.available}, "
                        f"{source.available - source.order_up_to:.0f} above its order-up-to "
                        f"level of {source.order_up_to:.0f}."
                    ),
                )
            )
    TransferSuggestion.objects.bulk_create(created)
    return len(created)


def accept_transfer(suggestion: TransferSuggestion | int, *, actor: object) -> TransferSuggestion:
    """Ship the suggested transfer now (inventory.services.ship_transfer)."""
    _require(actor, "stock.move")
    with transaction.atomic():
        pk = suggestion.pk if isinstance(suggestion, TransferSuggestion) else suggestion
        suggestion = (
            TransferSuggestion.objects.select_for_update()
            .select_related("sku", "from_warehouse", "to_warehouse")
            .get(pk=pk)
        )
        if suggestion.status != TransferStatus.OPEN:
            raise ReplenishmentError(
                f"This suggestion is already {suggestion.get_status_display().lower()}.",
                code="not_open",
            )
        transfer = inventory.ship_transfer(
            source=suggestion.from_warehouse,
            destination=suggestion.to_warehouse,
            lines=[(suggestion.sku, suggestion.quantity)],
            note=f"Replenishment suggestion #{suggestion.pk}",
        )
        suggestion.status = TransferStatus.ACCEPTED
        suggestion.transfer = transfer
        suggestion.decided_at = timezone.now()
        suggestion.decided_by_label = _label(actor)
        suggestion.save()
        _log(
            "replenishment.transfer_accepted",
            suggestion,
            actor,
            {"transfer": transfer.pk, "quantity": suggestion.quantity},
        )
    return suggestion


def dismiss_transfer(suggestion: TransferSuggestion | int, *, actor: object) -> TransferSuggestion:
    _require(actor, "forecasting.manage")
    with transaction.atomic():
        pk = suggestion.pk if isinstance(suggestion, TransferSuggestion) else suggestion
        suggestion = TransferSuggestion.objects.select_for_update().get(pk=pk)
        if suggestion.status != TransferStatus.OPEN:
            raise ReplenishmentError(
                f"This suggestion is already {suggestion.get_status_display().lower()}.",
                code="not_open",
            )
        suggestion.status = TransferStatus.DISMISSED
        suggestion.decided_at = timezone.now()
        suggestion.decided_by_label = _label(actor)
        suggestion.save()
        _log("replenishment.transfer_dismissed", suggestion, actor)
    return suggestion


# --- Acting on recommendations ---------------------------------------------------------------


def _locked_open(ids: Iterable[int]) -> list[Recommendation]:
    rows = list(
        Recommendation.objects.select_for_update(of=("self",))
        .select_related("sku", "warehouse", "supplier")
        .filter(pk__in=list(ids))
        .order_by("pk")
    )
    return [r for r in rows if r.status == RecommendationStatus.OPEN]


def create_draft_pos(
    recommendations: Iterable[Recommendation | int], *, actor: object
) -> list[PurchaseOrder]:
    """One draft PO per supplier × warehouse for the open recommendations with a quantity,
    submitted at once so approvals decides: auto-approved and sent under the ceiling, or
    pending in the approvals inbox. Recommendations already acted on are skipped, so a
    double click drafts once."""
    _require(actor, "purchasing.draft")
    ids = [r.pk if isinstance(r, Recommendation) else int(r) for r in recommendations]
    created: list[PurchaseOrder] = []
    with transaction.atomic():
        rows = [
            r for r in _locked_open(ids) if r.suggested_quantity > 0 and r.supplier_id is not None
        ]
        groups: dict[tuple[int, int], list[Recommendation]] = defaultdict(list)
        for row in rows:
            groups[(row.supplier_id, row.warehouse_id)].append(row)
        for (_, _), group in sorted(groups.items()):
            supplier, warehouse = group[0].supplier, group[0].warehouse
            lines = [purchasing.DraftLine(sku=r.sku, quantity=r.suggested_quantity) for r in group]
            note = "Drafted by replenishment: " + "; ".join(
                f"{r.sku.code} {r.get_state_display().lower()}" for r in group[:20]
            )
            po = purchasing.create_draft(
                supplier=supplier,
                warehouse=warehouse,
                lines=lines,
                actor=actor,
                source="replenishment",
                note=note,
            )
            po = purchasing.submit(po, actor=actor)
            now = timezone.now()
            for row in group:
                row.status = RecommendationStatus.ACTED
                row.purchase_order = po
                row.acted_at = now
                row.acted_by_label = _label(actor)
                row.outcome = f"{po.number} {po.get_state_display().lower()}"
                row.save(
                    update_fields=[
                        "status",
                        "purchase_order",
                        "acted_at",
                        "acted_by_label",
                        "outcome",
                        "updated_at",
                    ]
                )
            _log(
                "replenishment.po_drafted",
                po,
                actor,
                {
                    "recommendations": [r.pk for r in group],
                    "state": po.state,
                    "lines": [[r.sku.code, r.suggested_quantity] for r in group[:50]],
                },
            )
            created.append(po)
    return created


def _one_open(rec: Recommendation | int) -> Recommendation:
    pk = rec.pk if isinstance(rec, Recommendation) else int(rec)
    rows = _locked_open([pk])
    if not rows:
        if not Recommendation.objects.filter(pk=pk).exists():
            raise Recommendation.DoesNotExist
        raise ReplenishmentError("This recommendation was already acted on.", code="not_open")
    return rows[0]


def _mark(rec: Recommendation, actor: object, status: str, outcome: str, po=None) -> None:
    rec.status = status
    rec.acted_at = timezone.now()
    rec.acted_by_label = _label(actor)
    rec.outcome = outcome[:500]
    if po is not None:
        rec.purchase_order = po
    rec.save(
        update_fields=[
            "status",
            "acted_at",
            "acted_by_label",
            "outcome",
            "purchase_order",
            "updated_at",
        ]
    )


def pull_forward(rec: Recommendation | int, *, actor: object) -> PurchaseOrder:
    """Accelerate: move the proposed open PO's expected date earlier (the buyer has asked the
    supplier; purchasing.services.reschedule records it)."""
    _require(actor, "purchasing.draft")
    with transaction.atomic():
        rec = _one_open(rec)
        if rec.action != PULL_FORWARD or not rec.proposal:
            raise ReplenishmentError("Nothing to pull forward here.", code="no_proposal")
        item = rec.proposal[0]
        po = PurchaseOrder.objects.get(pk=item["po"])
        new_date = date.fromisoformat(item["new_expected_on"])
        po = purchasing.reschedule(
            po,
            expected_on=new_date,
            actor=actor,
            reason=f"Demand is accelerating ({rec.sku.code}): pulled forward by replenishment",
        )
        _mark(
            rec,
            actor,
            RecommendationStatus.ACTED,
            f"{po.number} now expected {new_date:%d %b %Y}",
            po=po,
        )
        _log("replenishment.pulled_forward", rec, actor, {"po": po.number, "to": str(new_date)})
    return po


def apply_slowdown(
    rec: Recommendation | int, *, po_id: int, option: str, actor: object
) -> PurchaseOrder:
    """Brake: carry out the option a person chose for one proposed PO (delay, shrink or
    cancel). Nothing happens to a PO without this call."""
    _require(actor, "purchasing.draft")
    with transaction.atomic():
        rec = _one_open(rec)
        item = next((p for p in rec.proposal if p.get("po") == po_id), None)
        chosen = next((o for o in (item or {}).get("options", []) if o["kind"] == option), None)
        if rec.action != SLOW_DOWN or chosen is None:
            raise ReplenishmentError("That is not one of the proposed changes.", code="invalid")
        po = PurchaseOrder.objects.get(pk=po_id)
        why = f"Demand is slowing ({rec.sku.code}): replenishment brake"
        if option == "delay":
            po = purchasing.reschedule(
                po,
                expected_on=date.fromisoformat(chosen["new_expected_on"]),
                actor=actor,
                reason=why,
            )
        elif option == "cancel":
            po = purchasing.cancel(po, actor=actor, reason=why)
        else:
            lines = [
                purchasing.DraftLine(
                    sku=line.sku,
                    quantity=chosen["quantity"] if line.pk == item["line"] else line.quantity,
                    unit_cost=line.unit_cost,
                )
                for line in po.lines.select_related("sku")
            ]
            po = purchasing.update_lines(po, lines=lines, actor=actor)
        _mark(rec, actor, RecommendationStatus.ACTED, f"{chosen['text']} — done", po=po)
        _log("replenishment.slowed_down", rec, actor, {"po": po.number, "option": option})
    return po


def dismiss(rec: Recommendation | int, *, actor: object, reason: str = "") -> Recommendation:
    _require(actor, "forecasting.manage")
    with transaction.atomic():
        rec = _one_open(rec)
        _mark(rec, actor, RecommendationStatus.DISMISSED, reason.strip() or "Dismissed")
        _log("replenishment.dismissed", rec, actor, {"reason": reason.strip()})
    return rec


# --- Exceptions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplenishmentException:
    kind: str
    message: str
    sku_id: int | None = None
    warehouse_id: int | None = None
    supplier_id: int | None = None
    data: dict = field(default_factory=dict)


def exceptions(*, today: date | None = None) -> list[ReplenishmentException]:
    """What a buyer should look at today: demand leaving its forecast band, suppliers whose
    on-time rate is dropping, stock-outs projected before the next receipt can arrive."""
    today = today or brand_today()
    skus = {
        s.pk: s
        for s in SKU.objects.filter(status=Lifecycle.ACTIVE, is_bundle=False).only("pk", "code")
    }
    out = _demand_shifts(today, skus)
    out += _slipping_suppliers(today)
    out += _stockout_risks(today)
    return out


def _demand_shifts(today: date, skus: dict[int, SKU]) -> list[ReplenishmentException]:
    forecasts = forecasting.forecast_summary(list(skus))
    if not forecasts:
        return []
    history = forecasting.daily_units(
        list(forecasts), start=today - timedelta(days=SHIFT_DAYS), end=today - timedelta(days=1)
    )
    out = []
    for sku_id, summary in forecasts.items():
        known = [u for u in history.get(sku_id, []) if u is not None]
        if len(known) < SHIFT_MIN_KNOWN_DAYS:
            continue
        actual = sum(known)
        expected = summary.daily_mean * len(known)
        half = Z95 * summary.daily_std * math.sqrt(len(known))
        low, high = max(0.0, expected - half), expected + half
        if low <= actual <= high:
            continue
        direction = "above" if actual > high else "below"
        out.append(
            ReplenishmentException(
                AlertKind.DEMAND_SHIFT,
                f"{skus[sku_id].code} sold {actual:.0f} in the last {len(known)} in-stock days, "
                f"{direction} its forecast of {expected:.0f} (95 % band {low:.0f}–{high:.0f}).",
                sku_id=sku_id,
                data={
                    "actual": actual,
                    "expected": round(expected, 2),
                    "low": round(low, 2),
                    "high": round(high, 2),
                    "days": len(known),
                },
            )
        )
    return out


def _slipping_suppliers(today: date) -> list[ReplenishmentException]:
    recent = purchasing_stats.scorecards(window_days=90, today=today)
    if not recent:
        return []
    year = purchasing_stats.scorecards(window_days=365, today=today)
    from purchasing.models import Supplier

    names = dict(Supplier.objects.filter(pk__in=list(recent)).values_list("pk", "code"))
    out = []
    for supplier_id, now in recent.items():
        base = year.get(supplier_id)
        if base is None or now.samples < SLIP_MIN_SAMPLES:
            continue
        if base.on_time_rate - now.on_time_rate >= SLIP_DROP:
            out.append(
                ReplenishmentException(
                    AlertKind.SUPPLIER_SLIPPING,
                    f"{names.get(supplier_id, supplier_id)} delivered {now.on_time_rate:.0%} on "
                    f"time over 90 days ({now.samples} receipts), down from "
                    f"{base.on_time_rate:.0%} over the year; lead time now "
                    f"{now.mean_days:.0f} ± {now.std_days:.0f} days.",
                    supplier_id=supplier_id,
                    data={
                        "on_time_90": round(now.on_time_rate, 3),
                        "on_time_365": round(base.on_time_rate, 3),
                        "samples_90": now.samples,
                        "mean_days_90": round(now.mean_days, 2),
                    },
                )
            )
    return out


def _stockout_risks(today: date) -> list[ReplenishmentException]:
    day = (
        Recommendation.objects.filter(day__lte=today)
        .order_by("-day")
        .values_list("day", flat=True)
        .first()
    )
    if day is None:
        return []
    rows = Recommendation.objects.filter(
        day=day, projected_stockout_on__isnull=False
    ).select_related("sku", "warehouse")
    out = []
    for rec in rows:
        arrival = (
            f"the next PO is due {rec.next_receipt_on:%d %b}"
            if rec.next_receipt_on
            else f"a new order takes about {rec.lead_time_mean:.0f} days"
        )
        out.append(
            ReplenishmentException(
                AlertKind.STOCKOUT_RISK,
                f"{rec.sku.code} at {rec.warehouse.code} runs out around "
                f"{rec.projected_stockout_on:%d %b} ({rec.available} available at "
                f"{rec.daily_mean:.1f}/day) and {arrival}.",
                sku_id=rec.sku_id,
                warehouse_id=rec.warehouse_id,
                supplier_id=rec.supplier_id,
                data={
                    "stockout_on": str(rec.projected_stockout_on),
                    "recommendation": rec.pk,
                },
            )
        )
    return out


def _store_alerts(today: date) -> int:
    found = exceptions(today=today)
    ReplenishmentAlert.objects.filter(day=today).delete()
    ReplenishmentAlert.objects.bulk_create(
        ReplenishmentAlert(
            day=today,
            kind=e.kind,
            sku_id=e.sku_id,
            warehouse_id=e.warehouse_id,
            supplier_id=e.supplier_id,
            message=e.message,
            data=e.data,
        )
        for e in found
    )
    return len(found)


def latest_alerts(limit: int = 8) -> tuple[date | None, list[ReplenishmentAlert], int]:
    """The newest day's stored exceptions (for the dashboard): day, first `limit`, count."""
    day = ReplenishmentAlert.objects.order_by("-day").values_list("day", flat=True).first()
    if day is None:
        return None, [], 0
    rows = ReplenishmentAlert.objects.filter(day=day)
    return day, list(rows.select_related("sku", "supplier", "warehouse")[:limit]), rows.count()
