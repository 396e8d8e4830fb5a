"""API keys end to end: created in the UI, shown once, stored hashed, scoped, revocable."""

import re

from django_tenants.utils import schema_context

from accounts.models import ApiKey
from accounts.roles import Role
from accounts.services import authenticate_api_key, create_api_key, revoke_api_key
from audit.models import ActivityEntry
from tests.conftest import brand_client, make_user

KEY_RE = re.compile(r"keel_[A-Za-z0-9]{8}\.[A-Za-z0-9_-]{43}")


def test_key_created_in_the_ui_is_shown_once_and_stored_only_as_a_hash(brand_a, owner_a):
    client = brand_client(brand_a, owner_a)

    created = client.post("/accounts/api-keys/", {"name": "Looker", "scope": "read"})

    assert created.status_code == 200
    assert created["Cache-Control"] == "no-store"
    secret = KEY_RE.search(created.content.decode()).group(0)
    with schema_context(brand_a.schema_name):
        key = ApiKey.objects.get()
        assert secret.startswith(key.prefix + ".")
        assert secret not in {key.key_hash, key.prefix}
        assert len(key.key_hash) == 64
        assert ActivityEntry.objects.filter(action="apikey.created").count() == 1
    # Listing it again never reveals the secret.
    assert secret.encode() not in client.get("/accounts/api-keys/").content


def test_read_key_reads_but_cannot_write(brand_a, owner_a):
    with schema_context(brand_a.schema_name):
        issued = create_api_key(actor=owner_a, name="BI", scope="read")
    client = brand_client(brand_a)
    auth = {"HTTP_AUTHORIZATION": f"Api-Key {issued.secret}"}

    brand = client.get("/api/v1/brand/", **auth)
    assert brand.status_code == 200
    assert brand.json()["slug"] == "alpha"

    write = client.patch(
        "/api/v1/brand/", {"name": "Hijacked"}, content_type="application/json", **auth
    )
    assert write.status_code == 403
    brand_a.refresh_from_db()
    assert brand_a.name == "Alpha"


def test_write_key_edits_the_brand_and_the_change_is_logged_against_the_key(brand_a, owner_a):
    with schema_context(brand_a.schema_name):
        issued = create_api_key(actor=owner_a, name="ERP", scope="write")
    response = brand_client(brand_a).patch(
        "/api/v1/brand/",
        {"timezone": "Europe/Paris"},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {issued.secret}",
    )

    assert response.status_code == 200
    assert response.json()["timezone"] == "Europe/Paris"
    with schema_context(brand_a.schema_name):
        entry = ActivityEntry.objects.get(action="brand.updated")
        assert entry.actor_type == "api_key"
        assert entry.actor_label == f"API key {issued.api_key.prefix}"
        assert entry.changes == {"timezone": ["UTC", "Europe/Paris"]}
        assert entry.request_id == response["X-Request-ID"]


def test_revoked_key_gets_401_on_the_next_request(brand_a, owner_a):
    with schema_context(brand_a.schema_name):
        issued = create_api_key(actor=owner_a, name="Temp", scope="read")
    client = brand_client(brand_a)
    auth = {"HTTP_AUTHORIZATION": f"Api-Key {issued.secret}"}
    assert client.get("/api/v1/users/", **auth).status_code == 200

    owner_client = brand_client(brand_a, owner_a)
    assert owner_client.post(f"/accounts/api-keys/{issued.api_key.pk}/revoke/").status_code == 302

    response = client.get("/api/v1/users/", **auth)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"
    assert response["WWW-Authenticate"] == 'Api-Key realm="api"'


def test_wrong_secret_with_a_real_prefix_is_rejected(brand_a, owner_a):
    with schema_context(brand_a.schema_name):
        issued = create_api_key(actor=owner_a, name="Temp", scope="read")
        forged = issued.api_key.prefix + "." + "A" * 43
        assert authenticate_api_key(forged) is None
        assert authenticate_api_key(issued.secret) == issued.api_key
        assert authenticate_api_key("") is None
        assert authenticate_api_key("garbage") is None


def test_last_used_is_recorded_without_a_write_per_request(brand_a, owner_a):
    with schema_context(brand_a.schema_name):
        issued = create_api_key(actor=owner_a, name="Temp", scope="read")
        assert issued.api_key.last_used_at is None
        first = authenticate_api_key(issued.secret).last_used_at
        second = authenticate_api_key(issued.secret).last_used_at
        assert first is not None
        assert second == first  # within the resolution window: no second write


def test_api_create_returns_the_key_once_and_delete_revokes(brand_a, owner_a):
    client = brand_client(brand_a, owner_a)
    created = client.post(
        "/api/v1/api-keys/", {"name": "Agency", "scope": "write"}, content_type="application/json"
    )
    assert created.status_code == 201
    body = created.json()
    assert KEY_RE.fullmatch(body["key"])
    assert body["scope"] == "write"

    detail = client.get(f"/api/v1/api-keys/{body['id']}/").json()
    assert "key" not in detail and "key_hash" not in detail

    as_key = {"HTTP_AUTHORIZATION": f"Api-Key {body['key']}"}
    assert brand_client(brand_a).get("/api/v1/brand/", **as_key).status_code == 200

    assert client.delete(f"/api/v1/api-keys/{body['id']}/").status_code == 204
    with schema_context(brand_a.schema_name):
        assert ApiKey.objects.get(pk=body["id"]).revoked_at is not None
    # Revoked through the API: the very next request with it is refused.
    refused = brand_client(brand_a).get("/api/v1/brand/", **as_key)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "authentication_failed"


def test_malformed_or_unknown_keys_get_401_never_a_session_fallback(brand_a, owner_a):
    with schema_context(brand_a.schema_name):
        issued = create_api_key(actor=owner_a, name="Temp", scope="read")
    # Signed in AND sending a bad key: the bad key decides (401), the session does not.
    client = brand_client(brand_a, owner_a)
    for header in (
        "Api-Key ",
        "Api-Key garbage",
        f"Api-Key {issued.api_key.prefix}.",
        f"Api-Key {issued.secret}x",
        f"Bearer keel_nothere.{issued.secret.split('.', 1)[1]}",
    ):
        response = client.get("/api/v1/users/", HTTP_AUTHORIZATION=header)
        assert response.status_code == 401, header
        assert response.json()["error"]["code"] == "authentication_failed", header


def test_viewer_sees_no_key_management_controls(brand_a, owner_a):
    admin = make_user(brand_a, role=Role.ADMIN)
    with schema_context(brand_a.schema_name):
        issued = create_api_key(actor=owner_a, name="Temp", scope="read")
        revoke_api_key(actor=admin, api_key=issued.api_key)
    page = brand_client(brand_a, admin).get("/accounts/api-keys/?status=revoked")
    assert b"Revoked" in page.content
