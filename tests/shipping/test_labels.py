"""Labels: bought at once below the approval threshold, behind approval above it, exactly
once whatever crashes, voidable, printable."""

from __future__ import annotations

import io
from decimal import Decimal
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pypdf import PdfReader

from approvals import services as approvals
from approvals.models import ApprovalRequest, RequestState
from shipping import services
from shipping.models import Label, LabelStatus, RateQuote, ShipmentState
from sync.state import DatabaseState
from tests.shipping.factories import make_fo


def rated(weight_kg="2", **kw):
    return services.rate_shipment(services.create_shipment(make_fo(weight_kg=weight_kg, **kw)))


def choose_price_above(shipment, amount: Decimal, *, actor):
    quote = shipment.quotes.filter(amount__gt=amount).order_by("amount").first()
    assert quote is not None, "the sandbox quotes something above the threshold"
    return services.choose_quote(shipment, quote, actor=actor)


def carrier_labels(shipment) -> dict:
    conn = shipment.labels.first().connection
    return DatabaseState(conn.pk).get("labels", {})


def test_a_label_under_the_threshold_is_bought_at_once_and_printable(alpha, ops, oncommit):
    # given: a 2 kg parcel, rated (every sandbox rate is far under 75)
    shipment = rated()
    assert shipment.chosen_quote.amount < Decimal("75")
    # when
    result = oncommit(services.request_label, shipment, actor=ops)
    # then: no approval asked, one label bought, the PDF stored through default storage
    assert result.approval is None
    label = Label.objects.get(shipment=shipment)
    assert label.status == LabelStatus.PURCHASED
    assert label.tracking_number.startswith("SBX1Z")
    assert not ApprovalRequest.objects.filter(subject_type="shipping_label").exists()
    shipment.refresh_from_db()
    assert shipment.state == ShipmentState.LABEL_PURCHASED
    assert shipment.tracking_number == label.tracking_number
    text = PdfReader(io.BytesIO(label.document.read())).pages[0].extract_text()
    assert label.tracking_number in text
    assert shipment.dest_name in text
    assert len(carrier_labels(shipment)) == 1


def test_zpl_labels_are_stored_as_zpl(alpha, ops, oncommit):
    shipment = rated()
    oncommit(services.request_label, shipment, actor=ops, label_format="zpl")
    label = Label.objects.get(shipment=shipment)
    body = label.document.read().decode()
    assert body.startswith("^XA") and label.tracking_number in body
    assert label.document.name.endswith(".zpl")


def test_a_label_over_the_threshold_waits_for_approval_then_is_bought_once(
    alpha, ops, owner, oncommit
):
    # given: a shipment whose chosen rate costs over 75
    shipment = choose_price_above(rated(weight_kg="30"), Decimal("75"), actor=ops)
    # when: ops asks for the label
    result = oncommit(services.request_label, shipment, actor=ops)
    # then: nothing is bought, an approval request with the price waits
    assert result.state == "pending"
    request = result.approval
    assert request.amount == shipment.chosen_quote.amount
    assert not Label.objects.filter(shipment=shipment).exists()
    shipment.refresh_from_db()
    assert shipment.state == ShipmentState.AWAITING_APPROVAL
    # asking again returns the same waiting request
    assert services.request_label(shipment, actor=ops).approval.pk == request.pk
    # when: the owner approves
    oncommit(approvals.approve, request.pk, actor=owner)
    # then: exactly one label, bought with the approval's key
    label = Label.objects.get(shipment=shipment)
    assert label.status == LabelStatus.PURCHASED
    assert label.idempotency_key == f"approval_request:{request.pk}"
    assert label.approval_request_id == request.pk
    assert len(carrier_labels(shipment)) == 1


def test_the_approval_inbox_shows_the_competing_rates(alpha, ops):
    shipment = choose_price_above(rated(weight_kg="30"), Decimal("75"), actor=ops)
    request = services.request_label(shipment, actor=ops).approval
    from shipping.approval_subject import context_for

    context = context_for(request)
    table = context.tables[0]
    assert table.caption == "Competing rates"
    assert len(table.rows) == 4
    assert (
        "Chosen rate",
        f"{shipment.chosen_quote.label}: {shipment.chosen_quote.amount} USD",
    ) in (context.facts)


def test_a_rejected_label_returns_the_shipment_to_rated(alpha, ops, owner, oncommit):
    shipment = choose_price_above(rated(weight_kg="30"), Decimal("75"), actor=ops)
    request = services.request_label(shipment, actor=ops).approval
    oncommit(approvals.reject, request.pk, actor=owner, comment="Use ground")
    shipment.refresh_from_db()
    assert shipment.state == ShipmentState.RATED
    assert not Label.objects.filter(shipment=shipment).exists()


