"""Secrets at rest: MultiFernet under KEEL_FERNET_KEYS, rotation and `rotate_secrets`."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command

from config import crypto
from webhooks import services
from webhooks.models import WebhookEndpoint

OLD = Fernet.generate_key().decode()
NEW = Fernet.generate_key().decode()


def make_endpoint(n: int) -> str:
    issued = services.create_endpoint(
        actor=None, url=f"http://127.0.0.1:9/{n}", event_types=["order.created"]
    )
    return issued.secret


def token_of(pk: int) -> str:
    return WebhookEndpoint.objects.values_list("secret_encrypted", flat=True).get(pk=pk)


def test_rotation_keeps_old_rows_readable_and_rotate_secrets_rewrites_them(
    in_alpha, settings, capsys
):
    # Keys already in use stay last, as in a real rotation: secrets other tests (or
    # migrations) left encrypted under them must stay readable to the command.
    configured = list(crypto._configured_keys())
    # given: two endpoints whose secrets were encrypted under the old key
    settings.KEEL_FERNET_KEYS = [OLD, *configured]
    secrets = {}
    for n in range(2):
        secret = make_endpoint(n)
        secrets[WebhookEndpoint.objects.order_by("-id").values_list("pk", flat=True)[0]] = secret
    before = {pk: token_of(pk) for pk in secrets}

    # when: a new key goes first, the old one stays
    settings.KEEL_FERNET_KEYS = [NEW, OLD, *configured]

    # then: old rows still decrypt; new writes use the new key
    for pk, secret in secrets.items():
        assert services.endpoint_secret(WebhookEndpoint.objects.get(pk=pk)) == secret
    with pytest.raises(crypto.InvalidToken):
        Fernet(NEW.encode()).decrypt(before[next(iter(secrets))].encode())

    # when: the re-encrypt command runs
    call_command("rotate_secrets")

    # then: every row is rewritten under the new key and readable with it alone
    out = capsys.readouterr().out
    assert "Re-encrypted" in out
    settings.KEEL_FERNET_KEYS = [NEW]
    for pk, secret in secrets.items():
        assert token_of(pk) != before[pk]
        assert Fernet(NEW.encode()).decrypt(token_of(pk).encode()).decode() == secret
        assert services.endpoint_secret(WebhookEndpoint.objects.get(pk=pk)) == secret
    for secret in secrets.values():
        assert secret not in out


def test_rotate_secrets_fails_loudly_when_a_value_cannot_be_decrypted(in_alpha, settings):
    settings.KEEL_FERNET_KEYS = [OLD]
    make_endpoint(1)
    settings.KEEL_FERNET_KEYS = [NEW]  # the old key was dropped too early

    with pytest.raises(Exception, match="could not be decrypted"):
        call_command("rotate_secrets")


def test_keys_may_come_comma_separated_and_bad_keys_are_named_without_echoing(settings):
    settings.KEEL_FERNET_KEYS = f"{NEW}, {OLD}"
    token = crypto.encrypt("s3cret")
    assert Fernet(NEW.encode()).decrypt(token.encode()) == b"s3cret"

    settings.KEEL_FERNET_KEYS = ["not-a-key"]
    with pytest.raises(ImproperlyConfigured) as error:
        crypto.encrypt("x")
    assert "not-a-key" not in str(error.value)

    settings.KEEL_FERNET_KEYS = []
    with pytest.raises(ImproperlyConfigured):
        crypto.encrypt("x")
