"""Connections pages: role checks, the schema-generated form, actions, live run history."""

from __future__ import annotations

import re

import pytest

from accounts.roles import Role
from sync import services
from sync.models import Connection, RunStatus, SyncRun
from tests.conftest import brand_client, make_user
from tests.sync.conftest import SHOP_SECRET


@pytest.fixture
def owner_client(brand_a, owner_a):
    return brand_client(brand_a, owner_a)


@pytest.mark.parametrize(
    ("role", "list_status", "add_status"),
    [
        (Role.ADMIN, 200, 200),
        (Role.OPS_MANAGER, 200, 403),
        (Role.BUYER, 403, 403),
        (Role.VIEWER, 403, 403),
    ],
)
def test_who_may_see_and_add_connections(brand_a, role, list_status, add_status):
    client = brand_client(brand_a, make_user(brand_a, role=role))
    assert client.get("/connections/").status_code == list_status
    assert client.get("/connections/add/").status_code == add_status
    assert client.get("/connections/add/shopify/").status_code == add_status
    nav = client.get("/").content.decode()
    assert ('href="/connections/"' in nav) is (list_status == 200)


def test_the_list_shows_connections_installed_plugins_and_an_empty_state(owner_client, in_alpha):
    page = owner_client.get("/connections/").content.decode()
    assert "No connections yet." in page
    assert "keel-shipbay 0.1.0" in page
    assert "ShipBay" in page and "Sandbox channel" in page and "Shopify" in page


def test_the_add_form_is_generated_from_the_schema_with_secrets_as_password_inputs(
    owner_client, in_alpha
):
    page = owner_client.get("/connections/add/shopify/").content.decode()

    for secret in ("access_token", "webhook_secret", "previous_webhook_secret"):
        field = re.search(rf'<input[^>]*name="cfg_{secret}"[^>]*>', page).group(0)
        assert 'type="password"' in field and "value=" not in field
    domain = re.search(r'<input[^>]*name="cfg_shop_domain"[^>]*>', page).group(0)
    assert 'type="text"' in domain and "required" in domain
    assert re.search(r'<input[^>]*name="cfg_orders_page_size"[^>]*value="250"', page)
    assert re.search(r'<input[^>]*type="checkbox"[^>]*name="cfg_notify_customer"[^>]*checked', page)
    assert 'name="channel_key"' in page and 'value="shopify"' in page
    # 3PL forms also ask which warehouse each remote location is
    assert 'name="warehouse_map"' not in page
    assert 'name="warehouse_map"' in owner_client.get("/connections/add/shipbay/").content.decode()


def test_an_invalid_submission_shows_field_errors_and_never_the_secret(owner_client, in_alpha):
    response = owner_client.post(
        "/connections/add/shopify/",
        {
            "display_name": "Shop",
            "channel_key": "shop",
            "poll_interval": 120,
            "cfg_shop_domain": "nope",
            "cfg_access_token": "shpat_typed_by_a_person_001",
            "cfg_webhook_secret": "short",
            "cfg_orders_page_size": 250,
        },
    )
    page = response.content.decode()
    assert response.status_code == 422
    assert "Does not have the expected format." in page  # shop_domain pattern
    assert "At least 10 characters." in page  # webhook_secret minLength
    assert "shpat_typed_by_a_person_001" not in page and "short" not in page.split("<main")[1]
    assert Connection.objects.count() == 0


def test_detail_page_shows_the_webhook_url_and_actions_work(owner_client, shop, shopify, tasks):
    page = owner_client.get(f"/connections/{shop.pk}/").content.decode()
    assert f"/hooks/{shop.uuid}/" in page
    assert "access_token" in page and SHOP_SECRET not in page

    response = owner_client.post(f"/connections/{shop.pk}/sync/")
    assert response.status_code == 302
    run = SyncRun.objects.get()
    assert (run.trigger, run.status, run.requested_by) == (
        "manual",
        "queued",
        "owner@alpha.example",
    )
    assert tasks.names() == [services.RUN_TASK]

    # while a run is active the history refreshes itself
    fragment = owner_client.get(
        f"/connections/{shop.pk}/?fragment=runs", HTTP_HX_REQUEST="true"
    ).content.decode()
    assert fragment.lstrip().startswith('<section class="card" id="runs"')
    assert 'hx-trigger="every 2s"' in fragment

    owner_client.post(f"/connections/{shop.pk}/pause/")
    shop.refresh_from_db()
    assert shop.status == "paused"
    owner_client.post(f"/connections/{shop.pk}/resume/")
    shop.refresh_from_db()
    assert shop.status == "active"


def test_ops_managers_may_sync_but_not_pause_or_edit(brand_a, shop, tasks):
    client = brand_client(brand_a, make_user(brand_a, role=Role.OPS_MANAGER))
    assert client.post(f"/connections/{shop.pk}/sync/").status_code == 302
    assert client.post(f"/connections/{shop.pk}/pause/").status_code == 403
    assert client.get(f"/connections/{shop.pk}/edit/").status_code == 403
    shop.refresh_from_db()
    assert shop.status == "active"


def test_run_page_lists_errors_and_stops_polling_when_finished(owner_client, shop):
    run = SyncRun.objects.create(
        connection=shop,
        trigger="schedule",
        status=RunStatus.PARTIAL,
        streams=["orders"],
        error_count=1,
        errors=[
            {
                "at": "now",
                "stream": "orders",
                "code": "invalid_order",
                "message": "Bad line",
                "ref": "1001",
            }
        ],
    )
    page = owner_client.get(f"/connections/runs/{run.pk}/").content.decode()
    assert "Bad line" in page and "invalid_order" in page
    assert "hx-trigger" not in page


def test_editing_keeps_the_secret_when_left_blank(owner_client, shop, shopify):
    page = owner_client.get(f"/connections/{shop.pk}/edit/").content.decode()
    assert shopify.access_token not in page and SHOP_SECRET not in page
    assert "leave blank to keep it" in page

    response = owner_client.post(
        f"/connections/{shop.pk}/edit/",
        {
            "display_name": "Main shop",
            "poll_interval": 600,
            "cfg_shop_domain": shopify.shop,
            "cfg_api_base_url": shopify.url,
            "cfg_orders_page_size": 50,
            "cfg_location_id": "1001",
        },
    )
    assert response.status_code == 302, response.content.decode()[-1500:]
    shop.refresh_from_db()
    assert (shop.display_name, shop.poll_interval) == ("Main shop", 600)
    assert services.plugins.conn_credentials(shop)["webhook_secret"] == SHOP_SECRET
