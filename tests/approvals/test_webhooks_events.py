"""Approval decisions on purchase orders reach partners: `approval.decided` (and the PO's
`purchase_order.status_changed` that follows it) arrive, signed, at a subscribed endpoint."""

from __future__ import annotations

from decimal import Decimal

from approvals import services as approvals
from purchasing import services as purchasing
from purchasing.models import POState
from tests.purchasing.factories import costly_po
from tests.webhooks.receiver import receiver
from tests.webhooks.support import deliver_pending, endpoint_for, received_events

# Above the tail policy's auto-approval ceiling (500.00): a person decides.
AMOUNT = Decimal("600.00")


def test_approving_a_po_reaches_an_endpoint_subscribed_to_approval_decided(alpha, people):
    with receiver() as partner:
        # given: an endpoint that wants approval decisions, and a PO waiting for one
        endpoint_for(partner, "approval.decided")
        po = purchasing.submit(costly_po(AMOUNT, actor=people.buyer), actor=people.buyer)
        request = purchasing.current_request(po)

        # when: the owner approves it, and the workers deliver
        approvals.approve(request, actor=people.owner, comment="Fine")
        deliver_pending()

    # then: one signed delivery naming the request, its subject and who decided
    [event] = received_events(partner)
    assert (event["type"], event["object_id"]) == ("approval.decided", str(request.pk))
    assert event["data"] == {
        "id": request.pk,
        "state": "approved",
        "subject_type": "purchase_order",
        "subject_id": str(po.pk),
        "decided_by": people.owner.email,
        "resolution": "",
    }
    po.refresh_from_db()
    assert po.state == POState.SENT


def test_rejecting_a_po_reaches_the_endpoint_with_the_po_back_in_draft(alpha, people):
    with receiver() as partner:
        # given: an endpoint for decisions and PO statuses
        endpoint_for(partner, "approval.decided", "purchase_order.status_changed")
        po = purchasing.submit(costly_po(AMOUNT, actor=people.buyer), actor=people.buyer)
        request = purchasing.current_request(po)

        # when
        approvals.reject(request, actor=people.owner, comment="Too early in the season")
        deliver_pending()

    # then: the PO's submission, the decision, and the PO returning to draft, in order
    events = received_events(partner)
    assert [e["type"] for e in events] == [
        "purchase_order.status_changed",
        "approval.decided",
        "purchase_order.status_changed",
    ]
    submitted, decided, returned = (e["data"] for e in events)
    assert (submitted["previous_status"], submitted["status"]) == ("draft", "pending_approval")
    assert (decided["state"], decided["subject_id"], decided["resolution"]) == (
        "rejected",
        str(po.pk),
        "Too early in the season",
    )
    assert (returned["previous_status"], returned["status"]) == ("pending_approval", "draft")
    assert returned["number"] == po.number
