"""Shipments of fulfillment orders: rate quotes and the scored carrier choice, labels,
tracking events, carrier outcomes per lane, exceptions and the brand's shipping settings.

A Shipment is one physical consignment of a FulfillmentOrder (parcel or LTL). Its state
machine: draft → rated → awaiting_approval → label_purchased → in_transit → delivered,
with exception / returned / voided as side exits (see shipping.services).
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from inventory.models import Warehouse
from orders.models import FulfillmentOrder, ShipType
from sync.models import Connection


class ShippingSettings(models.Model):
    """The brand's shipping knobs (one row, created on first use)."""

    label_approval_threshold = models.DecimalField(
        max_digits=10,
        decimal_places=2,
        default=Decimal("75.00"),
        help_text="Labels costing more than this need approval (mirrors the approval policy).",
    )
    ltl_weight_kg = models.DecimalField(
        max_digits=8, decimal_places=2, default=Decimal("68"), help_text="This heavy goes LTL."
    )
    ltl_cartons = models.PositiveIntegerField(default=6, help_text="This many cartons goes LTL.")
    ltl_pallets = models.PositiveIntegerField(default=1, help_text="This many pallets goes LTL.")
    wholesale_retail_ltl = models.BooleanField(
        default=True, help_text="Wholesale orders to a retail chain (a company) always go LTL."
    )
    weight_price = models.DecimalField(max_digits=4, decimal_places=2, default=Decimal("0.50"))
    weight_reliability = models.DecimalField(
        max_digits=4, decimal_places=2, default=Decimal("0.35")
    )
    weight_transit = models.DecimalField(max_digits=4, decimal_places=2, default=Decimal("0.15"))
    # {"<channel>": {"price": "0.3", "reliability": "0.3", "transit": "0.4"}}
    channel_weights = models.JSONField(default=dict, blank=True)
    history_weeks = models.PositiveIntegerField(
        default=12, validators=[MinValueValidator(1), MaxValueValidator(104)]
    )
    min_history = models.PositiveIntegerField(
        default=20, help_text="Deliveries on a lane before a carrier can be marked do-not-use."
    )
    no_scan_hours = models.PositiveIntegerField(default=36)
    late_tolerance_pct = models.PositiveIntegerField(default=20)
    escalate_after_hours = models.PositiveIntegerField(default=8)
    # The built-in sandbox carrier is for trying Keel out: by default it is quoted only
    # while no real parcel carrier is connected, so it never competes with real labels.
    sandbox_carrier = models.CharField(
        max_length=8,
        choices=[
            ("auto", "Only while no real carrier is connected"),
            ("always", "Always"),
            ("never", "Never"),
        ],
        default="auto",
        help_text="When to quote the built-in sandbox carrier.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "shipping settings"

    def __str__(self) -> str:
        return "Shipping settings"


class ShipmentState(models.TextChoices):
    DRAFT = "draft", "Draft"
    RATED = "rated", "Rated"
    AWAITING_APPROVAL = "awaiting_approval", "Awaiting approval"
    LABEL_PURCHASED = "label_purchased", "Label purchased"
    IN_TRANSIT = "in_transit", "In transit"
    DELIVERED = "delivered", "Delivered"
    EXCEPTION = "exception", "Exception"
    RETURNED = "returned", "Returned"
    VOIDED = "voided", "Voided"


class Shipment(models.Model):
    fulfillment = models.ForeignKey(
        FulfillmentOrder, on_delete=models.PROTECT, related_name="shipments"
    )
    ship_type = models.CharField(max_length=8, choices=ShipType.choices)
    ship_type_reason = models.CharField(max_length=300, blank=True)
    warehouse = models.ForeignKey(Warehouse, on_delete=models.PROTECT, related_name="+")
    channel = models.CharField(max_length=100, blank=True)
    origin_postal = models.CharField(max_length=20, blank=True)
    origin_state = models.CharField(max_length=100, blank=True)
    origin_country = models.CharField(max_length=2, default="US")
    dest_name = models.CharField(max_length=200, blank=True)
    dest_company = models.CharField(max_length=200, blank=True)
    dest_line1 = models.CharField(max_length=200, blank=True)
    dest_city = models.CharField(max_length=100, blank=True)
    dest_state = models.CharField(max_length=100, blank=True)
    dest_postal = models.CharField(max_length=20, blank=True)
    dest_country = models.CharField(max_length=2, blank=True)
    lane = models.CharField(max_length=40, blank=True, db_index=True)
    weight_g = models.PositiveIntegerField(default=0)
    parcels = models.JSONField(default=list, blank=True)
    cartons = models.PositiveIntegerField(default=1)
    pallets = models.PositiveIntegerField(default=0)
    state = models.CharField(
        max_length=20, choices=ShipmentState.choices, default=ShipmentState.DRAFT, db_index=True
    )
    chosen_quote = models.ForeignKey(
        "RateQuote", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # The scored table as the scorer saw it, the weights and lane inputs, and one sentence.
    choice_table = models.JSONField(default=list, blank=True)
    choice_inputs = models.JSONField(default=dict, blank=True)
    choice_reason = models.TextField(blank=True)
    currency = models.CharField(max_length=3, default="USD")
    label_format = models.CharField(max_length=4, default="pdf")
    # LTL: the chosen freight quote, the spread between quotes (%) and the special
    # instructions printed on the bill of lading.
    chosen_freight_quote = models.ForeignKey(
        "FreightQuote", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    freight_variance_pct = models.DecimalField(
        max_digits=8, decimal_places=2, null=True, blank=True
    )
    freight_class = models.CharField(max_length=5, default="70")
    special_instructions = models.CharField(max_length=500, blank=True)
    carrier = models.CharField(max_length=100, blank=True)
    service = models.CharField(max_length=100, blank=True)
    tracking_number = models.CharField(max_length=100, blank=True, db_index=True)
    promised_days = models.PositiveIntegerField(null=True, blank=True)
    label_purchased_at = models.DateTimeField(null=True, blank=True)
    shipped_at = models.DateTimeField(null=True, blank=True)
    last_scan_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"SH-{self.pk}"

    @property
    def reference(self) -> str:
        return f"SH-{self.pk}"


class RateQuote(models.Model):
    shipment = models.ForeignKey(Shipment, on_delete=models.CASCADE, related_name="quotes")
    connection = models.ForeignKey(Connection, on_delete=models.PROTECT, related_name="+")
    rate_id = models.CharField(max_length=255)
    carrier = models.CharField(max_length=100)
    service = models.CharField(max_length=100)
    service_level = models.CharField(max_length=20, blank=True)
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3)
    estimated_days = models.PositiveIntegerField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    raw = models.JSONField(default=dict, blank=True)
    # The request the rate was quoted for: buying needs the same request again.
    request = models.JSONField(default=dict, blank=True)
    score = models.DecimalField(max_digits=6, decimal_places=4, null=True, blank=True)
    do_not_use = models.BooleanField(default=False)
    quoted_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["amount", "id"]

    def __str__(self) -> str:
        return f"{self.carrier} {self.service} {self.amount} {self.currency}"

    @property
    def label(self) -> str:
        return f"{self.carrier} {self.service}"


class LabelStatus(models.TextChoices):
    PURCHASING = "purchasing", "Purchasing"
    PURCHASED = "purchased", "Purchased"
    FAILED = "failed", "Failed"
    VOIDED = "voided", "Voided"
    REFUNDED = "refunded", "Refunded"


class LabelFormat(models.TextChoices):
    PDF = "pdf", "PDF"
    ZPL = "zpl", "ZPL"


class Label(models.Model):
    """One purchase attempt and, once the carrier answered, its label.

    The row is committed in state `purchasing` with its idempotency key BEFORE the carrier
    is called; a worker that dies after the carrier sold the label but before we stored it
    leaves this row, and recovery asks again with the same key (the carrier answers with
    the label it already sold)."""

    shipment = models.ForeignKey(Shipment, on_delete=models.CASCADE, related_name="labels")
    quote = models.ForeignKey(RateQuote, on_delete=models.PROTECT, related_name="labels")
    connection = models.ForeignKey(Connection, on_delete=models.PROTECT, related_name="+")
    idempotency_key = models.CharField(max_length=100, unique=True)
    approval_request_id = models.PositiveIntegerField(null=True, blank=True)
    status = models.CharField(
        max_length=12, choices=LabelStatus.choices, default=LabelStatus.PURCHASING, db_index=True
    )
    external_id = models.CharField(max_length=255, blank=True)
    tracking_number = models.CharField(max_length=100, blank=True)
    carrier = models.CharField(max_length=100, blank=True)
    service = models.CharField(max_length=100, blank=True)
    cost = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3)
    label_format = models.CharField(
        max_length=4, choices=LabelFormat.choices, default=LabelFormat.PDF
    )
    document = models.FileField(upload_to="labels/", blank=True)
    label_url = models.CharField(max_length=500, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.CharField(max_length=500, blank=True)
    requested_by_label = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    purchased_at = models.DateTimeField(null=True, blank=True)
    voided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # Never two live labels for one shipment, whatever races.
            models.UniqueConstraint(
                fields=["shipment"],
                condition=Q(status__in=["purchasing", "purchased"]),
                name="one_live_label_per_shipment",
            ),
        ]

    def __str__(self) -> str:
        return f"Label {self.tracking_number or self.idempotency_key}"


class TrackingEvent(models.Model):
    shipment = models.ForeignKey(Shipment, on_delete=models.CASCADE, related_name="events")
    # Carrier event id when it has one, else "<occurred_at>|<status>".
    event_key = models.CharField(max_length=255)
    status = models.CharField(max_length=20)
    occurred_at = models.DateTimeField()
    description = models.CharField(max_length=500, blank=True)
    location = models.CharField(max_length=200, blank=True)
    exception_kind = models.CharField(max_length=30, blank=True)
    source = models.CharField(max_length=10, default="poll")
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["occurred_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["shipment", "event_key"], name="tracking_event_once")
        ]

    def __str__(self) -> str:
        return f"{self.status} @ {self.occurred_at:%Y-%m-%d %H:%M}"


class CarrierOutcome(models.Model):
    """How a delivered shipment went on its lane: what lane statistics are made of."""

    shipment = models.OneToOneField(Shipment, on_delete=models.CASCADE, related_name="outcome")
    carrier = models.CharField(max_length=100)
    service = models.CharField(max_length=100)
    lane = models.CharField(max_length=40, db_index=True)
    promised_days = models.PositiveIntegerField(null=True, blank=True)
    actual_days = models.DecimalField(max_digits=6, decimal_places=2, null=True, blank=True)
    on_time = models.BooleanField(null=True)
    damaged = models.BooleanField(default=False)
    claim = models.BooleanField(default=False)
    quoted_cost = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    invoiced_cost = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    # 1–5 (a thumbs up is 5, down is 1), one click after delivery.
    rating = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(5)]
    )
    rated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    delivered_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-delivered_at", "-id"]

    def __str__(self) -> str:
        return f"{self.carrier} {self.service} on {self.lane}"


