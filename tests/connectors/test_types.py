"""Canonical types: exact money, aware UTC times, immutability, JSON-ready output."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from connectors.config import validate_connection
from connectors.errors import ConfigurationError
from connectors.shopify import INFO as SHOPIFY
from connectors.types import (
    Capability,
    ConnectorInfo,
    ConnectorKind,
    Money,
    Order,
    OrderLine,
    OrderTotals,
    PullResult,
    StockLevel,
    to_primitive,
)


def usd(amount: str) -> Money:
    return Money(Decimal(amount), "USD")


def order(**overrides) -> Order:
    fields = {
        "external_id": "1",
        "channel": "shopify",
        "placed_at": datetime(2024, 6, 1, 10, tzinfo=timezone(timedelta(hours=-4))),
        "updated_at": datetime(2024, 6, 1, 14, tzinfo=UTC),
        "status": "open",
        "lines": [OrderLine("L1", "SKU-1", 2, usd("9.99"))],
        "totals": OrderTotals(usd("19.98"), usd("5"), usd("0"), usd("0"), usd("24.98")),
        "raw": {"id": 1},
    }
    return Order(**{**fields, **overrides})


def test_money_refuses_float_and_accepts_exact_inputs():
    with pytest.raises(TypeError):
        Money(19.99, "USD")  # type: ignore[arg-type]
    assert Money("19.99", "USD").amount == Decimal("19.99")
    assert Money(5, "EUR").amount == Decimal(5)
    with pytest.raises(ValueError):
        Money("NaN", "USD")
    with pytest.raises(ValueError):
        Money("1", "usd")


def test_money_arithmetic_keeps_currency():
    assert usd("1.10") + usd("2.20") == usd("3.30")
    assert usd("9.99") * 3 == usd("29.97")
    with pytest.raises(ValueError):
        usd("1") + Money("1", "EUR")


def test_times_must_be_aware_and_become_utc():
    parsed = order()
    assert parsed.placed_at == datetime(2024, 6, 1, 14, tzinfo=UTC)
    assert parsed.placed_at.tzinfo is UTC
    with pytest.raises(ValueError):
        order(placed_at=datetime(2024, 6, 1, 10))


def test_values_are_immutable():
    parsed = order()
    assert isinstance(parsed.lines, tuple)
    with pytest.raises(dataclasses.FrozenInstanceError):
        parsed.status = "closed"  # type: ignore[misc]
    with pytest.raises(TypeError):
        parsed.raw["id"] = 2  # type: ignore[index]


def test_quantities_are_integers():
    with pytest.raises(TypeError):
        OrderLine("L1", "SKU", 1.5, usd("1"))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        OrderLine("L1", "SKU", -1, usd("1"))
    assert StockLevel("SKU", "WH", on_hand=-2, available=-2).on_hand == -2  # 3PLs report this


def test_pull_result_needs_a_cursor_to_continue():
    with pytest.raises(ValueError):
        PullResult(items=(), next_cursor=None, has_more=True)


def test_connector_info_checks_capabilities_against_kind():
    with pytest.raises(ValueError):
        ConnectorInfo(
            name="mixed",
            kind=ConnectorKind.CARRIER,
            version="1",
            display_name="Mixed",
            capabilities=frozenset({Capability.ORDERS_PULL}),
            settings_schema={"type": "object"},
        )
    with pytest.raises(ValueError):
        ConnectorInfo(
            name="Bad Name",
            kind="3pl",
            version="1",
            display_name="x",
            capabilities=frozenset(),
            settings_schema={},
        )
    assert set(SHOPIFY.methods()) == {
        "pull_orders",
        "verify_webhook",
        "parse_webhook",
        "push_available",
        "push_fulfillment",
        "list_listings",
    }


def test_to_primitive_is_json_ready_and_exact():
    data = to_primitive(order())
    text = json.dumps(data)
    assert data["totals"]["total"] == {"amount": "24.98", "currency": "USD"}
    assert data["placed_at"] == "2024-06-01T14:00:00+00:00"
    assert data["status"] == "open"
    assert "24.98" in text


def test_validate_connection_fills_defaults_and_never_echoes_values():
    merged = validate_connection(
        SHOPIFY,
        {"shop_domain": "acme.myshopify.com"},
        {"access_token": "shpat_secret_value_1", "webhook_secret": "whsec_value_0001"},
    )
    assert merged["api_version"] == "2024-10" and merged["orders_page_size"] == 250
    with pytest.raises(ConfigurationError) as caught:
        validate_connection(
            SHOPIFY,
            {"shop_domain": "acme.myshopify.com", "access_token": "shpat_secret_value_1"},
            {},
        )
    assert "access_token" in str(caught.value)
    with pytest.raises(ConfigurationError) as caught:
        validate_connection(
            SHOPIFY,
            {"shop_domain": "shpat_secret_value_1"},
            {"access_token": "x" * 12, "webhook_secret": "y" * 12},
        )
    assert "shpat_secret_value_1" not in str(caught.value)
