"""Suppliers, supplier SKUs and purchase orders for purchasing tests (current schema)."""

from __future__ import annotations

from decimal import Decimal

import factory

from purchasing import services
from purchasing.models import Supplier, SupplierSKU
from tests.factories import SKUFactory, WarehouseFactory


class SupplierFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Supplier

    code = factory.Sequence(lambda n: f"SUP{n}")
    name = factory.Sequence(lambda n: f"Supplier {n}")
    contact_name = "Sam Supplier"
    email = factory.Sequence(lambda n: f"orders{n}@supplier.example")
    address = "1 Mill Road\nLeeds"
    currency = "USD"
    payment_terms = "Net 30"
    quoted_lead_time_days = 14


class SupplierSKUFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SupplierSKU

    supplier = factory.SubFactory(SupplierFactory)
    sku = factory.SubFactory(SKUFactory)
    supplier_code = factory.Sequence(lambda n: f"S-{n}")
    unit_cost = Decimal("10.0000")
    currency = "USD"
    moq = 1
    case_pack = 1


def make_po(
    *lines: tuple[object, int] | tuple[object, int, Decimal],
    supplier: Supplier | None = None,
    warehouse=None,
    actor=None,
    **extra,
):
    """A draft PO; each line is (sku, quantity[, unit cost]); skus get a supplier SKU row
    at 10.00 unless a cost is given."""
    supplier = supplier or SupplierFactory()
    warehouse = warehouse or WarehouseFactory()
    draft = []
    for line in lines:
        sku, quantity, *cost = line
        if not cost and not SupplierSKU.objects.filter(supplier=supplier, sku=sku).exists():
            SupplierSKUFactory(supplier=supplier, sku=sku)
        draft.append(services.DraftLine(sku, quantity, cost[0] if cost else None))
    return services.create_draft(
        supplier=supplier, warehouse=warehouse, lines=draft, actor=actor, **extra
    )


def costly_po(amount: Decimal, *, actor=None, **extra):
    """A one-line draft PO worth exactly `amount` (1 unit at that cost)."""
    return make_po((SKUFactory(), 1, amount), actor=actor, **extra)
