"""REST endpoints for people and API keys. Business rules live in accounts.services."""

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.response import Response

from accounts import services
from accounts.models import ApiKey, User
from accounts.roles import Role, Scope
from idempotency.services import idempotent


class UserSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["id", "email", "full_name", "role", "is_active", "date_joined", "last_login"]
        read_only_fields = ["id", "email", "full_name", "date_joined", "last_login"]


class UserUpdateSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=Role.choices, required=False)
    is_active = serializers.BooleanField(required=False)


class InvitationCreateSerializer(serializers.Serializer):
    email = serializers.EmailField(max_length=254)
    role = serializers.ChoiceField(choices=Role.choices)


class InvitationSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    email = serializers.EmailField()
    role = serializers.CharField()
    expires_at = serializers.DateTimeField()


class ApiKeySerializer(serializers.ModelSerializer):
    class Meta:
        model = ApiKey
        fields = ["id", "name", "prefix", "scope", "created_at", "last_used_at", "revoked_at"]
        read_only_fields = fields


class ApiKeyCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    scope = serializers.ChoiceField(choices=Scope.choices)


class ApiKeyCreatedSerializer(ApiKeySerializer):
    key = serializers.CharField(help_text="The full key. Shown in this response only.")

    class Meta(ApiKeySerializer.Meta):
        fields = [*ApiKeySerializer.Meta.fields, "key"]
        read_only_fields = fields


class UserViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Teammates of this brand. PATCH changes role or active state."""

    queryset = User.objects.all()
    serializer_class = UserSerializer
    http_method_names = ["get", "patch", "post", "head", "options"]
    required_permissions = {
        "list": "team.view",
        "retrieve": "team.view",
        "partial_update": "team.manage",
    }

    @extend_schema(request=UserUpdateSerializer, responses=UserSerializer)
    def partial_update(self, request, *args, **kwargs):
        target = self.get_object()
        data = UserUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        if "role" in data.validated_data:
            target = services.change_role(
                actor=request.user, target=target, role=data.validated_data["role"]
            )
        if "is_active" in data.validated_data:
            target = services.set_active(
                actor=request.user, target=target, active=data.validated_data["is_active"]
            )
        return Response(UserSerializer(target).data)


class InvitationViewSet(viewsets.GenericViewSet):
    serializer_class = InvitationCreateSerializer
    required_permissions = {"create": "team.invite"}

    @extend_schema(request=InvitationCreateSerializer, responses={201: InvitationSerializer})
    @idempotent
    def create(self, request):
        data = InvitationCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        issued = services.invite_user(
            actor=request.user,
            accept_url_for=lambda token: request.build_absolute_uri(
                f"/accounts/invitations/accept/{token}/"
            ),
            **data.validated_data,
        )
        return Response(InvitationSerializer(issued.invitation).data, status=201)


class ApiKeyViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """API keys. Creating returns the secret once; DELETE revokes (the row stays)."""

    queryset = ApiKey.objects.all()
    serializer_class = ApiKeySerializer
    required_permissions = {
        "list": "apikeys.view",
        "retrieve": "apikeys.view",
        "create": "apikeys.manage",
        "destroy": "apikeys.manage",
    }

    # Deliberately not @idempotent: a replay would have to store the secret to return it.
    @extend_schema(request=ApiKeyCreateSerializer, responses={201: ApiKeyCreatedSerializer})
    def create(self, request):
        data = ApiKeyCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        issued = services.create_api_key(actor=request.user, **data.validated_data)
        body = ApiKeySerializer(issued.api_key).data | {"key": issued.secret}
        response = Response(body, status=status.HTTP_201_CREATED)
        response["Cache-Control"] = "no-store"
        return response

    def perform_destroy(self, instance):
        services.revoke_api_key(actor=self.request.user, api_key=instance)
