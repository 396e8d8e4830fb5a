"""Approvals pages: the inbox, one request, policies and notification settings.

Every decision goes through approvals.services, which checks the policy's approver roles,
limits and separation of duties; pages only choose what to show. htmx posts from the
inbox swap the request's card (and the navigation count, out of band); plain posts
redirect, so the pages work without JavaScript.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views import View

from accounts.roles import Role, has_permission
from accounts.views import RoleRequiredMixin
from approvals import registry, services
from approvals.forms import (
    BulkApproveForm,
    CancelForm,
    CommentForm,
    DecisionForm,
    InboxFilters,
    PolicyForm,
    PreferenceForm,
    SettingsForm,
)
from approvals.models import (
    ApprovalPolicy,
    ApprovalRequest,
    ApproverPreference,
    EmailMode,
    RequestState,
    Verdict,
)
from approvals.rules import Rules, money
from catalog.forms import apply_service_error

PAGE_SIZE = 50


def _querystring(request: HttpRequest) -> str:
    query = request.GET.copy()
    query.pop("page", None)
    return query.urlencode()


def _next(request: HttpRequest, default: str) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return target
    return default


def _context_of(approval: ApprovalRequest) -> registry.DecisionContext:
    if not registry.is_registered(approval.subject_type):
        return registry.DecisionContext(
            warnings=["Keel has no handler for this kind of request: it cannot be approved."]
        )
    return registry.get(approval.subject_type).context_for(approval)


def card(
    user: Any,
    approval: ApprovalRequest,
    *,
    form: DecisionForm | None = None,
    done: str = "",
    error: str = "",
) -> dict[str, Any]:
    """Everything one request's card shows."""
    rules = services.rules_of(approval)
    approvals = [d for d in approval.decisions.all() if d.verdict == Verdict.APPROVE]
    return {
        "approval": approval,
        "decision": _context_of(approval) if not done else None,
        "amount": money(approval.amount, approval.currency),
        "approvals": approvals,
        "rules": rules,
        "approvers": rules.describe_approvers(approval.currency),
        "escalates_to": ", ".join(Role(r).label for r in rules.escalate_to if r in Role.values),
        "can_decide": services.can_decide(user, approval),
        "form": form or DecisionForm(),
        "done": done,
        "error": error,
    }


def _groups(user: Any, requests: list[ApprovalRequest]) -> list[dict[str, Any]]:
    by_type: dict[str, list[ApprovalRequest]] = defaultdict(list)
    for approval in requests:
        by_type[approval.subject_type].append(approval)
    return sorted(
        (
            {
                "key": key,
                "label": registry.label_for(key),
                "count": len(items),
                "items": [card(user, a) for a in items],
            }
            for key, items in by_type.items()
        ),
        key=lambda g: g["label"],
    )


class InboxView(RoleRequiredMixin, View):
    """Requests waiting for the current person, grouped by type; their own requests; all."""

    permission = "approvals.view"
    template_name = "approvals/inbox.html"

    def context(self) -> dict[str, Any]:
        request, user = self.request, self.request.user
        filters = InboxFilters(request.GET)
        tab = filters.value("tab")
        base = ApprovalRequest.objects.all()
        if filters.value("type"):
            base = base.filter(subject_type=filters.value("type"))
        if filters.value("q"):
            q = filters.value("q")
            base = base.filter(Q(title__icontains=q) | Q(requested_by_label__icontains=q))
        waiting = services.decidable_requests(user)
        context: dict[str, Any] = {
            "tab": tab,
            "tabs": [
                ("decide", "To decide", len(waiting)),
                (
                    "mine",
                    "My requests",
                    ApprovalRequest.objects.pending().filter(requested_by=user).count(),
                ),
                ("all", "All requests", ApprovalRequest.objects.pending().count()),
            ],
            "filters": filters,
            "selected": {
                "type": filters.value("type") or "",
                "q": filters.value("q") or "",
                "state": filters.value("state") or "",
                "escalated": bool(filters.value("escalated")),
            },
            "querystring": _querystring(request),
            "preference": PreferenceForm(
                initial={
                    "email": ApproverPreference.objects.filter(user=user)
                    .values_list("email", flat=True)
                    .first()
                    or EmailMode.IMMEDIATE
                }
            ),
        }
        if tab == "decide":
            if filters.value("escalated"):
                base = base.filter(escalated_at__isnull=False)
            shown = services.decidable_requests(user, queryset=base)
            context["groups"] = _groups(user, shown)
            context["shown"] = len(shown)
            return context
        rows = base.select_related("policy_version").annotate(
            approval_count=Count("decisions", filter=Q(decisions__verdict=Verdict.APPROVE))
        )
        if tab == "mine":
            rows = rows.filter(requested_by=user)
        if filters.value("state"):
            rows = rows.filter(state=filters.value("state"))
        context["page"] = Paginator(rows.order_by("-id"), PAGE_SIZE).get_page(
            request.GET.get("page")
        )
        return context

    def get(self, request: HttpRequest) -> HttpResponse:
        template = self.template_name + ("#results" if request.htmx else "")
        return render(request, template, self.context())


