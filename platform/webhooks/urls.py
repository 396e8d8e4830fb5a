from django.urls import path

from webhooks import views

app_name = "webhooks"
urlpatterns = [
    path("", views.EndpointListView.as_view(), name="endpoints"),
    path("new/", views.EndpointCreateView.as_view(), name="create"),
    path("<int:pk>/", views.EndpointDetailView.as_view(), name="endpoint"),
    path("<int:pk>/edit/", views.EndpointEditView.as_view(), name="edit"),
    path("<int:pk>/delete/", views.EndpointDeleteView.as_view(), name="delete"),
    path("<int:pk>/rotate-secret/", views.RotateSecretView.as_view(), name="rotate_secret"),
    path("<int:pk>/test/", views.SendTestView.as_view(), name="test"),
    path("deliveries/<int:pk>/", views.DeliveryDetailView.as_view(), name="delivery"),
    path("deliveries/<int:pk>/replay/", views.ReplayView.as_view(), name="replay"),
]
