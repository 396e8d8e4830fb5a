"""Default approval policies, one per subject type Keel knows.

A data migration, so they land in the template schema (and so in every brand cloned from
it, and every pooled schema) as well as in brands that exist when this deploys. The data
is frozen here on purpose: later changes to defaults must not rewrite history.
Amounts are in the brand's currency; durations in seconds.
"""

from datetime import timedelta
from decimal import Decimal

from django.db import migrations

HOUR = 3600
DAY = 24 * HOUR

DEFAULTS = [
    {
        "subject_type": "purchase_order",
        "name": "Purchase orders above the brand's ceiling",
        "auto_approve_up_to": "1000.00",
        "approvers": {"owner": None, "admin": None, "ops_manager": "25000.00", "buyer": "10000.00"},
        "escalate_after": DAY,
        "escalate_to": ["owner"],
        "expire_after": 14 * DAY,
    },
    {
        "subject_type": "shipping_label",
        "name": "Shipping labels costing over 75",
        "amount_above": "75.00",
        "approvers": {"owner": None, "admin": None, "ops_manager": None},
        "escalate_after": 4 * HOUR,
        "escalate_to": ["owner"],
        "expire_after": 2 * DAY,
    },
    {
        "subject_type": "freight_booking",
        "name": "Freight quotes varying over 50%",
        "variance_above": "50.00",
        "approvers": {"owner": None, "admin": None, "ops_manager": None},
        "escalate_after": 8 * HOUR,
        "escalate_to": ["owner"],
        "expire_after": 3 * DAY,
    },
    {
        "subject_type": "routing_override",
        "name": "Routing overrides",
        # Off until a brand wants a second pair of eyes on every manual routing choice.
        "is_enabled": False,
        "approvers": {"owner": None, "admin": None, "ops_manager": None},
        "expire_after": 2 * DAY,
    },
    {
        "subject_type": "stock_adjustment",
        "name": "Stock adjustments worth over 500",
        "amount_above": "500.00",
        "approvers": {"owner": None, "admin": None, "ops_manager": "5000.00"},
        "escalate_after": DAY,
        "escalate_to": ["owner"],
        "expire_after": 7 * DAY,
    },
    {
        "subject_type": "connection_credential_change",
        "name": "Connection credential changes",
        "approvers": {"owner": None, "admin": None},
        "escalate_after": DAY,
        "escalate_to": ["owner"],
        "expire_after": 3 * DAY,
    },
]


def _rules(item: dict) -> dict:
    return {
        "amount_above": item.get("amount_above"),
        "variance_above": item.get("variance_above"),
        "sku_tags": [],
        "suppliers": [],
        "approvers": item["approvers"],
        "required_approvals": 1,
        "allow_self_approval": False,
        "auto_approve_up_to": item.get("auto_approve_up_to"),
        "escalate_after": item.get("escalate_after"),
        "escalate_to": item.get("escalate_to", []),
        "expire_after": item.get("expire_after"),
    }


def _dec(value):
    return None if value is None else Decimal(value)


def _dur(value):
    return None if value is None else timedelta(seconds=value)


def create_defaults(apps, schema_editor):
    Policy = apps.get_model("approvals", "ApprovalPolicy")
    Version = apps.get_model("approvals", "ApprovalPolicyVersion")
    for item in DEFAULTS:
        if Policy.objects.filter(subject_type=item["subject_type"]).exists():
            continue
        policy = Policy.objects.create(
            subject_type=item["subject_type"],
            name=item["name"],
            position=100,
            is_enabled=item.get("is_enabled", True),
            version=1,
            amount_above=_dec(item.get("amount_above")),
            variance_above=_dec(item.get("variance_above")),
            approvers=item["approvers"],
            required_approvals=1,
            allow_self_approval=False,
            auto_approve_up_to=_dec(item.get("auto_approve_up_to")),
            escalate_after=_dur(item.get("escalate_after")),
            escalate_to=item.get("escalate_to", []),
            expire_after=_dur(item.get("expire_after")),
        )
        Version.objects.create(
            policy=policy,
            version=1,
            name=item["name"],
            rules=_rules(item),
            created_by_label="Keel (default)",
        )


def remove_defaults(apps, schema_editor):
    Policy = apps.get_model("approvals", "ApprovalPolicy")
    Version = apps.get_model("approvals", "ApprovalPolicyVersion")
    names = [item["name"] for item in DEFAULTS]
    Version.objects.filter(policy__name__in=names, policy__requests__isnull=True).delete()
    Policy.objects.filter(name__in=names, requests__isnull=True, versions__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [("approvals", "0001_initial")]

    operations = [migrations.RunPython(create_defaults, remove_defaults)]
