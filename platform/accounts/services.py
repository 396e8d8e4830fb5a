"""People and access: invitations, roles, activation, API keys, sign-in handoffs.

Every function here is the one way to do its verb; views and the API call it. Each runs
in one transaction and writes the activity log.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone

from accounts.models import ApiKey, Invitation, LoginHandoff, User, keyed_hash
from accounts.roles import Role, Scope, can_assign, role_has
from audit.context import actor_for_user
from audit.services import record

EMAIL_MAX_LENGTH = 254
# Only write last_used_at when it is this stale: a busy key must not cost a write per call.
LAST_USED_RESOLUTION_SECONDS = 60


class AccessError(PermissionDenied):
    """The actor may not do this. Carries a machine-readable code."""

    def __init__(self, message: str, code: str = "permission_denied"):
        super().__init__(message)
        self.code = code


def _require(actor: User, permission: str) -> None:
    if not (actor.is_active and role_has(actor.role, permission)):
        raise AccessError("Your role does not allow this.", "permission_denied")


# --- Invitations -----------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedInvitation:
    invitation: Invitation
    token: str


def invite_user(*, actor: User, email: str, role: str, accept_url_for) -> IssuedInvitation:
    """Invite `email` with `role` and email them a link. Replaces an open invitation.

    `accept_url_for(token)` builds the absolute accept link (the host is the brand's).
    """
    _require(actor, "team.invite")
    if not can_assign(actor.role, role):
        raise AccessError("You cannot invite someone with that role.", "role_not_assignable")
    email = User.objects.normalize_email(email).lower()
    # The column's limit, checked here so no caller can turn it into a failed INSERT.
    if len(email) > EMAIL_MAX_LENGTH:
        raise ValidationError(
            {"email": f"Use at most {EMAIL_MAX_LENGTH} characters."}, code="max_length"
        )
    if User.objects.filter(email__iexact=email).exists():
        raise ValidationError({"email": "This person is already on the team."}, code="exists")
    token = secrets.token_urlsafe(32)
    with transaction.atomic():
        Invitation.objects.filter(
            email__iexact=email, accepted_at__isnull=True, revoked_at__isnull=True
        ).update(revoked_at=timezone.now())
        invitation = Invitation.objects.create(
            email=email,
            role=role,
            token_hash=keyed_hash(token),
            invited_by=actor,
            expires_at=timezone.now() + settings.KEEL_INVITATION_TTL,
        )
        record("user.invited", obj=invitation, changes={"email": email, "role": role})
        context = {
            "inviter": actor,
            "role": Role(role).label,
            "url": accept_url_for(token),
            "expires_at": invitation.expires_at,
        }
        transaction.on_commit(
            lambda: send_mail(
                subject=f"{actor} invited you to Keel",
                message=render_to_string("accounts/email/invitation.txt", context),
                from_email=None,
                recipient_list=[email],
            )
        )
    return IssuedInvitation(invitation, token)


def find_invitation(token: str) -> Invitation | None:
    invitation = Invitation.objects.filter(token_hash=keyed_hash(token)).first()
    return invitation if invitation and invitation.is_pending else None


def accept_invitation(*, token: str, full_name: str, password: str) -> User:
    with transaction.atomic():
        invitation = (
            Invitation.objects.select_for_update().filter(token_hash=keyed_hash(token)).first()
        )
        if invitation is None or not invitation.is_pending:
            raise ValidationError("This invitation is no longer valid.", code="invalid_invitation")
        if User.objects.filter(email__iexact=invitation.email).exists():
            raise ValidationError("This person is already on the team.", code="exists")
        user = User.objects.create_user(
            email=invitation.email, full_name=full_name, password=password, role=invitation.role
        )
        invitation.accepted_at = timezone.now()
        invitation.accepted_user = user
        invitation.save(update_fields=["accepted_at", "accepted_user"])
        record(
            "user.joined",
            obj=user,
            actor=actor_for_user(user),
            changes={"role": invitation.role},
        )
    return user


def revoke_invitation(*, actor: User, invitation: Invitation) -> None:
    _require(actor, "team.invite")
    with transaction.atomic():
        updated = Invitation.objects.filter(
            pk=invitation.pk, accepted_at__isnull=True, revoked_at__isnull=True
        ).update(revoked_at=timezone.now())
        if updated:
            record("invitation.revoked", obj=invitation)


# --- Roles and activation --------------------------------------------------------------


def _guard_last_owner(target: User) -> None:
    # Locks every active owner row so two admins cannot each remove "the other" owner.
    owners = list(
        User.objects.select_for_update()
        .filter(role=Role.OWNER, is_active=True)
        .values_list("pk", flat=True)
    )
    if owners == [target.pk]:
        raise ValidationError("A brand needs at least one active owner.", code="last_owner")


def change_role(*, actor: User, target: User, role: str) -> User:
    _require(actor, "team.manage")
    if role not in Role.values:
        raise ValidationError({"role": "Unknown role."}, code="invalid_role")
    if target.role == Role.OWNER and actor.role != Role.OWNER:
        raise AccessError("Only an owner can change an owner's role.", "role_not_assignable")
    if not can_assign(actor.role, role):
        raise AccessError("You cannot give that role.", "role_not_assignable")
    with transaction.atomic():
        target = User.objects.select_for_update().get(pk=target.pk)
        if target.role == role:
            return target
        if target.role == Role.OWNER:
            _guard_last_owner(target)
        before = target.role
        target.role = role
        target.save(update_fields=["role"])
        record("user.role_changed", obj=target, changes={"role": [before, role]})
    return target


def set_active(*, actor: User, target: User, active: bool) -> User:
    _require(actor, "team.manage")
    if target.pk == actor.pk and not active:
        raise ValidationError("You cannot deactivate yourself.", code="self_deactivation")
    if target.role == Role.OWNER and actor.role != Role.OWNER:
        raise AccessError("Only an owner can deactivate an owner.", "role_not_assignable")
    with transaction.atomic():
        target = User.objects.select_for_update().get(pk=target.pk)
        if target.is_active == active:
            return target
        if not active and target.role == Role.OWNER:
            _guard_last_owner(target)
        target.is_active = active
        target.save(update_fields=["is_active"])
        record(
            "user.reactivated" if active else "user.deactivated",
            obj=target,
            changes={"is_active": [not active, active]},
        )
    if not active:
        _end_sessions(target)
    return target


def _end_sessions(user: User) -> None:
    # A deactivated person must lose access now, not when their cookie expires.
    from django.contrib.sessions.models import Session

    for session in Session.objects.filter(expire_date__gt=timezone.now()).iterator():
        if session.get_decoded().get("_auth_user_id") == str(user.pk):
            session.delete()


# --- API keys --------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedKey:
    api_key: ApiKey
    secret: str  # the full key; shown to the person once, never stored


def create_api_key(*, actor: User, name: str, scope: str) -> IssuedKey:
    _require(actor, "apikeys.manage")
    if scope not in Scope.values:
        raise ValidationError({"scope": "Choose read or write."}, code="invalid_scope")
    name = name.strip()
    if not name:
        raise ValidationError({"name": "Give the key a name."}, code="required")
    prefix = f"{ApiKey.PREFIX}_{secrets.token_urlsafe(6).replace('-', 'x').replace('_', 'y')}"
    full_key = f"{prefix}.{secrets.token_urlsafe(32)}"
    with transaction.atomic():
        api_key = ApiKey.objects.create(
            name=name, prefix=prefix, key_hash=keyed_hash(full_key), scope=scope, created_by=actor
        )
        record("apikey.created", obj=api_key, changes={"scope": scope, "prefix": prefix})
    return IssuedKey(api_key, full_key)


def revoke_api_key(*, actor: User, api_key: ApiKey) -> ApiKey:
    _require(actor, "apikeys.manage")
    with transaction.atomic():
        updated = ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        if updated:
            record("apikey.revoked", obj=api_key)
    api_key.refresh_from_db()
    return api_key


def authenticate_api_key(raw: str) -> ApiKey | None:
    """The active key matching `raw`, or None. Constant-time on the secret part."""

    prefix, _, _secret = raw.partition(".")
    if not prefix.startswith(f"{ApiKey.PREFIX}_") or not _secret:
        return None
    api_key = ApiKey.objects.filter(prefix=prefix).first()
    if api_key is None or not api_key.is_active:
        return None
    if not hmac.compare_digest(api_key.key_hash, keyed_hash(raw)):
        return None
    now = timezone.now()
    stale = now - timedelta(seconds=LAST_USED_RESOLUTION_SECONDS)
    if api_key.last_used_at is None or api_key.last_used_at < stale:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now
    return api_key


# --- Sign-in handoff after signup ------------------------------------------------------


def create_handoff(user: User) -> str:
    token = secrets.token_urlsafe(32)
    LoginHandoff.objects.create(
        token_hash=keyed_hash(token),
        user=user,
        expires_at=timezone.now() + settings.KEEL_HANDOFF_TTL,
    )
    return token


def redeem_handoff(token: str) -> User | None:
    """The user the token signs in, once; None when used, expired or unknown."""
    now = timezone.now()
    with transaction.atomic():
        handoff = (
            LoginHandoff.objects.select_for_update()
            .select_related("user")
            .filter(token_hash=keyed_hash(token), used_at__isnull=True, expires_at__gt=now)
            .first()
        )
        if handoff is None or not handoff.user.is_active:
            return None
        LoginHandoff.objects.filter(pk=handoff.pk).update(used_at=now)
    return handoff.user
