"""Connections: validated settings, sealed credentials, key rotation, status changes."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import connection as db

from audit.models import ActivityEntry
from config import crypto
from sync import services
from sync.models import Connection, ConnectionStatus, StateEntry
from sync.sealed import unseal
from sync.state import DatabaseState
from tests.factories import WarehouseFactory
from tests.sync.conftest import SHOP_SECRET, connect_shopify, shopify_settings


def raw_row(conn: Connection) -> str:
    """Everything stored for the connection, as PostgreSQL holds it."""
    with db.cursor() as cursor:
        cursor.execute(
            f"SELECT row_to_json(c)::text FROM {Connection._meta.db_table} c WHERE id = %s",
            [conn.pk],
        )
        return cursor.fetchone()[0]


def test_credentials_are_sealed_and_only_their_names_are_kept_in_the_clear(shop, shopify):
    stored = raw_row(shop)

    assert shopify.access_token not in stored and SHOP_SECRET not in stored
    assert shop.credential_fields == ["access_token", "webhook_secret"]
    assert unseal(shop.credentials) == {
        "access_token": shopify.access_token,
        "webhook_secret": SHOP_SECRET,
    }
    assert shop.settings == shopify_settings(shopify)
    entry = ActivityEntry.objects.get(action="connection.created")
    assert entry.changes["credentials"] == ["access_token", "webhook_secret"]
    assert shopify.access_token not in str(entry.changes) and SHOP_SECRET not in str(entry.changes)


def test_settings_are_validated_against_the_connector_schema_without_echoing_values(
    in_alpha, shopify
):
    with pytest.raises(ValidationError) as caught:
        services.create_connection(
            connector="shopify",
            display_name="Bad",
            channel_key="bad",
            settings={**shopify_settings(shopify), "shop_domain": "not a shop"},
            credentials={"access_token": "x" * 5, "webhook_secret": SHOP_SECRET},
        )
    message = str(caught.value.message_dict)
    assert "shop_domain" in message and "access_token" in message
    assert "not a shop" not in message and "xxxxx" not in message
    assert Connection.objects.count() == 0


@pytest.mark.parametrize(
    ("key", "code"),
    [("manual", "reserved"), ("Has Spaces", "invalid"), ("shop", "duplicate")],
)
def test_channel_keys_are_unique_and_keep_clear_of_keel_s_own_channels(shop, shopify, key, code):
    with pytest.raises(ValidationError) as caught:
        connect_shopify(shopify, channel_key=key)
    assert caught.value.error_dict["channel_key"][0].code == code


def test_unknown_connectors_and_warehouses_are_refused(in_alpha):
    with pytest.raises(ValidationError) as caught:
        services.create_connection(connector="nope", display_name="x", channel_key="x", settings={})
    assert "connector" in caught.value.error_dict
    with pytest.raises(ValidationError) as caught:
        services.create_connection(
            connector="sandbox_3pl",
            display_name="x",
            channel_key="x",
            settings={},
            warehouse_map={"SBX-WH1": "NOWHERE"},
        )
    assert caught.value.error_dict["warehouse_map"][0].code == "unknown_warehouse"


def test_editing_keeps_stored_secrets_unless_new_ones_are_given(shop, shopify):
    services.update_connection(
        shop, display_name="Renamed", credentials={"access_token": "", "webhook_secret": ""}
    )
    shop.refresh_from_db()
    assert shop.display_name == "Renamed"
    assert unseal(shop.credentials)["access_token"] == shopify.access_token

    services.update_connection(shop, credentials={"access_token": "shpat_rotated_token_99"})
    shop.refresh_from_db()
    assert unseal(shop.credentials) == {
        "access_token": "shpat_rotated_token_99",
        "webhook_secret": SHOP_SECRET,
    }
    changes = ActivityEntry.objects.filter(action="connection.updated").order_by("id")
    assert [c.changes.get("credentials") for c in changes] == [None, ["access_token"]]
    assert "shpat_rotated_token_99" not in str([c.changes for c in changes])


def test_rotating_the_fernet_key_keeps_every_secret_readable_under_the_new_key(
    shop, shopify, settings
):
    # given: credentials and connector state sealed under the current key
    old = settings.KEEL_FERNET_KEYS[0]
    DatabaseState(shop.pk).set("refreshed", {"token": "state-secret-0001"})
    new = Fernet.generate_key().decode()

    # when: a new key goes first, the old one stays, and the rotation command runs
    settings.KEEL_FERNET_KEYS = [new, old]
    call_command("rotate_secrets", verbosity=0)

    # then: readable, and opened by the new key alone
    shop.refresh_from_db()
    state = StateEntry.objects.get(connection=shop)
    settings.KEEL_FERNET_KEYS = [new]
    assert unseal(shop.credentials)["webhook_secret"] == SHOP_SECRET
    assert DatabaseState(shop.pk).get("refreshed") == {"token": "state-secret-0001"}
    settings.KEEL_FERNET_KEYS = [old]
    with pytest.raises(crypto.InvalidToken):
        crypto.decrypt(state.value)


def test_state_updates_are_atomic_read_modify_write(shop):
    state = DatabaseState(shop.pk)
    for _ in range(3):
        state.update("seen", lambda n: n + 1, default=0)
    assert state.get("seen") == 3
    assert state.get("missing", {"a": 1}) == {"a": 1}


def test_pause_resume_and_parking_are_logged_status_changes(shop):
    services.pause_connection(shop)
    services.resume_connection(shop)
    services.note_auth_failure(shop.pk, "shopify: credentials rejected (401)")
    services.note_auth_failure(shop.pk, "shopify: credentials rejected (401)")
    shop.refresh_from_db()

    assert shop.status == ConnectionStatus.NEEDS_ATTENTION
    assert list(
        ActivityEntry.objects.filter(action__startswith="connection.")
        .order_by("id")
        .values_list("action", flat=True)
    ) == [
        "connection.created",
        "connection.paused",
        "connection.resumed",
        "connection.needs_attention",
    ]


def test_two_locations_cannot_share_one_warehouse(in_alpha):
    WarehouseFactory(code="EAST")
    with pytest.raises(ValidationError) as caught:
        services.create_connection(
            connector="sandbox_3pl",
            display_name="x",
            channel_key="x",
            settings={},
            warehouse_map={"A": "EAST", "B": "east"},
        )
    assert "not several" in str(caught.value)


def test_testing_a_connection_records_the_outcome_and_refused_credentials_park_it(shop, shopify):
    result = services.test_connection(shop)
    shop.refresh_from_db()
    assert (result.ok, shop.last_test_ok, shop.status) == (True, True, "active")

    shopify.revoke_token()
    result = services.test_connection(shop)
    shop.refresh_from_db()
    assert (result.ok, shop.last_test_ok, shop.status) == (False, False, "needs_attention")
    assert result.message.startswith("Credentials refused")
    # one request each: the test never retries a refusal
    assert shopify.journal.statuses() == [200, 401]
