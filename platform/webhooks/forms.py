from django import forms

from outbox.events import EVENT_TYPES
from webhooks.models import WebhookEndpoint


class EndpointForm(forms.Form):
    url = forms.URLField(
        label="Endpoint URL",
        max_length=WebhookEndpoint._meta.get_field("url").max_length,
        assume_scheme="https",
        # A text box (the shared stylesheet sizes text inputs) that phones still key as a URL.
        widget=forms.TextInput(attrs={"inputmode": "url", "placeholder": "https://"}),
        help_text="Keel POSTs signed JSON here. Must be https:// on a public address.",
    )
    description = forms.CharField(
        max_length=WebhookEndpoint._meta.get_field("description").max_length, required=False
    )
    event_types = forms.MultipleChoiceField(
        label="Events",
        choices=[(name, f"{name} — {text}") for name, text in EVENT_TYPES.items()],
        widget=forms.CheckboxSelectMultiple,
    )
    is_active = forms.BooleanField(
        label="Active", required=False, initial=True, help_text="Inactive endpoints get nothing."
    )
