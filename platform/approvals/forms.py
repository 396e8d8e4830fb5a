"""Forms for the approvals pages. They parse input; approvals.services decides."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from django import forms

from accounts.roles import Role
from approvals import registry
from approvals.models import ApprovalPolicy, EmailMode, RequestState

MONEY = {"max_digits": 14, "decimal_places": 2, "min_value": Decimal("0")}


class DecisionForm(forms.Form):
    verdict = forms.ChoiceField(choices=[("approve", "Approve"), ("reject", "Reject")])
    comment = forms.CharField(
        max_length=2000,
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Required to reject: the requester sees it.",
    )


class BulkApproveForm(forms.Form):
    ids = forms.TypedMultipleChoiceField(coerce=int, choices=[], required=True)
    comment = forms.CharField(max_length=2000, required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Any id may be asked for; the service says which ones this person may approve.
        raw = self.data.getlist("ids") if hasattr(self.data, "getlist") else []
        self.fields["ids"].choices = [(v, v) for v in raw if str(v).isdigit()]
        self.fields["ids"].error_messages["required"] = "Select the requests to approve."


class CommentForm(forms.Form):
    body = forms.CharField(
        label="Comment", max_length=2000, widget=forms.Textarea(attrs={"rows": 2})
    )


class CancelForm(forms.Form):
    reason = forms.CharField(max_length=2000, required=False)


class PreferenceForm(forms.Form):
    email = forms.ChoiceField(choices=EmailMode.choices, label="Email me about approvals")


class SettingsForm(forms.Form):
    webhook_url = forms.URLField(
        label="Webhook URL",
        max_length=500,
        required=False,
        assume_scheme="https",
        # A text box (not type=url): the styles size text inputs, and the server checks.
        widget=forms.TextInput(
            attrs={"inputmode": "url", "placeholder": "https://hooks.slack.com/services/…"}
        ),
        help_text=(
            "Keel posts Slack-compatible JSON here when a request is opened, escalated or "
            "decided, signed with the secret below (header X-Keel-Signature). Leave empty "
            "for none."
        ),
    )


def _subject_choices(current: str = "") -> list[tuple[str, str]]:
    keys = set(registry.KNOWN_LABELS) | {t.key for t in registry.registered()}
    keys |= set(ApprovalPolicy.objects.values_list("subject_type", flat=True))
    if current:
        keys.add(current)
    return sorted(((k, registry.label_for(k)) for k in keys), key=lambda c: c[1])


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.replace(";", ",").split(",") if part.strip()]


class PolicyForm(forms.Form):
    """One policy. Approver roles are a checkbox and an optional limit per role."""

    name = forms.CharField(max_length=120)
    subject_type = forms.ChoiceField(label="Applies to")
    position = forms.IntegerField(
        min_value=0, initial=100, help_text="Policies of one type are tried lowest first."
    )
    is_enabled = forms.BooleanField(label="Enabled", required=False, initial=True)
    amount_above = forms.DecimalField(
        label="When the amount is above", required=False, help_text="Brand currency.", **MONEY
    )
    variance_above = forms.DecimalField(
        label="When the variance is above (%)",
        required=False,
        max_digits=7,
        decimal_places=2,
        min_value=Decimal("0"),
    )
    sku_tags = forms.CharField(
        label="When a SKU is tagged", required=False, help_text="Any of these, comma-separated."
    )
    suppliers = forms.CharField(
        label="When the supplier is", required=False, help_text="Any of these, comma-separated."
    )
    required_approvals = forms.IntegerField(
        label="Different people who must approve", min_value=1, max_value=10, initial=1
    )
    allow_self_approval = forms.BooleanField(
        label="The requester may approve their own request", required=False
    )
    auto_approve_up_to = forms.DecimalField(
        label="Auto-approve up to",
        required=False,
        help_text="Requests at or below this amount are approved by Keel and logged.",
        **MONEY,
    )
    escalate_after_hours = forms.IntegerField(
        label="Escalate after (hours)", required=False, min_value=1
    )
    escalate_to = forms.MultipleChoiceField(
        label="Escalate to",
        choices=Role.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    expire_after_days = forms.IntegerField(label="Expire after (days)", required=False, min_value=1)

    def __init__(self, *args: Any, policy: ApprovalPolicy | None = None, **kwargs: Any) -> None:
        if policy is not None and "initial" not in kwargs:
            kwargs["initial"] = self.initial_for(policy)
        super().__init__(*args, **kwargs)
        self.fields["subject_type"].choices = _subject_choices(
            policy.subject_type if policy else ""
        )
        for value, label in Role.choices:
            self.fields[f"approve_{value}"] = forms.BooleanField(
                label=f"{label} may approve", required=False
            )
            self.fields[f"limit_{value}"] = forms.DecimalField(
                label=f"{label} limit", required=False, help_text="Empty: any amount.", **MONEY
            )

    @staticmethod
    def initial_for(policy: ApprovalPolicy) -> dict[str, Any]:
        initial: dict[str, Any] = {
            "name": policy.name,
            "subject_type": policy.subject_type,
            "position": policy.position,
            "is_enabled": policy.is_enabled,
            "amount_above": policy.amount_above,
            "variance_above": policy.variance_above,
            "sku_tags": ", ".join(policy.sku_tags),
            "suppliers": ", ".join(policy.suppliers),
            "required_approvals": policy.required_approvals,
            "allow_self_approval": policy.allow_self_approval,
            "auto_approve_up_to": policy.auto_approve_up_to,
            "escalate_after_hours": (
                int(policy.escalate_after.total_seconds() // 3600)
                if policy.escalate_after
                else None
            ),
            "escalate_to": policy.escalate_to,
            "expire_after_days": policy.expire_after.days if policy.expire_after else None,
        }
        for role, limit in (policy.approvers or {}).items():
            initial[f"approve_{role}"] = True
            initial[f"limit_{role}"] = limit
        return initial

    def role_rows(self) -> list[tuple[forms.BoundField, forms.BoundField]]:
        return [(self[f"approve_{v}"], self[f"limit_{v}"]) for v in Role.values]

    def policy_fields(self) -> dict[str, Any]:
        """The cleaned data as approvals.services.create_policy/update_policy take it."""
        data = self.cleaned_data
        hours, days = data.get("escalate_after_hours"), data.get("expire_after_days")
        return {
            "name": data["name"],
            "subject_type": data["subject_type"],
            "position": data["position"],
            "is_enabled": data["is_enabled"],
            "amount_above": data["amount_above"],
            "variance_above": data["variance_above"],
            "sku_tags": _split(data["sku_tags"]),
            "suppliers": _split(data["suppliers"]),
            "approvers": {
                role: (None if data[f"limit_{role}"] is None else str(data[f"limit_{role}"]))
                for role in Role.values
                if data.get(f"approve_{role}")
            },
            "required_approvals": data["required_approvals"],
            "allow_self_approval": data["allow_self_approval"],
            "auto_approve_up_to": data["auto_approve_up_to"],
            "escalate_after": timedelta(hours=hours) if hours else None,
            "escalate_to": data["escalate_to"],
            "expire_after": timedelta(days=days) if days else None,
        }


class InboxFilters(forms.Form):
    TABS = [("decide", "To decide"), ("mine", "My requests"), ("all", "All requests")]

    tab = forms.ChoiceField(choices=TABS, required=False)
    type = forms.ChoiceField(required=False)
    q = forms.CharField(required=False, max_length=100)
    state = forms.ChoiceField(choices=[("", "Any state"), *RequestState.choices], required=False)
    escalated = forms.BooleanField(required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["type"].choices = [("", "All types"), *_subject_choices()]

    def value(self, name: str) -> Any:
        # A malformed parameter is dropped (cleaned_data keeps only valid fields), so a
        # bad link still shows the page.
        self.is_valid()
        value = self.cleaned_data.get(name)
        if name == "tab":
            return value or "decide"
        return value
