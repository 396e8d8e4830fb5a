"""Shopify Admin REST payloads → canonical types."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from connectors.errors import PermanentError
from connectors.types import (
    Address,
    Customer,
    Listing,
    Money,
    Order,
    OrderLine,
    OrderStatus,
    OrderTotals,
    OrderType,
    ServiceLevel,
)

# Keyword → service level, checked in this order against a shipping line's code and title.
_SERVICE_KEYWORDS: tuple[tuple[re.Pattern[str], ServiceLevel], ...] = (
    (re.compile(r"pick\s*-?up|local delivery|in store", re.I), ServiceLevel.PICKUP),
    (re.compile(r"overnight|next[\s-]*day|1[\s-]*day", re.I), ServiceLevel.OVERNIGHT),
    (
        re.compile(r"expedited|express|priority|2[\s-]*day|two[\s-]*day", re.I),
        ServiceLevel.EXPEDITED,
    ),
    (re.compile(r"freight|ltl|pallet", re.I), ServiceLevel.FREIGHT),
    (re.compile(r"economy|saver|slow", re.I), ServiceLevel.ECONOMY),
)
_UNPAID = frozenset({"pending", "authorized", "partially_paid"})


def parse_time(value: str | None) -> datetime | None:
    """Shopify timestamps carry the shop's UTC offset (``2024-06-01T10:00:00-04:00``)."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise PermanentError(f"unreadable Shopify timestamp {value!r}") from None
    if parsed.tzinfo is None:
        raise PermanentError(f"Shopify timestamp without offset {value!r}")
    return parsed


def _money(value: Any, currency: str) -> Money:
    # Shopify sends amounts as strings; str() also guards against a float sneaking in.
    return Money(Decimal(str(value if value not in (None, "") else "0")), currency)


def _shipping_total(order: Mapping[str, Any], currency: str) -> Money:
    price_set = order.get("total_shipping_price_set") or {}
    shop_money = price_set.get("shop_money") or {}
    if "amount" in shop_money:
        return _money(shop_money["amount"], currency)
    return sum(
        (_money(line.get("price"), currency) for line in order.get("shipping_lines") or ()),
        Money.zero(currency),
    )


def _address(data: Mapping[str, Any] | None, email: str = "") -> Address | None:
    if not data:
        return None
    name = data.get("name") or " ".join(
        part for part in (data.get("first_name"), data.get("last_name")) if part
    )
    return Address(
        name=name or "",
        company=data.get("company") or "",
        line1=data.get("address1") or "",
        line2=data.get("address2") or "",
        city=data.get("city") or "",
        region=data.get("province_code") or data.get("province") or "",
        postal_code=data.get("zip") or "",
        country=(data.get("country_code") or "").upper(),
        phone=data.get("phone") or "",
        email=email,
    )


def _customer(order: Mapping[str, Any]) -> Customer | None:
    data = order.get("customer")
    if not data and not order.get("email"):
        return None
    data = data or {}
    name = " ".join(p for p in (data.get("first_name"), data.get("last_name")) if p)
    return Customer(
        external_id=str(data.get("id") or ""),
        email=data.get("email") or order.get("email") or "",
        name=name,
        phone=data.get("phone") or order.get("phone") or "",
    )


def _tags(order: Mapping[str, Any]) -> set[str]:
    return {t.strip().lower() for t in (order.get("tags") or "").split(",") if t.strip()}


def service_level(
    order: Mapping[str, Any], overrides: Mapping[str, str] | None = None
) -> ServiceLevel:
    """The shipping line's code mapped by the connection's ``service_levels`` setting, else
    inferred from common carrier wording; ``standard`` when nothing matches."""
    lines = order.get("shipping_lines") or []
    if not lines:
        return ServiceLevel.STANDARD
    code = str(lines[0].get("code") or "")
    title = str(lines[0].get("title") or "")
    if overrides:
        for key in (code, title):
            if key in overrides:
                return ServiceLevel(overrides[key])
    text = f"{code} {title}"
    for pattern, level in _SERVICE_KEYWORDS:
        if pattern.search(text):
            return level
    return ServiceLevel.STANDARD


