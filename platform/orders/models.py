"""Orders, routing rules and decisions, fulfillment orders.

An order arrives once per (channel, external id); it is routed by three layers (hard
rules, scoring, people) into fulfillment orders per warehouse, each holding stock
reservations. Every routing decision is stored with its inputs and explanation.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from catalog.models import SKU
from inventory.models import Warehouse


class OrderType(models.TextChoices):
    DTC = "dtc", "DTC"
    MARKETPLACE = "marketplace", "Marketplace"
    WHOLESALE = "wholesale", "Wholesale / B2B"
    SUBSCRIPTION = "subscription", "Subscription"


class ServiceLevel(models.TextChoices):
    STANDARD = "standard", "Standard"
    EXPEDITED = "expedited", "Expedited"
    SPECIALTY = "specialty", "Specialty"


class OrderStatus(models.TextChoices):
    RECEIVED = "received", "Received"
    HELD = "held", "Held"
    ROUTED = "routed", "Routed"
    PARTIALLY_FULFILLED = "partially_fulfilled", "Partially fulfilled"
    FULFILLED = "fulfilled", "Fulfilled"
    CLOSED = "closed", "Closed"
    CANCELLED = "cancelled", "Cancelled"


class HoldReason(models.TextChoices):
    UNMAPPED_SKU = "unmapped_sku", "Unmapped SKU"
    INVALID_ADDRESS = "invalid_address", "Invalid address"
    INSUFFICIENT_STOCK = "insufficient_stock", "Insufficient stock"
    FRAUD = "fraud", "Fraud flag"
    AWAITING_REVIEW = "awaiting_review", "Awaiting review"


class ShipType(models.TextChoices):
    PARCEL = "parcel", "Parcel"
    LTL = "ltl", "LTL / pallet"


class OrderQuerySet(models.QuerySet):
    def needs_review(self) -> OrderQuerySet:
        return self.filter(status=OrderStatus.HELD)


class Order(models.Model):
    channel = models.CharField(max_length=100)
    external_id = models.CharField(max_length=255)
    placed_at = models.DateTimeField()
    # The channel's own last-update time: updates apply in this order, never backwards.
    channel_updated_at = models.DateTimeField()
    status = models.CharField(
        max_length=24, choices=OrderStatus.choices, default=OrderStatus.RECEIVED, db_index=True
    )
    hold_reason = models.CharField(
        max_length=24, choices=HoldReason.choices, blank=True, db_index=True
    )
    hold_detail = models.CharField(max_length=500, blank=True)
    order_type = models.CharField(max_length=16, choices=OrderType.choices, default=OrderType.DTC)
    service_level = models.CharField(
        max_length=16, choices=ServiceLevel.choices, default=ServiceLevel.STANDARD
    )
    is_gift = models.BooleanField(default=False)
    is_vip = models.BooleanField(default=False)
    is_repeat_customer = models.BooleanField(default=False)
    fraud_flag = models.BooleanField(default=False)
    # A person checked the channel's fraud flag and released the order; a new flag from the
    # channel clears this again.
    fraud_cleared_at = models.DateTimeField(null=True, blank=True)
    fraud_cleared_by_label = models.CharField(max_length=200, blank=True)
    customer_name = models.CharField(max_length=200, blank=True)
    customer_email = models.EmailField(blank=True)
    ship_name = models.CharField(max_length=200, blank=True)
    ship_company = models.CharField(max_length=200, blank=True)
    ship_line1 = models.CharField(max_length=200, blank=True)
    ship_line2 = models.CharField(max_length=200, blank=True)
    ship_city = models.CharField(max_length=100, blank=True)
    ship_state = models.CharField(max_length=100, blank=True)
    ship_postal_code = models.CharField(max_length=20, blank=True)
    ship_country = models.CharField(max_length=2, blank=True)
    ship_phone = models.CharField(max_length=40, blank=True)
    currency = models.CharField(max_length=3)
    total = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0"))
    note = models.CharField(max_length=1000, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = OrderQuerySet.as_manager()

    class Meta:
        ordering = ["-placed_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["channel", "external_id"], name="order_once_per_channel"
            ),
            models.CheckConstraint(
                condition=models.Q(status="held", hold_reason__gt="")
                | (~models.Q(status="held") & models.Q(hold_reason="")),
                name="held_orders_have_a_reason",
            ),
        ]
        indexes = [
            models.Index(fields=["channel", "-placed_at"]),
            # forecasting.refresh_demand asks which orders changed since its last pass.
            models.Index(fields=["updated_at"], name="order_updated_at"),
        ]

    def __str__(self) -> str:
        return f"{self.channel} #{self.external_id}"


class OrderLine(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    external_line_id = models.CharField(max_length=255)
    external_sku = models.CharField(max_length=255)
    external_listing_id = models.CharField(max_length=255, blank=True)
    sku = models.ForeignKey(
        SKU, on_delete=models.PROTECT, null=True, blank=True, related_name="order_lines"
    )
    title = models.CharField(max_length=255, blank=True)
    quantity = models.PositiveIntegerField()
    unit_price = models.DecimalField(max_digits=14, decimal_places=2)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["order", "external_line_id"], name="order_line_once"),
            models.CheckConstraint(
                condition=models.Q(quantity__gte=1), name="order_line_quantity_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} × {self.external_sku}"


class RuleSetStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    PUBLISHED = "published", "Published"
    ARCHIVED = "archived", "Archived"


class RuleSet(models.Model):
    """A versioned, ordered list of routing rules. One is published at a time."""

    version = models.PositiveIntegerField(unique=True)
    status = models.CharField(
        max_length=12, choices=RuleSetStatus.choices, default=RuleSetStatus.DRAFT
    )
    note = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    published_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["status"],
                condition=models.Q(status="published"),
                name="one_published_rule_set",
            ),
        ]

    def __str__(self) -> str:
        return f"Rules v{self.version} ({self.status})"


class Rule(models.Model):
    """Conditions (all must hold) → actions. See orders.routing for the vocabulary."""

    rule_set = models.ForeignKey(RuleSet, on_delete=models.CASCADE, related_name="rules")
    position = models.PositiveIntegerField()
    name = models.CharField(max_length=120)
    conditions = models.JSONField(default=dict)
    actions = models.JSONField(default=dict)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["rule_set", "position"]
        constraints = [
            models.UniqueConstraint(fields=["rule_set", "position"], name="rule_position_once")
        ]

    def __str__(self) -> str:
        return f"{self.position}. {self.name}"


class RoutingSettings(models.Model):
    """The brand's routing knobs (one row)."""

    confidence_threshold = models.DecimalField(
        max_digits=3,
        decimal_places=2,
        default=Decimal("0.60"),
        validators=[MinValueValidator(0), MaxValueValidator(1)],
        help_text="Scored decisions below this go to the review queue.",
    )
    ltl_weight_kg = models.DecimalField(
        max_digits=8,
        decimal_places=2,
        default=Decimal("68"),
        help_text="A shipment this heavy or heavier goes LTL.",
    )
    ltl_units = models.PositiveIntegerField(
        default=200, help_text="A shipment of this many units goes LTL."
    )
    weight_distance = models.DecimalField(max_digits=4, decimal_places=2, default=Decimal("0.45"))
    weight_cover = models.DecimalField(max_digits=4, decimal_places=2, default=Decimal("0.20"))
    weight_cutoff = models.DecimalField(max_digits=4, decimal_places=2, default=Decimal("0.15"))
    weight_packages = models.DecimalField(max_digits=4, decimal_places=2, default=Decimal("0.20"))

    class Meta:
        verbose_name_plural = "routing settings"

    def __str__(self) -> str:
        return "Routing settings"


