"""Item master over the REST API: products, SKUs, bundles, listing mappings, unmapped queue."""

import pytest
from django_tenants.utils import schema_context

from accounts.roles import Role
from accounts.services import create_api_key
from audit.models import ActivityEntry
from catalog import services as catalog_services
from catalog.models import SKU, BundleComponent, ListingMapping, Product, UnmappedListing
from inventory import services as stock
from tests.conftest import brand_client, make_user
from tests.factories import ProductFactory, SKUFactory, WarehouseFactory

JSON = "application/json"


@pytest.fixture(autouse=True)
def _generous_rate_limit(settings):
    # Budgets live in the shared cache across tests; these tests count behaviour, not rate.
    settings.API_RATE_LIMIT = "100000/min"


def in_schema(brand):
    return schema_context(brand.schema_name)


def test_product_and_sku_round_trip(brand_a, owner_a):
    client = brand_client(brand_a, owner_a)

    product = client.post(
        "/api/v1/products/",
        {"title": "Merino tee", "vendor": "Keel Knits", "tags": ["tops"], "status": "active"},
        content_type=JSON,
    )
    assert product.status_code == 201
    product_id = product.json()["id"]
    assert product.json()["status"] == "active"

    created = client.post(
        "/api/v1/skus/",
        {
            "product": product_id,
            "code": "TEE-M-NAVY",
            "title": "Merino tee M navy",
            "option_values": {"Size": "M", "Colour": "Navy"},
            "gtin": "4006381333931",
            "tags": ["summer"],
            "weight": "180.5",
            "weight_unit": "g",
            "unit_cost": "12.5",
            "cost_currency": "EUR",
            "is_hazmat": False,
        },
        content_type=JSON,
    )
    assert created.status_code == 201, created.json()
    body = created.json()
    sku_id = body["id"]
    # Money and measures travel as decimal strings, never floats.
    assert body["unit_cost"] == "12.5000"
    assert body["cost_currency"] == "EUR"
    assert body["weight"] == "180.500"
    assert body["option_values"] == {"Size": "M", "Colour": "Navy"}
    assert body["is_bundle"] is False
    assert body["components"] == []
    assert body["available"] == 0

    patched = client.patch(
        f"/api/v1/skus/{sku_id}/",
        {"title": "Merino tee, medium, navy", "unit_cost": "13.00"},
        content_type=JSON,
    )
    assert patched.status_code == 200
    assert patched.json()["title"] == "Merino tee, medium, navy"
    assert patched.json()["unit_cost"] == "13.0000"

    detail = client.get(f"/api/v1/skus/{sku_id}/").json()
    assert detail["product"] == product_id
    assert detail["code"] == "TEE-M-NAVY"
    assert detail["gtin"] == "4006381333931"

    renamed = client.patch(
        f"/api/v1/products/{product_id}/", {"title": "Merino T-shirt"}, content_type=JSON
    )
    assert renamed.status_code == 200
    assert client.get(f"/api/v1/products/{product_id}/").json()["title"] == "Merino T-shirt"

    with in_schema(brand_a):
        entry = ActivityEntry.objects.get(action="sku.updated", object_id=str(sku_id))
        assert entry.changes == {
            "title": ["Merino tee M navy", "Merino tee, medium, navy"],
            "unit_cost": ["12.5000", "13.0000"],
        }
        assert (entry.actor_type, entry.actor_id) == ("user", str(owner_a.pk))


def test_bad_gtin_check_digit_is_a_field_error_and_nothing_is_saved(brand_a, owner_a):
    with in_schema(brand_a):
        product = ProductFactory()

    response = brand_client(brand_a, owner_a).post(
        "/api/v1/skus/",
        {"product": product.pk, "code": "BAD-GTIN", "gtin": "4006381333932"},
        content_type=JSON,
    )

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["fields"]["gtin"] == [
        {"code": "bad_check_digit", "message": "The GTIN check digit is wrong."}
    ]
    with in_schema(brand_a):
        assert not SKU.objects.filter(code="BAD-GTIN").exists()


