"""Property: replenishment never gets a purchase order past its ceiling without a person.

For random demand, stock, costs and segments: plan, draft POs for every recommendation,
then let an Owner approve some of what waits. Every PO that reached the supplier (sent)
worth more than its segment's auto-approve ceiling must carry an approved request decided
by a person; everything above the ceiling that nobody approved is still waiting.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from approvals import services as approvals
from approvals.models import ApprovalPolicy, ApprovalRequest
from forecasting.services import segments_of
from purchasing.models import POState, PurchaseOrder
from replenishment import services
from replenishment.models import Recommendation
from tests.factories import WarehouseFactory
from tests.purchasing.factories import SupplierFactory
from tests.replenishment.helpers import forecast, history, segment, stocked

pytestmark = pytest.mark.usefixtures("alpha")

SEGMENTS = ["hero", "supporting", "tail", "discontinue"]

sku_specs = st.lists(
    st.tuples(
        st.integers(1, 120),  # daily demand
        st.sampled_from(SEGMENTS),
        st.sampled_from(["0.50", "3.00", "12.50", "40.00"]),  # unit cost
        st.integers(0, 600),  # on hand
        st.integers(0, 1),  # supplier index
    ),
    min_size=1,
    max_size=4,
)


def ceiling_of(po: PurchaseOrder) -> Decimal:
    """The strictest auto-approve ceiling among the PO's SKUs' segments (0: never)."""
    policies = {
        p.sku_tags[0]: p.auto_approve_up_to
        for p in ApprovalPolicy.objects.filter(subject_type="purchase_order", is_enabled=True)
        if len(p.sku_tags) == 1
    }
    segs = segments_of(po.lines.values_list("sku_id", flat=True))
    limits = [policies.get(f"segment:{s}") for s in segs.values()]
    return min((limit or Decimal("0")) for limit in limits)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(specs=sku_specs, approve_mask=st.lists(st.booleans(), min_size=4, max_size=4))
def test_no_po_above_its_ceiling_is_sent_without_a_person(specs, approve_mask, today, people):
    with transaction.atomic():
        warehouse = WarehouseFactory()
        suppliers = [SupplierFactory(quoted_lead_time_days=10) for _ in range(2)]
        for mean, seg, cost, on_hand, which in specs:
            item = stocked(
                on_hand=on_hand, warehouse=warehouse, supplier=suppliers[which], cost=cost
            )
            history(item.sku, today, [mean] * 28)
            forecast(item.sku, today, mean=mean, spread=max(1.0, mean / 4))
            segment(item.sku, seg)

        services.plan(today=today)
        services.create_draft_pos(Recommendation.objects.filter(day=today), actor=people.buyer)
        waiting = ApprovalRequest.objects.filter(subject_type="purchase_order").pending()
        for request, approve in zip(list(waiting), approve_mask, strict=False):
            if approve:
                approvals.approve(request, actor=people.owner)

        for po in PurchaseOrder.objects.all():
            total = sum(line.quantity * line.unit_cost for line in po.lines.all())
            if total <= ceiling_of(po):
                continue
            decided = ApprovalRequest.objects.for_subject("purchase_order", po.pk).filter(
                state="approved", decided_by__isnull=False, auto_approved=False
            )
            if po.state == POState.SENT:
                assert decided.exists(), (po.number, total)
            else:
                assert po.state == POState.PENDING_APPROVAL, (po.number, po.state)
        transaction.set_rollback(True)
