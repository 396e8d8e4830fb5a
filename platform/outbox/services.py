"""The transactional outbox: every side effect that leaves Keel goes through here.

Write side — `enqueue(topic, payload, key=...)` inserts an OutboxMessage in the caller's
transaction, so a rolled-back change leaves no message and a committed one always has
its message. The key is unique per brand: enqueueing it again is a no-op. After commit a
best-effort kick asks a worker to relay now; if the broker is down the kick is dropped
and the scheduled relay (every few seconds) publishes instead.

Relay — `relay()` publishes due messages in id order, one Celery task
(`outbox.consume`) each, on the queue of the topic's handler, and marks them published.
A publish the broker refuses ends the run and leaves that message and the rest pending
for the next run: a broker outage delays messages, never loses them. Published messages
whose task never finished within KEEL_OUTBOX_REPUBLISH_AFTER_SECONDS (a broker that lost
its queue) are published again. One relay per brand runs at a time (advisory lock).

Consumer — `consume(message_id)` locks the row, skips it when already done (a duplicate
or re-published task is a no-op), runs the handler and marks the message done in the same
transaction. A failing handler's writes roll back; the message waits with exponential
backoff (or as long as a handler's RetryLater says) and after max attempts is parked
(status "dead") until a person retries it.

Domain events — `publish_domain_event` writes one message per subscribed topic
(outbox.registry.subscribe), in the caller's transaction. Partner-visible events are in
outbox.events.EVENT_TYPES; internal ones (INTERNAL_EVENT_TYPES: a fulfillment order
opened or shipped) only reach Keel's own subscribers, e.g. sync's pushes to 3PLs and
channels.

Stock — inventory writes StockEvent rows in the stock transaction. The relay turns them
into `stock.changed` domain events, one per SKU × warehouse once it has been quiet for
KEEL_OUTBOX_STOCK_DEBOUNCE_SECONDS (at most KEEL_OUTBOX_STOCK_MAX_WAIT_SECONDS late),
and marks them published. StockEvent.published_at belongs to this relay: other consumers
of stock changes subscribe to `stock.changed` instead of reading the table.
"""

from __future__ import annotations

import json
import logging
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import DEFAULT_DB_ALIAS, connection, transaction
from django.db.models import F, Q
from django.utils import timezone
from django_tenants.utils import get_public_schema_name, schema_context

from audit.services import record
from outbox import registry
from outbox.events import is_known
from outbox.models import MessageStatus, OutboxMessage

logger = logging.getLogger(__name__)

RELAY_TASK = "outbox.relay"
CONSUME_TASK = "outbox.consume"
RELAY_QUEUE = "default"
# One quick reconnect, then give up: a request thread must never wait for a broker that
# is down (kombu's default connect retries take ~6 s per publish).
PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.1}
# After a failed kick, skip kicks in this process for a while: during an outage every
# commit would otherwise pay the failed connect again; the scheduled relay covers it.
KICK_PAUSE_SECONDS = 5.0
_EVENT_NAMESPACE = uuid.UUID("6f1d9a4e-3c55-4a8e-9a61-2f4d3b9c7e10")
ERROR_LIMIT = 2000


# --- Write side ----------------------------------------------------------------------------


def _require_brand() -> str:
    schema = connection.schema_name
    if not schema or schema == get_public_schema_name():
        # The outbox is a brand table; a message written "nowhere" would be a lost effect.
        raise RuntimeError("The outbox needs a brand schema (connection is in public).")
    return schema


def enqueue(topic: str, payload: dict[str, Any], *, key: str) -> OutboxMessage | None:
    """Write a message in the current transaction; None when `key` was enqueued before.

    `payload` must be JSON-able (Decimal, dates and UUIDs are turned into strings).
    """
    _require_brand()
    if not key or len(key) > OutboxMessage._meta.get_field("key").max_length:
        raise ValueError("An outbox key is 1 to 200 characters.")
    if not topic:
        raise ValueError("An outbox message needs a topic.")
    body = json.dumps(payload, cls=DjangoJSONEncoder)
    now = timezone.now()
    table = connection.ops.quote_name(OutboxMessage._meta.db_table)
    # ON CONFLICT rather than catching IntegrityError: an error would abort the caller's
    # transaction (or cost a savepoint per message).
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} "  # noqa: S608  (table name from the model, values bound)
            "(topic, key, payload, status, attempts, publish_count, last_error, created_at) "
            "VALUES (%s, %s, %s::jsonb, %s, 0, 0, '', %s) "
            "ON CONFLICT (key) DO NOTHING RETURNING id",
            [topic, key, body, MessageStatus.PENDING, now],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    _schedule_kick()
    message = OutboxMessage(
        id=row[0], topic=topic, key=key, payload=json.loads(body), created_at=now
    )
    message._state.adding = False
    message._state.db = DEFAULT_DB_ALIAS
    return message


