"""Replenishment: the daily plan per SKU × warehouse, transfer suggestions, exceptions.

- `ReplenishmentSettings` (one row per brand, pk 1): the accelerate/brake thresholds, the
  review period used when a SKU's segment has none, whether the daily run drafts purchase
  orders by itself, and which warehouses may send each other stock.
- `Recommendation`: one row per SKU × warehouse × day with the state (healthy, accelerate,
  brake, escalate), the plain-language reason and every number the quantity came from, so a
  buyer (or an auditor) can redo the arithmetic. Acting on it links the PO it produced.
- `TransferSuggestion`: move units from a long warehouse to a short one; accepting it ships
  an inventory transfer.
- `ReplenishmentAlert`: the day's exceptions (demand departing from forecast, suppliers
  slipping, stock-outs projected before the next receipt), stored by the daily plan so the
  dashboard panel reads a handful of rows instead of recomputing them.
"""

from __future__ import annotations

from decimal import Decimal

from django.contrib.postgres.fields import ArrayField
from django.db import models

from catalog.models import SKU
from inventory.models import Transfer, Warehouse, WarehouseKind
from purchasing.models import PurchaseOrder, Supplier


def _default_transfer_kinds() -> list[str]:
    return [WarehouseKind.IN_HOUSE, WarehouseKind.THREE_PL]


class ReplenishmentSettings(models.Model):
    accelerate_threshold = models.DecimalField(
        max_digits=4,
        decimal_places=3,
        default=Decimal("0.150"),
        help_text="Accelerate when the 7-day velocity is above the 28-day average by more",
    )
    brake_threshold = models.DecimalField(
        max_digits=4,
        decimal_places=3,
        default=Decimal("0.300"),
        help_text="Brake when the 7-day velocity is below the 28-day average by more",
    )
    default_review_period_days = models.PositiveIntegerField(
        default=7, help_text="Review period for SKUs whose segment has no cadence"
    )
    auto_draft_pos = models.BooleanField(
        default=False,
        help_text="The daily plan drafts and submits POs itself (approvals still apply)",
    )
    transfers_enabled = models.BooleanField(default=True)
    transfer_min_quantity = models.PositiveIntegerField(
        default=10, help_text="Smaller moves are not worth a transfer"
    )
    transfer_warehouse_kinds = ArrayField(
        models.CharField(max_length=16, choices=WarehouseKind.choices),
        default=_default_transfer_kinds,
        blank=True,
        help_text="Kinds of warehouse that may send each other stock",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "replenishment settings"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(accelerate_threshold__gt=0, accelerate_threshold__lte=5),
                name="replenishment_accelerate_range",
            ),
            models.CheckConstraint(
                condition=models.Q(brake_threshold__gt=0, brake_threshold__lt=1),
                name="replenishment_brake_range",
            ),
            models.CheckConstraint(
                condition=models.Q(
                    default_review_period_days__gte=1, default_review_period_days__lte=365
                ),
                name="replenishment_review_range",
            ),
        ]

    def __str__(self) -> str:
        return "Replenishment settings"

    @classmethod
    def current(cls) -> ReplenishmentSettings:
        row, _ = cls.objects.get_or_create(pk=1)
        return row


class State(models.TextChoices):
    ACCELERATE = "accelerate", "Accelerate"
    BRAKE = "brake", "Brake"
    ESCALATE = "escalate", "Escalate"
    HEALTHY = "healthy", "Healthy"


class RecommendationStatus(models.TextChoices):
    OPEN = "open", "Open"
    ACTED = "acted", "Acted on"
    DISMISSED = "dismissed", "Dismissed"


class LeadTimeSource(models.TextChoices):
    MEASURED = "measured", "Measured from receipts"
    QUOTED = "quoted", "Supplier's quote"
    NONE = "none", "Unknown"


