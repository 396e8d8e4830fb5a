"""REST API: /api/v1/connections/, /api/v1/sync-runs/, /api/v1/connectors/."""

from __future__ import annotations

import pytest

from accounts.roles import Role
from accounts.services import create_api_key
from sync import services
from sync.models import Connection, SyncRun
from tests.conftest import brand_client, make_user
from tests.sync.conftest import SHOP_SECRET, shopify_settings

JSON = "application/json"


@pytest.fixture(autouse=True)
def _generous_rate_limit(settings):
    settings.API_RATE_LIMIT = "10000/min"


@pytest.fixture
def owner_api(brand_a, owner_a):
    return brand_client(brand_a, owner_a)


@pytest.fixture
def keys(in_alpha, owner_a) -> dict[str, str]:
    return {
        scope: create_api_key(actor=owner_a, name=f"{scope} key", scope=scope).secret
        for scope in ("read", "write")
    }


def secrets_of(fake) -> list[str]:
    return [fake.access_token, SHOP_SECRET]


def test_list_and_detail_never_carry_credentials(owner_api, shop, shopify):
    listed = owner_api.get("/api/v1/connections/")
    detail = owner_api.get(f"/api/v1/connections/{shop.pk}/")

    assert listed.status_code == detail.status_code == 200
    body = detail.json()
    assert body["credential_fields"] == ["access_token", "webhook_secret"]
    assert "credentials" not in body
    assert body["webhook_url"] == f"http://alpha.localhost/hooks/{shop.uuid}/"
    assert [c["id"] for c in listed.json()["results"]] == [shop.pk]
    for secret in secrets_of(shopify):
        assert secret not in listed.content.decode() and secret not in detail.content.decode()


def test_people_with_manage_rights_create_and_edit_connections(owner_api, in_alpha, shopify):
    created = owner_api.post(
        "/api/v1/connections/",
        {
            "connector": "shopify",
            "display_name": "API shop",
            "channel_key": "api-shop",
            "settings": shopify_settings(shopify),
            "credentials": {"access_token": shopify.access_token, "webhook_secret": SHOP_SECRET},
        },
        content_type=JSON,
    )
    assert created.status_code == 201, created.content
    conn_id = created.json()["id"]

    patched = owner_api.patch(
        f"/api/v1/connections/{conn_id}/",
        {"credentials": {"access_token": "shpat_new_token_via_api_1"}, "poll_interval": 900},
        content_type=JSON,
    )
    assert patched.status_code == 200
    assert patched.json()["poll_interval"] == 900
    for response in (created, patched):
        text = response.content.decode()
        assert SHOP_SECRET not in text and "shpat_new_token_via_api_1" not in text
        assert shopify.access_token not in text


def test_invalid_settings_answer_in_the_error_format_naming_fields(owner_api, in_alpha):
    response = owner_api.post(
        "/api/v1/connections/",
        {"connector": "shopify", "channel_key": "x", "settings": {"shop_domain": "nope"}},
        content_type=JSON,
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert "settings" in error["fields"]
    assert "nope" not in response.content.decode()


def test_sync_is_queued_once_and_an_idempotency_key_replays(owner_api, shop, tasks):
    first = owner_api.post(
        f"/api/v1/connections/{shop.pk}/sync/", {}, content_type=JSON, HTTP_IDEMPOTENCY_KEY="k-1"
    )
    replay = owner_api.post(
        f"/api/v1/connections/{shop.pk}/sync/", {}, content_type=JSON, HTTP_IDEMPOTENCY_KEY="k-1"
    )
    again = owner_api.post(f"/api/v1/connections/{shop.pk}/sync/", {}, content_type=JSON)

    assert (first.status_code, replay.status_code, again.status_code) == (202, 202, 200)
    assert replay["Idempotent-Replayed"] == "true"
    assert first.json()["id"] == again.json()["id"] == SyncRun.objects.get().pk
    assert first.json()["streams"] == ["orders", "listings", "tracking"]
    assert tasks.names() == [services.RUN_TASK]


def test_sync_runs_are_listed_and_filtered(owner_api, shop, tasks):
    run, _ = services.request_sync(shop, trigger="manual")
    listed = owner_api.get(f"/api/v1/sync-runs/?connection={shop.pk}&status=queued")
    empty = owner_api.get("/api/v1/sync-runs/?status=failed")
    bad = owner_api.get("/api/v1/sync-runs/?connection=abc")

    assert [r["id"] for r in listed.json()["results"]] == [run.pk]
    assert empty.json()["results"] == []
    assert bad.status_code == 400


def test_api_keys_read_and_sync_but_never_manage_connections(brand_a, shop, keys, tasks, shopify):
    client = brand_client(brand_a)
    read = {"HTTP_AUTHORIZATION": f"Api-Key {keys['read']}"}
    write = {"HTTP_AUTHORIZATION": f"Api-Key {keys['write']}"}

    assert client.get("/api/v1/connections/", **read).status_code == 200
    assert client.post(f"/api/v1/connections/{shop.pk}/sync/", **read).status_code == 403
    assert client.post(f"/api/v1/connections/{shop.pk}/sync/", **write).status_code == 202
    refused = [
        client.post(
            "/api/v1/connections/",
            {"connector": "sandbox_3pl", "channel_key": "k"},
            content_type=JSON,
            **write,
        ).status_code,
        client.patch(
            f"/api/v1/connections/{shop.pk}/", {"settings": {}}, content_type=JSON, **write
        ).status_code,
        client.post(f"/api/v1/connections/{shop.pk}/pause/", **write).status_code,
    ]
    assert refused == [403, 403, 403]
    shop.refresh_from_db()
    assert (shop.status, Connection.objects.count()) == ("active", 1)
    assert SyncRun.objects.get().requested_by.startswith("API key keel_")


def test_viewers_cannot_see_connections(brand_a, shop):
    client = brand_client(brand_a, make_user(brand_a, role=Role.VIEWER))
    assert client.get("/api/v1/connections/").status_code == 403
    assert client.get("/api/v1/sync-runs/").status_code == 403


def test_connectors_endpoint_lists_installed_connectors_with_their_schema(owner_api, in_alpha):
    body = owner_api.get("/api/v1/connectors/").json()
    by_name = {c["name"]: c for c in body}
    assert {
        "shopify",
        "threepl",
        "sandbox_channel",
        "sandbox_3pl",
        "sandbox_carrier",
        "shipbay",
    } <= set(by_name)
    assert by_name["shipbay"]["kind"] == "3pl"
    assert by_name["shipbay"]["secret_fields"] == ["api_key"]
    assert by_name["shipbay"]["settings_schema"]["required"] == ["api_key"]