def test_unit_cost_requires_a_currency_on_create_and_on_update(brand_a, owner_a):
    with in_schema(brand_a):
        product = ProductFactory()
        sku = SKUFactory(product=product)
    client = brand_client(brand_a, owner_a)

    created = client.post(
        "/api/v1/skus/",
        {"product": product.pk, "code": "NO-CCY", "unit_cost": "4.20"},
        content_type=JSON,
    )
    patched = client.patch(f"/api/v1/skus/{sku.pk}/", {"unit_cost": "4.20"}, content_type=JSON)
    bad_code = client.post(
        "/api/v1/skus/",
        {"product": product.pk, "code": "LOWER", "unit_cost": "1", "cost_currency": "usd"},
        content_type=JSON,
    )

    assert created.status_code == 400
    assert created.json()["error"]["fields"]["cost_currency"][0]["code"] == "required"
    assert patched.status_code == 400
    assert patched.json()["error"]["fields"]["cost_currency"][0]["code"] == "required"
    assert bad_code.status_code == 400
    assert bad_code.json()["error"]["fields"]["cost_currency"][0]["code"] == "invalid"
    with in_schema(brand_a):
        assert SKU.objects.get(pk=sku.pk).unit_cost is None
        assert not SKU.objects.filter(code__in=["NO-CCY", "LOWER"]).exists()


def test_sku_codes_are_unique_ignoring_case(brand_a, owner_a):
    with in_schema(brand_a):
        existing = SKUFactory(code="MUG-01")
        other = SKUFactory(code="MUG-02")
    client = brand_client(brand_a, owner_a)

    created = client.post(
        "/api/v1/skus/", {"product": existing.product_id, "code": "mug-01"}, content_type=JSON
    )
    renamed = client.patch(f"/api/v1/skus/{other.pk}/", {"code": "Mug-01"}, content_type=JSON)
    unchanged = client.patch(f"/api/v1/skus/{existing.pk}/", {"code": "MUG-01"}, content_type=JSON)

    assert created.status_code == 400
    assert created.json()["error"]["fields"]["code"][0]["code"] == "unique"
    assert renamed.status_code == 400
    assert renamed.json()["error"]["fields"]["code"][0]["code"] == "unique"
    assert unchanged.status_code == 200
    with in_schema(brand_a):
        assert SKU.objects.filter(code__iexact="mug-01").count() == 1


def test_sku_list_filters_and_available(brand_a, owner_a):
    with in_schema(brand_a):
        tees = ProductFactory(title="Tees")
        tee = SKUFactory(product=tees, code="TEE-S", tags=["summer", "tops"])
        SKUFactory(product=tees, code="TEE-L", status="draft")
        mug = SKUFactory(code="MUG", tags=["kitchen"], gtin="036000291452")
        gift = SKUFactory(code="GIFT-BOX")
        catalog_services.set_bundle_components(gift, [(tee, 1), (mug, 2)])
        wh, other_wh = WarehouseFactory(safety_buffer=1), WarehouseFactory()
        stock.receive(sku=tee, warehouse=wh, quantity=10)
        stock.receive(sku=tee, warehouse=other_wh, quantity=3)
        stock.receive(sku=mug, warehouse=wh, quantity=5)
    client = brand_client(brand_a, owner_a)

    def codes(query: str) -> list[str]:
        response = client.get(f"/api/v1/skus/?{query}")
        assert response.status_code == 200, response.json()
        return sorted(s["code"] for s in response.json()["results"])

    assert codes("") == ["GIFT-BOX", "MUG", "TEE-L", "TEE-S"]
    assert codes("search=tee") == ["TEE-L", "TEE-S"]
    assert codes("search=036000291452") == ["MUG"]
    assert codes("status=draft") == ["TEE-L"]
    assert codes("tag=summer") == ["TEE-S"]
    assert codes(f"product={tees.pk}") == ["TEE-L", "TEE-S"]
    assert codes("is_bundle=true") == ["GIFT-BOX"]
    assert codes("is_bundle=false&tag=kitchen") == ["MUG"]

    available = {s["code"]: s["available"] for s in client.get("/api/v1/skus/").json()["results"]}
    # tee: (10 - buffer 1) + 3; mug: 5 - 1; gift box: min(9 // 1, 4 // 2) at wh, 0 at other_wh.
    assert available == {"TEE-S": 12, "TEE-L": 0, "MUG": 4, "GIFT-BOX": 2}

    bad = client.get("/api/v1/skus/?product=abc&status=gone")
    assert bad.status_code == 400
    fields = bad.json()["error"]["fields"]
    assert fields["product"][0]["code"] == "invalid"
    assert fields["status"][0]["code"] == "invalid_choice"


