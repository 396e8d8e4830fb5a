"""Two buyers click "Create draft PO" on the same recommendation at the same instant, each
on their own database connection: one PO is drafted, the other click finds it done.

The threads need committed rows, so `floor` commits the plan and the two buyers before the
test's rolled-back transaction starts (module scope, as the browser tests do) and removes
everything afterwards: alpha's business tables emptied as committed_alpha does, plus the
approval rows, people and activity the module committed.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db.models import Max
from django_tenants.utils import schema_context

from accounts.models import User
from accounts.roles import Role
from approvals.models import ApprovalDecision, ApprovalRequest, WebhookDelivery
from audit.models import ActivityEntry
from purchasing.models import PurchaseOrder
from replenishment import services
from replenishment.models import Recommendation
from tests.approvals.test_concurrency import run_together
from tests.conftest import empty_business_tables
from tests.factories import UserFactory
from tests.replenishment.helpers import forecast, history, restore_segment_policies, stocked

pytestmark = pytest.mark.django_db

SCHEMA = "brand_alpha"


@pytest.fixture(scope="module")
def floor(django_db_setup, django_db_blocker) -> Iterator[tuple[int, list[User]]]:
    with django_db_blocker.unblock(), schema_context(SCHEMA):
        last_entry = ActivityEntry.objects.aggregate(last=Max("id"))["last"] or 0
        users = set(User.objects.values_list("pk", flat=True))
        today = services.brand_today()
        item = stocked(on_hand=150, cost="0.10")
        history(item.sku, today, [10] * 56)
        forecast(item.sku, today, mean=10, spread=2)
        services.plan(today=today)
        rec = Recommendation.objects.get(sku=item.sku, day=today)
        assert rec.suggested_quantity > 0
        buyers = [UserFactory(role=Role.BUYER), UserFactory(role=Role.BUYER)]
    try:
        yield rec.pk, buyers
    finally:
        with django_db_blocker.unblock(), schema_context(SCHEMA):
            WebhookDelivery.objects.all().delete()
            ApprovalDecision.objects.all().delete()
            ApprovalRequest.objects.all().delete()
            empty_business_tables(SCHEMA)
            restore_segment_policies()
            User.objects.exclude(pk__in=users).delete()
            ActivityEntry.objects.filter(id__gt=last_entry).delete()


def test_two_clicks_at_once_draft_one_po(floor):
    rec_id, buyers = floor

    results = run_together(lambda who: services.create_draft_pos([rec_id], actor=who), buyers)

    assert sorted(len(r) for r in results) == [0, 1], results
    with schema_context(SCHEMA):
        po = PurchaseOrder.objects.get()
        rec = Recommendation.objects.get(pk=rec_id)
        assert (rec.status, rec.purchase_order_id) == ("acted", po.pk)
        assert po.lines.get().quantity == rec.suggested_quantity
