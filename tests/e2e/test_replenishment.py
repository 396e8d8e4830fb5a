"""Replenishment in a real browser: a Buyer opens the board and drafts a PO from a
recommendation (htmx swaps the row); a second Buyer approves it in the approvals inbox,
receives part of it on the PO page, and sees the stock and the supplier's lead-time
statistics move.

Separation of duties: the PO policies say requesters may not approve their own requests,
and we keep it that way rather than switching `allow_self_approval` on. The PO (about
6,300 USD of a hero SKU) is above the hero auto-approve ceiling (5,000) and within a
Buyer's approval limit (10,000), so it waits in the inbox of the *other* Buyer, exactly
as it would in a real team. The test also checks that the creator is not offered it.

The server is another process, so what it serves must be committed: `floor` commits two
Buyers, a warehouse, a hero SKU with stock, a supplier, 8 weeks of demand, a forecast and
the day's plan before the tests' rolled-back transactions start; afterwards it removes the
approval rows, empties alpha's business tables (as committed_alpha does), deletes the
people and the activity the module caused, and drops the tasks the server queued (approval
notifications, the supplier email) since no worker runs them here. The database is
touched only outside the browser blocks: Playwright's event loop makes Django refuse ORM
calls inside them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

import pytest
import redis
from django.conf import settings
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.db.models import Max
from django.utils import timezone
from django_tenants.utils import schema_context
from playwright.sync_api import Page, expect

from accounts.models import User
from accounts.roles import Role
from approvals.models import ApprovalDecision, ApprovalRequest, WebhookDelivery
from audit.models import ActivityEntry
from forecasting.models import SkuSegment
from inventory import services as stock
from inventory.models import StockBalance
from purchasing.models import PurchaseOrder, Supplier, SupplierSKU
from replenishment import services as replenishment
from replenishment.models import Recommendation
from tests.conftest import empty_business_tables
from tests.e2e.browser import LiveServer, chromium_page, track_failed_assets
from tests.factories import SKUFactory, UserFactory, WarehouseFactory
from tests.forecasting.helpers import put_demand, put_forecast
from tests.replenishment.helpers import restore_segment_policies

pytestmark = [pytest.mark.e2e, pytest.mark.django_db]

PASSWORD = "correct-horse-battery-staple"
CREATOR = "bree.e2e@alpha.example"
APPROVER = "bart.e2e@alpha.example"
SCHEMA = "brand_alpha"
QUEUED_PREFIXES = ("approvals.", "purchasing.")


@dataclass(frozen=True)
class Floor:
    rec_id: int
    sku_id: int
    warehouse_id: int
    supplier_id: int
    quantity: int


@pytest.fixture(scope="module")
def floor(django_db_setup, django_db_blocker) -> Iterator[Floor]:
    """Committed: two Buyers, E2E-HERO (hero) with 200 at MAIN selling 20 a day, supplier
    ACME (40.00 a unit, 7 days quoted), and today's plan asking for a PO."""
    with django_db_blocker.unblock(), schema_context(SCHEMA):
        last_entry = ActivityEntry.objects.aggregate(last=Max("id"))["last"] or 0
        hasher = PBKDF2PasswordHasher()
        for email, name in ((CREATOR, "Bree Buyer"), (APPROVER, "Bart Buyer")):
            person = UserFactory(email=email, full_name=name, role=Role.BUYER)
            # The server checks passwords with the production hasher, not the tests' fast one.
            person.password = hasher.encode(PASSWORD, hasher.salt())
            person.save(update_fields=["password"])
        main = WarehouseFactory(code="MAIN", name="Main DC")
        sku = SKUFactory(code="E2E-HERO", title="Hero kettle")
        stock.receive(sku=sku, warehouse=main, quantity=200)
        supplier = Supplier.objects.create(
            code="ACME", name="Acme Kettles", email="orders@acme.example", quoted_lead_time_days=7
        )
        SupplierSKU.objects.create(
            supplier=supplier,
            sku=sku,
            unit_cost=Decimal("40.00"),
            currency="USD",
            is_preferred=True,
        )
        today = replenishment.brand_today()
        put_demand(sku, today - timedelta(days=56), [20] * 56, warehouse=main)
        put_forecast(sku, start=today, mean=[20.0] * 56, spread=5.0)
        SkuSegment.objects.create(sku=sku, segment="hero", rank=1, computed_at=timezone.now())
        restore_segment_policies()
        replenishment.plan(today=today)
        rec = Recommendation.objects.get(sku=sku, day=today)
        assert rec.suggested_quantity > 0
        value = rec.suggested_quantity * Decimal("40.00")
        assert Decimal("5000") < value <= Decimal("10000"), value
    try:
        yield Floor(rec.pk, sku.pk, main.pk, supplier.pk, rec.suggested_quantity)
    finally:
        with django_db_blocker.unblock(), schema_context(SCHEMA):
            WebhookDelivery.objects.all().delete()
            ApprovalDecision.objects.all().delete()
            ApprovalRequest.objects.all().delete()
            empty_business_tables(SCHEMA)
            restore_segment_policies()
            User.objects.filter(email__in=[CREATOR, APPROVER]).delete()
            ActivityEntry.objects.filter(id__gt=last_entry).delete()
        _drop_queued_tasks()


