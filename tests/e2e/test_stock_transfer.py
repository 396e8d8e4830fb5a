"""A Warehouse-role person moves stock between warehouses in a real browser.

The server is another process, so what it serves must be committed. `floor` is
module-scoped for that reason: it commits before the test's rolled-back transaction
starts and cleans up after it ended (emptying alpha's catalog and stock tables as
committed_alpha does, deleting the person and the activity entries the module caused);
inside that transaction the cleanup would wait on the test's own locks. The database is touched
only before and after the browser block: Playwright's event loop makes Django refuse ORM
calls inside it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.db.models import Max
from django_tenants.utils import schema_context
from playwright.sync_api import Page, expect

from accounts.models import User
from accounts.roles import Role
from audit.models import ActivityEntry
from catalog import services as catalog
from inventory import services as stock
from inventory.models import StockBalance, StockMovement, Transfer
from tests.conftest import empty_business_tables
from tests.e2e.browser import LiveServer, chromium_page, track_failed_assets
from tests.factories import UserFactory, WarehouseFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db]

PASSWORD = "correct-horse-battery-staple"
EMAIL = "wally@alpha.example"
SCHEMA = "brand_alpha"


@dataclass(frozen=True)
class Floor:
    sku_id: int
    east_id: int
    west_id: int


@pytest.fixture(scope="module")
def floor(django_db_setup, django_db_blocker) -> Iterator[Floor]:
    """Committed: a Warehouse-role person, E2E-MUG with 12 sellable at EAST, WEST empty."""
    with django_db_blocker.unblock(), schema_context(SCHEMA):
        last_entry = ActivityEntry.objects.aggregate(last=Max("id"))["last"] or 0
        person = UserFactory(email=EMAIL, full_name="Wally Warehouse", role=Role.WAREHOUSE)
        # The server checks passwords with the production hasher, not the tests' fast one.
        hasher = PBKDF2PasswordHasher()
        person.password = hasher.encode(PASSWORD, hasher.salt())
        person.save(update_fields=["password"])
        product = catalog.create_product(title="Camp mug", status="active")
        sku = catalog.create_sku(product=product, code="E2E-MUG", title="Camp mug")
        east = WarehouseFactory(code="EAST", name="East DC", priority=10)
        west = WarehouseFactory(code="WEST", name="West DC", priority=20)
        stock.receive(sku=sku, warehouse=east, quantity=12)
    try:
        yield Floor(sku.pk, east.pk, west.pk)
    finally:
        with django_db_blocker.unblock(), schema_context(SCHEMA):
            User.objects.filter(email=EMAIL).delete()
            ActivityEntry.objects.filter(id__gt=last_entry).delete()
            empty_business_tables(SCHEMA)


def stock_rows(page: Page) -> list[list[str]]:
    """SKU, status and quantity of each row of a warehouse page's stock table."""
    rows = page.locator("#results tbody tr")
    return [
        [cell.strip() for cell in rows.nth(i).locator("td").all_inner_texts()[:3]]
        for i in range(rows.count())
    ]


def test_warehouse_person_ships_a_transfer_and_receives_it(live: LiveServer, floor: Floor):
    base = f"http://{live.brand_host('alpha')}"

    with chromium_page() as page:
        failed_assets = track_failed_assets(page)
        page.goto(f"{base}/accounts/login/")
        page.get_by_label("Email").fill(EMAIL)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{base}/")

        page.get_by_role("navigation", name="Sections").get_by_role(
            "link", name="Inventory"
        ).click()
        page.get_by_role("link", name="Transfer", exact=True).click()
        page.wait_for_url(f"{base}/inventory/transfers/new/")
        page.get_by_label("From").select_option(label="EAST · East DC")
        page.get_by_label("To:", exact=True).select_option(label="WEST · West DC")
        rows = page.locator("#lines tbody tr")
        expect(rows).to_have_count(3)
        page.get_by_role("button", name="+ Add a line").click()
        expect(rows).to_have_count(4)  # htmx appended a blank row
        page.get_by_label("SKU code").first.fill("E2E-MUG")
        page.get_by_label("Quantity").first.fill("5")
        page.get_by_role("button", name="Ship transfer").click()

        page.wait_for_url(re.compile(rf"{re.escape(base)}/inventory/transfers/\d+/$"))
        expect(page.get_by_role("status")).to_contain_text("5 units in transit from EAST to WEST.")
        expect(page.locator(".page-head .badge")).to_have_text("In transit")

        page.get_by_role("link", name="WEST · West DC").click()
        expect(page.locator("main h1")).to_contain_text("WEST")
        assert stock_rows(page) == [["E2E-MUG Camp mug", "In transit", "5"]]

        page.go_back()
        page.get_by_role("button", name="Receive at WEST").click()
        expect(page.get_by_role("status")).to_contain_text("the stock is sellable at WEST")
        expect(page.locator(".page-head .badge")).to_have_text("Received")

        page.get_by_role("link", name="WEST · West DC").click()
        assert stock_rows(page) == [["E2E-MUG Camp mug", "Sellable", "5"]]
        assert failed_assets == []

    with schema_context(SCHEMA):
        check_database(floor)


def check_database(floor: Floor) -> None:
    balances = {
        (b.warehouse_id, b.status): b.quantity
        for b in StockBalance.objects.filter(sku_id=floor.sku_id)
    }
    assert balances == {
        (floor.east_id, "sellable"): 7,
        (floor.west_id, "in_transit"): 0,
        (floor.west_id, "sellable"): 5,
    }
    transfer = Transfer.objects.get()
    assert (transfer.source_id, transfer.destination_id, transfer.status) == (
        floor.east_id,
        floor.west_id,
        "received",
    )
    moved_by = set(
        StockMovement.objects.filter(reference_type="transfer").values_list(
            "actor_label", flat=True
        )
    )
    assert moved_by == {EMAIL}
