"""An Ops manager settles a held order from the review queue in a real browser.

The server is another process, so what it serves must be committed: `queue` commits the
person, a four-warehouse network and one order awaiting review before the test's
rolled-back transaction starts, and afterwards empties alpha's business tables (as
committed_alpha does) and deletes the person and the activity entries the module caused.
The database is touched only before and after the browser block: Playwright's event loop
makes Django refuse ORM calls inside it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.db.models import Max
from django_tenants.utils import schema_context
from playwright.sync_api import expect

from accounts.models import User
from accounts.roles import Role
from audit.models import ActivityEntry
from orders.models import Order, RoutingSettings
from orders.services import ingest_order
from tests.conftest import empty_business_tables
from tests.e2e.browser import LiveServer, chromium_page, track_failed_assets
from tests.factories import UserFactory
from tests.orders.conftest import build_network, order_input

pytestmark = [pytest.mark.e2e, pytest.mark.django_db]

PASSWORD = "correct-horse-battery-staple"
EMAIL = "olive@alpha.example"
SCHEMA = "brand_alpha"


@dataclass(frozen=True)
class Queue:
    order_id: int
    external_id: str
    best: str  # the best candidate plan's warehouses, e.g. "TX"
    line_ids: tuple[int, ...]


@pytest.fixture(scope="module")
def queue(django_db_setup, django_db_blocker) -> Iterator[Queue]:
    """Committed: an Ops manager and a CO order that scoring was not sure enough about."""
    with django_db_blocker.unblock(), schema_context(SCHEMA):
        last_entry = ActivityEntry.objects.aggregate(last=Max("id"))["last"] or 0
        person = UserFactory(email=EMAIL, full_name="Olive Ops", role=Role.OPS_MANAGER)
        # The server checks passwords with the production hasher, not the tests' fast one.
        hasher = PBKDF2PasswordHasher()
        person.password = hasher.encode(PASSWORD, hasher.salt())
        person.save(update_fields=["password"])
        build_network()
        RoutingSettings.objects.update_or_create(defaults={"confidence_threshold": Decimal("0.99")})
        order = ingest_order(
            order_input(state="CO", external_id="E2E-1", lines=[("MUG", 1), ("TEE", 2)])
        ).order
        assert order.hold_reason == "awaiting_review"
        best = order.decisions.get(layer="review").candidates[0]["warehouses"]
        line_ids = tuple(order.lines.order_by("pk").values_list("pk", flat=True))
    try:
        yield Queue(order.pk, order.external_id, " + ".join(best), line_ids)
    finally:
        with django_db_blocker.unblock(), schema_context(SCHEMA):
            User.objects.filter(email=EMAIL).delete()
            ActivityEntry.objects.filter(id__gt=last_entry).delete()
            empty_business_tables(SCHEMA)


def test_ops_manager_resolves_a_held_order_and_sees_its_fulfillment_orders(
    live: LiveServer, queue: Queue
):
    base = f"http://{live.brand_host('alpha')}"

    with chromium_page() as page:
        failed_assets = track_failed_assets(page)
        page.goto(f"{base}/accounts/login/")
        page.get_by_label("Email").fill(EMAIL)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{base}/")

        page.get_by_role("navigation", name="Sections").get_by_role(
            "link", name="Review queue"
        ).click()
        page.wait_for_url(f"{base}/orders/review/")
        held = page.locator(f"#held-{queue.order_id}")
        expect(held).to_contain_text(queue.external_id)
        expect(held.locator("table.candidates tbody tr")).to_have_count(4)
        expect(held.locator("tr.best")).to_contain_text(queue.best)

        held.locator("tr.best").get_by_role("button", name=re.compile("^Use this plan")).click()
        # htmx swapped the order's block for the outcome, in place.
        expect(held.get_by_role("status")).to_contain_text(f"Routed to {queue.best}.")
        assert page.url == f"{base}/orders/review/"

        held.get_by_role("link", name="Open the order").click()
        page.wait_for_url(re.compile(rf"{re.escape(base)}/orders/{queue.order_id}/"))
        expect(page.locator(".page-head .badge")).to_have_text("Routed")
        fulfillments = page.locator("#fulfillments article.fo")
        expect(fulfillments).to_have_count(len(queue.best.split(" + ")))
        for code in queue.best.split(" + "):
            expect(page.locator("#fulfillments")).to_contain_text(code)
        expect(page.locator("#fulfillments .badge.fs-open").first).to_have_text("Open")
        expect(page.locator("#timeline")).to_contain_text("Olive Ops chose")
        assert failed_assets == []

    with schema_context(SCHEMA):
        check_database(queue)


def check_database(queue: Queue) -> None:
    order = Order.objects.get(pk=queue.order_id)
    assert (order.status, order.hold_reason) == ("routed", "")
    covered = sorted(
        line.order_line_id
        for fo in order.fulfillments.filter(status="open")
        for line in fo.lines.all()
    )
    assert covered == sorted(queue.line_ids)
    codes = sorted(order.fulfillments.values_list("warehouse__code", flat=True))
    assert codes == sorted(queue.best.split(" + "))
    manual = order.decisions.last()
    assert (manual.layer, manual.actor_label) == ("manual", EMAIL)
