"""Validating a connection's settings and credentials against a connector's schema.

The platform validates form and API input with :func:`validate_connection` before storing
it; factories call it again on what they are given (a stored connection may predate a
schema change). Error messages name fields and the rule that failed, never a value: a
credential typed into the wrong field must not end up in a log or an error page.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jsonschema

from connectors.errors import ConfigurationError
from connectors.types import ConnectorInfo

__all__ = ["check_schema", "validate_connection"]


def check_schema(schema: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigurationError` unless ``schema`` is a valid JSON Schema
    (draft 2020-12) describing an object."""
    try:
        jsonschema.Draft202012Validator.check_schema(dict(schema))
    except jsonschema.SchemaError as exc:
        raise ConfigurationError(f"invalid settings schema: {exc.message}") from None
    if schema.get("type") != "object":
        raise ConfigurationError('settings schema must have "type": "object"')


def validate_connection(
    info: ConnectorInfo, settings: Mapping[str, Any], credentials: Mapping[str, Any]
) -> dict[str, Any]:
    """Validate ``settings`` + ``credentials`` together against ``info.settings_schema``.

    Returns the merged values with schema defaults filled in for absent top-level
    properties. Raises :class:`ConfigurationError` listing every problem by field.
    """
    misplaced = sorted(set(settings) & info.secret_fields)
    if misplaced:
        raise ConfigurationError(f"secret fields passed as settings: {', '.join(misplaced)}")
    merged: dict[str, Any] = {**settings, **credentials}
    validator = jsonschema.Draft202012Validator(dict(info.settings_schema))
    problems = []
    for error in sorted(validator.iter_errors(merged), key=lambda e: list(e.path)):
        field = ".".join(str(p) for p in error.path) or "(connection)"
        if error.validator == "required":
            problems.append(f"{_missing(error.message)}: required")
        elif error.validator == "additionalProperties":
            problems.append(f"{field}: unknown field(s)")
        else:
            # Name the rule, not the offending value (it may be a secret).
            problems.append(f"{field}: does not satisfy '{error.validator}'")
    if problems:
        raise ConfigurationError(f"{info.name}: invalid connection: {'; '.join(problems)}")
    properties = info.settings_schema.get("properties", {})
    for name, spec in properties.items():
        if name not in merged and isinstance(spec, Mapping) and "default" in spec:
            merged[name] = spec["default"]
    return merged


def _missing(message: str) -> str:
    # jsonschema says "'shop_domain' is a required property": the quoted part is a field name.
    return message.split("'")[1] if message.count("'") >= 2 else "(field)"
