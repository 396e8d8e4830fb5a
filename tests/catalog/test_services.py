"""Item master services: per-field change history, listing mappings, the unmapped queue."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction

from accounts.roles import Role
from audit.context import actor_for_user, reset_actor, set_actor
from audit.models import ActivityEntry
from catalog import services as catalog
from catalog.models import SKU, ListingMapping, UnmappedListing
from tests.conftest import make_user
from tests.factories import ProductFactory, SKUFactory

pytestmark = pytest.mark.usefixtures("in_alpha")

VALID_GTIN = "4006381333931"  # EAN-13 with a correct check digit


def acting_as(user) -> object:
    return set_actor(actor_for_user(user))


def sku_history(sku: SKU) -> list[ActivityEntry]:
    return list(
        ActivityEntry.objects.filter(object_type="catalog.sku", object_id=str(sku.pk)).order_by(
            "id"
        )
    )


# --- Change history -----------------------------------------------------------------------


def test_every_field_change_is_in_the_skus_history_with_who_and_when(brand_a):
    creator = make_user(brand_a, role=Role.BUYER, email="cleo@alpha.example")
    editor = make_user(brand_a, role=Role.BUYER, email="eddie@alpha.example")
    token = acting_as(creator)
    try:
        sku = catalog.create_sku(
            product=ProductFactory(),
            code="MUG-1",
            title="Blue mug",
            weight=Decimal("350"),
            unit_cost=Decimal("4.20"),
            cost_currency="USD",
        )
    finally:
        reset_actor(token)

    token = acting_as(editor)
    try:
        catalog.update_sku(
            sku,
            title="Navy mug",
            gtin=VALID_GTIN,
            weight=Decimal("0.35"),
            weight_unit="kg",
            unit_cost=Decimal("4.50"),
            tags=["kitchen"],
            status="discontinued",
            is_hazmat=True,
        )
        # Saving the same values again is not a change: nothing is written.
        catalog.update_sku(sku, title="Navy mug", status="discontinued")
    finally:
        reset_actor(token)

    created, updated = sku_history(sku)
    assert (created.action, created.actor_label) == ("sku.created", "cleo@alpha.example")
    assert created.changes["title"] == [None, "Blue mug"]
    assert (updated.action, updated.actor_type, updated.actor_label) == (
        "sku.updated",
        "user",
        "eddie@alpha.example",
    )
    assert updated.actor_id == str(editor.pk)
    assert updated.created_at >= created.created_at
    assert updated.changes == {
        "title": ["Blue mug", "Navy mug"],
        "gtin": [None, VALID_GTIN],
        "weight": ["350.000", "0.35"],
        "weight_unit": ["g", "kg"],
        "unit_cost": ["4.2000", "4.50"],
        "tags": [[], ["kitchen"]],
        "status": ["active", "discontinued"],
        "is_hazmat": [False, True],
    }


def test_a_refused_edit_changes_nothing_and_leaves_no_history():
    sku = catalog.create_sku(product=ProductFactory(), code="MUG-1", title="Blue mug")
    entries = ActivityEntry.objects.count()

    with pytest.raises(ValidationError) as excinfo:
        catalog.update_sku(sku, title="Navy mug", gtin="4006381333932")  # wrong check digit

    assert "gtin" in excinfo.value.message_dict
    sku.refresh_from_db()
    assert (sku.title, sku.gtin) == ("Blue mug", None)
    assert ActivityEntry.objects.count() == entries
    with pytest.raises(ValidationError):
        catalog.update_sku(sku, is_bundle=True)  # not an editable field
    assert ActivityEntry.objects.count() == entries


# --- Listing mappings and the unmapped queue ----------------------------------------------


def test_many_external_listings_map_to_one_sku():
    mug, other = SKUFactory(code="MUG-1"), SKUFactory(code="TEE-1")
    for channel, external in (("shopify", "SH-MUG"), ("amazon", "B0MUG"), ("amazon", "B0MUG-2")):
        catalog.map_listing(channel=channel, external_sku=external, sku=mug)

    assert {
        (channel, external): catalog.resolve_listing(channel=channel, external_sku=external)
        for channel, external in (("shopify", "SH-MUG"), ("amazon", "B0MUG"), ("amazon", "B0MUG-2"))
    } == {("shopify", "SH-MUG"): mug, ("amazon", "B0MUG"): mug, ("amazon", "B0MUG-2"): mug}
    # One external SKU of one channel points at exactly one SKU.
    with pytest.raises(ValidationError) as excinfo:
        catalog.map_listing(channel="amazon", external_sku="B0MUG", sku=other)
    assert excinfo.value.code == "already_mapped"
    assert ListingMapping.objects.filter(sku=mug).count() == 3
    assert UnmappedListing.objects.count() == 0


def test_an_unknown_external_sku_is_queued_never_dropped():
    first = {"kind": "order", "id": 1}
    second = {"kind": "order", "id": 2}

    assert (
        catalog.resolve_listing(
            channel="shopify", external_sku="SH-NEW", title="New mug", waiting=first
        )
        is None
    )
    catalog.resolve_listing(channel="shopify", external_sku="SH-NEW", waiting=second)
    catalog.resolve_listing(channel="shopify", external_sku="SH-NEW", waiting=first)
    catalog.resolve_listing(channel="amazon", external_sku="SH-NEW")

    item = UnmappedListing.objects.get(channel="shopify")
    assert (item.status, item.title, item.occurrences) == ("open", "New mug", 3)
    assert item.waiting == [first, second]  # each waiting thing once
    assert UnmappedListing.objects.filter(channel="amazon", status="open").count() == 1
    assert ActivityEntry.objects.filter(action="listing.unmapped").count() == 2


@pytest.fixture
def handed_back() -> Iterator[list]:
    """A reprocessor for a test kind, registered the way apps register theirs."""
    seen: list = []
    catalog.REPROCESSORS["test_parcel"] = lambda entry, sku: seen.append((entry["id"], sku.code))
    yield seen
    del catalog.REPROCESSORS["test_parcel"]


def test_resolving_maps_the_listing_and_reprocesses_what_waited(
    handed_back, django_capture_on_commit_callbacks
):
    mug = SKUFactory(code="MUG-1")
    for parcel in (7, 8):
        catalog.resolve_listing(
            channel="shopify", external_sku="SH-NEW", waiting={"kind": "test_parcel", "id": parcel}
        )
    # A kind nobody registered is skipped, not an error.
    catalog.resolve_listing(
        channel="shopify", external_sku="SH-NEW", waiting={"kind": "retired_kind", "id": 1}
    )
    item = UnmappedListing.objects.get()

    with django_capture_on_commit_callbacks(execute=True):
        mapping = catalog.resolve_unmapped(item, sku=mug)

    assert handed_back == [(7, "MUG-1"), (8, "MUG-1")]
    assert (mapping.channel, mapping.external_sku, mapping.sku) == ("shopify", "SH-NEW", mug)
    item.refresh_from_db()
    assert (item.status, item.resolved_sku, item.resolved_at is not None) == (
        "resolved",
        mug,
        True,
    )
    assert catalog.resolve_listing(channel="shopify", external_sku="SH-NEW") == mug
    with pytest.raises(ValidationError) as excinfo:
        catalog.resolve_unmapped(item, sku=mug)
    assert excinfo.value.code == "already_resolved"
    assert handed_back == [(7, "MUG-1"), (8, "MUG-1")]


def test_nothing_is_reprocessed_when_resolving_rolls_back(
    handed_back, django_capture_on_commit_callbacks
):
    mug = SKUFactory(code="MUG-1")
    catalog.resolve_listing(
        channel="shopify", external_sku="SH-NEW", waiting={"kind": "test_parcel", "id": 7}
    )
    item = UnmappedListing.objects.get()

    with (
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        catalog.resolve_unmapped(item, sku=mug)
        raise RuntimeError("the caller's transaction failed")

    assert handed_back == []
    item.refresh_from_db()
    assert item.status == "open"
    assert not ListingMapping.objects.exists()
