"""URLs of the bare BASE_DOMAIN: marketing page, signup, platform staff admin."""

from django.contrib import admin
from django.urls import path

from tenants import views

urlpatterns = [
    path("", views.home, name="home"),
    path("signup/", views.signup, name="signup"),
    path("admin/", admin.site.urls),
]
