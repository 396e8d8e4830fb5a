from drf_spectacular.utils import extend_schema
from rest_framework import serializers, views
from rest_framework.response import Response

from tenants.services import update_brand_profile


class BrandSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    slug = serializers.CharField(read_only=True)
    timezone = serializers.CharField(max_length=64)
    currency = serializers.RegexField(r"^[A-Z]{3}$", max_length=3)
    created_at = serializers.DateTimeField(read_only=True)

    def validate_timezone(self, value: str) -> str:
        import zoneinfo

        if value not in zoneinfo.available_timezones():
            raise serializers.ValidationError("Unknown IANA timezone.", code="invalid_timezone")
        return value


class BrandProfileView(views.APIView):
    """The brand this host serves."""

    required_permissions = {"GET": "brand.view", "PATCH": "brand.edit"}

    @extend_schema(responses=BrandSerializer)
    def get(self, request):
        return Response(BrandSerializer(request.tenant).data)

    @extend_schema(request=BrandSerializer, responses=BrandSerializer)
    def patch(self, request):
        data = BrandSerializer(request.tenant, data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        brand = update_brand_profile(
            brand=request.tenant, actor=request.auth or request.user, **data.validated_data
        )
        return Response(BrandSerializer(brand).data)
