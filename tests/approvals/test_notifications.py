"""Notifications leave after commit: emails to the people who may decide (and to the
requester once decided), and a signed, Slack-compatible webhook checked by a real HTTP
server on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import connection

from accounts.roles import Role
from approvals import services as approvals
from approvals import webhook
from approvals.models import EmailMode, WebhookDelivery
from config import crypto
from tests.approvals.conftest import adjust, make_people
from tests.conftest import make_user

pytestmark = pytest.mark.usefixtures("alpha", "eager_celery")

OWNER_A = "owner@alpha.example"


# --- Email --------------------------------------------------------------------------------


def test_opening_emails_everyone_who_may_decide_and_no_one_else(
    brand_a, goods, people, mailoutbox, django_capture_on_commit_callbacks
):
    others = make_people(brand_a, tag="-2")
    make_user(brand_a, role=Role.OWNER, email="gone@alpha.example", is_active=False)
    approvals.set_email_mode(user=people.admin, mode=EmailMode.OFF)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        outcome = adjust(goods, -100, people.ops)  # an Ops manager asks
        assert mailoutbox == []  # nothing leaves before commit

    assert len(callbacks) == 1
    request = outcome.approval
    # Owners, Admins and Ops managers may decide; not the requester (separation of
    # duties), not someone who switched email off, not a deactivated owner.
    assert sorted(m.to[0] for m in mailoutbox) == sorted(
        [OWNER_A, people.owner.email, others.owner.email, others.admin.email, others.ops.email]
    )
    mail = next(m for m in mailoutbox if m.to == [people.owner.email])
    assert mail.subject == f"[Alpha] Approval needed: {request.title}"
    assert "Amount: 1,000.00 USD" in mail.body
    assert f"Requested by: {people.ops.email}" in mail.body
    assert f"http://alpha.localhost:8000/approvals/{request.pk}/" in mail.body


def test_the_requester_hears_the_decision_and_the_reason(
    goods, people, mailoutbox, django_capture_on_commit_callbacks
):
    outcome = adjust(goods, -100, people.warehouse)
    mailoutbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        approvals.reject(outcome.approval, actor=people.owner, comment="Recount bin A-4")

    assert [m.to for m in mailoutbox] == [[people.warehouse.email]]
    assert mailoutbox[0].subject == f"[Alpha] Rejected: {outcome.approval.title}"
    assert "Recount bin A-4" in mailoutbox[0].body
    assert f"Decided by: {people.owner.email}" in mailoutbox[0].body


# --- Webhook ------------------------------------------------------------------------------


@dataclass
class Receiver:
    url: str
    status: list[int]
    received: list[tuple[dict, bytes]] = field(default_factory=list)


@pytest.fixture
def receiver(settings) -> Iterator[Receiver]:
    """A real HTTP endpoint on loopback that records what it gets and answers with the
    next status in `status` (200 once they run out)."""
    settings.KEEL_WEBHOOKS_ALLOW_PRIVATE = True
    statuses: list[int] = []
    received: list[tuple[dict, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(statuses.pop(0) if statuses else 200)
            self.end_headers()

        def log_message(self, *args) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Receiver(
            f"http://127.0.0.1:{server.server_address[1]}/hooks/keel", statuses, received
        )
    finally:
        server.shutdown()
        server.server_close()


def test_webhook_is_signed_slack_compatible_and_sent_after_commit(
    goods, people, receiver, django_capture_on_commit_callbacks
):
    approvals.update_settings(actor=people.admin, webhook_url=receiver.url)
    secret = approvals.webhook_signing_secret()

    with django_capture_on_commit_callbacks(execute=True):
        outcome = adjust(goods, -100, people.warehouse)
        assert receiver.received == []
    with django_capture_on_commit_callbacks(execute=True):
        approvals.approve(outcome.approval, actor=people.owner)

    assert len(receiver.received) == 2
    (opened_headers, opened), (approved_headers, approved) = receiver.received
    for headers, body in receiver.received:
        assert headers["content-type"] == "application/json"
        assert webhook.verify(secret, body, headers["x-keel-signature"])
        assert not webhook.verify("another brand's secret", body, headers["x-keel-signature"])
    assert opened_headers["x-keel-event"] == "approval.requested"
    request = outcome.approval
    assert json.loads(opened) == {
        "text": (
            f"Approval needed: Stock adjustment — {request.title} (1,000.00 USD), requested by "
            f"{people.warehouse.email}. <http://alpha.localhost:8000/approvals/{request.pk}/"
            "|Open in Keel>"
        ),
        "event": "approval.requested",
        "request": {
            "id": request.pk,
            "subject_type": "stock_adjustment",
            "subject_id": str(outcome.request.pk),
            "title": request.title,
            "amount": "1000.00",
            "currency": "USD",
            "state": "pending",
            "requested_by": people.warehouse.email,
            "decided_by": "",
            "resolution": "",
            "url": f"http://alpha.localhost:8000/approvals/{request.pk}/",
        },
    }
    assert json.loads(approved)["text"].startswith(
        f"Approved: Stock adjustment — {request.title} (1,000.00 USD), by {people.owner.email}."
    )
    assert WebhookDelivery.objects.filter(delivered_at__isnull=False).count() == 2


def test_a_failing_receiver_is_retried_and_never_blocks_the_decision(goods, people, receiver):
    approvals.update_settings(actor=people.admin, webhook_url=receiver.url)
    receiver.status.extend([500, 503])
    outcome = adjust(goods, -100, people.warehouse)  # callbacks not run: nothing sent yet
    delivery = WebhookDelivery.objects.get()

    for _ in range(2):
        with pytest.raises(approvals.WebhookFailed):
            approvals.deliver_webhook(delivery.pk)
    assert approvals.deliver_webhook(delivery.pk) is True
    assert approvals.deliver_webhook(delivery.pk) is True  # delivered: never sent again

    delivery.refresh_from_db()
    assert (delivery.attempts, delivery.last_status, delivery.last_error) == (3, 200, "")
    assert len(receiver.received) == 3
    assert outcome.approval.state == "pending"


def test_an_unreachable_receiver_is_given_up_on_and_logged(goods, people, settings):
    settings.KEEL_WEBHOOKS_ALLOW_PRIVATE = True
    approvals.update_settings(actor=people.admin, webhook_url="http://127.0.0.1:9/nothing")
    outcome = adjust(goods, -100, people.warehouse)
    approvals.approve(outcome.approval, actor=people.owner)  # the decision stands regardless
    delivery = WebhookDelivery.objects.order_by("id").first()

    with pytest.raises(approvals.WebhookFailed):
        approvals.deliver_webhook(delivery.pk)
    approvals.give_up_webhook(delivery.pk)

    delivery.refresh_from_db()
    assert delivery.failed_at is not None and delivery.attempts == 1
    assert "ConnectError" in delivery.last_error
    assert approvals.deliver_webhook(delivery.pk) is False


def test_private_addresses_are_refused_outside_development(people, settings):
    settings.KEEL_WEBHOOKS_ALLOW_PRIVATE = False

    for url in ("http://hooks.example.com/x", "https://127.0.0.1/x", "https://10.1.2.3/x"):
        with pytest.raises(approvals.ApprovalError) as refused:
            approvals.update_settings(actor=people.admin, webhook_url=url)
        assert refused.value.error_dict["webhook_url"][0].code == "invalid_url"
    assert approvals.load_settings().webhook_url == ""


def test_only_policy_managers_change_notification_settings(people):
    with pytest.raises(approvals.AccessError):
        approvals.update_settings(actor=people.ops, webhook_url="")
    with pytest.raises(approvals.AccessError):
        approvals.rotate_webhook_secret(actor=people.buyer)
    before = approvals.webhook_signing_secret()
    approvals.rotate_webhook_secret(actor=people.owner)
    assert approvals.webhook_signing_secret() != before


def test_webhook_secret_is_encrypted_at_rest(people):
    secret = approvals.webhook_signing_secret()

    with connection.cursor() as cursor:
        cursor.execute("SELECT webhook_secret_encrypted FROM approvals_approvalsettings")
        (stored,) = cursor.fetchone()

    assert secret not in stored
    assert crypto.decrypt(stored) == secret
