"""Brand provisioning: validate a slug, clone the template schema, create domain and owner.

Provisioning never runs migrations in the request. The template schema (a Brand row of
kind "template") is migrated by `migrate_schemas` like any tenant; a new brand is a
`clone_schema` copy of it, data included, so its `django_migrations` rows come along and
the fake-migrate pass django-tenants would run afterwards is unnecessary.

Cloning costs a few hundred milliseconds and grows with the number of tables, so a small
pool of clones is made ahead of time (Brand rows of kind "pool", topped up by
`refill_pool`); signup takes one with SKIP LOCKED and renames its schema (~1 ms). When the
pool is empty, signup clones on the spot.

Everything happens in one transaction. PostgreSQL DDL is transactional, so a failure
anywhere (slug race, clone error, owner creation) rolls back the schema, the Brand and
Domain rows and the owner together.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction
from django.utils.timezone import now
from django_tenants.clone import CloneSchema
from django_tenants.utils import schema_context, schema_exists

from audit.services import SYSTEM, record
from tenants.models import Brand, BrandKind, Domain

SLUG_MIN, SLUG_MAX = 3, 30
SLUG_RE = re.compile(r"^[a-z](?:[a-z0-9]|-(?!-))*[a-z0-9]$")
# Names a brand may not take: our own hosts, and words that would confuse customers.
RESERVED_SLUGS = frozenset(
    [
        "www",
        "api",
        "admin",
        "app",
        "apps",
        "public",
        "static",
        "media",
        "mail",
        "email",
        "smtp",
        "imap",
        "pop",
        "ftp",
        "ssh",
        "help",
        "support",
        "status",
        "docs",
        "blog",
        "about",
        "pricing",
        "signup",
        "login",
        "logout",
        "register",
        "account",
        "accounts",
        "auth",
        "oauth",
        "sso",
        "billing",
        "dashboard",
        "console",
        "root",
        "system",
        "keel",
        "template",
        "test",
        "staging",
        "dev",
        "demo-internal",
        "internal",
        "cdn",
        "assets",
        "files",
        "webhook",
        "webhooks",
        "hooks",
        "ns",
        "ns1",
        "ns2",
        "mx",
    ]
)
PUBLIC_SCHEMA = "public"


class ProvisioningError(Exception):
    """Provisioning failed; nothing was created."""


@dataclass(frozen=True)
class Owner:
    email: str
    full_name: str
    password: str


def validate_slug(slug: str) -> None:
    """Raise ValidationError (with a code) unless `slug` may name a new brand."""
    if len(slug) < SLUG_MIN:
        raise ValidationError(
            "Use at least %(n)d characters.", code="too_short", params={"n": SLUG_MIN}
        )
    if len(slug) > SLUG_MAX:
        raise ValidationError(
            "Use at most %(n)d characters.", code="too_long", params={"n": SLUG_MAX}
        )
    if not SLUG_RE.match(slug):
        raise ValidationError(
            "Use lowercase letters, digits and single hyphens; start with a letter and "
            "end with a letter or digit.",
            code="invalid_characters",
        )
    if slug in RESERVED_SLUGS:
        raise ValidationError("This subdomain is reserved.", code="reserved")
    if Brand.objects.filter(slug=slug).exists():
        raise ValidationError("This subdomain is already taken.", code="taken")


def schema_name_for(slug: str) -> str:
    # Slugs never contain "_", so mapping "-" to "_" cannot make two slugs collide.
    return "brand_" + slug.replace("-", "_")


def domain_for(slug: str) -> str:
    return f"{slug}.{settings.BASE_DOMAIN}"


def host_url(host: str, path: str = "/") -> str:
    port = f":{settings.PUBLIC_PORT}" if settings.PUBLIC_PORT else ""
    return f"{settings.SITE_SCHEME}://{host}{port}{path}"


def brand_url(brand: Brand, path: str = "/") -> str:
    return host_url(domain_for(brand.slug), path)


def ensure_public_tenant() -> Brand:
    """The public tenant and its domain (BASE_DOMAIN). Idempotent."""
    public, _ = Brand.objects.get_or_create(
        schema_name=PUBLIC_SCHEMA,
        defaults={"kind": BrandKind.PUBLIC, "name": "Keel", "slug": "public"},
    )
    Domain.objects.get_or_create(
        domain=settings.BASE_DOMAIN, defaults={"tenant": public, "is_primary": True}
    )
    return public


def ensure_template_schema(verbosity: int = 0) -> Brand:
    """Create the template schema if missing and bring it to the latest migrations."""
    template_name = settings.TENANT_BASE_SCHEMA
    template, _ = Brand.objects.get_or_create(
        schema_name=template_name,
        defaults={"kind": BrandKind.TEMPLATE, "name": "Template", "slug": "template"},
    )
    if not schema_exists(template_name):
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE SCHEMA "{template_name}"')
    call_command(
        "migrate_schemas",
        schema_name=template_name,
        tenant=True,
        interactive=False,
        verbosity=verbosity,
    )
    _ensure_clone_function()
    connection.set_schema_to_public()
    return template


def _ensure_clone_function() -> None:
    # CREATE OR REPLACE FUNCTION from two sessions at once fails with "tuple concurrently
    # updated", so install it once here rather than on every signup.
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext('keel.clone_schema'))")
        cursor.execute(
            "SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = 'public' AND p.proname = 'clone_schema'"
        )
        if cursor.fetchone() is None:
            CloneSchema()._create_clone_schema_function()


def clone_template_into(schema_name: str) -> None:
    """Create `schema_name` as a copy (tables and rows) of the template schema."""
    template_name = settings.TENANT_BASE_SCHEMA
    if not schema_exists(template_name):
        raise ProvisioningError(
            f"Template schema {template_name!r} is missing; run `manage.py keel_bootstrap`."
        )
    _ensure_clone_function()
    with connection.cursor() as cursor:
        cursor.execute("SELECT clone_schema(%s, %s, 'DATA')", [template_name, schema_name])


def _pool_schema_name() -> str:
    return f"pool_{uuid.uuid4().hex[:16]}"


def refill_pool(target: int | None = None) -> int:
    """Top the pool of pre-cloned schemas up to `target`; returns how many were made."""
    target = settings.KEEL_SCHEMA_POOL_SIZE if target is None else target
    made = 0
    while Brand.objects.filter(kind=BrandKind.POOL).count() < target:
        schema_name = _pool_schema_name()
        with transaction.atomic():
            Brand.objects.create(
                kind=BrandKind.POOL,
                schema_name=schema_name,
                name="Pool",
                slug=schema_name.replace("_", "-"),
            )
            clone_template_into(schema_name)
        made += 1
    connection.set_schema_to_public()
    return made


def _take_pooled_schema(fields: dict) -> Brand | None:
    """Turn a pooled schema into the brand (inside the caller's transaction).

    The Brand row takes the new slug and schema name BEFORE the schema is renamed: a
    concurrent signup for the same slug then fails on the row's unique index (reported as
    "taken") instead of colliding on the schema name inside PostgreSQL's catalog.
    """
    pooled = (
        Brand.objects.select_for_update(skip_locked=True)
        .filter(kind=BrandKind.POOL)
        .order_by("id")
        .first()
    )
    if pooled is None:
        return None
    old_schema = pooled.schema_name
    for field, value in fields.items():
        setattr(pooled, field, value)
    pooled.created_at = now()
    pooled.save()
    with connection.cursor() as cursor:
        cursor.execute(f'ALTER SCHEMA "{old_schema}" RENAME TO "{pooled.schema_name}"')
    return pooled


def provision_brand(
    *,
    name: str,
    slug: str,
    owner: Owner,
    signup_token: uuid.UUID | None = None,
    timezone: str = "UTC",
    currency: str = "USD",
) -> Brand:
    """Create a ready brand: schema (cloned), Brand + Domain rows, owner user.

    Raises ValidationError for a bad/taken slug and ProvisioningError when the
    infrastructure fails; in both cases nothing is left behind.
    """
    from accounts.models import Role, User

    validate_slug(slug)
    schema_name = schema_name_for(slug)
    fields = {
        "kind": BrandKind.BRAND,
        "schema_name": schema_name,
        "name": name,
        "slug": slug,
        "timezone": timezone,
        "currency": currency,
        "signup_token": signup_token,
    }
    try:
        with transaction.atomic():
            brand = _take_pooled_schema(fields)
            if brand is None:
                brand = Brand.objects.create(**fields)
                clone_template_into(schema_name)
            Domain.objects.create(domain=domain_for(slug), tenant=brand, is_primary=True)
            with schema_context(schema_name):
                user = User.objects.create_user(
                    email=owner.email,
                    full_name=owner.full_name,
                    password=owner.password,
                    role=Role.OWNER,
                )
                record("brand.created", obj=user, actor=SYSTEM, changes={"brand": name})
    except IntegrityError as exc:
        # Lost a race for the same slug or signup token: report it like a taken slug.
        raise ValidationError("This subdomain is already taken.", code="taken") from exc
    finally:
        connection.set_schema_to_public()
    if settings.KEEL_SCHEMA_POOL_SIZE:
        transaction.on_commit(_request_pool_refill)
    return brand


def _request_pool_refill() -> None:
    from tenants.tasks import refill_schema_pool

    try:
        refill_schema_pool.delay()
    except Exception:  # noqa: BLE001 - a broker outage must not fail a finished signup
        import logging

        logging.getLogger(__name__).warning("Could not queue a pool refill", exc_info=True)


def migrate_new_schema(schema_name: str) -> None:
    """Create an empty schema and run every tenant migration (the slow path).

    Used by the benchmark as the baseline that cloning is measured against.
    """
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE SCHEMA "{schema_name}"')
    call_command(
        "migrate_schemas", schema_name=schema_name, tenant=True, interactive=False, verbosity=0
    )
    connection.set_schema_to_public()


BRAND_PROFILE_FIELDS = ["name", "timezone", "currency"]


def update_brand_profile(*, brand: Brand, actor, **values) -> Brand:
    """Edit the brand's name, timezone or currency; logged in the brand's activity."""
    from accounts.roles import has_permission
    from accounts.services import AccessError
    from audit.services import diff

    if not has_permission(actor, "brand.edit"):
        raise AccessError("Your role does not allow this.")
    unknown = set(values) - set(BRAND_PROFILE_FIELDS)
    if unknown:
        raise ValidationError(f"Unknown fields: {', '.join(sorted(unknown))}", code="invalid")
    with transaction.atomic():
        locked = Brand.objects.select_for_update().get(pk=brand.pk)
        before = {f: getattr(locked, f) for f in BRAND_PROFILE_FIELDS}
        for field, value in values.items():
            setattr(locked, field, value)
        changes = diff(locked, before, BRAND_PROFILE_FIELDS)
        if changes:
            locked.save(update_fields=list(changes))
            record("brand.updated", obj=locked, changes=changes)
    for field in BRAND_PROFILE_FIELDS:
        setattr(brand, field, getattr(locked, field))
    return brand
