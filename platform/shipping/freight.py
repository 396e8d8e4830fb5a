"""LTL freight: quotes from every freight connection, the variance rule, booking behind the
"freight_booking" approval, the bill of lading (BOL) PDF and proof of delivery (POD).

- `quote_freight(shipment)` asks every active carrier connection that declares freight
  quoting (connectors.freight.freight_capabilities) through `compare_quotes`; the quotes
  are stored, the cheapest is chosen, and the spread between the highest and the lowest
  ((high − low) / low) is kept as `freight_variance_pct` — over the standard
  (non-guaranteed) offers when there are two or more, since guaranteed service is dearer
  by design and would make every spread look alarming.
- `request_booking` opens the "freight_booking" approval with facts amount = chosen total
  and variance_pct = the spread. The default policy wants approval when quotes vary by
  more than 50 %; fewer than two quotes is an unknown spread, which a variance policy
  treats as needing approval (never assumed small).
- Booking works like a label purchase: a FreightBooking row in state `booking` with its
  idempotency key is committed before the broker is called; a crash is recovered by
  `recover_bookings` asking again with the same key.
- The BOL is rendered with reportlab from the fulfillment order (shipper, consignee,
  pallets, class, weight, references, special instructions) and stored through Django's
  storage under `bol/active/`; it moves to `bol/shipped/` when the freight is picked up
  or delivered.
- `upload_pod` (UI/API) stores the signed delivery receipt under `pod/`, records the final
  freight cost against the quote, completes the shipment (lane outcome, `shipment.delivered`).
"""

from __future__ import annotations

import io
import logging
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from approvals import services as approvals
from approvals.models import ApprovalRequest, RequestState
from audit.context import current_actor
from audit.services import record
from connectors import freight as cf
from connectors import types as ct
from connectors.errors import ConnectorError, PermanentError
from orders.models import ShipType
from shipping.models import (
    BookingStatus,
    FreightBooking,
    FreightQuote,
    Shipment,
    ShipmentState,
)
from shipping.services import (
    ON_THE_WAY,
    RATEABLE,
    ShippingError,
    _err,
    _require,
    complete_if_delivered,
)
from sync import plugins
from sync.models import Connection, ConnectionKind

log = logging.getLogger(__name__)

BOOKING_SUBJECT = "freight_booking"
KG_PER_LB = Decimal("0.45359237")
# A standard GMA pallet, 48 × 40 in, stacked to 48 in, when the warehouse has not measured.
PALLET_IN = (Decimal(48), Decimal(40), Decimal(48))
RECOVER_AFTER = timedelta(minutes=2)


def freight_connections() -> list[Connection]:
    conns = []
    for conn in Connection.objects.active().filter(kind=ConnectionKind.CARRIER):
        info = plugins.infos().get(conn.connector)
        if info is not None and cf.FreightCapability.QUOTE in cf.freight_capabilities(info):
            conns.append(conn)
    return conns


def _next_business_day(today: date) -> date:
    day = today + timedelta(days=1)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


def freight_request(shipment: Shipment, *, pickup: date | None = None) -> cf.FreightQuoteRequest:
    wh = shipment.warehouse
    pallets = max(1, shipment.pallets)
    per_pallet_lb = (Decimal(max(shipment.weight_g, 1000)) / 1000 / KG_PER_LB / pallets).quantize(
        Decimal("0.1")
    )
    return cf.FreightQuoteRequest(
        origin=ct.Address(
            name=wh.name,
            line1=wh.address_line1,
            city=wh.city,
            region=wh.state,
            postal_code=shipment.origin_postal,
            country=shipment.origin_country or "US",
        ),
        destination=ct.Address(
            name=shipment.dest_name,
            company=shipment.dest_company,
            line1=shipment.dest_line1,
            city=shipment.dest_city,
            region=shipment.dest_state,
            postal_code=shipment.dest_postal,
            country=(shipment.dest_country or "US").upper(),
        ),
        # The connectors' clock: the vendor sees the same "today" as every other call.
        pickup_date=pickup or _next_business_day(plugins.clock.now().date()),
        units=(
            cf.HandlingUnit(
                pieces=pallets,
                length=PALLET_IN[0],
                width=PALLET_IN[1],
                height=PALLET_IN[2],
                weight=max(per_pallet_lb, Decimal("1")),
                freight_class=shipment.freight_class or None,
                description=f"{shipment.reference} goods",
            ),
        ),
        reference=shipment.reference,
    )


