"""URLs served on a brand's host (<slug>.BASE_DOMAIN)."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from config import views
from sync import views as sync_views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("accounts/", include("accounts.urls")),
    path("activity/", include("audit.urls")),
    path("catalog/", include("catalog.urls")),
    path("inventory/", include("inventory.urls")),
    path("imports/", include("catalog.import_urls")),
    path("orders/", include("orders.urls")),
    path("approvals/", include("approvals.urls")),
    path("webhooks/", include("webhooks.urls")),
    path("outbox/", include("outbox.urls")),
    path("connections/", include("sync.urls")),
    path("purchasing/", include("purchasing.urls")),
    path("forecasting/", include("forecasting.urls")),
    path("replenishment/", include("replenishment.urls")),
    path("shipping/", include("shipping.urls")),
    # Channel webhooks: no session, no CSRF, verified by signature. Unnamed: it is an
    # endpoint for vendors, not a page (route-enumerating tests treat names as pages).
    path("hooks/<uuid:token>/", sync_views.webhook),
    path("workers/", views.worker_health, name="worker_health"),
    path("api/v1/", include("config.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api_schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api_schema"), name="api_docs"),
]
