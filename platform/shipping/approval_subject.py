"""The "shipping_label" approval subject: a shipment's chosen rate waiting for approval.

Facts: the chosen rate's price (in the brand currency; another currency is "unknown", which
a policy with an amount condition treats as needing approval). The inbox shows the
competing rates with their scores and the reason for the choice. Approving starts the
purchase exactly once (the continuation key is the label's idempotency key). Registered
from ShippingConfig.ready()."""

from __future__ import annotations

from django.urls import reverse

from approvals.models import ApprovalRequest
from approvals.registry import ContextTable, DecisionContext, SubjectType, register
from shipping import services
from shipping.models import Shipment


def context_for(request: ApprovalRequest) -> DecisionContext:
    shipment = Shipment.objects.select_related("chosen_quote", "warehouse").get(
        pk=int(request.subject_id)
    )
    quote = shipment.chosen_quote
    facts = [
        ("Shipment", shipment.reference),
        ("Fulfillment order", f"FO-{shipment.fulfillment_id}"),
        ("From", f"{shipment.warehouse.code} ({shipment.origin_postal})"),
        (
            "To",
            f"{shipment.dest_name}, {shipment.dest_city} {shipment.dest_state} "
            f"{shipment.dest_postal}".strip(", "),
        ),
        ("Lane", shipment.lane),
        ("Weight", f"{shipment.weight_g / 1000:.2f} kg in {shipment.cartons} carton(s)"),
        ("Chosen rate", f"{quote.label}: {quote.amount} {quote.currency}" if quote else "—"),
        ("Why", shipment.choice_reason or "—"),
    ]
    rows = []
    for row in shipment.choice_table:
        rows.append(
            [
                f"{row['carrier']} {row['service']}",
                row["price"],
                "—" if row.get("days") is None else str(row["days"]),
                "—" if row.get("lane_on_time") is None else f"{row['lane_on_time'] * 100:.0f} %",
                f"{row['score']:.2f}",
                "do not use" if row.get("do_not_use") else "",
            ]
        )
    warnings = []
    if quote is not None and quote.expires_at is not None and quote.expires_at < request.created_at:
        warnings.append("The chosen rate has expired: the carrier may refuse it.")
    return DecisionContext(
        facts=facts,
        tables=[
            ContextTable(
                caption="Competing rates",
                columns=["Carrier / service", "Price", "Days", "On time (lane)", "Score", ""],
                rows=rows,
            )
        ],
        warnings=warnings,
        link=("Shipment page", reverse("shipping:detail", args=[shipment.pk])),
    )


SHIPPING_LABEL = SubjectType(
    key=services.LABEL_SUBJECT,
    label="Shipping label",
    facts_of=services.label_facts,
    on_approved=services.on_label_approved,
    on_rejected=services.on_label_closed,
    context_for=context_for,
)


def freight_context(request: ApprovalRequest) -> DecisionContext:
    shipment = Shipment.objects.select_related("chosen_freight_quote", "warehouse").get(
        pk=int(request.subject_id)
    )
    quote = shipment.chosen_freight_quote
    variance = (
        f"{shipment.freight_variance_pct} %"
        if shipment.freight_variance_pct is not None
        else "unknown (fewer than two quotes)"
    )
    facts = [
        ("Shipment", shipment.reference),
        ("Lane", shipment.lane),
        ("Pallets", f"{shipment.pallets} × class {shipment.freight_class}"),
        ("Weight", f"{shipment.weight_g / 1000:.0f} kg"),
        (
            "Chosen quote",
            f"{quote.carrier} via {quote.source}: {quote.total} {quote.currency}" if quote else "—",
        ),
        ("Spread between quotes", variance),
    ]
    rows = [
        [
            q.source,
            q.carrier,
            f"{q.total} {q.currency}",
            str(q.transit_days),
            f"{q.expires_at:%Y-%m-%d %H:%M}",
        ]
        for q in shipment.freight_quotes.filter(superseded=False)
    ]
    warnings = []
    if quote is not None and quote.expires_at < request.created_at:
        warnings.append("The chosen quote has expired: quote again before booking.")
    return DecisionContext(
        facts=facts,
        tables=[
            ContextTable(
                caption="Freight quotes",
                columns=["Source", "Carrier", "Total", "Transit days", "Valid until"],
                rows=rows,
            )
        ],
        warnings=warnings,
        link=("Shipment page", reverse("shipping:detail", args=[shipment.pk])),
    )


def _freight_subject() -> SubjectType:
    from shipping import freight

    return SubjectType(
        key=freight.BOOKING_SUBJECT,
        label="Freight booking",
        facts_of=freight.booking_facts,
        on_approved=freight.on_booking_approved,
        on_rejected=freight.on_booking_closed,
        context_for=freight_context,
    )


FREIGHT_BOOKING: SubjectType | None = None


def register_subject() -> None:
    global FREIGHT_BOOKING
    register(SHIPPING_LABEL)
    if FREIGHT_BOOKING is None:
        FREIGHT_BOOKING = _freight_subject()
    register(FREIGHT_BOOKING)