def quote_freight(shipment: Shipment, *, actor: object = None) -> Shipment:
    """Quotes from every freight source; the cheapest is chosen, the spread recorded."""
    _require(actor, "shipping.operate")
    shipment = Shipment.objects.select_related("warehouse").get(pk=shipment.pk)
    if shipment.ship_type != ShipType.LTL:
        raise _err("Parcel shipments are rated, not freight-quoted.", "parcel")
    if shipment.state not in RATEABLE:
        raise _err("This shipment can no longer be quoted.", "state")
    request = freight_request(shipment)
    conns = freight_connections()
    # Asked one source at a time (as compare_quotes does), keeping which connection
    # answered each quote: booking goes back to that connection.
    offers: list[tuple[cf.FreightQuote, Connection]] = []
    errors: dict[str, str] = {}
    for conn in conns:
        try:
            with plugins.connector_for(conn) as source:
                offers.extend((q, conn) for q in source.quote_freight(request=request))
        except ConnectorError as exc:
            errors[conn.display_name] = exc.message[:300]
    ranked = sorted(
        offers, key=lambda qc: (qc[0].total.amount, qc[0].transit_days, qc[0].scac, qc[0].quote_id)
    )
    # Like for like: a guaranteed service costs more by design, so the spread is taken
    # over the standard offers when there are at least two of them.
    standard = [q for q, _ in ranked if not q.guaranteed]
    comparable = standard if len(standard) >= 2 else [q for q, _ in ranked]
    currencies = {q.total.currency for q in comparable}
    spread = cf.price_spread(comparable) if len(currencies) == 1 else None
    request_json = cf.freight_to_primitive(request)
    with transaction.atomic():
        shipment = Shipment.objects.select_for_update().get(pk=shipment.pk)
        shipment.freight_quotes.filter(superseded=False).update(superseded=True)
        rows = FreightQuote.objects.bulk_create(
            [
                FreightQuote(
                    shipment=shipment,
                    connection=conn,
                    quote_id=q.quote_id[:255],
                    source=conn.display_name[:100],
                    carrier=q.carrier[:100],
                    scac=q.scac[:4],
                    total=q.total.amount.quantize(Decimal("0.01")),
                    currency=q.total.currency,
                    transit_days=q.transit_days,
                    expires_at=q.expires_at,
                    raw=cf.freight_to_primitive(q),
                    request=request_json,
                )
                for q, conn in ranked
            ]
        )
        chosen = rows[0] if rows else None
        shipment.chosen_freight_quote = chosen
        shipment.freight_variance_pct = (
            None if spread is None else (spread * 100).quantize(Decimal("0.01"))
        )
        sources = {r.source for r in rows}
        if chosen is None:
            why = "; ".join(f"{k}: {e}" for k, e in errors.items())
            shipment.choice_reason = "No freight quote." + (
                f" ({why})" if why else " Connect a freight broker."
            )
            shipment.state = ShipmentState.DRAFT
        else:
            variance = (
                f"quotes vary by {shipment.freight_variance_pct} %"
                if spread is not None
                else "only one quote, so the spread is unknown"
            )
            shipment.choice_reason = (
                f"{chosen.carrier} ({chosen.source}): the cheapest of {len(rows)} freight "
                f"quotes from {len(sources)} source(s) at {chosen.total} {chosen.currency}, "
                f"{chosen.transit_days} transit days; {variance}."
            )
            shipment.carrier, shipment.service = chosen.carrier, "LTL"
            shipment.promised_days = chosen.transit_days
            shipment.state = ShipmentState.RATED
        shipment.choice_inputs = {
            "sources": sorted(sources),
            "errors": errors,
            "spread_pct": None if spread is None else str(shipment.freight_variance_pct),
        }
        shipment.save()
        record(
            "shipment.freight_quoted",
            obj=shipment,
            changes={
                "quotes": len(rows),
                "sources": sorted(sources),
                "variance_pct": str(shipment.freight_variance_pct),
                "chosen": str(chosen) if chosen else None,
            },
        )
    return shipment