def order_type(
    order: Mapping[str, Any],
    *,
    marketplace_sources: Iterable[str] = (),
    wholesale_tags: Iterable[str] = ("wholesale", "b2b"),
) -> OrderType:
    tags = _tags(order)
    if order.get("company") or tags & {t.lower() for t in wholesale_tags}:
        return OrderType.WHOLESALE
    source = str(order.get("source_name") or "").lower()
    if source in {s.lower() for s in marketplace_sources}:
        return OrderType.MARKETPLACE
    if source == "subscription_contract" or "subscription" in tags:
        return OrderType.SUBSCRIPTION
    if any(line.get("selling_plan_allocation") for line in order.get("line_items") or ()):
        return OrderType.SUBSCRIPTION
    return OrderType.DTC


def flags(order: Mapping[str, Any]) -> frozenset[str]:
    found = set()
    if order.get("test"):
        found.add("test")
    financial = order.get("financial_status") or ""
    if financial in _UNPAID:
        found.add("unpaid")
    if financial in ("refunded", "partially_refunded", "voided"):
        found.add(financial)
    if order.get("note"):
        found.add("has_note")
    if (order.get("source_name") or "") == "pos":
        found.add("pos")
    if order.get("fulfillment_status") in ("fulfilled", "partial"):
        found.add(f"fulfillment_{order['fulfillment_status']}")
    return frozenset(found)


def parse_order(
    order: Mapping[str, Any],
    *,
    channel: str = "shopify",
    service_levels: Mapping[str, str] | None = None,
    marketplace_sources: Iterable[str] = (),
    wholesale_tags: Iterable[str] = ("wholesale", "b2b"),
) -> Order:
    """One REST ``order`` object → :class:`Order` (money in the shop's currency)."""
    try:
        currency = order.get("currency") or "USD"
        status = OrderStatus.OPEN
        if order.get("cancelled_at"):
            status = OrderStatus.CANCELLED
        elif order.get("closed_at"):
            status = OrderStatus.CLOSED
        lines = tuple(
            OrderLine(
                external_id=str(line["id"]),
                sku=line.get("sku") or "",
                quantity=int(line["quantity"]),
                unit_price=_money(line.get("price"), currency),
                title=" - ".join(p for p in (line.get("title"), line.get("variant_title")) if p),
                listing_id=str(line.get("variant_id") or ""),
                discount=_money(line.get("total_discount"), currency)
                if line.get("total_discount") not in (None, "", "0.00")
                else None,
                requires_shipping=bool(line.get("requires_shipping", True)),
            )
            for line in order.get("line_items") or ()
        )
        totals = OrderTotals(
            subtotal=_money(order.get("subtotal_price"), currency),
            shipping=_shipping_total(order, currency),
            tax=_money(order.get("total_tax"), currency),
            discount=_money(order.get("total_discounts"), currency),
            total=_money(order.get("total_price"), currency),
        )
        placed = parse_time(order.get("processed_at")) or parse_time(order.get("created_at"))
        updated = parse_time(order.get("updated_at")) or placed
        return Order(
            external_id=str(order["id"]),
            channel=channel,
            number=str(order.get("name") or order.get("order_number") or ""),
            placed_at=placed,  # type: ignore[arg-type]  # validated by Order
            updated_at=updated,  # type: ignore[arg-type]
            status=status,
            lines=lines,
            totals=totals,
            ship_to=_address(order.get("shipping_address"), order.get("email") or ""),
            customer=_customer(order),
            order_type=order_type(
                order, marketplace_sources=marketplace_sources, wholesale_tags=wholesale_tags
            ),
            service_level=service_level(order, service_levels),
            flags=flags(order),
            raw=order,
        )
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        raise PermanentError(
            f"unreadable Shopify order {order.get('id')!r}: {type(exc).__name__}: {exc}"
        ) from None


def parse_listings(product: Mapping[str, Any], currency: str) -> list[Listing]:
    """A REST ``product`` → one :class:`Listing` per variant."""
    listings = []
    active = (product.get("status") or "active") == "active"
    for variant in product.get("variants") or ():
        title = product.get("title") or ""
        if variant.get("title") and variant["title"] != "Default Title":
            title = f"{title} - {variant['title']}"
        listings.append(
            Listing(
                external_id=str(variant["id"]),
                sku=variant.get("sku") or "",
                title=title,
                inventory_ref=str(variant.get("inventory_item_id") or ""),
                product_id=str(product.get("id") or ""),
                price=_money(variant["price"], currency) if variant.get("price") else None,
                active=active,
            )
        )
    return listings
