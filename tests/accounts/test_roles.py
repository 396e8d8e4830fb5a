"""The role matrix, walked through both the web UI and the API: they must agree."""

import pytest
from django_tenants.utils import schema_context

from accounts.models import ApiKey, User
from accounts.roles import ROLE_PERMISSIONS, Role, role_has
from accounts.services import create_api_key
from tests.conftest import brand_client, make_user

# (permission, UI request, API request); each request is (method, path, data).
CHECKS = [
    ("team.view", ("get", "/accounts/team/", None), ("get", "/api/v1/users/", None)),
    (
        "team.invite",
        ("post", "/accounts/team/invite/", {"email": "new@example.com", "role": "viewer"}),
        ("post", "/api/v1/invitations/", {"email": "new2@example.com", "role": "viewer"}),
    ),
    ("apikeys.view", ("get", "/accounts/api-keys/", None), ("get", "/api/v1/api-keys/", None)),
    (
        "apikeys.manage",
        ("post", "/accounts/api-keys/", {"name": "BI", "scope": "read"}),
        ("post", "/api/v1/api-keys/", {"name": "BI", "scope": "read"}),
    ),
    ("activity.view", ("get", "/activity/", None), ("get", "/api/v1/activity/", None)),
    (
        "brand.edit",
        ("post", "/accounts/settings/", {"name": "Alpha", "timezone": "UTC", "currency": "USD"}),
        ("patch", "/api/v1/brand/", {"name": "Alpha"}),
    ),
    ("workers.view", ("get", "/workers/", None), None),
]


def call(client, method, path, data, *, api: bool):
    if method == "get":
        return client.get(path)
    if api:
        return getattr(client, method)(path, data, content_type="application/json")
    return getattr(client, method)(path, data)


@pytest.mark.parametrize("role", Role.values)
@pytest.mark.parametrize(("permission", "ui", "api"), CHECKS, ids=[c[0] for c in CHECKS])
def test_ui_and_api_enforce_the_same_matrix(brand_a, role, permission, ui, api):
    user = make_user(brand_a, role=role)
    client = brand_client(brand_a, user)
    allowed = role_has(role, permission)

    ui_response = call(client, *ui, api=False)
    if allowed:
        assert ui_response.status_code in (200, 302), ui_response.status_code
    else:
        assert ui_response.status_code == 403

    if api is not None:
        api_response = call(client, *api, api=True)
        if allowed:
            assert api_response.status_code in (200, 201), api_response.content
        else:
            assert api_response.status_code == 403
            assert api_response.json()["error"]["code"] == "permission_denied"


def test_viewer_cannot_invite_create_keys_or_change_roles_and_nothing_changes(brand_a):
    viewer = make_user(brand_a, role=Role.VIEWER)
    target = make_user(brand_a, role=Role.BUYER)
    client = brand_client(brand_a, viewer)

    responses = [
        client.post("/accounts/team/invite/", {"email": "x@example.com", "role": "viewer"}),
        client.post("/accounts/api-keys/", {"name": "k", "scope": "write"}),
        client.post(f"/accounts/team/{target.pk}/", {"action": "role", "role": "admin"}),
        client.post(f"/accounts/team/{target.pk}/", {"action": "deactivate"}),
        client.patch(
            f"/api/v1/users/{target.pk}/", {"role": "admin"}, content_type="application/json"
        ),
    ]

    assert [r.status_code for r in responses] == [403] * 5
    with schema_context(brand_a.schema_name):
        target.refresh_from_db()
        assert (target.role, target.is_active) == (Role.BUYER, True)
        assert ApiKey.objects.count() == 0
        from accounts.models import Invitation

        assert Invitation.objects.count() == 0


def test_admin_cannot_make_owners_but_owner_can(brand_a, owner_a):
    admin = make_user(brand_a, role=Role.ADMIN)
    target = make_user(brand_a, role=Role.VIEWER)

    denied = brand_client(brand_a, admin).patch(
        f"/api/v1/users/{target.pk}/", {"role": "owner"}, content_type="application/json"
    )
    assert denied.status_code == 403
    assert denied.json()["error"]["code"] == "role_not_assignable"

    allowed = brand_client(brand_a, owner_a).patch(
        f"/api/v1/users/{target.pk}/", {"role": "owner"}, content_type="application/json"
    )
    assert allowed.status_code == 200
    assert allowed.json()["role"] == "owner"


def test_api_keys_never_manage_people_or_keys(brand_a, owner_a):
    with schema_context(brand_a.schema_name):
        issued = create_api_key(actor=owner_a, name="Partner", scope="write")
    client = brand_client(brand_a)
    auth = {"HTTP_AUTHORIZATION": f"Api-Key {issued.secret}"}

    assert client.get("/api/v1/users/", **auth).status_code == 200
    assert (
        client.post("/api/v1/api-keys/", {"name": "x", "scope": "write"}, **auth).status_code == 403
    )
    assert (
        client.patch(
            f"/api/v1/users/{owner_a.pk}/",
            {"role": "viewer"},
            content_type="application/json",
            **auth,
        ).status_code
        == 403
    )