class ExceptionKind(models.TextChoices):
    NO_SCAN = "no_scan", "No carrier scan"
    LATE = "late", "Late beyond the quoted window"
    ADDRESS = "address", "Address issue"
    DAMAGE = "damage", "Damaged"
    RETURN_TO_SENDER = "return_to_sender", "Returned to sender"
    CARRIER = "carrier", "Carrier exception"
    PURCHASE_FAILED = "purchase_failed", "Label purchase failed"


class ExceptionStatus(models.TextChoices):
    OPEN = "open", "Open"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    RESOLVED = "resolved", "Resolved"


class SuggestedAction(models.TextChoices):
    CONTACT_CARRIER = "contact_carrier", "Contact the carrier"
    RESHIP = "reship", "Reship"
    REFUND = "refund", "Refund the customer"
    FIX_ADDRESS = "fix_address", "Correct the address with the customer"


class ShipmentException(models.Model):
    shipment = models.ForeignKey(Shipment, on_delete=models.CASCADE, related_name="exceptions")
    kind = models.CharField(max_length=20, choices=ExceptionKind.choices)
    # What raised it (e.g. "no_scan:<last scan time>", "event:<event key>"): unique, so the
    # monitor never raises the same cause twice.
    cause_key = models.CharField(max_length=255, unique=True)
    detail = models.CharField(max_length=500)
    suggested_action = models.CharField(max_length=20, choices=SuggestedAction.choices)
    status = models.CharField(
        max_length=14, choices=ExceptionStatus.choices, default=ExceptionStatus.OPEN, db_index=True
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    opened_at = models.DateTimeField()
    escalate_at = models.DateTimeField(null=True, blank=True)
    escalated_at = models.DateTimeField(null=True, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolution = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-opened_at", "-id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} on SH-{self.shipment_id}"


class CarrierWebhookCursor(models.Model):
    """How far shipping has read a carrier connection's webhook inbox (sync's receipts):
    tracking updates are applied from there, each receipt once."""

    connection = models.OneToOneField(Connection, on_delete=models.CASCADE, related_name="+")
    last_receipt_id = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.connection_id}@{self.last_receipt_id}"


