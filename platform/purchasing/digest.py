"""The monthly supplier digest: each supplier's scorecard (trailing 90 and 365 days) and
overdue orders, emailed to the brand's owners, admins and buyers.

Beat ticks hourly through workers.fan_out; each brand sends on the first day of its
month from DIGEST_HOUR brand time, once: the month's SupplierDigest row is the claim, so a
second tick, a second scheduler or a redelivered task does not send again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from django.core.mail import EmailMessage, get_connection
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from accounts.roles import Role
from approvals.services import current_brand
from purchasing import stats
from purchasing.models import POState, PurchaseOrder, Supplier, SupplierDigest
from tenants.services import brand_url

DIGEST_HOUR = 8
RECIPIENT_ROLES = (Role.OWNER, Role.ADMIN, Role.BUYER)


@dataclass(frozen=True)
class SupplierLine:
    supplier: Supplier
    last_90: stats.LeadTimeStats
    last_365: stats.LeadTimeStats
    overdue: int


def digest_lines(today: date) -> list[SupplierLine]:
    lines = []
    cards_90 = stats.scorecards(window_days=90, today=today)
    cards_365 = stats.scorecards(window_days=365, today=today)
    for supplier in Supplier.objects.filter(is_active=True).order_by("name"):
        overdue = PurchaseOrder.objects.filter(
            supplier=supplier,
            state__in=[POState.SENT, POState.PARTIALLY_RECEIVED],
            expected_on__lt=today,
        ).count()
        last_365 = cards_365.get(supplier.pk)
        if last_365 is None and not overdue:
            continue
        empty = stats.summarize(supplier.pk, 0, [])
        lines.append(
            SupplierLine(supplier, cards_90.get(supplier.pk, empty), last_365 or empty, overdue)
        )
    return lines


def send_digest(now: datetime | None = None, *, force: bool = False) -> int:
    """Email the digest if it is due (or `force`); returns how many emails went out.

    The month's SupplierDigest row is the claim: inserted in the sending transaction, so a
    concurrent twin waits on its unique index and then finds it, and a failed send rolls
    the claim back for the next tick to retry.
    """
    brand = current_brand()
    local = (now or timezone.now()).astimezone(ZoneInfo(brand.timezone))
    if not force and (local.day != 1 or local.hour < DIGEST_HOUR):
        return 0
    month = local.date().replace(day=1)
    with transaction.atomic():
        if not force:
            try:
                with transaction.atomic():
                    claim = SupplierDigest.objects.create(month=month)
            except IntegrityError:
                return 0
        lines = digest_lines(local.date())
        people = list(User.objects.filter(is_active=True, role__in=RECIPIENT_ROLES).order_by("pk"))
        if not lines or not people:
            return 0
        body = render_to_string(
            "purchasing/email/digest.txt",
            {
                "brand": brand,
                "lines": lines,
                "month": local.date(),
                "url": brand_url(brand, reverse("purchasing:scorecards")),
            },
        )
        messages = [
            EmailMessage(
                subject=f"[{brand.name}] Supplier scorecards, {local:%B %Y}",
                body=body,
                to=[person.email],
            )
            for person in people
        ]
        with get_connection() as mail:
            mail.send_messages(messages)
        if not force:
            claim.recipients = len(messages)
            claim.save(update_fields=["recipients"])
    return len(messages)