def test_a_crash_between_the_carriers_answer_and_our_commit_is_recovered_with_one_label(
    alpha, ops, oncommit
):
    # given: the purchase dies after the carrier sold the label, before we stored it
    shipment = rated()
    with mock.patch.object(services, "commit_label", side_effect=RuntimeError("worker died")):
        oncommit(services.request_label, shipment, actor=ops)
    label = Label.objects.get(shipment=shipment)
    assert label.status == LabelStatus.PURCHASING
    assert len(carrier_labels(shipment)) == 1  # the carrier did sell it
    # when: recovery runs later
    later = label.created_at + services.RECOVER_AFTER
    counts = services.recover_purchases(now=later)
    # then: the same label, once at the carrier and once here
    assert counts["recovered"] == 1
    label.refresh_from_db()
    assert label.status == LabelStatus.PURCHASED
    sold = carrier_labels(shipment)
    assert len(sold) == 1
    assert sold[label.idempotency_key]["tracking_number"] == label.tracking_number
    assert Label.objects.filter(shipment=shipment).count() == 1


def test_a_purchase_without_cover_is_refused_even_if_a_row_exists(alpha, ops):
    # given: a purchasing row for an expensive label that nobody approved (a bug or a
    # hand-made row)
    shipment = choose_price_above(rated(weight_kg="30"), Decimal("75"), actor=ops)
    label = Label.objects.create(
        shipment=shipment,
        quote=shipment.chosen_quote,
        connection=shipment.chosen_quote.connection,
        idempotency_key="rogue",
        cost=shipment.chosen_quote.amount,
        currency="USD",
    )
    # when / then
    with pytest.raises(services.PurchaseNotCovered):
        services.purchase_label(label.pk)
    label.refresh_from_db()
    assert label.status == LabelStatus.PURCHASING
    assert DatabaseState(label.connection_id).get("labels", {}) == {}


def test_void_refunds_the_label_and_frees_the_shipment(alpha, ops, oncommit):
    shipment = rated()
    oncommit(services.request_label, shipment, actor=ops)
    label = Label.objects.get(shipment=shipment)
    services.void_label(label, actor=ops, reason="wrong box")
    label.refresh_from_db()
    shipment.refresh_from_db()
    assert label.status == LabelStatus.VOIDED
    assert shipment.state == ShipmentState.VOIDED
    assert carrier_labels(shipment)[label.idempotency_key]["voided"] is True
    # a voided shipment can be rated and labelled again
    shipment = services.rate_shipment(shipment)
    oncommit(services.request_label, shipment, actor=ops)
    assert shipment.labels.filter(status=LabelStatus.PURCHASED).count() == 1


def test_viewers_cannot_buy_labels(alpha, viewer):
    shipment = rated()
    with pytest.raises(services.PermissionDenied):
        services.request_label(shipment, actor=viewer)
    assert not Label.objects.exists()


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    threshold=st.sampled_from(["5", "20", "40", "75"]),
    pick=st.integers(min_value=0, max_value=3),
    approve=st.booleans(),
)
def test_no_label_above_the_threshold_is_bought_without_an_approved_request(
    alpha, ops, owner, django_capture_on_commit_callbacks, threshold, pick, approve
):
    from approvals.models import ApprovalPolicy

    policy = ApprovalPolicy.objects.get(subject_type="shipping_label")
    approvals.update_policy(policy, actor=owner, amount_above=Decimal(threshold))
    shipment = rated(weight_kg="12")
    quote = list(RateQuote.objects.filter(shipment=shipment).order_by("amount"))[pick]
    services.choose_quote(shipment, quote, actor=ops)
    with django_capture_on_commit_callbacks(execute=True):
        result = services.request_label(shipment, actor=ops)
        if result.approval is not None and result.state == "pending" and approve:
            approvals.approve(result.approval.pk, actor=owner)
    # (each example is its own shipment: earlier examples ran under other thresholds)
    bought = list(Label.objects.filter(shipment=shipment, status=LabelStatus.PURCHASED))
    if quote.amount > Decimal(threshold):
        assert len(bought) == int(approve)
        for label in bought:
            request = ApprovalRequest.objects.get(pk=label.approval_request_id)
            assert request.state == RequestState.APPROVED
            assert request.amount >= label.cost
    else:
        assert len(bought) == 1 and bought[0].approval_request_id is None
