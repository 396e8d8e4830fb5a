"""Outbox rows: side effects that leave Keel, written in the transaction that causes them."""

from __future__ import annotations

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models


class MessageStatus(models.TextChoices):
    # Waiting for the relay: new, or back after a failed attempt (see next_attempt_at).
    PENDING = "pending", "Waiting"
    # Handed to the broker; its consumer has not finished yet.
    PUBLISHED = "published", "Published"
    DONE = "done", "Done"
    # Failed max_attempts times: parked until a person retries it.
    DEAD = "dead", "Parked"


class OutboxMessageQuerySet(models.QuerySet):
    def due(self, now) -> OutboxMessageQuerySet:
        """Pending messages whose backoff (if any) has passed."""
        return self.filter(status=MessageStatus.PENDING).filter(
            models.Q(next_attempt_at__isnull=True) | models.Q(next_attempt_at__lte=now)
        )


class OutboxMessage(models.Model):
    topic = models.CharField(max_length=100)
    # Idempotency key, unique per brand: enqueueing the same key twice keeps one message,
    # and handlers may pass it on to remote APIs that accept one.
    key = models.CharField(max_length=200, unique=True)
    payload = models.JSONField(encoder=DjangoJSONEncoder, default=dict)
    status = models.CharField(
        max_length=12, choices=MessageStatus.choices, default=MessageStatus.PENDING
    )
    # Failed handler runs (a broker that refuses a publish is not the message's fault and
    # does not count).
    attempts = models.PositiveIntegerField(default=0)
    # How often the relay handed it to the broker; above 1 means it was re-published.
    publish_count = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    published_at = models.DateTimeField(null=True, blank=True)
    consumed_at = models.DateTimeField(null=True, blank=True)
    parked_at = models.DateTimeField(null=True, blank=True)

    objects = OutboxMessageQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        indexes = [
            # The relay's scan: pending rows in id order.
            models.Index(
                fields=["id"],
                condition=models.Q(status="pending"),
                name="outbox_pending",
            ),
            # Published rows whose task may have been lost (re-publish sweep).
            models.Index(
                fields=["published_at"],
                condition=models.Q(status="published"),
                name="outbox_in_flight",
            ),
            models.Index(fields=["status", "-id"], name="outbox_status_id"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(status="done") | models.Q(consumed_at__isnull=False),
                name="outbox_done_has_consumed_at",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.topic} #{self.pk}"