class _Kick:
    """on_commit callback asking a worker to relay this brand's outbox now."""

    paused_until = 0.0

    def __init__(self, schema: str):
        self.schema = schema

    def __call__(self) -> None:
        if time.monotonic() < _Kick.paused_until:
            return
        from config.celery import app

        try:
            with schema_context(self.schema):
                app.send_task(
                    RELAY_TASK, queue=RELAY_QUEUE, retry=True, retry_policy=PUBLISH_RETRY_POLICY
                )
        except Exception as exc:  # noqa: BLE001  (best effort: the scheduled relay follows)
            _Kick.paused_until = time.monotonic() + KICK_PAUSE_SECONDS
            logger.warning(
                "outbox: could not kick the relay for %s (%s); the scheduled relay will "
                "publish its messages",
                self.schema,
                type(exc).__name__,
            )


def _schedule_kick() -> None:
    schema = connection.schema_name
    # One kick per transaction is enough however many messages it writes.
    for _savepoints, func, _robust in getattr(connection, "run_on_commit", ()):
        if isinstance(func, _Kick) and func.schema == schema:
            return
    transaction.on_commit(_Kick(schema), robust=True)


_brand_slugs: dict[str, str] = {}


def brand_slug(schema: str) -> str:
    """The brand's subdomain slug for a schema (cached: a schema keeps its brand)."""
    if schema not in _brand_slugs:
        from tenants.models import Brand

        slug = Brand.objects.filter(schema_name=schema).values_list("slug", flat=True).first()
        _brand_slugs[schema] = slug or schema
    return _brand_slugs[schema]


def publish_domain_event(
    event_type: str,
    obj_id: object,
    data: dict[str, Any] | Callable[[], dict[str, Any]],
    *,
    key: str | None = None,
    occurred_at: datetime | None = None,
) -> str:
    """Publish a domain event from inside the transaction that made the change.

    Every subscriber of `event_type` (see outbox.registry.subscribe) gets a message in this
    transaction. Returns the event id ("evt_…"), which receivers use to drop duplicates.
    `data` may be a function building it: it is called only when someone subscribes, so
    an event nobody listens to costs one query, not the work of describing the object.
    `key` makes the event itself idempotent: the same key always yields the same event id,
    so publishing it twice writes nothing the second time.
    """
    if not is_known(event_type):
        raise ValueError(f"Unknown domain event type {event_type!r}: add it to outbox.events.")
    schema = _require_brand()
    event_uuid = uuid.uuid5(_EVENT_NAMESPACE, f"{schema}:{key}") if key else uuid.uuid4()
    event_id = f"evt_{event_uuid.hex}"
    subscriptions = [
        subscription
        for subscription in registry.subscriptions_for(event_type)
        if subscription.when is None or subscription.when(event_type)
    ]
    if not subscriptions:
        return event_id
    described = data() if callable(data) else data
    topics = [s.topic for s in subscriptions if s.where is None or s.where(described)]
    if not topics:
        return event_id
    envelope = {
        "id": event_id,
        "type": event_type,
        "created_at": (occurred_at or timezone.now()).isoformat(),
        "brand": brand_slug(schema),
        "object_id": str(obj_id),
        "data": described,
    }
    for topic in topics:
        enqueue(topic, envelope, key=f"{event_id}:{topic}")
    return event_id


# --- Relay ---------------------------------------------------------------------------------


@dataclass
class RelayResult:
    published: int = 0
    republished: int = 0
    stock_events: int = 0
    broker_error: str = ""
    skipped: bool = False


@contextmanager
def _relay_lock() -> Iterator[bool]:
    """One relay per brand at a time, so publishing follows id order and two relays don't
    split a SKU's stock events. Session-level: the relay commits batch by batch."""
    name = f"keel.outbox.relay:{connection.schema_name}"
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(hashtext(%s))", [name])
        acquired = cursor.fetchone()[0]
    try:
        yield acquired
    finally:
        if acquired:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(hashtext(%s))", [name])


def relay(*, batch_size: int = 200, max_messages: int = 10_000) -> RelayResult:
    """Publish this brand's due messages (see module docstring). Safe to run any time."""
    from config.celery import app

    _require_brand()
    result = RelayResult()
    with _relay_lock() as acquired:
        if not acquired:
            result.skipped = True
            return result
        result.stock_events = relay_stock_events()
        with app.connection_for_write() as broker:
            while result.published + result.republished < max_messages:
                sent, resent, error = _publish_batch(app, broker, batch_size)
                result.published += sent
                result.republished += resent
                if error:
                    result.broker_error = error
                    break
                if sent + resent == 0:
                    break
    if result.broker_error:
        logger.warning(
            "outbox: broker refused a publish (%s); %d message(s) published before it, the "
            "rest wait for the next relay",
            result.broker_error,
            result.published + result.republished,
        )
    return result


