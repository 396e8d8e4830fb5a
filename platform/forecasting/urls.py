from django.urls import path

from forecasting import views

app_name = "forecasting"
urlpatterns = [
    path("", views.OverviewView.as_view(), name="overview"),
    path("skus/<int:pk>/", views.SkuForecastView.as_view(), name="sku"),
    path("runs/", views.RunsView.as_view(), name="runs"),
    path("runs/<int:pk>/", views.RunDetailView.as_view(), name="run"),
    path("segments/", views.SegmentsView.as_view(), name="segments"),
]