class DecisionLayer(models.TextChoices):
    RULES = "rules", "Hard rule"
    SCORING = "scoring", "Scoring"
    REVIEW = "review", "Sent to review"
    MANUAL = "manual", "Person"
    HOLD = "hold", "Held"
    REROUTE = "reroute", "Re-route"


class RoutingDecision(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="decisions")
    created_at = models.DateTimeField(auto_now_add=True)
    layer = models.CharField(max_length=12, choices=DecisionLayer.choices)
    rule_set_version = models.PositiveIntegerField(null=True, blank=True)
    rule_name = models.CharField(max_length=120, blank=True)
    inputs = models.JSONField(default=dict)
    candidates = models.JSONField(default=list)
    chosen = models.JSONField(null=True, blank=True)
    confidence = models.DecimalField(max_digits=4, decimal_places=3, null=True, blank=True)
    explanation = models.TextField()
    actor_label = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.layer} decision for order {self.order_id}"


class FulfillmentStatus(models.TextChoices):
    OPEN = "open", "Open"
    SENT = "sent", "Sent to warehouse"
    SHIPPED = "shipped", "Shipped"
    REJECTED = "rejected", "Rejected by warehouse"
    CANCELLED = "cancelled", "Cancelled"


class FulfillmentOrder(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="fulfillments")
    warehouse = models.ForeignKey(Warehouse, on_delete=models.PROTECT, related_name="fulfillments")
    status = models.CharField(
        max_length=12,
        choices=FulfillmentStatus.choices,
        default=FulfillmentStatus.OPEN,
        db_index=True,
    )
    ship_type = models.CharField(max_length=8, choices=ShipType.choices, default=ShipType.PARCEL)
    decision = models.ForeignKey(RoutingDecision, on_delete=models.PROTECT, related_name="+")
    tracking_number = models.CharField(max_length=100, blank=True)
    carrier = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["order_id", "id"]

    def __str__(self) -> str:
        return f"FO-{self.pk} ({self.warehouse_id})"

    @property
    def reservation_reference(self) -> tuple[str, str]:
        return ("fulfillment_order", str(self.pk))


class FulfillmentLine(models.Model):
    fulfillment = models.ForeignKey(
        FulfillmentOrder, on_delete=models.CASCADE, related_name="lines"
    )
    # Null once the channel replaced the order's lines; the row keeps its own SKU and
    # quantity so a cancelled fulfillment still shows what it held.
    order_line = models.ForeignKey(
        OrderLine, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    sku = models.ForeignKey(SKU, on_delete=models.PROTECT, related_name="+")
    quantity = models.PositiveIntegerField()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(quantity__gte=1), name="fulfillment_line_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} × {self.sku_id}"
