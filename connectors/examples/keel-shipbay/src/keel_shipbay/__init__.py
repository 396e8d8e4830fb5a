"""ShipBay 3PL connector for Keel — an example of a third-party connector plugin.

Installed with pip, it is found by Keel through the ``keel.connectors`` entry point declared
in this package's ``pyproject.toml``; nothing in Keel's platform code changes. The module
itself is the plugin: the two functions below implement Keel's hooks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors import hookimpl
from connectors.clock import Clock
from connectors.http import HttpContext
from connectors.types import Capability, ConnectorInfo, ConnectorKind

__version__ = "0.1.0"

NAME = "shipbay"

SETTINGS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "ShipBay",
    "type": "object",
    "additionalProperties": False,
    "required": ["api_key"],
    "properties": {
        "api_key": {
            "type": "string",
            "title": "API key",
            "description": "ShipBay dashboard → Settings → API keys.",
            "minLength": 16,
            "writeOnly": True,
        },
        "api_base_url": {
            "type": "string",
            "format": "uri",
            "title": "API base URL",
            "default": "https://api.shipbay.example",
        },
        "requests_per_second": {"type": "integer", "minimum": 1, "default": 5},
        "page_size": {"type": "integer", "minimum": 1, "maximum": 500, "default": 100},
        "backfill_days": {"type": "integer", "minimum": 0, "maximum": 90, "default": 7},
    },
}

INFO = ConnectorInfo(
    name=NAME,
    kind=ConnectorKind.THREEPL,
    version=__version__,
    display_name="ShipBay",
    description="Fulfillment, stock and shipments through the ShipBay v2 API.",
    capabilities=frozenset(
        {
            Capability.FULFILLMENT_ORDER_PUSH,
            Capability.STOCK_PULL,
            Capability.SHIPMENTS_PULL,
            Capability.INBOUND_PUSH,
        }
    ),
    settings_schema=SETTINGS_SCHEMA,
    secret_fields=frozenset({"api_key"}),
    docs_url="https://docs.shipbay.example/v2",
)


@hookimpl
def keel_connector_info() -> list[ConnectorInfo]:
    return [INFO]


@hookimpl
def keel_connector_factory(
    name: str,
    settings: Mapping[str, Any],
    credentials: Mapping[str, str],
    http: HttpContext,
    clock: Clock,
) -> object | None:
    if name != NAME:
        return None
    from keel_shipbay.connector import ShipBayConnector

    return ShipBayConnector(
        info=INFO, settings=settings, credentials=credentials, http=http, clock=clock
    )
