"""Item master pages: list, search and filters, SKU forms, SKU page, bundles, unmapped queue."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.roles import Role
from audit.models import ActivityEntry
from catalog import services as catalog
from catalog.models import SKU, BundleComponent, ListingMapping, Product, UnmappedListing
from inventory import services as stock
from inventory.services import Reference, ReserveLine
from tests.conftest import brand_client, make_user
from tests.factories import ProductFactory, SKUFactory, WarehouseFactory

VALID_GTIN = "4006381333931"  # EAN-13 with a correct check digit


@pytest.fixture
def buyer(brand_a):
    return brand_client(brand_a, make_user(brand_a, role=Role.BUYER, full_name="Bea Buyer"))


@pytest.fixture
def viewer(brand_a):
    return brand_client(brand_a, make_user(brand_a, role=Role.VIEWER))


def snapshot() -> list:
    return [
        list(Product.objects.order_by("pk").values_list("pk", "title")),
        list(SKU.objects.order_by("pk").values_list("pk", "code", "title", "gtin", "is_bundle")),
        list(BundleComponent.objects.order_by("pk").values_list("pk", "quantity")),
        list(ListingMapping.objects.order_by("pk").values_list("pk", "sku_id")),
        list(UnmappedListing.objects.order_by("pk").values_list("pk", "status")),
    ]


# --- List, search, filters --------------------------------------------------------------


def test_list_shows_sellable_and_available_per_sku(in_alpha, viewer):
    mug = SKUFactory(code="MUG-1")
    SKUFactory(code="TEE-1")  # no stock anywhere: listed with zeros
    east, west = WarehouseFactory(safety_buffer=2), WarehouseFactory()
    stock.receive(sku=mug, warehouse=east, quantity=10)
    stock.receive(sku=mug, warehouse=west, quantity=5)
    stock.reserve(
        lines=[ReserveLine(mug, west, 3)], kind="order_line", reference=Reference("order", "1")
    )

    response = viewer.get("/catalog/")

    assert response.status_code == 200
    rows = {sku.code: (sku.on_hand, sku.available) for sku in response.context["page"]}
    # Available = (10 − 0 − buffer 2) + (5 − 3 − 0).
    assert rows == {"MUG-1": (15, 10), "TEE-1": (0, 0)}


def test_list_costs_the_same_queries_for_2_or_20_skus(in_alpha, viewer):
    wh = WarehouseFactory()

    def queries_for_page() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert viewer.get("/catalog/").status_code == 200
        return len(captured)

    for _ in range(2):
        stock.receive(sku=SKUFactory(), warehouse=wh, quantity=3)
    small = queries_for_page()
    for _ in range(18):
        stock.receive(sku=SKUFactory(), warehouse=wh, quantity=3)
    large = queries_for_page()

    assert large == small


def test_search_by_htmx_returns_only_the_results_partial(in_alpha, viewer):
    SKUFactory(code="MUG-NAVY", title="Navy mug")
    SKUFactory(code="TEE-RED", title="Red tee")

    response = viewer.get("/catalog/", {"q": "navy"}, HTTP_HX_REQUEST="true")

    assert response.status_code == 200
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="results">')
    assert "<html" not in body
    assert "MUG-NAVY" in body
    assert "TEE-RED" not in body


def test_pages_of_results_load_in_place_and_keep_the_filters(in_alpha, viewer):
    for i in range(30):
        SKUFactory(code=f"MUG-{i:02d}")
    SKUFactory(code="TEE-1")

    first = viewer.get("/catalog/", {"q": "mug"}).content.decode()
    second = viewer.get("/catalog/", {"q": "mug", "page": "2"}, HTTP_HX_REQUEST="true")

    # The page links sit in a boosted container aimed at the results: htmx fetches the
    # next page and swaps only the results, as it does for the filters.
    assert (
        '<div hx-boost="true" hx-target="#results" hx-swap="outerHTML">'
        '\n<nav class="pagination" aria-label="Pages">'
    ) in first
    assert 'href="?q=mug&page=2">Next' in first
    body = second.content.decode()
    assert body.lstrip().startswith('<div id="results">')
    assert "<html" not in body
    assert [s.code for s in second.context["page"]] == [f"MUG-{i:02d}" for i in range(25, 30)]
    assert "Page 2 of 2" in body
    assert 'href="?q=mug&page=1">' in body


def test_full_page_search_keeps_the_query_in_the_box(in_alpha, viewer):
    SKUFactory(code="MUG-NAVY")

    response = viewer.get("/catalog/", {"q": "MUG"})

    assert b'value="MUG"' in response.content
    assert b"<html" in response.content
    assert [s.code for s in response.context["page"]] == ["MUG-NAVY"]


def test_filters_by_status_tag_bundle_and_warehouse_with_stock(in_alpha, viewer):
    a = SKUFactory(code="A", tags=["summer"], status="active")
    b = SKUFactory(code="B", tags=["winter"], status="draft")
    c = SKUFactory(code="C", tags=["summer", "winter"], status="active")
    kit = SKUFactory(code="KIT")
    catalog.set_bundle_components(kit, [(a, 1), (c, 2)])
    east, west = WarehouseFactory(), WarehouseFactory()
    stock.receive(sku=a, warehouse=east, quantity=4)
    stock.receive(sku=c, warehouse=west, quantity=6)
    stock.receive(sku=b, warehouse=west, quantity=1)

    def codes(**params) -> list[str]:
        return [s.code for s in viewer.get("/catalog/", params).context["page"]]

    assert codes(status="draft") == ["B"]
    assert codes(tag="summer") == ["A", "C"]
    assert codes(bundle="yes") == ["KIT"]
    assert codes(bundle="no") == ["A", "B", "C"]
    assert codes(warehouse=str(west.pk)) == ["B", "C"]
    assert codes(tag="winter", status="active") == ["C"]
    assert viewer.get("/catalog/").context["tags"] == ["summer", "winter"]


def test_bundles_show_how_many_can_be_built(in_alpha, viewer):
    cup, lid = SKUFactory(code="CUP"), SKUFactory(code="LID")
    kit = SKUFactory(code="KIT")
    catalog.set_bundle_components(kit, [(cup, 1), (lid, 2)])
    east, west = WarehouseFactory(), WarehouseFactory()
    stock.receive(sku=cup, warehouse=east, quantity=5)
    stock.receive(sku=lid, warehouse=east, quantity=7)
    stock.receive(sku=cup, warehouse=west, quantity=9)

    rows = {s.code: s.available for s in viewer.get("/catalog/").context["page"]}

    # east: min(5, 7 // 2) = 3; west has no lids.
    assert rows["KIT"] == 3


def test_empty_catalog_says_what_to_do_next(in_alpha, buyer, viewer):
    assert b"Create your first SKU" in buyer.get("/catalog/").content
    assert b"Ask an admin or buyer to add SKUs" in viewer.get("/catalog/").content


def test_sku_lookup_suggests_codes(in_alpha, viewer):
    SKUFactory(code="MUG-NAVY", title="Navy mug")
    SKUFactory(code="TEE-RED")

    response = viewer.get("/catalog/skus/lookup/", {"line_sku": "mug"})

    assert response.content.decode() == '<option value="MUG-NAVY">Navy mug</option>'


# --- Create and edit ----------------------------------------------------------------------


def sku_form(**overrides) -> dict:
    data = {
        "product": "",
        "new_product_title": "Camp mug",
        "code": "MUG-NAVY-12",
        "title": "Camp mug, navy, 12 oz",
        "option_values": "Colour: Navy\nSize: 12 oz",
        "gtin": VALID_GTIN,
        "tags": "enamel, outdoor",
        "status": "active",
        "weight": "0.350",
        "weight_unit": "kg",
        "length": "10",
        "width": "10",
        "height": "9.5",
        "dimension_unit": "cm",
        "unit_cost": "4.2500",
        "cost_currency": "usd",
    }
    data.update(overrides)
    return data


def test_create_sku_with_a_new_product(in_alpha, buyer):
    response = buyer.post("/catalog/skus/new/", sku_form())

    sku = SKU.objects.select_related("product").get()
    assert response.status_code == 302
    assert response["Location"] == f"/catalog/skus/{sku.pk}/"
    assert (sku.product.title, sku.product.status) == ("Camp mug", "active")
    assert sku.option_values == {"Colour": "Navy", "Size": "12 oz"}
    assert sku.tags == ["enamel", "outdoor"]
    assert (str(sku.weight), sku.weight_unit, sku.weight_grams) == ("0.350", "kg", 350)
    assert (str(sku.unit_cost), sku.cost_currency) == ("4.2500", "USD")
    entry = ActivityEntry.objects.get(action="sku.created", object_id=str(sku.pk))
    assert entry.actor_label.endswith("@example.com")


def test_create_sku_for_an_existing_product(in_alpha, buyer):
    product = ProductFactory(title="Camp mug")

    response = buyer.post(
        "/catalog/skus/new/", sku_form(product=str(product.pk), new_product_title="")
    )

    assert response.status_code == 302
    assert SKU.objects.get().product == product
    assert Product.objects.count() == 1


def test_create_sku_with_a_bad_gtin_shows_inline_error_and_creates_nothing(in_alpha, buyer):
    before = snapshot()

    response = buyer.post("/catalog/skus/new/", sku_form(gtin="4006381333932"))

    assert response.status_code == 422
    assert response.context["form"].errors == {"gtin": ["The GTIN check digit is wrong."]}
    assert b'id="id_gtin-errors"' in response.content
    # What was typed survives, so only the GTIN needs fixing.
    assert b'value="MUG-NAVY-12"' in response.content
    assert snapshot() == before


def test_create_sku_needs_a_product_and_a_unique_code(in_alpha, buyer):
    SKUFactory(code="MUG-NAVY-12")
    before = snapshot()

    response = buyer.post(
        "/catalog/skus/new/", sku_form(new_product_title="", code="mug-navy-12", gtin="")
    )

    assert response.status_code == 422
    assert response.context["form"].errors == {
        "product": ["Pick a product, or name a new one below."],
        "code": ["Another SKU already has the code mug-navy-12."],
    }
    assert snapshot() == before


def test_service_errors_roll_back_the_new_product(in_alpha, buyer):
    SKUFactory(gtin=VALID_GTIN)
    before = snapshot()

    response = buyer.post("/catalog/skus/new/", sku_form())

    assert response.status_code == 422
    assert response.context["form"].errors["gtin"] == ["SKU with this GTIN already exists."]
    assert snapshot() == before


def test_edit_sku_records_change_history_shown_on_the_sku_page(in_alpha, buyer):
    sku = SKUFactory(code="MUG-1", title="Blue mug")
    data = sku_form(code="MUG-1", title="Navy mug", gtin="", unit_cost="", cost_currency="")
    del data["product"], data["new_product_title"]

    response = buyer.post(f"/catalog/skus/{sku.pk}/edit/", data)

    assert response.status_code == 302
    sku.refresh_from_db()
    assert sku.title == "Navy mug"
    page = buyer.get(f"/catalog/skus/{sku.pk}/")
    history = list(page.context["history"])
    assert history[0].action == "sku.updated"
    assert history[0].changes["title"] == ["Blue mug", "Navy mug"]
    assert "Blue mug → Navy mug" in page.content.decode()


# --- SKU page -----------------------------------------------------------------------------


def test_sku_page_shows_stock_ledger_reservations_and_listings(in_alpha, viewer):
    sku = SKUFactory(code="MUG-1")
    east = WarehouseFactory(code="EAST", safety_buffer=1)
    stock.receive(sku=sku, warehouse=east, quantity=10, reference=Reference("document", "PS-9"))
    stock.adjust(sku=sku, warehouse=east, delta=-2, reason_code="damaged")
    stock.change_status(
        sku=sku, warehouse=east, quantity=1, from_status="sellable", to_status="damaged"
    )
    stock.reserve(
        lines=[ReserveLine(sku, east, 3)], kind="manual_hold", reference=Reference("hold", "h1")
    )
    catalog.map_listing(channel="shopify", external_sku="SHOP-MUG", sku=sku)

    response = viewer.get(f"/catalog/skus/{sku.pk}/")

    assert response.status_code == 200
    ctx = response.context
    assert [(b.status, b.quantity, b.reserved, b.available) for b in ctx["balances"]] == [
        ("damaged", 1, 0, None),
        ("sellable", 7, 3, 3),  # 7 − 3 reserved − 1 buffer
    ]
    assert [(m.kind, m.quantity, m.balance_after) for m in ctx["movements"]] == [
        ("status_change", 1, 1),
        ("status_change", -1, 7),
        ("adjustment", -2, 8),
        ("receipt", 10, 10),
    ]
    assert [(r.kind, r.quantity) for r in ctx["reservations"]] == [("manual_hold", 3)]
    assert [m.external_sku for m in ctx["listings"]] == ["SHOP-MUG"]
    body = response.content.decode()
    assert "document PS-9" in body
    assert "Damaged" in body
    assert 'class="num delta neg">-2<' in body


def test_sku_page_hides_actions_a_viewer_cannot_use(in_alpha, viewer, brand_a):
    sku = SKUFactory()
    warehouse_person = brand_client(brand_a, make_user(brand_a, role=Role.WAREHOUSE))

    as_viewer = viewer.get(f"/catalog/skus/{sku.pk}/").content.decode()
    as_warehouse = warehouse_person.get(f"/catalog/skus/{sku.pk}/").content.decode()

    for action in ("/inventory/adjust/", "/inventory/transfers/new/", f"/skus/{sku.pk}/edit/"):
        assert action not in as_viewer
    assert "/inventory/adjust/" in as_warehouse
    assert f"/skus/{sku.pk}/edit/" not in as_warehouse


def test_bundle_page_shows_components_and_buildable_per_warehouse(in_alpha, buyer):
    cup, lid = SKUFactory(code="CUP"), SKUFactory(code="LID")
    kit = SKUFactory(code="KIT")
    east = WarehouseFactory(code="EAST")
    stock.receive(sku=cup, warehouse=east, quantity=4)
    stock.receive(sku=lid, warehouse=east, quantity=4)

    response = buyer.post(
        f"/catalog/skus/{kit.pk}/bundle/",
        {"line_sku": ["cup", "LID", ""], "line_qty": ["1", "2", ""]},
    )

    assert response.status_code == 302
    assert list(kit.components.values_list("component__code", "quantity")) == [
        ("CUP", 1),
        ("LID", 2),
    ]
    page = buyer.get(f"/catalog/skus/{kit.pk}/")
    assert page.context["buildable"] == [("EAST", 2)]


def test_bundle_recipe_errors_show_per_line_and_change_nothing(in_alpha, buyer):
    cup = SKUFactory(code="CUP")
    kit = SKUFactory(code="KIT")
    before = snapshot()

    response = buyer.post(
        f"/catalog/skus/{kit.pk}/bundle/",
        {"line_sku": ["CUP", "NOPE", "KIT"], "line_qty": ["0", "1", "1"]},
    )

    assert response.status_code == 422
    errors = [line.errors for line in response.context["lines"].lines]
    assert errors == [
        ["Enter a whole number of 1 or more."],
        ["No SKU has the code NOPE."],
        [],
    ]
    assert snapshot() == before
    response = buyer.post(
        f"/catalog/skus/{kit.pk}/bundle/", {"line_sku": ["CUP", "KIT"], "line_qty": ["1", "1"]}
    )
    assert response.status_code == 422
    assert response.context["lines"].non_field_errors == ["A bundle cannot contain itself."]
    assert snapshot() == before
    assert cup.used_in.count() == 0


def test_add_line_button_returns_one_blank_row(in_alpha, buyer):
    kit = SKUFactory()

    response = buyer.get(f"/catalog/skus/{kit.pk}/bundle/", {"row": "1"}, HTTP_HX_REQUEST="true")

    body = response.content.decode().strip()
    assert body.startswith('<tr class="line">')
    assert body.count('name="line_sku"') == 1


# --- Unmapped listings --------------------------------------------------------------------


def test_resolve_unmapped_listing_by_htmx_maps_it(in_alpha, buyer):
    sku = SKUFactory(code="MUG-1")
    catalog.resolve_listing(channel="shopify", external_sku="SH-MUG", title="Mug")
    item = UnmappedListing.objects.get()
    assert b"SH-MUG" in buyer.get("/catalog/unmapped/").content

    response = buyer.post(
        f"/catalog/unmapped/{item.pk}/resolve/", {"sku": "mug-1"}, HTTP_HX_REQUEST="true"
    )

    assert response.status_code == 200
    assert f'id="unmapped-{item.pk}"' in response.content.decode()
    assert b"Mapped" in response.content
    assert ListingMapping.objects.get().sku == sku
    item.refresh_from_db()
    assert (item.status, item.resolved_sku) == ("resolved", sku)


def test_resolve_to_an_unknown_sku_shows_the_error_in_the_row(in_alpha, buyer):
    catalog.resolve_listing(channel="shopify", external_sku="SH-MUG")
    item = UnmappedListing.objects.get()
    before = snapshot()

    response = buyer.post(f"/catalog/unmapped/{item.pk}/resolve/", {"sku": "NOPE"})

    assert response.status_code == 422
    assert b"No SKU has the code NOPE." in response.content
    assert snapshot() == before


def test_ignore_unmapped_listing(in_alpha, buyer):
    catalog.resolve_listing(channel="amazon", external_sku="AMZ-1")
    item = UnmappedListing.objects.get()

    response = buyer.post(f"/catalog/unmapped/{item.pk}/ignore/")

    assert response.status_code == 302
    item.refresh_from_db()
    assert item.status == "ignored"
    assert buyer.get("/catalog/unmapped/").context["open_unmapped"] == 0


# --- Permissions --------------------------------------------------------------------------


def test_warehouse_role_gets_403_on_sku_create_and_edit(in_alpha, brand_a):
    sku = SKUFactory(code="MUG-1", title="Blue mug")
    client = brand_client(brand_a, make_user(brand_a, role=Role.WAREHOUSE))
    before = snapshot()

    responses = [
        client.get("/catalog/skus/new/"),
        client.post("/catalog/skus/new/", sku_form()),
        client.get(f"/catalog/skus/{sku.pk}/edit/"),
        client.post(f"/catalog/skus/{sku.pk}/edit/", sku_form(code="MUG-1", title="X")),
    ]

    assert [r.status_code for r in responses] == [403] * 4
    assert snapshot() == before


def test_viewer_gets_403_on_every_catalog_post_and_nothing_changes(in_alpha, viewer):
    sku, other = SKUFactory(code="MUG-1"), SKUFactory(code="CUP-1")
    catalog.resolve_listing(channel="shopify", external_sku="SH-1")
    item = UnmappedListing.objects.get()
    before = snapshot()

    responses = [
        viewer.post("/catalog/skus/new/", sku_form()),
        viewer.post(f"/catalog/skus/{sku.pk}/edit/", sku_form(code="MUG-1")),
        viewer.post(f"/catalog/skus/{sku.pk}/bundle/", {"line_sku": "CUP-1", "line_qty": "1"}),
        viewer.post(f"/catalog/unmapped/{item.pk}/resolve/", {"sku": other.code}),
        viewer.post(f"/catalog/unmapped/{item.pk}/ignore/"),
    ]

    assert [r.status_code for r in responses] == [403] * 5
    assert snapshot() == before
