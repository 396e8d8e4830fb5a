"""Approvals: policies, the request state machine, decisions, sweeps and notifications.

State machine of a request: pending → approved | rejected | expired | cancelled. Every
change happens in one transaction that first takes the subject's lock (`lock_subject`, a
transaction-scoped PostgreSQL advisory lock on brand + subject) and then the request row
(`SELECT … FOR UPDATE`), re-checks the state, and writes the activity log. So two
approvers clicking at the same instant queue: the second sees the first's decision.

The subject's continuation (`SubjectType.on_approved`) runs inside the transaction that
approves, once: the state check under the lock, and `continuation_key` (unique) backs it
up at the database. If the continuation raises, the approval is not recorded at all.

Who may decide is the policy's approver roles (each with an optional amount limit), never
a global permission; the creator of a request may not decide it unless the policy says so,
and N required approvals means N different people.

Notifications leave after commit and never block a decision: emails through the
`approvals.notify` task; webhooks as `WebhookDelivery` rows written in the decision's
transaction (an outbox) and sent by `approvals.deliver_webhook`, which retries with
backoff; the periodic sweep re-publishes any delivery whose task was lost.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.core.exceptions import ObjectDoesNotExist, PermissionDenied, ValidationError
from django.core.mail import EmailMessage, get_connection
from django.db import connection, transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from accounts.roles import Role, has_permission
from accounts.services import AccessError
from approvals import registry, webhook
from approvals.models import (
    ApprovalComment,
    ApprovalDecision,
    ApprovalPolicy,
    ApprovalPolicyVersion,
    ApprovalRequest,
    ApprovalSettings,
    ApproverPreference,
    EmailMode,
    RequestState,
    Verdict,
    WebhookDelivery,
)
from approvals.rules import RULE_FIELDS, Rules, money
from audit.context import current_actor
from audit.services import record
from config import crypto
from outbox.services import publish_domain_event
from tenants.models import Brand
from tenants.services import brand_url

logger = logging.getLogger(__name__)

NOT_REQUIRED = "not_required"
# First key of the two-key advisory lock: keeps approvals' locks apart from any other
# advisory locks in the database.
LOCK_CLASS = 0x4B_41  # "KA"
# Digests go out once a brand-local day, from this hour on.
DIGEST_HOUR = 8
# A delivery whose task never ran (lost publish) is re-published after this long.
STUCK_DELIVERY_AFTER = timedelta(minutes=10)
MAX_COMMENT = 2000
CENT = Decimal("0.01")


class ApprovalError(ValidationError):
    """The request or input refuses this. Carries a machine-readable code."""


class ApprovalConflict(ApprovalError):
    """The request's state refuses this now (already decided, closed): a 409 in the API."""


@dataclass(frozen=True)
class Match:
    policy: ApprovalPolicy
    version: ApprovalPolicyVersion
    rules: Rules
    reasons: list[str]


@dataclass(frozen=True)
class Outcome:
    """What opening (or re-opening) approval for a subject came to.

    `state` is "not_required" (no policy applies: the subject app proceeds on its own),
    "pending", or "approved" (auto-approved; the continuation has already run).
    """

    state: str
    request: ApprovalRequest | None = None

    @property
    def pending(self) -> bool:
        return self.state == RequestState.PENDING


@dataclass(frozen=True)
class Refusal:
    code: str
    message: str
    # Conflicts are about the request's state, not about who is asking.
    conflict: bool = False

    def error(self) -> Exception:
        if self.conflict:
            return ApprovalConflict(self.message, code=self.code)
        return AccessError(self.message, self.code)


# --- Context ------------------------------------------------------------------------------


def current_brand() -> Brand:
    tenant = getattr(connection, "tenant", None)
    if isinstance(tenant, Brand):
        return tenant
    return Brand.objects.get(schema_name=connection.schema_name)


