from django.contrib.auth import views as auth_views
from django.urls import path

from accounts import views

app_name = "accounts"

urlpatterns = [
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("welcome/<str:token>/", views.HandoffView.as_view(), name="handoff"),
    path("password-reset/", views.password_reset, name="password_reset"),
    path("password-reset/sent/", views.password_reset_done, name="password_reset_done"),
    path(
        "password-reset/<uidb64>/<token>/",
        views.password_reset_confirm,
        name="password_reset_confirm",
    ),
    path("password-reset/done/", views.password_reset_complete, name="password_reset_complete"),
    path("team/", views.TeamView.as_view(), name="team"),
    path("team/invite/", views.InviteView.as_view(), name="invite"),
    path("team/<int:pk>/", views.MemberView.as_view(), name="member"),
    path(
        "invitations/<int:pk>/revoke/",
        views.RevokeInvitationView.as_view(),
        name="revoke_invitation",
    ),
    path(
        "invitations/accept/<str:token>/",
        views.AcceptInvitationView.as_view(),
        name="accept_invitation",
    ),
    path("api-keys/", views.ApiKeysView.as_view(), name="api_keys"),
    path("api-keys/<int:pk>/revoke/", views.RevokeApiKeyView.as_view(), name="revoke_api_key"),
    path("settings/", views.BrandSettingsView.as_view(), name="brand_settings"),
]
