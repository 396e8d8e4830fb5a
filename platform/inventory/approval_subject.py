"""The "stock_adjustment" approval subject: how approvals judges, shows and continues a
StockAdjustmentRequest. Registered from InventoryConfig.ready()."""

from __future__ import annotations

from django.urls import reverse

from approvals.models import ApprovalRequest
from approvals.registry import DecisionContext, Facts, SubjectType, register
from approvals.rules import money
from inventory import services
from inventory.models import AdjustmentState, ReasonCode, StockAdjustmentRequest, StockStatus


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


def register_subject() -> None:
    register(STOCK_ADJUSTMENT)
