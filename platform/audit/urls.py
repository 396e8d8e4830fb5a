from django.urls import path

from audit.views import ActivityView

app_name = "audit"
urlpatterns = [path("", ActivityView.as_view(), name="activity")]
