"""Built-in generic 3PL connector plugin (entry point ``threepl``), modelled on ShipBob's
REST API. See :mod:`connectors.threepl.connector`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors import __version__, hookimpl
from connectors.clock import Clock
from connectors.http import HttpContext
from connectors.types import Capability, ConnectorInfo, ConnectorKind

NAME = "threepl"

SETTINGS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "3PL (ShipBob-compatible REST)",
    "type": "object",
    "additionalProperties": False,
    "required": ["channel_id", "access_token"],
    "properties": {
        "api_base_url": {
            "type": "string",
            "format": "uri",
            "title": "API base URL",
            "description": "https://api.shipbob.com/1.0, or the sandbox URL.",
            "default": "https://api.shipbob.com/1.0",
        },
        "channel_id": {
            "type": "string",
            "title": "Channel id",
            "description": "The 3PL channel that orders are created under.",
            "pattern": r"^[0-9]+$",
        },
        "access_token": {
            "type": "string",
            "title": "Personal access token",
            "minLength": 10,
            "writeOnly": True,
        },
        "page_size": {"type": "integer", "minimum": 1, "maximum": 250, "default": 100},
        "rate_limit_per_minute": {
            "type": "integer",
            "description": "Requests per minute (sliding window) allowed per token.",
            "minimum": 1,
            "default": 150,
        },
        "shipping_methods": {
            "type": "object",
            "title": "Service level → 3PL shipping method",
            "additionalProperties": {"type": "string"},
            "default": {
                "economy": "Economy",
                "standard": "Standard",
                "expedited": "2-Day",
                "overnight": "Overnight",
            },
        },
        "shipments_backfill_days": {
            "type": "integer",
            "minimum": 0,
            "maximum": 365,
            "default": 7,
        },
        "poll_overlap_seconds": {"type": "integer", "minimum": 0, "default": 120},
    },
}

INFO = ConnectorInfo(
    name=NAME,
    kind=ConnectorKind.THREEPL,
    version=__version__,
    display_name="3PL (ShipBob-compatible)",
    description="Fulfillment orders, stock and shipments through a ShipBob-style REST API.",
    capabilities=frozenset(
        {
            Capability.FULFILLMENT_ORDER_PUSH,
            Capability.STOCK_PULL,
            Capability.SHIPMENTS_PULL,
            Capability.INBOUND_PUSH,
        }
    ),
    settings_schema=SETTINGS_SCHEMA,
    secret_fields=frozenset({"access_token"}),
    docs_url="https://developer.shipbob.com/",
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
    from connectors.threepl.connector import ThreePLConnector

    return ThreePLConnector(
        info=INFO, settings=settings, credentials=credentials, http=http, clock=clock
    )