def lock_subject(subject_type: str, subject_id: object) -> None:
    """Serialise every change to one subject's approval (and, by convention, the subject).

    Advisory locks are per database, not per schema, so the key names the brand too.
    Held until the surrounding transaction ends.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("lock_subject must run inside a transaction")
    key = f"{connection.schema_name}:{subject_type}:{subject_id}"
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [LOCK_CLASS, key])


def _person(actor: object) -> User | None:
    return actor if isinstance(actor, User) else None


def _actor_label(actor: object) -> str:
    if isinstance(actor, User):
        return actor.email
    return current_actor().label


def rules_of(request: ApprovalRequest) -> Rules:
    return Rules.from_values(request.policy_version.rules)


def _stored_amount(amount: Decimal | None) -> Decimal | None:
    # Rounded up to the cent, so a limit compared with the stored figure never lets
    # through what the exact figure would not.
    return None if amount is None else amount.quantize(CENT, rounding=ROUND_CEILING)


# --- Policies -----------------------------------------------------------------------------


def evaluate(subject_type: str, facts: registry.Facts, currency: str) -> Match | None:
    """The first enabled policy of `subject_type` whose conditions hold, or None."""
    for policy in ApprovalPolicy.objects.filter(subject_type=subject_type, is_enabled=True):
        rules = Rules.of(policy)
        reasons = rules.match(facts, currency)
        if reasons is None:
            continue
        version = ApprovalPolicyVersion.objects.get(policy=policy, version=policy.version)
        return Match(policy, version, rules, reasons)
    return None


def requirement(subject_type: str, facts: registry.Facts) -> Match | None:
    """Would a subject with these facts need approval now? (Read only.)"""
    return evaluate(subject_type, facts, current_brand().currency)


def _require_policy_manager(actor: object) -> None:
    if not has_permission(actor, "approvals.manage_policies"):
        raise AccessError("Your role does not allow editing approval policies.")


def _clean_policy(values: dict[str, Any]) -> dict[str, Any]:
    """Check policy fields together; field-keyed ApprovalError on the first problems."""
    errors: dict[str, str] = {}
    subject_type = values.get("subject_type", "")
    if not subject_type or not subject_type.replace("_", "").isalnum() or len(subject_type) > 50:
        errors["subject_type"] = "Use lowercase letters, digits and underscores."
    if not (values.get("name") or "").strip():
        errors["name"] = "Give the policy a name."
    approvers = values.get("approvers") or {}
    if not approvers:
        errors["approvers"] = "Name at least one role that may approve."
    cleaned_approvers: dict[str, str | None] = {}
    for role, limit in approvers.items():
        if role not in Role.values:
            errors["approvers"] = f"Unknown role {role!r}."
            continue
        if limit is None or limit == "":
            cleaned_approvers[role] = None
            continue
        try:
            value = Decimal(str(limit))
        except ArithmeticError:
            errors["approvers"] = f"The limit for {Role(role).label} is not a number."
            continue
        if value < 0:
            errors["approvers"] = "Limits cannot be negative."
        cleaned_approvers[role] = str(value.quantize(CENT))
    for role in values.get("escalate_to") or []:
        if role not in Role.values:
            errors["escalate_to"] = f"Unknown role {role!r}."
    if values.get("escalate_after") and not values.get("escalate_to"):
        errors["escalate_to"] = "Say which role it escalates to."
    for name in ("escalate_after", "expire_after"):
        duration = values.get(name)
        if duration is not None and duration <= timedelta(0):
            errors[name] = "Use a duration above zero."
    required = values.get("required_approvals", 1)
    if not isinstance(required, int) or not 1 <= required <= 10:
        errors["required_approvals"] = "Between 1 and 10 people."
    for name in ("amount_above", "variance_above", "auto_approve_up_to"):
        amount = values.get(name)
        if amount is not None and Decimal(str(amount)) < 0:
            errors[name] = "Cannot be negative."
    if errors:
        raise ApprovalError(errors, code="invalid")
    values = dict(values)
    # Stored with cents, so "250" and "250.00" are the same policy (no spurious version).
    for name in ("amount_above", "variance_above", "auto_approve_up_to"):
        if values.get(name) is not None:
            values[name] = Decimal(str(values[name])).quantize(CENT)
    values["approvers"] = cleaned_approvers
    values["name"] = values["name"].strip()
    values["sku_tags"] = sorted({t.strip().lower() for t in values.get("sku_tags") or [] if t})
    values["suppliers"] = sorted({s.strip() for s in values.get("suppliers") or [] if s})
    values["escalate_to"] = list(dict.fromkeys(values.get("escalate_to") or []))
    return values


POLICY_FIELDS = ["subject_type", "name", "position", "is_enabled", *RULE_FIELDS]


def _snapshot(policy: ApprovalPolicy, actor: object) -> ApprovalPolicyVersion:
    return ApprovalPolicyVersion.objects.create(
        policy=policy,
        version=policy.version,
        name=policy.name,
        rules=Rules.of(policy).as_json(),
        created_by_label=_actor_label(actor)[:200],
    )


def _policy_json(policy: ApprovalPolicy) -> dict[str, Any]:
    return {
        "name": policy.name,
        "subject_type": policy.subject_type,
        "position": policy.position,
        "is_enabled": policy.is_enabled,
        **Rules.of(policy).as_json(),
    }


def create_policy(*, actor: object, **fields: Any) -> ApprovalPolicy:
    _require_policy_manager(actor)
    unknown = set(fields) - set(POLICY_FIELDS)
    if unknown:
        raise ApprovalError(f"Unknown fields: {', '.join(sorted(unknown))}", code="invalid")
    values = _clean_policy({"required_approvals": 1, **fields})
    with transaction.atomic():
        policy = ApprovalPolicy.objects.create(version=1, **values)
        _snapshot(policy, actor)
        record("approval_policy.created", obj=policy, changes=_policy_json(policy))
    return policy


def update_policy(policy: ApprovalPolicy, *, actor: object, **fields: Any) -> ApprovalPolicy:
    """Change a policy; any change makes a new version. Waiting requests keep theirs."""
    _require_policy_manager(actor)
    unknown = set(fields) - set(POLICY_FIELDS)
    if unknown:
        raise ApprovalError(f"Unknown fields: {', '.join(sorted(unknown))}", code="invalid")
    with transaction.atomic():
        policy = ApprovalPolicy.objects.select_for_update().get(pk=policy.pk)
        before = _policy_json(policy)
        current = {name: getattr(policy, name) for name in POLICY_FIELDS}
        values = _clean_policy({**current, **fields})
        for name, value in values.items():
            setattr(policy, name, value)
        after = _policy_json(policy)
        changes = {k: [before[k], after[k]] for k in after if before[k] != after[k]}
        if not changes:
            return policy
        policy.version += 1
        policy.save()
        _snapshot(policy, actor)
        record(
            "approval_policy.updated", obj=policy, changes={**changes, "version": policy.version}
        )
    return policy


# --- Opening requests ---------------------------------------------------------------------


def open_request(
    subject_type: str,
    subject_id: object,
    *,
    requested_by: object = None,
    supersedes: ApprovalRequest | None = None,
) -> Outcome:
    """Put a subject behind approval if a policy says so.

    Call it inside the transaction that creates or submits the subject. Returns
    "not_required" (no policy applies: proceed), "approved" (auto-approved under the
    ceiling: the continuation already ran) or "pending". A subject that already has a
    pending request gets that request back.
    """
    kind = registry.get(subject_type)
    subject_id = str(subject_id)
    with transaction.atomic():
        lock_subject(subject_type, subject_id)
        existing = (
            ApprovalRequest.objects.select_for_update()
            .for_subject(subject_type, subject_id)
            .pending()
            .first()
        )
        if existing is not None:
            return Outcome(RequestState.PENDING, existing)
        facts = kind.facts_of(subject_id)
        brand = current_brand()
        match = evaluate(subject_type, facts, brand.currency)
        if match is None:
            return Outcome(NOT_REQUIRED)
        rules, now = match.rules, timezone.now()
        policy_name = f"“{match.policy.name}” (v{match.version.version})"
        auto = rules.auto_approves(facts.amount)
        if auto:
            explanation = (
                f"Auto-approved under {policy_name}: {money(facts.amount, brand.currency)} is "
                f"within the {money(rules.auto_approve_up_to, brand.currency)} ceiling."
            )
        else:
            explanation = (
                f"Needs approval under {policy_name} because {'; '.join(match.reasons)}. "
                f"May approve: {rules.describe_approvers(brand.currency)}."
            )
        request = ApprovalRequest(
            subject_type=subject_type,
            subject_id=subject_id,
            subject_version=facts.version,
            title=facts.title[:200],
            amount=_stored_amount(facts.amount),
            currency=brand.currency,
            facts=facts.as_json(),
            explanation=explanation,
            policy=match.policy,
            policy_version=match.version,
            required_approvals=rules.required_approvals,
            eligible_roles=rules.eligible_roles(escalated=False),
            requested_by=_person(requested_by),
            requested_by_label=_actor_label(requested_by)[:200],
        )
        if auto:
            request.state = RequestState.APPROVED
            request.auto_approved = True
            request.decided_at = now
            request.decided_by_label = "Keel (auto-approval)"
        else:
            if rules.escalate_after and rules.escalate_to:
                request.escalate_at = now + rules.escalate_after
            if rules.expire_after:
                request.expires_at = now + rules.expire_after
        request.save()
        if supersedes is not None:
            supersedes.superseded_by = request
            supersedes.save(update_fields=["superseded_by"])
        record(
            "approval.auto_approved" if auto else "approval.requested",
            obj=request,
            changes={
                "subject": [subject_type, subject_id, facts.version],
                "facts": facts.as_json(),
                "policy": [match.policy.name, match.version.version],
                "explanation": explanation,
                "supersedes": supersedes.pk if supersedes else None,
            },
        )
        if auto:
            _continue(kind, request)
        else:
            _announce(request, "requested")
    return Outcome(request.state, request)


def subject_changed(
    subject_type: str,
    subject_id: object,
    new_amount: Decimal | None,
    *,
    requested_by: object = None,
) -> Outcome:
    """The subject app edited a subject: keep, or re-open, its approval.

    Call it inside the edit's transaction, after saving the subject (its facts must show
    the edit). When the new amount is not above what the current (pending or approved)
    request covers, that request now covers the new version. When it is higher, or either
    amount is unknown, the request is cancelled as superseded and approval opens again
    under today's policies. Without any current request this is `open_request`.
    """
    kind = registry.get(subject_type)
    subject_id = str(subject_id)
    with transaction.atomic():
        lock_subject(subject_type, subject_id)
        current = (
            ApprovalRequest.objects.select_for_update()
            .for_subject(subject_type, subject_id)
            .filter(
                state__in=[RequestState.PENDING, RequestState.APPROVED],
                superseded_by__isnull=True,
            )
            .order_by("-id")
            .first()
        )
        if current is None:
            return open_request(subject_type, subject_id, requested_by=requested_by)
        facts = kind.facts_of(subject_id)
        covered = (
            new_amount is not None and current.amount is not None and new_amount <= current.amount
        )
        if covered:
            if current.subject_version != facts.version:
                record(
                    "approval.subject_changed",
                    obj=current,
                    changes={
                        "subject_version": [current.subject_version, facts.version],
                        "amount": [str(current.amount), str(new_amount)],
                        "covered": True,
                    },
                )
                current.subject_version = facts.version
                current.save(update_fields=["subject_version"])
            return Outcome(current.state, current)
        before = money(current.amount, current.currency)
        after = money(new_amount, current.currency)
        was = current.state
        current.state = RequestState.CANCELLED
        current.decided_at = current.decided_at or timezone.now()
        current.resolution = (
            f"Superseded: the amount changed from {before} to {after}, so it needs approval again."
        )
        current.save(update_fields=["state", "decided_at", "resolution"])
        record(
            "approval.superseded",
            obj=current,
            changes={"state": [was, RequestState.CANCELLED], "amount": [before, after]},
        )
        requester = requested_by if requested_by is not None else current.requested_by
        return open_request(subject_type, subject_id, requested_by=requester, supersedes=current)


# --- Deciding -----------------------------------------------------------------------------


def refusal(actor: object, request: ApprovalRequest) -> Refusal | None:
    """Why `actor` may not approve or reject `request` now; None when they may."""
    person = _person(actor)
    if person is None or not person.is_active or not person.is_authenticated:
        return Refusal("approver_required", "Approvals are decided by people, not API keys.")
    rules = rules_of(request)
    escalated = request.escalated_at is not None
    eligible, limit = rules.limit_for(person.role, escalated=escalated)
    label = Role(person.role).label
    if not eligible:
        return Refusal(
            "not_an_approver",
            f"The {label} role cannot decide {request.subject_label.lower()} requests "
            "under this policy.",
        )
    if not rules.may_decide(person.role, request.amount, escalated=escalated):
        limit_text = money(limit, request.currency)
        if request.amount is None:
            text = f"The {label} role may approve up to {limit_text}, and this amount is unknown."
        else:
            text = (
                f"The {label} role may approve up to {limit_text}; this request is "
                f"{money(request.amount, request.currency)}."
            )
        return Refusal("over_limit", text)
    if request.requested_by_id == person.pk and not rules.allow_self_approval:
        return Refusal("self_approval", "You cannot decide a request you made yourself.")
    if request.state != RequestState.PENDING:
        return Refusal(
            "request_closed",
            f"This request is already {request.get_state_display().lower()}.",
            conflict=True,
        )
    if any(d.approver_id == person.pk for d in request.decisions.all()):
        return Refusal("already_decided", "You have already approved this request.", conflict=True)
    return None


def can_decide(actor: object, request: ApprovalRequest) -> bool:
    return refusal(actor, request) is None


def approve(request: ApprovalRequest | int, *, actor: object, comment: str = "") -> ApprovalRequest:
    return _decide(request, actor=actor, verdict=Verdict.APPROVE, comment=comment)


def reject(request: ApprovalRequest | int, *, actor: object, comment: str) -> ApprovalRequest:
    if not (comment or "").strip():
        raise ApprovalError(
            {"comment": ApprovalError("Say why, for the requester.", code="reason_required")}
        )
    return _decide(request, actor=actor, verdict=Verdict.REJECT, comment=comment)


def _locked(pk: int) -> ApprovalRequest:
    head = ApprovalRequest.objects.only("subject_type", "subject_id").get(pk=pk)
    lock_subject(head.subject_type, head.subject_id)
    return (
        ApprovalRequest.objects.select_for_update(of=("self",))
        .select_related("policy_version")
        .get(pk=pk)
    )


def _decide(
    request: ApprovalRequest | int, *, actor: object, verdict: str, comment: str
) -> ApprovalRequest:
    pk = request.pk if isinstance(request, ApprovalRequest) else int(request)
    comment = (comment or "").strip()[:MAX_COMMENT]
    with transaction.atomic():
        request = _locked(pk)
        if not _is_member(actor):
            raise AccessError("You are not a member of this brand.", "not_a_member")
        refused = refusal(actor, request)
        if refused is not None:
            raise refused.error()
        person: User = actor  # refusal() established it is an active person
        kind = registry.get(request.subject_type)
        rules = rules_of(request)
        _, limit = rules.limit_for(person.role, escalated=request.escalated_at is not None)
        ApprovalDecision.objects.create(
            request=request,
            approver=person,
            approver_label=person.email,
            role=person.role,
            limit=limit,
            verdict=verdict,
            comment=comment,
        )
        now = timezone.now()
        if verdict == Verdict.REJECT:
            _close(request, RequestState.REJECTED, now, person, comment)
            record(
                "approval.rejected",
                obj=request,
                changes={"state": ["pending", "rejected"], "comment": comment, "role": person.role},
            )
            kind.on_rejected(request)
            _announce(request, "rejected")
            return request
        approvals = request.decisions.filter(verdict=Verdict.APPROVE).count()
        if approvals < request.required_approvals:
            record(
                "approval.approval_added",
                obj=request,
                changes={
                    "approvals": [approvals, request.required_approvals],
                    "comment": comment,
                    "role": person.role,
                },
            )
            _announce(request, "approval_added")
            return request
        _close(request, RequestState.APPROVED, now, person, "")
        record(
            "approval.approved",
            obj=request,
            changes={
                "state": ["pending", "approved"],
                "approvals": [approvals, request.required_approvals],
                "comment": comment,
                "role": person.role,
            },
        )
        _continue(kind, request)
        _announce(request, "approved")
    return request


def _close(
    request: ApprovalRequest, state: str, now: datetime, person: User | None, resolution: str
) -> None:
    request.state = state
    request.decided_at = now
    request.decided_by = person
    request.decided_by_label = person.email if person else current_actor().label[:200]
    request.resolution = resolution
    request.save(
        update_fields=["state", "decided_at", "decided_by", "decided_by_label", "resolution"]
    )
    # Partners subscribed to approval.decided hear about every closing, in this transaction.
    publish_domain_event(
        "approval.decided",
        request.pk,
        lambda: {
            "id": request.pk,
            "state": request.state,
            "subject_type": request.subject_type,
            "subject_id": request.subject_id,
            "decided_by": request.decided_by_label,
            "resolution": request.resolution,
        },
    )


def _continue(kind: registry.SubjectType, request: ApprovalRequest) -> None:
    """Run the subject's continuation for an approved request, once."""
    if request.continued_at is not None:
        return
    key = f"approval_request:{request.pk}"
    kind.on_approved(request, key)
    request.continuation_key = key
    request.continued_at = timezone.now()
    request.save(update_fields=["continuation_key", "continued_at"])
    record("approval.continued", obj=request, changes={"continuation_key": key})


