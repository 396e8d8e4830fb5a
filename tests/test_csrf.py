"""CSRF on HTMX posts across representative pages (RELIABILITY 24d).

The shell sends the token on every htmx request through `<body hx-headers='{"X-CSRFToken":
…}'>` (templates/base.html); nothing else adds it. With CSRF checks enforced, as in
production: an HTMX POST without the header is refused with 403 and changes nothing; with
the token taken from the page exactly as htmx sends it, the same POST succeeds.
(tests/accounts/test_csrf.py covers the team page's role change.)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

import pytest
from django.test import Client
from django_tenants.utils import schema_context

from accounts.models import ApiKey, Invitation
from accounts.roles import Role
from inventory import services as inventory
from inventory.models import StockBalance, Warehouse
from tests.conftest import host_of, make_user
from tests.factories import SKUFactory, WarehouseFactory

HX_HEADERS = re.compile(r"<body hx-headers='\{\"X-CSRFToken\": \"([^\"]+)\"\}'")


@dataclass
class Case:
    page: str  # the page whose form posts (its shell carries the token)
    path: str
    data: dict
    state: Callable[[], object]  # what the POST changes; compared before and after


def _stocked_sku():
    sku = SKUFactory(code="CSRF-1", unit_cost=Decimal("4.00"), cost_currency="USD")
    east = WarehouseFactory(code="EAST")
    inventory.receive(sku=sku, warehouse=east, quantity=10)
    return sku, east


def invite() -> Case:
    return Case(
        "/accounts/team/",
        "/accounts/team/invite/",
        {"email": "csrf@example.com", "role": Role.VIEWER},
        lambda: list(Invitation.objects.values_list("email", flat=True)),
    )


def api_key() -> Case:
    return Case(
        "/accounts/api-keys/",
        "/accounts/api-keys/",
        {"name": "Planted", "scope": "write"},
        lambda: list(ApiKey.objects.values_list("name", flat=True)),
    )


def adjust_stock() -> Case:
    sku, east = _stocked_sku()
    return Case(
        "/inventory/adjust/",
        "/inventory/adjust/",
        {
            "sku": sku.code,
            "warehouse": east.pk,
            "status": "sellable",
            "quantity": "-3",
            "reason_code": "damaged",
            "note": "CSRF probe",
        },
        lambda: list(StockBalance.objects.values_list("sku_id", "warehouse_id", "quantity")),
    )


def create_warehouse() -> Case:
    return Case(
        "/inventory/warehouses/new/",
        "/inventory/warehouses/new/",
        {
            "code": "CSRF",
            "name": "Probe",
            "kind": "3pl",
            "is_active": "on",
            "address_line1": "1 Harbor Way",
            "city": "Los Angeles",
            "state": "CA",
            "postal_code": "90001",
            "country": "us",
            "timezone": "America/Los_Angeles",
            "cutoff_time": "14:30",
            "capabilities": ["parcel"],
            "priority": "10",
            "safety_buffer": "2",
        },
        lambda: list(Warehouse.objects.values_list("code", flat=True)),
    )


CASES = [invite, api_key, adjust_stock, create_warehouse]


def strict_client(brand, user) -> Client:
    client = Client(HTTP_HOST=host_of(brand), enforce_csrf_checks=True)
    with schema_context(brand.schema_name):
        client.force_login(user)
    return client


@pytest.fixture
def owner_client(brand_a):
    return strict_client(brand_a, make_user(brand_a, role=Role.OWNER))


def in_alpha_do(brand, fn):
    with schema_context(brand.schema_name):
        return fn()


@pytest.mark.parametrize("make_case", CASES, ids=lambda f: f.__name__)
def test_htmx_post_without_the_token_is_403_and_changes_nothing(brand_a, owner_client, make_case):
    case = in_alpha_do(brand_a, make_case)
    before = in_alpha_do(brand_a, case.state)
    assert owner_client.get(case.page).status_code == 200  # the CSRF cookie is set

    response = owner_client.post(case.path, case.data, HTTP_HX_REQUEST="true")

    assert response.status_code == 403
    assert in_alpha_do(brand_a, case.state) == before


@pytest.mark.parametrize("make_case", CASES, ids=lambda f: f.__name__)
def test_htmx_post_with_a_wrong_token_is_403(brand_a, owner_client, make_case):
    case = in_alpha_do(brand_a, make_case)
    before = in_alpha_do(brand_a, case.state)
    owner_client.get(case.page)

    response = owner_client.post(
        case.path, case.data, HTTP_HX_REQUEST="true", HTTP_X_CSRFTOKEN="x" * 64
    )

    assert response.status_code == 403
    assert in_alpha_do(brand_a, case.state) == before


@pytest.mark.parametrize("make_case", CASES, ids=lambda f: f.__name__)
def test_htmx_post_with_the_token_the_shell_sends_succeeds(brand_a, owner_client, make_case):
    case = in_alpha_do(brand_a, make_case)
    before = in_alpha_do(brand_a, case.state)
    page = owner_client.get(case.page)
    token = HX_HEADERS.search(page.content.decode()).group(1)

    response = owner_client.post(
        case.path, case.data, HTTP_HX_REQUEST="true", HTTP_X_CSRFTOKEN=token
    )

    assert response.status_code in (200, 204, 302), response.content[:500]
    after = in_alpha_do(brand_a, case.state)
    assert after != before


def test_every_signed_in_page_carries_the_token_for_htmx(brand_a):
    client = strict_client(brand_a, make_user(brand_a, role=Role.OWNER))
    for path in ("/", "/accounts/team/", "/inventory/", "/orders/", "/approvals/"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert HX_HEADERS.search(response.content.decode()), path
