"""Re-encrypt every stored secret with the first key of KEEL_FERNET_KEYS.

Covers every `config.crypto.FernetTokenField` of every installed model (webhook signing
secrets, connector credentials, …) in the public schema and every brand, template and
pool schema. Run it after putting a new key first in KEEL_FERNET_KEYS; once it reports
no failures the old keys can be removed. Safe to run again: rows already under the new
key are simply re-encrypted once more.
"""

from __future__ import annotations

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, models, transaction
from django_tenants.utils import get_public_schema_name, schema_context

from config import crypto
from tenants.models import Brand

BATCH = 500


def encrypted_columns() -> list[tuple[type[models.Model], str]]:
    return [
        (model, field.attname)
        for model in apps.get_models()
        for field in model._meta.concrete_fields
        if isinstance(field, crypto.FernetTokenField)
    ]


def rotate_schema(columns: list[tuple[type[models.Model], str]]) -> tuple[int, int]:
    """(values re-encrypted, values no configured key could open) in the current schema."""
    tables = set(connection.introspection.table_names())
    rotated = failed = 0
    for model, column in columns:
        if model._meta.db_table not in tables:
            continue
        last_pk = None
        while True:
            with transaction.atomic():
                rows = model._base_manager.select_for_update().order_by("pk")
                if last_pk is not None:
                    rows = rows.filter(pk__gt=last_pk)
                batch = list(rows.only("pk", column)[:BATCH])
                if not batch:
                    break
                changed = []
                for row in batch:
                    token = getattr(row, column)
                    if not token:
                        continue
                    try:
                        setattr(row, column, crypto.rotate(token))
                    except crypto.InvalidToken:
                        failed += 1
                        continue
                    changed.append(row)
                model._base_manager.bulk_update(changed, [column])
                rotated += len(changed)
                last_pk = batch[-1].pk
    return rotated, failed


class Command(BaseCommand):
    help = "Re-encrypt stored secrets with the first key of KEEL_FERNET_KEYS."

    def handle(self, *args, **options) -> None:
        columns = encrypted_columns()
        schemas = [get_public_schema_name()] + list(
            Brand.objects.exclude(schema_name=get_public_schema_name())
            .order_by("schema_name")
            .values_list("schema_name", flat=True)
        )
        rotated = failed = 0
        for schema in schemas:
            with schema_context(schema):
                done, bad = rotate_schema(columns)
            rotated += done
            failed += bad
            if bad:
                self.stderr.write(f"{schema}: {bad} value(s) no configured key can decrypt")
        self.stdout.write(
            f"Re-encrypted {rotated} value(s) in {len(columns)} column(s) across "
            f"{len(schemas)} schema(s)."
        )
        if failed:
            raise CommandError(
                f"{failed} value(s) could not be decrypted with any key in KEEL_FERNET_KEYS; "
                "keep the old key until they are fixed."
            )
