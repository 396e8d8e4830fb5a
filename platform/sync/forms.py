"""The connection form, generated from the connector's settings JSON Schema.

Each schema property becomes a field (prefixed `cfg_` so it never collides with the
platform's own fields): strings with `enum` are selects, integers and numbers number
inputs with the schema's bounds, booleans checkboxes, arrays of strings one value per
line, objects `key = value` lines, and secret fields (ConnectorInfo.secret_fields)
password inputs that never render a value. When editing, a blank secret keeps the stored
one. Values are validated against the schema per field here (messages name the rule,
never the value) and again, whole, by sync.services through the SDK.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import jsonschema
from django import forms

from connectors import types as ct
from inventory.models import Warehouse

PREFIX = "cfg_"

_RULES = {
    "pattern": "Does not have the expected format.",
    "format": "Does not have the expected format.",
    "enum": "Choose one of the offered values.",
    "type": "Wrong kind of value.",
    "minItems": "Too few values.",
    "maxItems": "Too many values.",
    "uniqueItems": "Values repeat.",
    "additionalProperties": "Unknown keys.",
    "exclusiveMinimum": "Too small.",
    "exclusiveMaximum": "Too large.",
}


def _rule_message(error: jsonschema.ValidationError) -> str:
    # Never echo error.message: it quotes the offending value, which may be a secret.
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    rule = error.validator
    if rule == "minLength":
        return f"At least {schema.get('minLength')} characters."
    if rule == "maxLength":
        return f"At most {schema.get('maxLength')} characters."
    if rule == "minimum":
        return f"At least {schema.get('minimum')}."
    if rule == "maximum":
        return f"At most {schema.get('maximum')}."
    return _RULES.get(str(rule), f"Does not satisfy “{rule}”.")


class LinesField(forms.CharField):
    """An array as one value per line (strings or integers)."""

    def __init__(self, *, item_type: str = "string", **kwargs: Any) -> None:
        kwargs.setdefault("widget", forms.Textarea(attrs={"rows": 3}))
        super().__init__(**kwargs)
        self.item_type = item_type

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return "\n".join(str(v) for v in value)
        return value

    def to_python(self, value: Any) -> list[Any] | None:
        text = super().to_python(value)
        if not text:
            return None
        items = [part.strip() for line in text.splitlines() for part in line.split(",")]
        items = [i for i in items if i]
        if self.item_type in ("integer", "number"):
            try:
                return [int(i) if self.item_type == "integer" else float(i) for i in items]
            except ValueError:
                raise forms.ValidationError("Enter numbers, one per line.") from None
        return items


class PairsField(forms.CharField):
    """An object of strings as `key = value` lines."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("widget", forms.Textarea(attrs={"rows": 3}))
        super().__init__(**kwargs)

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, Mapping):
            return "\n".join(f"{k} = {v}" for k, v in value.items())
        return value

    def to_python(self, value: Any) -> dict[str, str] | None:
        text = super().to_python(value)
        if not text:
            return None
        pairs: dict[str, str] = {}
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            key, sep, val = line.partition("=")
            if not sep or not key.strip() or not val.strip():
                raise forms.ValidationError(f"Line {number}: write it as “key = value”.")
            pairs[key.strip()] = val.strip()
        return pairs


def _field_for(
    name: str, spec: Mapping[str, Any], *, secret: bool, required: bool, editing: bool
) -> forms.Field:
    label = spec.get("title") or name.replace("_", " ").capitalize()
    help_text = spec.get("description", "")
    kind = spec.get("type")
    common: dict[str, Any] = {"label": label, "help_text": help_text, "required": required}
    if secret:
        if editing:
            common["required"] = False
            common["help_text"] = (help_text + " " if help_text else "") + (
                "Stored and hidden; leave blank to keep it."
            )
        return forms.CharField(
            widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
            strip=True,
            **common,
        )
    if "enum" in spec:
        choices = [(v, v) for v in spec["enum"]]
        if not required:
            choices = [("", "—")] + choices
        return forms.ChoiceField(choices=choices, **common)
    if kind == "boolean":
        common["required"] = False
        return forms.BooleanField(**common)
    if kind == "integer":
        return forms.IntegerField(
            min_value=spec.get("minimum"), max_value=spec.get("maximum"), **common
        )
    if kind == "number":
        return forms.FloatField(
            min_value=spec.get("minimum"), max_value=spec.get("maximum"), **common
        )
    if kind == "array":
        item_type = (spec.get("items") or {}).get("type", "string")
        common["help_text"] = (help_text + " " if help_text else "") + "One per line."
        return LinesField(item_type=item_type, **common)
    if kind == "object":
        common["help_text"] = (help_text + " " if help_text else "") + "One “key = value” a line."
        return PairsField(**common)
    widget = forms.URLInput if spec.get("format") == "uri" else forms.TextInput
    return forms.CharField(
        widget=widget,
        max_length=spec.get("maxLength"),
        strip=True,
        **common,
    )


def _parse_pairs(text: str) -> dict[str, str]:
    pairs = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise forms.ValidationError(f"Line {number}: write it as “LOCATION = WAREHOUSE”.")
        pairs[key.strip()] = value.strip()
    return pairs


