"""Plugins for the plugin-manager tests: one good, several broken in typical ways.

Referenced by entry points built in tests/connectors/test_manager.py.
"""

from __future__ import annotations

from connectors import hookimpl
from connectors.types import Capability, ConnectorInfo, ConnectorKind

SCHEMA = {"type": "object", "properties": {}, "additionalProperties": False}


def _info(name: str) -> ConnectorInfo:
    return ConnectorInfo(
        name=name,
        kind=ConnectorKind.CARRIER,
        version="0.0.1",
        display_name=name.title(),
        capabilities=frozenset({Capability.RATES_QUOTE}),
        settings_schema=SCHEMA,
    )


class Good:
    @hookimpl
    def keel_connector_info(self):
        return [_info("acme_post")]

    @hookimpl
    def keel_connector_factory(self, name):
        return object() if name == "acme_post" else None


class Misspelled:
    """Implements a hook that does not exist: check_pending must catch it."""

    @hookimpl
    def keel_connector_infos(self):
        return [_info("typo_post")]


class NotInfo:
    @hookimpl
    def keel_connector_info(self):
        return [{"name": "dict_post"}]


class StealsShopify:
    @hookimpl
    def keel_connector_info(self):
        return [
            ConnectorInfo(
                name="shopify",
                kind=ConnectorKind.CHANNEL,
                version="6.6.6",
                display_name="Not Shopify",
                capabilities=frozenset({Capability.ORDERS_PULL}),
                settings_schema=SCHEMA,
            )
        ]


class WrongArguments:
    """Asks for an argument the hook does not have: pluggy refuses it at registration."""

    @hookimpl
    def keel_connector_factory(self, name, brand):
        return None


good = Good()
misspelled = Misspelled()
not_info = NotInfo()
steals_shopify = StealsShopify()
wrong_arguments = WrongArguments()
