"""The one helper every app writes the activity log through."""

from __future__ import annotations

from typing import Any

from django.db import models

from audit.context import SYSTEM, Actor, current_actor, current_request_id
from audit.models import ActivityEntry

__all__ = ["SYSTEM", "Actor", "record"]


def record(
    action: str,
    *,
    obj: models.Model | None = None,
    changes: dict[str, Any] | None = None,
    actor: Actor | None = None,
) -> ActivityEntry:
    """Append an activity entry in the current schema.

    `action` is a dotted verb ("user.invited", "apikey.revoked"). `changes` maps a field
    to `[before, after]`, or holds any JSON-able detail. The actor defaults to whoever the
    request/task context says is acting.
    """
    who = actor or current_actor()
    entry = ActivityEntry(
        actor_type=who.type,
        actor_id=who.id,
        actor_label=who.label[:200],
        action=action,
        changes=changes or {},
        request_id=current_request_id(),
    )
    if obj is not None:
        entry.object_type = obj._meta.label_lower
        entry.object_id = str(obj.pk)
        entry.object_repr = str(obj)[:200]
    entry.save()
    return entry


def record_many(
    items: list[tuple[str, models.Model, dict[str, Any]]], *, actor: Actor | None = None
) -> None:
    """Append many entries in one INSERT (bulk paths): (action, obj, changes) each."""
    who = actor or current_actor()
    request_id = current_request_id()
    ActivityEntry.objects.bulk_create(
        [
            ActivityEntry(
                actor_type=who.type,
                actor_id=who.id,
                actor_label=who.label[:200],
                action=action,
                changes=changes or {},
                request_id=request_id,
                object_type=obj._meta.label_lower,
                object_id=str(obj.pk),
                object_repr=str(obj)[:200],
            )
            for action, obj, changes in items
        ]
    )


def diff(instance: models.Model, before: dict[str, Any], fields: list[str]) -> dict[str, list]:
    """Field-by-field [before, after] for the fields that changed."""
    out = {}
    for field in fields:
        after = getattr(instance, field)
        if before.get(field) != after:
            out[field] = [before.get(field), after]
    return out