class RequestDetailView(RoleRequiredMixin, View):
    permission = "approvals.view"
    template_name = "approvals/detail.html"

    def get(self, request: HttpRequest, pk: int) -> HttpResponse:
        return self.page(get_object_or_404(ApprovalRequest, pk=pk))

    def page(
        self, approval: ApprovalRequest, *, form: DecisionForm | None = None, status: int = 200
    ) -> HttpResponse:
        user = self.request.user
        person = getattr(user, "pk", None)
        context = {
            **card(user, approval, form=form),
            "decisions": approval.decisions.all(),
            "comments": approval.comments.all(),
            "comment_form": CommentForm(),
            "can_cancel": approval.is_pending
            and (
                approval.requested_by_id == person
                or has_permission(user, "approvals.manage_policies")
            ),
            "refusal": services.refusal(user, approval),
            "rules_text": Rules.from_values(approval.policy_version.rules).describe_conditions(
                approval.currency
            ),
            "history": ApprovalRequest.objects.for_subject(
                approval.subject_type, approval.subject_id
            ).exclude(pk=approval.pk),
        }
        return render(self.request, self.template_name, context, status=status)


def _decided_message(approval: ApprovalRequest) -> str:
    if approval.state == RequestState.APPROVED:
        return f"Approved: {approval.title}."
    if approval.state == RequestState.REJECTED:
        return f"Rejected: {approval.title}. The requester sees your reason."
    done = sum(1 for d in approval.decisions.all() if d.verdict == Verdict.APPROVE)
    return f"Your approval is recorded ({done} of {approval.required_approvals})."


class DecideView(RoleRequiredMixin, View):
    """Approve or reject one request (the card's form: two buttons, one comment)."""

    permission = "approvals.view"

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        approval = get_object_or_404(ApprovalRequest, pk=pk)
        form = DecisionForm(request.POST)
        error, done, status = "", "", 422
        if form.is_valid():
            decide = (
                services.approve if form.cleaned_data["verdict"] == "approve" else (services.reject)
            )
            try:
                approval = decide(
                    approval, actor=request.user, comment=form.cleaned_data["comment"]
                )
            except PermissionDenied as exc:
                if not request.htmx:
                    raise
                error = str(exc)
            except ValidationError as exc:
                apply_service_error(form, exc)
                status = 409 if isinstance(exc, services.ApprovalConflict) else 422
            else:
                done = _decided_message(approval)
        approval.refresh_from_db()
        if request.htmx:
            # htmx swaps only 2xx responses: the card carries its own errors.
            context = {
                "item": card(request.user, approval, form=form, done=done, error=error),
                "in_inbox": True,
                "nav_badge": services.pending_count_for(request.user),
            }
            return render(request, "approvals/inbox.html#card-response", context)
        if done:
            messages.success(request, done)
            return redirect(_next(request, reverse("approvals:detail", args=[approval.pk])))
        detail = RequestDetailView()
        detail.request = request
        return detail.page(approval, form=form, status=status)


class BulkApproveView(RoleRequiredMixin, View):
    permission = "approvals.view"

    def post(self, request: HttpRequest) -> HttpResponse:
        form = BulkApproveForm(request.POST)
        if form.is_valid():
            result = services.bulk_approve(
                form.cleaned_data["ids"], actor=request.user, comment=form.cleaned_data["comment"]
            )
            if result.approved:
                n = len(result.approved)
                messages.success(request, f"Approved {n} request{'s' if n != 1 else ''}.")
            for pk, message in result.failed:
                messages.error(request, f"Request #{pk} not approved: {message}")
        else:
            messages.error(request, " ".join(form.errors.get("ids", ["Nothing selected."])))
        if request.htmx:
            view = InboxView()
            view.request = request
            context = {**view.context(), "nav_badge": services.pending_count_for(request.user)}
            return render(request, "approvals/inbox.html#results", context)
        return redirect(_next(request, reverse("approvals:inbox")))


class CommentView(RoleRequiredMixin, View):
    permission = "approvals.view"

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        approval = get_object_or_404(ApprovalRequest, pk=pk)
        form = CommentForm(request.POST)
        if form.is_valid():
            try:
                services.add_comment(approval, actor=request.user, body=form.cleaned_data["body"])
            except ValidationError as exc:
                messages.error(request, " ".join(exc.messages))
            else:
                messages.success(request, "Comment added.")
        else:
            messages.error(request, "Write a comment first.")
        return redirect(reverse("approvals:detail", args=[approval.pk]) + "#comments")


