"""Default segment policies, and one purchase-order approval policy per segment.

Segment policies (review cadence, service level):
- hero 7 d / 0.98: the top tenth of revenue; a stock-out there costs the most, so it is
  reviewed weekly and buffered for 98 %.
- supporting 7 d / 0.95: still worth a weekly look, at the usual retail service level.
- tail 30 d / 0.90: half the catalogue and little of the revenue; monthly review keeps
  orders in economic batches, and 90 % avoids tying cash up in slow stock.
- discontinue 30 d / 0.80: the bottom tenth, being run down; buy only what keeps the
  listing alive.

Approval ceilings are approvals policies on the "purchase_order" subject matching the tag
`segment:<name>` that purchasing puts into a PO's facts for every line's SKU. They sit
before the brand-wide PO policy (position 100) with the strictest first, so a PO mixing
segments is judged by its strictest one. A discontinued SKU's PO always needs a person
(no auto-approve ceiling); tail 500, supporting 2,500, hero 5,000 in the brand's currency.
Approvers, escalation and expiry copy the brand-wide PO policy, as it stands when this
runs (the frozen default when it is gone). Frozen data, like approvals' 0002.
"""

from datetime import timedelta
from decimal import Decimal

from django.db import migrations

POLICIES = [
    ("hero", 7, "0.980"),
    ("supporting", 7, "0.950"),
    ("tail", 30, "0.900"),
    ("discontinue", 30, "0.800"),
]

# Strictest first.
CEILINGS = [
    ("discontinue", 10, None),
    ("tail", 20, "500.00"),
    ("supporting", 30, "2500.00"),
    ("hero", 40, "5000.00"),
]

DAY = 24 * 3600
DEFAULT_PO = {
    "approvers": {"owner": None, "admin": None, "ops_manager": "25000.00", "buyer": "10000.00"},
    "escalate_after": timedelta(seconds=DAY),
    "escalate_to": ["owner"],
    "expire_after": timedelta(seconds=14 * DAY),
}


def _name(segment: str) -> str:
    return f"Purchase orders for {segment} SKUs"


def _seconds(value):
    return None if value is None else int(value.total_seconds())


def create_defaults(apps, schema_editor):
    SegmentPolicy = apps.get_model("forecasting", "SegmentPolicy")
    for segment, cadence, level in POLICIES:
        SegmentPolicy.objects.get_or_create(
            segment=segment,
            defaults={"review_cadence_days": cadence, "service_level": Decimal(level)},
        )

    Policy = apps.get_model("approvals", "ApprovalPolicy")
    Version = apps.get_model("approvals", "ApprovalPolicyVersion")
    base = (
        Policy.objects.filter(subject_type="purchase_order", sku_tags=[], suppliers=[])
        .order_by("position", "id")
        .first()
    )
    shape = (
        {
            "approvers": base.approvers,
            "escalate_after": base.escalate_after,
            "escalate_to": list(base.escalate_to),
            "expire_after": base.expire_after,
        }
        if base is not None
        else DEFAULT_PO
    )
    for segment, position, ceiling in CEILINGS:
        tag = f"segment:{segment}"
        if Policy.objects.filter(subject_type="purchase_order", sku_tags=[tag]).exists():
            continue
        name = _name(segment)
        policy = Policy.objects.create(
            subject_type="purchase_order",
            name=name,
            position=position,
            is_enabled=True,
            version=1,
            sku_tags=[tag],
            approvers=shape["approvers"],
            required_approvals=1,
            allow_self_approval=False,
            auto_approve_up_to=None if ceiling is None else Decimal(ceiling),
            escalate_after=shape["escalate_after"],
            escalate_to=shape["escalate_to"],
            expire_after=shape["expire_after"],
        )
        Version.objects.create(
            policy=policy,
            version=1,
            name=name,
            rules={
                "amount_above": None,
                "variance_above": None,
                "sku_tags": [tag],
                "suppliers": [],
                "approvers": shape["approvers"],
                "required_approvals": 1,
                "allow_self_approval": False,
                "auto_approve_up_to": ceiling,
                "escalate_after": _seconds(shape["escalate_after"]),
                "escalate_to": shape["escalate_to"],
                "expire_after": _seconds(shape["expire_after"]),
            },
            created_by_label="Keel (default)",
        )


def remove_defaults(apps, schema_editor):
    Policy = apps.get_model("approvals", "ApprovalPolicy")
    Version = apps.get_model("approvals", "ApprovalPolicyVersion")
    names = [_name(segment) for segment, _, _ in CEILINGS]
    Version.objects.filter(policy__name__in=names, policy__requests__isnull=True).delete()
    Policy.objects.filter(name__in=names, requests__isnull=True, versions__isnull=True).delete()
    apps.get_model("forecasting", "SegmentPolicy").objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [
        ("forecasting", "0001_initial"),
        ("approvals", "0002_default_policies"),
    ]

    operations = [migrations.RunPython(create_defaults, remove_defaults)]
