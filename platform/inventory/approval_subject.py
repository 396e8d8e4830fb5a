"""The "stock_adjustment" approval subject: how approvals judges, shows and continues a
StockAdjustmentRequest. Registered from InventoryConfig.ready()."""

from __future__ import annotations

from django.urls import reverse

from approvals.models import ApprovalRequest
from approvals.registry import ContextTable, DecisionContext, Facts, SubjectType, register
from approvals.rules import money
from inventory import services
from inventory.models import (
    AdjustmentState,
    CycleCount,
    ReasonCode,
    StockAdjustmentRequest,
    StockStatus,
)


def _adjustment(subject_id: str) -> StockAdjustmentRequest:
    return StockAdjustmentRequest.objects.select_related("sku__product", "warehouse").get(
        pk=int(subject_id)
    )


def facts_of(subject_id: str) -> Facts:
    return services.adjustment_facts(_adjustment(subject_id))


def context_for(request: ApprovalRequest) -> DecisionContext:
    adjustment = _adjustment(request.subject_id)
    sku, warehouse = adjustment.sku, adjustment.warehouse
    quantity, reserved = services.on_hand(sku.pk, warehouse.pk, adjustment.status)
    after = quantity + adjustment.delta
    unit_cost = (
        f"{sku.unit_cost:,.4f} {sku.cost_currency}"
        if sku.unit_cost is not None
        else f"none (no unit cost in {adjustment.currency})"
    )
    facts = [
        ("SKU", f"{sku.code} · {sku.title}" if sku.title and sku.title != sku.code else sku.code),
        ("Warehouse", f"{warehouse.code} · {warehouse.name}"),
        ("Stock status", StockStatus(adjustment.status).label),
        ("On hand now", f"{quantity}" + (f" ({reserved} reserved)" if reserved else "")),
        ("Change", f"{adjustment.delta:+d}"),
        ("After posting", str(after)),
        ("Unit cost", unit_cost),
        ("Value", money(adjustment.value, adjustment.currency)),
        ("Reason", ReasonCode(adjustment.reason_code).label),
    ]
    if adjustment.note:
        facts.append(("Note", adjustment.note))
    facts.append(("Requested by", adjustment.requested_by_label or "—"))
    warnings = []
    if adjustment.state == AdjustmentState.PENDING:
        available = quantity - reserved if adjustment.status == services.SELLABLE else quantity
        if available + adjustment.delta < 0:
            warnings.append(
                f"Only {max(available, 0)} can be removed now: approving will fail until "
                "the stock is there."
            )
    return DecisionContext(
        facts=facts,
        warnings=warnings,
        link=("SKU page", reverse("catalog:sku_detail", args=[sku.pk])),
    )


def _closing(state: str):
    def close(request: ApprovalRequest) -> None:
        services.close_adjustment_request(request, state)

    return close


STOCK_ADJUSTMENT = SubjectType(
    key=services.STOCK_ADJUSTMENT,
    label="Stock adjustment",
    facts_of=facts_of,
    on_approved=services.post_approved_adjustment,
    on_rejected=_closing(AdjustmentState.REJECTED),
    on_expired=_closing(AdjustmentState.EXPIRED),
    on_cancelled=_closing(AdjustmentState.CANCELLED),
    context_for=context_for,
)


# --- Cycle counts ----------------------------------------------------------------------------


def _count(subject_id: str) -> CycleCount:
    return CycleCount.objects.select_related("warehouse").get(pk=int(subject_id))


def count_facts_of(subject_id: str) -> Facts:
    return services.count_facts(_count(subject_id))


def count_context_for(request: ApprovalRequest) -> DecisionContext:
    count = _count(request.subject_id)
    rows = []
    for v in services.count_variances(count):
        if not v.variance:
            continue
        value = services.adjustment_value(v.sku, v.variance, request.currency)
        rows.append(
            [
                v.sku.code,
                str(v.current),
                str(v.counted),
                f"{v.variance:+d}",
                money(value, request.currency) if value is not None else "unknown (no cost)",
            ]
        )
    facts = [
        ("Warehouse", f"{count.warehouse.code} · {count.warehouse.name}"),
        ("SKUs counted", str(count.lines.count())),
        ("SKUs to correct", str(len(rows))),
        ("Value of corrections", money(request.amount, request.currency)),
    ]
    if count.note:
        facts.append(("Note", count.note))
    return DecisionContext(
        facts=facts,
        tables=[
            ContextTable(
                caption="Corrections posting would make now",
                columns=["SKU", "On hand", "Counted", "Change", "Value"],
                rows=rows,
            )
        ],
        link=("Count sheet", reverse("inventory:count_detail", args=[count.pk])),
    )


def _reopening(state: str):
    def reopen(request: ApprovalRequest) -> None:
        services.reopen_count(request, state)

    return reopen


CYCLE_COUNT = SubjectType(
    key=services.CYCLE_COUNT,
    label="Cycle count",
    facts_of=count_facts_of,
    on_approved=services.post_approved_count,
    on_rejected=_reopening("rejected"),
    on_expired=_reopening("expired"),
    on_cancelled=_reopening("cancelled"),
    context_for=count_context_for,
)


def register_subject() -> None:
    register(STOCK_ADJUSTMENT)
    register(CYCLE_COUNT)