def booking_facts(shipment_id: str):
    from approvals.registry import Facts

    shipment = Shipment.objects.select_related("chosen_freight_quote").get(pk=int(shipment_id))
    quote = shipment.chosen_freight_quote
    amount = None
    if quote is not None and quote.currency == approvals.current_brand().currency:
        amount = quote.total
    title = f"Freight booking for {shipment.reference}"
    if quote is not None:
        title += f": {quote.carrier} via {quote.source}, {quote.total} {quote.currency}"
    return Facts(
        title=title,
        amount=amount,
        variance_pct=shipment.freight_variance_pct,
        version=quote.pk if quote else 1,
    )


def request_booking(shipment: Shipment, *, actor: object = None) -> dict[str, Any]:
    """Book the chosen freight quote, or put it behind approval when quotes vary too much.
    Returns {"state": "booking" | "booked" | "pending", "booking"?, "approval"?}."""
    _require(actor, "shipping.operate")
    with transaction.atomic():
        approvals.lock_subject(BOOKING_SUBJECT, shipment.pk)
        shipment = Shipment.objects.select_for_update().get(pk=shipment.pk)
        live = shipment.bookings.exclude(status=BookingStatus.FAILED).first()
        if live is not None:
            return {"state": live.status, "booking": live}
        if shipment.state == ShipmentState.AWAITING_APPROVAL:
            pending = (
                ApprovalRequest.objects.for_subject(BOOKING_SUBJECT, shipment.pk).pending().first()
            )
            if pending is not None:
                return {"state": "pending", "approval": pending}
        if (
            shipment.ship_type != ShipType.LTL
            or shipment.state != ShipmentState.RATED
            or shipment.chosen_freight_quote_id is None
        ):
            raise _err("Quote the freight and choose a quote before booking.", "state")
        outcome = approvals.open_request(BOOKING_SUBJECT, shipment.pk, requested_by=actor)
        if outcome.state == approvals.NOT_REQUIRED:
            booking = _start_booking(
                shipment, key=f"shipment:{shipment.pk}:freight:{shipment.bookings.count() + 1}"
            )
            return {"state": "booking", "booking": booking}
        if outcome.pending:
            shipment.state = ShipmentState.AWAITING_APPROVAL
            shipment.save(update_fields=["state", "updated_at"])
            record(
                "shipment.booking_awaiting_approval",
                obj=shipment,
                changes={"approval_request": outcome.request.pk},
            )
            return {"state": "pending", "approval": outcome.request}
        booking = shipment.bookings.filter(approval_request_id=outcome.request.pk).first()
        return {"state": "booking", "booking": booking, "approval": outcome.request}


def _start_booking(
    shipment: Shipment, *, key: str, approval_request_id: int | None = None
) -> FreightBooking:
    quote = shipment.chosen_freight_quote
    booking = FreightBooking.objects.create(
        shipment=shipment,
        quote=quote,
        connection=quote.connection,
        idempotency_key=key,
        approval_request_id=approval_request_id,
        quoted_total=quote.total,
        currency=quote.currency,
    )
    record(
        "freight.booking_started",
        obj=shipment,
        changes={"booking": booking.pk, "key": key, "quote": str(quote)},
    )
    transaction.on_commit(lambda: dispatch_booking(booking.pk))
    return booking


def _book_after_commit(booking_id: int) -> None:
    try:
        book(booking_id)
    except Exception:  # noqa: BLE001  (the row stays "booking"; recovery retries it)
        log.exception("freight booking %s failed after commit; recovery will retry", booking_id)


dispatch_booking = _book_after_commit


def on_booking_approved(request: ApprovalRequest, continuation_key: str) -> None:
    shipment = Shipment.objects.select_for_update().get(pk=int(request.subject_id))
    if shipment.bookings.filter(idempotency_key=continuation_key).exists():
        return
    if shipment.chosen_freight_quote_id is None:
        raise _err("The shipment has no chosen freight quote any more.", "state")
    _start_booking(shipment, key=continuation_key, approval_request_id=request.pk)


