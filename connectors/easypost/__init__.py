"""Built-in EasyPost carrier connector plugin (entry point ``easypost``): rates, labels
(bought once per shipment, so retries are safe), refunds, trackers and HMAC-signed
``tracker.updated`` webhooks. See :mod:`connectors.easypost.connector`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors import __version__, hookimpl
from connectors.clock import Clock
from connectors.http import HttpContext
from connectors.state import ConnectionState
from connectors.types import Capability, ConnectorInfo, ConnectorKind, ServiceLevel

NAME = "easypost"

SETTINGS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "EasyPost",
    "type": "object",
    "additionalProperties": False,
    "required": ["api_key"],
    "properties": {
        "api_key": {
            "type": "string",
            "title": "API key",
            "description": "Production or test key (EasyPost dashboard → API Keys).",
            "minLength": 16,
            "writeOnly": True,
        },
        "webhook_secret": {
            "type": "string",
            "title": "Webhook secret",
            "description": "The webhook_secret set on the EasyPost webhook (X-Hmac-Signature).",
            "minLength": 8,
            "writeOnly": True,
        },
        "api_base_url": {
            "type": "string",
            "format": "uri",
            "title": "API base URL",
            "default": "https://api.easypost.com",
        },
        "label_format": {
            "type": "string",
            "enum": ["PDF", "ZPL", "PNG"],
            "title": "Label format",
            "default": "PDF",
        },
        "carrier_accounts": {
            "type": "array",
            "title": "Carrier accounts",
            "description": "Restrict quotes to these EasyPost carrier account ids (ca_…).",
            "items": {"type": "string", "pattern": "^ca_"},
            "default": [],
        },
        "page_size": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
        "service_levels": {
            "type": "object",
            "title": "Carrier service → service level",
            "description": 'Keys like "USPS:Priority"; overrides the level derived from '
            "the delivery days.",
            "additionalProperties": {"enum": [level.value for level in ServiceLevel]},
            "default": {},
        },
    },
}

INFO = ConnectorInfo(
    name=NAME,
    kind=ConnectorKind.CARRIER,
    version=__version__,
    display_name="EasyPost",
    description="Multi-carrier rates, labels, refunds and tracking through EasyPost.",
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
    docs_url="https://docs.easypost.com/",
    # Acknowledge fast: verification is offline; EasyPost retries unacknowledged events.
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
    from connectors.easypost.connector import EasyPostConnector

    return EasyPostConnector(
        info=INFO,
        settings=settings,
        credentials=credentials,
        http=http,
        state=state,
        clock=clock,
    )