def _drop_queued_tasks() -> None:
    """The server published notification and supplier-email tasks that no worker runs
    here; remove them so later tests find the broker as they expect it: empty."""
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    try:
        for queue in settings.CELERY_TASK_QUEUES_NAMES:
            for raw in client.lrange(queue, 0, -1):
                if json.loads(raw)["headers"].get("task", "").startswith(QUEUED_PREFIXES):
                    client.lrem(queue, 1, raw)
    finally:
        client.close()


def sign_in(page: Page, base: str, email: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/")


def test_buyer_drafts_from_the_board_another_approves_and_receives(live: LiveServer, floor: Floor):
    base = f"http://{live.brand_host('alpha')}"

    # 1. The creating Buyer drafts the PO from the board.
    with chromium_page() as page:
        failed_assets = track_failed_assets(page)
        sign_in(page, base, CREATOR)
        page.get_by_role("navigation", name="Sections").get_by_role(
            "link", name="Replenishment"
        ).click()
        page.wait_for_url(f"{base}/replenishment/")
        row = page.locator(f"#rec-{floor.rec_id}")
        expect(row).to_contain_text("E2E-HERO")
        expect(row).to_contain_text(str(floor.quantity))
        group_button = page.get_by_role("button", name=re.compile("^Create draft POs for ACME"))
        expect(group_button).to_have_count(1)
        row.get_by_role("button", name="Create draft PO").click()
        # htmx swapped the row in place: the PO exists and waits for approval
        expect(row.get_by_role("status")).to_contain_text("pending approval")
        expect(row.get_by_role("link", name=re.compile(r"^PO-\d+$"))).to_be_visible()
        # and the supplier group's button went with it (swapped out of band)
        expect(group_button).to_have_count(0)
        assert page.url == f"{base}/replenishment/"
        # the creator is not offered their own request
        page.goto(f"{base}/approvals/")
        expect(page.get_by_role("button", name="Approve", exact=True)).to_have_count(0)
        assert failed_assets == []

    with schema_context(SCHEMA):
        po = PurchaseOrder.objects.get()
        request = ApprovalRequest.objects.for_subject("purchase_order", po.pk).get()
        assert (po.state, request.state, po.source) == (
            "pending_approval",
            "pending",
            "replenishment",
        )
        assert request.requested_by.email == CREATOR
        number, request_id = po.number, request.pk
        line_quantity = po.lines.get().quantity
    assert line_quantity == floor.quantity
    received_now = line_quantity // 2

    # 2. The second Buyer approves it, receives half, and looks at stock and the supplier.
    with chromium_page() as page:
        failed_assets = track_failed_assets(page)
        sign_in(page, base, APPROVER)
        page.goto(f"{base}/approvals/")
        card = page.locator(f"#request-{request_id}")
        expect(card).to_contain_text(number)
        card.get_by_label("Comment").fill("Hero is selling, go")
        card.get_by_role("button", name="Approve", exact=True).click()
        expect(card.get_by_role("status")).to_contain_text("Approved")

        page.goto(f"{base}/replenishment/")
        page.locator(f"#rec-{floor.rec_id}").get_by_role("link", name=number).click()
        expect(page.locator("#po-state")).to_have_text("Sent")
        page.get_by_role("link", name="Receive", exact=True).click()
        page.get_by_label("Arrived now, E2E-HERO").fill(str(received_now))
        page.get_by_label("Reason, E2E-HERO").select_option(label="Backordered (rest to follow)")
        page.get_by_role("button", name="Receive into stock").click()
        expect(page.get_by_role("status").first).to_contain_text(
            f"Received {received_now} units on {number}; it is partially received."
        )
        expect(page.locator("#po-state")).to_have_text("Partially received")

        page.goto(f"{base}/inventory/?q=E2E-HERO")
        sellable = page.locator("#results tbody tr").filter(has_text="MAIN")
        expect(sellable).to_contain_text(str(200 + received_now))

        page.goto(f"{base}/purchasing/suppliers/{floor.supplier_id}/")
        scorecard = page.locator("#scorecard tbody tr").first
        expect(scorecard).to_contain_text("Last 90 days")
        expect(scorecard).to_contain_text("0.0 d")
        expect(scorecard.locator("td").nth(1)).to_have_text("1")
        assert failed_assets == []

    with schema_context(SCHEMA):
        request = ApprovalRequest.objects.get(pk=request_id)
        assert (request.state, request.decided_by.email) == ("approved", APPROVER)
        po = PurchaseOrder.objects.get()
        assert po.state == "partially_received"
        assert po.lines.get().received_quantity == received_now
        balance = StockBalance.objects.get(
            sku_id=floor.sku_id, warehouse_id=floor.warehouse_id, status="sellable"
        )
        assert balance.quantity == 200 + received_now
        from purchasing.stats import lead_time_stats

        stats = lead_time_stats(window_days=90, supplier_ids=[floor.supplier_id])
        assert stats[(floor.supplier_id, floor.sku_id)].samples == 1