class CancelView(RoleRequiredMixin, View):
    permission = "approvals.view"

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        approval = get_object_or_404(ApprovalRequest, pk=pk)
        form = CancelForm(request.POST)
        form.is_valid()
        try:
            services.cancel(
                approval, actor=request.user, reason=form.cleaned_data.get("reason", "")
            )
        except services.ApprovalConflict as exc:
            messages.error(request, " ".join(exc.messages))
        else:
            messages.success(request, "Request cancelled.")
        return redirect(reverse("approvals:detail", args=[approval.pk]))


class PreferenceView(RoleRequiredMixin, View):
    permission = "approvals.view"

    def post(self, request: HttpRequest) -> HttpResponse:
        form = PreferenceForm(request.POST)
        if form.is_valid():
            services.set_email_mode(user=request.user, mode=form.cleaned_data["email"])
            messages.success(request, "Email preference saved.")
        return redirect(_next(request, reverse("approvals:inbox")))


# --- Policies and settings ------------------------------------------------------------------


class PolicyListView(RoleRequiredMixin, View):
    permission = "approvals.view"
    template_name = "approvals/policies.html"

    def get(self, request: HttpRequest) -> HttpResponse:
        currency = request.tenant.currency
        groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for policy in ApprovalPolicy.objects.prefetch_related("versions"):
            rules = Rules.of(policy)
            groups[policy.subject_type].append(
                {
                    "policy": policy,
                    "conditions": rules.describe_conditions(currency),
                    "approvers": rules.describe_approvers(currency),
                    "auto": money(rules.auto_approve_up_to, currency)
                    if rules.auto_approve_up_to is not None
                    else "",
                    "rules": rules,
                    "escalation": (
                        f"After {services.humanize(rules.escalate_after)} to "
                        + ", ".join(Role(r).label for r in rules.escalate_to if r in Role.values)
                        if rules.escalate_after
                        else ""
                    ),
                    "expiry": (
                        f"Expires after {services.humanize(rules.expire_after)}"
                        if rules.expire_after
                        else "Never expires"
                    ),
                    "versions": list(policy.versions.all()[:10]),
                }
            )
        context = {
            "groups": sorted(
                (
                    {
                        "label": registry.label_for(key),
                        "key": key,
                        "live": registry.is_registered(key),
                        "policies": items,
                    }
                    for key, items in groups.items()
                ),
                key=lambda g: g["label"],
            )
        }
        return render(request, self.template_name, context)


class PolicyFormView(RoleRequiredMixin, View):
    permission = "approvals.manage_policies"
    template_name = "approvals/policy_form.html"

    def get(self, request: HttpRequest, pk: int | None = None) -> HttpResponse:
        policy = get_object_or_404(ApprovalPolicy, pk=pk) if pk else None
        form = PolicyForm(policy=policy) if policy else PolicyForm(initial={"approve_owner": True})
        return render(request, self.template_name, {"form": form, "policy": policy})

    def post(self, request: HttpRequest, pk: int | None = None) -> HttpResponse:
        policy = get_object_or_404(ApprovalPolicy, pk=pk) if pk else None
        form = PolicyForm(request.POST, policy=policy)
        if form.is_valid():
            try:
                if policy is None:
                    saved = services.create_policy(actor=request.user, **form.policy_fields())
                else:
                    saved = services.update_policy(
                        policy, actor=request.user, **form.policy_fields()
                    )
            except ValidationError as exc:
                apply_service_error(form, exc)
            else:
                messages.success(request, f"Policy “{saved.name}” saved (version {saved.version}).")
                return redirect(reverse("approvals:policies") + f"#policy-{saved.pk}")
        return render(request, self.template_name, {"form": form, "policy": policy}, status=422)


class SettingsView(RoleRequiredMixin, View):
    permission = "approvals.manage_policies"
    template_name = "approvals/settings.html"

    def render_page(self, form: SettingsForm | None = None, status: int = 200) -> HttpResponse:
        row = services.load_settings()
        form = form or SettingsForm(initial={"webhook_url": row.webhook_url})
        context = {
            "form": form,
            "secret": services.webhook_signing_secret(),
            "deliveries": services.recent_deliveries(),
        }
        response = render(self.request, self.template_name, context, status=status)
        response["Cache-Control"] = "no-store"
        return response

    def get(self, request: HttpRequest) -> HttpResponse:
        return self.render_page()

    def post(self, request: HttpRequest) -> HttpResponse:
        if request.POST.get("action") == "rotate":
            services.rotate_webhook_secret(actor=request.user)
            messages.success(request, "New webhook secret made. Update your receiver.")
            return redirect("approvals:settings")
        form = SettingsForm(request.POST)
        if form.is_valid():
            try:
                services.update_settings(
                    actor=request.user, webhook_url=form.cleaned_data["webhook_url"]
                )
            except ValidationError as exc:
                apply_service_error(form, exc)
            else:
                messages.success(request, "Approval settings saved.")
                return redirect("approvals:settings")
        return self.render_page(form, status=422)
