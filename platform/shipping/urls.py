from django.urls import path

from shipping import views

app_name = "shipping"
urlpatterns = [
    path("", views.ShipmentListView.as_view(), name="list"),
    path("new/<int:fo_id>/", views.CreateShipmentView.as_view(), name="create"),
    path(
        "fulfillment/<int:fo_id>/",
        views.FulfillmentShipmentView.as_view(),
        name="for_fulfillment",
    ),
    path("<int:pk>/", views.ShipmentDetailView.as_view(), name="detail"),
    path(
        "<int:pk>/<str:action>/",
        views.ShipmentActionView.as_view(),
        name="action",
    ),
    path("labels/<int:pk>/document/", views.LabelDocumentView.as_view(), name="label_document"),
    path(
        "bookings/<int:pk>/<str:kind>/",
        views.FreightDocumentView.as_view(),
        name="freight_document",
    ),
    path("lanes/", views.LanesView.as_view(), name="lanes"),
    path("exceptions/", views.ExceptionQueueView.as_view(), name="exceptions"),
    path(
        "exceptions/<int:pk>/<str:action>/",
        views.ExceptionActionView.as_view(),
        name="exception_action",
    ),
    path("settings/", views.SettingsView.as_view(), name="settings"),
]
