from django.contrib import admin
from django_tenants.admin import TenantAdminMixin

from tenants.models import Brand, Domain


class DomainInline(admin.TabularInline):
    model = Domain
    extra = 0


@admin.register(Brand)
class BrandAdmin(TenantAdminMixin, admin.ModelAdmin):
    list_display = ("name", "slug", "kind", "schema_name", "created_at")
    list_filter = ("kind",)
    search_fields = ("name", "slug")
    inlines = [DomainInline]
    readonly_fields = ("schema_name", "kind", "signup_token", "created_at")
