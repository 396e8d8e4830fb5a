"""Built-in sandbox connectors plugin (entry point ``sandbox``): a simulated channel
(``sandbox_channel``), 3PL (``sandbox_3pl``) and carrier (``sandbox_carrier``) that need no
network and no account — what ``make run``'s demo brand is connected to.

See :mod:`connectors.sandbox.connectors` and :mod:`connectors.sandbox.simulation`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors import __version__, hookimpl
from connectors.clock import Clock
from connectors.state import ConnectionState
from connectors.types import Capability, ConnectorInfo, ConnectorKind

CHANNEL = "sandbox_channel"
THREEPL = "sandbox_3pl"
CARRIER = "sandbox_carrier"

_COMMON: dict[str, Any] = {
    "seed": {
        "type": "integer",
        "title": "Random seed",
        "description": "Same seed, same simulated traffic.",
        "default": 42,
    },
    "skus": {
        "type": "array",
        "title": "SKUs",
        "description": "SKUs the simulation sells and stocks (defaults to a demo set).",
        "items": {"type": "string", "minLength": 1},
        "uniqueItems": True,
    },
    "currency": {"type": "string", "pattern": "^[A-Z]{3}$", "default": "USD"},
    "page_size": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
}


def _schema(title: str, extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": title,
        "type": "object",
        "additionalProperties": False,
        "properties": {**_COMMON, **extra},
    }


CHANNEL_INFO = ConnectorInfo(
    name=CHANNEL,
    kind=ConnectorKind.CHANNEL,
    version=__version__,
    display_name="Sandbox channel",
    description="Simulated orders with weekly seasonality and trending SKUs.",
    capabilities=frozenset(
        {
            Capability.ORDERS_PULL,
            Capability.WEBHOOKS,
            Capability.AVAILABLE_PUSH,
            Capability.FULFILLMENT_PUSH,
            Capability.LISTINGS_LIST,
        }
    ),
    settings_schema=_schema(
        "Sandbox channel",
        {
            "orders_per_day": {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 100000,
                "default": 40,
            },
            "trending_skus": {
                "type": "array",
                "description": "SKUs whose demand ramps up (default: the first two).",
                "items": {"type": "string"},
            },
            "trend_multiplier": {"type": "number", "minimum": 1, "default": 4},
            "backfill_days": {"type": "integer", "minimum": 0, "maximum": 365, "default": 14},
            "page_hours": {"type": "integer", "minimum": 1, "maximum": 168, "default": 24},
            "webhook_secret": {
                "type": "string",
                "title": "Webhook secret",
                "minLength": 10,
                "writeOnly": True,
            },
        },
    ),
    secret_fields=frozenset({"webhook_secret"}),
    webhook_deadline_s=5.0,
)

THREEPL_INFO = ConnectorInfo(
    name=THREEPL,
    kind=ConnectorKind.THREEPL,
    version=__version__,
    display_name="Sandbox 3PL",
    description="Simulated warehouse: ships each order 30–240 minutes after receiving it.",
    capabilities=frozenset(
        {
            Capability.FULFILLMENT_ORDER_PUSH,
            Capability.STOCK_PULL,
            Capability.SHIPMENTS_PULL,
            Capability.INBOUND_PUSH,
        }
    ),
    settings_schema=_schema(
        "Sandbox 3PL",
        {
            "ship_after_minutes": {
                "type": "array",
                "items": {"type": "integer", "minimum": 0},
                "minItems": 2,
                "maxItems": 2,
                "default": [30, 240],
            },
            "initial_stock": {"type": "integer", "minimum": 0, "default": 200},
        },
    ),
)

CARRIER_INFO = ConnectorInfo(
    name=CARRIER,
    kind=ConnectorKind.CARRIER,
    version=__version__,
    display_name="Sandbox carrier",
    description="Simulated rates, labels and tracking.",
    capabilities=frozenset(
        {
            Capability.RATES_QUOTE,
            Capability.LABELS_BUY,
            Capability.LABELS_VOID,
            Capability.TRACKING,
        }
    ),
    settings_schema=_schema("Sandbox carrier", {}),
)

_INFOS = {info.name: info for info in (CHANNEL_INFO, THREEPL_INFO, CARRIER_INFO)}


@hookimpl
def keel_connector_info() -> list[ConnectorInfo]:
    return list(_INFOS.values())


@hookimpl
def keel_connector_factory(
    name: str,
    settings: Mapping[str, Any],
    credentials: Mapping[str, str],
    state: ConnectionState,
    clock: Clock,
) -> object | None:
    info = _INFOS.get(name)
    if info is None:
        return None
    from connectors.sandbox.connectors import SandboxCarrier, SandboxChannel, SandboxWarehouse

    cls = {CHANNEL: SandboxChannel, THREEPL: SandboxWarehouse, CARRIER: SandboxCarrier}[name]
    return cls(info=info, settings=settings, credentials=credentials, state=state, clock=clock)
