"""Approvals in a real browser: an Ops manager approves a large stock adjustment from the
inbox (htmx swaps the card and the navigation count); an Owner bulk-approves three.

The server is another process, so what it serves must be committed: `floor` commits the
people, a costed SKU with stock and four adjustments waiting for approval before the
tests' rolled-back transactions start, and afterwards removes the approval rows, empties
alpha's business tables (as committed_alpha does) and deletes the people and the activity
entries the module caused. The notification tasks the setup and the server publish are
removed from the broker at the end (no worker runs them here). The database is touched
only before and after each browser block: Playwright's event loop makes Django refuse ORM
calls inside it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

import pytest
import redis
from django.conf import settings
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.db.models import Max
from django_tenants.utils import schema_context
from playwright.sync_api import Page, expect

from accounts.models import User
from accounts.roles import Role
from approvals.models import (
    ApprovalDecision,
    ApprovalRequest,
    ApprovalSettings,
    ApproverPreference,
    WebhookDelivery,
)
from audit.models import ActivityEntry
from catalog import services as catalog
from inventory import services as stock
from inventory.models import StockAdjustmentRequest, StockMovement
from tests.conftest import empty_business_tables
from tests.e2e.browser import LiveServer, chromium_page, track_failed_assets
from tests.factories import UserFactory, WarehouseFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db]

PASSWORD = "correct-horse-battery-staple"
OPS = "opal.e2e@alpha.example"
OWNER = "owen.e2e@alpha.example"
REQUESTER = "wendy.e2e@alpha.example"
SCHEMA = "brand_alpha"


@dataclass(frozen=True)
class Waiting:
    request_id: int
    adjustment_id: int
    title: str
    delta: int


@pytest.fixture(scope="module")
def floor(django_db_setup, django_db_blocker) -> Iterator[list[Waiting]]:
    """Committed: an Ops manager, an Owner, a Warehouse requester, E2E-CUP (10.00 USD) with
    500 sellable at MAIN, and four adjustments (−60 … −90 units: 600–900 USD) waiting."""
    with django_db_blocker.unblock(), schema_context(SCHEMA):
        last_entry = ActivityEntry.objects.aggregate(last=Max("id"))["last"] or 0
        hasher = PBKDF2PasswordHasher()
        for email, name, role in (
            (OPS, "Opal Ops", Role.OPS_MANAGER),
            (OWNER, "Owen Owner", Role.OWNER),
            (REQUESTER, "Wendy Warehouse", Role.WAREHOUSE),
        ):
            person = UserFactory(email=email, full_name=name, role=role)
            # The server checks passwords with the production hasher, not the tests' fast one.
            person.password = hasher.encode(PASSWORD, hasher.salt())
            person.save(update_fields=["password"])
        requester = User.objects.get(email=REQUESTER)
        product = catalog.create_product(title="Enamel cup", status="active")
        sku = catalog.create_sku(
            product=product,
            code="E2E-CUP",
            title="Enamel cup",
            unit_cost=Decimal("10.00"),
            cost_currency="USD",
        )
        main = WarehouseFactory(code="MAIN", name="Main DC")
        stock.receive(sku=sku, warehouse=main, quantity=500)
        waiting = []
        for delta in (-60, -70, -80, -90):
            outcome = stock.request_adjustment(
                sku=sku,
                warehouse=main,
                delta=delta,
                reason_code="damaged",
                requested_by=requester,
            )
            assert outcome.pending
            waiting.append(
                Waiting(outcome.approval.pk, outcome.request.pk, outcome.approval.title, delta)
            )
    try:
        yield waiting
    finally:
        with django_db_blocker.unblock(), schema_context(SCHEMA):
            WebhookDelivery.objects.all().delete()
            ApprovalDecision.objects.all().delete()
            ApprovalRequest.objects.all().delete()
            ApproverPreference.objects.all().delete()
            ApprovalSettings.objects.all().delete()
            StockAdjustmentRequest.objects.all().delete()
            empty_business_tables(SCHEMA)
            User.objects.filter(email__in=[OPS, OWNER, REQUESTER]).delete()
            ActivityEntry.objects.filter(id__gt=last_entry).delete()
        _drop_queued_approval_tasks()


def _drop_queued_approval_tasks() -> None:
    """The setup and the server published notification tasks that no worker runs here;
    remove them so later tests find the broker as they expect it: empty."""
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    try:
        for queue in settings.CELERY_TASK_QUEUES_NAMES:
            for raw in client.lrange(queue, 0, -1):
                if json.loads(raw)["headers"].get("task", "").startswith("approvals."):
                    client.lrem(queue, 1, raw)
    finally:
        client.close()


def sign_in(page: Page, base: str, email: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/")


def posted(waiting: Waiting) -> list[tuple[int, str, str]]:
    return list(
        StockMovement.objects.filter(
            kind="adjustment", reference_id=str(waiting.request_id)
        ).values_list("quantity", "reference_type", "actor_label")
    )


def test_ops_manager_approves_a_pending_adjustment_from_the_inbox(
    live: LiveServer, floor: list[Waiting]
):
    base = f"http://{live.brand_host('alpha')}"
    first = floor[0]

    with chromium_page() as page:
        failed_assets = track_failed_assets(page)
        sign_in(page, base, OPS)
        nav = page.get_by_role("navigation", name="Sections")
        count = nav.locator("#nav-count-approvals-inbox")
        expect(count).to_have_text("4")
        nav.get_by_role("link", name=re.compile(r"^Approvals")).click()
        page.wait_for_url(f"{base}/approvals/")

        expect(page.locator(".queue-group h2")).to_have_text(["4 Stock adjustment"])
        card = page.locator(f"#request-{first.request_id}")
        expect(card).to_contain_text(first.title)
        expect(card).to_contain_text("On hand now")
        expect(card).to_contain_text("600.00 USD")
        expect(card).to_contain_text(REQUESTER)
        card.get_by_label("Comment").fill("Seen the damage report")
        card.get_by_role("button", name="Approve", exact=True).click()

        # htmx swapped the card for the outcome and the navigation count, in place.
        expect(card.get_by_role("status")).to_contain_text(f"Approved: {first.title}.")
        expect(count).to_have_text("3")
        assert page.url == f"{base}/approvals/"
        assert failed_assets == []

    with schema_context(SCHEMA):
        request = ApprovalRequest.objects.get(pk=first.request_id)
        assert (request.state, request.decided_by.email) == ("approved", OPS)
        assert list(request.decisions.values_list("comment", flat=True)) == [
            "Seen the damage report"
        ]
        assert posted(first) == [(-60, "approval_request", OPS)]
        assert StockAdjustmentRequest.objects.get(pk=first.adjustment_id).state == "posted"


def test_owner_bulk_approves_three(live: LiveServer, floor: list[Waiting]):
    base = f"http://{live.brand_host('alpha')}"
    three = floor[1:]

    with chromium_page() as page:
        failed_assets = track_failed_assets(page)
        sign_in(page, base, OWNER)
        page.goto(f"{base}/approvals/")
        for waiting in three:
            page.get_by_label(f"Select {waiting.title}").check()
        page.get_by_label("Comment for the selected").fill("Month-end write-offs")
        page.get_by_role("button", name="Approve selected").click()

        expect(page.locator("#results").get_by_role("status")).to_contain_text(
            "Approved 3 requests."
        )
        for waiting in three:
            expect(page.locator(f"#request-{waiting.request_id}")).to_have_count(0)
        assert failed_assets == []

    with schema_context(SCHEMA):
        for waiting in three:
            request = ApprovalRequest.objects.get(pk=waiting.request_id)
            assert (request.state, request.decided_by.email) == ("approved", OWNER)
            assert posted(waiting) == [(waiting.delta, "approval_request", OWNER)]
