"""Encryption at rest for secrets Keel must use again (webhook signing secrets,
connector credentials), as opposed to secrets it only verifies (API keys: hashed).

Keys come from settings.KEEL_FERNET_KEYS (environment `KEEL_FERNET_KEYS`, comma-separated
Fernet keys, never SECRET_KEY): the first key encrypts, every key decrypts (cryptography's
MultiFernet). To rotate, put a new key first and keep the old ones after it, deploy, run
`python manage.py rotate_secrets` (re-encrypts every `FernetTokenField` in every schema with
the first key), then drop the old keys.

Columns holding a token are `FernetTokenField`s: a plain text column whose type marks it
for `rotate_secrets`. Reading and writing stay explicit (`encrypt`/`decrypt`) so plaintext
only exists where code asks for it, never on a model attribute a serializer, template or
`repr` could pick up by accident.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models

__all__ = [
    "FernetTokenField",
    "InvalidToken",
    "decrypt",
    "encrypt",
    "generate_key",
    "rotate",
]


class FernetTokenField(models.TextField):
    """A column holding a token from `encrypt` (see module docstring)."""

    description = "Fernet token (encrypted at rest)"


def _configured_keys() -> tuple[str, ...]:
    raw = settings.KEEL_FERNET_KEYS
    items: Iterable[str] = raw.split(",") if isinstance(raw, str) else raw
    keys = tuple(k.strip() for k in items if k and k.strip())
    if not keys:
        raise ImproperlyConfigured("KEEL_FERNET_KEYS is empty: set at least one Fernet key.")
    return keys


@lru_cache(maxsize=4)
def _multi(keys: tuple[str, ...]) -> MultiFernet:
    try:
        return MultiFernet([Fernet(k) for k in keys])
    except ValueError as exc:
        # Never echo the key material itself.
        raise ImproperlyConfigured(
            "KEEL_FERNET_KEYS holds a value that is not a Fernet key "
            "(32 url-safe base64-encoded bytes; make one with `generate_key()`)."
        ) from exc


def _fernet() -> MultiFernet:
    # Keyed by the configured keys, so changing the setting (rotation, tests) takes effect
    # without a restart of the cache.
    return _multi(_configured_keys())


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    """Plaintext of `token`; raises InvalidToken when no configured key opens it."""
    return _fernet().decrypt(token.encode()).decode()


def rotate(token: str) -> str:
    """`token` re-encrypted under the first key (readable by any configured key)."""
    return _fernet().rotate(token.encode()).decode()


def generate_key() -> str:
    return Fernet.generate_key().decode()
