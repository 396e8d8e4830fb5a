"""Purchase-order emails go through the transactional outbox: sending a PO writes its email
message in the same transaction, a worker sends it once with the PDF, SMTP failures are
retried and parked (and shown on the PO page), and *Email again* is a new email."""

from __future__ import annotations

import io
import smtplib
import time
from datetime import timedelta

import pytest
from django.core import mail
from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.backends.locmem import EmailBackend as LocmemBackend
from django.db import connection, transaction
from django.utils import timezone
from django_tenants.utils import schema_context
from pypdf import PdfReader

from approvals import services as approvals
from audit.models import ActivityEntry
from config.celery import app
from outbox import registry
from outbox import services as outbox
from outbox.models import MessageStatus, OutboxMessage
from outbox.services import _Kick
from purchasing import services
from purchasing.models import EmailStatus, POState, PurchaseOrder, PurchaseOrderEmail
from tests.approvals.test_purchase_orders import run_together
from tests.conftest import brand_client
from tests.factories import SKUFactory
from tests.purchasing.factories import SupplierFactory, make_po
from tests.purchasing.support import deliver_emails, email_messages

REPLACED = "Replaced by a later email of this order."


class Rollback(Exception):
    pass


class RefusingMailServer(BaseEmailBackend):
    """A mail server that is having trouble: every message gets a temporary failure."""

    def send_messages(self, email_messages):
        raise smtplib.SMTPDataError(451, "4.3.0 Mail server temporarily unavailable")


class WaitsForADuplicateDelivery(LocmemBackend):
    """Accepts the message only once another database connection is blocked behind the
    sending one (the duplicate delivery waiting for the message's row lock), so the two
    deliveries provably overlap."""

    overlapped = False

    def send_messages(self, email_messages):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_stat_clear_snapshot()")
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE pg_backend_pid() = ANY(pg_blocking_pids(pid))"
                )
                if cursor.fetchone()[0]:
                    WaitsForADuplicateDelivery.overlapped = True
                    break
            time.sleep(0.02)
        return super().send_messages(email_messages)


def rows(po: PurchaseOrder) -> list[tuple]:
    return list(
        PurchaseOrderEmail.objects.filter(purchase_order=po)
        .order_by("id")
        .values_list("purpose", "version", "status", "note")
    )


def logged(po: PurchaseOrder, action: str) -> list[ActivityEntry]:
    return list(
        ActivityEntry.objects.filter(
            action=action, object_type="purchasing.purchaseorder", object_id=str(po.pk)
        ).order_by("id")
    )


def due_now(message: OutboxMessage) -> None:
    """The backoff has passed (what waiting would do)."""
    OutboxMessage.objects.filter(pk=message.pk).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1)
    )


def pdf_text(content: bytes) -> str:
    return "".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)


# --- Written with the send ---------------------------------------------------------------------


@pytest.mark.usefixtures("alpha")
def test_sending_a_po_queues_exactly_one_email_in_the_same_transaction(
    people, mails, monkeypatch, django_capture_on_commit_callbacks
):
    # given: relay kicks recorded instead of published
    kicks: list[str] = []
    monkeypatch.setattr(_Kick, "paused_until", 0.0)
    monkeypatch.setattr(app, "send_task", lambda name, **kw: kicks.append(name))
    po = make_po((SKUFactory(), 10), actor=people.buyer)  # 100.00: approved and sent at once

    # when: the PO is sent
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        po = services.submit(po, actor=people.buyer)
        # then: the message exists inside the sending transaction, before any commit
        [message] = email_messages()

    # then: one message, keyed by PO, version and purpose, with its email row
    assert po.state == POState.SENT
    email = PurchaseOrderEmail.objects.get(purchase_order=po)
    assert message.key == email.key
    assert message.key.startswith(f"purchase_order:{po.pk}:v1:order:")
    assert message.payload == {
        "purchase_order": po.pk,
        "email": email.pk,
        "version": 1,
        "purpose": "order",
    }
    assert (email.status, email.to, email.sent_at) == (EmailStatus.QUEUED, "", None)
    # and nothing was mailed at commit: the commit only asked the relay to run
    assert mails == []
    assert kicks == [outbox.RELAY_TASK]

    # when: another PO's send rolls back
    other = make_po((SKUFactory(), 10), actor=people.buyer)
    with pytest.raises(Rollback), transaction.atomic():
        services.submit(other, actor=people.buyer)
        assert len(email_messages()) == 2
        raise Rollback

    # then: it left no message and no email row, and the workers send only the first PO
    other.refresh_from_db()
    assert other.state == POState.DRAFT
    assert [m.pk for m in email_messages()] == [message.pk]
    assert not PurchaseOrderEmail.objects.filter(purchase_order=other).exists()
    assert deliver_emails() == ["done"]
    assert [m.to for m in mails] == [[po.supplier.email]]


# --- The worker sends it once ------------------------------------------------------------------


