"""People and access pages: sign-in, team, invitations, API keys, brand settings."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse, reverse_lazy
from django.views import View

from accounts import services
from accounts.forms import AcceptInvitationForm, ApiKeyForm, BrandSettingsForm, InviteForm, RoleForm
from accounts.models import ApiKey, Invitation, User
from accounts.roles import ASSIGNABLE_ROLES, Role, has_permission
from tenants.services import update_brand_profile


class RoleRequiredMixin(LoginRequiredMixin):
    """Page-level check against the role matrix (the API uses the same matrix)."""

    permission: str = ""

    def dispatch(self, request, *args, **kwargs):
        if not request.user.is_authenticated:
            return self.handle_no_permission()
        if not has_permission(request.user, self.permission):
            raise PermissionDenied("Your role does not allow this.")
        return super().dispatch(request, *args, **kwargs)

    def require(self, permission: str) -> None:
        if not has_permission(self.request.user, permission):
            raise PermissionDenied("Your role does not allow this.")


def _apply_errors(form, exc: ValidationError) -> None:
    if hasattr(exc, "error_dict"):
        for field, errors in exc.error_dict.items():
            form.add_error(field if field in form.fields else None, errors)
    else:
        form.add_error(None, exc)


class LoginView(auth_views.LoginView):
    template_name = "accounts/login.html"
    redirect_authenticated_user = True


class HandoffView(View):
    """Landing of the signup redirect: redeem the one-time token, sign the owner in."""

    def get(self, request: HttpRequest, token: str) -> HttpResponse:
        user = services.redeem_handoff(token)
        if user is None:
            messages.error(request, "That sign-in link has expired. Please sign in.")
            return redirect("accounts:login")
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, f"Welcome to Keel, {user.get_short_name()}.")
        return redirect("dashboard")


class TeamView(RoleRequiredMixin, View):
    permission = "team.view"
    template_name = "accounts/team.html"

    def context(self, invite_form=None) -> dict:
        user = self.request.user
        show_inactive = self.request.GET.get("status") == "inactive"
        people = User.objects.filter(is_active=not show_inactive)
        role = self.request.GET.get("role", "")
        if role in Role.values:
            people = people.filter(role=role)
        page = Paginator(people, 25).get_page(self.request.GET.get("page"))
        can_invite = has_permission(user, "team.invite")
        return {
            "page": page,
            "roles": Role.choices,
            "assignable": ASSIGNABLE_ROLES.get(user.role, ()),
            "role_filter": role,
            "show_inactive": show_inactive,
            "invitations": Invitation.objects.pending() if can_invite else [],
            "invite_form": invite_form or (InviteForm(actor=user) if can_invite else None),
        }

    def get(self, request: HttpRequest) -> HttpResponse:
        return render(request, self.template_name, self.context())


class InviteView(RoleRequiredMixin, View):
    permission = "team.invite"

    def post(self, request: HttpRequest) -> HttpResponse:
        form = InviteForm(request.POST, actor=request.user)
        if form.is_valid():
            try:
                issued = services.invite_user(
                    actor=request.user,
                    email=form.cleaned_data["email"],
                    role=form.cleaned_data["role"],
                    accept_url_for=lambda token: request.build_absolute_uri(
                        reverse("accounts:accept_invitation", args=[token])
                    ),
                )
            except ValidationError as exc:
                _apply_errors(form, exc)
            else:
                messages.success(request, f"Invitation sent to {issued.invitation.email}.")
                if request.htmx:
                    form = InviteForm(actor=request.user)
                else:
                    return redirect("accounts:team")
        view = TeamView()
        view.request = request
        template = "accounts/team.html#invite" if request.htmx else "accounts/team.html"
        status = 422 if form.errors and not request.htmx else 200
        return render(request, template, view.context(invite_form=form), status=status)


class RevokeInvitationView(RoleRequiredMixin, View):
    permission = "team.invite"

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        invitation = get_object_or_404(Invitation, pk=pk)
        services.revoke_invitation(actor=request.user, invitation=invitation)
        messages.info(request, f"Invitation for {invitation.email} revoked.")
        return redirect("accounts:team")


class MemberView(RoleRequiredMixin, View):
    """Change a teammate's role or (de)activate them."""

    permission = "team.manage"

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        target = get_object_or_404(User, pk=pk)
        action = request.POST.get("action")
        try:
            if action == "role":
                form = RoleForm(request.POST)
                if not form.is_valid():
                    raise ValidationError("Choose a role.", code="invalid_role")
                target = services.change_role(
                    actor=request.user, target=target, role=form.cleaned_data["role"]
                )
                messages.success(request, f"{target} is now {target.get_role_display()}.")
            elif action in {"deactivate", "reactivate"}:
                target = services.set_active(
                    actor=request.user, target=target, active=action == "reactivate"
                )
                messages.success(request, f"{target} {action}d.")
            else:
                raise ValidationError("Unknown action.", code="invalid_action")
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        if request.htmx:
            return render(
                request,
                "accounts/team.html#member-row",
                {
                    "person": target,
                    "assignable": ASSIGNABLE_ROLES.get(request.user.role, ()),
                    "roles": Role.choices,
                },
            )
        return redirect("accounts:team")