def test_products_list_filters(brand_a, owner_a):
    with in_schema(brand_a):
        ProductFactory(title="Linen shirt", status="active")
        ProductFactory(title="Wool socks", vendor="Linenworks", status="draft")
        ProductFactory(title="Cap", status="discontinued")
    client = brand_client(brand_a, owner_a)

    def titles(query: str) -> list[str]:
        return sorted(
            p["title"] for p in client.get(f"/api/v1/products/?{query}").json()["results"]
        )

    assert titles("search=linen") == ["Linen shirt", "Wool socks"]
    assert titles("status=discontinued") == ["Cap"]
    assert titles("status=active&search=linen") == ["Linen shirt"]


def test_bundle_recipe_put_and_get(brand_a, owner_a):
    with in_schema(brand_a):
        box, tee, mug = SKUFactory(code="BOX"), SKUFactory(code="TEE"), SKUFactory(code="MUG")
    client = brand_client(brand_a, owner_a)
    url = f"/api/v1/skus/{box.pk}/components/"

    assert client.get(url).json() == {"components": []}
    put = client.put(
        url,
        {"components": [{"sku": tee.pk, "quantity": 1}, {"sku": mug.pk, "quantity": 2}]},
        content_type=JSON,
    )

    assert put.status_code == 200
    expected = {
        "components": [
            {"sku": mug.pk, "sku_code": "MUG", "quantity": 2},
            {"sku": tee.pk, "sku_code": "TEE", "quantity": 1},
        ]
    }
    assert put.json() == expected
    assert client.get(url).json() == expected
    detail = client.get(f"/api/v1/skus/{box.pk}/").json()
    assert detail["is_bundle"] is True
    assert detail["components"] == expected["components"]


def test_bundle_recipe_errors_carry_service_codes(brand_a, owner_a):
    with in_schema(brand_a):
        box, tee = SKUFactory(code="BOX"), SKUFactory(code="TEE")
        inner = SKUFactory(code="INNER")
        catalog_services.set_bundle_components(inner, [(tee, 1)])
    client = brand_client(brand_a, owner_a)
    url = f"/api/v1/skus/{box.pk}/components/"

    itself = client.put(url, {"components": [{"sku": box.pk, "quantity": 1}]}, content_type=JSON)
    nested = client.put(url, {"components": [{"sku": inner.pk, "quantity": 1}]}, content_type=JSON)
    empty = client.put(url, {"components": []}, content_type=JSON)
    zero = client.put(url, {"components": [{"sku": tee.pk, "quantity": 0}]}, content_type=JSON)

    assert (itself.status_code, itself.json()["error"]["code"]) == (400, "self_component")
    assert (nested.status_code, nested.json()["error"]["code"]) == (400, "nested_bundle")
    assert empty.status_code == 400
    assert empty.json()["error"]["fields"]["components"][0]["code"] == "empty"
    assert zero.status_code == 400
    # Nested input errors are flattened to dotted paths.
    assert zero.json()["error"]["fields"] == {
        "components.0.quantity": [
            {"code": "min_value", "message": "Ensure this value is greater than or equal to 1."}
        ]
    }
    with in_schema(brand_a):
        assert not BundleComponent.objects.filter(bundle=box).exists()
        assert SKU.objects.get(pk=box.pk).is_bundle is False


