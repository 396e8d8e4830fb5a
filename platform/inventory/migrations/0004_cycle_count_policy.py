"""Default approval policy for posting cycle counts: the same ceiling as adjustments.

Data frozen here (later default changes must not rewrite history); amounts in the brand's
currency, durations in seconds.
"""

from datetime import timedelta
from decimal import Decimal

from django.db import migrations

DAY = 24 * 3600
NAME = "Cycle counts correcting over 500"
RULES = {
    "amount_above": "500.00",
    "variance_above": None,
    "sku_tags": [],
    "suppliers": [],
    "approvers": {"owner": None, "admin": None, "ops_manager": "5000.00"},
    "required_approvals": 1,
    "allow_self_approval": False,
    "auto_approve_up_to": None,
    "escalate_after": DAY,
    "escalate_to": ["owner"],
    "expire_after": 7 * DAY,
}


def create_policy(apps, schema_editor):
    Policy = apps.get_model("approvals", "ApprovalPolicy")
    Version = apps.get_model("approvals", "ApprovalPolicyVersion")
    if Policy.objects.filter(subject_type="cycle_count").exists():
        return
    policy = Policy.objects.create(
        subject_type="cycle_count",
        name=NAME,
        position=100,
        is_enabled=True,
        version=1,
        amount_above=Decimal(RULES["amount_above"]),
        approvers=RULES["approvers"],
        required_approvals=1,
        allow_self_approval=False,
        escalate_after=timedelta(seconds=RULES["escalate_after"]),
        escalate_to=RULES["escalate_to"],
        expire_after=timedelta(seconds=RULES["expire_after"]),
    )
    Version.objects.create(
        policy=policy, version=1, name=NAME, rules=RULES, created_by_label="Keel (default)"
    )


def remove_policy(apps, schema_editor):
    Policy = apps.get_model("approvals", "ApprovalPolicy")
    Version = apps.get_model("approvals", "ApprovalPolicyVersion")
    Version.objects.filter(policy__name=NAME, policy__requests__isnull=True).delete()
    Policy.objects.filter(name=NAME, requests__isnull=True, versions__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("inventory", "0003_count_approval"),
        ("approvals", "0003_encrypt_webhook_secret"),
    ]

    operations = [migrations.RunPython(create_policy, remove_policy)]