class AcceptInvitationView(View):
    template_name = "accounts/accept_invitation.html"

    def dispatch(self, request, token: str, *args, **kwargs):
        self.invitation = services.find_invitation(token)
        if self.invitation is None:
            return render(request, "accounts/invitation_invalid.html", status=404)
        return super().dispatch(request, token, *args, **kwargs)

    def get(self, request: HttpRequest, token: str) -> HttpResponse:
        form = AcceptInvitationForm(email=self.invitation.email)
        return render(request, self.template_name, {"form": form, "invitation": self.invitation})

    def post(self, request: HttpRequest, token: str) -> HttpResponse:
        form = AcceptInvitationForm(request.POST, email=self.invitation.email)
        if form.is_valid():
            try:
                user = services.accept_invitation(
                    token=token,
                    full_name=form.cleaned_data["full_name"],
                    password=form.cleaned_data["password"],
                )
            except ValidationError as exc:
                _apply_errors(form, exc)
            else:
                login(request, user, backend="django.contrib.auth.backends.ModelBackend")
                messages.success(request, "Welcome aboard.")
                return redirect("dashboard")
        return render(
            request,
            self.template_name,
            {"form": form, "invitation": self.invitation},
            status=422,
        )


class ApiKeysView(RoleRequiredMixin, View):
    permission = "apikeys.view"
    template_name = "accounts/api_keys.html"

    def context(self, form=None, issued=None) -> dict:
        show_revoked = self.request.GET.get("status") == "revoked"
        keys = ApiKey.objects.filter(revoked_at__isnull=not show_revoked).select_related(
            "created_by"
        )
        can_manage = has_permission(self.request.user, "apikeys.manage")
        return {
            "page": Paginator(keys, 25).get_page(self.request.GET.get("page")),
            "show_revoked": show_revoked,
            "form": form or (ApiKeyForm() if can_manage else None),
            "issued": issued,
        }

    def get(self, request: HttpRequest) -> HttpResponse:
        return render(request, self.template_name, self.context())

    def post(self, request: HttpRequest) -> HttpResponse:
        self.require("apikeys.manage")
        form = ApiKeyForm(request.POST)
        issued = None
        if form.is_valid():
            try:
                issued = services.create_api_key(actor=request.user, **form.cleaned_data)
            except ValidationError as exc:
                _apply_errors(form, exc)
            else:
                form = ApiKeyForm()
        # The secret is rendered in this response only; it is never retrievable again.
        response = render(
            request,
            self.template_name,
            self.context(form=form, issued=issued),
            status=200 if issued or not form.errors else 422,
        )
        response["Cache-Control"] = "no-store"
        return response


class RevokeApiKeyView(RoleRequiredMixin, View):
    permission = "apikeys.manage"

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        api_key = get_object_or_404(ApiKey, pk=pk)
        services.revoke_api_key(actor=request.user, api_key=api_key)
        messages.info(request, f"Key {api_key.prefix} revoked; it stops working immediately.")
        return redirect("accounts:api_keys")


class BrandSettingsView(RoleRequiredMixin, View):
    permission = "brand.view"
    template_name = "accounts/brand_settings.html"

    def get(self, request: HttpRequest) -> HttpResponse:
        brand = request.tenant
        form = BrandSettingsForm(
            initial={"name": brand.name, "timezone": brand.timezone, "currency": brand.currency}
        )
        return render(request, self.template_name, {"form": form})

    def post(self, request: HttpRequest) -> HttpResponse:
        self.require("brand.edit")
        form = BrandSettingsForm(request.POST)
        if form.is_valid():
            update_brand_profile(brand=request.tenant, actor=request.user, **form.cleaned_data)
            messages.success(request, "Brand settings saved.")
            return redirect("accounts:brand_settings")
        return render(request, self.template_name, {"form": form}, status=422)


password_reset = auth_views.PasswordResetView.as_view(
    template_name="accounts/password_reset.html",
    email_template_name="accounts/email/password_reset.txt",
    subject_template_name="accounts/email/password_reset_subject.txt",
    success_url=reverse_lazy("accounts:password_reset_done"),
)
password_reset_done = auth_views.PasswordResetDoneView.as_view(
    template_name="accounts/password_reset_done.html"
)
password_reset_confirm = auth_views.PasswordResetConfirmView.as_view(
    template_name="accounts/password_reset_confirm.html",
    success_url=reverse_lazy("accounts:password_reset_complete"),
)
password_reset_complete = auth_views.PasswordResetCompleteView.as_view(
    template_name="accounts/password_reset_complete.html"
)
