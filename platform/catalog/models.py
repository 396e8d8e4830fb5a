"""Item master: products, SKUs (variants), bundles and channel listing mappings.

Per-SKU change history is the activity log filtered to the SKU (catalog.services writes
every field change there with before/after values), so there is one history, not two.
"""

from __future__ import annotations

from decimal import Decimal

from django.contrib.postgres.fields import ArrayField
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models.functions import Lower

from catalog.gtin import validate_gtin


class Lifecycle(models.TextChoices):
    DRAFT = "draft", "Draft"
    ACTIVE = "active", "Active"
    DISCONTINUED = "discontinued", "Discontinued"


class WeightUnit(models.TextChoices):
    GRAM = "g", "grams"
    KILOGRAM = "kg", "kilograms"
    OUNCE = "oz", "ounces"
    POUND = "lb", "pounds"


class LengthUnit(models.TextChoices):
    CENTIMETRE = "cm", "centimetres"
    INCH = "in", "inches"


# Conversions to the canonical units routing and carriers use (grams, centimetres).
GRAMS_PER = {
    "g": Decimal(1),
    "kg": Decimal(1000),
    "oz": Decimal("28.349523125"),
    "lb": Decimal("453.59237"),
}
CM_PER = {"cm": Decimal(1), "in": Decimal("2.54")}


class Product(models.Model):
    title = models.CharField(max_length=255)
    description = models.TextField(blank=True)
    vendor = models.CharField(max_length=120, blank=True)
    category = models.CharField(max_length=120, blank=True)
    tags = ArrayField(models.CharField(max_length=50), default=list, blank=True)
    status = models.CharField(max_length=16, choices=Lifecycle.choices, default=Lifecycle.DRAFT)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["title", "id"]

    def __str__(self) -> str:
        return self.title


class SKUQuerySet(models.QuerySet):
    def search(self, text: str) -> SKUQuerySet:
        if not text:
            return self
        return self.filter(
            models.Q(code__icontains=text)
            | models.Q(title__icontains=text)
            | models.Q(product__title__icontains=text)
            | models.Q(gtin=text)
        )


class SKU(models.Model):
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="skus")
    code = models.CharField(max_length=64)
    title = models.CharField(max_length=255, blank=True)
    option_values = models.JSONField(default=dict, blank=True)  # {"Size": "M", "Colour": "Navy"}
    gtin = models.CharField(
        "GTIN", max_length=14, null=True, blank=True, validators=[validate_gtin]
    )
    tags = ArrayField(models.CharField(max_length=50), default=list, blank=True)
    status = models.CharField(max_length=16, choices=Lifecycle.choices, default=Lifecycle.ACTIVE)
    weight = models.DecimalField(
        max_digits=10, decimal_places=3, null=True, blank=True, validators=[MinValueValidator(0)]
    )
    weight_unit = models.CharField(
        max_length=2, choices=WeightUnit.choices, default=WeightUnit.GRAM
    )
    length = models.DecimalField(
        max_digits=10, decimal_places=2, null=True, blank=True, validators=[MinValueValidator(0)]
    )
    width = models.DecimalField(
        max_digits=10, decimal_places=2, null=True, blank=True, validators=[MinValueValidator(0)]
    )
    height = models.DecimalField(
        max_digits=10, decimal_places=2, null=True, blank=True, validators=[MinValueValidator(0)]
    )
    dimension_unit = models.CharField(
        max_length=2, choices=LengthUnit.choices, default=LengthUnit.CENTIMETRE
    )
    unit_cost = models.DecimalField(
        max_digits=14, decimal_places=4, null=True, blank=True, validators=[MinValueValidator(0)]
    )
    cost_currency = models.CharField(max_length=3, blank=True)
    is_hazmat = models.BooleanField(default=False)
    is_oversize = models.BooleanField(default=False)
    is_bundle = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = SKUQuerySet.as_manager()

    class Meta:
        ordering = ["code"]
        verbose_name = "SKU"
        constraints = [
            models.UniqueConstraint(Lower("code"), name="sku_code_unique_ci"),
            models.UniqueConstraint(fields=["gtin"], name="sku_gtin_unique"),
            models.CheckConstraint(
                condition=models.Q(unit_cost__isnull=True) | ~models.Q(cost_currency=""),
                name="sku_cost_has_currency",
            ),
        ]

    def __str__(self) -> str:
        return self.code

    @property
    def weight_grams(self) -> Decimal | None:
        return None if self.weight is None else self.weight * GRAMS_PER[self.weight_unit]


