"""Forms for the order pages: manual entry, a person's routing plan, fulfillment actions
and the routing-rule editor.

Forms only parse what a person typed into the shapes orders.services takes; the services
decide whether it is allowed (e.g. `draft_rule_set` checks warehouse codes and that a rule
has an action) and their errors are put back on the form by the views.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from decimal import Decimal, InvalidOperation

from django import forms
from django.core.exceptions import ValidationError
from django.forms import formset_factory
from django.utils.datastructures import MultiValueDict

from catalog.forms import Line, SKULines
from catalog.models import SKU
from inventory.models import Capability, Warehouse
from orders import routing
from orders.models import OrderLine, OrderType, ServiceLevel, ShipType

# --- Manual order entry ----------------------------------------------------------------


class ManualOrderForm(forms.Form):
    """Header of an order typed in by a person (wholesale / B2B by default)."""

    # Generated when the form is shown and posted back: a double-submitted form carries
    # the same id, so ingestion (idempotent per channel + external id) makes one order.
    external_id = forms.CharField(max_length=40, widget=forms.HiddenInput)
    customer_name = forms.CharField(max_length=200, label="Customer")
    customer_email = forms.EmailField(required=False, label="Customer email")
    order_type = forms.ChoiceField(choices=OrderType.choices, initial=OrderType.WHOLESALE)
    service_level = forms.ChoiceField(choices=ServiceLevel.choices, initial=ServiceLevel.STANDARD)
    currency = forms.CharField(max_length=3, help_text="ISO 4217, e.g. USD.")
    ship_company = forms.CharField(max_length=200, required=False, label="Company")
    ship_name = forms.CharField(max_length=200, required=False, label="Attention")
    ship_line1 = forms.CharField(max_length=200, label="Street")
    ship_line2 = forms.CharField(max_length=200, required=False, label="Street, line 2")
    ship_city = forms.CharField(max_length=100, label="City")
    ship_state = forms.CharField(max_length=100, required=False, label="State / region")
    ship_postal_code = forms.CharField(max_length=20, label="Postal code")
    ship_country = forms.CharField(
        max_length=2, initial="US", label="Country", help_text="Two letters, e.g. US."
    )
    ship_phone = forms.CharField(max_length=40, required=False, label="Phone")
    note = forms.CharField(
        max_length=1000,
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Customer PO, delivery window, dock hours…",
    )

    HEADER = ["customer_name", "customer_email", "order_type", "service_level", "currency"]
    SHIP_TO = [
        "ship_company",
        "ship_name",
        "ship_line1",
        "ship_line2",
        "ship_city",
        "ship_state",
        "ship_postal_code",
        "ship_country",
        "ship_phone",
    ]

    def clean_external_id(self) -> str:
        value = self.cleaned_data["external_id"].strip()
        if not value.replace("-", "").isalnum():
            raise ValidationError("This form is out of date; reload the page.")
        return value

    def clean_currency(self) -> str:
        value = self.cleaned_data["currency"].strip().upper()
        if len(value) != 3 or not value.isalpha():
            raise ValidationError("Use a three-letter ISO 4217 code, e.g. USD.")
        return value

    def clean_ship_country(self) -> str:
        value = self.cleaned_data["ship_country"].strip().upper()
        if len(value) != 2 or not value.isalpha():
            raise ValidationError("Use a two-letter country code, e.g. US.")
        return value

    def clean(self) -> dict:
        cleaned = super().clean()
        state = cleaned.get("ship_state", "").strip().upper()
        # Routing places US orders by state; catch a typo here rather than as a held order.
        if cleaned.get("ship_country") == "US":
            if state not in routing.US_STATE_CENTROIDS:
                self.add_error("ship_state", "Use a two-letter US state code, e.g. CA.")
            else:
                cleaned["ship_state"] = state
        return cleaned

    def fieldsets(self) -> list[tuple[str, list]]:
        return [
            ("Order", [self[name] for name in [*self.HEADER, "note"]]),
            ("Ship to", [self[name] for name in self.SHIP_TO]),
        ]


@dataclass
class PricedLine(Line):
    price: str = ""
    unit_price: Decimal | None = None


class PricedLines(SKULines):
    """SKU code + quantity + unit price rows (`line_sku`, `line_qty`, `line_price`)."""

    def __init__(self, data: Mapping | None = None, *, blank_rows: int = 3):
        super().__init__(data, blank_rows=blank_rows, allow_bundles=True)
        prices = [p.strip() for p in data.getlist("line_price")] if data is not None else []
        while len(self.lines) < len(prices):
            self.lines.append(Line())
        self.lines = [
            PricedLine(
                **{f.name: getattr(line, f.name) for f in fields(Line)},
                price=prices[i] if i < len(prices) else "",
            )
            for i, line in enumerate(self.lines)
        ]

    def _filled(self) -> list[Line]:
        return [line for line in self.lines if line.code or line.quantity or line.price]

    def _clean(self) -> None:
        super()._clean()
        for line in self._filled():
            try:
                price = Decimal(line.price.replace(",", ""))
            except InvalidOperation:
                line.errors.append("Enter a unit price, e.g. 12.50.")
                continue
            if not price.is_finite() or price < 0 or price != price.quantize(Decimal("0.01")):
                line.errors.append("Enter a unit price of 0 or more, at most 2 decimals.")
                continue
            line.unit_price = price

    @property
    def priced(self) -> list[tuple[SKU, int, Decimal]]:
        return [
            (line.sku, line.value, line.unit_price)
            for line in self.lines
            if line.sku is not None and line.value is not None and line.unit_price is not None
        ]


# --- A person's plan for a held order --------------------------------------------------


class PlanForm(forms.Form):
    """One warehouse per order line (`line_<id>`), as choose_plan takes them."""

    note = forms.CharField(max_length=300, required=False, label="Note (optional)")

    def __init__(
        self,
        *args,
        lines: Sequence[OrderLine],
        warehouses: Sequence[Warehouse],
        available: Mapping[tuple[int, int], int] | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.lines = list(lines)
        available = available or {}
        for line in self.lines:
            choices = [("", "Pick a warehouse")]
            for wh in warehouses:
                label = wh.code
                if line.sku_id is not None and not line.sku.is_bundle:
                    label += f" · {available.get((line.sku_id, wh.pk), 0)} available"
                choices.append((wh.code, label))
            self.fields[self.field_name(line)] = forms.ChoiceField(
                choices=choices,
                label=f"{line.sku.code if line.sku_id else line.external_sku} × {line.quantity}",
            )

    @staticmethod
    def field_name(line: OrderLine) -> str:
        return f"line_{line.pk}"

    def line_fields(self) -> list[tuple[OrderLine, forms.BoundField]]:
        return [(line, self[self.field_name(line)]) for line in self.lines]

    def allocations(self) -> dict[str, list[int]]:
        plan: dict[str, list[int]] = {}
        for line in self.lines:
            plan.setdefault(self.cleaned_data[self.field_name(line)], []).append(line.pk)
        return plan


class ShipForm(forms.Form):
    tracking_number = forms.CharField(max_length=100, required=False, label="Tracking number")
    carrier = forms.CharField(max_length=100, required=False)


class ReasonForm(forms.Form):
    reason = forms.CharField(max_length=300)


class OrderCsvForm(forms.Form):
    """An orders CSV upload; orders.csv_import reads and checks the file itself."""

    channel = forms.CharField(
        max_length=100,
        initial="csv",
        help_text="Where these orders come from, e.g. csv, faire, retail-edi. Their SKUs map "
        "through this channel's listing mappings. A channel column in the file wins.",
    )
    file = forms.FileField(label="CSV file", help_text="UTF-8, one row per order line, ≤ 5 MB.")

    def clean_channel(self) -> str:
        return self.cleaned_data["channel"].strip()


# --- Routing rules ---------------------------------------------------------------------

# (condition key, form field, label) for the conditions typed as comma-separated lists.
LIST_CONDITIONS = [
    ("country_in", "countries", "ship-to country"),
    ("state_in", "states", "ship-to state"),
    ("postal_prefix_in", "postal_prefixes", "postal code starts with"),
    ("channel_in", "channels", "channel"),
    ("sku_tag_any", "sku_tags", "any SKU tagged"),
]
CHOICE_CONDITIONS = [
    ("order_type_in", "order_types", "order type", OrderType),
    ("service_level_in", "service_levels", "service level", ServiceLevel),
]
NUMBER_CONDITIONS = [
    ("weight_kg_gte", "weight_min", "weight (kg) at least"),
    ("weight_kg_lt", "weight_max", "weight (kg) below"),
    ("order_value_gte", "value_min", "order value at least"),
    ("order_value_lt", "value_max", "order value below"),
]
# Codes and states read the same in any case; channels and tags are matched exactly.
UPPERCASE_LISTS = {"countries", "states", "postal_prefixes"}


def _split(text: str, *, upper: bool) -> list[str]:
    values: list[str] = []
    for raw in text.split(","):
        value = raw.strip().upper() if upper else raw.strip()
        if value and value not in values:
            values.append(value)
    return values


def _number(value: Decimal) -> int | float:
    # Rules are JSON; whole numbers stay integers so they read back as typed.
    return int(value) if value == value.to_integral_value() else float(value)


class RuleForm(forms.Form):
    """One routing rule as friendly inputs; `to_rule()` gives the dict draft_rule_set takes."""

    name = forms.CharField(max_length=120)
    is_active = forms.BooleanField(required=False, initial=True, label="Active")
    countries = forms.CharField(required=False, label="Countries")
    states = forms.CharField(required=False, label="States")
    postal_prefixes = forms.CharField(required=False, label="Postal codes starting with")
    channels = forms.CharField(required=False, label="Channels")
    sku_tags = forms.CharField(required=False, label="Any SKU tagged")
    order_types = forms.MultipleChoiceField(
        choices=OrderType.choices,
        required=False,
        label="Order types",
        widget=forms.CheckboxSelectMultiple,
    )
    service_levels = forms.MultipleChoiceField(
        choices=ServiceLevel.choices,
        required=False,
        label="Service levels",
        widget=forms.CheckboxSelectMultiple,
    )
    weight_min = forms.DecimalField(
        required=False, min_value=0, max_digits=12, decimal_places=3, label="Weight ≥ (kg)"
    )
    weight_max = forms.DecimalField(
        required=False, min_value=0, max_digits=12, decimal_places=3, label="Weight < (kg)"
    )
    value_min = forms.DecimalField(
        required=False, min_value=0, max_digits=14, decimal_places=2, label="Order value ≥"
    )
    value_max = forms.DecimalField(
        required=False, min_value=0, max_digits=14, decimal_places=2, label="Order value <"
    )
    ship_from = forms.ChoiceField(required=False, label="Ship from")
    prefer = forms.MultipleChoiceField(
        required=False, label="Prefer", widget=forms.CheckboxSelectMultiple
    )
    require_capability = forms.ChoiceField(
        choices=[("", "—"), *Capability.choices], required=False, label="Require capability"
    )
    ship_type = forms.ChoiceField(
        choices=[("", "By weight and size"), *ShipType.choices], required=False, label="Ship type"
    )

    CONDITION_FIELDS = [
        "countries",
        "states",
        "postal_prefixes",
        "channels",
        "sku_tags",
        "weight_min",
        "weight_max",
        "value_min",
        "value_max",
    ]
    CHOICE_FIELDS = ["order_types", "service_levels"]
    ACTION_FIELDS = ["ship_from", "prefer", "require_capability", "ship_type"]

    def __init__(self, *args, warehouse_codes: Sequence[str] = (), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["ship_from"].choices = [("", "—"), *((c, c) for c in warehouse_codes)]
        self.fields["prefer"].choices = [(c, c) for c in warehouse_codes]
        for name in ("countries", "states", "postal_prefixes", "channels", "sku_tags"):
            self.fields[name].widget.attrs["placeholder"] = {
                "countries": "US, CA",
                "states": "CA, NV, AZ",
                "postal_prefixes": "900, 941",
                "channels": "shop, amazon",
                "sku_tags": "fragile, frozen",
            }[name]
        self.fields["channels"].widget.attrs["list"] = "rule-channels"
        for name in ("weight_min", "weight_max", "value_min", "value_max"):
            self.fields[name].widget.attrs["class"] = "qty"

    def clean(self) -> dict:
        cleaned = super().clean()
        for low, high in (("weight_min", "weight_max"), ("value_min", "value_max")):
            lo, hi = cleaned.get(low), cleaned.get(high)
            if lo is not None and hi is not None and lo >= hi:
                self.add_error(high, "Must be above the lower bound.")
        return cleaned

    def to_rule(self) -> dict:
        data = self.cleaned_data
        conditions: dict = {}
        for key, name, _ in LIST_CONDITIONS:
            values = _split(data[name], upper=name in UPPERCASE_LISTS)
            if values:
                conditions[key] = values
        for key, name, _, _ in CHOICE_CONDITIONS:
            if data[name]:
                conditions[key] = list(data[name])
        for key, name, _ in NUMBER_CONDITIONS:
            if data[name] is not None:
                conditions[key] = _number(data[name])
        actions: dict = {}
        if data["ship_from"]:
            actions["ship_from"] = data["ship_from"]
        if data["prefer"]:
            actions["prefer"] = list(data["prefer"])
        if data["require_capability"]:
            actions["require_capability"] = data["require_capability"]
        if data["ship_type"]:
            actions["ship_type"] = data["ship_type"]
        return {
            "name": data["name"].strip(),
            "conditions": conditions,
            "actions": actions,
            "is_active": data["is_active"],
        }


RuleFormSet = formset_factory(RuleForm, extra=0, max_num=200, absolute_max=200)
RULE_PREFIX = "rules"


def rule_initial(name: str, conditions: dict, actions: dict, is_active: bool = True) -> dict:
    """Form values for a stored rule (the inverse of RuleForm.to_rule)."""
    row: dict = {"name": name, "is_active": is_active}
    for key, field_name, _ in LIST_CONDITIONS:
        row[field_name] = ", ".join(conditions.get(key, []))
    for key, field_name, _, _ in CHOICE_CONDITIONS:
        row[field_name] = list(conditions.get(key, []))
    for key, field_name, _ in NUMBER_CONDITIONS:
        row[field_name] = conditions.get(key)
    row["ship_from"] = actions.get("ship_from", "")
    row["prefer"] = list(actions.get("prefer", []))
    row["require_capability"] = actions.get("require_capability", "")
    row["ship_type"] = actions.get("ship_type", "")
    return row


def blank_rule() -> dict:
    return rule_initial("", {}, {})


def is_blank(row: Mapping) -> bool:
    """A row the person added but never typed into (the Active box is ticked by default)."""
    return not any(value for name, value in row.items() if name != "is_active")


def formset_data(rows: Sequence[Mapping]) -> dict:
    """POST-shaped data for RuleFormSet from raw row values, so rows can be moved, removed
    or dropped before validation without renumbering by hand."""
    data = MultiValueDict(
        {
            f"{RULE_PREFIX}-TOTAL_FORMS": [str(len(rows))],
            f"{RULE_PREFIX}-INITIAL_FORMS": [str(len(rows))],
            f"{RULE_PREFIX}-MIN_NUM_FORMS": ["0"],
            f"{RULE_PREFIX}-MAX_NUM_FORMS": ["200"],
        }
    )
    for i, row in enumerate(rows):
        for name, value in row.items():
            key = f"{RULE_PREFIX}-{i}-{name}"
            if isinstance(value, list | tuple):
                data.setlist(key, [str(v) for v in value])
            elif isinstance(value, bool):
                if value:
                    data[key] = "on"
            elif value is not None:
                data[key] = str(value)
    return data


def raw_rows(formset) -> list[dict]:
    """What each row of a posted formset holds, as typed (no validation)."""
    if not formset.management_form.is_valid():
        return []
    return [{name: form[name].value() for name in form.fields} for form in formset.forms]


# --- Rules in words (rule set page, simulator) -----------------------------------------


def _amount(value) -> str:
    try:
        return format(Decimal(str(value)).normalize(), "f")
    except InvalidOperation:  # a row as typed, not yet validated
        return str(value)


def describe_conditions(conditions: Mapping) -> list[str]:
    """Each condition as a short lower-case phrase ("ship-to state is CA, NV"); an empty
    list means the rule matches every order."""
    phrases = []
    for key, _, label in LIST_CONDITIONS:
        if key in conditions:
            phrases.append(f"{label} is {', '.join(conditions[key])}")
    for key, _, label, choices in CHOICE_CONDITIONS:
        if key in conditions:
            labels = dict(choices.choices)
            phrases.append(f"{label} is {', '.join(labels.get(v, v) for v in conditions[key])}")
    for key, _, label in NUMBER_CONDITIONS:
        if key in conditions:
            phrases.append(f"{label} {_amount(conditions[key])}")
    return phrases


def describe_actions(actions: Mapping) -> list[str]:
    phrases = []
    if "ship_from" in actions:
        phrases.append(f"Ship from {actions['ship_from']}")
    if actions.get("prefer"):
        phrases.append(f"Prefer {', '.join(actions['prefer'])}")
    if "require_capability" in actions:
        label = dict(Capability.choices).get(actions["require_capability"])
        phrases.append(f"Only warehouses with {label or actions['require_capability']}")
    if "ship_type" in actions:
        phrases.append(f"Ship as {dict(ShipType.choices).get(actions['ship_type'], '?')}")
    return phrases


def describe_row(row: Mapping) -> tuple[list[str], list[str]]:
    """(when, then) phrases for an editor row as typed, valid or not."""
    conditions: dict = {}
    for key, name, _ in LIST_CONDITIONS:
        values = _split(str(row.get(name) or ""), upper=name in UPPERCASE_LISTS)
        if values:
            conditions[key] = values
    for key, name, _, _ in CHOICE_CONDITIONS:
        if row.get(name):
            conditions[key] = list(row[name])
    for key, name, _ in NUMBER_CONDITIONS:
        if row.get(name) not in (None, ""):
            conditions[key] = row[name]
    actions = {key: row[key] for key in RuleForm.ACTION_FIELDS if row.get(key)}
    return describe_conditions(conditions), describe_actions(actions)


def rule_rows(rules: Iterable) -> list[dict]:
    """Stored rules with their conditions and actions in words, for read-only tables."""
    return [
        {
            "position": rule.position,
            "name": rule.name,
            "is_active": rule.is_active,
            "when": describe_conditions(rule.conditions),
            "then": describe_actions(rule.actions),
        }
        for rule in rules
    ]