def _publish_batch(app, broker, batch_size: int) -> tuple[int, int, str]:
    now = timezone.now()
    stale = now - timedelta(seconds=settings.KEEL_OUTBOX_REPUBLISH_AFTER_SECONDS)
    due = Q(status=MessageStatus.PENDING) & (
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    )
    lost = Q(status=MessageStatus.PUBLISHED, published_at__lt=stale)
    sent: list[int] = []
    resent: list[int] = []
    error = ""
    with transaction.atomic():
        batch = list(
            OutboxMessage.objects.select_for_update(skip_locked=True)
            .filter(due | lost)
            .order_by("id")
            .only("id", "topic", "status", "attempts")[:batch_size]
        )
        for message in batch:
            handler = registry.get(message.topic)
            if handler is None:
                _fail(message, None, f"No handler is registered for topic {message.topic!r}.")
                continue
            try:
                app.send_task(
                    CONSUME_TASK,
                    args=[message.pk],
                    queue=handler.queue,
                    connection=broker,
                    retry=True,
                    retry_policy=PUBLISH_RETRY_POLICY,
                )
            except Exception as exc:  # noqa: BLE001  (any refusal: keep it for the next run)
                error = f"{type(exc).__name__}: {exc}"[:ERROR_LIMIT]
                OutboxMessage.objects.filter(pk=message.pk).update(last_error=error)
                break
            (resent if message.status == MessageStatus.PUBLISHED else sent).append(message.pk)
        if sent or resent:
            OutboxMessage.objects.filter(pk__in=sent + resent).update(
                status=MessageStatus.PUBLISHED,
                published_at=now,
                publish_count=F("publish_count") + 1,
            )
    if resent:
        logger.info("outbox: re-published %d message(s) whose task never finished", len(resent))
    return len(sent), len(resent), error


def relay_stock_events(now: datetime | None = None, *, limit: int = 5000) -> int:
    """Turn settled StockEvent rows into `stock.changed` events; returns rows consumed."""
    from catalog.models import SKU
    from inventory.models import StockEvent, Warehouse

    now = now or timezone.now()
    quiet = now - timedelta(seconds=settings.KEEL_OUTBOX_STOCK_DEBOUNCE_SECONDS)
    overdue = now - timedelta(seconds=settings.KEEL_OUTBOX_STOCK_MAX_WAIT_SECONDS)
    with transaction.atomic():
        rows = list(
            StockEvent.objects.select_for_update(skip_locked=True)
            .filter(published_at__isnull=True)
            .order_by("id")[:limit]
        )
        groups: dict[tuple[int, int], list] = defaultdict(list)
        for row in rows:
            groups[(row.sku_id, row.warehouse_id)].append(row)
        # A burst is published once it has been quiet for the debounce window, or once
        # its first change is overdue, so a SKU that never stops moving still reports.
        ready = {
            key: events
            for key, events in groups.items()
            if events[-1].created_at <= quiet or events[0].created_at <= overdue
        }
        if not ready:
            return 0
        skus = dict(SKU.objects.filter(pk__in={k[0] for k in ready}).values_list("pk", "code"))
        warehouses = dict(
            Warehouse.objects.filter(pk__in={k[1] for k in ready}).values_list("pk", "code")
        )
        done: list[int] = []
        for (sku_id, warehouse_id), events in ready.items():
            first, last = events[0], events[-1]
            done.extend(e.pk for e in events)
            if first.available_before == last.available_after:
                continue  # the burst cancelled itself out: nothing changed for anyone
            publish_domain_event(
                "stock.changed",
                f"{sku_id}:{warehouse_id}",
                {
                    "sku": {"id": sku_id, "code": skus.get(sku_id, "")},
                    "warehouse": {"id": warehouse_id, "code": warehouses.get(warehouse_id, "")},
                    "available_before": first.available_before,
                    "available_after": last.available_after,
                    "changes": len(events),
                    "causes": sorted({e.cause for e in events}),
                    "first_change_at": first.created_at.isoformat(),
                    "last_change_at": last.created_at.isoformat(),
                },
                key=f"stock:{sku_id}:{warehouse_id}:{last.pk}",
                occurred_at=last.created_at,
            )
        StockEvent.objects.filter(pk__in=done).update(published_at=now)
    return len(done)


# --- Consumer ------------------------------------------------------------------------------


def backoff_seconds(attempt: int, *, base: float, cap: float) -> float:
    """Exponential backoff with ±20 % jitter: base, 2·base, 4·base … capped at `cap`.

    Jitter spreads retries of many messages that failed together (an outage) so they do
    not all come back in the same second.
    """
    delay = min(base * 2 ** max(attempt - 1, 0), cap)
    return delay * random.uniform(0.8, 1.2)


