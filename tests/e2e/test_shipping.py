"""Shipping in a real browser: an Ops manager approves a 90 USD label from the approvals
inbox, opens the shipment and prints the label (the PDF the page links to loads); then
uploads the signed bill of lading of a booked LTL shipment and sees it complete.

The server is another process, so what it serves is committed by `floor` (an Ops manager,
a fulfillment order whose chosen rate costs about 90 USD, its label waiting for approval)
and removed afterwards (alpha's business tables emptied, the built-in sandbox carrier
connection, the approval rows, the people, the activity rows and the label file).
Approving buys the label in the server process, right after the approval commits.
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
from playwright.sync_api import expect

from accounts.models import User
from accounts.roles import Role
from approvals.models import ApprovalDecision, ApprovalRequest, WebhookDelivery
from audit.models import ActivityEntry
from shipping import services
from shipping.models import Label
from sync.models import Connection
from tests.conftest import empty_business_tables
from tests.e2e.browser import LiveServer, chromium_page, track_failed_assets
from tests.factories import UserFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db]

PASSWORD = "correct-horse-battery-staple"
OPS = "sam.shipping.e2e@alpha.example"
SCHEMA = "brand_alpha"


@dataclass(frozen=True)
class Waiting:
    request_id: int
    shipment_id: int
    amount: Decimal
    title: str


@pytest.fixture(scope="module")
def floor(django_db_setup, django_db_blocker) -> Iterator[Waiting]:
    from tests.shipping.factories import make_fo

    with django_db_blocker.unblock(), schema_context(SCHEMA):
        last_entry = ActivityEntry.objects.aggregate(last=Max("id"))["last"] or 0
        hasher = PBKDF2PasswordHasher()
        person = UserFactory(email=OPS, full_name="Sam Shipper", role=Role.OPS_MANAGER)
        person.password = hasher.encode(PASSWORD, hasher.salt())
        person.save(update_fields=["password"])
        # 11 kg from 900xx to 100xx: the sandbox's next-day service costs about 90 USD
        shipment = services.rate_shipment(services.create_shipment(make_fo(weight_kg="11")))
        quote = min(
            shipment.quotes.filter(amount__gt=Decimal("75")),
            key=lambda q: abs(q.amount - Decimal("90")),
        )
        services.choose_quote(shipment, quote, actor=None)
        # Asked for by the system (a rule, an import): the Ops manager may decide it.
        result = services.request_label(shipment)
        assert result.state == "pending"
        waiting = Waiting(result.approval.pk, shipment.pk, quote.amount, result.approval.title)
    try:
        yield waiting
    finally:
        with django_db_blocker.unblock(), schema_context(SCHEMA):
            for label in Label.objects.all():
                if label.document:
                    label.document.delete(save=False)
            WebhookDelivery.objects.all().delete()
            ApprovalDecision.objects.all().delete()
            ApprovalRequest.objects.all().delete()
            empty_business_tables(SCHEMA)
            Connection.objects.filter(channel_key=services.SANDBOX_CHANNEL_KEY).delete()
            User.objects.filter(email=OPS).delete()
            ActivityEntry.objects.filter(id__gt=last_entry).delete()
        _drop_queued_approval_tasks()


def _drop_queued_approval_tasks() -> None:
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    try:
        for queue in settings.CELERY_TASK_QUEUES_NAMES:
            for raw in client.lrange(queue, 0, -1):
                task = json.loads(raw)["headers"].get("task", "")
                if task.startswith(("approvals.", "outbox.")):
                    client.lrem(queue, 1, raw)
    finally:
        client.close()


def test_ops_manager_approves_a_90_dollar_label_and_prints_it(live: LiveServer, floor: Waiting):
    base = f"http://{live.brand_host('alpha')}"

    with chromium_page() as page:
        failed_assets = track_failed_assets(page)
        page.goto(f"{base}/accounts/login/")
        page.get_by_label("Email").fill(OPS)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{base}/")

        page.goto(f"{base}/approvals/")
        card = page.locator(f"#request-{floor.request_id}")
        expect(card).to_contain_text(floor.title)
        expect(card).to_contain_text("Competing rates")
        expect(card).to_contain_text(f"{floor.amount} USD")
        card.get_by_role("button", name="Approve", exact=True).click()
        expect(card.get_by_role("status")).to_contain_text("Approved")

        page.goto(f"{base}/shipping/{floor.shipment_id}/")
        expect(page.locator("#shipment-state")).to_have_text("Label purchased")
        link = page.get_by_role("link", name="Print label (PDF)")
        expect(link).to_be_visible()
        href = link.get_attribute("href")
        assert re.fullmatch(r"/shipping/labels/\d+/document/", href)
        # What the print link opens, fetched by the page itself (its session and host).
        status, content_type, head = page.evaluate(
            """async (url) => {
                const r = await fetch(url);
                const bytes = new Uint8Array(await r.arrayBuffer());
                return [r.status, r.headers.get("content-type"),
                        String.fromCharCode(...bytes.slice(0, 5))];
            }""",
            href,
        )
        assert (status, content_type, head) == (200, "application/pdf", "%PDF-")
        assert failed_assets == []

    with schema_context(SCHEMA):
        label = Label.objects.get(shipment_id=floor.shipment_id)
        assert label.status == "purchased"
        assert label.approval_request_id == floor.request_id
        assert label.cost == floor.amount
        request = ApprovalRequest.objects.get(pk=floor.request_id)
        assert (request.state, request.decided_by.email) == ("approved", OPS)


@dataclass(frozen=True)
class Booked:
    shipment_id: int
    bol_number: str


@pytest.fixture(scope="module")
def ltl_floor(django_db_setup, django_db_blocker, floor) -> Iterator[Booked]:
    """Committed: an LTL shipment quoted by two freight fakes and booked (the fakes run
    only during this setup: uploading the proof of delivery calls no vendor)."""
    from connectors.clock import VirtualClock
    from shipping import freight
    from sync import plugins
    from sync import services as sync
    from tests.fakes.ltl_broker import FakeLtlBroker
    from tests.fakes.ltl_direct import FakeLtlDirect
    from tests.shipping.factories import make_fo

    clock = VirtualClock()
    previous = (plugins.clock, getattr(settings, "KEEL_CONNECTOR_EGRESS_PERMISSIVE", False))
    plugins.clock = clock
    settings.KEEL_CONNECTOR_EGRESS_PERMISSIVE = True
    try:
        with (
            django_db_blocker.unblock(),
            schema_context(SCHEMA),
            FakeLtlBroker(clock=clock) as broker,
            FakeLtlDirect(clock=clock) as direct,
        ):
            sync.create_connection(
                connector="ltl_broker",
                display_name="Freight broker",
                channel_key="e2e-ltl-broker",
                settings={"api_base_url": broker.base_url},
                credentials={"api_key": broker.api_key},
            )
            sync.create_connection(
                connector="ltl_direct",
                display_name="Direct LTL carrier",
                channel_key="e2e-ltl-direct",
                settings={"api_base_url": direct.base_url, "account_number": direct.account_number},
                credentials={"api_key": direct.api_key},
            )
            fo = make_fo(
                weight_kg="400",
                dest_state="TX",
                dest_postal="75201",
                company="Big Box Stores",
                order_type="wholesale",
            )
            shipment = freight.quote_freight(services.create_shipment(fo))
            result = freight.request_booking(shipment)
            assert result["state"] == "booking", result
            booking = shipment.bookings.get()
            assert booking.status == "booked"
            booked = Booked(shipment.pk, booking.bol_number)
    finally:
        plugins.clock = previous[0]
        settings.KEEL_CONNECTOR_EGRESS_PERMISSIVE = previous[1]
    try:
        yield booked
    finally:
        with django_db_blocker.unblock(), schema_context(SCHEMA):
            from shipping.models import FreightBooking

            for b in FreightBooking.objects.all():
                for document in (b.bol_document, b.pod_document):
                    if document:
                        document.delete(save=False)
            empty_business_tables(SCHEMA)
            Connection.objects.filter(channel_key__in=["e2e-ltl-broker", "e2e-ltl-direct"]).delete()


def test_ops_manager_uploads_the_signed_bol_and_the_shipment_completes(
    live: LiveServer, floor: Waiting, ltl_floor: Booked
):
    base = f"http://{live.brand_host('alpha')}"
    with chromium_page() as page:
        failed_assets = track_failed_assets(page)
        page.goto(f"{base}/accounts/login/")
        page.get_by_label("Email").fill(OPS)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{base}/")

        page.goto(f"{base}/shipping/{ltl_floor.shipment_id}/")
        expect(page.locator("#freight")).to_contain_text(ltl_floor.bol_number)
        expect(page.get_by_role("link", name="Bill of lading (PDF)")).to_be_visible()
        page.get_by_label("Signed BOL / delivery receipt").set_input_files(
            files=[
                {
                    "name": "signed-bol.pdf",
                    "mimeType": "application/pdf",
                    "buffer": b"%PDF-1.4 signed by the consignee",
                }
            ]
        )
        page.get_by_label("Signed by").fill("Dana Dock")
        page.get_by_label("Final freight cost").fill("199.00")
        page.get_by_role("button", name="Upload proof of delivery").click()
        expect(page.locator("#shipment-state")).to_have_text("Delivered")
        expect(page.locator("#freight")).to_contain_text("signed by Dana Dock")
        assert failed_assets == []

    with schema_context(SCHEMA):
        from shipping.models import CarrierOutcome, FreightBooking

        booking = FreightBooking.objects.get(shipment_id=ltl_floor.shipment_id)
        assert booking.status == "delivered"
        assert str(booking.final_total) == "199.00"
        assert booking.bol_document.name.startswith("bol/shipped/")
        outcome = CarrierOutcome.objects.get(shipment_id=ltl_floor.shipment_id)
        assert str(outcome.invoiced_cost) == "199.00"
