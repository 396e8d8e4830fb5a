"""Approvals fixtures: people of every role, costed stock, a stand-in purchase-order subject
type (purchasing does not exist yet: registering one here proves the mechanism is general),
eager Celery, and committed-data cleanup for threaded tests."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from django_tenants.utils import schema_context

from accounts.models import User
from accounts.roles import Role
from approvals import registry
from approvals import services as approvals
from approvals.models import (
    ApprovalComment,
    ApprovalDecision,
    ApprovalPolicy,
    ApprovalPolicyVersion,
    ApprovalRequest,
    ApprovalSettings,
    ApproverPreference,
    WebhookDelivery,
)
from audit.models import ActivityEntry
from inventory import services as stock
from inventory.models import StockAdjustmentRequest
from tests.conftest import make_user
from tests.factories import SKUFactory, WarehouseFactory

UNIT_COST = Decimal("10.00")  # the default stock policy's 500 threshold is 50 units


@pytest.fixture
def alpha(in_alpha):
    return in_alpha


@dataclass(frozen=True)
class People:
    owner: User
    admin: User
    ops: User
    buyer: User
    warehouse: User
    viewer: User

    def of(self, role: str) -> User:
        return {
            Role.OWNER: self.owner,
            Role.ADMIN: self.admin,
            Role.OPS_MANAGER: self.ops,
            Role.BUYER: self.buyer,
            Role.WAREHOUSE: self.warehouse,
            Role.VIEWER: self.viewer,
        }[role]


def make_people(brand, tag: str = "") -> People:
    def person(role: str, name: str) -> User:
        return make_user(
            brand, role=role, email=f"{name}{tag}@{brand.slug}.example", full_name=name.title()
        )

    return People(
        owner=person(Role.OWNER, "olive"),
        admin=person(Role.ADMIN, "adam"),
        ops=person(Role.OPS_MANAGER, "opal"),
        buyer=person(Role.BUYER, "bea"),
        warehouse=person(Role.WAREHOUSE, "wally"),
        viewer=person(Role.VIEWER, "vic"),
    )


@pytest.fixture
def people(brand_a) -> People:
    return make_people(brand_a)


@dataclass(frozen=True)
class Goods:
    sku: object
    warehouse: object


def make_goods(quantity: int = 1000, **sku_fields) -> Goods:
    sku_fields.setdefault("unit_cost", UNIT_COST)
    sku_fields.setdefault("cost_currency", "USD")
    sku = SKUFactory(**sku_fields)
    warehouse = WarehouseFactory()
    if quantity:
        stock.receive(sku=sku, warehouse=warehouse, quantity=quantity)
    return Goods(sku, warehouse)


@pytest.fixture
def goods(alpha) -> Goods:
    """A SKU costing 10.00 USD with 1,000 sellable at one warehouse."""
    return make_goods()


def adjust(goods: Goods, delta: int, by: User | None, **extra) -> stock.AdjustmentOutcome:
    return stock.request_adjustment(
        sku=goods.sku,
        warehouse=goods.warehouse,
        delta=delta,
        reason_code=extra.pop("reason_code", "damaged"),
        requested_by=by,
        **extra,
    )


# --- A stand-in purchase-order subject type ---------------------------------------------


@dataclass
class FakePurchaseOrders:
    """Purchase orders kept in memory: just enough of a subject to judge and continue."""

    amounts: dict[str, Decimal | None] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    states: dict[str, str] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    sent: list[tuple[str, str]] = field(default_factory=list)
    ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def create(self, amount: Decimal | None) -> str:
        po = f"PO-{next(self.ids)}"
        self.amounts[po], self.versions[po], self.states[po] = amount, 1, "draft"
        return po

    def submit(self, po: str, by: User | None) -> approvals.Outcome:
        outcome = approvals.open_request("purchase_order", po, requested_by=by)
        if outcome.state == approvals.NOT_REQUIRED:
            self.states[po] = "sent"
        elif outcome.pending:
            self.states[po] = "pending_approval"
        return outcome

    def facts(self, po: str) -> registry.Facts:
        return registry.Facts(
            title=f"Purchase order {po}",
            amount=self.amounts[po],
            supplier="Acme Mills",
            version=self.versions[po],
        )

    def approved(self, request: ApprovalRequest, key: str) -> None:
        self.sent.append((request.subject_id, key))
        self.states[request.subject_id] = "sent"

    def rejected(self, request: ApprovalRequest) -> None:
        self.states[request.subject_id] = "draft"
        self.reasons[request.subject_id] = request.resolution

    def context(self, request: ApprovalRequest) -> registry.DecisionContext:
        return registry.DecisionContext(
            facts=[("Supplier", "Acme Mills")],
            tables=[
                registry.ContextTable(
                    "Lines", ["SKU", "Quantity", "Cost"], [["TEE-1", "40", "12.50"]]
                )
            ],
        )

    def subject_type(self) -> registry.SubjectType:
        return registry.SubjectType(
            key="purchase_order",
            label="Purchase order",
            facts_of=self.facts,
            on_approved=self.approved,
            on_rejected=self.rejected,
            context_for=self.context,
        )


@pytest.fixture
def purchase_orders() -> Iterator[FakePurchaseOrders]:
    store = FakePurchaseOrders()
    with registry.temporarily(store.subject_type()):
        yield store


# --- Workers, clock --------------------------------------------------------------------


@pytest.fixture
def eager_celery():
    """Tasks run in-process when published (still through BrandTask's brand check)."""
    from config.celery import app

    before = (app.conf.task_always_eager, app.conf.task_eager_propagates)
    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    yield app
    app.conf.task_always_eager, app.conf.task_eager_propagates = before


def later(**delta) -> timezone.datetime:
    return timezone.now() + timedelta(**delta)


# --- Committed data (threads) ------------------------------------------------------------


@pytest.fixture
def committed_approvals(committed_alpha, eager_celery):
    """committed_alpha, plus removal of what approvals and the test's people committed:
    requests, decisions, deliveries, preferences, settings, non-default policies, users
    and activity entries. Default policies stay as the migration made them."""
    started = timezone.now()
    policies = set(ApprovalPolicy.objects.values_list("pk", flat=True))
    users = set(User.objects.values_list("pk", flat=True))
    versions = dict(ApprovalPolicy.objects.values_list("pk", "version"))
    yield
    with schema_context("brand_alpha"):
        # Before people: adjustment requests name their requester (committed_alpha empties
        # the rest of inventory afterwards).
        StockAdjustmentRequest.objects.all().delete()
        WebhookDelivery.objects.all().delete()
        ApprovalDecision.objects.all().delete()
        ApprovalComment.objects.all().delete()
        ApprovalRequest.objects.filter(superseded_by__isnull=False).update(superseded_by=None)
        ApprovalRequest.objects.all().delete()
        ApproverPreference.objects.all().delete()
        ApprovalSettings.objects.all().delete()
        ApprovalPolicyVersion.objects.exclude(policy__in=policies).delete()
        ApprovalPolicy.objects.exclude(pk__in=policies).delete()
        for pk, version in versions.items():
            ApprovalPolicyVersion.objects.filter(policy_id=pk, version__gt=version).delete()
        assert all(ApprovalPolicy.objects.get(pk=pk).version == v for pk, v in versions.items()), (
            "a threaded test changed a default policy"
        )
        User.objects.exclude(pk__in=users).delete()
        ActivityEntry.objects.filter(created_at__gte=started).delete()
