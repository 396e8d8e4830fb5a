"""Built-in Shippo carrier connector plugin (entry point ``shippo``): rates, labels (bought
asynchronously, idempotently), refunds, tracking pulls and signed ``track_updated``
webhooks. See :mod:`connectors.shippo.connector`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors import __version__, hookimpl
from connectors.clock import Clock
from connectors.http import HttpContext
from connectors.state import ConnectionState
from connectors.types import Capability, ConnectorInfo, ConnectorKind, ServiceLevel

NAME = "shippo"

LABEL_FILE_TYPES = ("PDF", "PDF_4x6", "PDF_4x8", "PDF_A4", "PDF_A5", "PDF_A6", "PNG", "ZPLII")

SETTINGS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Shippo",
    "type": "object",
    "additionalProperties": False,
    "required": ["api_key"],
    "properties": {
        "api_key": {
            "type": "string",
            "title": "API token",
            "description": "shippo_live_… or shippo_test_… (Settings → API in Shippo).",
            "minLength": 16,
            "writeOnly": True,
        },
        "webhook_secret": {
            "type": "string",
            "title": "Webhook HMAC secret",
            "description": "The secret Shippo signs webhooks with (Shippo-Auth-Signature).",
            "minLength": 16,
            "writeOnly": True,
        },
        "api_base_url": {
            "type": "string",
            "format": "uri",
            "title": "API base URL",
            "default": "https://api.goshippo.com",
        },
        "api_version": {
            "type": "string",
            "title": "Shippo-API-Version",
            "default": "2018-02-08",
        },
        "label_file_type": {
            "type": "string",
            "enum": list(LABEL_FILE_TYPES),
            "title": "Label format",
            "description": "PDF variants for laser printers, ZPLII for thermal printers.",
            "default": "PDF_4x6",
        },
        "purchase_wait_seconds": {
            "type": "number",
            "minimum": 0,
            "maximum": 600,
            "description": "How long a purchase waits for a queued label before giving up "
            "(a later retry with the same key picks the label up).",
            "default": 60,
        },
        "purchase_poll_seconds": {"type": "number", "minimum": 0.5, "default": 2},
        "lookup_days": {
            "type": "integer",
            "minimum": 1,
            "maximum": 90,
            "description": "How far back a retried purchase looks for a label already bought "
            "under its key, when the quote time is unknown.",
            "default": 7,
        },
        "page_size": {"type": "integer", "minimum": 1, "maximum": 100, "default": 25},
        "list_requests_per_minute": {
            "type": "integer",
            "minimum": 1,
            "description": "Client-side pace of list requests (Shippo limits them per token).",
            "default": 50,
        },
        "webhook_tolerance_seconds": {
            "type": "integer",
            "minimum": 30,
            "description": "Oldest signature timestamp accepted (replay protection).",
            "default": 300,
        },
        "default_carrier": {
            "type": "string",
            "description": "Carrier token used to track numbers not bought through Keel.",
            "default": "usps",
        },
        "service_levels": {
            "type": "object",
            "title": "Service level token → service level",
            "description": "Overrides the level derived from the estimated transit days.",
            "additionalProperties": {"enum": [level.value for level in ServiceLevel]},
            "default": {},
        },
    },
}

INFO = ConnectorInfo(
    name=NAME,
    kind=ConnectorKind.CARRIER,
    version=__version__,
    display_name="Shippo",
    description="Multi-carrier rates, labels, refunds and tracking through Shippo.",
    capabilities=frozenset(
        {
            Capability.RATES_QUOTE,
            Capability.LABELS_BUY,
            Capability.LABELS_VOID,
            Capability.TRACKING,
            Capability.LABELS_LIST,
            Capability.WEBHOOKS,
        }
    ),
    settings_schema=SETTINGS_SCHEMA,
    secret_fields=frozenset({"api_key", "webhook_secret"}),
    docs_url="https://docs.goshippo.com/",
    # Shippo gives up on a delivery after a few seconds; verification is offline and fast.
    webhook_deadline_s=3.0,
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
    from connectors.shippo.connector import ShippoConnector

    return ShippoConnector(
        info=INFO,
        settings=settings,
        credentials=credentials,
        http=http,
        state=state,
        clock=clock,
    )
