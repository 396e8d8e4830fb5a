"""REST endpoints for approval requests and policies. Rules live in approvals.services.

- `/approval-requests/`: list (filters `state`, `subject_type`, `decidable`, `mine`),
  retrieve (with the decision context), `POST {id}/approve/`, `POST {id}/reject/`
  (`comment` required), `POST {id}/cancel/`. Who may decide is the policy's approver roles,
  checked by the service exactly as for the inbox; API keys may read but never decide
  (`approver_required`), because a decision must name a person.
- `/approval-policies/`: read with approvals.view; create and PATCH with
  approvals.manage_policies (Owner, Admin). Every change makes a new version; requests
  keep the version they were opened under. Durations are whole seconds.
- A request already decided answers 409 `request_closed`; a second approval by the same
  person 409 `already_decided`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from accounts.roles import Role
from approvals import registry, services
from approvals.models import ApprovalDecision, ApprovalPolicy, ApprovalRequest, RequestState
from config.api import IDEMPOTENCY_KEY, QueryFilter, QueryParamFilter, error_responses
from idempotency.services import idempotent


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"
    default_detail = "The request's state does not allow this now."


def _call(function, *args: Any, **kwargs: Any) -> Any:
    try:
        return function(*args, **kwargs)
    except services.ApprovalConflict as exc:
        raise Conflict(" ".join(exc.messages), code=exc.code) from exc


class DecisionSerializer(serializers.ModelSerializer):
    class Meta:
        model = ApprovalDecision
        fields = ["approver", "approver_label", "role", "verdict", "comment", "created_at"]
        read_only_fields = fields


class PolicyRefSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="policy_id")
    name = serializers.CharField()
    version = serializers.IntegerField()


class ApprovalRequestSerializer(serializers.ModelSerializer):
    subject_label = serializers.CharField(read_only=True)
    policy = PolicyRefSerializer(source="policy_version", read_only=True)
    decisions = DecisionSerializer(many=True, read_only=True)
    can_decide = serializers.SerializerMethodField(
        help_text="Whether the caller may approve or reject it now."
    )

    class Meta:
        model = ApprovalRequest
        fields = [
            "id",
            "subject_type",
            "subject_label",
            "subject_id",
            "subject_version",
            "title",
            "amount",
            "currency",
            "state",
            "explanation",
            "policy",
            "required_approvals",
            "eligible_roles",
            "auto_approved",
            "requested_by",
            "requested_by_label",
            "created_at",
            "escalate_at",
            "escalated_at",
            "expires_at",
            "decided_at",
            "decided_by",
            "decided_by_label",
            "resolution",
            "superseded_by",
            "decisions",
            "can_decide",
        ]
        read_only_fields = fields

    def get_can_decide(self, obj: ApprovalRequest) -> bool:
        request = self.context.get("request")
        principal = request.user if request is not None else None
        return services.can_decide(principal, obj)


class ContextTableSerializer(serializers.Serializer):
    caption = serializers.CharField()
    columns = serializers.ListField(child=serializers.CharField())
    rows = serializers.ListField(child=serializers.ListField(child=serializers.CharField()))


class FactSerializer(serializers.Serializer):
    label = serializers.CharField()
    value = serializers.CharField()


class DecisionContextSerializer(serializers.Serializer):
    facts = FactSerializer(many=True)
    tables = ContextTableSerializer(many=True)
    warnings = serializers.ListField(child=serializers.CharField())


class ApprovalRequestDetailSerializer(ApprovalRequestSerializer):
    context = serializers.SerializerMethodField(
        help_text="What an approver needs to decide, as the subject type presents it."
    )

    class Meta(ApprovalRequestSerializer.Meta):
        fields = [*ApprovalRequestSerializer.Meta.fields, "context"]
        read_only_fields = fields

    @extend_schema_field(DecisionContextSerializer)
    def get_context(self, obj: ApprovalRequest) -> dict[str, Any]:
        if not registry.is_registered(obj.subject_type):
            return {"facts": [], "tables": [], "warnings": []}
        context = registry.get(obj.subject_type).context_for(obj)
        return {
            "facts": [{"label": label, "value": value} for label, value in context.facts],
            "tables": [
                {"caption": t.caption, "columns": t.columns, "rows": t.rows} for t in context.tables
            ],
            "warnings": context.warnings,
        }


class DecisionInputSerializer(serializers.Serializer):
    comment = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")


class RejectInputSerializer(serializers.Serializer):
    comment = serializers.CharField(max_length=2000, help_text="Why; the requester sees it.")


class CancelInputSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")


DECIDABLE = OpenApiParameter(
    "decidable",
    bool,
    OpenApiParameter.QUERY,
    description="true: only pending requests the caller may approve or reject now.",
)
MINE = OpenApiParameter(
    "mine", bool, OpenApiParameter.QUERY, description="true: only requests the caller made."
)


class ApprovalRequestViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Approval requests, newest first."""

    serializer_class = ApprovalRequestSerializer
    filter_backends = [QueryParamFilter]
    query_filters = {
        "state": QueryFilter(
            serializers.ChoiceField(choices=RequestState.choices),
            lambda qs, v: qs.filter(state=v),
            "Request state.",
        ),
        "subject_type": QueryFilter(
            serializers.CharField(max_length=50),
            lambda qs, v: qs.filter(subject_type=v),
            "Subject type key, e.g. stock_adjustment.",
        ),
    }
    required_permissions = {
        "list": "approvals.view",
        "retrieve": "approvals.view",
        "approve": "approvals.view",
        "reject": "approvals.view",
        "cancel": "approvals.view",
    }

    def get_queryset(self):
        rows = ApprovalRequest.objects.select_related("policy_version").prefetch_related(
            "decisions"
        )
        if self.action != "list":
            return rows
        if self._flag("decidable"):
            rows = rows.filter(
                pk__in=[r.pk for r in services.decidable_requests(self.request.user)]
            )
        if self._flag("mine"):
            rows = rows.filter(requested_by_id=getattr(self.request.user, "pk", None)).filter(
                requested_by__isnull=False
            )
        return rows

    def _flag(self, name: str) -> bool:
        """A boolean query parameter; `mine=maybe` is a 400, not silently "false"."""
        raw = self.request.query_params.get(name)
        if raw is None:
            return False
        try:
            return serializers.BooleanField().run_validation(raw)
        except serializers.ValidationError as exc:
            raise serializers.ValidationError({name: exc.detail}) from exc

    def get_serializer_class(self):
        if self.action == "retrieve":
            return ApprovalRequestDetailSerializer
        return ApprovalRequestSerializer

    @extend_schema(parameters=[DECIDABLE, MINE])
    def list(self, request, *args, **kwargs) -> Response:
        return super().list(request, *args, **kwargs)

    def _respond(self, approval: ApprovalRequest) -> Response:
        approval = self.get_queryset().get(pk=approval.pk)
        return Response(ApprovalRequestSerializer(approval, context={"request": self.request}).data)

    @extend_schema(
        request=DecisionInputSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={200: ApprovalRequestSerializer, **error_responses(400, 403, 404, 409, 422)},
    )
    @action(detail=True, methods=["post"])
    @idempotent
    def approve(self, request, pk: str | None = None) -> Response:
        """Approve. The last required approval runs the subject's continuation (once)."""
        approval = self.get_object()
        data = DecisionInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        approval = _call(
            services.approve, approval, actor=request.user, comment=data.validated_data["comment"]
        )
        return self._respond(approval)

    @extend_schema(
        request=RejectInputSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={200: ApprovalRequestSerializer, **error_responses(400, 403, 404, 409, 422)},
    )
    @action(detail=True, methods=["post"])
    @idempotent
    def reject(self, request, pk: str | None = None) -> Response:
        """Reject with a reason; the subject returns to its owner with it."""
        approval = self.get_object()
        data = RejectInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        approval = _call(
            services.reject, approval, actor=request.user, comment=data.validated_data["comment"]
        )
        return self._respond(approval)

    @extend_schema(
        request=CancelInputSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={200: ApprovalRequestSerializer, **error_responses(400, 403, 404, 409, 422)},
    )
    @action(detail=True, methods=["post"])
    @idempotent
    def cancel(self, request, pk: str | None = None) -> Response:
        """Withdraw a pending request (its requester, or an Owner/Admin)."""
        approval = self.get_object()
        data = CancelInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        approval = _call(
            services.cancel,
            approval,
            actor=request.auth or request.user,
            reason=data.validated_data["reason"],
        )
        return self._respond(approval)


