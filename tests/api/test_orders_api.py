"""Orders, fulfillment orders, routing decisions and rules over the REST API."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django_tenants.utils import schema_context
from drf_spectacular.generators import SchemaGenerator

from accounts.roles import Role
from accounts.services import create_api_key
from inventory import services as stock
from inventory.models import Reservation, StockBalance
from orders.models import (
    Order,
    RoutingDecision,
    RoutingSettings,
    RuleSet,
)
from orders.services import ingest_order
from tests.conftest import brand_client, make_user
from tests.orders.conftest import T0, build_network, order_input, publish_typical_rules

JSON = "application/json"


@pytest.fixture(autouse=True)
def _generous_rate_limit(settings):
    # Budgets live in the shared cache across tests; these tests count behaviour, not rate.
    settings.API_RATE_LIMIT = "100000/min"


def in_schema(brand):
    return schema_context(brand.schema_name)


@pytest.fixture
def net(brand_a) -> dict:
    """Brand alpha with four warehouses, three mapped SKUs and the typical rules published."""
    with in_schema(brand_a):
        network = build_network()
        publish_typical_rules()
    return network


def order_body(external_id: str = "API-1", state: str = "CA", lines=(("TEE", 1),), **kw) -> dict:
    body = {
        "channel": "shop",
        "external_id": external_id,
        "placed_at": "2026-11-02T15:00:00Z",
        "currency": "USD",
        "customer_name": "Ada Buyer",
        "ship_name": "Ada Buyer",
        "ship_line1": "1 Main St",
        "ship_city": "Town",
        "ship_state": state,
        "ship_postal_code": "12345",
        "ship_country": "US",
        "lines": [
            {
                "external_line_id": f"{external_id}-{i}",
                "external_sku": f"ext-{code}",
                "quantity": quantity,
                "unit_price": "20.00",
            }
            for i, (code, quantity) in enumerate(lines)
        ],
    }
    body.update(kw)
    return body


def stock_of(brand, net, sku: str, warehouse: str) -> tuple[int, int]:
    """(quantity, reserved) of sellable stock."""
    with in_schema(brand):
        row = StockBalance.objects.get(
            sku=net["skus"][sku], warehouse=net["warehouses"][warehouse], status="sellable"
        )
        return row.quantity, row.reserved


def order_snapshot(brand) -> list[tuple]:
    with in_schema(brand):
        return [
            (
                o.pk,
                o.status,
                o.hold_reason,
                sorted(o.fulfillments.values_list("pk", "status")),
                o.decisions.count(),
            )
            for o in Order.objects.order_by("pk")
        ]


def ingest(brand, **kw) -> Order:
    with in_schema(brand):
        return ingest_order(order_input(**kw)).order


def fulfillments(body: dict) -> list[tuple[str, str]]:
    return [(fo["warehouse_code"], fo["status"]) for fo in body["fulfillment_orders"]]


# --- Create ----------------------------------------------------------------------------


def test_create_routes_the_order_and_retrieve_shows_lines_fulfillments_and_timeline(
    brand_a, owner_a, net
):
    client = brand_client(brand_a, owner_a)

    response = client.post(
        "/api/v1/orders/", order_body(lines=[("TEE", 2), ("HAT", 1)]), content_type=JSON
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["created"], body["applied"], body["messages"]) == (True, True, [])
    order = body["order"]
    assert (order["status"], order["hold_reason"], order["total"]) == ("routed", "", "60.00")
    assert [(ln["external_sku"], ln["sku_code"], ln["quantity"]) for ln in order["lines"]] == [
        ("ext-TEE", "TEE", 2),
        ("ext-HAT", "HAT", 1),
    ]
    (fo,) = order["fulfillment_orders"]
    assert (fo["warehouse_code"], fo["status"], fo["ship_type"]) == ("WEST", "open", "parcel")
    assert sorted((ln["sku_code"], ln["quantity"]) for ln in fo["lines"]) == [
        ("HAT", 1),
        ("TEE", 2),
    ]
    (decision,) = order["decisions"]
    assert (decision["layer"], decision["rule_name"], decision["rule_set_version"]) == (
        "rules",
        "West coast",
        1,
    )
    assert decision["chosen"] == {"WEST": [ln["id"] for ln in order["lines"]]}
    assert decision["explanation"] == "Rule “West coast” ships everything from WEST."
    assert decision["actor_label"] == owner_a.email
    assert stock_of(brand_a, net, "TEE", "WEST") == (100, 2)
    assert client.get(f"/api/v1/orders/{order['id']}/").json() == order


def test_idempotency_key_replays_and_a_different_body_is_refused(brand_a, owner_a, net):
    client = brand_client(brand_a, owner_a)
    key = {"HTTP_IDEMPOTENCY_KEY": "order-API-1"}

    first = client.post("/api/v1/orders/", order_body(), content_type=JSON, **key)
    replay = client.post("/api/v1/orders/", order_body(), content_type=JSON, **key)
    different = client.post(
        "/api/v1/orders/", order_body(lines=[("TEE", 5)]), content_type=JSON, **key
    )

    assert first.status_code == 201
    assert (replay.status_code, replay["Idempotent-Replayed"]) == (201, "true")
    assert replay.json() == first.json()
    assert different.status_code == 422
    assert different.json()["error"]["code"] == "idempotency_key_reused"
    with in_schema(brand_a):
        assert Order.objects.count() == 1
        assert Reservation.objects.filter(status="active").count() == 1
    assert stock_of(brand_a, net, "TEE", "WEST") == (100, 1)


def test_same_channel_order_twice_without_a_key_is_one_order(brand_a, owner_a, net):
    client = brand_client(brand_a, owner_a)

    first = client.post("/api/v1/orders/", order_body(), content_type=JSON)
    again = client.post("/api/v1/orders/", order_body(), content_type=JSON)

    assert (first.status_code, again.status_code) == (201, 200)
    assert (again.json()["created"], again.json()["applied"]) == (False, False)
    assert again.json()["messages"] == ["Older or repeated update ignored."]
    assert again.json()["order"]["id"] == first.json()["order"]["id"]
    with in_schema(brand_a):
        assert Order.objects.count() == 1
    assert stock_of(brand_a, net, "TEE", "WEST") == (100, 1)

    # A newer update from the channel applies to the same order and re-routes it.
    moved = client.post(
        "/api/v1/orders/",
        order_body(state="NY", updated_at="2026-11-02T16:00:00Z"),
        content_type=JSON,
    )

    assert moved.status_code == 200
    assert (moved.json()["created"], moved.json()["applied"]) == (False, True)
    assert moved.json()["order"]["id"] == first.json()["order"]["id"]
    assert fulfillments(moved.json()["order"]) == [("WEST", "cancelled"), ("PA", "open")]
    assert stock_of(brand_a, net, "TEE", "WEST") == (100, 0)
    assert stock_of(brand_a, net, "TEE", "PA") == (100, 1)


def test_order_cancelled_on_the_channel_before_keel_saw_it_is_recorded_not_routed(
    brand_a, owner_a, net
):
    # Regression: ingest_order used to route (and reserve stock for) such an order.
    client = brand_client(brand_a, owner_a)

    response = client.post("/api/v1/orders/", order_body(status="cancelled"), content_type=JSON)

    assert response.status_code == 201
    order = response.json()["order"]
    assert (order["status"], order["fulfillment_orders"], order["decisions"]) == (
        "cancelled",
        [],
        [],
    )
    assert stock_of(brand_a, net, "TEE", "WEST") == (100, 0)
    with in_schema(brand_a):
        assert Reservation.objects.count() == 0


def test_validation_errors_name_fields_with_codes_and_write_nothing(brand_a, owner_a, net):
    client = brand_client(brand_a, owner_a)
    no_lines = order_body()
    del no_lines["lines"]
    repeated = order_body(lines=[("TEE", 1), ("HAT", 1)])
    repeated["lines"][1]["external_line_id"] = repeated["lines"][0]["external_line_id"]
    zero = order_body()
    zero["lines"][0]["quantity"] = 0

    cases = [
        (no_lines, {"lines": ["required"]}),
        (order_body(lines=[]), {"lines": ["empty"]}),
        (
            order_body(placed_at="2026-11-02T15:00:00", updated_at="2026-11-02 16:00"),
            {"placed_at": ["naive_datetime"], "updated_at": ["naive_datetime"]},
        ),
        (repeated, {"lines": ["duplicate_line_id"]}),
        (zero, {"lines.0.quantity": ["min_value"]}),
        (
            order_body(currency="usd", ship_country="USA", order_type="retail"),
            {
                "currency": ["invalid"],
                "ship_country": ["invalid"],
                "order_type": ["invalid_choice"],
            },
        ),
    ]
    for body, expected in cases:
        response = client.post("/api/v1/orders/", body, content_type=JSON)
        assert response.status_code == 400, body
        error = response.json()["error"]
        assert error["code"] == "validation_error"
        codes = {name: [e["code"] for e in errors] for name, errors in error["fields"].items()}
        assert codes == expected
    naive = client.post(
        "/api/v1/orders/", order_body(placed_at="2026-11-02T15:00:00"), content_type=JSON
    )
    assert naive.json()["error"]["fields"]["placed_at"][0]["message"] == (
        "Include the timezone, e.g. 2026-11-02T15:00:00Z or +01:00."
    )
    with in_schema(brand_a):
        assert Order.objects.count() == 0
        assert Reservation.objects.count() == 0


# --- List and filters ------------------------------------------------------------------


def test_order_list_filters(brand_a, owner_a, net):
    west = ingest(brand_a, external_id="L-WEST", state="CA", customer_name="Grace Hopper")
    east = ingest(brand_a, external_id="L-EAST", state="NY", customer_email="ada@example.com")
    fraud = ingest(brand_a, external_id="L-FRAUD", fraud_flag=True)
    b2b = ingest(brand_a, external_id="L-B2B", channel="b2b")  # nothing mapped on b2b
    early = ingest(brand_a, external_id="L-EARLY", state="TX", placed_at=T0 - timedelta(days=3))
    client = brand_client(brand_a, owner_a)
    whs = net["warehouses"]

    def ids(query: str) -> list[str]:
        response = client.get(f"/api/v1/orders/?{query}")
        assert response.status_code == 200, response.json()
        return sorted(o["external_id"] for o in response.json()["results"])

    assert ids("") == sorted(o.external_id for o in (west, east, fraud, b2b, early))
    assert ids("status=held") == ["L-B2B", "L-FRAUD"]
    assert ids("status=routed&channel=shop") == ["L-EARLY", "L-EAST", "L-WEST"]
    assert ids("channel=b2b") == ["L-B2B"]
    assert ids("hold_reason=fraud") == ["L-FRAUD"]
    assert ids("hold_reason=unmapped_sku") == ["L-B2B"]
    assert ids(f"warehouse={whs['PA'].pk}") == ["L-EAST"]
    assert ids(f"warehouse={whs['TX'].pk}") == ["L-EARLY"]
    assert ids("placed_before=2026-11-01T00:00:00Z") == ["L-EARLY"]
    assert ids("placed_after=2026-11-01T00:00:00Z&status=routed") == ["L-EAST", "L-WEST"]
    assert ids("search=l-we") == ["L-WEST"]
    assert ids("search=hopper") == ["L-WEST"]
    assert ids("search=ada@example") == ["L-EAST"]

    # A cancelled fulfillment order is no longer that warehouse's work.
    client.post(f"/api/v1/orders/{west.pk}/cancel/", content_type=JSON)
    assert ids(f"warehouse={whs['WEST'].pk}") == []

    refused = client.get("/api/v1/orders/?status=lost&warehouse=abc&placed_after=yesterday")
    assert refused.status_code == 400
    fields = refused.json()["error"]["fields"]
    assert {name: [e["code"] for e in errors] for name, errors in fields.items()} == {
        "status": ["invalid_choice"],
        "warehouse": ["invalid"],
        "placed_after": ["invalid"],
    }


def test_fulfillment_order_and_decision_lists_filter(brand_a, owner_a, net):
    west = ingest(brand_a, external_id="F-WEST", state="CA")
    east = ingest(brand_a, external_id="F-EAST", state="NY")
    held = ingest(brand_a, external_id="F-HELD", fraud_flag=True)
    client = brand_client(brand_a, owner_a)

    def listed(url: str) -> list[dict]:
        response = client.get(url)
        assert response.status_code == 200, response.json()
        return response.json()["results"]

    rows = listed(f"/api/v1/fulfillment-orders/?warehouse={net['warehouses']['PA'].pk}")
    assert [(r["order_external_id"], r["warehouse_code"], r["status"]) for r in rows] == [
        ("F-EAST", "PA", "open")
    ]
    assert [r["order"] for r in listed(f"/api/v1/fulfillment-orders/?order={west.pk}")] == [west.pk]
    assert listed("/api/v1/fulfillment-orders/?status=shipped") == []
    assert {(r["order"], r["layer"]) for r in listed("/api/v1/routing-decisions/")} == {
        (west.pk, "rules"),
        (east.pk, "rules"),
        (held.pk, "hold"),
    }
    (hold,) = listed("/api/v1/routing-decisions/?layer=hold")
    assert (hold["order"], hold["explanation"]) == (
        held.pk,
        "The channel flagged this order as possible fraud.",
    )
    assert [r["order"] for r in listed(f"/api/v1/routing-decisions/?order={east.pk}")] == [east.pk]
    assert client.get(f"/api/v1/routing-decisions/{hold['id']}/").json() == hold


# --- Acting on orders ------------------------------------------------------------------


def test_cancel_releases_stock(brand_a, owner_a, net):
    client = brand_client(brand_a, owner_a)
    created = client.post(
        "/api/v1/orders/", order_body(lines=[("TEE", 3), ("MUG", 2)]), content_type=JSON
    ).json()["order"]
    assert stock_of(brand_a, net, "TEE", "WEST") == (100, 3)

    response = client.post(
        f"/api/v1/orders/{created['id']}/cancel/",
        {"reason": "Customer changed their mind."},
        content_type=JSON,
    )

    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "cancelled"
    assert fulfillments(response.json()) == [("WEST", "cancelled")]
    assert stock_of(brand_a, net, "TEE", "WEST") == (100, 0)
    assert stock_of(brand_a, net, "MUG", "WEST") == (100, 0)
    with in_schema(brand_a):
        assert set(Reservation.objects.values_list("status", flat=True)) == {"released"}
    # Cancelling a cancelled order changes nothing and says so with the order.
    again = client.post(f"/api/v1/orders/{created['id']}/cancel/", content_type=JSON)
    assert (again.status_code, again.json()["status"]) == (200, "cancelled")


def test_choose_plan_routes_a_review_held_order(brand_a, owner_a, net):
    with in_schema(brand_a):
        RoutingSettings.objects.update_or_create(defaults={"confidence_threshold": Decimal("0.99")})
    client = brand_client(brand_a, owner_a)
    held = client.post(
        "/api/v1/orders/", order_body(state="CO", lines=[("MUG", 1), ("HAT", 2)]), content_type=JSON
    ).json()["order"]
    assert (held["status"], held["hold_reason"]) == ("held", "awaiting_review")
    (review,) = held["decisions"]
    assert review["layer"] == "review"
    assert len(review["candidates"]) == 4
    mug, hat = (ln["id"] for ln in held["lines"])
    url = f"/api/v1/orders/{held['id']}/choose-plan/"

    refusals = [
        client.post(url, {"allocations": {"MARS": [mug, hat]}}, content_type=JSON),
        client.post(url, {"allocations": {"TX": [mug]}}, content_type=JSON),
        client.post(url, {"allocations": {}}, content_type=JSON),
        client.post(url, {"allocations": {"TX": []}}, content_type=JSON),
    ]
    assert [r.json()["error"]["code"] for r in refusals] == [
        "unknown_warehouse",
        "lines_not_covered",
        "validation_error",
        "validation_error",
    ]
    assert refusals[2].json()["error"]["fields"] == {
        "allocations": [{"code": "empty", "message": "This dictionary may not be empty."}]
    }
    assert list(refusals[3].json()["error"]["fields"]) == ["allocations.TX"]
    assert stock_of(brand_a, net, "MUG", "TX") == (100, 0)

    chosen = client.post(
        url,
        {"allocations": {"TX": [mug], "PA": [hat]}, "note": "Split on purpose"},
        content_type=JSON,
    )

    assert chosen.status_code == 200, chosen.json()
    order = chosen.json()
    assert (order["status"], order["hold_reason"]) == ("routed", "")
    assert sorted(fulfillments(order)) == [("PA", "open"), ("TX", "open")]
    manual = order["decisions"][-1]
    assert (manual["layer"], manual["chosen"], manual["actor_label"]) == (
        "manual",
        {"TX": [mug], "PA": [hat]},
        owner_a.email,
    )
    assert manual["explanation"] == f"{owner_a} chose PA + TX. Note: Split on purpose"
    assert stock_of(brand_a, net, "MUG", "TX") == (100, 1)
    assert stock_of(brand_a, net, "HAT", "PA") == (100, 2)
    not_held = client.post(url, {"allocations": {"TX": [mug, hat]}}, content_type=JSON)
    assert (not_held.status_code, not_held.json()["error"]["code"]) == (400, "not_held")


def test_route_again_once_stock_arrives(brand_a, owner_a, net):
    client = brand_client(brand_a, owner_a)
    held = client.post(
        "/api/v1/orders/", order_body(lines=[("TEE", 150)]), content_type=JSON
    ).json()["order"]
    assert held["hold_reason"] == "insufficient_stock"
    url = f"/api/v1/orders/{held['id']}/route/"

    still = client.post(url, content_type=JSON)
    with in_schema(brand_a):
        stock.receive(sku=net["skus"]["TEE"], warehouse=net["warehouses"]["TX"], quantity=60)
    routed = client.post(url, content_type=JSON)

    assert (still.status_code, still.json()["hold_reason"]) == (200, "insufficient_stock")
    assert routed.status_code == 200
    assert (routed.json()["status"], fulfillments(routed.json())) == ("routed", [("TX", "open")])
    assert [d["layer"] for d in routed.json()["decisions"]] == ["hold", "hold", "scoring"]
    again = client.post(url, content_type=JSON)
    assert (again.status_code, again.json()["error"]["code"]) == (400, "not_held")


def test_rejected_fulfillment_is_re_routed(brand_a, owner_a, net):
    client = brand_client(brand_a, owner_a)
    order = client.post("/api/v1/orders/", order_body(state="NY"), content_type=JSON).json()
    (first,) = order["order"]["fulfillment_orders"]
    assert first["warehouse_code"] == "PA"
    url = f"/api/v1/fulfillment-orders/{first['id']}/reject/"

    missing = client.post(url, {}, content_type=JSON)
    rejected = client.post(url, {"reason": "Flooded aisle"}, content_type=JSON)

    assert missing.json()["error"]["fields"]["reason"][0]["code"] == "required"
    assert rejected.status_code == 200, rejected.json()
    body = rejected.json()
    assert body["status"] == "routed"
    statuses = fulfillments(body)
    assert statuses[0] == ("PA", "rejected")
    (new,) = statuses[1:]
    assert new[1] == "open" and new[0] != "PA"
    assert [d["layer"] for d in body["decisions"]] == ["rules", "reroute", "scoring"]
    assert body["decisions"][1]["explanation"] == (
        "PA rejected its part (Flooded aisle); re-routing without it."
    )
    assert stock_of(brand_a, net, "TEE", "PA") == (100, 0)
    assert stock_of(brand_a, net, "TEE", new[0]) == (100, 1)
    closed = client.post(url, {"reason": "again"}, content_type=JSON)
    assert (closed.status_code, closed.json()["error"]["code"]) == (400, "closed")


def test_ship_fulfills_the_order_and_it_can_no_longer_be_cancelled(brand_a, owner_a, net):
    client = brand_client(brand_a, owner_a)
    order = client.post(
        "/api/v1/orders/", order_body(state="TX", lines=[("TEE", 2), ("HAT", 1)]), content_type=JSON
    ).json()["order"]
    (fo,) = order["fulfillment_orders"]

    shipped = client.post(
        f"/api/v1/fulfillment-orders/{fo['id']}/ship/",
        {"tracking_number": "1Z999", "carrier": "UPS"},
        content_type=JSON,
    )

    assert shipped.status_code == 200, shipped.json()
    assert {k: shipped.json()[k] for k in ("status", "tracking_number", "carrier")} == {
        "status": "shipped",
        "tracking_number": "1Z999",
        "carrier": "UPS",
    }
    assert shipped.json()["closed_at"] is not None
    assert stock_of(brand_a, net, "TEE", "TX") == (98, 0)
    assert stock_of(brand_a, net, "HAT", "TX") == (99, 0)
    detail = client.get(f"/api/v1/orders/{order['id']}/").json()
    assert detail["status"] == "fulfilled"
    refused = client.post(f"/api/v1/orders/{order['id']}/cancel/", content_type=JSON)
    assert (refused.status_code, refused.json()["error"]["code"]) == (400, "already_shipped")
    assert client.get(f"/api/v1/orders/{order['id']}/").json()["status"] == "fulfilled"
    assert stock_of(brand_a, net, "TEE", "TX") == (98, 0)


# --- Permissions and tenancy -----------------------------------------------------------


def test_viewer_reads_orders_and_rules_but_changes_nothing(brand_a, net):
    order = ingest(brand_a, external_id="V-1")
    viewer = make_user(brand_a, role=Role.VIEWER)
    client = brand_client(brand_a, viewer)
    with in_schema(brand_a):
        fo = order.fulfillments.get()
        rule_set = RuleSet.objects.get()
    before = order_snapshot(brand_a)

    reads = [
        client.get(url).status_code
        for url in (
            "/api/v1/orders/",
            f"/api/v1/orders/{order.pk}/",
            "/api/v1/fulfillment-orders/",
            f"/api/v1/fulfillment-orders/{fo.pk}/",
            "/api/v1/routing-decisions/",
            "/api/v1/rules/",
            f"/api/v1/rules/{rule_set.pk}/",
        )
    ]
    writes = [
        client.post("/api/v1/orders/", order_body(external_id="V-2"), content_type=JSON),
        client.post(f"/api/v1/orders/{order.pk}/cancel/", content_type=JSON),
        client.post(f"/api/v1/orders/{order.pk}/route/", content_type=JSON),
        client.post(f"/api/v1/fulfillment-orders/{fo.pk}/ship/", {}, content_type=JSON),
        client.post(
            f"/api/v1/fulfillment-orders/{fo.pk}/reject/", {"reason": "x"}, content_type=JSON
        ),
        client.post("/api/v1/rules/", {"rules": []}, content_type=JSON),
        client.post(f"/api/v1/rules/{rule_set.pk}/simulate/", {}, content_type=JSON),
    ]

    assert reads == [200] * 7
    assert [w.status_code for w in writes] == [403] * 7
    assert {w.json()["error"]["code"] for w in writes} == {"permission_denied"}
    assert order_snapshot(brand_a) == before
    with in_schema(brand_a):
        assert RuleSet.objects.count() == 1


def test_ops_manager_creates_manages_orders_and_edits_rules(brand_a, net):
    manager = make_user(brand_a, role=Role.OPS_MANAGER)
    client = brand_client(brand_a, manager)

    created = client.post("/api/v1/orders/", order_body(), content_type=JSON)
    order_id = created.json()["order"]["id"]
    cancelled = client.post(f"/api/v1/orders/{order_id}/cancel/", content_type=JSON)
    drafted = client.post(
        "/api/v1/rules/",
        {"rules": [{"name": "All from TX", "actions": {"ship_from": "TX"}}]},
        content_type=JSON,
    )
    published = client.post(f"/api/v1/rules/{drafted.json()['id']}/publish/", content_type=JSON)

    assert [r.status_code for r in (created, cancelled, drafted, published)] == [
        201,
        200,
        201,
        200,
    ]
    assert drafted.json()["created_by"] == manager.pk
    assert published.json()["status"] == "published"


def test_read_key_cannot_post_and_write_key_creates_orders(brand_a, owner_a, net):
    with in_schema(brand_a):
        read_key = create_api_key(actor=owner_a, name="BI", scope="read")
        write_key = create_api_key(actor=owner_a, name="Shop connector", scope="write")
        rule_set = RuleSet.objects.get()
    client = brand_client(brand_a)
    reader = {"HTTP_AUTHORIZATION": f"Api-Key {read_key.secret}"}
    writer = {"HTTP_AUTHORIZATION": f"Api-Key {write_key.secret}"}

    listed = client.get("/api/v1/orders/", **reader)
    refused = client.post("/api/v1/orders/", order_body(), content_type=JSON, **reader)
    with in_schema(brand_a):
        assert Order.objects.count() == 0
    accepted = client.post("/api/v1/orders/", order_body(), content_type=JSON, **writer)
    # Keys never edit routing rules: that is a person's decision.
    rules = client.post(f"/api/v1/rules/{rule_set.pk}/simulate/", {}, content_type=JSON, **writer)

    assert (listed.status_code, refused.status_code) == (200, 403)
    assert accepted.status_code == 201
    assert accepted.json()["order"]["decisions"][0]["actor_label"] == (
        f"API key {write_key.api_key.prefix}"
    )
    assert rules.status_code == 403


def test_another_brands_ids_are_not_found(brand_a, brand_b, owner_a):
    with in_schema(brand_b):
        build_network()
        rule_set = publish_typical_rules()
        order = ingest_order(order_input(external_id="B-1")).order
        fo = order.fulfillments.get()
        decision = RoutingDecision.objects.get(order=order)
    before = order_snapshot(brand_b)
    client = brand_client(brand_a, owner_a)

    reads = [
        f"/api/v1/orders/{order.pk}/",
        f"/api/v1/fulfillment-orders/{fo.pk}/",
        f"/api/v1/routing-decisions/{decision.pk}/",
        f"/api/v1/rules/{rule_set.pk}/",
    ]
    writes = [
        (f"/api/v1/orders/{order.pk}/cancel/", {}),
        (f"/api/v1/orders/{order.pk}/route/", {}),
        (f"/api/v1/orders/{order.pk}/choose-plan/", {"allocations": {"WEST": [1]}}),
        (f"/api/v1/fulfillment-orders/{fo.pk}/reject/", {"reason": "x"}),
        (f"/api/v1/fulfillment-orders/{fo.pk}/ship/", {}),
        (f"/api/v1/rules/{rule_set.pk}/publish/", {}),
        (f"/api/v1/rules/{rule_set.pk}/simulate/", {}),
    ]

    assert [client.get(url).status_code for url in reads] == [404] * len(reads)
    assert [client.post(url, body, content_type=JSON).status_code for url, body in writes] == [
        404
    ] * len(writes)
    for url in ("/api/v1/orders/", "/api/v1/fulfillment-orders/", "/api/v1/routing-decisions/"):
        assert client.get(url).json()["results"] == [], url
    assert order_snapshot(brand_b) == before


# --- Rules -----------------------------------------------------------------------------


def test_invalid_rule_draft_is_400_naming_each_rule(brand_a, owner_a, net):
    client = brand_client(brand_a, owner_a)

    response = client.post(
        "/api/v1/rules/",
        {
            "note": "Move the west coast",
            "rules": [
                {
                    "name": "Fine",
                    "conditions": {"state_in": ["CA"]},
                    "actions": {"ship_from": "TX"},
                },
                {
                    "name": "Bad",
                    "conditions": {"planet_in": ["Mars"]},
                    "actions": {"ship_from": "MARS"},
                },
                {"conditions": {}, "actions": {"prefer": ["PA"]}},
            ],
        },
        content_type=JSON,
    )

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "rules.1": [
            {"code": "invalid_rule", "message": "Unknown condition 'planet_in'."},
            {"code": "invalid_rule", "message": "Unknown warehouse 'MARS'."},
        ],
        "rules.2.name": [{"code": "required", "message": "This field is required."}],
    }
    with in_schema(brand_a):
        assert RuleSet.objects.count() == 1


def test_draft_simulate_publish(brand_a, owner_a, net):
    for i, state in enumerate(["CA", "CA", "NY", "TX"]):
        ingest(brand_a, external_id=f"S-{i}", state=state)
    ingest(brand_a, external_id="S-gone", state="CA", status="cancelled")
    client = brand_client(brand_a, owner_a)

    drafted = client.post(
        "/api/v1/rules/",
        {
            "note": "Everything from Texas",
            "rules": [{"name": "All from TX", "conditions": {}, "actions": {"ship_from": "TX"}}],
        },
        content_type=JSON,
    )
    assert drafted.status_code == 201, drafted.json()
    draft = drafted.json()
    assert (draft["version"], draft["status"], draft["note"]) == (
        2,
        "draft",
        "Everything from Texas",
    )
    assert [(r["position"], r["name"], r["actions"]) for r in draft["rules"]] == [
        (1, "All from TX", {"ship_from": "TX"})
    ]
    url = f"/api/v1/rules/{draft['id']}/simulate/"

    simulated = client.post(url, {"last": 10}, content_type=JSON)

    assert simulated.status_code == 200, simulated.json()
    body = simulated.json()
    assert {k: body[k] for k in ("version", "compared_with_version", "orders", "changed")} == {
        "version": 2,
        "compared_with_version": 1,
        "orders": 4,
        "changed": 3,
    }
    rows = {
        row["external_id"]: (row["current"], row["proposed"], row["changed"])
        for row in body["rows"]
    }
    assert rows == {
        "S-0": ("rules: WEST", "rules: TX", True),
        "S-1": ("rules: WEST", "rules: TX", True),
        "S-2": ("rules: PA", "rules: TX", True),
        "S-3": ("rules: TX", "rules: TX", False),
    }
    assert body["rows"][0]["explanation"] == "Rule “All from TX” ships everything from TX."
    only = client.post(url, {"last": 10, "changed_only": True}, content_type=JSON).json()
    assert (only["changed"], sorted(r["external_id"] for r in only["rows"])) == (
        3,
        ["S-0", "S-1", "S-2"],
    )
    last_two = client.post(url, {"last": 2}, content_type=JSON).json()
    assert last_two["orders"] == 2
    too_many = client.post(url, {"last": 10_001}, content_type=JSON)
    assert too_many.json()["error"]["fields"]["last"][0]["code"] == "max_value"

    published = client.post(f"/api/v1/rules/{draft['id']}/publish/", content_type=JSON)

    assert published.status_code == 200
    assert published.json()["status"] == "published"
    assert [
        r["version"] for r in client.get("/api/v1/rules/?status=archived").json()["results"]
    ] == [1]
    new = client.post("/api/v1/orders/", order_body(external_id="S-new"), content_type=JSON)
    assert fulfillments(new.json()["order"]) == [("TX", "open")]
    assert new.json()["order"]["decisions"][0]["rule_set_version"] == 2
    again = client.post(f"/api/v1/rules/{draft['id']}/publish/", content_type=JSON)
    assert (again.status_code, again.json()["error"]["code"]) == (400, "not_draft")


# --- Schema ----------------------------------------------------------------------------

ORDER_PATHS = {
    "/api/v1/orders/",
    "/api/v1/orders/{id}/",
    "/api/v1/orders/{id}/cancel/",
    "/api/v1/orders/{id}/route/",
    "/api/v1/orders/{id}/choose-plan/",
    "/api/v1/fulfillment-orders/",
    "/api/v1/fulfillment-orders/{id}/",
    "/api/v1/fulfillment-orders/{id}/reject/",
    "/api/v1/fulfillment-orders/{id}/ship/",
    "/api/v1/routing-decisions/",
    "/api/v1/routing-decisions/{id}/",
    "/api/v1/rules/",
    "/api/v1/rules/{id}/",
    "/api/v1/rules/{id}/publish/",
    "/api/v1/rules/{id}/simulate/",
}


def test_openapi_schema_describes_order_endpoints():
    schema = SchemaGenerator(urlconf="config.urls_tenant").get_schema(request=None, public=True)
    paths = schema["paths"]

    assert set(paths) >= ORDER_PATHS
    create = paths["/api/v1/orders/"]["post"]
    assert set(create["responses"]) == {"200", "201", "400", "422"}
    assert {p["name"] for p in create["parameters"]} == {"Idempotency-Key"}
    assert {p["name"] for p in paths["/api/v1/orders/"]["get"]["parameters"]} == {
        "cursor",
        "page_size",
        "status",
        "channel",
        "hold_reason",
        "warehouse",
        "placed_after",
        "placed_before",
        "search",
    }
    # Fulfillment orders and decisions are made by routing only: nothing writes them directly.
    for path in ("/api/v1/orders/{id}/", "/api/v1/fulfillment-orders/{id}/", "/api/v1/rules/{id}/"):
        assert set(paths[path]) == {"get"}, path
    assert set(paths["/api/v1/fulfillment-orders/"]) == {"get"}
    assert set(paths["/api/v1/routing-decisions/"]) == {"get"}
    components = schema["components"]["schemas"]
    assert set(components["OrderCreateRequest"]["required"]) == {
        "channel",
        "external_id",
        "placed_at",
        "currency",
        "lines",
    }
    assert components["OrderStatusEnum"]["enum"] == [
        "received",
        "held",
        "routed",
        "partially_fulfilled",
        "fulfilled",
        "closed",
        "cancelled",
    ]
    assert components["FulfillmentStatusEnum"]["enum"] == [
        "open",
        "sent",
        "shipped",
        "rejected",
        "cancelled",
    ]
