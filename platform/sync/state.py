"""The SDK's ConnectionState (connectors.state) for a stored connection.

One row per key, value encrypted like the credentials: the state is the connector's, and
a connector may keep a refreshed token in it. `update` runs under a row lock, so two
workers updating one key never lose each other's writes; a value is JSON (a round trip
here refuses anything the connector could not get back).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

from django.db import transaction

from sync.models import StateEntry
from sync.sealed import seal, unseal


class DatabaseState:
    """ConnectionState of one connection."""

    def __init__(self, connection_id: int) -> None:
        self.connection_id = connection_id

    def get(self, key: str, default: Any = None) -> Any:
        token = (
            StateEntry.objects.filter(connection_id=self.connection_id, key=key)
            .values_list("value", flat=True)
            .first()
        )
        return copy.deepcopy(default) if token is None else unseal(token)

    def set(self, key: str, value: Any) -> None:
        token = seal(json.loads(json.dumps(value)))
        StateEntry.objects.update_or_create(
            connection_id=self.connection_id, key=key, defaults={"value": token}
        )

    def update(self, key: str, fn: Callable[[Any], Any], default: Any = None) -> Any:
        with transaction.atomic():
            StateEntry.objects.bulk_create(
                [
                    StateEntry(
                        connection_id=self.connection_id,
                        key=key,
                        value=seal(default),
                    )
                ],
                ignore_conflicts=True,
            )
            entry = StateEntry.objects.select_for_update().get(
                connection_id=self.connection_id, key=key
            )
            new = json.loads(json.dumps(fn(unseal(entry.value))))
            entry.value = seal(new)
            entry.save(update_fields=["value", "updated_at"])
        return copy.deepcopy(new)

    def snapshot(self) -> dict[str, Any]:
        """Everything stored, decoded (for the connection page and tests)."""
        return {
            key: unseal(token)
            for key, token in StateEntry.objects.filter(
                connection_id=self.connection_id
            ).values_list("key", "value")
        }