# --- Policies -------------------------------------------------------------------------------


class ApprovalPolicySerializer(serializers.ModelSerializer):
    approvers = serializers.DictField(
        child=serializers.DecimalField(
            max_digits=14, decimal_places=2, min_value=0, allow_null=True
        ),
        help_text='Role → the most it may approve (null: any amount), e.g. {"owner": null, '
        '"buyer": "10000.00"}.',
    )
    escalate_to = serializers.ListField(
        child=serializers.CharField(max_length=20),
        required=False,
        help_text=f"Roles added once a request escalates: {', '.join(Role.values)}.",
    )
    escalate_after_seconds = serializers.IntegerField(
        min_value=1, required=False, allow_null=True, help_text="Escalate a pending request after."
    )
    expire_after_seconds = serializers.IntegerField(
        min_value=1, required=False, allow_null=True, help_text="Expire a pending request after."
    )
    sku_tags = serializers.ListField(
        child=serializers.CharField(max_length=50), required=False, help_text="Any of."
    )
    suppliers = serializers.ListField(
        child=serializers.CharField(max_length=64), required=False, help_text="Any of."
    )

    class Meta:
        model = ApprovalPolicy
        fields = [
            "id",
            "subject_type",
            "name",
            "position",
            "is_enabled",
            "version",
            "amount_above",
            "variance_above",
            "sku_tags",
            "suppliers",
            "approvers",
            "required_approvals",
            "allow_self_approval",
            "auto_approve_up_to",
            "escalate_after_seconds",
            "escalate_to",
            "expire_after_seconds",
            "updated_at",
        ]
        read_only_fields = ["id", "version", "updated_at"]

    def to_representation(self, instance: ApprovalPolicy) -> dict[str, Any]:
        data = super().to_representation(instance)
        for name in ("escalate_after", "expire_after"):
            value: timedelta | None = getattr(instance, name)
            data[f"{name}_seconds"] = None if value is None else int(value.total_seconds())
        return data

    def service_fields(self) -> dict[str, Any]:
        values = dict(self.validated_data)
        for name in ("escalate_after", "expire_after"):
            key = f"{name}_seconds"
            if key in values:
                seconds = values.pop(key)
                values[name] = None if seconds is None else timedelta(seconds=seconds)
        if "approvers" in values:
            values["approvers"] = {
                role: None if limit is None else str(limit)
                for role, limit in values["approvers"].items()
            }
        return values


class ApprovalPolicyViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Approval policies. Disable one with `is_enabled: false`; they are never deleted,
    because requests point at their versions."""

    queryset = ApprovalPolicy.objects.all()
    serializer_class = ApprovalPolicySerializer
    http_method_names = ["get", "post", "patch", "head", "options"]
    filter_backends = [QueryParamFilter]
    query_filters = {
        "subject_type": QueryFilter(
            serializers.CharField(max_length=50),
            lambda qs, v: qs.filter(subject_type=v),
            "Subject type key.",
        ),
    }
    required_permissions = {
        "list": "approvals.view",
        "retrieve": "approvals.view",
        "create": "approvals.manage_policies",
        "partial_update": "approvals.manage_policies",
    }

    @extend_schema(
        parameters=[IDEMPOTENCY_KEY],
        responses={201: ApprovalPolicySerializer, **error_responses(400, 403, 422)},
    )
    @idempotent
    def create(self, request, *args, **kwargs) -> Response:
        return super().create(request, *args, **kwargs)

    def perform_create(self, serializer: ApprovalPolicySerializer) -> None:
        serializer.instance = services.create_policy(
            actor=self.request.user, **serializer.service_fields()
        )

    def perform_update(self, serializer: ApprovalPolicySerializer) -> None:
        serializer.instance = services.update_policy(
            serializer.instance, actor=self.request.user, **serializer.service_fields()
        )