class BundleComponent(models.Model):
    """One line of a bundle/kit: `quantity` units of `component` per bundle unit."""

    bundle = models.ForeignKey(SKU, on_delete=models.CASCADE, related_name="components")
    component = models.ForeignKey(SKU, on_delete=models.PROTECT, related_name="used_in")
    quantity = models.PositiveIntegerField(validators=[MinValueValidator(1)])

    class Meta:
        ordering = ["component__code"]
        constraints = [
            models.UniqueConstraint(fields=["bundle", "component"], name="bundle_component_once"),
            models.CheckConstraint(
                condition=~models.Q(bundle=models.F("component")),
                name="bundle_not_its_own_component",
            ),
            models.CheckConstraint(
                condition=models.Q(quantity__gte=1), name="bundle_component_quantity_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} × {self.component_id}"


class ListingMapping(models.Model):
    """(channel, external SKU) → our SKU. Many external listings may map to one SKU."""

    channel = models.CharField(max_length=100)  # connection or channel name
    external_sku = models.CharField(max_length=255)
    external_listing_id = models.CharField(max_length=255, blank=True)
    sku = models.ForeignKey(SKU, on_delete=models.PROTECT, related_name="listings")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["channel", "external_sku"]
        constraints = [
            models.UniqueConstraint(
                fields=["channel", "external_sku"], name="listing_mapping_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.channel}:{self.external_sku} → {self.sku_id}"


class UnmappedStatus(models.TextChoices):
    OPEN = "open", "Needs a SKU"
    RESOLVED = "resolved", "Resolved"
    IGNORED = "ignored", "Ignored"


class UnmappedListing(models.Model):
    """An external SKU we saw but could not map. Never dropped: a person resolves it.

    `waiting` lists what is parked on it ({"kind": ..., "id": ...}); resolving hands each
    back to the reprocessor registered for its kind (see catalog.services).
    """

    channel = models.CharField(max_length=100)
    external_sku = models.CharField(max_length=255)
    external_listing_id = models.CharField(max_length=255, blank=True)
    title = models.CharField(max_length=255, blank=True)
    status = models.CharField(
        max_length=10, choices=UnmappedStatus.choices, default=UnmappedStatus.OPEN
    )
    first_seen_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(auto_now=True)
    occurrences = models.PositiveIntegerField(default=1)
    waiting = models.JSONField(default=list, blank=True)
    resolved_sku = models.ForeignKey(
        SKU, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-last_seen_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["channel", "external_sku"],
                condition=models.Q(status="open"),
                name="one_open_unmapped_per_listing",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.channel}:{self.external_sku}"


class ImportKind(models.TextChoices):
    ITEMS = "items", "Item master"
    OPENING_STOCK = "opening_stock", "Opening stock"
    SALES_HISTORY = "sales_history", "Sales history"


class ImportStatus(models.TextChoices):
    UPLOADED = "uploaded", "Uploaded"
    VALIDATING = "validating", "Validating"
    INVALID = "invalid", "Has errors"
    READY = "ready", "Ready to import"
    APPLYING = "applying", "Importing"
    APPLIED = "applied", "Imported"
    FAILED = "failed", "Failed"


class ImportJob(models.Model):
    """One uploaded CSV on its way through validation and an all-or-nothing apply.

    The file lives in the brand's media folder (default storage is tenant-scoped). While a
    worker runs, live progress is in the cache (see catalog.imports.job_progress): the
    apply transaction holds this row locked, so progress written here would not be seen.
    `report` lists problems as {line, column, value, code, message}; `counts` holds the
    planned (when ready) or applied (when applied) created/updated/unchanged numbers.
    """

    kind = models.CharField(max_length=16, choices=ImportKind.choices)
    status = models.CharField(
        max_length=12, choices=ImportStatus.choices, default=ImportStatus.UPLOADED
    )
    file = models.FileField(upload_to="imports/%Y/%m/")
    filename = models.CharField(max_length=255)
    total_rows = models.PositiveIntegerField(default=0)
    processed_rows = models.PositiveIntegerField(default=0)
    error_count = models.PositiveIntegerField(default=0)
    report = models.JSONField(default=list, blank=True)
    counts = models.JSONField(default=dict, blank=True)
    message = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey(
        "accounts.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    confirmed_by = models.ForeignKey(
        "accounts.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    confirmed_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(kind__in=ImportKind.values), name="importjob_kind_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=ImportStatus.values), name="importjob_status_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(processed_rows__lte=models.F("total_rows")),
                name="importjob_progress_within_total",
            ),
        ]

    def __str__(self) -> str:
        return f"Import #{self.pk} ({self.get_kind_display()}, {self.filename})"

    @property
    def is_running(self) -> bool:
        return self.status in (
            ImportStatus.UPLOADED,
            ImportStatus.VALIDATING,
            ImportStatus.APPLYING,
        )
