"""Approval policies (versioned), requests, decisions, comments and notification settings.

A request names its subject generically (`subject_type`, `subject_id`); the subject's app
owns the subject's rows and registers how to judge and continue it (approvals.registry).
The database keeps the invariants a race could otherwise break: one pending request per
subject, one decision per person per request, one continuation per request.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.validators import MinValueValidator
from django.db import models

from approvals.registry import label_for
from config.crypto import FernetTokenField


class ApprovalPolicy(models.Model):
    """The current rules for one kind of decision. Every change bumps `version` and writes
    an immutable `ApprovalPolicyVersion`; requests point at the version they used.

    Conditions (all that are set must hold; none set means always): `amount_above`,
    `variance_above` (percent), `sku_tags` (any of), `suppliers` (any of). Among a subject
    type's enabled policies, the first match by `position` decides.
    """

    subject_type = models.CharField(max_length=50, db_index=True)
    name = models.CharField(max_length=120)
    position = models.PositiveIntegerField(default=100, help_text="Lower is tried first")
    is_enabled = models.BooleanField(default=True)
    version = models.PositiveIntegerField(default=1)

    amount_above = models.DecimalField(
        max_digits=14, decimal_places=2, null=True, blank=True, validators=[MinValueValidator(0)]
    )
    variance_above = models.DecimalField(
        max_digits=7, decimal_places=2, null=True, blank=True, validators=[MinValueValidator(0)]
    )
    sku_tags = ArrayField(models.CharField(max_length=50), default=list, blank=True)
    suppliers = ArrayField(models.CharField(max_length=64), default=list, blank=True)

    # {"buyer": "10000.00", "owner": null}: roles that may decide, each with the most it
    # may approve (null = any amount).
    approvers = models.JSONField(default=dict)
    required_approvals = models.PositiveSmallIntegerField(default=1)
    allow_self_approval = models.BooleanField(default=False)
    auto_approve_up_to = models.DecimalField(
        max_digits=14, decimal_places=2, null=True, blank=True, validators=[MinValueValidator(0)]
    )
    escalate_after = models.DurationField(null=True, blank=True)
    escalate_to = ArrayField(models.CharField(max_length=20), default=list, blank=True)
    expire_after = models.DurationField(null=True, blank=True)

    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["subject_type", "position", "id"]
        verbose_name_plural = "approval policies"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(required_approvals__gte=1, required_approvals__lte=10),
                name="policy_required_approvals_1_to_10",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} (v{self.version})"

    @property
    def subject_label(self) -> str:
        return label_for(self.subject_type)


class ApprovalPolicyVersion(models.Model):
    """The rules of one policy version, frozen as JSON (approvals.rules.Rules.as_json)."""

    policy = models.ForeignKey(ApprovalPolicy, on_delete=models.PROTECT, related_name="versions")
    version = models.PositiveIntegerField()
    name = models.CharField(max_length=120)
    rules = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)
    created_by_label = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["policy", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["policy", "version"], name="one_row_per_policy_version")
        ]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


class RequestState(models.TextChoices):
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    EXPIRED = "expired", "Expired"
    CANCELLED = "cancelled", "Cancelled"


class ApprovalRequestQuerySet(models.QuerySet):
    def pending(self) -> ApprovalRequestQuerySet:
        return self.filter(state=RequestState.PENDING)

    def for_subject(self, subject_type: str, subject_id: object) -> ApprovalRequestQuerySet:
        return self.filter(subject_type=subject_type, subject_id=str(subject_id))


class ApprovalRequest(models.Model):
    subject_type = models.CharField(max_length=50)
    subject_id = models.CharField(max_length=64)
    subject_version = models.PositiveIntegerField(default=1)
    title = models.CharField(max_length=200)
    amount = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    currency = models.CharField(max_length=3)
    # The inputs the policy saw (Facts.as_json) and why it applied, in words.
    facts = models.JSONField(default=dict)
    explanation = models.TextField()

    policy = models.ForeignKey(ApprovalPolicy, on_delete=models.PROTECT, related_name="requests")
    policy_version = models.ForeignKey(
        ApprovalPolicyVersion, on_delete=models.PROTECT, related_name="requests"
    )
    state = models.CharField(
        max_length=10, choices=RequestState.choices, default=RequestState.PENDING
    )
    required_approvals = models.PositiveSmallIntegerField(default=1)
    # Roles that may decide now (the policy's, plus escalation's once escalated); the
    # inbox narrows by it in SQL before checking limits.
    eligible_roles = ArrayField(models.CharField(max_length=20), default=list)
    auto_approved = models.BooleanField(default=False)

    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    requested_by_label = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    escalate_at = models.DateTimeField(null=True, blank=True)
    escalated_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    decided_by_label = models.CharField(max_length=200, blank=True)
    # Why it was rejected, cancelled or expired; shown to the requester.
    resolution = models.TextField(blank=True)
    superseded_by = models.OneToOneField(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="supersedes"
    )

    # Set in the transaction that ran the subject's continuation; unique, so a second
    # run would fail at the database even if a code path forgot the state check.
    continuation_key = models.CharField(max_length=80, null=True, blank=True, unique=True)
    continued_at = models.DateTimeField(null=True, blank=True)

    objects = ApprovalRequestQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["subject_type", "subject_id"]),
            models.Index(fields=["state", "expires_at"], name="approval_pending_deadlines"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["subject_type", "subject_id"],
                condition=models.Q(state="pending"),
                name="one_pending_request_per_subject",
            ),
            models.CheckConstraint(
                condition=models.Q(state="pending") | models.Q(decided_at__isnull=False),
                name="closed_request_has_decided_at",
            ),
            models.CheckConstraint(
                # A superseded approval ran its continuation before it was cancelled.
                condition=models.Q(continued_at__isnull=True)
                | models.Q(state__in=["approved", "cancelled"]),
                name="only_approved_requests_continue",
            ),
        ]

    def __str__(self) -> str:
        return f"Approval #{self.pk}: {self.title}"

    @property
    def subject_label(self) -> str:
        return label_for(self.subject_type)

    @property
    def is_pending(self) -> bool:
        return self.state == RequestState.PENDING


class Verdict(models.TextChoices):
    APPROVE = "approve", "Approved"
    REJECT = "reject", "Rejected"


class ApprovalDecision(models.Model):
    request = models.ForeignKey(ApprovalRequest, on_delete=models.CASCADE, related_name="decisions")
    approver = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    approver_label = models.CharField(max_length=200)
    # The role and limit that allowed it, as they were at that moment.
    role = models.CharField(max_length=20)
    limit = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    verdict = models.CharField(max_length=8, choices=Verdict.choices)
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            # "N approvers" means N different people.
            models.UniqueConstraint(fields=["request", "approver"], name="one_decision_per_person")
        ]

    def __str__(self) -> str:
        return f"{self.approver_label} {self.verdict} #{self.request_id}"


class ApprovalComment(models.Model):
    request = models.ForeignKey(ApprovalRequest, on_delete=models.CASCADE, related_name="comments")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, related_name="+"
    )
    author_label = models.CharField(max_length=200)
    body = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"Comment by {self.author_label} on #{self.request_id}"


class ApprovalSettings(models.Model):
    """The brand's approval notification settings (one row, created on first use so that
    each brand gets its own webhook secret rather than the template's)."""

    webhook_url = models.URLField(max_length=500, blank=True)
    # Signs webhook bodies (HMAC-SHA256, header X-Keel-Signature). Keel must sign with it
    # again, so it cannot be hashed: encrypted at rest (config.crypto), read through
    # approvals.services.webhook_signing_secret().
    webhook_secret_encrypted = FernetTokenField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "approval settings"
        constraints = [models.CheckConstraint(condition=models.Q(id=1), name="one_settings_row")]

    def __str__(self) -> str:
        return "Approval settings"


class EmailMode(models.TextChoices):
    IMMEDIATE = "immediate", "Each request as it arrives"
    DIGEST = "digest", "A daily digest"
    OFF = "off", "No email"


class ApproverPreference(models.Model):
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="approval_preference"
    )
    email = models.CharField(max_length=10, choices=EmailMode.choices, default=EmailMode.IMMEDIATE)
    # The brand-local day the last digest went out: one digest per day however often the
    # sweep runs.
    last_digest_on = models.DateField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.user_id}: {self.email}"


class WebhookDelivery(models.Model):
    """One outbound notification: written after the decision committed, sent by a task
    that retries with backoff. A delivered row is never sent again."""

    event = models.CharField(max_length=40)
    request = models.ForeignKey(
        ApprovalRequest, on_delete=models.CASCADE, null=True, related_name="+"
    )
    url = models.URLField(max_length=500)
    body = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    attempts = models.PositiveIntegerField(default=0)
    last_status = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "webhook deliveries"

    def __str__(self) -> str:
        return f"{self.event} → {self.url}"