def test_listing_mappings_create_list_filter_and_delete(brand_a, owner_a):
    with in_schema(brand_a):
        tee, mug = SKUFactory(code="TEE"), SKUFactory(code="MUG")
        ListingMapping.objects.create(channel="amazon", external_sku="AMZ-MUG", sku=mug)
    client = brand_client(brand_a, owner_a)

    created = client.post(
        "/api/v1/listing-mappings/",
        {
            "channel": "shopify",
            "external_sku": "SH-TEE",
            "external_listing_id": "gid://1",
            "sku": tee.pk,
        },
        content_type=JSON,
    )
    duplicate = client.post(
        "/api/v1/listing-mappings/",
        {"channel": "shopify", "external_sku": "SH-TEE", "sku": mug.pk},
        content_type=JSON,
    )

    assert created.status_code == 201
    body = created.json()
    assert {
        k: body[k] for k in ("channel", "external_sku", "external_listing_id", "sku", "sku_code")
    } == {
        "channel": "shopify",
        "external_sku": "SH-TEE",
        "external_listing_id": "gid://1",
        "sku": tee.pk,
        "sku_code": "TEE",
    }
    assert duplicate.status_code == 400
    assert duplicate.json()["error"]["code"] == "already_mapped"

    def external(query: str) -> list[str]:
        results = client.get(f"/api/v1/listing-mappings/?{query}").json()["results"]
        return sorted(m["external_sku"] for m in results)

    assert external("") == ["AMZ-MUG", "SH-TEE"]
    assert external("channel=amazon") == ["AMZ-MUG"]
    assert external(f"sku={tee.pk}") == ["SH-TEE"]

    deleted = client.delete(f"/api/v1/listing-mappings/{body['id']}/")
    assert deleted.status_code == 204
    with in_schema(brand_a):
        assert not ListingMapping.objects.filter(pk=body["id"]).exists()
        entry = ActivityEntry.objects.get(action="listing.mapping_removed")
        assert entry.changes == {"channel": "shopify", "external_sku": "SH-TEE", "sku": "TEE"}


def test_unmapped_listing_is_resolved_through_the_api(brand_a, owner_a):
    with in_schema(brand_a):
        tee = SKUFactory(code="TEE")
        assert catalog_services.resolve_listing(channel="shopify", external_sku="X-1") is None
        assert catalog_services.resolve_listing(channel="ebay", external_sku="E-1") is None
        item = UnmappedListing.objects.get(external_sku="X-1")
    client = brand_client(brand_a, owner_a)

    listed = client.get("/api/v1/unmapped-listings/?status=open&channel=shopify").json()
    assert [i["external_sku"] for i in listed["results"]] == ["X-1"]

    resolved = client.post(
        f"/api/v1/unmapped-listings/{item.pk}/resolve/", {"sku": tee.pk}, content_type=JSON
    )
    again = client.post(
        f"/api/v1/unmapped-listings/{item.pk}/resolve/", {"sku": tee.pk}, content_type=JSON
    )

    assert resolved.status_code == 200
    assert {k: resolved.json()[k] for k in ("status", "resolved_sku", "resolved_sku_code")} == {
        "status": "resolved",
        "resolved_sku": tee.pk,
        "resolved_sku_code": "TEE",
    }
    assert (again.status_code, again.json()["error"]["code"]) == (400, "already_resolved")
    with in_schema(brand_a):
        assert ListingMapping.objects.get(channel="shopify", external_sku="X-1").sku_id == tee.pk
        assert catalog_services.resolve_listing(channel="shopify", external_sku="X-1") == tee
    assert (
        client.get("/api/v1/unmapped-listings/?status=open").json()["results"][0]["external_sku"]
        == "E-1"
    )


