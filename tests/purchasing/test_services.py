"""Purchasing services: drafting, approval flow, amendments, receiving, cancelling."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from accounts.services import AccessError
from approvals import services as approvals
from approvals.models import ApprovalPolicy, ApprovalRequest, RequestState
from audit.models import ActivityEntry
from inventory.models import StockBalance, StockMovement
from purchasing import services
from purchasing.models import POState, PurchaseOrder, PurchaseOrderLine, Receipt, SupplierSKU
from tests.factories import SKUFactory, WarehouseFactory
from tests.purchasing.factories import SupplierFactory, SupplierSKUFactory, costly_po, make_po
from tests.purchasing.support import deliver_emails

pytestmark = pytest.mark.usefixtures("alpha")

# SKUs never segmented count as "tail"; forecasting's default policy for tail SKUs
# auto-approves POs up to 500 (the brand-wide PO policy's 1,000 comes after it).
CEILING = Decimal("500.00")


def actions(po: PurchaseOrder) -> list[str]:
    return list(
        ActivityEntry.objects.filter(object_type="purchasing.purchaseorder", object_id=str(po.pk))
        .order_by("id")
        .values_list("action", flat=True)
    )


def sellable(sku, warehouse) -> int:
    row = StockBalance.objects.filter(sku=sku, warehouse=warehouse, status="sellable").first()
    return row.quantity if row else 0


# --- Drafting ----------------------------------------------------------------------------


def test_a_draft_takes_costs_from_the_supplier_sku_and_numbers_itself(people):
    supplier = SupplierFactory(quoted_lead_time_days=20)
    tee, cap = SKUFactory(), SKUFactory()
    SupplierSKUFactory(supplier=supplier, sku=tee, unit_cost=Decimal("4.5000"), lead_time_days=30)
    SupplierSKUFactory(supplier=supplier, sku=cap, unit_cost=Decimal("2.0000"))

    first = services.create_draft(
        supplier=supplier,
        warehouse=WarehouseFactory(),
        lines=[services.DraftLine(tee, 10), services.DraftLine(cap, 5, Decimal("1.25"))],
        actor=people.buyer,
    )
    second = make_po((SKUFactory(), 1), actor=people.buyer)

    assert (first.number, second.number) == ("PO-000001", "PO-000002")
    assert first.state == POState.DRAFT and first.currency == "USD" and first.version == 1
    assert sorted(first.lines.values_list("quantity", "unit_cost")) == [
        (5, Decimal("1.2500")),
        (10, Decimal("4.5000")),
    ]
    assert services.po_total(first) == Decimal("51.25")
    # The longest lead time of its lines (the SKU override beats the quoted 20 days).
    assert first.expected_on == services.brand_today() + timedelta(days=30)
    assert first.created_by == people.buyer
    assert actions(first) == ["purchase_order.created"]


def test_moq_and_case_pack_misses_are_warnings_not_errors(people):
    supplier = SupplierFactory()
    sku = SKUFactory(code="TEE-1")
    SupplierSKUFactory(supplier=supplier, sku=sku, moq=100, case_pack=12)

    po = make_po((sku, 40), supplier=supplier, actor=people.buyer)

    assert po.state == POState.DRAFT
    assert services.warnings_for(po) == [
        "TEE-1: 40 is below the supplier's minimum order of 100.",
        "TEE-1: 40 is not a whole number of cases of 12.",
    ]


@pytest.mark.parametrize(
    "case, code",
    [
        ("inactive_supplier", "supplier_inactive"),
        ("bundle", "bundle"),
        ("zero", "invalid_quantity"),
        ("no_cost", "unit_cost_required"),
        ("duplicate", "duplicate_sku"),
        ("no_lines", None),
    ],
)
def test_invalid_drafts_are_refused_and_nothing_is_written(people, case, code):
    supplier = SupplierFactory(is_active=case != "inactive_supplier")
    sku = SKUFactory(is_bundle=case == "bundle")
    if case != "no_cost":
        SupplierSKUFactory(supplier=supplier, sku=sku)
    lines = {
        "zero": [services.DraftLine(sku, 0)],
        "duplicate": [services.DraftLine(sku, 1), services.DraftLine(sku, 2)],
        "no_lines": [],
    }.get(case, [services.DraftLine(sku, 3)])

    with pytest.raises(services.PurchasingError) as caught:
        services.create_draft(
            supplier=supplier, warehouse=WarehouseFactory(), lines=lines, actor=people.buyer
        )

    if code:
        assert caught.value.code == code
    assert PurchaseOrder.objects.count() == 0
    assert PurchaseOrderLine.objects.count() == 0


def test_viewers_and_warehouse_staff_cannot_draft(people):
    for person in (people.viewer, people.warehouse):
        with pytest.raises(AccessError):
            costly_po(Decimal("10"), actor=person)
    assert PurchaseOrder.objects.count() == 0


# --- Submitting and approval ---------------------------------------------------------------


def test_a_small_po_is_auto_approved_and_sent_with_its_pdf(people, mails):
    po = costly_po(CEILING - Decimal("0.01"), actor=people.buyer)

    po = services.submit(po, actor=people.buyer)
    assert deliver_emails() == ["done"]

    assert po.state == POState.SENT and po.sent_at and po.approved_at
    request = services.current_request(po)
    assert request.auto_approved and po.continuation_key == f"approval_request:{request.pk}"
    assert len(mails) == 1
    assert mails[0].to == [po.supplier.email]
    assert mails[0].attachments[0][0] == f"{po.number}.pdf"
    assert mails[0].attachments[0][1][:5] == b"%PDF-"
    assert actions(po) == [
        "purchase_order.created",
        "purchase_order.pending_approval",
        "purchase_order.approved",
        "purchase_order.sent",
        "purchase_order.emailed",
    ]


def test_a_large_po_waits_then_is_sent_once_approved(people, mails):
    po = costly_po(Decimal("5000"), actor=people.buyer)

    po = services.submit(po, actor=people.buyer)
    assert po.state == POState.PENDING_APPROVAL and po.sent_at is None
    request = services.current_request(po)
    assert request.state == RequestState.PENDING and request.amount == Decimal("5000.00")
    assert request.facts["supplier"] == po.supplier.code
    assert request.title == f"{po.number} · {po.supplier.name} · 1 line"

    approvals.approve(request, actor=people.owner)
    assert deliver_emails() == ["done"]

    po.refresh_from_db()
    assert po.state == POState.SENT and po.times_sent == 1
    assert len(mails) == 1


def test_rejection_returns_the_po_to_draft_with_the_reason(people):
    po = services.submit(costly_po(Decimal("5000"), actor=people.buyer), actor=people.buyer)

    approvals.reject(services.current_request(po), actor=people.owner, comment="Too many tees")

    po.refresh_from_db()
    assert po.state == POState.DRAFT and po.rejection_reason == "Too many tees"
    # Fixed and resubmitted: a new request.
    po = services.submit(po, actor=people.buyer)
    assert po.state == POState.PENDING_APPROVAL
    assert ApprovalRequest.objects.for_subject("purchase_order", po.pk).count() == 2


def test_a_po_in_another_currency_always_needs_approval(people):
    po = costly_po(Decimal("1"), actor=people.buyer, supplier=SupplierFactory(currency="EUR"))

    po = services.submit(po, actor=people.buyer)

    assert po.state == POState.PENDING_APPROVAL
    assert services.current_request(po).amount is None


# --- Editing ---------------------------------------------------------------------------------


def test_editing_a_sent_po_upward_reopens_approval_and_resends_after(people, mails):
    sku = SKUFactory()
    po = make_po((sku, 50), actor=people.buyer)  # 500.00: auto-approved
    po = services.submit(po, actor=people.buyer)
    assert deliver_emails() == ["done"]
    assert po.state == POState.SENT
    first, placed = services.current_request(po), po.sent_at

    po = services.update_lines(po, lines=[services.DraftLine(sku, 300)], actor=people.buyer)

    assert po.state == POState.PENDING_APPROVAL and po.version == 2
    first.refresh_from_db()
    assert first.state == RequestState.CANCELLED
    amendment = services.current_request(po)
    assert amendment.state == RequestState.PENDING and amendment.subject_version == 2
    assert services.open_quantities([sku.pk]) == {}  # not on order while pending

    approvals.approve(amendment, actor=people.owner)
    assert deliver_emails() == ["done"]

    po.refresh_from_db()
    assert po.state == POState.SENT and po.times_sent == 2
    assert po.sent_at == placed  # lead times count from when the order was placed
    assert [m.subject.split("] ")[1] for m in mails] == [
        f"Purchase order {po.number}",
        f"Amended purchase order {po.number}",
    ]


def test_editing_a_pending_po_downward_keeps_its_request(people):
    sku = SKUFactory()
    po = services.submit(make_po((sku, 500), actor=people.buyer), actor=people.buyer)
    request = services.current_request(po)

    po = services.update_lines(po, lines=[services.DraftLine(sku, 400)], actor=people.buyer)

    request.refresh_from_db()
    assert po.state == POState.PENDING_APPROVAL
    assert request.state == RequestState.PENDING and request.subject_version == po.version == 2
    assert ApprovalRequest.objects.for_subject("purchase_order", po.pk).count() == 1


def test_nothing_changes_once_goods_arrived(people):
    sku = SKUFactory()
    po = services.submit(make_po((sku, 10), actor=people.buyer), actor=people.buyer)
    line = po.lines.get()
    services.receive(
        po, quantities={line.pk: 4}, reasons={line.pk: "backordered"}, actor=people.warehouse
    )

    with pytest.raises(services.PurchasingConflict):
        services.update_lines(po, lines=[services.DraftLine(sku, 20)], actor=people.buyer)
    with pytest.raises(services.PurchasingConflict):
        services.cancel(po, actor=people.buyer, reason="no longer needed")

    po.refresh_from_db()
    assert po.state == POState.PARTIALLY_RECEIVED and po.version == 1


# --- Receiving -------------------------------------------------------------------------------


def test_receiving_in_parts_posts_stock_once_and_completes(people):
    tee, cap = SKUFactory(), SKUFactory()
    po = services.submit(make_po((tee, 10), (cap, 5), actor=people.buyer), actor=people.buyer)
    lines = {line.sku_id: line for line in po.lines.all()}

    first = services.receive(
        po,
        quantities={lines[tee.pk].pk: 6},
        reasons={lines[tee.pk].pk: "backordered"},
        actor=people.warehouse,
        operation_key="dock-1",
    )
    again = services.receive(
        po,
        quantities={lines[tee.pk].pk: 6},
        reasons={lines[tee.pk].pk: "backordered"},
        actor=people.warehouse,
        operation_key="dock-1",
    )

    assert again.pk == first.pk
    po.refresh_from_db()
    assert po.state == POState.PARTIALLY_RECEIVED
    assert sellable(tee, po.warehouse) == 6
    assert list(StockMovement.objects.filter(sku=tee).values_list("quantity", "reference_id")) == [
        (6, str(first.pk))
    ]

    services.receive(po, quantities={lines[tee.pk].pk: 4, lines[cap.pk].pk: 5}, actor=people.buyer)

    po.refresh_from_db()
    assert po.state == POState.RECEIVED and po.closed_at
    assert (sellable(tee, po.warehouse), sellable(cap, po.warehouse)) == (10, 5)
    assert Receipt.objects.filter(purchase_order=po).count() == 2


def test_over_and_under_receipts_need_a_reason(people):
    sku = SKUFactory()
    po = services.submit(make_po((sku, 10), actor=people.buyer), actor=people.buyer)
    line = po.lines.get()

    for quantity in (4, 12):
        with pytest.raises(services.PurchasingError) as caught:
            services.receive(po, quantities={line.pk: quantity}, actor=people.warehouse)
        assert caught.value.error_dict[f"line_{line.pk}"][0].code == "reason_required"
    assert sellable(sku, po.warehouse) == 0 and not Receipt.objects.exists()

    services.receive(
        po, quantities={line.pk: 12}, reasons={line.pk: "over_shipped"}, actor=people.warehouse
    )
    line.refresh_from_db()
    assert line.received_quantity == 12 and sellable(sku, po.warehouse) == 12


def test_short_shipped_closes_the_line_and_damaged_goes_to_damaged_stock(people):
    tee, cap = SKUFactory(), SKUFactory()
    po = services.submit(make_po((tee, 10), (cap, 10), actor=people.buyer), actor=people.buyer)
    lines = {line.sku_id: line for line in po.lines.all()}

    services.receive(
        po,
        quantities={lines[tee.pk].pk: 8, lines[cap.pk].pk: 3},
        reasons={lines[tee.pk].pk: "short_shipped", lines[cap.pk].pk: "damaged"},
        actor=people.warehouse,
    )

    po.refresh_from_db()
    assert po.state == POState.PARTIALLY_RECEIVED  # 7 caps still to come
    damaged = StockBalance.objects.get(sku=cap, warehouse=po.warehouse, status="damaged")
    assert damaged.quantity == 3 and sellable(tee, po.warehouse) == 8
    assert services.open_quantities([tee.pk, cap.pk]) == {
        (cap.pk, po.warehouse_id): [(po.expected_on, 7)]
    }

    po = services.close(po, actor=people.warehouse, reason="supplier out of stock")
    assert po.state == POState.CLOSED
    assert services.open_quantities([tee.pk, cap.pk]) == {}


def test_drafts_cannot_be_received(people):
    po = costly_po(Decimal("10"), actor=people.buyer)
    with pytest.raises(services.PurchasingConflict):
        services.receive(po, quantities={po.lines.get().pk: 1}, actor=people.warehouse)


def test_viewers_cannot_receive(people):
    po = services.submit(costly_po(Decimal("10"), actor=people.buyer), actor=people.buyer)
    with pytest.raises(AccessError):
        services.receive(po, quantities={po.lines.get().pk: 1}, actor=people.viewer)


# --- Cancel, reschedule ------------------------------------------------------------------


def test_cancelling_a_pending_po_withdraws_its_request(people):
    po = services.submit(costly_po(Decimal("5000"), actor=people.buyer), actor=people.buyer)

    po = services.cancel(po, actor=people.buyer, reason="Duplicate")

    assert po.state == POState.CANCELLED and po.cancel_reason == "Duplicate"
    assert services.current_request(po).state == RequestState.CANCELLED


def test_reschedule_moves_the_expected_date_and_logs_why(people):
    po = services.submit(costly_po(Decimal("10"), actor=people.buyer), actor=people.buyer)
    new = po.expected_on + timedelta(days=7)

    po = services.reschedule(po, expected_on=new, actor=people.buyer, reason="Port delay")

    assert po.expected_on == new
    entry = ActivityEntry.objects.get(action="purchase_order.rescheduled")
    assert entry.changes["reason"] == "Port delay"


# --- Reads and constraints -----------------------------------------------------------------


def test_open_quantities_count_only_what_is_on_order(people):
    sku = SKUFactory()
    warehouse = WarehouseFactory()
    services.submit(make_po((sku, 10), warehouse=warehouse, actor=people.buyer), actor=people.buyer)
    make_po((sku, 99), warehouse=warehouse, actor=people.buyer)  # a draft
    services.submit(
        make_po((sku, 500), warehouse=warehouse, actor=people.buyer), actor=people.buyer
    )  # 5,000: pending

    assert {k: [q for _, q in v] for k, v in services.open_quantities().items()} == {
        (sku.pk, warehouse.pk): [10]
    }


def test_preferred_supplier_skus(people):
    a, b, c = SKUFactory(), SKUFactory(), SKUFactory()
    one, two = SupplierFactory(), SupplierFactory()
    SupplierSKUFactory(supplier=one, sku=a)
    preferred = SupplierSKUFactory(supplier=two, sku=a, is_preferred=True)
    only = SupplierSKUFactory(supplier=one, sku=b)
    SupplierSKUFactory(supplier=one, sku=c)
    SupplierSKUFactory(supplier=two, sku=c)

    found = services.preferred_supplier_skus([a.pk, b.pk, c.pk])

    assert found == {a.pk: preferred, b.pk: only}


def test_marking_a_supplier_preferred_unprefers_the_other(people):
    sku = SKUFactory()
    first = SupplierSKUFactory(sku=sku, is_preferred=True)
    other = SupplierFactory()

    row = services.save_supplier_sku(
        supplier=other, sku=sku, actor=people.buyer, unit_cost="3.10", is_preferred=True
    )

    first.refresh_from_db()
    assert row.is_preferred and not first.is_preferred
    assert row.currency == "USD" and row.unit_cost == Decimal("3.1000")


def test_database_constraints_back_the_rules_up(people):
    sku = SKUFactory()
    SupplierSKUFactory(sku=sku, is_preferred=True)
    with pytest.raises(IntegrityError), transaction.atomic():
        SupplierSKUFactory(sku=sku, is_preferred=True)
    row = SupplierSKUFactory(sku=sku)
    with pytest.raises(IntegrityError), transaction.atomic():
        SupplierSKU.objects.create(supplier=row.supplier, sku=sku, unit_cost=1, currency="USD")
    po = make_po((sku, 1), actor=people.buyer)
    for bad in ({"quantity": 0}, {"received_quantity": -1}):
        with pytest.raises(IntegrityError), transaction.atomic():
            PurchaseOrderLine.objects.filter(purchase_order=po).update(**bad)
    with pytest.raises(IntegrityError), transaction.atomic():
        PurchaseOrderLine.objects.create(purchase_order=po, sku=sku, quantity=1, unit_cost=1)


def test_receive_takes_line_ids_as_text_too(people):
    sku = SKUFactory()
    po = services.submit(make_po((sku, 4), actor=people.buyer), actor=people.buyer)
    line = po.lines.get()

    services.receive(
        po, quantities={str(line.pk): 2}, reasons={line.pk: "backordered"}, actor=people.buyer
    )

    line.refresh_from_db()
    assert line.received_quantity == 2 and line.receipts.count() == 1


def test_an_expired_request_returns_the_po_to_draft(people):
    po = services.submit(costly_po(Decimal("5000"), actor=people.buyer), actor=people.buyer)
    request = services.current_request(po)

    approvals.expire_due(request.expires_at + timedelta(seconds=1))

    po.refresh_from_db()
    assert po.state == POState.DRAFT and po.rejection_reason.startswith("Expired")
    request.refresh_from_db()
    assert request.state == RequestState.EXPIRED


def test_a_covered_downward_edit_of_a_sent_po_is_re_sent_as_an_amendment(people, mails):
    sku = SKUFactory()
    po = services.submit(make_po((sku, 200), actor=people.buyer), actor=people.buyer)
    approvals.approve(services.current_request(po), actor=people.owner)
    assert deliver_emails() == ["done"]
    approved = services.current_request(po)

    po = services.update_lines(po, lines=[services.DraftLine(sku, 150)], actor=people.buyer)
    assert deliver_emails() == ["done"]

    approved.refresh_from_db()
    assert po.state == POState.SENT and po.times_sent == 2 and po.version == 2
    assert approved.state == RequestState.APPROVED and approved.subject_version == 2
    assert services.current_request(po) == approved
    assert [m.subject.split("] ")[1] for m in mails] == [
        f"Purchase order {po.number}",
        f"Amended purchase order {po.number}",
    ]


def test_only_the_requester_or_an_admin_withdraws_a_pending_po(people):
    po = services.submit(costly_po(Decimal("5000"), actor=people.ops), actor=people.ops)

    with pytest.raises(AccessError):
        services.cancel(po, actor=people.buyer, reason="Not needed")
    po.refresh_from_db()
    assert po.state == POState.PENDING_APPROVAL

    po = services.cancel(po, actor=people.admin, reason="Not needed")
    assert po.state == POState.CANCELLED


def test_without_any_po_policy_a_submitted_po_goes_straight_out(people, mails):
    for policy in ApprovalPolicy.objects.filter(subject_type="purchase_order"):
        approvals.update_policy(policy, actor=people.owner, is_enabled=False)
    po = costly_po(Decimal("99999"), actor=people.buyer)

    po = services.submit(po, actor=people.buyer)
    assert deliver_emails() == ["done"]

    assert po.state == POState.SENT and po.continuation_key == ""
    assert services.current_request(po) is None
    assert len(mails) == 1


# --- Partners hear of status changes ---------------------------------------------------------


def test_every_status_change_reaches_an_endpoint_subscribed_to_po_statuses(people):
    from tests.webhooks.receiver import receiver
    from tests.webhooks.support import deliver_pending, endpoint_for, received_events

    with receiver() as partner:
        # given: an endpoint for PO statuses
        endpoint_for(partner, "purchase_order.status_changed")
        sku = SKUFactory()

        # when: a PO under the auto-approval ceiling is submitted (approved and sent at
        # once), arrives in two parts, and a second one is cancelled
        po = services.submit(make_po((sku, 10), actor=people.buyer), actor=people.buyer)
        line = po.lines.get()
        services.receive(
            po, quantities={line.pk: 4}, reasons={line.pk: "backordered"}, actor=people.warehouse
        )
        services.receive(po, quantities={line.pk: 6}, actor=people.warehouse)
        other = make_po((SKUFactory(), 1), actor=people.buyer)
        services.cancel(other, actor=people.buyer, reason="Duplicate")
        deliver_pending()

    # then: one signed delivery per move, in order, each naming where it came from
    events = received_events(partner)
    assert {e["type"] for e in events} == {"purchase_order.status_changed"}
    moves = [
        (e["data"]["number"], e["data"]["previous_status"], e["data"]["status"]) for e in events
    ]
    assert moves == [
        (po.number, "draft", "pending_approval"),
        (po.number, "pending_approval", "approved"),
        (po.number, "approved", "sent"),
        (po.number, "sent", "partially_received"),
        (po.number, "partially_received", "received"),
        (other.number, "draft", "cancelled"),
    ]
    assert events[-1]["data"]["reason"] == "Duplicate"
    assert events[0]["data"]["total"] == "100.00"
    assert {e["object_id"] for e in events[:5]} == {str(po.pk)}
