"""Encrypt the approvals webhook signing secret at rest, keeping each brand's secret."""

from django.db import migrations

import config.crypto


def encrypt_existing(apps, schema_editor):
    from config.crypto import encrypt

    Settings = apps.get_model("approvals", "ApprovalSettings")
    for row in Settings.objects.all():
        row.webhook_secret_encrypted = encrypt(row.webhook_secret)
        row.save(update_fields=["webhook_secret_encrypted"])


def decrypt_existing(apps, schema_editor):
    from config.crypto import decrypt

    Settings = apps.get_model("approvals", "ApprovalSettings")
    for row in Settings.objects.all():
        row.webhook_secret = decrypt(row.webhook_secret_encrypted)
        row.save(update_fields=["webhook_secret"])


class Migration(migrations.Migration):
    dependencies = [("approvals", "0002_default_policies")]

    operations = [
        migrations.AddField(
            model_name="approvalsettings",
            name="webhook_secret_encrypted",
            field=config.crypto.FernetTokenField(default=""),
            preserve_default=False,
        ),
        migrations.RunPython(encrypt_existing, decrypt_existing),
        migrations.RemoveField(model_name="approvalsettings", name="webhook_secret"),
    ]
