"""Policies: defaults every brand starts with, versioning, validation, the pages and the
API (read for everyone with approvals.view, write for Owners and Admins)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django_tenants.utils import schema_context

from accounts.roles import Role
from accounts.services import AccessError, create_api_key
from approvals import services as approvals
from approvals.models import ApprovalPolicy, ApprovalPolicyVersion
from audit.models import ActivityEntry
from tests.conftest import brand_client

JSON = "application/json"

# The generic default per subject type (position 100). Apps may seed narrower policies
# tried before them (e.g. purchase orders per SKU segment), which their own tests check.
DEFAULTS = {
    ("connection_credential_change", "Connection credential changes", True),
    ("cycle_count", "Cycle counts correcting over 500", True),
    ("freight_booking", "Freight quotes varying over 50%", True),
    ("purchase_order", "Purchase orders above the brand's ceiling", True),
    ("routing_override", "Routing overrides", False),
    ("shipping_label", "Shipping labels costing over 75", True),
    ("stock_adjustment", "Stock adjustments worth over 500", True),
}


@pytest.mark.parametrize("schema", ["brand_alpha", "brand_beta", "keel_template"])
def test_every_brand_and_the_template_start_with_the_default_policies(db, schema):
    with schema_context(schema):
        generic = ApprovalPolicy.objects.filter(position=100)
        assert {(p.subject_type, p.name, p.is_enabled) for p in generic} == DEFAULTS
        # Every policy starts with its first version snapshot.
        assert ApprovalPolicyVersion.objects.filter(version=1).count() == (
            ApprovalPolicy.objects.count()
        )
        label = ApprovalPolicy.objects.get(subject_type="shipping_label")
        assert (label.amount_above, label.approvers) == (
            Decimal("75.00"),
            {"owner": None, "admin": None, "ops_manager": None},
        )
        freight = ApprovalPolicy.objects.get(subject_type="freight_booking")
        assert freight.variance_above == Decimal("50.00")
    connection.set_schema_to_public()


def test_a_change_makes_a_new_version_and_logs_it(in_alpha, owner_a):
    policy = ApprovalPolicy.objects.get(subject_type="stock_adjustment")

    updated = approvals.update_policy(
        policy, actor=owner_a, amount_above=Decimal("250"), escalate_after=timedelta(hours=2)
    )
    unchanged = approvals.update_policy(updated, actor=owner_a, amount_above=Decimal("250"))

    assert (updated.version, unchanged.version) == (2, 2)
    v1, v2 = ApprovalPolicyVersion.objects.filter(policy=policy).order_by("version")
    assert (v1.rules["amount_above"], v2.rules["amount_above"]) == ("500.00", "250.00")
    assert v2.rules["escalate_after"] == 7200
    assert v2.created_by_label == owner_a.email
    entry = ActivityEntry.objects.get(action="approval_policy.updated")
    assert entry.changes["amount_above"] == ["500.00", "250.00"]
    assert entry.changes["version"] == 2


def test_invalid_policies_are_refused_with_field_errors(in_alpha, owner_a):
    before = ApprovalPolicy.objects.count()
    with pytest.raises(approvals.ApprovalError) as refused:
        approvals.create_policy(
            actor=owner_a,
            subject_type="Stock Adjustment!",
            name=" ",
            approvers={"wizard": None},
            required_approvals=11,
            escalate_after=timedelta(hours=1),
        )

    assert set(refused.value.error_dict) == {
        "subject_type",
        "name",
        "approvers",
        "escalate_to",
        "required_approvals",
    }
    assert ApprovalPolicy.objects.count() == before


def test_only_owners_and_admins_edit_policies(in_alpha, brand_a):
    from tests.conftest import make_user

    ops = make_user(brand_a, role=Role.OPS_MANAGER)
    policy = ApprovalPolicy.objects.get(subject_type="stock_adjustment")

    with pytest.raises(AccessError):
        approvals.update_policy(policy, actor=ops, amount_above=Decimal("1"))
    page = brand_client(brand_a, ops).post(
        f"/approvals/policies/{policy.pk}/", {"name": "x", "subject_type": "stock_adjustment"}
    )

    assert page.status_code == 403
    policy.refresh_from_db()
    assert (policy.version, policy.amount_above) == (1, Decimal("500.00"))


def test_policy_pages_list_and_edit(in_alpha, brand_a, owner_a):
    client = brand_client(brand_a, owner_a)
    policy = ApprovalPolicy.objects.get(subject_type="stock_adjustment")

    listing = client.get("/approvals/policies/")
    form = client.get(f"/approvals/policies/{policy.pk}/")
    saved = client.post(
        f"/approvals/policies/{policy.pk}/",
        {
            "name": "Write-offs over 800",
            "subject_type": "stock_adjustment",
            "position": "100",
            "is_enabled": "on",
            "amount_above": "800",
            "sku_tags": "fragile, glass",
            "approve_owner": "on",
            "approve_ops_manager": "on",
            "limit_ops_manager": "2000",
            "required_approvals": "2",
            "escalate_after_hours": "6",
            "escalate_to": ["owner"],
            "expire_after_days": "3",
        },
    )
    invalid = client.post(
        f"/approvals/policies/{policy.pk}/",
        {
            "name": "No approvers",
            "subject_type": "stock_adjustment",
            "position": "1",
            "required_approvals": "1",
        },
    )

    body = listing.content.decode()
    assert "Stock adjustments worth over 500" in body
    assert "Amount above 500.00 USD" in body
    assert "Owner, Admin, Ops manager up to 5,000.00 USD" in body
    assert "not in use yet" in body  # purchase orders: no app registers them yet
    assert form.status_code == 200
    assert saved.status_code == 302
    policy.refresh_from_db()
    assert (policy.name, policy.version, policy.amount_above) == (
        "Write-offs over 800",
        2,
        Decimal("800.00"),
    )
    assert policy.sku_tags == ["fragile", "glass"]
    assert policy.approvers == {"owner": None, "ops_manager": "2000.00"}
    assert (policy.required_approvals, policy.escalate_after, policy.expire_after) == (
        2,
        timedelta(hours=6),
        timedelta(days=3),
    )
    assert invalid.status_code == 422
    assert "Name at least one role that may approve." in invalid.content.decode()


def test_policies_api_reads_for_everyone_and_writes_for_admins(brand_a, owner_a):
    from tests.conftest import make_user

    viewer = make_user(brand_a, role=Role.VIEWER)
    admin = make_user(brand_a, role=Role.ADMIN)
    with schema_context(brand_a.schema_name):
        key = create_api_key(actor=owner_a, name="BI", scope="read")
        policy_id = ApprovalPolicy.objects.get(subject_type="shipping_label").pk

    listed = brand_client(brand_a, viewer).get("/api/v1/approval-policies/")
    by_key = brand_client(brand_a).get(
        "/api/v1/approval-policies/", HTTP_AUTHORIZATION=f"Api-Key {key.secret}"
    )
    denied = brand_client(brand_a, viewer).patch(
        f"/api/v1/approval-policies/{policy_id}/", {"amount_above": "100"}, JSON
    )
    patched = brand_client(brand_a, admin).patch(
        f"/api/v1/approval-policies/{policy_id}/",
        {"amount_above": "100.00", "approvers": {"owner": None, "ops_manager": "150"}},
        JSON,
    )
    created = brand_client(brand_a, admin).post(
        "/api/v1/approval-policies/",
        {
            "subject_type": "freight_booking",
            "name": "Any LTL booking over 2,000",
            "position": 10,
            "amount_above": "2000",
            "approvers": {"owner": None},
            "required_approvals": 2,
            "expire_after_seconds": 86400,
        },
        JSON,
    )

    assert listed.status_code == 200 and by_key.status_code == 200
    label = next(p for p in listed.json()["results"] if p["id"] == policy_id)
    assert label == {
        "id": policy_id,
        "subject_type": "shipping_label",
        "name": "Shipping labels costing over 75",
        "position": 100,
        "is_enabled": True,
        "version": 1,
        "amount_above": "75.00",
        "variance_above": None,
        "sku_tags": [],
        "suppliers": [],
        "approvers": {"owner": None, "admin": None, "ops_manager": None},
        "required_approvals": 1,
        "allow_self_approval": False,
        "auto_approve_up_to": None,
        "escalate_after_seconds": 14400,
        "escalate_to": ["owner"],
        "expire_after_seconds": 172800,
        "updated_at": label["updated_at"],
    }
    assert (denied.status_code, denied.json()["error"]["code"]) == (403, "permission_denied")
    assert patched.status_code == 200, patched.json()
    assert (patched.json()["version"], patched.json()["approvers"]) == (
        2,
        {"owner": None, "ops_manager": "150.00"},
    )
    assert created.status_code == 201, created.json()
    assert (created.json()["version"], created.json()["expire_after_seconds"]) == (1, 86400)
    with schema_context(brand_a.schema_name):
        assert ApprovalPolicy.objects.filter(subject_type="freight_booking").count() == 2