def consume(message_id: int) -> str:
    """Run the handler of one message once; see module docstring. Returns what happened:
    "done", "duplicate", "not_due", "failed", "parked" or "missing"."""
    now = timezone.now()
    with transaction.atomic():
        message = OutboxMessage.objects.select_for_update().filter(pk=message_id).first()
        if message is None:
            return "missing"
        if message.status in (MessageStatus.DONE, MessageStatus.DEAD):
            return "duplicate"
        if message.status == MessageStatus.PENDING and (
            message.next_attempt_at is not None and message.next_attempt_at > now
        ):
            # A stale copy arrived while the message waits out its backoff.
            return "not_due"
        handler = registry.get(message.topic)
        if handler is None:
            return _fail(message, None, f"No handler is registered for topic {message.topic!r}.")
        try:
            with transaction.atomic():
                handler.func(message)
        except Exception as exc:  # noqa: BLE001  (any handler error is a failed attempt)
            logger.warning(
                "outbox: handler for %s failed on message %s (attempt %d): %s",
                message.topic,
                message.pk,
                message.attempts + 1,
                type(exc).__name__,
            )
            return _fail(
                message,
                handler,
                f"{type(exc).__name__}: {exc}",
                retry_after=exc.seconds if isinstance(exc, registry.RetryLater) else None,
            )
        message.status = MessageStatus.DONE
        message.consumed_at = timezone.now()
        message.next_attempt_at = None
        message.save(update_fields=["status", "consumed_at", "next_attempt_at"])
    return "done"


def _fail(
    message: OutboxMessage,
    handler: registry.Handler | None,
    error: str,
    *,
    retry_after: float | None = None,
) -> str:
    now = timezone.now()
    limit = (handler.max_attempts if handler else None) or settings.KEEL_OUTBOX_MAX_ATTEMPTS
    message.attempts += 1
    message.last_error = error[:ERROR_LIMIT]
    if message.attempts >= limit:
        message.status = MessageStatus.DEAD
        message.parked_at = now
        message.next_attempt_at = None
        outcome = "parked"
    else:
        message.status = MessageStatus.PENDING
        if retry_after is not None:
            # The remote said when (Retry-After): sooner is refused again, later is idle.
            delay = min(max(retry_after, 1.0), settings.KEEL_OUTBOX_RETRY_MAX_SECONDS)
        else:
            delay = backoff_seconds(
                message.attempts,
                base=settings.KEEL_OUTBOX_RETRY_BASE_SECONDS,
                cap=settings.KEEL_OUTBOX_RETRY_MAX_SECONDS,
            )
        message.next_attempt_at = now + timedelta(seconds=delay)
        outcome = "failed"
    message.save(update_fields=["attempts", "last_error", "status", "parked_at", "next_attempt_at"])
    if outcome == "parked":
        record(
            "outbox.parked",
            obj=message,
            changes={
                "topic": message.topic,
                "key": message.key,
                "attempts": message.attempts,
                "error": message.last_error[:500],
            },
        )
    return outcome


# --- People --------------------------------------------------------------------------------


def retry_message(message: OutboxMessage) -> OutboxMessage:
    """Give a parked message a fresh set of attempts."""
    with transaction.atomic():
        message = OutboxMessage.objects.select_for_update().get(pk=message.pk)
        if message.status != MessageStatus.DEAD:
            raise ValidationError("Only parked messages can be retried.", code="not_parked")
        message.status = MessageStatus.PENDING
        message.attempts = 0
        message.next_attempt_at = None
        message.parked_at = None
        message.save(update_fields=["status", "attempts", "next_attempt_at", "parked_at"])
        record("outbox.retried", obj=message, changes={"topic": message.topic})
        _schedule_kick()
    return message


def retry_parked(*, topic: str = "") -> int:
    """Retry every parked message (of one topic when given); returns how many."""
    with transaction.atomic():
        parked = OutboxMessage.objects.filter(status=MessageStatus.DEAD)
        if topic:
            parked = parked.filter(topic=topic)
        count = parked.update(
            status=MessageStatus.PENDING, attempts=0, next_attempt_at=None, parked_at=None
        )
        if count:
            record("outbox.retried_all", changes={"topic": topic or "all", "messages": count})
            _schedule_kick()
    return count


def cleanup(now: datetime | None = None) -> int:
    """Delete consumed messages past the retention period; parked ones stay."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.KEEL_OUTBOX_RETENTION_DAYS)
    deleted, _ = OutboxMessage.objects.filter(
        status=MessageStatus.DONE, consumed_at__lt=cutoff
    ).delete()
    return deleted