@dataclass(frozen=True)
class BulkResult:
    approved: list[ApprovalRequest]
    failed: list[tuple[int, str]]


def bulk_approve(ids: Iterable[int], *, actor: object, comment: str = "") -> BulkResult:
    """Approve each request in its own transaction; one refusal does not stop the rest."""
    approved, failed = [], []
    for pk in dict.fromkeys(ids):
        try:
            approved.append(approve(pk, actor=actor, comment=comment))
        except ObjectDoesNotExist:
            failed.append((pk, "This request does not exist."))
        except (ValidationError, PermissionDenied) as exc:
            text = " ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
            failed.append((pk, text))
    return BulkResult(approved, failed)


def cancel(request: ApprovalRequest | int, *, actor: object, reason: str = "") -> ApprovalRequest:
    """Withdraw a pending request: its requester, or someone who manages policies."""
    pk = request.pk if isinstance(request, ApprovalRequest) else int(request)
    person = _person(actor)
    with transaction.atomic():
        request = _locked(pk)
        if not _is_member(actor):
            raise AccessError("You are not a member of this brand.", "not_a_member")
        mine = person is not None and request.requested_by_id == person.pk
        if not (mine or has_permission(actor, "approvals.manage_policies")):
            raise AccessError("Only the requester or an admin can cancel this request.")
        if request.state != RequestState.PENDING:
            raise ApprovalConflict(
                f"This request is already {request.get_state_display().lower()}.",
                code="request_closed",
            )
        reason = (reason or "").strip()[:MAX_COMMENT] or f"Cancelled by {_actor_label(actor)}."
        _close(request, RequestState.CANCELLED, timezone.now(), person, reason)
        record("approval.cancelled", obj=request, changes={"reason": reason})
        if registry.is_registered(request.subject_type):
            registry.get(request.subject_type).cancelled(request)
        _announce(request, "cancelled")
    return request


