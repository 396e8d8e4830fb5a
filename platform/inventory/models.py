"""Warehouses and the stock ledger.

Stock is an append-only ledger (`StockMovement`) plus one `StockBalance` row per
SKU × warehouse × status, changed together in one transaction under row locks by
inventory.services. Database constraints, not only Python, keep quantities and
reservations non-negative and reservations within sellable stock.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models.functions import Lower

from catalog.models import SKU


class WarehouseKind(models.TextChoices):
    IN_HOUSE = "in_house", "In-house"
    THREE_PL = "3pl", "3PL"
    AMAZON_FBA = "fba", "Amazon FBA"
    RETAIL_STORE = "store", "Retail store"
    DROP_SHIP = "drop_ship", "Drop-ship supplier"


class Capability(models.TextChoices):
    PARCEL = "parcel", "Parcel"
    LTL = "ltl", "LTL / pallet"
    EXPEDITED = "expedited", "Expedited"
    HAZMAT = "hazmat", "Hazmat"


class Warehouse(models.Model):
    code = models.CharField(max_length=32)
    name = models.CharField(max_length=120)
    kind = models.CharField(
        max_length=16, choices=WarehouseKind.choices, default=WarehouseKind.IN_HOUSE
    )
    address_line1 = models.CharField(max_length=200, blank=True)
    address_line2 = models.CharField(max_length=200, blank=True)
    city = models.CharField(max_length=100, blank=True)
    state = models.CharField(max_length=100, blank=True)  # ISO 3166-2 subdivision, e.g. CA
    postal_code = models.CharField(max_length=20, blank=True)
    country = models.CharField(max_length=2, default="US")  # ISO 3166-1 alpha-2
    latitude = models.DecimalField(max_digits=9, decimal_places=6, null=True, blank=True)
    longitude = models.DecimalField(max_digits=9, decimal_places=6, null=True, blank=True)
    timezone = models.CharField(max_length=64, default="UTC")
    cutoff_time = models.TimeField(null=True, blank=True, help_text="Daily order cutoff, local")
    capabilities = ArrayField(
        models.CharField(max_length=16, choices=Capability.choices), default=list, blank=True
    )
    priority = models.PositiveSmallIntegerField(default=100, help_text="Lower ships first")
    safety_buffer = models.PositiveIntegerField(
        default=0, help_text="Units per SKU held back from available-to-promise"
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["priority", "code"]
        constraints = [models.UniqueConstraint(Lower("code"), name="warehouse_code_unique_ci")]

    def __str__(self) -> str:
        return f"{self.code} · {self.name}"


class StockStatus(models.TextChoices):
    SELLABLE = "sellable", "Sellable"
    IN_TRANSIT = "in_transit", "In transit"
    DAMAGED = "damaged", "Damaged"
    QUARANTINED = "quarantined", "Quarantined"


class StockBalance(models.Model):
    sku = models.ForeignKey(SKU, on_delete=models.PROTECT, related_name="balances")
    warehouse = models.ForeignKey(Warehouse, on_delete=models.PROTECT, related_name="balances")
    status = models.CharField(max_length=16, choices=StockStatus.choices)
    quantity = models.IntegerField(default=0)
    reserved = models.IntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["sku_id", "warehouse_id", "status"]
        constraints = [
            models.UniqueConstraint(fields=["sku", "warehouse", "status"], name="one_balance_row"),
            models.CheckConstraint(
                condition=models.Q(quantity__gte=0), name="balance_quantity_non_negative"
            ),
            models.CheckConstraint(
                condition=models.Q(reserved__gte=0), name="balance_reserved_non_negative"
            ),
            models.CheckConstraint(
                condition=models.Q(reserved__lte=models.F("quantity")),
                name="balance_reserved_within_quantity",
            ),
            models.CheckConstraint(
                condition=models.Q(reserved=0) | models.Q(status="sellable"),
                name="only_sellable_is_reserved",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.sku_id}@{self.warehouse_id}/{self.status}: {self.quantity}"


class MovementKind(models.TextChoices):
    RECEIPT = "receipt", "Receipt"
    ADJUSTMENT = "adjustment", "Adjustment"
    TRANSFER_OUT = "transfer_out", "Transfer out"
    TRANSFER_IN_TRANSIT = "transfer_in_transit", "In transit"
    TRANSFER_IN = "transfer_in", "Transfer in"
    SHIP = "ship", "Pick / ship"
    RETURN = "return", "Return"
    COUNT_CORRECTION = "count_correction", "Count correction"
    STATUS_CHANGE = "status_change", "Status change"


class ReasonCode(models.TextChoices):
    DAMAGED = "damaged", "Damaged"
    LOST = "lost", "Lost / missing"
    FOUND = "found", "Found"
    EXPIRED = "expired", "Expired"
    THEFT = "theft", "Theft"
    SAMPLE = "sample", "Sample / marketing"
    OPENING = "opening", "Opening balance"
    CORRECTION = "correction", "Data correction"
    OTHER = "other", "Other"


class StockMovement(models.Model):
    """One signed change of one balance row. Never updated or deleted.

    Operations touching several rows (transfers, status changes) write several movements
    sharing an `operation_id`.
    """

    operation_id = models.UUIDField(db_index=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    kind = models.CharField(max_length=24, choices=MovementKind.choices)
    sku = models.ForeignKey(SKU, on_delete=models.PROTECT, related_name="movements")
    warehouse = models.ForeignKey(Warehouse, on_delete=models.PROTECT, related_name="movements")
    status = models.CharField(max_length=16, choices=StockStatus.choices)
    quantity = models.IntegerField()  # signed delta
    balance_after = models.IntegerField()
    reason_code = models.CharField(max_length=16, choices=ReasonCode.choices, blank=True)
    reference_type = models.CharField(max_length=50, blank=True)
    reference_id = models.CharField(max_length=64, blank=True)
    note = models.CharField(max_length=500, blank=True)
    actor_label = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["sku", "warehouse", "-id"])]
        constraints = [
            models.CheckConstraint(condition=~models.Q(quantity=0), name="movement_not_zero")
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.quantity:+d} {self.sku_id}@{self.warehouse_id}"


class ReservationKind(models.TextChoices):
    ORDER_LINE = "order_line", "Order line"
    MANUAL_HOLD = "manual_hold", "Manual hold"
    CHANNEL_BUFFER = "channel_buffer", "Channel buffer"


class ReservationStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    RELEASED = "released", "Released"
    CONSUMED = "consumed", "Consumed"


class Reservation(models.Model):
    sku = models.ForeignKey(SKU, on_delete=models.PROTECT, related_name="reservations")
    warehouse = models.ForeignKey(Warehouse, on_delete=models.PROTECT, related_name="reservations")
    quantity = models.PositiveIntegerField()
    kind = models.CharField(max_length=16, choices=ReservationKind.choices)
    reference_type = models.CharField(max_length=50)
    reference_id = models.CharField(max_length=64)
    # When the reservation came from a bundle line, the bundle SKU it was expanded from.
    bundle_sku = models.ForeignKey(
        SKU, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    status = models.CharField(
        max_length=10, choices=ReservationStatus.choices, default=ReservationStatus.ACTIVE
    )
    note = models.CharField(max_length=500, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["reference_type", "reference_id"])]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(quantity__gte=1), name="reservation_quantity_positive"
            ),
            models.UniqueConstraint(
                fields=["kind", "reference_type", "reference_id", "sku", "warehouse"],
                condition=models.Q(status="active"),
                name="one_active_reservation_per_reference",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.quantity} × {self.sku_id}@{self.warehouse_id}"


class StockEvent(models.Model):
    """Outbox of available-to-promise changes, written in the stock transaction.

    Consumers (channel quantity pushes, outbound webhooks) read unpublished rows in id
    order, so no committed change is missed and no rolled-back one is seen.
    """

    operation_id = models.UUIDField()
    created_at = models.DateTimeField(auto_now_add=True)
    sku = models.ForeignKey(SKU, on_delete=models.PROTECT, related_name="+")
    warehouse = models.ForeignKey(Warehouse, on_delete=models.PROTECT, related_name="+")
    available_before = models.IntegerField()
    available_after = models.IntegerField()
    cause = models.CharField(max_length=24)
    published_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(
                fields=["id"],
                condition=models.Q(published_at__isnull=True),
                name="stockevent_unpublished",
            )
        ]

    def __str__(self) -> str:
        return f"{self.sku_id}@{self.warehouse_id}: {self.available_before}→{self.available_after}"


class TransferStatus(models.TextChoices):
    IN_TRANSIT = "in_transit", "In transit"
    RECEIVED = "received", "Received"
    CANCELLED = "cancelled", "Cancelled"


class Transfer(models.Model):
    reference = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    source = models.ForeignKey(Warehouse, on_delete=models.PROTECT, related_name="+")
    destination = models.ForeignKey(Warehouse, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(
        max_length=12, choices=TransferStatus.choices, default=TransferStatus.IN_TRANSIT
    )
    note = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    received_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(source=models.F("destination")),
                name="transfer_between_two_warehouses",
            )
        ]

    def __str__(self) -> str:
        return f"Transfer #{self.pk} {self.source_id}→{self.destination_id}"


class TransferLine(models.Model):
    transfer = models.ForeignKey(Transfer, on_delete=models.CASCADE, related_name="lines")
    sku = models.ForeignKey(SKU, on_delete=models.PROTECT, related_name="+")
    quantity = models.PositiveIntegerField()
    received_quantity = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["transfer", "sku"], name="transfer_line_once"),
            models.CheckConstraint(
                condition=models.Q(quantity__gte=1), name="transfer_line_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} × {self.sku_id}"


class CountStatus(models.TextChoices):
    OPEN = "open", "Counting"
    PENDING_APPROVAL = "pending_approval", "Awaiting approval"
    POSTED = "posted", "Posted"
    CANCELLED = "cancelled", "Cancelled"


class CycleCount(models.Model):
    warehouse = models.ForeignKey(Warehouse, on_delete=models.PROTECT, related_name="counts")
    status = models.CharField(max_length=20, choices=CountStatus.choices, default=CountStatus.OPEN)
    note = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    posted_at = models.DateTimeField(null=True, blank=True)
    # Who asked to post it, and what a rejection said (counts worth more than the brand's
    # stock-adjustment ceiling wait for approval; a rejected one reopens for recounting).
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resolution = models.CharField(max_length=500, blank=True)
    # Bumped whenever a line changes: an approval covers one version of the sheet.
    version = models.PositiveIntegerField(default=1)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"Count #{self.pk} at {self.warehouse_id}"


class CountLine(models.Model):
    count = models.ForeignKey(CycleCount, on_delete=models.CASCADE, related_name="lines")
    sku = models.ForeignKey(SKU, on_delete=models.PROTECT, related_name="+")
    counted = models.PositiveIntegerField()
    # System sellable quantity when the line was entered, and when posted.
    expected = models.IntegerField()
    posted_variance = models.IntegerField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["count", "sku"], name="count_line_once")]

    def __str__(self) -> str:
        return f"{self.sku_id}: counted {self.counted}"

    @property
    def variance(self) -> int:
        return self.counted - self.expected


class AdjustmentState(models.TextChoices):
    PENDING = "pending", "Waiting for approval"
    POSTED = "posted", "Posted"
    REJECTED = "rejected", "Rejected"
    EXPIRED = "expired", "Expired"
    CANCELLED = "cancelled", "Cancelled"


class StockAdjustmentRequest(models.Model):
    """An adjustment worth enough that an approval policy holds it back (the approvals
    subject "stock_adjustment"). It posts, through inventory.services.adjust, only when its
    approval request is approved; until then nothing in the ledger changes.

    `version` goes up with every edit; an approval covers one version, so an edit upward
    re-opens approval (approvals.services.subject_changed).
    """

    sku = models.ForeignKey(SKU, on_delete=models.PROTECT, related_name="+")
    warehouse = models.ForeignKey(Warehouse, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=16, choices=StockStatus.choices)
    delta = models.IntegerField()
    reason_code = models.CharField(max_length=16, choices=ReasonCode.choices)
    note = models.CharField(max_length=500, blank=True)
    # |delta| × unit cost in the brand's currency when it was last valued; null when the
    # SKU has no cost in that currency.
    value = models.DecimalField(max_digits=16, decimal_places=4, null=True, blank=True)
    currency = models.CharField(max_length=3)
    version = models.PositiveIntegerField(default=1)
    state = models.CharField(
        max_length=10, choices=AdjustmentState.choices, default=AdjustmentState.PENDING
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    requested_by_label = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    # Why it did not post (rejection reason, expiry, cancellation).
    resolution = models.TextField(blank=True)
    # The ledger operation it posted as, and the approval's continuation key.
    operation_id = models.UUIDField(null=True, blank=True)
    continuation_key = models.CharField(max_length=80, null=True, blank=True, unique=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(delta=0), name="adjustment_request_not_zero"
            ),
            models.CheckConstraint(
                condition=models.Q(operation_id__isnull=True) | models.Q(state="posted"),
                name="only_posted_adjustments_have_operations",
            ),
        ]

    def __str__(self) -> str:
        return f"Adjustment request #{self.pk}: {self.delta:+d} × {self.sku_id}@{self.warehouse_id}"
