"""Secrets at rest (RELIABILITY 24a/b), the parts other tests do not cover.

Covered elsewhere: connector secrets absent from pages, API, logs and records over a
connection's life (tests/sync/test_secrets.py); rotation of webhook endpoint secrets
(tests/webhooks/test_crypto.py); API keys shown once, stored as a SHA-256 hash, revoked
in the UI → 401 on the next request (tests/api/test_api_keys.py).

Here:
- a real `pg_dump` of the public and the brand schema, taken after every kind of secret
  Keel stores was committed (connector credentials, connector state, webhook endpoint
  secret, approvals signing secret, an API key), contains none of them in plaintext —
  while their encrypted rows are in it; the log records of the same work contain none;
- Fernet rotation over every FernetTokenField of every schema: after `rotate_secrets`
  100 % of the stored values open with the new key alone and equal what was stored;
- an API key revoked through the API is refused on its very next request.
"""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db import connection
from django.db.models import Max
from django_tenants.utils import schema_context

from accounts.models import ApiKey, User
from accounts.services import create_api_key
from approvals import services as approvals
from approvals.models import ApprovalSettings
from audit.models import ActivityEntry
from sync import services as sync
from sync.models import Connection, StateEntry
from sync.sealed import seal, unseal
from tenants.models import Brand
from tests.conftest import brand_client
from webhooks import services as webhooks
from webhooks.management.commands.rotate_secrets import encrypted_columns
from webhooks.models import WebhookEndpoint

SCHEMA = "brand_alpha"
ACCESS_TOKEN = "shpat_at_rest_access_token_4242"
HOOK_SECRET = "shpss_at_rest_webhook_secret_4242"
REFRESH_TOKEN = "rt_at_rest_refresh_token_4242"


@dataclass
class Stored:
    plaintexts: dict[str, str]  # what must never appear
    tokens: list[str]  # their encrypted forms, which must


def store_every_kind_of_secret(owner: User) -> Stored:
    conn = sync.create_connection(
        connector="shopify",
        display_name="At-rest shop",
        channel_key="at-rest",
        settings={"shop_domain": "keel-test.myshopify.com"},
        credentials={"access_token": ACCESS_TOKEN, "webhook_secret": HOOK_SECRET},
    )
    state = StateEntry.objects.create(
        connection=conn, key="refresh_token", value=seal({"token": REFRESH_TOKEN})
    )
    endpoint = webhooks.create_endpoint(
        actor=None, url="http://127.0.0.1:9/at-rest", event_types=["order.created"]
    )
    key = create_api_key(actor=owner, name="At rest", scope="read")
    conn.refresh_from_db()
    return Stored(
        plaintexts={
            "connector access token": ACCESS_TOKEN,
            "connector webhook secret": HOOK_SECRET,
            "connector state": REFRESH_TOKEN,
            "webhook endpoint secret": endpoint.secret,
            "approvals signing secret": approvals.webhook_signing_secret(),
            "API key": key.secret,
            "API key secret part": key.secret.split(".", 1)[1],
        },
        tokens=[
            conn.credentials,
            state.value,
            WebhookEndpoint.objects.get(pk=endpoint.endpoint.pk).secret_encrypted,
            approvals.load_settings().webhook_secret_encrypted,
            ApiKey.objects.get(pk=key.api_key.pk).key_hash,
        ],
    )


@pytest.fixture
def committed_secrets(django_db_setup, django_db_blocker, monkeypatch, caplog) -> Iterator[Stored]:
    """The secrets committed in alpha (pg_dump reads only committed rows), removed after."""
    monkeypatch.setattr(sync, "send_task", lambda *a, **k: None)  # no worker here
    caplog.set_level(logging.DEBUG)
    with django_db_blocker.unblock(), schema_context(SCHEMA):
        before = row_counts(SCHEMA)
        last_entry = ActivityEntry.objects.aggregate(last=Max("id"))["last"] or 0
        had_settings = ApprovalSettings.objects.exists()
        owner = User.objects.get(email="owner@alpha.example")
        stored = store_every_kind_of_secret(owner)
        try:
            yield stored
        finally:
            Connection.objects.filter(channel_key="at-rest").delete()
            WebhookEndpoint.objects.filter(url="http://127.0.0.1:9/at-rest").delete()
            ApiKey.objects.filter(name="At rest").delete()
            if not had_settings:
                ApprovalSettings.objects.all().delete()
            ActivityEntry.objects.filter(id__gt=last_entry).delete()
            leftovers = {t: n for t, n in row_counts(SCHEMA).items() if n != before.get(t)}
            connection.set_schema_to_public()
            assert not leftovers, f"rows left committed in {SCHEMA}: {leftovers}"


