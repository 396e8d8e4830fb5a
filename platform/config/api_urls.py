from django.urls import path
from rest_framework.routers import DefaultRouter

from accounts.api import ApiKeyViewSet, InvitationViewSet, UserViewSet
from audit.api import ActivityViewSet
from tenants.api import BrandProfileView

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("users", UserViewSet, basename="user")
router.register("invitations", InvitationViewSet, basename="invitation")
router.register("api-keys", ApiKeyViewSet, basename="apikey")
router.register("activity", ActivityViewSet, basename="activity")

urlpatterns = [path("brand/", BrandProfileView.as_view(), name="api_brand"), *router.urls]
