import uuid

from django import forms
from django.contrib.auth import password_validation
from django.core.exceptions import ValidationError

from accounts.models import User
from tenants.services import SLUG_MAX, validate_slug


class SignupForm(forms.Form):
    brand_name = forms.CharField(max_length=100, label="Brand name")
    slug = forms.CharField(
        max_length=SLUG_MAX + 10,  # longer input reaches validate_slug's clear message
        label="Subdomain",
        help_text="Lowercase letters, digits and hyphens. Your workspace lives at "
        "<subdomain>.%(domain)s.",
    )
    full_name = forms.CharField(max_length=150, label="Your name")
    # The column's length: a longer address must be a form error, not a failed insert.
    email = forms.EmailField(label="Work email", max_length=254)
    password = forms.CharField(widget=forms.PasswordInput, strip=False)
    signup_token = forms.UUIDField(widget=forms.HiddenInput, initial=uuid.uuid4)

    def __init__(self, *args, base_domain: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["slug"].help_text = self.fields["slug"].help_text % {"domain": base_domain}

    def clean_slug(self) -> str:
        slug = self.cleaned_data["slug"].strip().lower()
        validate_slug(slug)
        return slug

    def clean(self):
        cleaned = super().clean()
        password = cleaned.get("password")
        if password:
            probe = User(email=cleaned.get("email", ""), full_name=cleaned.get("full_name", ""))
            try:
                password_validation.validate_password(password, probe)
            except ValidationError as exc:
                self.add_error("password", exc)
        return cleaned