def add_comment(request: ApprovalRequest, *, actor: object, body: str) -> ApprovalComment:
    person = _person(actor)
    if person is None or not has_permission(person, "approvals.view"):
        raise AccessError("Comments are written by people who can see approvals.")
    body = (body or "").strip()
    if not body:
        raise ApprovalError({"body": ApprovalError("Write a comment.", code="required")})
    if len(body) > MAX_COMMENT:
        raise ApprovalError(
            {"body": ApprovalError(f"At most {MAX_COMMENT} characters.", code="too_long")}
        )
    with transaction.atomic():
        comment = ApprovalComment.objects.create(
            request=request, author=person, author_label=person.email, body=body
        )
        record("approval.commented", obj=request, changes={"comment": body})
    return comment


# --- Reading ------------------------------------------------------------------------------


def _is_member(actor: object) -> bool:
    """People live in their brand's schema: a User loaded in another brand's schema has a
    pk that may belong to someone else here, so services check it is this brand's person
    (views and the API only ever see this brand's users)."""
    if not isinstance(actor, User):
        return True  # keys and the system are refused by refusal() for what they may not do
    return User.objects.filter(pk=actor.pk, email=actor.email).exists()


def decidable_requests(user: object, *, queryset=None) -> list[ApprovalRequest]:
    """Pending requests `user` may approve or reject now, oldest first."""
    person = _person(user)
    if person is None or not person.is_active or not _is_member(person):
        return []
    candidates = (
        (queryset if queryset is not None else ApprovalRequest.objects.all())
        .pending()
        .filter(eligible_roles__contains=[person.role])
        .exclude(decisions__approver=person)
        .select_related("policy_version", "requested_by")
        .prefetch_related("decisions")
        .order_by("created_at", "id")
    )
    return [r for r in candidates if refusal(person, r) is None]


