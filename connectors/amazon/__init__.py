"""Built-in Amazon Selling Partner API channel connector plugin (entry point ``amazon``).

See :mod:`connectors.amazon.connector` for behaviour and ``connectors/README.md`` for
settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors import __version__, hookimpl
from connectors.amazon.ratelimit import DEFAULT_PLANS
from connectors.clock import Clock
from connectors.http import HttpContext
from connectors.state import ConnectionState
from connectors.types import Capability, ConnectorInfo, ConnectorKind

NAME = "amazon"

SETTINGS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Amazon (Selling Partner API)",
    "type": "object",
    "additionalProperties": False,
    "required": ["seller_id", "lwa_client_id", "lwa_client_secret", "refresh_token"],
    "properties": {
        "seller_id": {
            "type": "string",
            "title": "Seller (merchant) id",
            "description": "The selling partner id, e.g. A2EXAMPLE123.",
            "pattern": r"^[A-Z0-9]{8,20}$",
        },
        "marketplace_ids": {
            "type": "array",
            "title": "Marketplace ids",
            "items": {"type": "string", "pattern": r"^[A-Z0-9]{8,20}$"},
            "minItems": 1,
            "maxItems": 50,
            "default": ["ATVPDKIKX0DER"],
        },
        "lwa_client_id": {
            "type": "string",
            "title": "LWA client id",
            "description": "Login with Amazon client id of the SP-API application.",
            "minLength": 10,
        },
        "lwa_client_secret": {
            "type": "string",
            "title": "LWA client secret",
            "minLength": 10,
            "writeOnly": True,
        },
        "refresh_token": {
            "type": "string",
            "title": "Refresh token",
            "description": "The seller's authorization (Atzr|…).",
            "minLength": 10,
            "writeOnly": True,
        },
        "currency": {
            "type": "string",
            "title": "Marketplace currency",
            "pattern": "^[A-Z]{3}$",
            "default": "USD",
        },
        "include_pii": {
            "type": "boolean",
            "title": "Import buyer name and shipping address",
            "description": "Needs the restricted Direct-to-Consumer Delivery role; reads "
            "orders with a Restricted Data Token.",
            "default": True,
        },
        "orders_page_size": {"type": "integer", "minimum": 1, "maximum": 100, "default": 100},
        "backfill_days": {
            "type": "integer",
            "title": "Days of orders to import on first sync",
            "minimum": 0,
            "maximum": 730,
            "default": 30,
        },
        "poll_overlap_seconds": {
            "type": "integer",
            "description": "Each poll re-reads this much before the previous pass started.",
            "minimum": 0,
            "maximum": 86400,
            "default": 300,
        },
        "rate_limits": {
            "type": "object",
            "title": "Usage plans per operation",
            "description": "Overrides of the published defaults as rate/burst (requests per "
            "second / bucket size), e.g. getOrders = 0.0167/20, for selling partners with "
            "larger plans.",
            "propertyNames": {"enum": sorted(DEFAULT_PLANS)},
            "additionalProperties": {
                "type": "string",
                "pattern": r"^(?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)/[1-9][0-9]*$",
            },
            "default": {},
        },
        "max_wait_seconds": {
            "type": "number",
            "description": "A rate-limit wait longer than this ends the task (rescheduled) "
            "instead of holding a worker.",
            "minimum": 0,
            "default": 120,
        },
        "api_base_url": {
            "type": "string",
            "format": "uri",
            "title": "SP-API endpoint",
            "description": "Regional endpoint (sellingpartnerapi-na/-eu/-fe.amazon.com).",
            "default": "https://sellingpartnerapi-na.amazon.com",
        },
        "lwa_token_url": {
            "type": "string",
            "format": "uri",
            "title": "LWA token endpoint",
            "default": "https://api.amazon.com/auth/o2/token",
        },
    },
}

INFO = ConnectorInfo(
    name=NAME,
    kind=ConnectorKind.CHANNEL,
    version=__version__,
    display_name="Amazon (Selling Partner API)",
    description="Orders (polled; SP-API notifications go to SQS), listings and merchant-"
    "fulfilled quantities through the Amazon Selling Partner API.",
    capabilities=frozenset(
        {Capability.ORDERS_PULL, Capability.AVAILABLE_PUSH, Capability.LISTINGS_LIST}
    ),
    settings_schema=SETTINGS_SCHEMA,
    secret_fields=frozenset({"lwa_client_secret", "refresh_token"}),
    docs_url="https://developer-docs.amazon.com/sp-api/",
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
    state: ConnectionState,
    clock: Clock,
) -> object | None:
    if name != NAME:
        return None
    from connectors.amazon.connector import AmazonConnector

    return AmazonConnector(
        info=INFO, settings=settings, credentials=credentials, http=http, state=state, clock=clock
    )
