"""The "purchase_order" approval subject: how approvals judges, shows and continues a
PurchaseOrder. Registered from PurchasingConfig.ready()."""

from __future__ import annotations

from collections.abc import Iterable

from django.urls import reverse

from approvals.models import ApprovalRequest
from approvals.registry import ContextTable, DecisionContext, Facts, SubjectType, register
from approvals.rules import money
from inventory import services as stock
from purchasing import services
from purchasing.models import PurchaseOrder
from purchasing.stats import supplier_summary

FORECAST_DAYS = 28


def _po(subject_id: str) -> PurchaseOrder:
    return PurchaseOrder.objects.select_related("supplier", "warehouse").get(pk=int(subject_id))


def segment_tags(sku_ids: Iterable[int]) -> frozenset[str]:
    """`segment:<name>` of each SKU: segment policies (forecasting's) match these."""
    from forecasting.services import segment_tag, segments_of

    return frozenset(segment_tag(segment) for segment in segments_of(list(sku_ids)).values())


def facts_of(subject_id: str) -> Facts:
    po = _po(subject_id)
    sku_ids = list(po.lines.values_list("sku_id", flat=True))
    count = len(sku_ids)
    return Facts(
        title=f"{po.number} · {po.supplier.name} · {count} line{'s' if count != 1 else ''}",
        amount=services.approval_amount(po),
        tags=segment_tags(sku_ids),
        supplier=po.supplier.code,
        version=po.version,
    )


def _forecasts(sku_ids: list[int]) -> dict:
    from forecasting.services import forecast_summary

    return forecast_summary(sku_ids)


def context_for(request: ApprovalRequest) -> DecisionContext:
    po = _po(request.subject_id)
    lines = list(po.lines.select_related("sku"))
    sku_ids = [line.sku_id for line in lines]
    atp = stock.available_to_promise(sku_ids=sku_ids, warehouse_ids=[po.warehouse_id])
    forecasts = _forecasts(sku_ids)
    rows = []
    for line in lines:
        on_hand, _ = stock.on_hand(line.sku_id, po.warehouse_id, stock.SELLABLE)
        available = atp.get((line.sku_id, po.warehouse_id), 0)
        forecast = forecasts.get(line.sku_id)
        if forecast is not None and forecast.daily_mean > 0:
            cover = f"{available / forecast.daily_mean:,.0f} days"
            demand = f"{forecast.next_28:,.0f}"
        else:
            cover, demand = "—", ("0" if forecast is not None else "no forecast")
        rows.append(
            [
                line.sku.code,
                str(line.quantity),
                f"{line.unit_cost:,.4f}",
                f"{line.line_total:,.2f}",
                f"{on_hand} / {available}",
                cover,
                demand,
            ]
        )
    total = services.po_total(po)
    stats = supplier_summary(po.supplier_id)
    facts = [
        ("Supplier", f"{po.supplier.code} · {po.supplier.name}"),
        ("Ship to", f"{po.warehouse.code} · {po.warehouse.name}"),
        ("Total", money(total, po.currency)),
        ("Expected", f"{po.expected_on:%d %b %Y}"),
        ("Quoted lead time", f"{po.supplier.quoted_lead_time_days} days"),
    ]
    if stats.samples:
        facts.append(
            (
                "Lead time (365 days)",
                f"{stats.mean_days:.1f} ± {stats.std_days:.1f} days over {stats.samples} "
                f"receipt{'s' if stats.samples != 1 else ''}; on time "
                f"{stats.on_time_rate:.0%}, OTIF {stats.otif_rate:.0%}, "
                f"fill rate {stats.fill_rate:.0%}",
            )
        )
    else:
        facts.append(("Lead time (365 days)", "no receipts yet"))
    facts.append(("Version", str(po.version) + (" (amendment)" if po.times_sent else "")))
    facts.append(("Drafted by", po.created_by_label or "—"))
    if po.note:
        facts.append(("Note", po.note))
    warnings = services.warnings_for(po)
    if po.currency.upper() != request.currency.upper():
        warnings.append(
            f"This order is in {po.currency}; the brand's ceilings are in {request.currency}, "
            "so its amount counts as unknown."
        )
    return DecisionContext(
        facts=facts,
        tables=[
            ContextTable(
                "Lines",
                [
                    "SKU",
                    "Quantity",
                    "Unit cost",
                    "Line total",
                    "On hand / ATP",
                    "Cover",
                    f"Forecast {FORECAST_DAYS} d",
                ],
                rows,
            )
        ],
        warnings=warnings,
        link=("Purchase order page", reverse("purchasing:po_detail", args=[po.pk])),
    )


PURCHASE_ORDER = SubjectType(
    key=services.PURCHASE_ORDER,
    label="Purchase order",
    facts_of=facts_of,
    on_approved=services.send_approved,
    on_rejected=services.return_to_draft,
    context_for=context_for,
)


def register_subject() -> None:
    register(PURCHASE_ORDER)
