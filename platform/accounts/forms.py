from django import forms
from django.contrib.auth import password_validation

from accounts.models import User
from accounts.roles import ASSIGNABLE_ROLES, Role, Scope


class InviteForm(forms.Form):
    email = forms.EmailField(max_length=254)
    role = forms.ChoiceField(choices=Role.choices, initial=Role.VIEWER)

    def __init__(self, *args, actor: User, **kwargs):
        super().__init__(*args, **kwargs)
        allowed = ASSIGNABLE_ROLES.get(actor.role, ())
        self.fields["role"].choices = [(v, label) for v, label in Role.choices if v in allowed]


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class AcceptInvitationForm(forms.Form):
    full_name = forms.CharField(max_length=150)
    password = forms.CharField(widget=forms.PasswordInput, strip=False)

    def __init__(self, *args, email: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.email = email

    def clean(self):
        cleaned = super().clean()
        password = cleaned.get("password")
        if password:
            probe = User(email=self.email, full_name=cleaned.get("full_name", ""))
            try:
                password_validation.validate_password(password, probe)
            except forms.ValidationError as exc:
                self.add_error("password", exc)
        return cleaned


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="Who or what uses this key, e.g. 'Looker'.")
    scope = forms.ChoiceField(choices=Scope.choices, initial=Scope.READ)


class BrandSettingsForm(forms.Form):
    name = forms.CharField(max_length=100)
    timezone = forms.CharField(max_length=64)
    currency = forms.CharField(max_length=3, min_length=3)

    def clean_timezone(self) -> str:
        import zoneinfo

        value = self.cleaned_data["timezone"]
        if value not in zoneinfo.available_timezones():
            raise forms.ValidationError("Unknown timezone; use an IANA name like Europe/Paris.")
        return value

    def clean_currency(self) -> str:
        value = self.cleaned_data["currency"].upper()
        if not value.isalpha():
            raise forms.ValidationError("Use a three-letter ISO 4217 code, e.g. USD.")
        return value
