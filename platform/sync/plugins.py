"""The platform's side of the connector SDK: which connectors exist, and building one
short-lived connector instance for a stored connection.

The plugin manager is the deployment's (`connectors.manager.get_plugin_manager`, loaded
lazily on first use and cached), filtered by the operator allowlist
`settings.KEEL_CONNECTOR_PLUGINS`. Hooks are called directly, with keyword arguments.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import connection as db_connection

from connectors.clock import SYSTEM_CLOCK, Clock
from connectors.errors import ConfigurationError
from connectors.http import EgressPolicy, HttpContext, RetryPolicy
from connectors.manager import KeelPluginManager, get_plugin_manager
from connectors.types import ConnectorInfo

if TYPE_CHECKING:
    from sync.models import Connection

#: Time source for connectors and their HTTP clients. Tests swap in a VirtualClock shared
#: with a fake server, so Retry-After and backoff cost no real time.
clock: Clock = SYSTEM_CLOCK


def manager() -> KeelPluginManager:
    return get_plugin_manager(getattr(settings, "KEEL_CONNECTOR_PLUGINS", None))


def infos() -> dict[str, ConnectorInfo]:
    """Every installed connector by name."""
    return {info.name: info for batch in manager().hook.keel_connector_info() for info in batch}


def info_for(name: str) -> ConnectorInfo:
    found = infos().get(name)
    if found is None:
        raise ConfigurationError(f"connector {name!r} is not installed")
    return found


def egress() -> EgressPolicy:
    # Production refuses plain http and private addresses (a brand's settings choose the
    # host); tests and local fakes on 127.0.0.1 need the permissive policy.
    if getattr(settings, "KEEL_CONNECTOR_EGRESS_PERMISSIVE", False):
        return EgressPolicy.permissive()
    return EgressPolicy()


def http_context(
    conn: Connection, credentials: Mapping[str, Any], *, retry: RetryPolicy | None = None
) -> HttpContext:
    secrets = tuple(str(v) for v in credentials.values() if isinstance(v, str) and v)
    return HttpContext(
        clock=clock,
        egress=egress(),
        retry=retry or RetryPolicy(),
        # Every client the connector builds redacts these, even if it forgets to say so.
        secrets=secrets,
        log_context={"brand": db_connection.schema_name, "connection": str(conn.pk)},
    )


@contextmanager
def connector_for(conn: Connection, *, retry: RetryPolicy | None = None) -> Iterator[Any]:
    """A connector instance for `conn`, closed afterwards."""
    from sync.state import DatabaseState

    credentials = conn_credentials(conn)
    instance = manager().hook.keel_connector_factory(
        name=conn.connector,
        settings=dict(conn.settings),
        credentials=credentials,
        http=http_context(conn, credentials, retry=retry),
        state=DatabaseState(conn.pk),
        clock=clock,
    )
    if instance is None:
        raise ConfigurationError(f"connector {conn.connector!r} is not installed")
    try:
        yield instance
    finally:
        instance.close()


def conn_credentials(conn: Connection) -> dict[str, str]:
    from sync.sealed import unseal

    if not conn.credentials:
        return {}
    return dict(unseal(conn.credentials))