def pending_count_for(user: object) -> int:
    """The navigation's count: requests waiting for this person."""
    return len(decidable_requests(user))


def eligible_people(request: ApprovalRequest, *, roles: Iterable[str] | None = None) -> list[User]:
    """Active people who may decide `request` now (optionally only of `roles`)."""
    roles = list(roles if roles is not None else request.eligible_roles)
    people = User.objects.filter(is_active=True, role__in=roles).order_by("pk")
    return [p for p in people if refusal(p, request) is None]


# --- Sweep: expiry, escalation, digests -----------------------------------------------------


def sweep(now: datetime | None = None) -> dict[str, int]:
    """The periodic pass (fanned out per brand): expire, escalate, digest, re-send."""
    now = now or timezone.now()
    return {
        "expired": expire_due(now),
        "escalated": escalate_due(now),
        "digests": send_due_digests(now),
        "redelivered": republish_stuck_deliveries(now),
    }


def _each_locked(ids: Iterable[int], step) -> int:
    done = 0
    for pk in ids:
        try:
            with transaction.atomic():
                if step(_locked(pk)):
                    done += 1
        except Exception:
            # One subject's failing callback must not hold every other request hostage.
            logger.exception("approvals sweep failed on request %s", pk)
    return done


def expire_due(now: datetime) -> int:
    due = ApprovalRequest.objects.pending().filter(expires_at__lte=now).order_by("id")

    def expire(request: ApprovalRequest) -> bool:
        if request.state != RequestState.PENDING or request.expires_at > now:
            return False
        rules = rules_of(request)
        waited = humanize(rules.expire_after) if rules.expire_after else "the allowed time"
        _close(
            request,
            RequestState.EXPIRED,
            now,
            None,
            f"Expired: nobody decided within {waited}.",
        )
        record("approval.expired", obj=request, changes={"state": ["pending", "expired"]})
        if registry.is_registered(request.subject_type):
            registry.get(request.subject_type).expired(request)
        _announce(request, "expired")
        return True

    return _each_locked(list(due.values_list("pk", flat=True)), expire)


