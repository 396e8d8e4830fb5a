"""Small persistent state a connector instance may keep per connection.

Connector instances are short-lived (built per task from stored settings) and plugin modules
hold no mutable globals, so anything that must outlive one call — a refreshed OAuth token, the
sandbox 3PL's accepted orders, a purchased label looked up by idempotency key — goes through
a :class:`ConnectionState` the platform persists (a JSON document per connection). Values
must be JSON-serialisable. Credentials stored here are the platform's to encrypt.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class ConnectionState(Protocol):
    """Per-connection key/value store with JSON values."""

    def get(self, key: str, default: Any = None) -> Any:
        """The stored value, or ``default``."""
        ...

    def set(self, key: str, value: Any) -> None:
        """Store ``value`` (JSON-serialisable) under ``key``."""
        ...

    def update(self, key: str, fn: Callable[[Any], Any], default: Any = None) -> Any:
        """Atomically replace the value with ``fn(current or default)`` and return it.

        The platform implements this under a row lock, so two workers updating one
        connection's state never lose each other's writes.
        """
        ...


class MemoryState:
    """In-process :class:`ConnectionState` for tests and the demo.

    Values go through a JSON round trip, so a connector that stores something the platform
    could not persist fails here first.
    """

    def __init__(self, initial: dict[str, Any] | None = None) -> None:
        self._data: dict[str, str] = {}
        self._lock = threading.Lock()
        for key, value in (initial or {}).items():
            self.set(key, value)

    def get(self, key: str, default: Any = None) -> Any:
        with self._lock:
            raw = self._data.get(key)
        return copy.deepcopy(default) if raw is None else json.loads(raw)

    def set(self, key: str, value: Any) -> None:
        encoded = json.dumps(value, sort_keys=True)
        with self._lock:
            self._data[key] = encoded

    def update(self, key: str, fn: Callable[[Any], Any], default: Any = None) -> Any:
        with self._lock:
            raw = self._data.get(key)
            current = copy.deepcopy(default) if raw is None else json.loads(raw)
            new = fn(current)
            self._data[key] = json.dumps(new, sort_keys=True)
            return json.loads(self._data[key])

    def snapshot(self) -> dict[str, Any]:
        """Everything stored, decoded (for assertions)."""
        with self._lock:
            return {k: json.loads(v) for k, v in self._data.items()}
