"""Hook specifications of the ``keel`` plugin project.

A connector plugin is a module (or any object) with functions decorated by
:data:`connectors.hookimpl` named after the specs below, registered under the entry point
group ``keel.connectors``. Built-in connectors register the same way.

The hooks are deliberately few: plugins describe what they offer and build instances; the
instances (see :mod:`connectors.protocols`) do the work. Callers always pass keyword
arguments; an implementation may accept any subset of a hook's arguments, which is how new
arguments stay opt-in for existing plugins. Every hook is documented in
``connectors/README.md`` (a test enforces it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from connectors.clock import Clock
    from connectors.http import HttpContext
    from connectors.protocols import Connector
    from connectors.state import ConnectionState
    from connectors.types import ConnectorInfo

PROJECT = "keel"

hookspec = pluggy.HookspecMarker(PROJECT)


@hookspec
def keel_connector_info() -> list[ConnectorInfo]:
    """Describe the connectors this plugin provides.

    When called: once when the plugin manager loads (to validate the plugin: a plugin whose
    answer is invalid or repeats another plugin's connector name is unregistered and logged),
    then whenever the platform lists connectors (``connectors list``, the "add connection"
    form, the API).

    Arguments: none.

    Returns: a list of :class:`~connectors.types.ConnectorInfo`, one per connector (a plugin
    may offer several, e.g. the sandbox channel, 3PL and carrier). Must be cheap, must not
    touch the network, must not depend on any brand.

    Not firstresult: the caller receives one list per plugin and flattens them.
    """


@hookspec(firstresult=True)
def keel_connector_factory(
    name: str,
    settings: Mapping[str, Any],
    credentials: Mapping[str, str],
    http: HttpContext,
    state: ConnectionState,
    clock: Clock,
) -> Connector | None:
    """Build one connector instance for one connection.

    When called: each time the platform needs to talk to a connection (a sync task, a
    webhook being verified or parsed, "Test connection"). Instances are short-lived; build
    them cheaply and send no request here.

    Arguments:

    - ``name``: the connector name the connection was created with (a
      ``ConnectorInfo.name``). Return ``None`` for names this plugin does not provide.
    - ``settings``: the connection's non-secret settings, already validated by the platform
      against the connector's ``settings_schema``. Validate again anything you rely on
      (``connectors.config.validate_connection`` does both halves).
    - ``credentials``: the secret fields named in ``ConnectorInfo.secret_fields``, decrypted.
      Never log them; pass them to ``http.client(..., secrets=...)`` so the client redacts them.
    - ``http``: a :class:`~connectors.http.HttpContext`; build HTTP clients with
      ``http.client(...)`` so timeouts, retries, rate-limit pacing, egress policy, logging and
      redaction follow the platform's configuration.
    - ``state``: the connection's :class:`~connectors.state.ConnectionState` for anything that
      must outlive the instance (refreshed tokens, idempotency lookups).
    - ``clock``: the :class:`~connectors.clock.Clock` to read time from and sleep on.

    Returns: an object implementing the protocol of the connector's kind
    (:mod:`connectors.protocols`), or ``None``.

    firstresult: the first non-``None`` answer wins; plugins are asked in reverse
    registration order. Raise :class:`~connectors.errors.ConfigurationError` for invalid
    settings.
    """
