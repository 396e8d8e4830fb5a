"""Forms for warehouses and stock actions. They parse input; inventory.services decides.

`SERVICE_ERROR_FIELDS` says which field a StockError code is about, so the error shows
next to what the person has to change.
"""

from __future__ import annotations

import zoneinfo

from django import forms
from django.core.exceptions import ValidationError

from catalog.forms import SKUCodeField
from inventory.models import (
    Capability,
    ReasonCode,
    StockStatus,
    Warehouse,
)

# Stock that people move by hand; in-transit stock only moves through transfers.
HAND_STATUSES = [(v, label) for v, label in StockStatus.choices if v != StockStatus.IN_TRANSIT]

SERVICE_ERROR_FIELDS = {
    "invalid_quantity": "quantity",
    "insufficient_stock": "quantity",
    "reason_required": "reason_code",
    "invalid_status": "status",
    "same_status": "to_status",
    "same_warehouse": "destination",
    "bundle_has_no_stock": "sku",
    "over_receipt": "quantity",
}


class WarehouseChoiceField(forms.ModelChoiceField):
    def __init__(self, **kwargs):
        kwargs.setdefault("queryset", Warehouse.objects.filter(is_active=True))
        kwargs.setdefault("empty_label", "Choose a warehouse")
        super().__init__(**kwargs)

    def label_from_instance(self, obj: Warehouse) -> str:
        return f"{obj.code} · {obj.name}"


class ReceiveForm(forms.Form):
    sku = SKUCodeField(allow_bundles=False)
    warehouse = WarehouseChoiceField()
    quantity = forms.IntegerField(min_value=1)
    status = forms.ChoiceField(
        choices=HAND_STATUSES,
        initial=StockStatus.SELLABLE,
        label="Receive as",
    )
    reference = forms.CharField(
        max_length=64, required=False, help_text="Packing slip or PO number, if any."
    )
    note = forms.CharField(max_length=500, required=False)


class AdjustForm(forms.Form):
    sku = SKUCodeField(allow_bundles=False)
    warehouse = WarehouseChoiceField()
    status = forms.ChoiceField(choices=HAND_STATUSES, initial=StockStatus.SELLABLE)
    quantity = forms.IntegerField(
        label="Change by",
        help_text="Units to add, or a negative number to remove (e.g. -3).",
    )
    reason_code = forms.ChoiceField(
        choices=[("", "Choose a reason"), *ReasonCode.choices],
        label="Reason",
        error_messages={"required": "Choose a reason for the adjustment."},
    )
    note = forms.CharField(max_length=500, required=False)

    def clean_quantity(self) -> int:
        value = self.cleaned_data["quantity"]
        if value == 0:
            raise ValidationError("Enter a change other than zero.")
        return value


class ChangeStatusForm(forms.Form):
    sku = SKUCodeField(allow_bundles=False)
    warehouse = WarehouseChoiceField()
    quantity = forms.IntegerField(min_value=1)
    status = forms.ChoiceField(choices=HAND_STATUSES, initial=StockStatus.SELLABLE, label="From")
    to_status = forms.ChoiceField(choices=HAND_STATUSES, initial=StockStatus.DAMAGED, label="To")
    note = forms.CharField(max_length=500, required=False)

    def clean(self) -> dict:
        cleaned = super().clean()
        if cleaned.get("status") and cleaned.get("status") == cleaned.get("to_status"):
            self.add_error("to_status", "Choose a status other than the one it has now.")
        return cleaned


class TransferForm(forms.Form):
    source = WarehouseChoiceField(label="From")
    destination = WarehouseChoiceField(label="To")
    note = forms.CharField(max_length=500, required=False)

    def clean(self) -> dict:
        cleaned = super().clean()
        source, destination = cleaned.get("source"), cleaned.get("destination")
        if source is not None and source == destination:
            self.add_error("destination", "Choose a warehouse other than the source.")
        return cleaned


class HoldForm(forms.Form):
    sku = SKUCodeField(allow_bundles=True)
    warehouse = WarehouseChoiceField()
    quantity = forms.IntegerField(min_value=1)
    note = forms.CharField(max_length=500, label="Why", help_text="e.g. Photoshoot samples")
    expires_at = forms.DateTimeField(
        required=False,
        label="Release automatically at",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        help_text="In the brand's timezone. Leave empty to hold until released.",
    )


class StartCountForm(forms.Form):
    warehouse = WarehouseChoiceField()
    note = forms.CharField(max_length=500, required=False, help_text="e.g. Aisle 4, shelf B")


class WarehouseForm(forms.ModelForm):
    capabilities = forms.MultipleChoiceField(
        choices=Capability.choices, required=False, widget=forms.CheckboxSelectMultiple
    )

    class Meta:
        model = Warehouse
        fields = [
            "code",
            "name",
            "kind",
            "is_active",
            "address_line1",
            "address_line2",
            "city",
            "state",
            "postal_code",
            "country",
            "latitude",
            "longitude",
            "timezone",
            "cutoff_time",
            "capabilities",
            "priority",
            "safety_buffer",
        ]
        labels = {
            "address_line1": "Address",
            "address_line2": "Address (line 2)",
            "state": "State / region",
            "is_active": "Active",
            "cutoff_time": "Order cutoff (local time)",
            "safety_buffer": "Safety buffer (units per SKU)",
        }
        help_texts = {
            "country": "Two-letter ISO code, e.g. US.",
            "timezone": "IANA name, e.g. America/Los_Angeles.",
            "latitude": "Decimal degrees, e.g. 34.052235.",
            "is_active": "Inactive warehouses get no orders and add nothing to available.",
        }
        widgets = {"cutoff_time": forms.TimeInput(attrs={"type": "time"}, format="%H:%M")}

    fieldsets = [
        ("Warehouse", ["code", "name", "kind", "is_active"]),
        (
            "Address",
            [
                "address_line1",
                "address_line2",
                "city",
                "state",
                "postal_code",
                "country",
                "latitude",
                "longitude",
            ],
        ),
        (
            "Operations",
            ["timezone", "cutoff_time", "capabilities", "priority", "safety_buffer"],
        ),
    ]

    def clean_code(self) -> str:
        code = self.cleaned_data["code"].strip()
        clash = Warehouse.objects.filter(code__iexact=code)
        if self.instance.pk:
            clash = clash.exclude(pk=self.instance.pk)
        if clash.exists():
            raise ValidationError(f"Another warehouse already has the code {code}.")
        return code

    def clean_country(self) -> str:
        value = self.cleaned_data["country"].strip().upper()
        if len(value) != 2 or not value.isalpha():
            raise ValidationError("Use the two-letter ISO 3166 code, e.g. US.")
        return value

    def clean_timezone(self) -> str:
        value = self.cleaned_data["timezone"].strip()
        if value not in zoneinfo.available_timezones():
            raise ValidationError("Unknown timezone; use an IANA name like America/Chicago.")
        return value

    def clean(self) -> dict:
        cleaned = super().clean()
        latitude, longitude = cleaned.get("latitude"), cleaned.get("longitude")
        if (latitude is None) != (longitude is None) and not self.errors:
            self.add_error("longitude", "Give both latitude and longitude, or neither.")
        if latitude is not None and not -90 <= latitude <= 90:
            self.add_error("latitude", "Latitude is between -90 and 90.")
        if longitude is not None and not -180 <= longitude <= 180:
            self.add_error("longitude", "Longitude is between -180 and 180.")
        return cleaned

    def grouped(self) -> list[tuple[str, list]]:
        return [(label, [self[name] for name in names]) for label, names in self.fieldsets]
