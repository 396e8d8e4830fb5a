"""Purchase orders in a real browser: a Buyer approves a PO drafted by an Ops manager from
the approvals inbox and sees it sent; an Owner bulk-approves three POs.

As in test_approvals_inbox: the server is another process, so `floor` commits the people,
a supplier with a costed SKU and four POs waiting for approval before the tests'
rolled-back transactions start, and afterwards removes the approval rows, empties alpha's
business tables and deletes the people and the activity entries the module caused. The
server queues each PO's email in the outbox; the test process runs those messages as a
worker would and checks what left (pytest's locmem email backend).
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
from approvals.models import (
    ApprovalDecision,
    ApprovalRequest,
    ApprovalSettings,
    ApproverPreference,
    WebhookDelivery,
)
from audit.models import ActivityEntry
from catalog import services as catalog
from purchasing import services as purchasing
from purchasing.models import PurchaseOrder
from tests.conftest import empty_business_tables
from tests.e2e.browser import LiveServer, chromium_page, track_failed_assets
from tests.e2e.test_approvals_inbox import PASSWORD, _drop_queued_approval_tasks, sign_in
from tests.factories import UserFactory, WarehouseFactory
from tests.purchasing.factories import SupplierFactory, SupplierSKUFactory
from tests.purchasing.support import deliver_emails

pytestmark = [pytest.mark.e2e, pytest.mark.django_db]

BUYER = "bea.po-e2e@alpha.example"
OWNER = "owen.po-e2e@alpha.example"
DRAFTER = "opal.po-e2e@alpha.example"
SUPPLIER_EMAIL = "orders@acme-mills.example"
SCHEMA = "brand_alpha"


@dataclass(frozen=True)
class Waiting:
    po_id: int
    number: str
    request_id: int
    title: str


@pytest.fixture(scope="module")
def floor(django_db_setup, django_db_blocker) -> Iterator[list[Waiting]]:
    """Committed: a Buyer, an Owner, an Ops manager who drafted four POs of E2E-TEE at
    10.00 (60–90 units: 600–900 USD, above the 500 tail ceiling) waiting for approval."""
    with django_db_blocker.unblock(), schema_context(SCHEMA):
        last_entry = ActivityEntry.objects.aggregate(last=Max("id"))["last"] or 0
        hasher = PBKDF2PasswordHasher()
        for email, name, role in (
            (BUYER, "Bea Buyer", Role.BUYER),
            (OWNER, "Owen Owner", Role.OWNER),
            (DRAFTER, "Opal Ops", Role.OPS_MANAGER),
        ):
            person = UserFactory(email=email, full_name=name, role=role)
            person.password = hasher.encode(PASSWORD, hasher.salt())
            person.save(update_fields=["password"])
        drafter = User.objects.get(email=DRAFTER)
        product = catalog.create_product(title="Heavy tee", status="active")
        sku = catalog.create_sku(product=product, code="E2E-TEE", title="Heavy tee")
        supplier = SupplierFactory(code="ACME", name="Acme Mills", email=SUPPLIER_EMAIL)
        SupplierSKUFactory(supplier=supplier, sku=sku, unit_cost=Decimal("10.00"))
        main = WarehouseFactory(code="MAIN", name="Main DC")
        waiting = []
        for units in (60, 70, 80, 90):
            po = purchasing.create_draft(
                supplier=supplier,
                warehouse=main,
                lines=[purchasing.DraftLine(sku, units)],
                actor=drafter,
            )
            po = purchasing.submit(po, actor=drafter)
            request = purchasing.current_request(po)
            assert request.state == "pending"
            waiting.append(Waiting(po.pk, po.number, request.pk, request.title))
    try:
        yield waiting
    finally:
        with django_db_blocker.unblock(), schema_context(SCHEMA):
            WebhookDelivery.objects.all().delete()
            ApprovalDecision.objects.all().delete()
            ApprovalRequest.objects.filter(superseded_by__isnull=False).update(superseded_by=None)
            ApprovalRequest.objects.all().delete()
            ApproverPreference.objects.all().delete()
            ApprovalSettings.objects.all().delete()
            empty_business_tables(SCHEMA)
            User.objects.filter(email__in=[BUYER, OWNER, DRAFTER]).delete()
            ActivityEntry.objects.filter(id__gt=last_entry).delete()
        _drop_queued_approval_tasks()


def test_buyer_approves_a_po_from_the_inbox_and_sees_it_sent(
    live: LiveServer, floor: list[Waiting], mailoutbox
):
    base = f"http://{live.brand_host('alpha')}"
    first = floor[0]

    with chromium_page() as page:
        failed_assets = track_failed_assets(page)
        sign_in(page, base, BUYER)
        nav = page.get_by_role("navigation", name="Sections")
        expect(nav.locator("#nav-count-approvals-inbox")).to_have_text("4")
        nav.get_by_role("link", name=re.compile(r"^Approvals")).click()
        page.wait_for_url(f"{base}/approvals/")

        expect(page.locator(".queue-group h2")).to_have_text(["4 Purchase order"])
        card = page.locator(f"#request-{first.request_id}")
        expect(card).to_contain_text(f"{first.number} · Acme Mills · 1 line")
        expect(card).to_contain_text("600.00 USD")
        expect(card).to_contain_text("E2E-TEE")  # the lines table of the decision context
        expect(card).to_contain_text(DRAFTER)
        card.get_by_label("Comment").fill("Needed for the autumn drop")
        card.get_by_role("button", name="Approve", exact=True).click()
        expect(card.get_by_role("status")).to_contain_text(f"Approved: {first.title}.")

        page.goto(f"{base}/purchasing/{first.po_id}/")
        expect(page.locator("#po-state")).to_have_text("Sent")
        expect(page.locator("#approval")).to_contain_text("Approved")
        expect(page.locator("#timeline")).to_contain_text("sent it to the supplier")
        assert failed_assets == []

    with schema_context(SCHEMA):
        po = PurchaseOrder.objects.get(pk=first.po_id)
        request = ApprovalRequest.objects.get(pk=first.request_id)
        assert (po.state, po.times_sent, request.decided_by.email) == ("sent", 1, BUYER)
        assert po.continuation_key == f"approval_request:{request.pk}"
        assert deliver_emails([first.po_id]) == ["done"]
    assert [(m.subject, m.to) for m in mailoutbox] == [
        (f"[Alpha] Purchase order {first.number}", [SUPPLIER_EMAIL])
    ]


def test_owner_bulk_approves_three_pos(live: LiveServer, floor: list[Waiting], mailoutbox):
    base = f"http://{live.brand_host('alpha')}"
    three = floor[1:]

    with chromium_page() as page:
        failed_assets = track_failed_assets(page)
        sign_in(page, base, OWNER)
        page.goto(f"{base}/approvals/")
        for waiting in three:
            page.get_by_label(f"Select {waiting.title}").check()
        page.get_by_label("Comment for the selected").fill("Autumn buy")
        page.get_by_role("button", name="Approve selected").click()

        expect(page.locator("#results").get_by_role("status")).to_contain_text(
            "Approved 3 requests."
        )
        for waiting in three:
            expect(page.locator(f"#request-{waiting.request_id}")).to_have_count(0)
        page.goto(f"{base}/purchasing/?state=sent")
        for waiting in three:
            expect(page.get_by_role("link", name=waiting.number)).to_be_visible()
        assert failed_assets == []

    with schema_context(SCHEMA):
        for waiting in three:
            po = PurchaseOrder.objects.get(pk=waiting.po_id)
            request = ApprovalRequest.objects.get(pk=waiting.request_id)
            assert (po.state, po.times_sent) == ("sent", 1)
            assert (request.state, request.decided_by.email) == ("approved", OWNER)
        assert deliver_emails(w.po_id for w in three) == ["done"] * 3
    assert sorted(m.subject for m in mailoutbox) == sorted(
        f"[Alpha] Purchase order {waiting.number}" for waiting in three
    )
