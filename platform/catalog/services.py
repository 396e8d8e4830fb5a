"""Item master services: products, SKUs, bundles, listing mappings, the unmapped queue.

Every change is written to the activity log with per-field before/after values; the SKU
page reads its change history from there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from audit.services import record
from catalog.models import (
    SKU,
    BundleComponent,
    ListingMapping,
    Product,
    UnmappedListing,
    UnmappedStatus,
)

SKU_FIELDS = [
    "code",
    "title",
    "option_values",
    "gtin",
    "tags",
    "status",
    "weight",
    "weight_unit",
    "length",
    "width",
    "height",
    "dimension_unit",
    "unit_cost",
    "cost_currency",
    "is_hazmat",
    "is_oversize",
]
PRODUCT_FIELDS = ["title", "description", "vendor", "category", "tags", "status"]

# kind → callable(item: dict, sku: SKU) that re-processes something parked on an unmapped
# listing. Apps register theirs in AppConfig.ready (orders: held order lines).
REPROCESSORS: dict[str, Callable[[dict, SKU], None]] = {}


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    return value


def _clean_and_save(obj, *, exclude: Sequence[str] = ()) -> None:
    obj.full_clean(exclude=list(exclude), validate_constraints=True)
    obj.save()


def create_product(**fields) -> Product:
    with transaction.atomic():
        product = Product(**fields)
        _clean_and_save(product)
        record("product.created", obj=product, changes={"title": product.title})
    return product


def update_product(product: Product, **fields) -> Product:
    return _update(product, fields, PRODUCT_FIELDS, "product.updated")


def create_sku(*, product: Product, **fields) -> SKU:
    with transaction.atomic():
        sku = SKU(product=product, **fields)
        if sku.gtin == "":
            sku.gtin = None
        _clean_and_save(sku)
        record(
            "sku.created",
            obj=sku,
            changes={
                f: [None, _jsonable(getattr(sku, f))]
                for f in SKU_FIELDS
                if getattr(sku, f) not in (None, "", [], {}, False)
            },
        )
    return sku


def update_sku(sku: SKU, **fields) -> SKU:
    if fields.get("gtin") == "":
        fields["gtin"] = None
    return _update(sku, fields, SKU_FIELDS, "sku.updated")


def _update(obj, fields: dict, allowed: list[str], action: str):
    unknown = set(fields) - set(allowed)
    if unknown:
        raise ValidationError(f"Unknown fields: {', '.join(sorted(unknown))}", code="invalid")
    with transaction.atomic():
        obj = type(obj).objects.select_for_update().get(pk=obj.pk)
        before = {f: getattr(obj, f) for f in allowed}
        for name, value in fields.items():
            setattr(obj, name, value)
        _clean_and_save(obj)
        changes = {
            f: [_jsonable(before[f]), _jsonable(getattr(obj, f))]
            for f in allowed
            if before[f] != getattr(obj, f)
        }
        if changes:
            record(action, obj=obj, changes=changes)
    return obj


def set_bundle_components(bundle: SKU, components: Sequence[tuple[SKU, int]]) -> SKU:
    """Make `bundle` a bundle of `components` (replacing any previous recipe)."""
    seen = set()
    for component, quantity in components:
        if component.pk == bundle.pk:
            raise ValidationError("A bundle cannot contain itself.", code="self_component")
        if component.is_bundle:
            raise ValidationError(
                f"{component.code} is itself a bundle; nest components directly.",
                code="nested_bundle",
            )
        if not isinstance(quantity, int) or quantity < 1:
            raise ValidationError(
                "Component quantities are whole numbers above zero.", code="invalid_quantity"
            )
        if component.pk in seen:
            raise ValidationError(f"{component.code} is listed twice.", code="duplicate")
        seen.add(component.pk)
    if not components:
        raise ValidationError("A bundle needs at least one component.", code="empty_bundle")
    from inventory.models import StockBalance

    with transaction.atomic():
        bundle = SKU.objects.select_for_update().get(pk=bundle.pk)
        if StockBalance.objects.filter(sku=bundle).exclude(quantity=0).exists():
            raise ValidationError(
                f"{bundle.code} holds stock of its own; move it out before making it a bundle.",
                code="bundle_has_stock",
            )
        if BundleComponent.objects.filter(component=bundle).exists():
            raise ValidationError(
                f"{bundle.code} is a component of another bundle.", code="nested_bundle"
            )
        before = list(bundle.components.values_list("component__code", "quantity"))
        bundle.components.all().delete()
        BundleComponent.objects.bulk_create(
            [BundleComponent(bundle=bundle, component=c, quantity=q) for c, q in components]
        )
        if not bundle.is_bundle:
            bundle.is_bundle = True
            bundle.save(update_fields=["is_bundle", "updated_at"])
        record(
            "sku.bundle_set",
            obj=bundle,
            changes={
                "components": [[list(x) for x in before], [[c.code, q] for c, q in components]]
            },
        )
    return bundle


# --- Listings --------------------------------------------------------------------------


def map_listing(
    *, channel: str, external_sku: str, sku: SKU, external_listing_id: str = ""
) -> ListingMapping:
    channel, external_sku = channel.strip(), external_sku.strip()
    if not channel or not external_sku:
        raise ValidationError("Channel and external SKU are required.", code="required")
    try:
        with transaction.atomic():
            mapping = ListingMapping.objects.create(
                channel=channel,
                external_sku=external_sku,
                sku=sku,
                external_listing_id=external_listing_id,
            )
            record(
                "listing.mapped",
                obj=mapping,
                changes={"channel": channel, "external_sku": external_sku, "sku": sku.code},
            )
    except IntegrityError as exc:
        raise ValidationError(
            f"{channel}:{external_sku} is already mapped.", code="already_mapped"
        ) from exc
    return mapping


def unmap_listing(mapping: ListingMapping) -> None:
    """Remove a mapping; the next order with that external SKU lands in the unmapped queue."""
    with transaction.atomic():
        record(
            "listing.mapping_removed",
            obj=mapping,
            changes={
                "channel": mapping.channel,
                "external_sku": mapping.external_sku,
                "sku": mapping.sku.code,
            },
        )
        mapping.delete()


def resolve_listing(
    *,
    channel: str,
    external_sku: str,
    external_listing_id: str = "",
    title: str = "",
    waiting: dict | None = None,
) -> SKU | None:
    """The SKU for a channel's external SKU, or None after parking it in the unmapped queue.

    `waiting` ({"kind": ..., "id": ...}) is what should be re-processed once a person maps
    the listing (e.g. a held order line).
    """
    mapping = (
        ListingMapping.objects.select_related("sku")
        .filter(channel=channel, external_sku=external_sku)
        .first()
    )
    if mapping is not None:
        return mapping.sku
    with transaction.atomic():
        item, created = UnmappedListing.objects.select_for_update().get_or_create(
            channel=channel,
            external_sku=external_sku,
            status=UnmappedStatus.OPEN,
            defaults={
                "external_listing_id": external_listing_id,
                "title": title[:255],
                "waiting": [waiting] if waiting else [],
            },
        )
        if not created:
            item.occurrences = F("occurrences") + 1
            if waiting and waiting not in item.waiting:
                item.waiting = [*item.waiting, waiting]
            item.save(update_fields=["occurrences", "waiting", "last_seen_at"])
        else:
            record(
                "listing.unmapped",
                obj=item,
                changes={"channel": channel, "external_sku": external_sku},
            )
    return None


def resolve_unmapped(item: UnmappedListing, *, sku: SKU) -> ListingMapping:
    """Map an unmapped listing to `sku` and hand everything parked on it back."""
    with transaction.atomic():
        item = UnmappedListing.objects.select_for_update().get(pk=item.pk)
        if item.status != UnmappedStatus.OPEN:
            raise ValidationError("This listing was already resolved.", code="already_resolved")
        mapping = map_listing(
            channel=item.channel,
            external_sku=item.external_sku,
            sku=sku,
            external_listing_id=item.external_listing_id,
        )
        item.status = UnmappedStatus.RESOLVED
        item.resolved_sku = sku
        item.resolved_at = timezone.now()
        item.save(update_fields=["status", "resolved_sku", "resolved_at"])
        waiting = list(item.waiting)

        def reprocess() -> None:
            for entry in waiting:
                handler = REPROCESSORS.get(entry.get("kind", ""))
                if handler is not None:
                    handler(entry, sku)

        transaction.on_commit(reprocess)
    return mapping


def ignore_unmapped(item: UnmappedListing) -> None:
    with transaction.atomic():
        updated = UnmappedListing.objects.filter(pk=item.pk, status=UnmappedStatus.OPEN).update(
            status=UnmappedStatus.IGNORED, resolved_at=timezone.now()
        )
        if updated:
            record("listing.ignored", obj=item)
