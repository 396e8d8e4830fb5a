"""Built-in Shopify channel connector plugin (entry point ``shopify``).

See :mod:`connectors.shopify.connector` for behaviour and ``connectors/README.md`` for
settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors import __version__, hookimpl
from connectors.clock import Clock
from connectors.http import HttpContext
from connectors.state import ConnectionState
from connectors.types import Capability, ConnectorInfo, ConnectorKind, ServiceLevel

NAME = "shopify"

SETTINGS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Shopify",
    "type": "object",
    "additionalProperties": False,
    "required": ["shop_domain", "access_token", "webhook_secret"],
    "properties": {
        "shop_domain": {
            "type": "string",
            "title": "Shop domain",
            "description": "The shop's myshopify.com domain, e.g. acme.myshopify.com.",
            "pattern": r"^[a-z0-9][a-z0-9-]*\.myshopify\.com$",
        },
        "access_token": {
            "type": "string",
            "title": "Admin API access token",
            "minLength": 10,
            "writeOnly": True,
        },
        "webhook_secret": {
            "type": "string",
            "title": "Webhook signing secret",
            "description": "The app's client secret, which signs webhook deliveries.",
            "minLength": 10,
            "writeOnly": True,
        },
        "previous_webhook_secret": {
            "type": "string",
            "title": "Previous webhook secret",
            "description": "Accepted until the rotation deadline below, while Shopify switches.",
            "writeOnly": True,
        },
        "previous_webhook_secret_valid_until": {
            "type": "string",
            "format": "date-time",
            "title": "Accept the previous secret until",
        },
        "api_version": {
            "type": "string",
            "title": "Admin API version",
            "pattern": r"^\d{4}-\d{2}$",
            "default": "2024-10",
        },
        "location_id": {
            "type": "string",
            "title": "Default location id",
            "description": "Shopify location that receives available-quantity pushes.",
            "pattern": r"^[0-9]+$",
        },
        "currency": {
            "type": "string",
            "title": "Shop currency",
            "pattern": "^[A-Z]{3}$",
            "default": "USD",
        },
        "orders_page_size": {"type": "integer", "minimum": 1, "maximum": 250, "default": 250},
        "backfill_days": {
            "type": "integer",
            "title": "Days of orders to import on first sync",
            "minimum": 0,
            "maximum": 3650,
            "default": 30,
        },
        "poll_overlap_seconds": {
            "type": "integer",
            "description": "Each poll re-reads this much before the previous pass started.",
            "minimum": 0,
            "maximum": 86400,
            "default": 120,
        },
        "rest_bucket_size": {
            "type": "integer",
            "description": "REST leaky bucket size of the shop's plan (40 standard, 400 Plus).",
            "minimum": 2,
            "default": 40,
        },
        "rest_leak_rate": {
            "type": "number",
            "description": "Requests per second the bucket leaks (2 standard, 20 Plus).",
            "exclusiveMinimum": 0,
            "default": 2,
        },
        "notify_customer": {"type": "boolean", "default": True},
        "service_levels": {
            "type": "object",
            "title": "Shipping line code → service level",
            "additionalProperties": {"enum": [level.value for level in ServiceLevel]},
            "default": {},
        },
        "marketplace_sources": {
            "type": "array",
            "title": "Order sources that are marketplaces",
            "items": {"type": "string"},
            "default": [],
        },
        "wholesale_tags": {
            "type": "array",
            "title": "Order tags that mark wholesale orders",
            "items": {"type": "string"},
            "default": ["wholesale", "b2b"],
        },
        "api_base_url": {
            "type": "string",
            "format": "uri",
            "title": "API base URL override",
            "description": "Only for Shopify-compatible test servers; empty in production.",
        },
    },
}

INFO = ConnectorInfo(
    name=NAME,
    kind=ConnectorKind.CHANNEL,
    version=__version__,
    display_name="Shopify",
    description="Orders, webhooks, inventory and fulfillments through the Shopify Admin API.",
    capabilities=frozenset(
        {
            Capability.ORDERS_PULL,
            Capability.WEBHOOKS,
            Capability.AVAILABLE_PUSH,
            Capability.FULFILLMENT_PUSH,
            Capability.LISTINGS_LIST,
        }
    ),
    settings_schema=SETTINGS_SCHEMA,
    secret_fields=frozenset({"access_token", "webhook_secret", "previous_webhook_secret"}),
    docs_url="https://shopify.dev/docs/api/admin-rest",
    webhook_deadline_s=5.0,
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
    from connectors.shopify.connector import ShopifyConnector

    return ShopifyConnector(
        info=INFO, settings=settings, credentials=credentials, http=http, clock=clock, state=state
    )
