"""Partner webhooks: endpoints, fan-out of domain events into deliveries, attempts.

Flow: a domain event (outbox.services.publish_domain_event) reaches the outbox topic
`webhooks.dispatch` only when some active endpoint subscribes to its type. Its handler,
`dispatch_event`, writes one WebhookDelivery per subscribed endpoint in the outbox
consumer's transaction (so a redelivered outbox task adds none) and, after commit,
queues `webhooks.deliver` for each. An attempt signs the body (webhooks.signing), POSTs
it (webhooks.transport) and records status code, response excerpt and duration. Non-2xx
or a network error is retried with exponential backoff and jitter
(KEEL_WEBHOOK_RETRY_BASE_SECONDS doubling up to KEEL_WEBHOOK_RETRY_MAX_SECONDS) until
KEEL_WEBHOOK_MAX_ATTEMPTS; the defaults (1 min doubling to 8 h, 12 attempts) spread the
retries over about 24 h. `send_due` (beat, every few seconds) sends what is due, including
deliveries whose task was lost while the broker was down. Each task names the attempt it
makes, so a duplicate task for an attempt that already happened is a no-op.

Secrets: made here, returned once to the caller that shows them, stored encrypted
(config.crypto), decrypted only to sign. They never go into the activity log, the logs,
API responses after creation or templates other than the one-time page.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone

from audit.services import record
from config import crypto
from outbox.events import EVENT_TYPES
from outbox.services import PUBLISH_RETRY_POLICY, backoff_seconds, brand_slug
from webhooks import signing, transport
from webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint

logger = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"
TEST_EVENT = "webhook.test"
DELIVER_TASK = "webhooks.deliver"
# A queued attempt owns its delivery for this long; if its task is lost (broker outage)
# `send_due` queues the attempt again after it.
CLAIM_SECONDS = 120
ENDPOINT_FIELDS = ("url", "description", "event_types", "is_active")


@dataclass(frozen=True)
class IssuedSecret:
    endpoint: WebhookEndpoint
    # Plaintext, for the one response that shows it.
    secret: str


# --- Endpoints -----------------------------------------------------------------------------


def _clean(url: str, event_types: list[str]) -> list[str]:
    errors: dict[str, list[ValidationError]] = {}
    try:
        transport.check_destination(url)
    except transport.DestinationRefused as exc:
        errors["url"] = [ValidationError(str(exc), code="destination_refused")]
    unknown = sorted(set(event_types) - set(EVENT_TYPES))
    if unknown:
        errors["event_types"] = [
            ValidationError(f"Unknown event type {', '.join(unknown)}.", code="unknown_event")
        ]
    elif not event_types:
        errors["event_types"] = [ValidationError("Choose at least one event.", code="no_events")]
    if errors:
        raise ValidationError(errors)
    # Registry order, no duplicates: stable for display and diffs.
    return [name for name in EVENT_TYPES if name in event_types]


def _new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def create_endpoint(
    *,
    actor: Any,
    url: str,
    event_types: list[str],
    description: str = "",
    is_active: bool = True,
) -> IssuedSecret:
    event_types = _clean(url, event_types)
    secret = _new_secret()
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.create(
            url=url,
            description=description,
            event_types=event_types,
            is_active=is_active,
            secret_encrypted=crypto.encrypt(secret),
            created_by=actor if getattr(actor, "is_authenticated", False) else None,
        )
        record(
            "webhook_endpoint.created",
            obj=endpoint,
            changes={"url": url, "event_types": event_types, "is_active": is_active},
        )
    return IssuedSecret(endpoint, secret)


def update_endpoint(endpoint: WebhookEndpoint, **fields: Any) -> WebhookEndpoint:
    unknown = set(fields) - set(ENDPOINT_FIELDS)
    if unknown:
        raise TypeError(f"Not editable: {', '.join(sorted(unknown))}")
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        url = fields.get("url", endpoint.url)
        event_types = _clean(url, fields.get("event_types", endpoint.event_types))
        fields = {**fields, "event_types": event_types}
        changes = {
            name: [getattr(endpoint, name), value]
            for name, value in fields.items()
            if getattr(endpoint, name) != value
        }
        if not changes:
            return endpoint
        for name, value in fields.items():
            setattr(endpoint, name, value)
        endpoint.save()
        record("webhook_endpoint.updated", obj=endpoint, changes=changes)
    return endpoint


def delete_endpoint(endpoint: WebhookEndpoint) -> None:
    """Delete an endpoint and its delivery log; pending retries stop."""
    with transaction.atomic():
        record("webhook_endpoint.deleted", obj=endpoint, changes={"url": endpoint.url})
        endpoint.delete()


def rotate_secret(endpoint: WebhookEndpoint) -> IssuedSecret:
    """A new signing secret, effective for the next attempt; the old one stops at once."""
    secret = _new_secret()
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        endpoint.secret_encrypted = crypto.encrypt(secret)
        endpoint.save(update_fields=["secret_encrypted", "updated_at"])
        record("webhook_endpoint.secret_rotated", obj=endpoint)
    return IssuedSecret(endpoint, secret)


def endpoint_secret(endpoint: WebhookEndpoint) -> str:
    return crypto.decrypt(endpoint.secret_encrypted)


# --- Events into deliveries ----------------------------------------------------------------


def has_subscribers(event_type: str) -> bool:
    """Outbox subscription guard: only events some active endpoint wants cost a message."""
    return WebhookEndpoint.objects.filter(
        is_active=True, event_types__contains=[event_type]
    ).exists()


def dispatch_event(event: dict[str, Any]) -> list[WebhookDelivery]:
    """One delivery per active endpoint subscribed to the event (outbox handler)."""
    endpoints = WebhookEndpoint.objects.filter(
        is_active=True, event_types__contains=[event["type"]]
    ).order_by("id")
    now = timezone.now()
    deliveries = WebhookDelivery.objects.bulk_create(
        [
            WebhookDelivery(
                endpoint=endpoint,
                event_id=event["id"],
                event_type=event["type"],
                payload=event,
                max_attempts=settings.KEEL_WEBHOOK_MAX_ATTEMPTS,
                next_attempt_at=now + timedelta(seconds=CLAIM_SECONDS),
            )
            for endpoint in endpoints
        ]
    )
    _queue_attempts([(d.pk, 1) for d in deliveries])
    return deliveries


def _queue_attempts(attempts: list[tuple[int, int]]) -> None:
    """After commit, queue `webhooks.deliver` for each (delivery id, attempt number).

    Best effort: a broker that refuses leaves the deliveries to `send_due`, which finds
    them once their claim lapses.
    """
    if not attempts:
        return
    schema = connection.schema_name

    def send() -> None:
        from django_tenants.utils import schema_context

        from config.celery import app

        try:
            with schema_context(schema):
                for delivery_id, attempt in attempts:
                    app.send_task(
                        DELIVER_TASK,
                        args=[delivery_id, attempt],
                        retry=True,
                        retry_policy=PUBLISH_RETRY_POLICY,
                    )
        except Exception as exc:  # noqa: BLE001  (send_due takes over)
            logger.warning(
                "webhooks: could not queue %d attempt(s) (%s); they go out when due",
                len(attempts),
                type(exc).__name__,
            )

    transaction.on_commit(send, robust=True)


def send_due(now: datetime | None = None, *, limit: int = 500) -> int:
    """Queue the attempts that are due (beat); returns how many were queued."""
    now = now or timezone.now()
    with transaction.atomic():
        due = list(
            WebhookDelivery.objects.select_for_update(skip_locked=True)
            .filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
            .order_by("next_attempt_at")
            .only("id", "attempts", "next_attempt_at")[:limit]
        )
        for delivery in due:
            delivery.next_attempt_at = now + timedelta(seconds=CLAIM_SECONDS)
        WebhookDelivery.objects.bulk_update(due, ["next_attempt_at"])
        _queue_attempts([(d.pk, d.attempts + 1) for d in due])
    return len(due)


def attempt_delivery(delivery_id: int, attempt: int | None = None) -> WebhookDelivery | None:
    """Make one attempt now. `attempt` (from a task) makes a duplicate task a no-op:
    when that attempt has already happened nothing is sent. None while another attempt
    of the same delivery is in flight."""
    with transaction.atomic():
        delivery = (
            WebhookDelivery.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("endpoint")
            .filter(pk=delivery_id)
            .first()
        )
        if delivery is None or delivery.status != DeliveryStatus.PENDING:
            return delivery
        if attempt is not None and delivery.attempts >= attempt:
            return delivery
        endpoint = delivery.endpoint
        now = timezone.now()
        if not endpoint.is_active:
            delivery.status = DeliveryStatus.FAILED
            delivery.error = "The endpoint is disabled."
            delivery.next_attempt_at = None
            delivery.save(update_fields=["status", "error", "next_attempt_at"])
            return delivery
        body = signing.encode(delivery.payload)
        try:
            secret = endpoint_secret(endpoint)
        except crypto.InvalidToken:
            # Counted as a failed attempt, so it ends instead of looping every claim.
            outcome = transport.Outcome(
                None, "", 0, "Cannot decrypt the signing secret: check KEEL_FERNET_KEYS."
            )
        else:
            outcome = transport.post(
                endpoint.url,
                body,
                {
                    signing.SIGNATURE_HEADER: signing.sign(secret, body),
                    signing.EVENT_ID_HEADER: delivery.event_id,
                    signing.EVENT_TYPE_HEADER: delivery.event_type,
                },
            )
        _apply(delivery, outcome, now)
    logger.info(
        "webhooks: delivery %s (%s %s) to endpoint %s attempt %d: %s",
        delivery.pk,
        delivery.event_type,
        delivery.event_id,
        endpoint.pk,
        delivery.attempts,
        delivery.status_code or delivery.error,
    )
    return delivery


def _apply(delivery: WebhookDelivery, outcome: transport.Outcome, now: datetime) -> None:
    delivery.attempts += 1
    delivery.last_attempt_at = now
    delivery.status_code = outcome.status_code
    delivery.response_excerpt = outcome.excerpt
    delivery.duration_ms = outcome.duration_ms
    delivery.error = outcome.error
    if outcome.ok:
        delivery.status = DeliveryStatus.SUCCEEDED
        delivery.delivered_at = now
        delivery.next_attempt_at = None
    elif delivery.attempts >= delivery.max_attempts:
        delivery.status = DeliveryStatus.FAILED
        delivery.next_attempt_at = None
    else:
        delivery.next_attempt_at = now + timedelta(
            seconds=backoff_seconds(
                delivery.attempts,
                base=settings.KEEL_WEBHOOK_RETRY_BASE_SECONDS,
                cap=settings.KEEL_WEBHOOK_RETRY_MAX_SECONDS,
            )
        )
    delivery.save()


# --- People's actions ----------------------------------------------------------------------


def replay(delivery: WebhookDelivery) -> WebhookDelivery:
    """Send an event to its endpoint again, as a new delivery with the same event id."""
    with transaction.atomic():
        original = delivery.replay_of or delivery
        again = WebhookDelivery.objects.create(
            endpoint=delivery.endpoint,
            event_id=delivery.event_id,
            event_type=delivery.event_type,
            payload=delivery.payload,
            max_attempts=settings.KEEL_WEBHOOK_MAX_ATTEMPTS,
            next_attempt_at=timezone.now() + timedelta(seconds=CLAIM_SECONDS),
            replay_of=original,
        )
        record(
            "webhook_delivery.replayed",
            obj=again,
            changes={"event_id": delivery.event_id, "replay_of": delivery.pk},
        )
        _queue_attempts([(again.pk, 1)])
    return again


def send_test_event(endpoint: WebhookEndpoint) -> WebhookDelivery:
    """POST a `webhook.test` event now (one attempt, no retries) and return the result."""
    now = timezone.now()
    event_id = f"evt_{secrets.token_hex(16)}"
    with transaction.atomic():
        delivery = WebhookDelivery.objects.create(
            endpoint=endpoint,
            event_id=event_id,
            event_type=TEST_EVENT,
            payload={
                "id": event_id,
                "type": TEST_EVENT,
                "created_at": now.isoformat(),
                "brand": brand_slug(connection.schema_name),
                "object_id": str(endpoint.pk),
                "data": {"message": "A test event from Keel. Answer 2xx to acknowledge."},
            },
            max_attempts=1,
            next_attempt_at=now,
        )
        record("webhook_endpoint.test_sent", obj=endpoint, changes={"event_id": event_id})
    return attempt_delivery(delivery.pk) or delivery


def cleanup(now: datetime | None = None) -> int:
    """Delete finished deliveries past retention (KEEL_WEBHOOK_RETENTION_DAYS)."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.KEEL_WEBHOOK_RETENTION_DAYS)
    deleted, _ = (
        WebhookDelivery.objects.exclude(status=DeliveryStatus.PENDING)
        .filter(created_at__lt=cutoff)
        .delete()
    )
    return deleted