def on_booking_closed(request: ApprovalRequest) -> None:
    shipment = Shipment.objects.select_for_update().get(pk=int(request.subject_id))
    if shipment.state == ShipmentState.AWAITING_APPROVAL and not shipment.bookings.exclude(
        status=BookingStatus.FAILED
    ):
        shipment.state = ShipmentState.RATED
        shipment.save(update_fields=["state", "updated_at"])
    record("shipment.booking_not_approved", obj=shipment, changes={"state": request.state})


def _covered(booking: FreightBooking) -> bool:
    if booking.approval_request_id is not None:
        return (
            ApprovalRequest.objects.filter(pk=booking.approval_request_id)
            .values_list("state", flat=True)
            .first()
            == RequestState.APPROVED
        )
    facts = booking_facts(str(booking.shipment_id))
    return approvals.requirement(BOOKING_SUBJECT, facts) is None


def book(booking_id: int) -> FreightBooking:
    """Book with the broker (again after a crash: same key, same booking)."""
    booking = FreightBooking.objects.select_related("quote", "connection", "shipment").get(
        pk=booking_id
    )
    if booking.status != BookingStatus.BOOKING:
        return booking
    if not _covered(booking):
        raise ShippingError("This booking needs an approved request.", code="approval")
    FreightBooking.objects.filter(pk=booking.pk).update(attempts=booking.attempts + 1)
    quote = cf.quote_from_primitive(booking.quote.raw)
    request = cf.request_from_primitive(booking.quote.request)
    try:
        with plugins.connector_for(booking.connection) as broker:
            booked = broker.book_freight(
                quote=quote, request=request, idempotency_key=booking.idempotency_key
            )
    except PermanentError as exc:
        return _booking_failed(booking, exc.message)
    except ConnectorError as exc:
        FreightBooking.objects.filter(pk=booking.pk).update(error=exc.message[:500])
        raise
    return commit_booking(booking.pk, booked)


def commit_booking(booking_id: int, booked: cf.FreightBooking) -> FreightBooking:
    with transaction.atomic():
        booking = FreightBooking.objects.select_for_update().get(pk=booking_id)
        if booking.status != BookingStatus.BOOKING:
            return booking
        shipment = (
            Shipment.objects.select_for_update()
            .select_related("warehouse", "fulfillment__order")
            .get(pk=booking.shipment_id)
        )
        booking.status = BookingStatus.BOOKED
        booking.bol_number = booked.bol_number[:100]
        booking.pro_number = booked.pro_number[:100]
        booking.pickup_window_start = booked.pickup_window_start
        booking.pickup_window_end = booked.pickup_window_end
        if booked.total is not None:
            booking.quoted_total = booked.total.amount.quantize(Decimal("0.01"))
        booking.booked_at = timezone.now()
        booking.error = ""
        pdf = render_bol(shipment, booking, booked)
        name = f"bol/active/{_safe(booking.bol_number)}.pdf"
        if default_storage.exists(name):
            default_storage.delete(name)
        booking.bol_document.name = default_storage.save(name, ContentFile(pdf))
        booking.save()
        shipment.state = ShipmentState.LABEL_PURCHASED
        shipment.tracking_number = booking.pro_number or booking.bol_number
        shipment.carrier = booked.carrier[:100]
        shipment.label_purchased_at = booking.booked_at
        shipment.save()
        record(
            "freight.booked",
            obj=shipment,
            changes={
                "bol": booking.bol_number,
                "pro": booking.pro_number,
                "carrier": booked.carrier,
                "total": str(booking.quoted_total),
            },
        )
    return booking


def _safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in text)[:80] or "bol"


def _booking_failed(booking: FreightBooking, message: str) -> FreightBooking:
    with transaction.atomic():
        booking = FreightBooking.objects.select_for_update().get(pk=booking.pk)
        if booking.status != BookingStatus.BOOKING:
            return booking
        booking.status = BookingStatus.FAILED
        booking.error = message[:500]
        booking.save(update_fields=["status", "error"])
        Shipment.objects.filter(pk=booking.shipment_id).update(state=ShipmentState.RATED)
        record("freight.booking_failed", obj=booking.shipment, changes={"error": message})
    return booking


