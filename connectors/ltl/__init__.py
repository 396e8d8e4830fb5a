"""Built-in LTL freight connectors plugin (entry point ``ltl``): two quote sources so the
platform can compare freight quotes from more than one.

- ``ltl_broker`` — a freight broker / TMS API (one account, offers from several carriers):
  :mod:`connectors.ltl.broker`.
- ``ltl_direct`` — one LTL carrier's own rating and pickup API: :mod:`connectors.ltl.direct`.

Both are ``carrier``-kind connectors declaring ``tracking`` and implement
:class:`connectors.freight.FreightConnector`; their freight capabilities are declared in the
settings schema (see :mod:`connectors.freight`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors import __version__, hookimpl
from connectors.clock import Clock
from connectors.freight import FreightCapability, declare_freight
from connectors.http import HttpContext
from connectors.types import Capability, ConnectorInfo, ConnectorKind

BROKER = "ltl_broker"
DIRECT = "ltl_direct"

_ALL_FREIGHT = tuple(FreightCapability)

BROKER_SCHEMA: dict[str, Any] = declare_freight(
    {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "LTL freight broker",
        "type": "object",
        "additionalProperties": False,
        "required": ["api_key"],
        "properties": {
            "api_base_url": {
                "type": "string",
                "format": "uri",
                "title": "API base URL",
                "description": "The broker's API root, version included.",
                "default": "https://api.freighthub.example/v1",
            },
            "api_key": {
                "type": "string",
                "title": "API key",
                "minLength": 16,
                "writeOnly": True,
            },
            "carriers": {
                "type": "array",
                "title": "Carriers (SCAC)",
                "description": "Only keep offers from these carriers (empty: every carrier).",
                "items": {"type": "string", "pattern": "^[A-Z]{2,4}$"},
                "uniqueItems": True,
                "default": [],
            },
            "include_guaranteed": {
                "type": "boolean",
                "title": "Include guaranteed services",
                "default": True,
            },
            "rate_limit_per_minute": {
                "type": "integer",
                "description": "Requests per minute the broker allows per key.",
                "minimum": 1,
                "default": 60,
            },
        },
    },
    _ALL_FREIGHT,
)

DIRECT_SCHEMA: dict[str, Any] = declare_freight(
    {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "LTL carrier (direct)",
        "type": "object",
        "additionalProperties": False,
        "required": ["api_key", "account_number"],
        "properties": {
            "api_base_url": {
                "type": "string",
                "format": "uri",
                "title": "API base URL",
                "default": "https://api.keystonefreight.example/api/v2",
            },
            "api_key": {
                "type": "string",
                "title": "API key",
                "minLength": 16,
                "writeOnly": True,
            },
            "account_number": {
                "type": "string",
                "title": "Shipper account number",
                "pattern": "^[0-9]{4,12}$",
            },
            "carrier_name": {
                "type": "string",
                "title": "Carrier name",
                "minLength": 1,
                "default": "Keystone Freight",
            },
            "scac": {"type": "string", "pattern": "^[A-Z]{2,4}$", "default": "KYFR"},
            "include_guaranteed": {"type": "boolean", "default": True},
            "rate_limit_per_minute": {"type": "integer", "minimum": 1, "default": 30},
        },
    },
    _ALL_FREIGHT,
)

BROKER_INFO = ConnectorInfo(
    name=BROKER,
    kind=ConnectorKind.CARRIER,
    version=__version__,
    display_name="LTL freight broker (multi-carrier)",
    description=(
        "Freight quotes from several LTL carriers through one broker account; booking with "
        "BOL and PRO numbers, tracking and proof of delivery."
    ),
    capabilities=frozenset({Capability.TRACKING}),
    settings_schema=BROKER_SCHEMA,
    secret_fields=frozenset({"api_key"}),
)

DIRECT_INFO = ConnectorInfo(
    name=DIRECT,
    kind=ConnectorKind.CARRIER,
    version=__version__,
    display_name="LTL carrier (direct account)",
    description=(
        "One LTL carrier's own rating and pickup API: standard and guaranteed quotes, "
        "booking, status and proof of delivery."
    ),
    capabilities=frozenset({Capability.TRACKING}),
    settings_schema=DIRECT_SCHEMA,
    secret_fields=frozenset({"api_key"}),
)


@hookimpl
def keel_connector_info() -> list[ConnectorInfo]:
    return [BROKER_INFO, DIRECT_INFO]


@hookimpl
def keel_connector_factory(
    name: str,
    settings: Mapping[str, Any],
    credentials: Mapping[str, str],
    http: HttpContext,
    clock: Clock,
) -> object | None:
    if name == BROKER:
        from connectors.ltl.broker import LtlBrokerConnector

        return LtlBrokerConnector(
            info=BROKER_INFO, settings=settings, credentials=credentials, http=http, clock=clock
        )
    if name == DIRECT:
        from connectors.ltl.direct import LtlDirectConnector

        return LtlDirectConnector(
            info=DIRECT_INFO, settings=settings, credentials=credentials, http=http, clock=clock
        )
    return None
