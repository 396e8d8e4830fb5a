"""Suppliers, their SKUs (cost, MOQ, case pack, lead time), purchase orders and receipts.

A purchase order's state machine (purchasing.services is the only code that moves it):

    draft → pending_approval → approved → sent → partially_received → received
      ↑            │ rejected / expired / cancelled (back to draft)      │
      └────────────┘                                   close (short) → closed
    draft | pending_approval | approved | sent (nothing received) → cancelled

An upward edit of an approved or sent PO puts it back to pending_approval (an amendment);
once approved again it is re-sent to the supplier.

Every email of a PO to its supplier is a PurchaseOrderEmail row, written with the outbox
message that sends it (purchasing.handlers).
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models.functions import Lower

from catalog.models import SKU
from inventory.models import Warehouse

ZERO = Decimal("0")


class Supplier(models.Model):
    code = models.CharField(max_length=32)
    name = models.CharField(max_length=200)
    contact_name = models.CharField(max_length=200, blank=True)
    email = models.EmailField(blank=True)
    phone = models.CharField(max_length=50, blank=True)
    address = models.TextField(blank=True)
    currency = models.CharField(max_length=3, default="USD")
    payment_terms = models.CharField(max_length=100, blank=True, help_text="e.g. Net 30")
    quoted_lead_time_days = models.PositiveIntegerField(default=14)
    is_active = models.BooleanField(default=True)
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "code"]
        constraints = [
            models.UniqueConstraint(
                Lower("code"),
                name="supplier_code_unique_ci",
                violation_error_message="Another supplier has this code.",
                violation_error_code="duplicate_code",
            )
        ]

    def __str__(self) -> str:
        return f"{self.code} · {self.name}"


class SupplierSKU(models.Model):
    supplier = models.ForeignKey(Supplier, on_delete=models.CASCADE, related_name="skus")
    sku = models.ForeignKey(SKU, on_delete=models.PROTECT, related_name="supplier_skus")
    supplier_code = models.CharField(max_length=64, blank=True)
    unit_cost = models.DecimalField(max_digits=14, decimal_places=4)
    currency = models.CharField(max_length=3)
    moq = models.PositiveIntegerField(default=1)
    case_pack = models.PositiveIntegerField(default=1)
    lead_time_days = models.PositiveIntegerField(null=True, blank=True)
    is_preferred = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["supplier_id", "sku_id"]
        constraints = [
            models.UniqueConstraint(fields=["supplier", "sku"], name="supplier_sku_once"),
            models.UniqueConstraint(
                fields=["sku"],
                condition=models.Q(is_preferred=True),
                name="one_preferred_supplier_per_sku",
            ),
            models.CheckConstraint(condition=models.Q(moq__gte=1), name="supplier_sku_moq_min"),
            models.CheckConstraint(
                condition=models.Q(case_pack__gte=1), name="supplier_sku_case_pack_min"
            ),
            models.CheckConstraint(
                condition=models.Q(unit_cost__gte=0), name="supplier_sku_cost_non_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.supplier_id}:{self.sku_id}"

    @property
    def effective_lead_time_days(self) -> int:
        if self.lead_time_days is not None:
            return self.lead_time_days
        return self.supplier.quoted_lead_time_days


class POState(models.TextChoices):
    DRAFT = "draft", "Draft"
    PENDING_APPROVAL = "pending_approval", "Pending approval"
    APPROVED = "approved", "Approved"
    SENT = "sent", "Sent"
    PARTIALLY_RECEIVED = "partially_received", "Partially received"
    RECEIVED = "received", "Received"
    CLOSED = "closed", "Closed short"
    CANCELLED = "cancelled", "Cancelled"


class POSource(models.TextChoices):
    MANUAL = "manual", "Manual"
    REPLENISHMENT = "replenishment", "Replenishment"


class NumberSequence(models.Model):
    """Gapless per-brand counters (the schema is the brand): one row per series."""

    name = models.CharField(max_length=32, unique=True)
    last = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.name}: {self.last}"


class PurchaseOrder(models.Model):
    number = models.CharField(max_length=20, unique=True)
    supplier = models.ForeignKey(Supplier, on_delete=models.PROTECT, related_name="orders")
    warehouse = models.ForeignKey(Warehouse, on_delete=models.PROTECT, related_name="+")
    state = models.CharField(max_length=20, choices=POState.choices, default=POState.DRAFT)
    currency = models.CharField(max_length=3)
    expected_on = models.DateField()
    source = models.CharField(max_length=16, choices=POSource.choices, default=POSource.MANUAL)
    note = models.TextField(blank=True)
    version = models.PositiveIntegerField(default=1)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_by_label = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    approved_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    rejection_reason = models.TextField(blank=True)
    cancel_reason = models.TextField(blank=True)
    # The approval continuation that last sent this PO ("approval_request:<id>"): a retried
    # continuation with the same key is recognised and does nothing.
    continuation_key = models.CharField(max_length=64, blank=True)
    # Sent to the supplier before (so the next send is an amendment).
    times_sent = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["state", "supplier"])]
        constraints = [
            models.CheckConstraint(condition=models.Q(version__gte=1), name="po_version_min"),
        ]

    def __str__(self) -> str:
        return self.number

    @property
    def total(self) -> Decimal:
        return sum((line.line_total for line in self.lines.all()), ZERO)

    @property
    def is_open_for_receipt(self) -> bool:
        return self.state in (POState.SENT, POState.PARTIALLY_RECEIVED)


class PurchaseOrderLine(models.Model):
    purchase_order = models.ForeignKey(
        PurchaseOrder, on_delete=models.CASCADE, related_name="lines"
    )
    sku = models.ForeignKey(SKU, on_delete=models.PROTECT, related_name="+")
    quantity = models.PositiveIntegerField()
    unit_cost = models.DecimalField(max_digits=14, decimal_places=4)
    received_quantity = models.PositiveIntegerField(default=0)
    # The supplier will not ship the rest (a short-shipped receipt said so).
    closed_short = models.BooleanField(default=False)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["purchase_order", "sku"], name="po_line_sku_once"),
            models.CheckConstraint(condition=models.Q(quantity__gte=1), name="po_line_positive"),
            models.CheckConstraint(
                condition=models.Q(received_quantity__gte=0), name="po_line_received_non_negative"
            ),
            models.CheckConstraint(
                condition=models.Q(unit_cost__gte=0), name="po_line_cost_non_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} × {self.sku_id}"

    @property
    def line_total(self) -> Decimal:
        return self.quantity * self.unit_cost

    @property
    def outstanding(self) -> int:
        if self.closed_short:
            return 0
        return max(self.quantity - self.received_quantity, 0)

    @property
    def is_complete(self) -> bool:
        return self.closed_short or self.received_quantity >= self.quantity


class ReceiptReason(models.TextChoices):
    NONE = "", "—"
    OVER_SHIPPED = "over_shipped", "Over-shipped"
    SHORT_SHIPPED = "short_shipped", "Short-shipped (no more coming)"
    BACKORDERED = "backordered", "Backordered (rest to follow)"
    DAMAGED = "damaged", "Damaged"
    WRONG_ITEM = "wrong_item", "Wrong item"


class Receipt(models.Model):
    purchase_order = models.ForeignKey(
        PurchaseOrder, on_delete=models.PROTECT, related_name="receipts"
    )
    received_at = models.DateTimeField()
    received_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    received_by_label = models.CharField(max_length=200, blank=True)
    note = models.TextField(blank=True)
    # Caller-chosen key: the same receipt posted twice (a retry) is recognised.
    operation_key = models.CharField(max_length=100, null=True, blank=True, unique=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"Receipt #{self.pk} of {self.purchase_order_id}"


class ReceiptLine(models.Model):
    receipt = models.ForeignKey(Receipt, on_delete=models.CASCADE, related_name="lines")
    line = models.ForeignKey(PurchaseOrderLine, on_delete=models.PROTECT, related_name="receipts")
    quantity = models.PositiveIntegerField()
    reason = models.CharField(max_length=16, choices=ReceiptReason.choices, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["receipt", "line"], name="receipt_line_once"),
            models.CheckConstraint(
                condition=models.Q(quantity__gte=0), name="receipt_line_non_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} of line {self.line_id}"


class SupplierDigest(models.Model):
    """One row per brand-local month the supplier digest went out: the claim that makes
    it monthly (a second tick, scheduler or redelivered task finds the row)."""

    month = models.DateField(unique=True, help_text="First day of the month")
    sent_at = models.DateTimeField(auto_now_add=True)
    recipients = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-month"]

    def __str__(self) -> str:
        return f"Supplier digest {self.month:%Y-%m}"


class EmailPurpose(models.TextChoices):
    ORDER = "order", "Order"
    AMENDMENT = "amendment", "Amendment"
    AGAIN = "again", "Emailed again"


class EmailStatus(models.TextChoices):
    # Its outbox message waits for a worker, or for its next attempt after a failure.
    QUEUED = "queued", "Queued"
    SENT = "sent", "Sent"
    # Never sent and never will be; `note` says why (replaced, cancelled, no address).
    SKIPPED = "skipped", "Not sent"


class PurchaseOrderEmail(models.Model):
    """One email of a PO to its supplier, written in the transaction that sent the PO (or
    asked to email it again) together with the outbox message that delivers it (`key`).

    The outbox handler sets status, `to`, `sent_at` and `attempts` in the transaction that
    marks the message consumed. A failed attempt rolls its own writes back, so the attempts
    so far, the last error and whether the outbox parked it are read from the message."""

    purchase_order = models.ForeignKey(
        PurchaseOrder, on_delete=models.CASCADE, related_name="emails"
    )
    key = models.CharField(max_length=200, unique=True)
    purpose = models.CharField(max_length=16, choices=EmailPurpose.choices)
    version = models.PositiveIntegerField()
    status = models.CharField(
        max_length=12, choices=EmailStatus.choices, default=EmailStatus.QUEUED
    )
    # The address it went to (the supplier's address when it was sent).
    to = models.EmailField(blank=True)
    requested_by_label = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    # Deliveries it took, counting the one that sent or skipped it.
    attempts = models.PositiveIntegerField(default=0)
    note = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            # A newer email replaces a queued one (the worker renders the PO as it is
            # now, so two queued emails would be the same email twice).
            models.UniqueConstraint(
                fields=["purchase_order"],
                condition=models.Q(status="queued"),
                name="po_email_one_queued",
            ),
            models.CheckConstraint(
                condition=~models.Q(status="sent") | models.Q(sent_at__isnull=False),
                name="po_email_sent_has_sent_at",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_purpose_display()} email of {self.purchase_order_id} ({self.status})"