def recover_bookings(now: datetime | None = None) -> int:
    now = now or timezone.now()
    done = 0
    for pk in FreightBooking.objects.filter(
        status=BookingStatus.BOOKING, created_at__lte=now - RECOVER_AFTER
    ).values_list("pk", flat=True):
        try:
            if book(pk).status == BookingStatus.BOOKED:
                done += 1
        except (ConnectorError, ShippingError) as exc:
            log.warning("freight booking %s: recovery failed: %s", pk, exc)
    return done


def move_bol_to_shipped(booking: FreightBooking) -> None:
    """The freight left: its BOL moves from bol/active/ to bol/shipped/."""
    name = booking.bol_document.name
    if not name or not name.startswith("bol/active/"):
        return
    with default_storage.open(name, "rb") as handle:
        content = handle.read()
    target = "bol/shipped/" + name.removeprefix("bol/active/")
    if default_storage.exists(target):
        default_storage.delete(target)
    saved = default_storage.save(target, ContentFile(content))
    FreightBooking.objects.filter(pk=booking.pk).update(bol_document=saved)
    booking.bol_document.name = saved
    default_storage.delete(name)


def upload_pod(
    shipment: Shipment,
    *,
    content: bytes,
    filename: str = "pod.pdf",
    signed_by: str = "",
    final_total: Decimal | None = None,
    actor: object = None,
    delivered_at: datetime | None = None,
) -> FreightBooking:
    """The signed delivery receipt: completes an LTL shipment and settles its cost."""
    _require(actor, "shipping.operate")
    if not content:
        raise _err("Choose the signed delivery receipt to upload.", "required", "document")
    if final_total is not None and final_total < 0:
        raise _err("The final freight cost cannot be negative.", "invalid", "final_total")
    with transaction.atomic():
        shipment = Shipment.objects.select_for_update().get(pk=shipment.pk)
        booking = (
            FreightBooking.objects.select_for_update()
            .filter(shipment=shipment, status__in=[BookingStatus.BOOKED, BookingStatus.DELIVERED])
            .first()
        )
        if booking is None:
            raise _err("Only a booked LTL shipment takes a proof of delivery.", "state")
        if booking.status == BookingStatus.DELIVERED:
            raise _err("This shipment's proof of delivery is already in.", "state")
        ext = (filename.rsplit(".", 1)[-1] or "pdf").lower()[:5]
        name = f"pod/{_safe(booking.bol_number)}.{ext}"
        if default_storage.exists(name):
            default_storage.delete(name)
        booking.pod_document.name = default_storage.save(name, ContentFile(content))
        booking.pod_signed_by = signed_by[:200]
        booking.final_total = final_total if final_total is not None else booking.quoted_total
        booking.status = BookingStatus.DELIVERED
        booking.delivered_at = delivered_at or shipment.delivered_at or timezone.now()
        booking.save()
        move_bol_to_shipped(booking)
        shipment.delivered_at = booking.delivered_at
        shipment.shipped_at = shipment.shipped_at or shipment.label_purchased_at
        variance = booking.final_total - booking.quoted_total
        record(
            "freight.pod_uploaded",
            obj=shipment,
            changes={
                "bol": booking.bol_number,
                "signed_by": booking.pod_signed_by,
                "quoted": str(booking.quoted_total),
                "final": str(booking.final_total),
                "variance": str(variance),
                "by": current_actor().label,
            },
        )
        from shipping.services import _mark_fulfillment_shipped

        _mark_fulfillment_shipped(shipment)
        complete_if_delivered(shipment, quoted=booking.quoted_total, invoiced=booking.final_total)
        shipment.save()
    return booking


