"""The monthly supplier digest: when it is due, who gets it, what it says, once a month."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from config.celery import app
from purchasing.digest import send_digest
from purchasing.models import SupplierDigest
from tests.factories import SKUFactory
from tests.purchasing.factories import SupplierFactory
from tests.purchasing.test_stats import delivered

pytestmark = pytest.mark.usefixtures("alpha")

# Alpha's timezone is UTC (provisioning default).
FIRST = datetime(2031, 3, 1, 9, 0, tzinfo=UTC)


def test_digest_goes_to_owners_admins_and_buyers_once_on_the_first(people, mails):
    supplier, sku = SupplierFactory(code="ACME", name="Acme Mills"), SKUFactory()
    day = FIRST.date() - timedelta(days=40)
    delivered(supplier, sku, sent=day, expected=day, arrivals=[(day + timedelta(days=4), 10, "")])

    assert send_digest(FIRST.replace(day=2)) == 0
    assert send_digest(FIRST.replace(hour=7)) == 0
    sent = send_digest(FIRST)
    again = send_digest(FIRST + timedelta(hours=1))

    recipients = sorted(m.to[0] for m in mails)
    assert (sent, again) == (len(recipients), 0)
    assert SupplierDigest.objects.get().recipients == sent
    assert send_digest(FIRST.replace(month=4)) == sent  # next month: again
    assert recipients == sorted(
        ["owner@alpha.example", people.owner.email, people.admin.email, people.buyer.email]
    )
    body = mails[0].body
    assert "ACME · Acme Mills" in body
    assert "Last 90 days:  1 receipt, OTIF 0%, on time 0%, fill rate 100%, lead time 4.0" in body
    assert mails[0].subject == "[Alpha] Supplier scorecards, March 2031"


def test_no_digest_without_anything_to_report(people, mails):
    SupplierFactory()
    assert send_digest(FIRST) == 0 and mails == []


def test_the_beat_entry_fans_the_task_out_on_the_default_queue():
    entry = app.conf.beat_schedule["purchasing-supplier-digest"]
    assert entry["task"] == "workers.fan_out"
    assert entry["args"] == ("purchasing.supplier_digest",)
    assert entry["kwargs"] == {"queue": "default"}
    app.loader.import_default_modules()
    assert "purchasing.supplier_digest" in app.tasks
