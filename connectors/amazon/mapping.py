"""SP-API Orders v0 and Listings Items payloads → canonical types.

Buyer PII (``BuyerInfo``, the street part of ``ShippingAddress``) is present only when the
order list was read with a Restricted Data Token; it goes into ``Order.ship_to`` and
``Order.customer`` and is stripped from ``Order.raw``, so it is kept only where the
platform protects it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
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

#: Order fields that carry buyer PII (never kept in ``raw``).
PII_FIELDS = frozenset({"BuyerInfo", "ShippingAddress", "BuyerTaxInformation"})

_SERVICE_LEVELS = {
    "SameDay": ServiceLevel.OVERNIGHT,
    "NextDay": ServiceLevel.OVERNIGHT,
    "SecondDay": ServiceLevel.EXPEDITED,
    "Expedited": ServiceLevel.EXPEDITED,
    "FreeEconomy": ServiceLevel.ECONOMY,
    "Standard": ServiceLevel.STANDARD,
    "Scheduled": ServiceLevel.STANDARD,
}
_CENT = Decimal("0.01")


def parse_time(value: Any) -> datetime:
    """SP-API timestamps are ISO 8601 in UTC (``2024-06-01T10:00:00Z``)."""
    if not isinstance(value, str) or not value:
        raise PermanentError("SP-API order without a timestamp")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise PermanentError(f"unreadable SP-API timestamp {value!r}") from None
    if parsed.tzinfo is None:
        raise PermanentError(f"SP-API timestamp without offset {value!r}")
    return parsed


def _money(value: Mapping[str, Any] | None, currency: str) -> Money:
    if not value or value.get("Amount") in (None, ""):
        return Money.zero(currency)
    return Money(Decimal(str(value["Amount"])), value.get("CurrencyCode") or currency)


def _status(raw: str) -> OrderStatus:
    if raw == "Canceled":
        return OrderStatus.CANCELLED
    if raw == "Shipped":
        return OrderStatus.CLOSED
    # Pending, Unshipped, PartiallyShipped, Unfulfillable, InvoiceUnconfirmed,
    # PendingAvailability: still to be shipped (or decided).
    return OrderStatus.OPEN


def strip_pii(value: Any) -> Any:
    """``value`` without buyer PII, at any depth (for ``raw`` and anything logged)."""
    if isinstance(value, Mapping):
        return {k: strip_pii(v) for k, v in value.items() if k not in PII_FIELDS}
    if isinstance(value, list):
        return [strip_pii(v) for v in value]
    return value


def parse_order(
    order: Mapping[str, Any],
    items: Iterable[Mapping[str, Any]],
    *,
    channel: str,
    currency: str,
) -> Order:
    """One ``getOrders`` order and its ``getOrderItems`` lines as a canonical order.

    FBA orders (``FulfillmentChannel: AFN``) ship from Amazon's stock, not the brand's, so
    their lines are marked ``requires_shipping=False`` (the platform reserves nothing for
    them) and the order carries the ``fba`` flag; merchant-fulfilled (``MFN``) orders are
    ordinary orders to route.
    """
    order_id = str(order.get("AmazonOrderId") or "")
    if not order_id:
        raise PermanentError("SP-API order without AmazonOrderId")
    total = order.get("OrderTotal") or {}
    currency = total.get("CurrencyCode") or currency
    fba = order.get("FulfillmentChannel") == "AFN"
    items = list(items)
    lines = []
    subtotal = shipping = tax = discount = Money.zero(currency)
    for item in items:
        quantity = int(item.get("QuantityOrdered") or 0)
        price = _money(item.get("ItemPrice"), currency)
        promo = _money(item.get("PromotionDiscount"), currency)
        unit = (
            Money((price.amount / quantity).quantize(_CENT, ROUND_HALF_UP), currency)
            if quantity
            else Money.zero(currency)
        )
        lines.append(
            OrderLine(
                external_id=str(item.get("OrderItemId") or ""),
                sku=str(item.get("SellerSKU") or ""),
                quantity=quantity,
                unit_price=unit,
                title=str(item.get("Title") or "")[:255],
                listing_id=str(item.get("ASIN") or ""),
                discount=promo if promo.amount else None,
                requires_shipping=not fba,
            )
        )
        subtotal += price
        shipping += _money(item.get("ShippingPrice"), currency)
        tax += _money(item.get("ItemTax"), currency) + _money(item.get("ShippingTax"), currency)
        discount += promo + _money(item.get("ShippingDiscount"), currency)
    grand = (
        _money(total, currency)
        if total.get("Amount") not in (None, "")
        else subtotal + shipping + tax - discount
    )
    address = order.get("ShippingAddress") or {}
    ship_to = None
    if address:
        ship_to = Address(
            name=str(address.get("Name") or ""),
            line1=str(address.get("AddressLine1") or ""),
            line2=" ".join(
                str(address.get(k) or "") for k in ("AddressLine2", "AddressLine3")
            ).strip(),
            city=str(address.get("City") or ""),
            region=str(address.get("StateOrRegion") or ""),
            postal_code=str(address.get("PostalCode") or ""),
            country=str(address.get("CountryCode") or "").upper(),
            phone=str(address.get("Phone") or ""),
            company=str(address.get("CompanyName") or ""),
        )
    buyer = order.get("BuyerInfo") or {}
    customer = None
    if buyer.get("BuyerEmail") or buyer.get("BuyerName"):
        customer = Customer(
            email=str(buyer.get("BuyerEmail") or ""), name=str(buyer.get("BuyerName") or "")
        )
    flags = set()
    if fba:
        flags.add("fba")
    if order.get("IsPrime"):
        flags.add("prime")
    if order.get("IsBusinessOrder"):
        flags.add("business")
    if order.get("OrderStatus") == "Pending":
        flags.add("unpaid")
    if any(str(item.get("IsGift")).lower() == "true" for item in items):
        flags.add("gift")
    return Order(
        external_id=order_id,
        channel=channel,
        number=order_id,
        placed_at=parse_time(order.get("PurchaseDate")),
        updated_at=parse_time(order.get("LastUpdateDate") or order.get("PurchaseDate")),
        status=_status(str(order.get("OrderStatus") or "")),
        lines=tuple(lines),
        totals=OrderTotals(
            subtotal=subtotal, shipping=shipping, tax=tax, discount=discount, total=grand
        ),
        ship_to=ship_to,
        customer=customer,
        order_type=OrderType.MARKETPLACE,
        service_level=_SERVICE_LEVELS.get(
            str(order.get("ShipmentServiceLevelCategory") or ""), ServiceLevel.STANDARD
        ),
        flags=frozenset(flags),
        raw={**strip_pii(dict(order)), "OrderItems": strip_pii(list(items))},
    )


def parse_listing(item: Mapping[str, Any], marketplace_id: str) -> Listing:
    """A ``searchListingsItems`` item: the seller SKU is both id and inventory reference
    (quantities are set per SKU with ``patchListingsItem``)."""
    sku = str(item.get("sku") or "")
    summaries = item.get("summaries") or []
    summary = next(
        (s for s in summaries if s.get("marketplaceId") == marketplace_id),
        summaries[0] if summaries else {},
    )
    return Listing(
        external_id=sku,
        sku=sku,
        title=str(summary.get("itemName") or "")[:255],
        inventory_ref=sku,
        product_id=str(summary.get("asin") or ""),
        active="BUYABLE" in (summary.get("status") or ()),
    )
