"""Connections to channels, 3PLs and carriers, their cursors and state, sync runs and the
webhook inbox.

A Connection is one brand's configured instance of a connector plugin (connectors.*): its
non-secret settings as JSON, its credentials as one Fernet token (sync.sealed), never as
plaintext. Everything a connector must remember between calls lives in rows of its own
(cursors per stream, the connector's key/value state), so a worker killed mid-sync loses
nothing it had committed.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q

from catalog.models import SKU
from config.crypto import FernetTokenField
from orders.models import FulfillmentOrder


class ConnectionKind(models.TextChoices):
    CHANNEL = "channel", "Sales channel"
    THREEPL = "3pl", "3PL / warehouse"
    CARRIER = "carrier", "Carrier"


class ConnectionStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    PAUSED = "paused", "Paused"
    NEEDS_ATTENTION = "needs_attention", "Needs attention"


class ConnectionQuerySet(models.QuerySet):
    def active(self) -> ConnectionQuerySet:
        return self.filter(status=ConnectionStatus.ACTIVE)


class Connection(models.Model):
    # The webhook URL carries this, never the row id: ids are guessable and sequential.
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    connector = models.CharField(max_length=50, help_text="ConnectorInfo.name of the plugin")
    kind = models.CharField(max_length=16, choices=ConnectionKind.choices)
    display_name = models.CharField(max_length=120)
    # Orders arrive on this channel name and listing mappings are keyed by it, so two
    # shops on one platform keep their external ids and SKUs apart.
    channel_key = models.CharField(max_length=100, unique=True)
    settings = models.JSONField(default=dict, blank=True)
    # One Fernet token of the JSON credentials (sync.sealed). Never serialised or shown.
    credentials = FernetTokenField(blank=True, editable=False)
    credential_fields = models.JSONField(default=list, blank=True)
    # Remote location (3PL warehouse id, channel location) → our warehouse code.
    warehouse_map = models.JSONField(default=dict, blank=True)
    poll_interval = models.PositiveIntegerField(default=300, help_text="Seconds between polls")
    status = models.CharField(
        max_length=16, choices=ConnectionStatus.choices, default=ConnectionStatus.ACTIVE
    )
    status_reason = models.CharField(max_length=500, blank=True)
    auth_failures = models.PositiveSmallIntegerField(default=0)
    throttled_until = models.DateTimeField(null=True, blank=True)
    last_polled_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=1000, blank=True)
    last_test_at = models.DateTimeField(null=True, blank=True)
    last_test_ok = models.BooleanField(null=True, blank=True)
    last_test_message = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ConnectionQuerySet.as_manager()

    class Meta:
        ordering = ["kind", "display_name", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(poll_interval__gte=30), name="connection_poll_interval_min"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.display_name} ({self.connector})"


class SyncCursor(models.Model):
    """Where a stream's next pull starts: the connector's opaque cursor, stored in the same
    transaction as the effects of the page it follows."""

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="cursors")
    stream = models.CharField(max_length=32)
    value = models.TextField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["connection", "stream"], name="sync_cursor_once")
        ]

    def __str__(self) -> str:
        return f"{self.connection_id}/{self.stream}"


class StateEntry(models.Model):
    """One key of a connection's ConnectionState (connectors.state), encrypted: connectors
    may keep refreshed tokens here."""

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="state")
    key = models.CharField(max_length=200)
    value = FernetTokenField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["connection", "key"], name="sync_state_key_once")
        ]

    def __str__(self) -> str:
        return f"{self.connection_id}:{self.key}"


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    RETRYING = "retrying", "Waiting to retry"
    SUCCEEDED = "succeeded", "Succeeded"
    PARTIAL = "partial", "Finished with errors"
    THROTTLED = "throttled", "Stopped: rate limited"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


ACTIVE_RUN_STATUSES = (RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.RETRYING)


class RunTrigger(models.TextChoices):
    SCHEDULE = "schedule", "Schedule"
    MANUAL = "manual", "Sync now"
    API = "api", "API"
    FOLLOW_UP = "follow_up", "Continuation"
    # No longer queued (fulfillment orders and shipments are pushed through the outbox,
    # sync.handlers); kept so runs recorded before still show their trigger.
    NEW_ORDERS = "new_orders", "New orders to send"


class SyncRun(models.Model):
    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="runs")
    trigger = models.CharField(max_length=16, choices=RunTrigger.choices)
    status = models.CharField(
        max_length=12, choices=RunStatus.choices, default=RunStatus.QUEUED, db_index=True
    )
    streams = models.JSONField(default=list)
    current_stream = models.CharField(max_length=32, blank=True)
    queued_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    next_retry_at = models.DateTimeField(null=True, blank=True)
    # Executions begun (a worker killed mid-run makes the broker deliver it again) and
    # retries this code scheduled itself; the difference counts lost executions.
    attempts = models.PositiveSmallIntegerField(default=0)
    retries = models.PositiveSmallIntegerField(default=0)
    pages = models.PositiveIntegerField(default=0)
    counts = models.JSONField(default=dict, blank=True)
    errors = models.JSONField(default=list, blank=True)
    error_count = models.PositiveIntegerField(default=0)
    message = models.CharField(max_length=500, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    requested_by = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-queued_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["connection"],
                condition=Q(status__in=["queued", "running", "retrying"]),
                name="one_active_run_per_connection",
            ),
        ]
        indexes = [models.Index(fields=["connection", "-queued_at"])]

    def __str__(self) -> str:
        return f"Run {self.pk} of connection {self.connection_id} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_RUN_STATUSES

    @property
    def duration(self):
        if self.started_at and self.finished_at:
            return self.finished_at - self.started_at
        return None


class ReceiptStatus(models.TextChoices):
    RECEIVED = "received", "Received"
    PROCESSING = "processing", "Being applied"
    PROCESSED = "processed", "Processed"
    IGNORED = "ignored", "Ignored"
    FAILED = "failed", "Failed"


class WebhookReceipt(models.Model):
    """A verified webhook delivery, stored raw before it is acknowledged.

    Redeliveries of the same event (same connection, topic and event id) are dropped at the
    door by the unique constraint, so each event is processed once.
    """

    connection = models.ForeignKey(
        Connection, on_delete=models.CASCADE, related_name="webhook_receipts"
    )
    received_at = models.DateTimeField(auto_now_add=True)
    topic = models.CharField(max_length=100)
    event_id = models.CharField(max_length=255)
    delivery_id = models.CharField(max_length=255, blank=True)
    headers = models.JSONField(default=dict)
    body = models.BinaryField()
    status = models.CharField(
        max_length=12, choices=ReceiptStatus.choices, default=ReceiptStatus.RECEIVED
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    claimed_at = models.DateTimeField(null=True, blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    external_id = models.CharField(max_length=255, blank=True)
    result = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["connection", "topic", "event_id"], name="webhook_event_once"
            ),
        ]
        indexes = [
            models.Index(
                fields=["received_at"],
                condition=Q(status="received"),
                name="webhook_receipt_pending",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.topic} {self.event_id}"


class PushStatus(models.TextChoices):
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"


class FulfillmentPush(models.Model):
    """A fulfillment order sent to a 3PL connection (once; the key makes a resend a replay)."""

    connection = models.ForeignKey(
        Connection, on_delete=models.CASCADE, related_name="fulfillment_pushes"
    )
    fulfillment = models.ForeignKey(
        FulfillmentOrder, on_delete=models.CASCADE, related_name="sync_pushes"
    )
    request_id = models.CharField(max_length=100)
    external_id = models.CharField(max_length=255, blank=True)
    status = models.CharField(max_length=8, choices=PushStatus.choices)
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.CharField(max_length=500, blank=True)
    pushed_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-pushed_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["connection", "fulfillment"], name="fulfillment_push_once"
            ),
            models.UniqueConstraint(
                fields=["connection", "request_id"], name="fulfillment_push_request_once"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.request_id} → {self.connection_id}"


class ChannelListing(models.Model):
    """A channel's sellable variant as its listings pull reported it: where the channel's
    inventory identifier (for available-quantity pushes) comes from."""

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="listings")
    external_id = models.CharField(max_length=255)
    external_sku = models.CharField(max_length=255, blank=True)
    inventory_ref = models.CharField(max_length=255, blank=True)
    title = models.CharField(max_length=255, blank=True)
    active = models.BooleanField(default=True)
    seen_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["external_sku", "external_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["connection", "external_id"], name="channel_listing_once"
            ),
        ]
        indexes = [models.Index(fields=["connection", "external_sku"])]

    def __str__(self) -> str:
        return f"{self.external_sku or self.external_id}@{self.connection_id}"


class AvailablePush(models.Model):
    """The last available quantity published for a SKU on a channel connection, so only
    changes are pushed."""

    connection = models.ForeignKey(
        Connection, on_delete=models.CASCADE, related_name="available_pushes"
    )
    sku = models.ForeignKey(SKU, on_delete=models.CASCADE, related_name="+")
    inventory_ref = models.CharField(max_length=255)
    # The quantity the channel last accepted; None until one push was applied.
    quantity = models.IntegerField(null=True, blank=True)
    outcome = models.CharField(max_length=16)
    message = models.CharField(max_length=300, blank=True)
    pushed_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-pushed_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["connection", "sku"], name="available_push_once"),
        ]

    def __str__(self) -> str:
        return f"{self.sku_id}={self.quantity}@{self.connection_id}"


class PendingAvailable(models.Model):
    """A SKU whose available quantity changed since it was last pushed to a channel
    connection: marked by the `channel.push_available` outbox handler, cleared by the
    debounced push, so a burst of stock changes becomes one push per SKU."""

    connection = models.ForeignKey(
        Connection, on_delete=models.CASCADE, related_name="pending_available"
    )
    sku = models.ForeignKey(SKU, on_delete=models.CASCADE, related_name="+")
    marked_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["connection", "sku"], name="pending_available_once"),
        ]

    def __str__(self) -> str:
        return f"{self.sku_id}@{self.connection_id}"
