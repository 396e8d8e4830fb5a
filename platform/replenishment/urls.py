from django.urls import path

from replenishment import views

app_name = "replenishment"
urlpatterns = [
    path("", views.BoardView.as_view(), name="board"),
    path("plan/", views.PlanNowView.as_view(), name="plan"),
    path("settings/", views.SettingsView.as_view(), name="settings"),
    path(
        "recommendations/<int:pk>/<str:action>/",
        views.RecommendationActionView.as_view(),
        name="recommendation_action",
    ),
    path(
        "suppliers/<int:supplier_id>/create-pos/",
        views.SupplierCreatePOsView.as_view(),
        name="supplier_create_pos",
    ),
    path(
        "transfers/<int:pk>/<str:action>/",
        views.TransferActionView.as_view(),
        name="transfer_action",
    ),
]
