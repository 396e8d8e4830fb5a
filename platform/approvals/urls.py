from django.urls import path

from approvals import views

app_name = "approvals"
urlpatterns = [
    path("", views.InboxView.as_view(), name="inbox"),
    path("bulk-approve/", views.BulkApproveView.as_view(), name="bulk_approve"),
    path("preferences/", views.PreferenceView.as_view(), name="preferences"),
    path("policies/", views.PolicyListView.as_view(), name="policies"),
    path("policies/new/", views.PolicyFormView.as_view(), name="policy_create"),
    path("policies/<int:pk>/", views.PolicyFormView.as_view(), name="policy_edit"),
    path("settings/", views.SettingsView.as_view(), name="settings"),
    path("<int:pk>/", views.RequestDetailView.as_view(), name="detail"),
    path("<int:pk>/decide/", views.DecideView.as_view(), name="decide"),
    path("<int:pk>/comment/", views.CommentView.as_view(), name="comment"),
    path("<int:pk>/cancel/", views.CancelView.as_view(), name="cancel"),
]