class Recommendation(models.Model):
    day = models.DateField()
    sku = models.ForeignKey(SKU, on_delete=models.CASCADE, related_name="+")
    warehouse = models.ForeignKey(Warehouse, on_delete=models.CASCADE, related_name="+")
    state = models.CharField(max_length=12, choices=State.choices)
    reason = models.TextField()
    segment = models.CharField(max_length=12, blank=True)
    forecast_method = models.CharField(max_length=40, blank=True)
    # Demand this warehouse plans with (its share of the SKU's forecast).
    daily_mean = models.FloatField(default=0.0)
    daily_std = models.FloatField(default=0.0)
    velocity_7 = models.FloatField(null=True, blank=True)
    velocity_28 = models.FloatField(null=True, blank=True)
    lead_time_mean = models.FloatField(default=0.0)
    lead_time_std = models.FloatField(default=0.0)
    lead_time_source = models.CharField(
        max_length=10, choices=LeadTimeSource.choices, default=LeadTimeSource.NONE
    )
    lead_time_samples = models.PositiveIntegerField(default=0)
    service_level = models.DecimalField(max_digits=4, decimal_places=3, default=Decimal("0.950"))
    review_period_days = models.PositiveIntegerField(default=7)
    safety_stock = models.FloatField(default=0.0)
    reorder_point = models.FloatField(default=0.0)
    order_up_to = models.FloatField(default=0.0)
    available = models.IntegerField(default=0)
    on_order = models.IntegerField(default=0)
    backorders = models.IntegerField(default=0)
    next_receipt_on = models.DateField(null=True, blank=True)
    # Set when stock runs out before anything can arrive (the day it runs out).
    projected_stockout_on = models.DateField(null=True, blank=True)
    suggested_quantity = models.PositiveIntegerField(default=0)
    supplier = models.ForeignKey(
        Supplier, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    moq = models.PositiveIntegerField(default=1)
    case_pack = models.PositiveIntegerField(default=1)
    unit_cost = models.DecimalField(max_digits=14, decimal_places=4, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    # What acting on it does: "order" (draft a PO), "pull_forward" (reschedule an open PO
    # earlier), "slow_down" (delay or cancel unshipped POs, a person confirms), "" (nothing).
    action = models.CharField(max_length=16, blank=True)
    # The concrete proposal for pull_forward / slow_down: [{"po", "number", ...}].
    proposal = models.JSONField(default=list, blank=True)
    status = models.CharField(
        max_length=10, choices=RecommendationStatus.choices, default=RecommendationStatus.OPEN
    )
    purchase_order = models.ForeignKey(
        PurchaseOrder, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    acted_at = models.DateTimeField(null=True, blank=True)
    acted_by_label = models.CharField(max_length=200, blank=True)
    outcome = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-day", "sku_id", "warehouse_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["sku", "warehouse", "day"], name="recommendation_once_per_day"
            ),
        ]
        indexes = [
            models.Index(fields=["day", "state"], name="recommendation_day_state"),
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.sku_id}@{self.warehouse_id}: {self.state}"

    @property
    def value(self) -> Decimal | None:
        if self.unit_cost is None:
            return None
        return self.unit_cost * self.suggested_quantity


class TransferStatus(models.TextChoices):
    OPEN = "open", "Open"
    ACCEPTED = "accepted", "Accepted"
    DISMISSED = "dismissed", "Dismissed"


class TransferSuggestion(models.Model):
    day = models.DateField()
    sku = models.ForeignKey(SKU, on_delete=models.CASCADE, related_name="+")
    from_warehouse = models.ForeignKey(Warehouse, on_delete=models.CASCADE, related_name="+")
    to_warehouse = models.ForeignKey(Warehouse, on_delete=models.CASCADE, related_name="+")
    quantity = models.PositiveIntegerField()
    reason = models.TextField()
    status = models.CharField(
        max_length=10, choices=TransferStatus.choices, default=TransferStatus.OPEN
    )
    transfer = models.ForeignKey(
        Transfer, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by_label = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-day", "sku_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["sku", "from_warehouse", "to_warehouse", "day"],
                name="transfer_suggestion_once_per_day",
            ),
            models.CheckConstraint(
                condition=~models.Q(from_warehouse=models.F("to_warehouse")),
                name="transfer_suggestion_two_warehouses",
            ),
            models.CheckConstraint(
                condition=models.Q(quantity__gte=1), name="transfer_suggestion_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} × {self.sku_id}: {self.from_warehouse_id} → {self.to_warehouse_id}"


class AlertKind(models.TextChoices):
    DEMAND_SHIFT = "demand_shift", "Demand departs from forecast"
    SUPPLIER_SLIPPING = "supplier_slipping", "Supplier slipping"
    STOCKOUT_RISK = "stockout_risk", "Stock-out before the next receipt"


class ReplenishmentAlert(models.Model):
    day = models.DateField()
    kind = models.CharField(max_length=20, choices=AlertKind.choices)
    sku = models.ForeignKey(SKU, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    warehouse = models.ForeignKey(
        Warehouse, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    supplier = models.ForeignKey(
        Supplier, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    message = models.TextField()
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-day", "kind", "id"]
        indexes = [models.Index(fields=["day", "kind"], name="replenishment_alert_day")]

    def __str__(self) -> str:
        return f"{self.day} {self.kind}: {self.message[:60]}"
