"""Brands (django-tenants tenants) and the domains that reach them.

Every brand is one PostgreSQL schema. Three kinds of Brand row exist: the `public`
tenant (marketing site, signup, staff admin), one `template` (a migrated, empty schema
that new brands are cloned from; being a tenant row means `migrate_schemas` keeps it
current), `pool` rows (clones made ahead of time, renamed into a brand at signup; also
kept current by `migrate_schemas`) and real `brand` rows.
"""

from django.db import models
from django_tenants.models import DomainMixin, TenantMixin


class BrandKind(models.TextChoices):
    PUBLIC = "public", "Public site"
    TEMPLATE = "template", "Template schema"
    POOL = "pool", "Pre-provisioned schema"
    BRAND = "brand", "Brand"


class BrandQuerySet(models.QuerySet):
    def brands(self) -> "BrandQuerySet":
        """Real brands only: what periodic work fans out over."""
        return self.filter(kind=BrandKind.BRAND)


class Brand(TenantMixin):
    kind = models.CharField(max_length=16, choices=BrandKind.choices, default=BrandKind.BRAND)
    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=30, unique=True)
    timezone = models.CharField(max_length=64, default="UTC")
    currency = models.CharField(max_length=3, default="USD")
    # The signup form carries a one-time id so a double-submitted form provisions once.
    signup_token = models.UUIDField(null=True, blank=True, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    # Schemas are created by tenants.services (clone of the template), never by save().
    auto_create_schema = False
    auto_drop_schema = True

    objects = BrandQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["kind"],
                condition=models.Q(kind__in=["public", "template"]),
                name="one_public_and_one_template",
            )
        ]

    def __str__(self) -> str:
        return self.name


class Domain(DomainMixin):
    pass