class ConnectionForm(forms.Form):
    """Add or edit a connection of one connector. `initial_settings` are the stored
    non-secret settings when editing; secrets are never pre-filled."""

    display_name = forms.CharField(max_length=120, label="Name")
    channel_key = forms.CharField(
        max_length=100,
        label="Channel key",
        help_text=(
            "Orders from this connection are filed under this channel name, and listing "
            "mappings use it. Lowercase letters, digits, dots, dashes, underscores; it "
            "cannot change later."
        ),
    )
    poll_interval = forms.IntegerField(
        min_value=30, label="Poll every (seconds)", help_text="At least 30 seconds."
    )
    warehouse_map = forms.CharField(
        required=False,
        label="Locations → warehouses",
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=(
            "One “REMOTE LOCATION = WAREHOUSE CODE” a line: which of your warehouses each of "
            "the 3PL's locations is. Fulfillment orders at these warehouses are sent to this "
            "3PL, and its stock levels correct them."
        ),
    )

    def __init__(
        self,
        info: ct.ConnectorInfo,
        *args: Any,
        editing: bool = False,
        stored_secrets: frozenset[str] = frozenset(),
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.info = info
        self.editing = editing
        self.stored_secrets = stored_secrets
        schema = info.settings_schema
        required = set(schema.get("required", ()))
        for name, spec in (schema.get("properties") or {}).items():
            secret = name in info.secret_fields
            field = _field_for(
                name,
                spec if isinstance(spec, Mapping) else {},
                secret=secret,
                required=name in required,
                editing=editing and (name in stored_secrets or not secret),
            )
            if not secret and "default" in spec and self.initial.get(PREFIX + name) is None:
                field.initial = spec["default"]
            self.fields[PREFIX + name] = field
        if editing:
            self.fields["channel_key"].disabled = True
            self.fields["channel_key"].help_text = "Orders are filed under this channel name."
        if info.kind != ct.ConnectorKind.THREEPL:
            del self.fields["warehouse_map"]

    def plugin_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in self.fields if name.startswith(PREFIX)]

    def platform_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in self.fields if not name.startswith(PREFIX)]

    def clean_channel_key(self) -> str:
        return (self.cleaned_data.get("channel_key") or "").strip().lower()

    def clean_warehouse_map(self) -> dict[str, str]:
        text = self.cleaned_data.get("warehouse_map") or ""
        pairs = _parse_pairs(text)
        codes = {c.lower() for c in Warehouse.objects.values_list("code", flat=True)}
        unknown = sorted({v for v in pairs.values() if v.lower() not in codes})
        if unknown:
            raise forms.ValidationError(f"Unknown warehouse code(s): {', '.join(unknown)}.")
        return pairs

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        values = self.values()
        # Stored secrets satisfy "required" when editing; their values stay unread here.
        check = {**values, **dict.fromkeys(self.stored_secrets - set(values), "x" * 64)}
        validator = jsonschema.Draft202012Validator(dict(self.info.settings_schema))
        for error in validator.iter_errors(check):
            if error.validator == "required":
                missing = error.message.split("'")[1] if error.message.count("'") >= 2 else ""
                target = PREFIX + missing if PREFIX + missing in self.fields else None
                if target and target not in self.errors:
                    self.add_error(target, "This field is required.")
                continue
            field = str(error.path[0]) if error.path else ""
            if field in self.stored_secrets and field not in values:
                continue  # the placeholder stands in for a stored secret
            target = PREFIX + field if PREFIX + field in self.fields else None
            if target is None or target not in self.errors:
                self.add_error(target, _rule_message(error))
        return cleaned

    def values(self) -> dict[str, Any]:
        """Schema values entered: blanks left out, so the connector's defaults apply and
        stored secrets are kept."""
        out: dict[str, Any] = {}
        for name, value in self.cleaned_data.items():
            if not name.startswith(PREFIX):
                continue
            key = name[len(PREFIX) :]
            if value in (None, "", [], {}):
                if isinstance(self.fields[name], forms.BooleanField):
                    out[key] = False
                continue
            out[key] = value
        return out

    def settings(self) -> dict[str, Any]:
        return {k: v for k, v in self.values().items() if k not in self.info.secret_fields}

    def credentials(self) -> dict[str, Any]:
        return {k: v for k, v in self.values().items() if k in self.info.secret_fields}


def initial_for(conn: Any, info: ct.ConnectorInfo) -> dict[str, Any]:
    """Edit form values from a stored connection (settings only, never credentials)."""
    initial: dict[str, Any] = {
        "display_name": conn.display_name,
        "channel_key": conn.channel_key,
        "poll_interval": conn.poll_interval,
        "warehouse_map": "\n".join(f"{k} = {v}" for k, v in conn.warehouse_map.items()),
    }
    for name, value in conn.settings.items():
        if name not in info.secret_fields:
            initial[PREFIX + name] = value
    return initial


def dumps_setting(value: Any) -> str:
    """A stored setting as shown on the connection page."""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)
