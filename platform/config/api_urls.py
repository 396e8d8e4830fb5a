from django.urls import path
from rest_framework.routers import DefaultRouter

from accounts.api import ApiKeyViewSet, InvitationViewSet, UserViewSet
from approvals.api import ApprovalPolicyViewSet, ApprovalRequestViewSet
from audit.api import ActivityViewSet
from catalog.api import (
    ListingMappingViewSet,
    ProductViewSet,
    SKUViewSet,
    UnmappedListingViewSet,
)
from forecasting import api as forecasting_api
from inventory.api import (
    MovementViewSet,
    ReservationViewSet,
    StockLevelViewSet,
    TransferViewSet,
    WarehouseViewSet,
)
from orders.api import (
    FulfillmentOrderViewSet,
    OrderViewSet,
    RoutingDecisionViewSet,
    RuleSetViewSet,
)
from purchasing import api as purchasing_api
from replenishment import api as replenishment_api
from shipping import api as shipping_api
from sync.api import ConnectionViewSet, ConnectorViewSet, SyncRunViewSet
from tenants.api import BrandProfileView
from webhooks.api import WebhookDeliveryViewSet, WebhookEndpointViewSet

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("users", UserViewSet, basename="user")
router.register("invitations", InvitationViewSet, basename="invitation")
router.register("api-keys", ApiKeyViewSet, basename="apikey")
router.register("activity", ActivityViewSet, basename="activity")
router.register("products", ProductViewSet, basename="product")
router.register("skus", SKUViewSet, basename="sku")
router.register("listing-mappings", ListingMappingViewSet, basename="listingmapping")
router.register("unmapped-listings", UnmappedListingViewSet, basename="unmappedlisting")
router.register("warehouses", WarehouseViewSet, basename="warehouse")
router.register("stock-levels", StockLevelViewSet, basename="stocklevel")
router.register("movements", MovementViewSet, basename="movement")
router.register("transfers", TransferViewSet, basename="transfer")
router.register("reservations", ReservationViewSet, basename="reservation")
router.register("orders", OrderViewSet, basename="order")
router.register("fulfillment-orders", FulfillmentOrderViewSet, basename="fulfillmentorder")
router.register("routing-decisions", RoutingDecisionViewSet, basename="routingdecision")
router.register("rules", RuleSetViewSet, basename="ruleset")
router.register("approval-requests", ApprovalRequestViewSet, basename="approvalrequest")
router.register("approval-policies", ApprovalPolicyViewSet, basename="approvalpolicy")
router.register("webhook-endpoints", WebhookEndpointViewSet, basename="webhookendpoint")
router.register("webhook-deliveries", WebhookDeliveryViewSet, basename="webhookdelivery")
router.register("connectors", ConnectorViewSet, basename="connector")
router.register("connections", ConnectionViewSet, basename="connection")
router.register("sync-runs", SyncRunViewSet, basename="syncrun")
# Newer apps register their own viewsets, so adding one touches only its app.
for app_api in (purchasing_api, forecasting_api, replenishment_api, shipping_api):
    app_api.register(router)

urlpatterns = [path("brand/", BrandProfileView.as_view(), name="api_brand"), *router.urls]
