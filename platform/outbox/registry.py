"""Who consumes which outbox topic, and which topics hear which domain events.

A topic names one side effect ("channel.push_available", "webhooks.dispatch") and has
exactly one handler, registered by the app that owns the effect in `<app>/handlers.py`
(imported at start-up by outbox.apps):

    from outbox.registry import handler, subscribe

    @handler("channel.push_available", queue="sync")
    def push_available(message: OutboxMessage) -> None:
        ...  # message.payload, message.key (pass it on as the remote idempotency key)

    # Optional: have a domain event enqueue a message on your topic.
    subscribe("stock.changed", "channel.push_available")

    # Internal events (outbox.events.INTERNAL_EVENT_TYPES) work the same way; `where` is
    # asked with the event's data, so only the objects this effect concerns cost a row.
    subscribe("fulfillment.opened", "threepl.push_fulfillment", where=served_by_a_3pl)

The handler runs inside the transaction that marks the message consumed, under a row
lock, so its database writes and "consumed" commit together and a duplicate task finds
the message done. A handler that raises has its writes rolled back and is retried with
backoff; after `max_attempts` failures the message is parked for a person to retry.
Effects outside the database (HTTP calls) are at-least-once: send `message.key` (or
another key stable for the effect) as the remote idempotency key where the remote API
accepts one. A handler told by the remote when to come back (Retry-After), or finding the
same effect in progress elsewhere, raises RetryLater: the next attempt waits that long
instead of the exponential backoff.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ImproperlyConfigured

if TYPE_CHECKING:
    from outbox.models import OutboxMessage

HandlerFunc = Callable[["OutboxMessage"], object]
# Every event type: for subscribers that relay all events (partner webhooks).
ALL_EVENTS = "*"


@dataclass(frozen=True)
class Handler:
    topic: str
    func: HandlerFunc
    queue: str = "default"
    # None: settings.KEEL_OUTBOX_MAX_ATTEMPTS.
    max_attempts: int | None = None

    @property
    def qualname(self) -> str:
        return f"{self.func.__module__}.{self.func.__qualname__}"


class RetryLater(Exception):  # noqa: N818  (a signal to the consumer, not an error kind)
    """Raised by a handler whose effect must wait: the attempt counts as failed (its writes
    roll back) and the next one comes after `seconds` (capped like the backoff), or after
    the usual backoff when `seconds` is None."""

    def __init__(self, message: str, *, seconds: float | None = None) -> None:
        super().__init__(message)
        self.seconds = seconds


@dataclass(frozen=True)
class Subscription:
    event_type: str
    topic: str
    # Asked at publish time, inside the publishing transaction: False skips the message
    # (e.g. no webhook endpoint wants this event), so idle subscribers cost no rows.
    when: Callable[[str], bool] | None = None
    # Asked after `when`, with the event's data: False skips the message for this object
    # (e.g. a fulfillment order at a warehouse no 3PL connection serves).
    where: Callable[[dict[str, Any]], bool] | None = None


_handlers: dict[str, Handler] = {}
_subscriptions: dict[tuple[str, str], Subscription] = {}


def handler(
    topic: str, *, queue: str = "default", max_attempts: int | None = None
) -> Callable[[HandlerFunc], HandlerFunc]:
    """Register the decorated function as the consumer of `topic`."""

    def decorate(func: HandlerFunc) -> HandlerFunc:
        new = Handler(topic, func, queue, max_attempts)
        existing = _handlers.get(topic)
        # The same function imported again (autoreload, a test importing the module) is
        # fine; a second, different consumer of one topic is a wiring bug.
        if existing is not None and existing.qualname != new.qualname:
            raise ImproperlyConfigured(
                f"Outbox topic {topic!r} already has handler {existing.qualname}."
            )
        _handlers[topic] = new
        return func

    return decorate


def subscribe(
    event_type: str,
    topic: str,
    *,
    when: Callable[[str], bool] | None = None,
    where: Callable[[dict[str, Any]], bool] | None = None,
) -> None:
    """Enqueue a message on `topic` for every domain event of `event_type` (or ALL_EVENTS,
    which means every partner-visible event, never an internal one)."""
    from outbox.events import is_known

    if event_type != ALL_EVENTS and not is_known(event_type):
        raise ImproperlyConfigured(f"Unknown domain event type {event_type!r}.")
    _subscriptions[(event_type, topic)] = Subscription(event_type, topic, when, where)


def get(topic: str) -> Handler | None:
    return _handlers.get(topic)


def topics() -> list[str]:
    return sorted(_handlers)


def subscriptions_for(event_type: str) -> list[Subscription]:
    from outbox.events import EVENT_TYPES

    # Internal events never reach subscribers of everything (partner webhooks).
    names = (event_type, ALL_EVENTS) if event_type in EVENT_TYPES else (event_type,)
    return [s for s in _subscriptions.values() if s.event_type in names]


def unsubscribe(event_type: str, topic: str) -> None:
    """Remove a subscription (tests add their own and take them away again)."""
    _subscriptions.pop((event_type, topic), None)
