"""Forms of the purchasing pages. They only shape input; purchasing.services decides."""

from __future__ import annotations

from django import forms

from catalog.forms import SKUCodeInput
from catalog.models import SKU
from inventory.models import Warehouse
from purchasing.models import Supplier


class SupplierForm(forms.ModelForm):
    class Meta:
        model = Supplier
        fields = [
            "code",
            "name",
            "contact_name",
            "email",
            "phone",
            "address",
            "currency",
            "payment_terms",
            "quoted_lead_time_days",
            "is_active",
            "notes",
        ]
        widgets = {
            "address": forms.Textarea(attrs={"rows": 3}),
            "notes": forms.Textarea(attrs={"rows": 3}),
        }
        labels = {"quoted_lead_time_days": "Quoted lead time (days)"}

    def validate_unique(self) -> None:
        # The service checks the code (case-insensitively) and reports it on the field.
        return


class SupplierSKUForm(forms.Form):
    sku = forms.CharField(label="SKU code", max_length=64, widget=SKUCodeInput())
    supplier_code = forms.CharField(label="Supplier's code", max_length=64, required=False)
    unit_cost = forms.DecimalField(min_value=0, max_digits=14, decimal_places=4)
    currency = forms.CharField(max_length=3, required=False, help_text="Blank: the supplier's")
    moq = forms.IntegerField(label="Minimum order", min_value=1, initial=1)
    case_pack = forms.IntegerField(label="Case pack", min_value=1, initial=1)
    lead_time_days = forms.IntegerField(
        label="Lead time (days)", min_value=0, required=False, help_text="Blank: the quoted one"
    )
    is_preferred = forms.BooleanField(label="Preferred supplier for this SKU", required=False)

    def clean_sku(self) -> SKU:
        code = self.cleaned_data["sku"].strip()
        sku = SKU.objects.filter(code__iexact=code).first()
        if sku is None:
            raise forms.ValidationError(f"No SKU has the code {code}.")
        return sku


class PurchaseOrderForm(forms.Form):
    supplier = forms.ModelChoiceField(queryset=Supplier.objects.filter(is_active=True))
    warehouse = forms.ModelChoiceField(
        label="Ship to", queryset=Warehouse.objects.filter(is_active=True)
    )
    expected_on = forms.DateField(
        label="Expected on",
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="Blank: today plus the longest lead time of the lines",
    )
    note = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))


class ReasonForm(forms.Form):
    reason = forms.CharField(max_length=500)


class RescheduleForm(forms.Form):
    expected_on = forms.DateField(
        label="New expected date", widget=forms.DateInput(attrs={"type": "date"})
    )
    reason = forms.CharField(max_length=500)
