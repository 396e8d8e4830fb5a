"""REST endpoints for the item master. Business rules live in catalog.services.

Serializers check the shape of input (types, lengths, choices, references that exist in
this brand's schema) and hand it to the services; what the services refuse comes back
through config.api.exception_handler in the one error format.

Decisions:
- SKU `available` is available-to-promise summed over active warehouses, from
  inventory.services (bundles: what their components can build, warehouse by warehouse).
  A list page computes it for the whole page at once.
- A SKU's product is fixed at creation; `is_bundle` follows from PUT /skus/{id}/components/.
- DELETE on a listing mapping removes it (logged); the external SKU lands in the unmapped
  queue again the next time a channel sends it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from django.db.models import Q
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field, extend_schema_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from catalog import services
from catalog.models import (
    SKU,
    BundleComponent,
    Lifecycle,
    ListingMapping,
    Product,
    UnmappedListing,
    UnmappedStatus,
)
from config.api import IDEMPOTENCY_KEY, QueryFilter, QueryParamFilter, error_responses
from idempotency.services import idempotent
from inventory import services as stock

CURRENCY = r"^[A-Z]{3}$"  # ISO 4217 alphabetic code


def sku_availability(skus: Iterable[SKU]) -> dict[int, int]:
    """Available-to-promise per SKU id, summed over warehouses (see module docstring)."""
    skus = list(skus)
    totals: dict[int, int] = defaultdict(int)
    plain = [s.pk for s in skus if not s.is_bundle]
    if plain:
        for (sku_id, _warehouse_id), units in stock.available_to_promise(sku_ids=plain).items():
            totals[sku_id] += units
    for bundle in (s for s in skus if s.is_bundle):
        totals[bundle.pk] = sum(stock.bundle_availability(bundle).values())
    return {s.pk: totals[s.pk] for s in skus}


# --- Products --------------------------------------------------------------------------


class ProductSerializer(serializers.ModelSerializer):
    class Meta:
        model = Product
        fields = [
            "id",
            "title",
            "description",
            "vendor",
            "category",
            "tags",
            "status",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]


class ProductViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Products. Each has one or more SKUs (variants)."""

    queryset = Product.objects.all()
    serializer_class = ProductSerializer
    http_method_names = ["get", "post", "patch", "head", "options"]
    filter_backends = [QueryParamFilter]
    query_filters = {
        "status": QueryFilter(
            serializers.ChoiceField(choices=Lifecycle.choices),
            lambda qs, v: qs.filter(status=v),
            "Lifecycle status.",
        ),
        "search": QueryFilter(
            serializers.CharField(max_length=100),
            lambda qs, v: qs.filter(
                Q(title__icontains=v) | Q(vendor__icontains=v) | Q(category__icontains=v)
            ),
            "Text in the title, vendor or category.",
        ),
    }
    required_permissions = {
        "list": "catalog.view",
        "retrieve": "catalog.view",
        "create": "catalog.edit",
        "partial_update": "catalog.edit",
    }

    @extend_schema(
        parameters=[IDEMPOTENCY_KEY],
        responses={201: ProductSerializer, **error_responses(400, 422)},
    )
    @idempotent
    def create(self, request, *args, **kwargs) -> Response:
        return super().create(request, *args, **kwargs)

    def perform_create(self, serializer) -> None:
        serializer.instance = services.create_product(**serializer.validated_data)

    def perform_update(self, serializer) -> None:
        serializer.instance = services.update_product(
            serializer.instance, **serializer.validated_data
        )


# --- SKUs ------------------------------------------------------------------------------


class ComponentSerializer(serializers.Serializer):
    sku = serializers.PrimaryKeyRelatedField(queryset=SKU.objects.all())
    sku_code = serializers.CharField(source="sku.code", read_only=True)
    quantity = serializers.IntegerField(min_value=1, max_value=1_000_000)


class BundleRecipeSerializer(serializers.Serializer):
    components = ComponentSerializer(many=True, allow_empty=False)


class SKUListSerializer(serializers.ListSerializer):
    def to_representation(self, data):
        items = list(data.all() if hasattr(data, "all") else data)
        # One availability read for the whole page instead of one per row.
        self.context["available"] = sku_availability(items)
        return super().to_representation(items)


