"""JSON values encrypted at rest with the platform's Fernet keys (config.crypto).

Connection credentials and connector state are stored as one token each; plaintext exists
only where code unseals it, never on a model attribute a serializer or template could
pick up. Rotation is config.crypto's: `manage.py rotate_secrets` re-encrypts every
FernetTokenField, these included.
"""

from __future__ import annotations

import json
from typing import Any

from config import crypto


def seal(value: Any) -> str:
    return crypto.encrypt(json.dumps(value, sort_keys=True))


def unseal(token: str) -> Any:
    """The stored value; raises config.crypto.InvalidToken when no configured key opens it."""
    return json.loads(crypto.decrypt(token))
