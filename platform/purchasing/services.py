"""Purchasing services: suppliers, purchase orders behind approval, receipts.

Every function that changes a purchase order runs in one transaction that first takes the
approval subject's lock (`approvals.services.lock_subject("purchase_order", pk)`) and then
the PO row (`SELECT … FOR UPDATE`), so edits, receipts and approval decisions on one PO
queue instead of deadlocking or overtaking each other.

Approval: `submit` opens an approval request (`approvals.services.open_request`); the
subject type (purchasing.approval_subject) sends the PO when the request is approved
(`send_approved`, exactly once per request: the continuation key is stored on the PO),
and returns it to draft when rejected, expired or cancelled. An edit of a PO behind
approval calls `approvals.services.subject_changed`: a higher amount re-opens approval
(an approved or sent PO goes back to pending_approval as an amendment and is re-sent once
approved); a lower or equal one stays covered.

Email to suppliers goes through the transactional outbox: sending a PO (first time, as an
amendment, or when a person asks to email it again) writes a PurchaseOrderEmail row and an
`EMAIL_TOPIC` outbox message in the transaction that changed the PO, so a rolled-back send
emails nothing and a committed one is emailed even if the process dies right after. A
worker runs `deliver_email` (purchasing.handlers): it renders the PDF from the PO as it is
then and sends through Django's email backend; failures are retried by the outbox with
backoff and, once parked, shown on the PO page next to *Email again*.
"""

from __future__ import annotations

import logging
import smtplib
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from accounts.models import User
from accounts.roles import has_permission
from accounts.services import AccessError
from approvals import services as approvals
from approvals.models import ApprovalRequest, RequestState
from audit.context import actor_for_user, current_actor
from audit.services import record
from catalog.models import SKU
from inventory import services as stock
from inventory.models import StockStatus, Warehouse
from outbox.models import MessageStatus, OutboxMessage
from outbox.services import enqueue, publish_domain_event
from purchasing.models import (
    EmailPurpose,
    EmailStatus,
    NumberSequence,
    POSource,
    POState,
    PurchaseOrder,
    PurchaseOrderEmail,
    PurchaseOrderLine,
    Receipt,
    ReceiptLine,
    ReceiptReason,
    Supplier,
    SupplierSKU,
)

logger = logging.getLogger(__name__)

PURCHASE_ORDER = "purchase_order"
NUMBER_SERIES = "purchase_order"
# States whose lines may still change (a sent PO only while nothing has arrived).
EDITABLE = (POState.DRAFT, POState.PENDING_APPROVAL, POState.APPROVED, POState.SENT)
CANCELLABLE = EDITABLE
RECEIVABLE = (POState.APPROVED, POState.SENT, POState.PARTIALLY_RECEIVED)
ON_ORDER = (POState.APPROVED, POState.SENT, POState.PARTIALLY_RECEIVED)
OPEN = (*EDITABLE, POState.PARTIALLY_RECEIVED)
MAX_LINES = 500
EMAIL_TOPIC = "purchasing.email_po"
# Per socket operation with the mail server: the worker holds the PO's row lock while it
# talks to it, so a server that stops answering must not hold it for long.
SMTP_TIMEOUT_SECONDS = 30


class PurchasingError(ValidationError):
    """Input or state refuses this. Carries a machine-readable code."""


class PurchasingConflict(PurchasingError):
    """The PO's state refuses this now (a 409 in the API)."""


@dataclass(frozen=True)
class DraftLine:
    sku: SKU
    quantity: int
    unit_cost: Decimal | None = None  # None: the supplier SKU's cost


# --- Helpers ------------------------------------------------------------------------------


def _require(actor: object, permission: str) -> None:
    # None is Keel itself (replenishment drafting, tasks); people and keys are checked.
    if actor is not None and not has_permission(actor, permission):
        raise AccessError("Your role does not allow this.", "permission_denied")
    # People live in their brand's schema: a User loaded in another brand's schema has a
    # pk that may belong to someone else here, so it must be this brand's person.
    if isinstance(actor, User) and not User.objects.filter(pk=actor.pk, email=actor.email).exists():
        raise AccessError("You are not a member of this brand.", "not_a_member")


def _person(actor: object) -> User | None:
    return actor if isinstance(actor, User) else None


def _label(actor: object) -> str:
    if isinstance(actor, User):
        return actor.email[:200]
    return current_actor().label[:200]


def _log(action: str, obj: Any, actor: object, changes: dict | None = None) -> None:
    who = actor_for_user(actor) if isinstance(actor, User) else None
    record(action, obj=obj, changes=changes or {}, actor=who)


def brand_today() -> date:
    brand = approvals.current_brand()
    return timezone.now().astimezone(ZoneInfo(brand.timezone)).date()


def _int(value: object, what: str) -> int:
    if isinstance(value, bool):
        raise PurchasingError(f"{what} must be a whole number.", code="invalid_quantity")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise PurchasingError(f"{what} must be a whole number.", code="invalid_quantity") from None
    if number != value and not isinstance(value, str):
        raise PurchasingError(f"{what} must be a whole number.", code="invalid_quantity")
    return number


def _money(value: object) -> Decimal:
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise PurchasingError("The unit cost is not a number.", code="invalid_cost") from None
    if not amount.is_finite() or amount < 0:
        raise PurchasingError("The unit cost cannot be negative.", code="invalid_cost")
    return amount.quantize(Decimal("0.0001"))


