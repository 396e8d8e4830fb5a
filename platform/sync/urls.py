from django.urls import path

from sync import views

app_name = "sync"
urlpatterns = [
    path("", views.ConnectionsView.as_view(), name="connections"),
    path("add/", views.ChooseConnectorView.as_view(), name="choose"),
    path("add/<str:connector>/", views.ConnectionCreateView.as_view(), name="create"),
    path("<int:pk>/", views.ConnectionDetailView.as_view(), name="detail"),
    path("<int:pk>/edit/", views.ConnectionEditView.as_view(), name="edit"),
    path("<int:pk>/<str:action>/", views.ConnectionActionView.as_view(), name="action"),
    path("runs/<int:pk>/", views.RunDetailView.as_view(), name="run"),
]