def escalate_due(now: datetime) -> int:
    due = (
        ApprovalRequest.objects.pending()
        .filter(escalate_at__lte=now, escalated_at__isnull=True)
        .order_by("id")
    )

    def escalate(request: ApprovalRequest) -> bool:
        if request.state != RequestState.PENDING or request.escalated_at is not None:
            return False
        rules = rules_of(request)
        before = list(request.eligible_roles)
        request.escalated_at = now
        request.eligible_roles = rules.eligible_roles(escalated=True)
        request.save(update_fields=["escalated_at", "eligible_roles"])
        record(
            "approval.escalated",
            obj=request,
            changes={"eligible_roles": [before, request.eligible_roles]},
        )
        _announce(request, "escalated")
        return True

    return _each_locked(list(due.values_list("pk", flat=True)), escalate)


def humanize(duration: timedelta) -> str:
    hours = int(duration.total_seconds() // 3600)
    if hours and hours % 24 == 0:
        days = hours // 24
        return f"{days} day{'s' if days != 1 else ''}"
    if hours:
        return f"{hours} hour{'s' if hours != 1 else ''}"
    minutes = max(int(duration.total_seconds() // 60), 1)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def send_due_digests(now: datetime) -> int:
    """One email per digest subscriber per brand-local day, from DIGEST_HOUR on, listing
    what waits for them; nothing when nothing waits."""
    brand = current_brand()
    local = now.astimezone(ZoneInfo(brand.timezone))
    if local.hour < DIGEST_HOUR:
        return 0
    sent = 0
    with transaction.atomic():
        # SKIP LOCKED: a second sweep running at the same moment leaves these to this one.
        due = (
            ApproverPreference.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("user")
            .filter(email=EmailMode.DIGEST, user__is_active=True)
            .exclude(last_digest_on=local.date())
        )
        messages = []
        for preference in due:
            preference.last_digest_on = local.date()
            preference.save(update_fields=["last_digest_on"])
            waiting = decidable_requests(preference.user)
            if not waiting:
                continue
            messages.append(_digest_email(brand, preference.user, waiting, local))
            sent += 1
        if messages:
            transaction.on_commit(lambda: _send(messages))
    return sent


# --- Notifications ------------------------------------------------------------------------


def _announce(request: ApprovalRequest, event: str) -> None:
    """Queue the notifications of `event`; they leave only if the transaction commits."""
    if event == "approval_added":
        return  # one of several approvals: nobody needs telling until it is decided
    hook = load_settings()
    delivery = None
    if hook.webhook_url:
        body = webhook.encode(webhook.payload(event, request, _request_url(request)))
        delivery = WebhookDelivery.objects.create(
            event=f"approval.{event}", request=request, url=hook.webhook_url, body=body
        )
    pk = request.pk
    transaction.on_commit(lambda: _publish(pk, event, delivery.pk if delivery else None))


def _publish(request_id: int, event: str, delivery_id: int | None) -> None:
    # A broker outage must not turn a committed decision into an error page; the sweep
    # re-publishes deliveries whose task never ran.
    from approvals import tasks

    try:
        tasks.notify.delay(request_id, event)
        if delivery_id is not None:
            tasks.deliver_webhook.delay(delivery_id)
    except Exception:
        logger.exception("could not queue approval notifications for request %s", request_id)


def _request_url(request: ApprovalRequest) -> str:
    return brand_url(current_brand(), reverse("approvals:detail", args=[request.pk]))


def _email_mode(user: User) -> str:
    preference = ApproverPreference.objects.filter(user=user).first()
    return preference.email if preference else EmailMode.IMMEDIATE


def notify(request_id: int, event: str) -> int:
    """Email the people `event` concerns; returns how many emails went out.

    requested → everyone who may decide (immediate mode); escalated → the roles it
    escalated to; approved/rejected/expired/cancelled → the requester (unless they did it
    or switched email off). Digest subscribers hear about new requests in their digest.
    """
    request = (
        ApprovalRequest.objects.select_related("policy_version", "requested_by")
        .filter(pk=request_id)
        .first()
    )
    if request is None:
        return 0
    brand = current_brand()
    recipients: list[User] = []
    if event in ("requested", "escalated") and request.is_pending:
        roles = rules_of(request).escalate_to if event == "escalated" else None
        recipients = [
            p
            for p in eligible_people(request, roles=roles)
            if _email_mode(p) == EmailMode.IMMEDIATE
        ]
    elif event in ("approved", "rejected", "expired", "cancelled"):
        requester = request.requested_by
        if (
            requester is not None
            and requester.is_active
            and requester.pk != request.decided_by_id
            and _email_mode(requester) != EmailMode.OFF
        ):
            recipients = [requester]
    if not recipients:
        return 0
    context = {
        "request": request,
        "brand": brand,
        "url": _request_url(request),
        "amount": money(request.amount, request.currency),
        "event": event,
        "rules": rules_of(request),
    }
    subject = {
        "requested": f"Approval needed: {request.title}",
        "escalated": f"Escalated to you: {request.title}",
    }.get(event, f"{request.get_state_display()}: {request.title}")
    template = (
        "approvals/email/decided.txt"
        if event not in ("requested", "escalated")
        else "approvals/email/requested.txt"
    )
    messages = [
        EmailMessage(
            subject=f"[{brand.name}] {subject}"[:200],
            body=render_to_string(template, {**context, "person": person}),
            to=[person.email],
        )
        for person in recipients
    ]
    _send(messages)
    return len(messages)


def _digest_email(
    brand: Brand, person: User, waiting: list[ApprovalRequest], local: datetime
) -> EmailMessage:
    items = [
        {"request": r, "amount": money(r.amount, r.currency), "url": _request_url(r)}
        for r in waiting
    ]
    body = render_to_string(
        "approvals/email/digest.txt",
        {
            "brand": brand,
            "person": person,
            "items": items,
            "inbox_url": brand_url(brand, reverse("approvals:inbox")),
            "day": local.date(),
        },
    )
    count = len(waiting)
    return EmailMessage(
        subject=f"[{brand.name}] {count} approval{'s' if count != 1 else ''} waiting for you",
        body=body,
        to=[person.email],
    )


def _send(messages: list[EmailMessage]) -> None:
    with get_connection() as mail:
        mail.send_messages(messages)


class WebhookFailed(Exception):
    """The receiver did not take the delivery (network error or a non-2xx answer)."""


def deliver_webhook(delivery_id: int) -> bool:
    """Send one delivery; True when it is delivered (now or before).

    The row stays locked while sending, so a redelivered task cannot send it twice at
    once; the attempt is saved before WebhookFailed tells the task to retry.
    """
    with transaction.atomic():
        delivery = WebhookDelivery.objects.select_for_update().filter(pk=delivery_id).first()
        if delivery is None or delivery.failed_at is not None:
            return False
        if delivery.delivered_at is not None:
            return True
        secret = webhook_signing_secret()
        status, error = None, ""
        try:
            status = webhook.send(
                delivery.url,
                delivery.body.encode(),
                secret=secret,
                event=delivery.event,
                delivery_id=delivery.pk,
            )
        except webhook.WebhookError as exc:
            error = str(exc)
        ok = status is not None and 200 <= status < 300
        delivery.attempts += 1
        delivery.last_status = status
        delivery.last_error = "" if ok else (error or f"HTTP {status}")[:500]
        if ok:
            delivery.delivered_at = timezone.now()
        delivery.save()
    if not ok:
        raise WebhookFailed(delivery.last_error)
    return True


def give_up_webhook(delivery_id: int) -> None:
    with transaction.atomic():
        delivery = WebhookDelivery.objects.select_for_update().filter(pk=delivery_id).first()
        if delivery is None or delivery.delivered_at or delivery.failed_at:
            return
        delivery.failed_at = timezone.now()
        delivery.save(update_fields=["failed_at"])
        record(
            "approval.webhook_failed",
            obj=delivery.request,
            changes={
                "event": delivery.event,
                "attempts": delivery.attempts,
                "error": delivery.last_error,
            },
        )


def republish_stuck_deliveries(now: datetime) -> int:
    stuck = list(
        WebhookDelivery.objects.filter(
            delivered_at__isnull=True,
            failed_at__isnull=True,
            attempts=0,
            created_at__lte=now - STUCK_DELIVERY_AFTER,
        ).values_list("pk", flat=True)[:500]
    )
    if stuck:
        from approvals import tasks

        for pk in stuck:
            tasks.deliver_webhook.delay(pk)
    return len(stuck)


# --- Settings -----------------------------------------------------------------------------


def load_settings() -> ApprovalSettings:
    """The brand's settings row, created with a fresh secret on first use (never cloned
    from the template, so no two brands share a secret)."""
    row = ApprovalSettings.objects.filter(pk=1).first()
    if row is not None:
        return row
    row, _ = ApprovalSettings.objects.get_or_create(
        pk=1, defaults={"webhook_secret_encrypted": crypto.encrypt(secrets.token_urlsafe(32))}
    )
    return row


def webhook_signing_secret() -> str:
    """The secret approvals webhooks are signed with (decrypted only here)."""
    return crypto.decrypt(load_settings().webhook_secret_encrypted)


def update_settings(*, actor: object, webhook_url: str) -> ApprovalSettings:
    _require_policy_manager(actor)
    webhook_url = (webhook_url or "").strip()
    if webhook_url:
        try:
            webhook.check_destination(webhook_url)
        except webhook.WebhookError as exc:
            raise ApprovalError(
                {"webhook_url": ApprovalError(str(exc), code="invalid_url")}
            ) from exc
    with transaction.atomic():
        load_settings()
        row = ApprovalSettings.objects.select_for_update().get(pk=1)
        before = row.webhook_url
        if before != webhook_url:
            row.webhook_url = webhook_url
            row.save(update_fields=["webhook_url", "updated_at"])
            record(
                "approval_settings.updated", obj=row, changes={"webhook_url": [before, webhook_url]}
            )
    return row


def rotate_webhook_secret(*, actor: object) -> ApprovalSettings:
    _require_policy_manager(actor)
    with transaction.atomic():
        load_settings()
        row = ApprovalSettings.objects.select_for_update().get(pk=1)
        row.webhook_secret_encrypted = crypto.encrypt(secrets.token_urlsafe(32))
        row.save(update_fields=["webhook_secret_encrypted", "updated_at"])
        # The secret itself never goes into the log.
        record("approval_settings.secret_rotated", obj=row)
    return row


def set_email_mode(*, user: User, mode: str) -> ApproverPreference:
    if mode not in EmailMode.values:
        raise ApprovalError({"email": ApprovalError("Choose how to be emailed.", code="invalid")})
    with transaction.atomic():
        preference, _ = ApproverPreference.objects.select_for_update().get_or_create(user=user)
        if preference.email != mode:
            before = preference.email
            preference.email = mode
            preference.save(update_fields=["email"])
            record("approval_preference.changed", obj=user, changes={"email": [before, mode]})
    return preference


def recent_deliveries(limit: int = 10) -> list[WebhookDelivery]:
    return list(WebhookDelivery.objects.all()[:limit])