def next_number() -> str:
    """PO-000001, PO-000002 … per brand (the schema); gapless, safe under concurrency: the
    upsert takes the counter row's lock until the creating transaction ends."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {NumberSequence._meta.db_table} (name, last) VALUES (%s, 1) "  # noqa: S608
            "ON CONFLICT (name) DO UPDATE SET last = "
            f"{NumberSequence._meta.db_table}.last + 1 RETURNING last",
            [NUMBER_SERIES],
        )
        (value,) = cursor.fetchone()
    return f"PO-{value:06d}"


def _locked(po: PurchaseOrder | int) -> PurchaseOrder:
    """Subject lock first (the approvals convention), then the PO row."""
    pk = po.pk if isinstance(po, PurchaseOrder) else int(po)
    approvals.lock_subject(PURCHASE_ORDER, pk)
    return (
        PurchaseOrder.objects.select_for_update(of=("self",))
        .select_related("supplier", "warehouse")
        .get(pk=pk)
    )


def po_total(po: PurchaseOrder) -> Decimal:
    return sum(
        (
            q * c
            for q, c in PurchaseOrderLine.objects.filter(purchase_order=po).values_list(
                "quantity", "unit_cost"
            )
        ),
        Decimal("0"),
    )


def approval_amount(po: PurchaseOrder) -> Decimal | None:
    """The PO total in the brand's currency; None when the PO is in another currency
    (Keel does not convert, and an unknown amount is never assumed small)."""
    if po.currency.upper() != approvals.current_brand().currency.upper():
        return None
    return po_total(po)


# --- Suppliers ----------------------------------------------------------------------------

SUPPLIER_FIELDS = [
    "code",
    "name",
    "contact_name",
    "email",
    "phone",
    "address",
    "currency",
    "payment_terms",
    "quoted_lead_time_days",
    "is_active",
    "notes",
]
SUPPLIER_SKU_FIELDS = [
    "supplier_code",
    "unit_cost",
    "currency",
    "moq",
    "case_pack",
    "lead_time_days",
    "is_preferred",
]


def _clean_supplier(supplier: Supplier, exclude_pk: int | None) -> None:
    supplier.code = (supplier.code or "").strip()
    supplier.currency = (supplier.currency or "").strip().upper()
    supplier.full_clean(validate_unique=False, validate_constraints=False)
    if len(supplier.currency) != 3 or not supplier.currency.isalpha():
        raise PurchasingError(
            {"currency": PurchasingError("Use a 3-letter ISO 4217 code.", code="invalid")}
        )
    taken = Supplier.objects.filter(code__iexact=supplier.code)
    if exclude_pk:
        taken = taken.exclude(pk=exclude_pk)
    if taken.exists():
        raise PurchasingError(
            {"code": PurchasingError("Another supplier has this code.", code="duplicate_code")}
        )


def create_supplier(*, actor: object, **fields: Any) -> Supplier:
    _require(actor, "suppliers.edit")
    unknown = set(fields) - set(SUPPLIER_FIELDS)
    if unknown:
        raise PurchasingError(f"Unknown fields: {', '.join(sorted(unknown))}", code="invalid")
    supplier = Supplier(**fields)
    _clean_supplier(supplier, None)
    with transaction.atomic():
        supplier.save()
        _log(
            "supplier.created",
            supplier,
            actor,
            {f: str(getattr(supplier, f)) for f in ("code", "name", "currency")},
        )
    return supplier


def update_supplier(supplier: Supplier, *, actor: object, **fields: Any) -> Supplier:
    _require(actor, "suppliers.edit")
    unknown = set(fields) - set(SUPPLIER_FIELDS)
    if unknown:
        raise PurchasingError(f"Unknown fields: {', '.join(sorted(unknown))}", code="invalid")
    with transaction.atomic():
        supplier = Supplier.objects.select_for_update().get(pk=supplier.pk)
        before = {f: getattr(supplier, f) for f in SUPPLIER_FIELDS}
        for name, value in fields.items():
            setattr(supplier, name, value)
        _clean_supplier(supplier, supplier.pk)
        changes = {
            f: [str(before[f]), str(getattr(supplier, f))]
            for f in SUPPLIER_FIELDS
            if before[f] != getattr(supplier, f)
        }
        if changes:
            supplier.save()
            _log("supplier.updated", supplier, actor, changes)
    return supplier


def delete_supplier(supplier: Supplier, *, actor: object) -> None:
    """Delete a supplier no purchase order names (else deactivate it)."""
    _require(actor, "suppliers.edit")
    with transaction.atomic():
        if PurchaseOrder.objects.filter(supplier=supplier).exists():
            raise PurchasingConflict(
                "Purchase orders name this supplier: deactivate it instead.", code="in_use"
            )
        _log("supplier.deleted", None, actor, {"code": supplier.code, "name": supplier.name})
        supplier.delete()


def save_supplier_sku(*, supplier: Supplier, sku: SKU, actor: object, **fields: Any) -> SupplierSKU:
    """Create or update the (supplier, SKU) row. Marking it preferred un-prefers the SKU's
    other supplier in the same transaction (one preferred supplier per SKU)."""
    _require(actor, "suppliers.edit")
    unknown = set(fields) - set(SUPPLIER_SKU_FIELDS)
    if unknown:
        raise PurchasingError(f"Unknown fields: {', '.join(sorted(unknown))}", code="invalid")
    if sku.is_bundle:
        raise PurchasingError(
            {"sku": PurchasingError("Bundles are not bought; buy their components.", "bundle")}
        )
    errors: dict[str, PurchasingError] = {}
    for name in ("moq", "case_pack"):
        if name in fields:
            try:
                fields[name] = _int(fields[name], name)
            except PurchasingError as exc:
                errors[name] = exc
                continue
            if fields[name] < 1:
                errors[name] = PurchasingError("At least 1.", code="invalid")
    if fields.get("lead_time_days") in ("", None):
        fields["lead_time_days"] = None
    else:
        try:
            fields["lead_time_days"] = _int(fields["lead_time_days"], "Lead time")
            if fields["lead_time_days"] < 0:
                raise PurchasingError("Cannot be negative.", code="invalid")
        except PurchasingError as exc:
            errors["lead_time_days"] = exc
    if "unit_cost" in fields:
        try:
            fields["unit_cost"] = _money(fields["unit_cost"])
        except PurchasingError as exc:
            errors["unit_cost"] = exc
    fields["currency"] = (fields.get("currency") or supplier.currency).strip().upper()
    if len(fields["currency"]) != 3:
        errors["currency"] = PurchasingError("Use a 3-letter ISO 4217 code.", code="invalid")
    if errors:
        raise PurchasingError(errors)
    with transaction.atomic():
        row = SupplierSKU.objects.select_for_update().filter(supplier=supplier, sku=sku).first()
        created = row is None
        if created:
            if "unit_cost" not in fields:
                raise PurchasingError(
                    {"unit_cost": PurchasingError("Give the unit cost.", code="required")}
                )
            row = SupplierSKU(supplier=supplier, sku=sku)
        before = {f: getattr(row, f, None) for f in SUPPLIER_SKU_FIELDS}
        for name, value in fields.items():
            setattr(row, name, value)
        if row.is_preferred:
            others = SupplierSKU.objects.filter(sku=sku, is_preferred=True)
            if row.pk:
                others = others.exclude(pk=row.pk)
            others.update(is_preferred=False)
        try:
            with transaction.atomic():
                row.save()
        except IntegrityError as exc:
            raise PurchasingConflict(
                "Another change to this SKU's suppliers happened at the same time; try again.",
                code="conflict",
            ) from exc
        changes = {
            f: [str(before[f]), str(getattr(row, f))]
            for f in SUPPLIER_SKU_FIELDS
            if before[f] != getattr(row, f)
        }
        _log(
            "supplier_sku.created" if created else "supplier_sku.updated",
            supplier,
            actor,
            {"sku": sku.code, **changes},
        )
    return row


def delete_supplier_sku(row: SupplierSKU, *, actor: object) -> None:
    _require(actor, "suppliers.edit")
    with transaction.atomic():
        _log("supplier_sku.deleted", row.supplier, actor, {"sku": row.sku.code})
        row.delete()


# --- Drafting and editing -------------------------------------------------------------------


def _supplier_skus(supplier: Supplier, sku_ids: Iterable[int]) -> dict[int, SupplierSKU]:
    return {
        s.sku_id: s for s in SupplierSKU.objects.filter(supplier=supplier, sku_id__in=list(sku_ids))
    }


def _clean_lines(
    supplier: Supplier, currency: str, lines: Sequence[DraftLine]
) -> list[tuple[SKU, int, Decimal]]:
    if not lines:
        raise PurchasingError({"lines": PurchasingError("Add at least one line.", code="required")})
    if len(lines) > MAX_LINES:
        raise PurchasingError(f"At most {MAX_LINES} lines.", code="too_many_lines")
    costs = _supplier_skus(supplier, [line.sku.pk for line in lines])
    seen: set[int] = set()
    cleaned = []
    for line in lines:
        sku = line.sku
        if sku.pk in seen:
            raise PurchasingError(
                f"{sku.code} is on the order twice; use one line per SKU.", code="duplicate_sku"
            )
        seen.add(sku.pk)
        if sku.is_bundle:
            raise PurchasingError(
                f"{sku.code} is a bundle: order its components instead.", code="bundle"
            )
        quantity = _int(line.quantity, f"The quantity of {sku.code}")
        if quantity <= 0:
            raise PurchasingError(
                f"The quantity of {sku.code} must be above zero.", code="invalid_quantity"
            )
        if line.unit_cost is not None:
            cost = _money(line.unit_cost)
        else:
            known = costs.get(sku.pk)
            if known is None:
                raise PurchasingError(
                    f"{supplier.code} has no cost for {sku.code}: add {sku.code} to the "
                    "supplier's SKUs, or give a unit cost.",
                    code="unit_cost_required",
                )
            if known.currency.upper() != currency.upper():
                raise PurchasingError(
                    f"{supplier.code}'s cost for {sku.code} is in {known.currency}, the order "
                    f"in {currency}: give a unit cost.",
                    code="unit_cost_required",
                )
            cost = known.unit_cost
        cleaned.append((sku, quantity, cost))
    return cleaned


def warnings_for(po: PurchaseOrder) -> list[str]:
    """What the buyer should look at (not errors): MOQ, case packs, hand-entered costs."""
    lines = list(po.lines.select_related("sku"))
    known = _supplier_skus(po.supplier, [line.sku_id for line in lines])
    out = []
    for line in lines:
        row = known.get(line.sku_id)
        if row is None:
            out.append(f"{line.sku.code}: {po.supplier.code} has no price list entry for it.")
            continue
        if line.quantity < row.moq:
            out.append(
                f"{line.sku.code}: {line.quantity} is below the supplier's minimum order "
                f"of {row.moq}."
            )
        if row.case_pack > 1 and line.quantity % row.case_pack:
            out.append(
                f"{line.sku.code}: {line.quantity} is not a whole number of cases of "
                f"{row.case_pack}."
            )
    return out


def _expected_on(supplier: Supplier, sku_ids: Iterable[int]) -> date:
    rows = _supplier_skus(supplier, sku_ids)
    days = [
        row.lead_time_days if row.lead_time_days is not None else supplier.quoted_lead_time_days
        for row in rows.values()
    ] or [supplier.quoted_lead_time_days]
    return brand_today() + timedelta(days=max(days))


def create_draft(
    *,
    supplier: Supplier,
    warehouse: Warehouse,
    lines: Sequence[DraftLine],
    actor: object,
    source: str = "manual",
    note: str = "",
    expected_on: date | None = None,
) -> PurchaseOrder:
    """A draft PO in the supplier's currency. MOQ and case-pack misses are warnings
    (`warnings_for`), not errors: the buyer may have agreed otherwise."""
    _require(actor, "purchasing.draft")
    if not supplier.is_active:
        raise PurchasingError(f"{supplier.code} is inactive.", code="supplier_inactive")
    if not warehouse.is_active:
        raise PurchasingError(f"{warehouse.code} is inactive.", code="warehouse_inactive")
    if source not in POSource.values:
        raise PurchasingError(f"Unknown source {source!r}.", code="invalid")
    cleaned = _clean_lines(supplier, supplier.currency, lines)
    with transaction.atomic():
        po = PurchaseOrder.objects.create(
            number=next_number(),
            supplier=supplier,
            warehouse=warehouse,
            currency=supplier.currency,
            expected_on=expected_on or _expected_on(supplier, [s.pk for s, _, _ in cleaned]),
            source=source,
            note=note or "",
            created_by=_person(actor),
            created_by_label=_label(actor),
        )
        PurchaseOrderLine.objects.bulk_create(
            PurchaseOrderLine(purchase_order=po, sku=sku, quantity=q, unit_cost=c)
            for sku, q, c in cleaned
        )
        _log(
            "purchase_order.created",
            po,
            actor,
            {
                "supplier": supplier.code,
                "warehouse": warehouse.code,
                "source": source,
                "lines": [[s.code, q, str(c)] for s, q, c in cleaned[:50]],
                "total": f"{po_total(po):.2f}",
                "currency": po.currency,
            },
        )
    return po


def update_lines(po: PurchaseOrder, *, lines: Sequence[DraftLine], actor: object) -> PurchaseOrder:
    """Replace the PO's lines (draft, pending approval, approved, or sent with nothing
    received). Behind approval, approvals decides whether the edit stays covered."""
    _require(actor, "purchasing.draft")
    with transaction.atomic():
        po = _locked(po)
        if po.state not in EDITABLE or po.lines.filter(received_quantity__gt=0).exists():
            raise PurchasingConflict(
                f"{po.number} is {po.get_state_display().lower()}; its lines cannot change.",
                code="not_editable",
            )
        cleaned = _clean_lines(po.supplier, po.currency, lines)
        before_lines = [
            [code, q, str(c)]
            for code, q, c in po.lines.values_list("sku__code", "quantity", "unit_cost")
        ]
        before_total = po_total(po)
        existing = {line.sku_id: line for line in po.lines.all()}
        keep = set()
        for sku, quantity, cost in cleaned:
            line = existing.get(sku.pk)
            if line is None:
                PurchaseOrderLine.objects.create(
                    purchase_order=po, sku=sku, quantity=quantity, unit_cost=cost
                )
            else:
                keep.add(line.pk)
                if (line.quantity, line.unit_cost) != (quantity, cost):
                    line.quantity, line.unit_cost = quantity, cost
                    line.save(update_fields=["quantity", "unit_cost"])
        po.lines.exclude(sku_id__in=[s.pk for s, _, _ in cleaned]).delete()
        po.version += 1
        po.save(update_fields=["version", "updated_at"])
        after_total = po_total(po)
        _log(
            "purchase_order.lines_changed",
            po,
            actor,
            {
                "lines": [before_lines, [[s.code, q, str(c)] for s, q, c in cleaned[:50]]],
                "total": [str(before_total), str(after_total)],
                "version": [po.version - 1, po.version],
            },
        )
        if po.state == POState.DRAFT:
            return po
        was_sent = po.state == POState.SENT
        key_before = po.continuation_key
        outcome = approvals.subject_changed(
            PURCHASE_ORDER, po.pk, approval_amount(po), requested_by=_person(actor)
        )
        po.refresh_from_db()
        if outcome.state == RequestState.PENDING:
            if po.state != POState.PENDING_APPROVAL:
                _move(po, POState.PENDING_APPROVAL, actor, reason="amendment needs approval")
        elif po.continuation_key == key_before:
            # Still covered (or no policy applies any more): nothing re-ran. A PO the
            # supplier already has goes out again as an amendment.
            if outcome.state == approvals.NOT_REQUIRED and po.state == POState.PENDING_APPROVAL:
                _approve_and_send(po, key="", actor=actor)
            elif was_sent:
                _send(po, key=po.continuation_key, actor=actor)
    return po


def _move(po: PurchaseOrder, state: str, actor: object, *, reason: str = "", **fields) -> None:
    before = po.state
    po.state = state
    for name, value in fields.items():
        setattr(po, name, value)
    po.save()
    changes = {"state": [before, state]}
    if reason:
        changes["reason"] = reason
    _log(f"purchase_order.{state}", po, actor, changes)
    _publish_status(po, before, reason=reason)


def _publish_status(po: PurchaseOrder, before: str, *, reason: str = "") -> None:
    """`purchase_order.status_changed` for partners, in the transaction that moved it."""
    if before == po.state:
        return
    publish_domain_event(
        "purchase_order.status_changed",
        po.pk,
        lambda: {
            "id": po.pk,
            "number": po.number,
            "supplier": po.supplier.code,
            "warehouse": po.warehouse.code,
            "status": po.state,
            "previous_status": before,
            "reason": reason,
            "version": po.version,
            "currency": po.currency,
            "total": f"{po_total(po):.2f}",
            "expected_on": po.expected_on.isoformat(),
        },
    )


# --- Submitting, approval, sending -----------------------------------------------------------


def submit(po: PurchaseOrder, *, actor: object) -> PurchaseOrder:
    """draft → pending_approval, or straight on to approved → sent when no approval is
    needed or the policy auto-approves it."""
    _require(actor, "purchasing.draft")
    with transaction.atomic():
        po = _locked(po)
        if po.state != POState.DRAFT:
            raise PurchasingConflict(
                f"{po.number} is {po.get_state_display().lower()}, not a draft.",
                code="not_draft",
            )
        if not po.lines.exists():
            raise PurchasingError("Add at least one line before submitting.", code="no_lines")
        if not po.supplier.is_active:
            raise PurchasingError(f"{po.supplier.code} is inactive.", code="supplier_inactive")
        _move(
            po,
            POState.PENDING_APPROVAL,
            actor,
            submitted_at=timezone.now(),
            rejection_reason="",
        )
        outcome = approvals.open_request(PURCHASE_ORDER, po.pk, requested_by=_person(actor))
        if outcome.state == approvals.NOT_REQUIRED:
            _approve_and_send(po, key="", actor=actor)
        po.refresh_from_db()
    return po


def _approve_and_send(po: PurchaseOrder, *, key: str, actor: object) -> None:
    _move(po, POState.APPROVED, actor, approved_at=timezone.now())
    _send(po, key=key, actor=actor)


def _send(po: PurchaseOrder, *, key: str, actor: object) -> None:
    """Mark the PO sent and queue its email (with the PDF) to the supplier, in this
    transaction."""
    amendment = po.times_sent > 0
    before = po.state
    po.state = POState.SENT
    # The first send places the order: lead times count from it, amendments or not.
    po.sent_at = po.sent_at or timezone.now()
    po.times_sent += 1
    po.continuation_key = key
    po.save()
    _log(
        "purchase_order.sent",
        po,
        actor,
        {
            "state": [before, POState.SENT],
            "to": po.supplier.email,
            "amendment": amendment,
            "version": po.version,
            "continuation_key": key,
        },
    )
    _publish_status(po, before)
    _queue_email(po, EmailPurpose.AMENDMENT if amendment else EmailPurpose.ORDER, actor)


def resend(po: PurchaseOrder, *, actor: object) -> PurchaseOrder:
    """Email a sent PO to the supplier again (a lost or failed email, a new address)."""
    _require(actor, "purchasing.draft")
    with transaction.atomic():
        po = _locked(po)
        if po.state not in (POState.SENT, POState.PARTIALLY_RECEIVED):
            raise PurchasingConflict(
                f"{po.number} is {po.get_state_display().lower()}; only sent orders are "
                "emailed again.",
                code="not_sent",
            )
        if not po.supplier.email:
            raise PurchasingError(
                f"{po.supplier.code} has no email address: add one first.", code="no_email"
            )
        email = _queue_email(po, EmailPurpose.AGAIN, actor)
        _log("purchase_order.emailed_again", po, actor, {"to": po.supplier.email, "key": email.key})
    return po


# --- Email to the supplier (through the outbox) --------------------------------------------


def _queue_email(po: PurchaseOrder, purpose: str, actor: object) -> PurchaseOrderEmail:
    """Write the email's row and its outbox message in the caller's transaction, which
    holds the PO's row lock.

    The key names the PO, version and purpose plus a fresh token: every send and every
    *Email again* is its own email, never taken for a duplicate of an earlier one, while a
    redelivered task carries the same message (and key) and is consumed once. An email
    still queued is replaced: the worker renders the PO as it is when it sends, so both
    would carry the same PDF.
    """
    PurchaseOrderEmail.objects.filter(purchase_order=po, status=EmailStatus.QUEUED).update(
        status=EmailStatus.SKIPPED, note="Replaced by a later email of this order."
    )
    email = PurchaseOrderEmail(
        purchase_order=po,
        key=f"purchase_order:{po.pk}:v{po.version}:{purpose}:{uuid.uuid4().hex}",
        purpose=purpose,
        version=po.version,
        requested_by_label=_label(actor),
    )
    if not po.supplier.email:
        # Recorded, so the PO page says it was not emailed; nothing for a worker to do.
        email.status = EmailStatus.SKIPPED
        email.note = "The supplier has no email address."
        email.save()
        return email
    email.save()
    enqueue(
        EMAIL_TOPIC,
        {"purchase_order": po.pk, "email": email.pk, "version": po.version, "purpose": purpose},
        key=email.key,
    )
    return email


def _unsendable(po: PurchaseOrder, email: PurchaseOrderEmail) -> str:
    """Why this queued email must not go out now ("" when it may)."""
    if po.state == POState.CANCELLED:
        return "The order was cancelled before the email went out."
    if po.version != email.version or po.state in (POState.DRAFT, POState.PENDING_APPROVAL):
        # The worker renders the PO as it is now: that is not the version this email is
        # for. The newer version is emailed when it is sent.
        return (
            f"Version {email.version} changed (now version {po.version}, "
            f"{po.get_state_display().lower()}) before the email went out."
        )
    if not po.supplier.email:
        return "The supplier has no email address."
    return ""


def _po_email(po: PurchaseOrder):
    """The email (PDF attached) for the PO as it is now."""
    from django.core.mail import EmailMessage

    from purchasing.documents import po_pdf

    brand = approvals.current_brand()
    amendment = po.times_sent > 1
    title = f"{'Amended purchase order' if amendment else 'Purchase order'} {po.number}"
    body = (
        f"Hello {po.supplier.contact_name or po.supplier.name},\n\n"
        f"Please find attached {title.lower()} from {brand.name}"
        f" (version {po.version}), for delivery to {po.warehouse.name} by "
        f"{po.expected_on:%d %b %Y}.\n"
        + ("This amendment replaces the previous version.\n" if amendment else "")
        + f"\nTotal: {po_total(po):,.2f} {po.currency}\n\nThank you,\n{brand.name}\n"
    )
    message = EmailMessage(subject=f"[{brand.name}] {title}", body=body, to=[po.supplier.email])
    message.attach(f"{po.number}.pdf", po_pdf(po), "application/pdf")
    return message


def _smtp_send(message) -> None:
    """Hand the message to the configured email backend; raise when it was not accepted."""
    from django.core.mail import get_connection

    mailer = get_connection(
        timeout=getattr(settings, "EMAIL_TIMEOUT", None) or SMTP_TIMEOUT_SECONDS
    )
    mailer.open()
    try:
        if mailer.send_messages([message]) != 1:
            raise smtplib.SMTPException("The email backend accepted no message.")
    finally:
        # Opened here so that send_messages does not close it: once the server accepted
        # the message, a failing QUIT must not count as a failed send (and email again).
        with suppress(Exception):
            mailer.close()


def deliver_email(key: str, *, attempt: int = 1) -> str:
    """EMAIL_TOPIC handler: send one queued email of a PO. Returns what happened ("sent",
    "skipped", or the row's status when an earlier delivery already finished it).

    Runs inside the outbox's consuming transaction (outbox.services.consume): the row
    writes and the activity entry below commit together with "message done", and a
    failure (any exception from the mail backend) rolls them back for the outbox to retry
    with backoff and eventually park. A second delivery of the same message waits for the
    first's lock and finds it done (or finds this row sent) and sends nothing.

    Everything that can fail in the database (locks, rendering, the writes) happens before
    the mail server is asked; the send is the last step, and only the commit follows it.
    Duplicate window: SMTP has no idempotency key, so if the server accepts the message
    and then the commit fails (the worker is killed, the database connection drops), the
    message stays unconsumed and is delivered again (the broker redelivers the
    unacknowledged task, or the outbox re-publishes it after
    KEEL_OUTBOX_REPUBLISH_AFTER_SECONDS): the supplier gets the same email twice. The same
    happens if the server accepts the message but its reply is lost (a timeout after the
    DATA phase): that attempt counts as failed and is retried. Both are rare; sending at
    most once would instead risk never sending, which is worse for a purchase order.
    """
    po_id = (
        PurchaseOrderEmail.objects.filter(key=key)
        .values_list("purchase_order_id", flat=True)
        .first()
    )
    if po_id is None:
        return "missing"
    # The PO row before the email row, the order _queue_email's callers use (PO lock, then
    # replacing queued emails): a worker and a person's *Email again* never deadlock.
    po = (
        PurchaseOrder.objects.select_for_update(of=("self",))
        .select_related("supplier", "warehouse")
        .get(pk=po_id)
    )
    email = PurchaseOrderEmail.objects.select_for_update().get(key=key)
    if email.status != EmailStatus.QUEUED:
        return email.status
    email.attempts = attempt
    reason = _unsendable(po, email)
    if reason:
        email.status, email.note = EmailStatus.SKIPPED, reason
        email.save(update_fields=["status", "note", "attempts"])
        _log(
            "purchase_order.email_skipped",
            po,
            None,
            {"key": key, "version": email.version, "reason": reason},
        )
        return "skipped"
    message = _po_email(po)
    email.status, email.to, email.sent_at = EmailStatus.SENT, po.supplier.email, timezone.now()
    email.save(update_fields=["status", "to", "sent_at", "attempts"])
    _log(
        "purchase_order.emailed",
        po,
        None,
        {
            "to": email.to,
            "version": email.version,
            "purpose": email.purpose,
            "attempt": attempt,
            "key": key,
        },
    )
    _smtp_send(message)
    return "sent"


@dataclass(frozen=True)
class EmailLogEntry:
    """One email of a PO as the PO page shows it."""

    purpose: str
    version: int
    # sent | skipped | waiting | retrying | failed
    state: str
    to: str
    requested_by: str
    created_at: datetime
    sent_at: datetime | None
    attempts: int
    error: str
    next_attempt_at: datetime | None
    note: str


def email_log(po: PurchaseOrder) -> list[EmailLogEntry]:
    """The PO's emails, newest first. A queued email's attempts, last error and whether it
    was parked come from its outbox message (a failed attempt's own writes roll back)."""
    emails = list(po.emails.all())
    messages = {
        m.key: m
        for m in OutboxMessage.objects.filter(
            key__in=[e.key for e in emails if e.status == EmailStatus.QUEUED]
        )
    }
    out = []
    for email in emails:
        message = messages.get(email.key)
        attempts, error, next_at = email.attempts, "", None
        if email.status != EmailStatus.QUEUED:
            state = email.status
        elif message is None or message.attempts == 0:
            state = "waiting"
        else:
            attempts, error = message.attempts, message.last_error
            if message.status == MessageStatus.DEAD:
                state = "failed"
            else:
                state, next_at = "retrying", message.next_attempt_at
        out.append(
            EmailLogEntry(
                purpose=email.get_purpose_display(),
                version=email.version,
                state=state,
                to=email.to,
                requested_by=email.requested_by_label,
                created_at=email.created_at,
                sent_at=email.sent_at,
                attempts=attempts,
                error=error,
                next_attempt_at=next_at,
                note=email.note,
            )
        )
    return out


def send_approved(request: ApprovalRequest, key: str) -> None:
    """Approval continuation: approve and send the PO, exactly once per request."""
    po = (
        PurchaseOrder.objects.select_for_update(of=("self",))
        .select_related("supplier")
        .get(pk=int(request.subject_id))
    )
    if po.continuation_key == key:
        return  # this request's continuation already sent it
    if po.state not in (POState.PENDING_APPROVAL, POState.APPROVED, POState.SENT):
        raise PurchasingConflict(
            f"{po.number} is {po.get_state_display().lower()}; it cannot be sent.",
            code="po_closed",
        )
    if po.version != request.subject_version:
        raise PurchasingConflict(
            f"{po.number} changed after this approval request was opened.", code="po_changed"
        )
    actor = request.decided_by
    _approve_and_send(po, key=key, actor=actor)


def return_to_draft(request: ApprovalRequest) -> None:
    """Rejected, expired or cancelled request: the PO goes back to draft with the reason."""
    po = PurchaseOrder.objects.select_for_update(of=("self",)).get(pk=int(request.subject_id))
    if po.state != POState.PENDING_APPROVAL:
        return
    _move(
        po,
        POState.DRAFT,
        request.decided_by,
        reason=request.resolution,
        rejection_reason=request.resolution or f"Approval {request.get_state_display().lower()}.",
    )


def current_request(po: PurchaseOrder) -> ApprovalRequest | None:
    """The newest approval request of this PO (pending or decided), if any."""
    return ApprovalRequest.objects.for_subject(PURCHASE_ORDER, str(po.pk)).order_by("-id").first()


# --- Cancelling, rescheduling, closing -----------------------------------------------------


def cancel(po: PurchaseOrder, *, actor: object, reason: str) -> PurchaseOrder:
    """Cancel a PO before anything was received; a pending approval request is withdrawn
    (by its requester or someone who manages policies, as approvals allows)."""
    _require(actor, "purchasing.draft")
    reason = (reason or "").strip()
    if not reason:
        raise PurchasingError(
            {"reason": PurchasingError("Say why, for the supplier and the team.", "required")}
        )
    with transaction.atomic():
        po = _locked(po)
        received = po.lines.filter(received_quantity__gt=0).exists()
        if po.state not in CANCELLABLE or received:
            raise PurchasingConflict(
                f"{po.number} is {po.get_state_display().lower()}"
                + (" and goods have arrived" if received else "")
                + "; it cannot be cancelled.",
                code="not_cancellable",
            )
        pending = ApprovalRequest.objects.for_subject(PURCHASE_ORDER, str(po.pk)).pending().first()
        if pending is not None:
            approvals.cancel(pending, actor=actor, reason=f"Purchase order cancelled: {reason}")
            po.refresh_from_db()
        _move(
            po,
            POState.CANCELLED,
            actor,
            reason=reason,
            cancel_reason=reason,
            closed_at=timezone.now(),
        )
    return po


def reschedule(
    po: PurchaseOrder, *, expected_on: date, actor: object, reason: str
) -> PurchaseOrder:
    """The supplier promised another arrival date."""
    _require(actor, "purchasing.draft")
    reason = (reason or "").strip()
    if not reason:
        raise PurchasingError({"reason": PurchasingError("Say why the date moved.", "required")})
    if not isinstance(expected_on, date):
        raise PurchasingError({"expected_on": PurchasingError("Give a date.", "invalid")})
    with transaction.atomic():
        po = _locked(po)
        if po.state not in OPEN:
            raise PurchasingConflict(
                f"{po.number} is {po.get_state_display().lower()}; nothing is expected.",
                code="not_open",
            )
        before = po.expected_on
        if before == expected_on:
            return po
        po.expected_on = expected_on
        po.save(update_fields=["expected_on", "updated_at"])
        _log(
            "purchase_order.rescheduled",
            po,
            actor,
            {"expected_on": [str(before), str(expected_on)], "reason": reason},
        )
    return po


def close(po: PurchaseOrder, *, actor: object, reason: str = "") -> PurchaseOrder:
    """Close a partially received PO short: the rest will not come."""
    _require(actor, "purchasing.receive")
    with transaction.atomic():
        po = _locked(po)
        if po.state != POState.PARTIALLY_RECEIVED:
            raise PurchasingConflict(
                f"{po.number} is {po.get_state_display().lower()}; only a partially received "
                "order closes short (cancel one that has received nothing).",
                code="not_closable",
            )
        short = [line for line in po.lines.select_related("sku") if not line.is_complete]
        for line in short:
            line.closed_short = True
            line.save(update_fields=["closed_short"])
        _move(
            po,
            POState.CLOSED,
            actor,
            reason=(reason or "").strip() or "closed short",
            closed_at=timezone.now(),
        )
    return po


# --- Receiving ------------------------------------------------------------------------------

UNDER_REASONS = {ReceiptReason.SHORT_SHIPPED, ReceiptReason.BACKORDERED, ReceiptReason.DAMAGED}
OVER_REASONS = {ReceiptReason.OVER_SHIPPED}
RECEIPT_REFERENCE = "purchase_order_receipt"


def receive(
    po: PurchaseOrder,
    *,
    quantities: Mapping[int, int],
    actor: object,
    reasons: Mapping[int, str] | None = None,
    note: str = "",
    operation_key: str | None = None,
) -> Receipt:
    """Post what arrived (line id → units now) to stock at the PO's warehouse.

    A line whose total received ends up above or below what was ordered needs a reason:
    over_shipped above; backordered (more to come), short_shipped (the rest will not
    come: the line closes short) or damaged (posted into damaged stock) below.
    `operation_key` makes a retry return the first receipt instead of posting again.
    """
    _require(actor, "purchasing.receive")
    try:
        quantities = {int(k): v for k, v in quantities.items()}
        reasons = {int(k): (v or "") for k, v in (reasons or {}).items()}
    except (TypeError, ValueError):
        raise PurchasingError("Lines are named by their id.", code="unknown_line") from None
    with transaction.atomic():
        po = _locked(po)
        if operation_key:
            done = Receipt.objects.filter(operation_key=operation_key).first()
            if done is not None:
                if done.purchase_order_id != po.pk:
                    raise PurchasingError(
                        "This operation key was used for another purchase order.",
                        code="operation_key_reused",
                    )
                return done
        if po.state not in RECEIVABLE:
            raise PurchasingConflict(
                f"{po.number} is {po.get_state_display().lower()}; it cannot be received.",
                code="not_receivable",
            )
        lines = {line.pk: line for line in po.lines.select_related("sku")}
        plan: list[tuple[PurchaseOrderLine, int, str]] = []
        errors: dict[str, PurchasingError] = {}
        for line_id in sorted(set(quantities) | set(reasons)):
            line = lines.get(line_id)
            if line is None:
                raise PurchasingError(f"Line {line_id} is not on {po.number}.", code="unknown_line")
            quantity = _int(quantities.get(line_id) or 0, "Quantity")
            reason = reasons.get(line_id, "")
            field = f"line_{line_id}"
            if reason not in ReceiptReason.values:
                errors[field] = PurchasingError(f"Unknown reason {reason!r}.", "invalid_reason")
                continue
            if quantity < 0:
                errors[field] = PurchasingError("Cannot be negative.", "invalid_quantity")
                continue
            if quantity == 0 and reason != ReceiptReason.SHORT_SHIPPED:
                continue
            if line.closed_short:
                errors[field] = PurchasingError(
                    f"{line.sku.code} was closed short.", code="line_closed"
                )
                continue
            total = line.received_quantity + quantity
            if total > line.quantity and reason not in OVER_REASONS:
                errors[field] = PurchasingError(
                    f"{line.sku.code}: {total} received of {line.quantity} ordered; say why "
                    "(over-shipped).",
                    code="reason_required",
                )
                continue
            if total < line.quantity and reason not in UNDER_REASONS:
                errors[field] = PurchasingError(
                    f"{line.sku.code}: {total} received of {line.quantity} ordered; say why "
                    "(backordered, short-shipped or damaged).",
                    code="reason_required",
                )
                continue
            if total <= line.quantity and reason in OVER_REASONS:
                errors[field] = PurchasingError(
                    f"{line.sku.code} is not over-shipped.", code="invalid_reason"
                )
                continue
            plan.append((line, quantity, reason))
        if errors:
            raise PurchasingError(errors)
        if not plan:
            raise PurchasingError("Enter what arrived.", code="nothing_received")
        person = _person(actor)
        receipt = Receipt.objects.create(
            purchase_order=po,
            received_at=timezone.now(),
            received_by=person,
            received_by_label=_label(actor),
            note=(note or "").strip(),
            operation_key=operation_key or None,
        )
        reference = stock.Reference(RECEIPT_REFERENCE, str(receipt.pk))
        for line, quantity, reason in sorted(plan, key=lambda p: p[0].pk):
            ReceiptLine.objects.create(receipt=receipt, line=line, quantity=quantity, reason=reason)
            if quantity:
                stock.receive(
                    sku=line.sku,
                    warehouse=po.warehouse,
                    quantity=quantity,
                    status=StockStatus.DAMAGED
                    if reason == ReceiptReason.DAMAGED
                    else StockStatus.SELLABLE,
                    reference=reference,
                    note=f"{po.number} receipt {receipt.pk}",
                )
            line.received_quantity += quantity
            if reason == ReceiptReason.SHORT_SHIPPED:
                line.closed_short = True
            line.save(update_fields=["received_quantity", "closed_short"])
        complete = all(line.is_complete for line in lines.values())
        before = po.state
        po.state = POState.RECEIVED if complete else POState.PARTIALLY_RECEIVED
        if complete:
            po.closed_at = receipt.received_at
        po.save(update_fields=["state", "closed_at", "updated_at"])
        _log(
            "purchase_order.received",
            po,
            actor,
            {
                "state": [before, po.state],
                "receipt": receipt.pk,
                "lines": [[line.sku.code, q, r] for line, q, r in plan],
            },
        )
        _publish_status(po, before)
    return receipt


# --- Reads ----------------------------------------------------------------------------------


def open_quantities(
    sku_ids: Iterable[int] | None = None,
) -> dict[tuple[int, int], list[tuple[date, int]]]:
    """(sku_id, warehouse_id) → [(expected_on, units still to come)], earliest first, for
    POs approved, sent or partially received (drafts and pending ones are not on order)."""
    rows = PurchaseOrderLine.objects.filter(purchase_order__state__in=ON_ORDER, closed_short=False)
    if sku_ids is not None:
        rows = rows.filter(sku_id__in=list(sku_ids))
    out: dict[tuple[int, int], list[tuple[date, int]]] = defaultdict(list)
    for sku_id, wh_id, expected, quantity, received in rows.values_list(
        "sku_id",
        "purchase_order__warehouse_id",
        "purchase_order__expected_on",
        "quantity",
        "received_quantity",
    ):
        if quantity > received:
            out[(sku_id, wh_id)].append((expected, quantity - received))
    return {key: sorted(value) for key, value in out.items()}


def preferred_supplier_skus(sku_ids: Iterable[int]) -> dict[int, SupplierSKU]:
    """sku_id → the SupplierSKU to buy it from: the preferred one of an active supplier, or
    when none is preferred, the only active one (several without a preference: none, a
    person has to choose)."""
    rows = SupplierSKU.objects.filter(
        sku_id__in=list(sku_ids), supplier__is_active=True
    ).select_related("supplier", "sku")
    preferred: dict[int, SupplierSKU] = {}
    candidates: dict[int, list[SupplierSKU]] = defaultdict(list)
    for row in rows:
        if row.is_preferred:
            preferred[row.sku_id] = row
        candidates[row.sku_id].append(row)
    for sku_id, options in candidates.items():
        if sku_id not in preferred and len(options) == 1:
            preferred[sku_id] = options[0]
    return preferred
