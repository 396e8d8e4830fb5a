from django.urls import path

from outbox import views

app_name = "outbox"
urlpatterns = [
    path("", views.MessageListView.as_view(), name="messages"),
    path("retry/", views.RetryAllView.as_view(), name="retry_all"),
    path("<int:pk>/retry/", views.RetryView.as_view(), name="retry"),
]