def test_every_role_has_a_defined_permission_set():
    assert set(ROLE_PERMISSIONS) == set(Role.values)
    assert ROLE_PERMISSIONS[Role.OWNER] >= ROLE_PERMISSIONS[Role.ADMIN]
    for role in Role.values:
        assert role_has(role, "dashboard.view")


def test_last_owner_cannot_be_demoted_or_deactivated(brand_a, owner_a):
    client = brand_client(brand_a, owner_a)
    # The owner is "this is you" for deactivation; a second owner tries to remove them.
    other_owner = make_user(brand_a, role=Role.OWNER)
    other = brand_client(brand_a, other_owner)
    assert (
        other.patch(
            f"/api/v1/users/{owner_a.pk}/", {"role": "admin"}, content_type="application/json"
        ).status_code
        == 200
    )
    response = client.patch(
        f"/api/v1/users/{other_owner.pk}/", {"role": "admin"}, content_type="application/json"
    )
    # owner_a is now an admin, so they may no longer touch an owner at all.
    assert response.status_code == 403
    last = other.patch(
        f"/api/v1/users/{other_owner.pk}/", {"is_active": False}, content_type="application/json"
    )
    assert last.status_code == 400
    assert last.json()["error"]["code"] in {"last_owner", "self_deactivation"}
    with schema_context(brand_a.schema_name):
        assert User.objects.filter(role=Role.OWNER, is_active=True).count() == 1


# Changing a role, deactivating, and revoking a key or an invitation act on one object, so
# they are walked here with a fresh target per role: every role, through pages and the API.


def _outcome(ui_or_api: str, response, allowed: bool) -> None:
    if not allowed:
        assert response.status_code == 403, response.status_code
        if ui_or_api == "api":
            assert response.json()["error"]["code"] == "permission_denied"
    elif ui_or_api == "ui":
        assert response.status_code == 302, response.status_code
    else:
        assert response.status_code in (200, 204), response.content


@pytest.mark.parametrize("role", Role.values)
def test_change_role_and_deactivate_follow_the_matrix_in_pages_and_api(brand_a, role):
    actor = make_user(brand_a, role=role)
    allowed = role_has(role, "team.manage")
    client = brand_client(brand_a, actor)
    by_page = make_user(brand_a, role=Role.BUYER)
    by_api = make_user(brand_a, role=Role.BUYER)

    _outcome(
        "ui",
        client.post(f"/accounts/team/{by_page.pk}/", {"action": "role", "role": "viewer"}),
        allowed,
    )
    _outcome("ui", client.post(f"/accounts/team/{by_page.pk}/", {"action": "deactivate"}), allowed)
    _outcome(
        "api",
        client.patch(
            f"/api/v1/users/{by_api.pk}/", {"role": "viewer"}, content_type="application/json"
        ),
        allowed,
    )
    _outcome(
        "api",
        client.patch(
            f"/api/v1/users/{by_api.pk}/", {"is_active": False}, content_type="application/json"
        ),
        allowed,
    )

    expected = (Role.VIEWER, False) if allowed else (Role.BUYER, True)
    with schema_context(brand_a.schema_name):
        for target in (by_page, by_api):
            target.refresh_from_db()
            assert (target.role, target.is_active) == expected


@pytest.mark.parametrize("role", Role.values)
def test_revoking_keys_and_invitations_follows_the_matrix(brand_a, owner_a, role):
    from accounts.models import Invitation
    from accounts.services import invite_user

    actor = make_user(brand_a, role=role)
    client = brand_client(brand_a, actor)
    with schema_context(brand_a.schema_name):
        by_page = create_api_key(actor=owner_a, name="page", scope="read").api_key
        by_api = create_api_key(actor=owner_a, name="api", scope="read").api_key
        invitation = invite_user(
            actor=owner_a, email="later@example.com", role=Role.VIEWER, accept_url_for=str
        ).invitation

    _outcome(
        "ui",
        client.post(f"/accounts/api-keys/{by_page.pk}/revoke/"),
        role_has(role, "apikeys.manage"),
    )
    _outcome(
        "api", client.delete(f"/api/v1/api-keys/{by_api.pk}/"), role_has(role, "apikeys.manage")
    )
    _outcome(
        "ui",
        client.post(f"/accounts/invitations/{invitation.pk}/revoke/"),
        role_has(role, "team.invite"),
    )

    with schema_context(brand_a.schema_name):
        revoked_keys = ApiKey.objects.filter(revoked_at__isnull=False).count()
        revoked_invites = Invitation.objects.filter(revoked_at__isnull=False).count()
    assert revoked_keys == (2 if role_has(role, "apikeys.manage") else 0)
    assert revoked_invites == (1 if role_has(role, "team.invite") else 0)