class FreightQuote(models.Model):
    """One LTL offer for a shipment, from one freight connection (broker or carrier)."""

    shipment = models.ForeignKey(Shipment, on_delete=models.CASCADE, related_name="freight_quotes")
    connection = models.ForeignKey(Connection, on_delete=models.PROTECT, related_name="+")
    quote_id = models.CharField(max_length=255)
    source = models.CharField(max_length=100)
    carrier = models.CharField(max_length=100)
    scac = models.CharField(max_length=4, blank=True)
    total = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3)
    transit_days = models.PositiveIntegerField()
    expires_at = models.DateTimeField()
    raw = models.JSONField(default=dict)
    request = models.JSONField(default=dict)
    superseded = models.BooleanField(default=False)
    quoted_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["total", "transit_days", "id"]

    def __str__(self) -> str:
        return f"{self.carrier} {self.total} {self.currency}"


class BookingStatus(models.TextChoices):
    BOOKING = "booking", "Booking"
    BOOKED = "booked", "Booked"
    FAILED = "failed", "Failed"
    DELIVERED = "delivered", "Delivered"


class FreightBooking(models.Model):
    """An LTL booking: committed in state `booking` with its idempotency key before the
    broker is called (as labels are), then the BOL and PRO numbers and the BOL PDF."""

    shipment = models.ForeignKey(Shipment, on_delete=models.CASCADE, related_name="bookings")
    quote = models.ForeignKey(FreightQuote, on_delete=models.PROTECT, related_name="bookings")
    connection = models.ForeignKey(Connection, on_delete=models.PROTECT, related_name="+")
    idempotency_key = models.CharField(max_length=100, unique=True)
    approval_request_id = models.PositiveIntegerField(null=True, blank=True)
    status = models.CharField(
        max_length=10, choices=BookingStatus.choices, default=BookingStatus.BOOKING
    )
    bol_number = models.CharField(max_length=100, blank=True)
    pro_number = models.CharField(max_length=100, blank=True)
    pickup_window_start = models.DateTimeField(null=True, blank=True)
    pickup_window_end = models.DateTimeField(null=True, blank=True)
    quoted_total = models.DecimalField(max_digits=12, decimal_places=2)
    final_total = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    currency = models.CharField(max_length=3)
    bol_document = models.FileField(upload_to="bol/", blank=True, max_length=300)
    pod_document = models.FileField(upload_to="pod/", blank=True, max_length=300)
    pod_signed_by = models.CharField(max_length=200, blank=True)
    error = models.CharField(max_length=500, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    booked_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["shipment"],
                condition=Q(status__in=["booking", "booked", "delivered"]),
                name="one_live_booking_per_shipment",
            ),
        ]

    def __str__(self) -> str:
        return f"BOL {self.bol_number or self.idempotency_key}"