class SKUSerializer(serializers.ModelSerializer):
    cost_currency = serializers.RegexField(
        CURRENCY,
        allow_blank=True,
        required=False,
        help_text="ISO 4217 code, e.g. USD. Required with unit_cost.",
    )
    option_values = serializers.DictField(
        child=serializers.CharField(max_length=100),
        required=False,
        help_text='Variant options, e.g. {"Size": "M", "Colour": "Navy"}.',
    )
    components = serializers.SerializerMethodField()
    available = serializers.SerializerMethodField(
        help_text="Available to promise over active warehouses (bundles: buildable units)."
    )

    class Meta:
        model = SKU
        list_serializer_class = SKUListSerializer
        fields = [
            "id",
            "product",
            "code",
            "title",
            "option_values",
            "gtin",
            "tags",
            "status",
            "weight",
            "weight_unit",
            "length",
            "width",
            "height",
            "dimension_unit",
            "unit_cost",
            "cost_currency",
            "is_hazmat",
            "is_oversize",
            "is_bundle",
            "components",
            "available",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "is_bundle", "created_at", "updated_at"]
        extra_kwargs = {
            "unit_cost": {"help_text": 'Decimal string in cost_currency, e.g. "12.5000".'},
            "weight": {"help_text": "In weight_unit."},
        }

    def validate_code(self, value: str) -> str:
        value = value.strip()
        taken = SKU.objects.filter(code__iexact=value)
        if self.instance is not None:
            taken = taken.exclude(pk=self.instance.pk)
        if taken.exists():
            raise serializers.ValidationError("Another SKU has this code.", code="unique")
        return value

    def validate(self, attrs: dict) -> dict:
        def current(name: str, default=None):
            return attrs.get(name, getattr(self.instance, name, default))

        if current("unit_cost") is not None and not current("cost_currency", ""):
            raise serializers.ValidationError(
                {
                    "cost_currency": serializers.ErrorDetail(
                        "A unit cost needs its ISO 4217 currency.", code="required"
                    )
                }
            )
        return attrs

    @extend_schema_field(ComponentSerializer(many=True, read_only=True))
    def get_components(self, sku: SKU) -> list[dict]:
        if not sku.is_bundle:
            return []
        return [
            {"sku": c.component_id, "sku_code": c.component.code, "quantity": c.quantity}
            for c in sku.components.all()
        ]

    @extend_schema_field(OpenApiTypes.INT)
    def get_available(self, sku: SKU) -> int:
        known = self.context.get("available")
        if known is not None and sku.pk in known:
            return known[sku.pk]
        return sku_availability([sku])[sku.pk]


class SKUUpdateSerializer(SKUSerializer):
    class Meta(SKUSerializer.Meta):
        read_only_fields = [*SKUSerializer.Meta.read_only_fields, "product"]


def _sku_filters() -> dict[str, QueryFilter]:
    return {
        "search": QueryFilter(
            serializers.CharField(max_length=100),
            lambda qs, v: qs.search(v),
            "Text in the code or title (SKU or product), or an exact GTIN.",
        ),
        "status": QueryFilter(
            serializers.ChoiceField(choices=Lifecycle.choices),
            lambda qs, v: qs.filter(status=v),
            "Lifecycle status.",
        ),
        "tag": QueryFilter(
            serializers.CharField(max_length=50),
            lambda qs, v: qs.filter(tags__contains=[v]),
            "SKUs carrying this tag.",
        ),
        "product": QueryFilter(
            serializers.IntegerField(min_value=1),
            lambda qs, v: qs.filter(product_id=v),
            "Product id.",
        ),
        "is_bundle": QueryFilter(
            serializers.BooleanField(),
            lambda qs, v: qs.filter(is_bundle=v),
            "Only bundles (true) or only stocked SKUs (false).",
        ),
    }


class SKUViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    """SKUs (variants). Bundles are SKUs with components: see /skus/{id}/components/."""

    queryset = SKU.objects.select_related("product").prefetch_related("components__component")
    serializer_class = SKUSerializer
    http_method_names = ["get", "post", "put", "patch", "head", "options"]
    filter_backends = [QueryParamFilter]
    query_filters = _sku_filters()
    required_permissions = {
        "list": "catalog.view",
        "retrieve": "catalog.view",
        "components": "catalog.view",
        "create": "catalog.edit",
        "partial_update": "catalog.edit",
        "set_components": "catalog.edit",
    }

    def get_serializer_class(self):
        if self.action == "partial_update":
            return SKUUpdateSerializer
        return super().get_serializer_class()

    @extend_schema(
        parameters=[IDEMPOTENCY_KEY],
        responses={201: SKUSerializer, **error_responses(400, 422)},
    )
    @idempotent
    def create(self, request, *args, **kwargs) -> Response:
        return super().create(request, *args, **kwargs)

    def perform_create(self, serializer) -> None:
        serializer.instance = services.create_sku(**serializer.validated_data)

    # PATCH only. Not UpdateModelMixin: the router would route PUT /skus/{id}/ to it, and
    # PUT is allowed on this viewset only for /skus/{id}/components/.
    def partial_update(self, request, *args, **kwargs) -> Response:
        serializer = self.get_serializer(self.get_object(), data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        sku = services.update_sku(serializer.instance, **serializer.validated_data)
        return Response(self.get_serializer(sku).data)

    def _recipe(self, bundle: SKU) -> Response:
        lines = BundleComponent.objects.filter(bundle=bundle).select_related("component")
        data = BundleRecipeSerializer(
            {"components": [{"sku": c.component, "quantity": c.quantity} for c in lines]}
        ).data
        return Response(data)

    @extend_schema(responses=BundleRecipeSerializer)
    @action(detail=True, methods=["get"])
    def components(self, request, pk=None) -> Response:
        """The bundle recipe: component SKUs × units per bundle (empty for stocked SKUs)."""
        return self._recipe(self.get_object())

    @extend_schema(
        request=BundleRecipeSerializer,
        responses={200: BundleRecipeSerializer, **error_responses(400)},
    )
    @components.mapping.put
    def set_components(self, request, pk=None) -> Response:
        """Make this SKU a bundle of the given components, replacing any previous recipe."""
        bundle = self.get_object()
        data = BundleRecipeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        bundle = services.set_bundle_components(
            bundle,
            [(line["sku"], line["quantity"]) for line in data.validated_data["components"]],
        )
        return self._recipe(bundle)


# --- Listing mappings ------------------------------------------------------------------


class ListingMappingSerializer(serializers.ModelSerializer):
    sku_code = serializers.CharField(source="sku.code", read_only=True)

    class Meta:
        model = ListingMapping
        fields = [
            "id",
            "channel",
            "external_sku",
            "external_listing_id",
            "sku",
            "sku_code",
            "created_at",
        ]
        read_only_fields = fields


class ListingMappingCreateSerializer(serializers.Serializer):
    channel = serializers.CharField(max_length=100)
    external_sku = serializers.CharField(max_length=255)
    external_listing_id = serializers.CharField(max_length=255, required=False, default="")
    sku = serializers.PrimaryKeyRelatedField(queryset=SKU.objects.all())


class ListingMappingViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """(channel, external SKU) → SKU. Many listings may map to one SKU."""

    queryset = ListingMapping.objects.select_related("sku")
    serializer_class = ListingMappingSerializer
    filter_backends = [QueryParamFilter]
    query_filters = {
        "channel": QueryFilter(
            serializers.CharField(max_length=100),
            lambda qs, v: qs.filter(channel=v),
            "Channel or connection name (exact).",
        ),
        "sku": QueryFilter(
            serializers.IntegerField(min_value=1),
            lambda qs, v: qs.filter(sku_id=v),
            "SKU id.",
        ),
    }
    required_permissions = {
        "list": "catalog.view",
        "retrieve": "catalog.view",
        "create": "catalog.edit",
        "destroy": "catalog.edit",
    }

    @extend_schema(
        request=ListingMappingCreateSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={201: ListingMappingSerializer, **error_responses(400, 422)},
    )
    @idempotent
    def create(self, request) -> Response:
        data = ListingMappingCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        mapping = services.map_listing(**data.validated_data)
        return Response(ListingMappingSerializer(mapping).data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance: ListingMapping) -> None:
        services.unmap_listing(instance)


# --- Unmapped queue --------------------------------------------------------------------


class UnmappedListingSerializer(serializers.ModelSerializer):
    resolved_sku_code = serializers.CharField(
        source="resolved_sku.code", read_only=True, default=None, allow_null=True
    )

    class Meta:
        model = UnmappedListing
        fields = [
            "id",
            "channel",
            "external_sku",
            "external_listing_id",
            "title",
            "status",
            "occurrences",
            "first_seen_at",
            "last_seen_at",
            "resolved_sku",
            "resolved_sku_code",
            "resolved_at",
        ]
        read_only_fields = fields


# Named explicitly: shipping has a ResolveSerializer too, and two components called
# "ResolveRequest" made the schema describe one operation with the other's body.
@extend_schema_serializer(component_name="UnmappedListingResolve")
class ResolveSerializer(serializers.Serializer):
    sku = serializers.PrimaryKeyRelatedField(queryset=SKU.objects.all())


class UnmappedListingViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """External SKUs no mapping matched. Resolving maps them and re-processes what waited."""

    queryset = UnmappedListing.objects.select_related("resolved_sku")
    serializer_class = UnmappedListingSerializer
    filter_backends = [QueryParamFilter]
    query_filters = {
        "status": QueryFilter(
            serializers.ChoiceField(choices=UnmappedStatus.choices),
            lambda qs, v: qs.filter(status=v),
            "Queue status (open: needs a SKU).",
        ),
        "channel": QueryFilter(
            serializers.CharField(max_length=100),
            lambda qs, v: qs.filter(channel=v),
            "Channel or connection name (exact).",
        ),
    }
    required_permissions = {
        "list": "catalog.view",
        "retrieve": "catalog.view",
        "resolve": "catalog.edit",
    }

    @extend_schema(
        request=ResolveSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={200: UnmappedListingSerializer, **error_responses(400, 422)},
    )
    @action(detail=True, methods=["post"])
    @idempotent
    def resolve(self, request, pk=None) -> Response:
        """Map this external SKU to a SKU of ours."""
        item = self.get_object()
        data = ResolveSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.resolve_unmapped(item, sku=data.validated_data["sku"])
        item = self.get_queryset().get(pk=item.pk)
        return Response(UnmappedListingSerializer(item).data)