def row_counts(schema: str) -> dict[str, int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = %s AND table_type = 'BASE TABLE'",
            [schema],
        )
        tables = [t for (t,) in cursor.fetchall()]
        counts = {}
        for table in tables:
            cursor.execute(f'SELECT count(*) FROM "{schema}"."{table}"')
            counts[table] = cursor.fetchone()[0]
    return counts


def pg_dump(*schemas: str) -> str:
    db = connection.settings_dict
    command = ["pg_dump", "--data-only", "--no-owner", "-d", db["NAME"]]
    command += [f"--schema={schema}" for schema in schemas]
    for flag, key in (("-h", "HOST"), ("-p", "PORT"), ("-U", "USER")):
        if db.get(key):
            command += [flag, str(db[key])]
    env = {"PGPASSWORD": db.get("PASSWORD") or ""}
    result = subprocess.run(  # noqa: S603 - fixed argv, test database only
        command, capture_output=True, text=True, check=True, env={**env, "PATH": "/usr/bin"}
    )
    return result.stdout


def test_database_dump_and_logs_hold_no_plaintext_secret(committed_secrets, caplog, capsys):
    dump = pg_dump("public", SCHEMA)

    assert len(dump) > 10_000  # a real dump of both schemas, not an empty file
    for token in committed_secrets.tokens:
        assert token and token in dump  # the rows are there, encrypted or hashed
    logs = "\n".join(
        f"{r.getMessage()} {json.dumps(r.__dict__, default=str)}" for r in caplog.records
    )
    captured = capsys.readouterr()
    for what, plaintext in committed_secrets.plaintexts.items():
        assert plaintext not in dump, f"{what} in the database dump"
        assert plaintext not in logs, f"{what} in the logs"
        assert plaintext not in captured.out + captured.err, f"{what} on stdout/stderr"


def every_encrypted_value() -> dict[tuple[str, str, str, int], str]:
    """(schema, table, column, pk) → token, for every FernetTokenField value stored."""
    values = {}
    schemas = ["public", *Brand.objects.values_list("schema_name", flat=True)]
    for schema in schemas:
        with schema_context(schema):
            tables = set(connection.introspection.table_names())
            for model, column in encrypted_columns():
                if model._meta.db_table not in tables:
                    continue
                for pk, token in model._base_manager.values_list("pk", column):
                    if token:
                        values[(schema, model._meta.db_table, column, pk)] = token
    return values


def test_rotation_leaves_every_stored_secret_readable_under_the_new_key(
    brand_a, brand_b, owner_a, owner_b, settings, monkeypatch
):
    monkeypatch.setattr(sync, "send_task", lambda *a, **k: None)
    current = list(settings.KEEL_FERNET_KEYS)
    for brand, owner in ((brand_a, owner_a), (brand_b, owner_b)):
        with schema_context(brand.schema_name):
            store_every_kind_of_secret(owner)
    connection.set_schema_to_public()
    before = every_encrypted_value()
    old = Fernet(current[0].encode())
    plaintext = {where: old.decrypt(token.encode()) for where, token in before.items()}
    tables = {where[1] for where in before}
    assert {"sync_connection", "sync_stateentry", "webhooks_webhookendpoint"} <= tables
    assert "approvals_approvalsettings" in tables
    assert {where[0] for where in before} >= {brand_a.schema_name, brand_b.schema_name}

    new_key = Fernet.generate_key().decode()
    settings.KEEL_FERNET_KEYS = [new_key, *current]
    call_command("rotate_secrets")
    settings.KEEL_FERNET_KEYS = [new_key]  # the old key is gone

    after = every_encrypted_value()
    assert after.keys() == before.keys()
    new = Fernet(new_key.encode())
    for where, token in after.items():
        assert token != before[where], where
        assert new.decrypt(token.encode()) == plaintext[where], where
    # Code paths that read secrets work with the new key alone.
    with schema_context(brand_a.schema_name):
        conn = Connection.objects.get(channel_key="at-rest")
        assert unseal(conn.credentials)["access_token"] == ACCESS_TOKEN
        assert approvals.webhook_signing_secret()


def test_key_revoked_through_the_api_is_refused_on_its_next_request(brand_a, owner_a):
    with schema_context(brand_a.schema_name):
        issued = create_api_key(actor=owner_a, name="Self-revoking", scope="write")
        # API keys are managed by people; a key revokes itself only via its owner's session.
    client = brand_client(brand_a)
    auth = {"HTTP_AUTHORIZATION": f"Api-Key {issued.secret}"}
    assert client.get("/api/v1/brand/", **auth).status_code == 200

    owner = brand_client(brand_a, owner_a)
    assert owner.delete(f"/api/v1/api-keys/{issued.api_key.pk}/").status_code == 204

    refused = client.get("/api/v1/brand/", **auth)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "authentication_failed"
    with schema_context(brand_a.schema_name):
        stored = ApiKey.objects.get(pk=issued.api_key.pk)
        assert issued.secret not in (stored.key_hash, stored.prefix)
        assert stored.revoked_at is not None
