"""Forms for the item master pages, plus the SKU-line inputs the stock pages share.

Forms only parse and check what a person typed; catalog.services and inventory.services
decide whether the change is allowed. Errors a service raises are put back on the form
with `apply_service_error`, on the field they concern when there is one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from django import forms
from django.core.exceptions import ValidationError
from django.db.models.functions import Lower
from django.urls import reverse_lazy

from catalog.gtin import validate_gtin
from catalog.models import SKU, LengthUnit, Lifecycle, Product, WeightUnit

LOOKUP_URL = reverse_lazy("catalog:sku_lookup")


def apply_service_error(
    form: forms.Form, exc: ValidationError, codes: Mapping[str, str] | None = None
) -> None:
    """Show a service's ValidationError/StockError on `form`.

    Field-keyed errors land on that field when the form has it; otherwise `codes` maps an
    error code (e.g. "reason_required") to the field it is about. The rest are non-field
    errors, shown above the form.
    """
    codes = codes or {}
    if hasattr(exc, "error_dict"):
        for name, errors in exc.error_dict.items():
            form.add_error(name if name in form.fields else None, errors)
        return
    for error in exc.error_list:
        target = codes.get(error.code or "")
        form.add_error(target if target in form.fields else None, error)


class SKUCodeInput(forms.TextInput):
    """A SKU code box that suggests codes as you type (htmx fills a shared datalist)."""

    def __init__(self, attrs: dict | None = None):
        defaults = {
            "list": "sku-codes",
            "autocomplete": "off",
            "hx-get": LOOKUP_URL,
            "hx-trigger": "keyup changed delay:300ms",
            "hx-target": "#sku-codes",
            "hx-swap": "innerHTML",
            "placeholder": "SKU code",
        }
        super().__init__({**defaults, **(attrs or {})})


class SKUCodeField(forms.CharField):
    """Takes a SKU code (any case) and cleans to the SKU."""

    widget = SKUCodeInput

    def __init__(self, *, allow_bundles: bool = True, **kwargs):
        self.allow_bundles = allow_bundles
        kwargs.setdefault("max_length", 64)
        kwargs.setdefault("label", "SKU")
        super().__init__(**kwargs)

    def prepare_value(self, value):
        return value.code if isinstance(value, SKU) else value

    def clean(self, value):
        code = super().clean(value)
        if not code:
            return None
        sku = SKU.objects.filter(code__iexact=code).first()
        if sku is None:
            raise ValidationError(f"No SKU has the code {code}.", code="unknown_sku")
        if sku.is_bundle and not self.allow_bundles:
            raise ValidationError(
                f"{sku.code} is a bundle: its stock is its components'.", code="bundle"
            )
        return sku


def _parse_options(text: str) -> dict[str, str]:
    options: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip() or not value.strip():
            raise ValidationError(
                f"Line {number}: write each option as Name: value, e.g. Size: M.",
                code="invalid_options",
            )
        options[name.strip()] = value.strip()
    return options


def _parse_tags(text: str) -> list[str]:
    tags: list[str] = []
    for raw in text.split(","):
        tag = raw.strip()
        if tag and tag not in tags:
            if len(tag) > 50:
                raise ValidationError("Tags are at most 50 characters.", code="tag_too_long")
            tags.append(tag)
    return tags


SKU_FORM_FIELDS = [
    "code",
    "title",
    "option_values",
    "gtin",
    "tags",
    "status",
    "weight",
    "weight_unit",
    "length",
    "width",
    "height",
    "dimension_unit",
    "unit_cost",
    "cost_currency",
    "is_hazmat",
    "is_oversize",
]


class SKUForm(forms.Form):
    """Create or edit a SKU. On create the product is picked or created in the same form."""

    product = forms.ModelChoiceField(
        queryset=Product.objects.all(),
        required=False,
        empty_label="— new product —",
        help_text="The product this SKU is a variant of.",
    )
    new_product_title = forms.CharField(
        max_length=255, required=False, label="…or a new product named"
    )
    code = forms.CharField(max_length=64, label="SKU code")
    title = forms.CharField(max_length=255, required=False)
    option_values = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        required=False,
        label="Options",
        help_text="One per line, e.g. Size: M",
    )
    gtin = forms.CharField(
        max_length=14,
        required=False,
        label="GTIN / UPC / EAN",
        validators=[validate_gtin],
        help_text="8, 12, 13 or 14 digits including the check digit.",
    )
    tags = forms.CharField(max_length=500, required=False, help_text="Comma-separated.")
    status = forms.ChoiceField(choices=Lifecycle.choices, initial=Lifecycle.ACTIVE)
    weight = forms.DecimalField(max_digits=10, decimal_places=3, min_value=0, required=False)
    weight_unit = forms.ChoiceField(
        choices=WeightUnit.choices, initial=WeightUnit.GRAM, label="Weight unit"
    )
    length = forms.DecimalField(max_digits=10, decimal_places=2, min_value=0, required=False)
    width = forms.DecimalField(max_digits=10, decimal_places=2, min_value=0, required=False)
    height = forms.DecimalField(max_digits=10, decimal_places=2, min_value=0, required=False)
    dimension_unit = forms.ChoiceField(
        choices=LengthUnit.choices, initial=LengthUnit.CENTIMETRE, label="Dimension unit"
    )
    unit_cost = forms.DecimalField(max_digits=14, decimal_places=4, min_value=0, required=False)
    cost_currency = forms.CharField(
        max_length=3, required=False, label="Cost currency", help_text="ISO 4217, e.g. USD."
    )
    is_hazmat = forms.BooleanField(required=False, label="Hazardous material")
    is_oversize = forms.BooleanField(required=False, label="Oversize")

    def __init__(self, *args, sku: SKU | None = None, **kwargs):
        self.sku = sku
        if sku is not None and "initial" not in kwargs:
            kwargs["initial"] = self.initial_for(sku)
        super().__init__(*args, **kwargs)
        if sku is not None:
            # A SKU stays with its product; the services have no way to move it.
            del self.fields["product"]
            del self.fields["new_product_title"]

    @staticmethod
    def initial_for(sku: SKU) -> dict:
        initial = {name: getattr(sku, name) for name in SKU_FORM_FIELDS}
        initial["option_values"] = "\n".join(f"{k}: {v}" for k, v in sku.option_values.items())
        initial["tags"] = ", ".join(sku.tags)
        initial["gtin"] = sku.gtin or ""
        return initial

    def clean_code(self) -> str:
        code = self.cleaned_data["code"].strip()
        clash = SKU.objects.filter(code__iexact=code)
        if self.sku is not None:
            clash = clash.exclude(pk=self.sku.pk)
        if clash.exists():
            raise ValidationError(f"Another SKU already has the code {code}.", code="duplicate")
        return code

    def clean_gtin(self) -> str:
        return self.cleaned_data["gtin"].strip()

    def clean_option_values(self) -> dict[str, str]:
        return _parse_options(self.cleaned_data["option_values"])

    def clean_tags(self) -> list[str]:
        return _parse_tags(self.cleaned_data["tags"])

    def clean_cost_currency(self) -> str:
        value = self.cleaned_data["cost_currency"].strip().upper()
        if value and (len(value) != 3 or not value.isalpha()):
            raise ValidationError("Use a three-letter ISO 4217 code, e.g. USD.")
        return value

    def clean(self) -> dict:
        cleaned = super().clean()
        if self.sku is None:
            product, title = cleaned.get("product"), cleaned.get("new_product_title", "").strip()
            if product is None and not title and "product" not in self.errors:
                self.add_error("product", "Pick a product, or name a new one below.")
            elif product is not None and title:
                self.add_error(
                    "new_product_title", "Leave this empty when you pick an existing product."
                )
        if cleaned.get("unit_cost") is not None and not cleaned.get("cost_currency"):
            self.add_error("cost_currency", "Say which currency the unit cost is in.")
        return cleaned

    def sku_fields(self) -> dict:
        """The cleaned values under the names catalog.services takes."""
        data = {name: self.cleaned_data[name] for name in SKU_FORM_FIELDS}
        if data["unit_cost"] is None:
            data["cost_currency"] = ""
        return data

    def new_product(self) -> dict | None:
        """Fields for create_product when the person named a new product, else None."""
        if self.sku is not None or self.cleaned_data.get("product") is not None:
            return None
        # A product created alongside its first SKU starts in the same lifecycle state.
        return {
            "title": self.cleaned_data["new_product_title"].strip(),
            "status": self.cleaned_data["status"],
        }

    def fieldsets(self) -> list[tuple[str, list]]:
        """Groups for the template, so units sit next to the numbers they qualify."""
        groups = [
            ("Identity", ["code", "title", "status", "gtin", "option_values", "tags"]),
            ("Weight", ["weight", "weight_unit"]),
            ("Dimensions (L × W × H)", ["length", "width", "height", "dimension_unit"]),
            ("Cost", ["unit_cost", "cost_currency"]),
            ("Handling", ["is_hazmat", "is_oversize"]),
        ]
        if self.sku is None:
            groups.insert(0, ("Product", ["product", "new_product_title"]))
        return [(label, [self[name] for name in names]) for label, names in groups]


class ResolveUnmappedForm(forms.Form):
    sku = SKUCodeField(label="Map to SKU")


# --- Repeated SKU lines ------------------------------------------------------------------


@dataclass
class Line:
    """One row of SKU code + quantity as typed, and what it cleaned to."""

    code: str = ""
    quantity: str = ""
    sku: SKU | None = None
    value: int | None = None
    hint: str = ""
    errors: list[str] = field(default_factory=list)


class SKULines:
    """Any number of (SKU code, quantity) rows posted as repeated `line_sku`/`line_qty`.

    Repeated names instead of a formset: htmx can append a blank row without renumbering
    a management form (pages without JS get a few blank rows). Rows left entirely blank
    are ignored.
    """

    def __init__(
        self,
        data: Mapping | None = None,
        *,
        initial: Iterable[Line] = (),
        min_quantity: int = 1,
        blank_rows: int = 3,
        allow_bundles: bool = True,
        quantity_label: str = "Quantity",
        skip_without_quantity: bool = False,
    ):
        self.min_quantity = min_quantity
        # Count sheets list SKUs up front; a row nobody filled in is "not counted yet".
        self.skip_without_quantity = skip_without_quantity
        self.allow_bundles = allow_bundles
        self.quantity_label = quantity_label
        self.non_field_errors: list[str] = []
        self.is_bound = data is not None
        if data is not None:
            codes = data.getlist("line_sku")
            quantities = data.getlist("line_qty")
            width = max(len(codes), len(quantities))
            codes += [""] * (width - len(codes))
            quantities += [""] * (width - len(quantities))
            self.lines = [
                Line(code=c.strip(), quantity=q.strip())
                for c, q in zip(codes, quantities, strict=True)
            ]
        else:
            self.lines = list(initial) + [Line() for _ in range(blank_rows)]
        self._cleaned = False

    def is_valid(self) -> bool:
        if not self.is_bound:
            return False
        if not self._cleaned:
            self._clean()
        return bool(self._filled()) and not self.has_errors()

    def _filled(self) -> list[Line]:
        if self.skip_without_quantity:
            return [line for line in self.lines if line.quantity]
        return [line for line in self.lines if line.code or line.quantity]

    def has_errors(self) -> bool:
        return bool(self.non_field_errors) or any(line.errors for line in self.lines)

    def _clean(self) -> None:
        self._cleaned = True
        filled = self._filled()
        if not filled:
            self.non_field_errors.append("Add at least one line.")
            return
        wanted = {line.code.lower() for line in filled if line.code}
        found = {
            sku.code_lower: sku
            for sku in SKU.objects.annotate(code_lower=Lower("code")).filter(code_lower__in=wanted)
        }
        seen: set[str] = set()
        for line in filled:
            if not line.code:
                line.errors.append("Enter a SKU code.")
            else:
                line.sku = found.get(line.code.lower())
                if line.sku is None:
                    line.errors.append(f"No SKU has the code {line.code}.")
                elif line.sku.is_bundle and not self.allow_bundles:
                    line.errors.append(f"{line.sku.code} is a bundle; list its components.")
                elif line.code.lower() in seen:
                    line.errors.append(f"{line.sku.code} is listed twice.")
                seen.add(line.code.lower())
            try:
                line.value = int(line.quantity)
            except ValueError:
                line.errors.append(f"Enter a whole number of {self.min_quantity} or more.")
                continue
            if line.value < self.min_quantity:
                line.errors.append(f"Enter a whole number of {self.min_quantity} or more.")

    @property
    def cleaned(self) -> list[tuple[SKU, int]]:
        return [
            (line.sku, line.value)
            for line in self.lines
            if line.sku is not None and line.value is not None
        ]

    def add_error(self, sku_code: str | None, message: str) -> None:
        """Attach a service's error to the row of `sku_code`, or above the lines."""
        if sku_code:
            for line in self.lines:
                if line.sku is not None and line.sku.code.lower() == sku_code.lower():
                    line.errors.append(message)
                    return
        self.non_field_errors.append(message)


def format_decimal(value: Decimal | None) -> str:
    """Decimals without trailing zeros: 1.500 kg reads as 1.5 kg."""
    if value is None:
        return ""
    return format(value.normalize(), "f")
