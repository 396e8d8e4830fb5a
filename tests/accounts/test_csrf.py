"""HTMX posts carry the CSRF token from <body hx-headers>; without it they are refused."""

import re

from django.test import Client
from django_tenants.utils import schema_context

from accounts.models import User
from accounts.roles import Role
from tests.conftest import host_of, make_user


def signed_in_strict_client(brand, user) -> Client:
    client = Client(HTTP_HOST=host_of(brand), enforce_csrf_checks=True)
    with schema_context(brand.schema_name):
        client.force_login(user)
    return client


def test_htmx_post_without_csrf_token_is_403_and_changes_nothing(brand_a, owner_a):
    target = make_user(brand_a, role=Role.VIEWER)
    client = signed_in_strict_client(brand_a, owner_a)

    response = client.post(
        f"/accounts/team/{target.pk}/", {"action": "role", "role": "buyer"}, HTTP_HX_REQUEST="true"
    )

    assert response.status_code == 403
    with schema_context(brand_a.schema_name):
        assert User.objects.get(pk=target.pk).role == Role.VIEWER


def test_htmx_post_with_the_token_from_the_page_succeeds(brand_a, owner_a):
    target = make_user(brand_a, role=Role.VIEWER)
    client = signed_in_strict_client(brand_a, owner_a)
    page = client.get("/accounts/team/").content.decode()
    token = re.search(r'hx-headers=\'\{"X-CSRFToken": "([^"]+)"\}\'', page).group(1)

    response = client.post(
        f"/accounts/team/{target.pk}/",
        {"action": "role", "role": "buyer"},
        HTTP_HX_REQUEST="true",
        HTTP_X_CSRFTOKEN=token,
    )

    assert response.status_code == 200
    with schema_context(brand_a.schema_name):
        assert User.objects.get(pk=target.pk).role == Role.BUYER