@pytest.mark.usefixtures("alpha")
def test_the_worker_emails_the_pdf_to_the_supplier_once(people, mails):
    # given: a sent PO and its message, consumed on the default queue
    po = services.submit(make_po((SKUFactory(), 10), actor=people.buyer), actor=people.buyer)
    [message] = email_messages()
    assert registry.get(services.EMAIL_TOPIC).queue == "default"

    # when: the worker consumes it
    assert outbox.consume(message.pk) == "done"

    # then: one email with the PO's PDF went to the supplier's address
    [sent] = mails
    assert sent.to == [po.supplier.email]
    assert sent.subject == f"[Alpha] Purchase order {po.number}"
    [(name, content, mimetype)] = sent.attachments
    assert (name, mimetype) == (f"{po.number}.pdf", "application/pdf")
    assert f"Purchase order {po.number}" in pdf_text(content)
    # and the outcome is on the PO and in the activity log
    email = PurchaseOrderEmail.objects.get(purchase_order=po)
    assert (email.status, email.to, email.attempts) == (EmailStatus.SENT, po.supplier.email, 1)
    assert email.sent_at is not None
    [entry] = logged(po, "purchase_order.emailed")
    assert entry.changes == {
        "to": po.supplier.email,
        "version": 1,
        "purpose": "order",
        "attempt": 1,
        "key": message.key,
    }

    # when: the task is delivered again, and the handler runs again past the outbox's check
    assert outbox.consume(message.pk) == "duplicate"
    message.refresh_from_db()
    registry.get(services.EMAIL_TOPIC).func(message)

    # then: nothing more was sent or logged
    assert len(mails) == 1
    assert len(logged(po, "purchase_order.emailed")) == 1


@pytest.fixture
def committed(committed_alpha, settings):
    """committed_alpha, plus removal of the outbox messages and activity entries the test
    committed (committed_alpha truncates business tables only)."""
    started = timezone.now()
    settings.EMAIL_BACKEND = f"{__name__}.WaitsForADuplicateDelivery"
    WaitsForADuplicateDelivery.overlapped = False
    mail.outbox = []
    yield
    OutboxMessage.objects.filter(created_at__gte=started).delete()
    ActivityEntry.objects.filter(created_at__gte=started).delete()


@pytest.mark.usefixtures("committed")
def test_two_deliveries_of_the_same_message_at_once_send_one_email():
    # given: a sent PO, committed, and its message
    po = services.submit(make_po((SKUFactory(), 10), actor=None), actor=None)
    [message] = email_messages()

    # when: two workers consume the same message at the same instant (a redelivered task)
    results = run_together(lambda _: outbox.consume(message.pk), [1, 2])

    # then: the second waited for the first and found it done; one email left
    assert sorted(results) == ["done", "duplicate"], results
    assert WaitsForADuplicateDelivery.overlapped
    assert [m.to for m in mail.outbox] == [[po.supplier.email]]
    email = PurchaseOrderEmail.objects.get(purchase_order=po)
    assert (email.status, email.attempts) == (EmailStatus.SENT, 1)
    assert len(logged(po, "purchase_order.emailed")) == 1


# --- Failures ----------------------------------------------------------------------------------


def test_smtp_failures_are_retried_then_parked_shown_on_the_page_and_emailed_again(
    brand_a, people, mails, settings
):
    # given: the mail server refuses everything; three attempts before the outbox parks
    settings.EMAIL_BACKEND = f"{__name__}.RefusingMailServer"
    settings.KEEL_OUTBOX_MAX_ATTEMPTS = 3
    client = brand_client(brand_a, people.buyer)
    with schema_context(brand_a.schema_name):
        supplier = SupplierFactory()
        po = services.submit(
            make_po((SKUFactory(), 10), supplier=supplier, actor=people.buyer),
            actor=people.buyer,
        )
        [message] = email_messages()

        # when: the first attempt fails
        assert outbox.consume(message.pk) == "failed"

        # then: it waits out a backoff; the attempt's writes rolled back
        message.refresh_from_db()
        assert (message.status, message.attempts) == (MessageStatus.PENDING, 1)
        assert message.next_attempt_at > timezone.now()
        assert "SMTPDataError" in message.last_error and "4.3.0" in message.last_error
        assert outbox.consume(message.pk) == "not_due"  # a stale copy of the task
        assert rows(po) == [("order", 1, EmailStatus.QUEUED, "")]
        assert logged(po, "purchase_order.emailed") == []

    page = client.get(f"/purchasing/{po.pk}/").content.decode()
    assert 'data-email-state="retrying"' in page and "4.3.0 Mail server" in page
    assert 'id="email-failed"' not in page

    # when: the next attempts fail too
    with schema_context(brand_a.schema_name):
        for expected in ("failed", "parked"):
            due_now(message)
            assert outbox.consume(message.pk) == expected
        message.refresh_from_db()
        assert message.status == MessageStatus.DEAD

    # then: nothing was sent, and the PO page says the email failed, why, and offers a way on
    assert mails == []
    page = client.get(f"/purchasing/{po.pk}/").content.decode()
    assert 'id="email-failed"' in page and 'data-email-state="failed"' in page
    assert "failed after 3 attempts" in page and "4.3.0 Mail server temporarily unavailable" in page
    assert "Email again</button>" in page

    # when: the mail server is back and a person emails it again
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert client.post(f"/purchasing/{po.pk}/resend/").status_code == 302
    with schema_context(brand_a.schema_name):
        assert deliver_emails() == ["done"]
        # and someone later retries the parked message from the outbox page
        outbox.retry_message(message)
        assert outbox.consume(message.pk) == "done"

        # then: the supplier got exactly one email; the parked one was replaced
        assert rows(po) == [
            ("order", 1, EmailStatus.SKIPPED, REPLACED),
            ("again", 1, EmailStatus.SENT, ""),
        ]
    assert [m.to for m in mails] == [[supplier.email]]
    page = client.get(f"/purchasing/{po.pk}/").content.decode()
    assert 'id="email-failed"' not in page and 'data-email-state="sent"' in page