def collect_pods(limit: int = 50) -> int:
    """LTL shipments the carrier reported delivered: fetch the proof of delivery from the
    source that booked them, where it offers one (a person can always upload it)."""
    done = 0
    waiting = FreightBooking.objects.filter(
        status=BookingStatus.BOOKED, shipment__delivered_at__isnull=False
    ).select_related("connection", "shipment")[:limit]
    for booking in waiting:
        info = plugins.infos().get(booking.connection.connector)
        if info is None or cf.FreightCapability.POD not in cf.freight_capabilities(info):
            continue
        try:
            with plugins.connector_for(booking.connection) as source:
                pod = source.fetch_pod(bol_number=booking.bol_number)
        except ConnectorError as exc:
            log.warning("POD of %s: %s", booking.bol_number, exc)
            continue
        if pod is None:
            continue
        upload_pod(
            booking.shipment,
            content=pod.content,
            filename=f"pod.{pod.format or 'pdf'}",
            signed_by=pod.signed_by,
            delivered_at=booking.shipment.delivered_at,
        )
        done += 1
    return done


def on_freight_moving(shipment: Shipment) -> None:
    """Tracking saw the freight picked up: the BOL is no longer an active document."""
    booking = shipment.bookings.filter(status=BookingStatus.BOOKED).first()
    if booking is not None and shipment.state in ON_THE_WAY:
        move_bol_to_shipped(booking)


def render_bol(shipment: Shipment, booking: FreightBooking, booked: cf.FreightBooking) -> bytes:
    """A straight bill of lading as a one-page PDF."""
    from reportlab.lib.pagesizes import LETTER
    from reportlab.lib.units import inch
    from reportlab.pdfgen import canvas

    fo = shipment.fulfillment
    order = fo.order
    wh = shipment.warehouse
    pallets = max(1, shipment.pallets)
    weight_lb = (Decimal(shipment.weight_g) / 1000 / KG_PER_LB).quantize(Decimal("1"))
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=LETTER)
    pdf.setTitle(f"Bill of lading {booking.bol_number}")
    y = 10.4 * inch

    def line(text: str, *, size: int = 10, bold: bool = False, gap: float = 14) -> None:
        nonlocal y
        pdf.setFont("Helvetica-Bold" if bold else "Helvetica", size)
        pdf.drawString(0.75 * inch, y, text[:110])
        y -= gap

    line("STRAIGHT BILL OF LADING - SHORT FORM", size=14, bold=True, gap=22)
    line(f"BOL number: {booking.bol_number}    PRO: {booking.pro_number or '-'}", bold=True)
    line(f"Date: {timezone.localdate():%Y-%m-%d}    Carrier: {booked.carrier} (SCAC {booked.scac})")
    if booked.pickup_window_start and booked.pickup_window_end:
        line(
            f"Pickup window: {booked.pickup_window_start:%Y-%m-%d %H:%M} - "
            f"{booked.pickup_window_end:%H:%M} UTC",
            gap=22,
        )
    line("SHIPPER", bold=True)
    line(wh.name)
    line(wh.address_line1)
    line(f"{wh.city} {wh.state} {wh.postal_code} {wh.country}", gap=22)
    line("CONSIGNEE", bold=True)
    line(shipment.dest_company or shipment.dest_name)
    if shipment.dest_company and shipment.dest_name:
        line(f"Attn: {shipment.dest_name}")
    line(shipment.dest_line1)
    line(
        f"{shipment.dest_city} {shipment.dest_state} {shipment.dest_postal} "
        f"{shipment.dest_country}",
        gap=22,
    )
    line("HANDLING UNITS", bold=True)
    line(f"Pallets: {pallets}    Freight class: {shipment.freight_class}    Weight: {weight_lb} lb")
    for fl in fo.lines.select_related("sku"):
        line(f"  {fl.quantity} x {fl.sku.code} {fl.sku.title}"[:100], size=9, gap=12)
    y -= 10
    line("REFERENCES", bold=True)
    line(f"Order: {order.channel} #{order.external_id}    Fulfillment order: FO-{fo.pk}")
    line(f"Shipment: {shipment.reference}    Quote: {booking.quote.quote_id}", gap=22)
    line("SPECIAL INSTRUCTIONS", bold=True)
    instructions = shipment.special_instructions or order.note or "None"
    line(instructions, gap=30)
    line("Shipper signature: ______________________    Date: __________")
    line("Carrier signature: ______________________    Pickup date: __________", gap=22)
    line("Consignee signature: ______________________  Delivery date: __________")
    pdf.showPage()
    pdf.save()
    return buffer.getvalue()
