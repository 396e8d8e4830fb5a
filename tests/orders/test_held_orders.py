"""People settle fraud and address holds: release after a check, correct the ship-to."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from accounts.roles import Role
from audit.models import ActivityEntry
from orders.models import Order
from orders.services import correct_address, ingest_order, release_fraud_hold
from tests.conftest import brand_client, make_user
from tests.orders.conftest import order_input

pytestmark = pytest.mark.usefixtures("in_alpha")


def test_released_fraud_hold_routes_and_a_new_channel_flag_holds_again(typical_rules, owner_a):
    order = ingest_order(order_input(fraud_flag=True, external_id="F-1")).order
    assert order.hold_reason == "fraud"

    release_fraud_hold(order, actor=owner_a, note="Called the customer; card matches.")

    order.refresh_from_db()
    assert order.status == "routed", order.hold_detail
    assert order.fraud_cleared_by_label == owner_a.email
    entry = ActivityEntry.objects.get(action="order.fraud_released")
    assert entry.changes == {"note": "Called the customer; card matches."}

    # An update still carrying the same flag is covered by the release...
    ingest_order(order_input(fraud_flag=True, external_id="F-1", updated=5))
    order.refresh_from_db()
    assert order.status == "routed"
    # ...a flag the channel lifts and then raises again is a new one.
    ingest_order(order_input(fraud_flag=False, external_id="F-1", updated=6))
    ingest_order(order_input(fraud_flag=True, external_id="F-1", updated=7))
    order.refresh_from_db()
    assert (order.status, order.hold_reason, order.fraud_cleared_at) == ("held", "fraud", None)


def test_release_needs_a_note_and_a_fraud_hold(typical_rules, owner_a):
    fraud = ingest_order(order_input(fraud_flag=True)).order
    fine = ingest_order(order_input()).order

    with pytest.raises(ValidationError) as missing:
        release_fraud_hold(fraud, actor=owner_a, note="  ")
    with pytest.raises(ValidationError) as wrong:
        release_fraud_hold(fine, actor=owner_a, note="checked")

    assert "note" in missing.value.message_dict
    assert wrong.value.code == "not_held_for_that"
    fraud.refresh_from_db()
    assert (fraud.status, fraud.fraud_cleared_at) == ("held", None)


def test_corrected_address_routes_and_an_invalid_one_changes_nothing(typical_rules, owner_a):
    order = ingest_order(order_input(state="ZZ")).order
    assert order.hold_reason == "invalid_address"

    with pytest.raises(ValidationError) as still_bad:
        correct_address(order, actor=owner_a, ship_state="QQ")
    order.refresh_from_db()
    assert (order.ship_state, order.status) == ("ZZ", "held")
    assert "not a US state code" in still_bad.value.messages[0]

    correct_address(order, actor=owner_a, ship_state="tx", ship_postal_code="75001")

    order.refresh_from_db()
    assert (order.ship_state, order.ship_postal_code, order.status) == ("TX", "75001", "routed")
    entry = ActivityEntry.objects.get(action="order.address_corrected")
    assert entry.changes["ship_state"] == ["ZZ", "TX"]


def test_review_queue_pages_release_and_correct(typical_rules, brand_a):
    ops = brand_client(brand_a, make_user(brand_a, role=Role.OPS_MANAGER))
    fraud = ingest_order(order_input(fraud_flag=True)).order
    bad = ingest_order(order_input(state="ZZ")).order

    queue = ops.get("/orders/review/").text
    refused = ops.post(f"/orders/{fraud.pk}/release/", {"note": ""}, HTTP_HX_REQUEST="true")
    released = ops.post(f"/orders/{fraud.pk}/release/", {"note": "Verified by phone"})
    fixed = ops.post(
        f"/orders/{bad.pk}/address/",
        {
            "ship_line1": "9 Elm St",
            "ship_city": "Austin",
            "ship_state": "TX",
            "ship_postal_code": "73301",
            "ship_country": "US",
        },
        HTTP_HX_REQUEST="true",
    )

    assert "What did you check?" in queue and "Correct the address" in queue
    assert "Say what you checked." in refused.text
    assert released.status_code == 302
    assert "routed" in fixed.text.lower() or "Open the order" in fixed.text
    assert Order.objects.get(pk=fraud.pk).status == "routed"
    assert Order.objects.get(pk=bad.pk).ship_city == "Austin"


def test_api_actions_and_their_permissions(typical_rules, brand_a):
    ops = brand_client(brand_a, make_user(brand_a, role=Role.OPS_MANAGER))
    viewer = brand_client(brand_a, make_user(brand_a, role=Role.VIEWER))
    fraud = ingest_order(order_input(fraud_flag=True)).order
    bad = ingest_order(order_input(state="ZZ")).order
    url = f"/api/v1/orders/{fraud.pk}/release-fraud-hold/"

    forbidden = viewer.post(url, {"note": "x"}, content_type="application/json")
    invalid = ops.post(
        f"/api/v1/orders/{bad.pk}/correct-address/",
        {"ship_state": "QQ"},
        content_type="application/json",
    )
    released = ops.post(url, {"note": "Checked"}, content_type="application/json")

    assert forbidden.status_code == 403
    assert invalid.status_code == 400
    assert invalid.json()["error"]["code"] == "invalid_address"
    assert released.status_code == 200 and released.json()["status"] == "routed"