# --- Email again, amendments, and emails that must not go out ----------------------------------


@pytest.mark.usefixtures("alpha")
def test_email_again_sends_a_new_email_each_time(people, mails):
    # given: a sent and emailed PO
    po = services.submit(make_po((SKUFactory(), 10), actor=people.buyer), actor=people.buyer)
    assert deliver_emails() == ["done"]

    # when: a person asks twice, each time after the email went out
    for _ in range(2):
        services.resend(po, actor=people.buyer)
        assert deliver_emails() == ["done"]

    # then: three emails, three distinct keys
    assert [m.to for m in mails] == [[po.supplier.email]] * 3
    assert all(m.attachments[0][0] == f"{po.number}.pdf" for m in mails)
    keys = [m.key for m in email_messages()]
    assert len(set(keys)) == 3 and [k.split(":")[3] for k in keys] == ["order", "again", "again"]
    assert len(logged(po, "purchase_order.emailed_again")) == 2
    assert len(logged(po, "purchase_order.emailed")) == 3

    # when: two requests come before a worker runs (a double click)
    services.resend(po, actor=people.buyer)
    services.resend(po, actor=people.buyer)

    # then: the second replaces the first: one more email, not two
    assert deliver_emails() == ["done", "done"]
    assert len(mails) == 4
    assert [r[2:] for r in rows(po)[-2:]] == [
        (EmailStatus.SKIPPED, REPLACED),
        (EmailStatus.SENT, ""),
    ]


@pytest.mark.usefixtures("alpha")
def test_an_approved_amendment_is_emailed_and_the_outdated_version_is_not(people, mails):
    # given: a sent PO whose email has not gone out yet
    sku = SKUFactory()
    po = services.submit(make_po((sku, 50), actor=people.buyer), actor=people.buyer)

    # when: it is edited upward (version 2 needs approval) before the worker runs
    po = services.update_lines(po, lines=[services.DraftLine(sku, 300)], actor=people.buyer)
    assert po.state == POState.PENDING_APPROVAL and po.version == 2

    # then: the version-1 email is not sent (the PDF would show version 2)
    assert deliver_emails() == ["done"]
    assert mails == []
    [(purpose, version, status, note)] = rows(po)
    assert (purpose, version, status) == ("order", 1, EmailStatus.SKIPPED)
    assert note.startswith("Version 1 changed (now version 2, pending approval)")
    assert len(logged(po, "purchase_order.email_skipped")) == 1

    # when: the amendment is approved
    approvals.approve(services.current_request(po), actor=people.owner)
    assert deliver_emails() == ["done"]

    # then: the amended order went out, once
    assert [m.subject for m in mails] == [f"[Alpha] Amended purchase order {po.number}"]
    assert rows(po)[-1][:3] == ("amendment", 2, EmailStatus.SENT)


@pytest.mark.usefixtures("alpha")
def test_a_po_cancelled_before_its_email_went_out_is_not_emailed(people, mails):
    po = services.submit(make_po((SKUFactory(), 10), actor=people.buyer), actor=people.buyer)

    services.cancel(po, actor=people.buyer, reason="Ordered twice")

    assert deliver_emails() == ["done"]
    assert mails == []
    assert rows(po) == [
        ("order", 1, EmailStatus.SKIPPED, "The order was cancelled before the email went out.")
    ]


def test_a_supplier_without_an_address_gets_no_message_and_the_page_says_so(brand_a, people):
    with schema_context(brand_a.schema_name):
        supplier = SupplierFactory(email="")
        po = services.submit(
            make_po((SKUFactory(), 10), supplier=supplier, actor=people.buyer),
            actor=people.buyer,
        )
        assert po.state == POState.SENT
        assert email_messages() == []
        assert rows(po) == [("order", 1, EmailStatus.SKIPPED, "The supplier has no email address.")]

    page = brand_client(brand_a, people.buyer).get(f"/purchasing/{po.pk}/").content.decode()
    assert 'data-email-state="skipped"' in page and "The supplier has no email address." in page
    assert "Email again</button>" not in page