@pytest.mark.parametrize(
    ("role", "can_edit"),
    [
        (Role.VIEWER, False),
        (Role.WAREHOUSE, False),
        (Role.BUYER, True),
        (Role.OPS_MANAGER, True),
    ],
)
def test_role_matrix_for_catalog_writes(brand_a, role, can_edit):
    person = make_user(brand_a, role=role)
    with in_schema(brand_a):
        sku = SKUFactory(code="ROLE-SKU", title="Before")
    client = brand_client(brand_a, person)

    read = client.get("/api/v1/skus/")
    patch = client.patch(f"/api/v1/skus/{sku.pk}/", {"title": "After"}, content_type=JSON)
    post = client.post("/api/v1/products/", {"title": f"By {role}"}, content_type=JSON)

    assert read.status_code == 200
    assert [s["code"] for s in read.json()["results"]] == ["ROLE-SKU"]
    if can_edit:
        assert (patch.status_code, post.status_code) == (200, 201)
    else:
        assert (patch.status_code, post.status_code) == (403, 403)
        assert patch.json()["error"]["code"] == "permission_denied"
        with in_schema(brand_a):
            assert SKU.objects.get(pk=sku.pk).title == "Before"
            assert not Product.objects.filter(title=f"By {role}").exists()


def test_read_key_cannot_write_the_catalog_and_write_key_can(brand_a, owner_a):
    with in_schema(brand_a):
        product = ProductFactory()
        read_key = create_api_key(actor=owner_a, name="BI", scope="read")
        write_key = create_api_key(actor=owner_a, name="ERP", scope="write")
    client = brand_client(brand_a)
    body = {"product": product.pk, "code": "KEYED"}

    listed = client.get("/api/v1/skus/", HTTP_AUTHORIZATION=f"Api-Key {read_key.secret}")
    refused = client.post(
        "/api/v1/skus/", body, content_type=JSON, HTTP_AUTHORIZATION=f"Api-Key {read_key.secret}"
    )
    with in_schema(brand_a):
        assert not SKU.objects.filter(code="KEYED").exists()
    accepted = client.post(
        "/api/v1/skus/", body, content_type=JSON, HTTP_AUTHORIZATION=f"Api-Key {write_key.secret}"
    )

    assert listed.status_code == 200
    assert refused.status_code == 403
    assert accepted.status_code == 201
    with in_schema(brand_a):
        entry = ActivityEntry.objects.get(action="sku.created")
        assert (entry.actor_type, entry.actor_id) == ("api_key", str(write_key.api_key.pk))


def test_another_brands_catalog_ids_are_not_found(brand_a, brand_b, owner_a):
    with in_schema(brand_b):
        foreign = SKUFactory(code="BETA-ONLY")
        foreign_product = foreign.product
    client = brand_client(brand_a, owner_a)

    assert client.get(f"/api/v1/skus/{foreign.pk}/").status_code == 404
    assert client.get(f"/api/v1/products/{foreign_product.pk}/").status_code == 404
    patch = client.patch(f"/api/v1/skus/{foreign.pk}/", {"title": "x"}, content_type=JSON)
    assert (patch.status_code, patch.json()["error"]["code"]) == (404, "not_found")
    assert client.get(f"/api/v1/skus/{foreign.pk}/components/").status_code == 404
    # As a reference inside a body, a foreign id is simply an id that does not exist here.
    mapped = client.post(
        "/api/v1/listing-mappings/",
        {"channel": "shopify", "external_sku": "X", "sku": foreign.pk},
        content_type=JSON,
    )
    assert mapped.status_code == 400
    assert mapped.json()["error"]["fields"]["sku"][0]["code"] == "does_not_exist"
    assert client.get("/api/v1/skus/").json()["results"] == []
    with in_schema(brand_b):
        assert SKU.objects.get(pk=foreign.pk).title == "BETA-ONLY"
