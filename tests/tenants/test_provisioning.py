import uuid

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django_tenants.utils import schema_context

from accounts.models import User
from audit.models import ActivityEntry
from tenants.models import Brand, Domain
from tenants.services import Owner, provision_brand, schema_name_for

OWNER = Owner("founder@gamma.example", "Gia Founder", "correct-horse-battery-staple")


def schemas() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT nspname FROM pg_namespace")
        return {row[0] for row in cursor.fetchall()}


def tables_in(schema: str) -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", [schema]
        )
        return {row[0] for row in cursor.fetchall()}


def test_provisioned_brand_is_a_clone_of_the_template_with_an_owner(db, settings):
    brand = provision_brand(name="Gamma", slug="gamma-goods", owner=OWNER)

    assert brand.schema_name == "brand_gamma_goods"
    assert tables_in("brand_gamma_goods") == tables_in(settings.TENANT_BASE_SCHEMA)
    assert Domain.objects.get(tenant=brand).domain == "gamma-goods.localhost"
    with schema_context(brand.schema_name):
        owner = User.objects.get()
        assert (owner.email, owner.role) == ("founder@gamma.example", "owner")
        assert owner.check_password("correct-horse-battery-staple")
        assert list(ActivityEntry.objects.values_list("action", flat=True)) == ["brand.created"]
    # The template itself never receives brand data.
    with schema_context(settings.TENANT_BASE_SCHEMA):
        assert User.objects.count() == 0


def test_cloned_schema_has_the_template_migration_history(db, settings):
    brand = provision_brand(name="Gamma", slug="gamma", owner=OWNER)
    with connection.cursor() as cursor:
        query = 'SELECT app, name FROM "{}".django_migrations ORDER BY app, name'
        cursor.execute(query.format(settings.TENANT_BASE_SCHEMA))
        template_history = cursor.fetchall()
        cursor.execute(query.format(brand.schema_name))
        assert cursor.fetchall() == template_history


@pytest.mark.parametrize(
    ("slug", "code"),
    [
        ("alpha", "taken"),
        ("www", "reserved"),
        ("admin", "reserved"),
        ("api", "reserved"),
        ("Bad_Slug", "invalid_characters"),
        ("-lead", "invalid_characters"),
        ("double--hyphen", "invalid_characters"),
        ("ab", "too_short"),
        ("x" * 31, "too_long"),
    ],
)
def test_bad_slug_creates_nothing(db, slug, code):
    before_schemas, before_brands = schemas(), Brand.objects.count()

    with pytest.raises(ValidationError) as excinfo:
        provision_brand(name="Nope", slug=slug, owner=OWNER)

    assert excinfo.value.code == code
    assert schemas() == before_schemas
    assert Brand.objects.count() == before_brands


def test_failure_after_clone_rolls_back_schema_domain_and_rows(db):
    # An owner the database rejects (email too long for the column) fails the last step.
    bad_owner = Owner("x" * 300 + "@example.com", "Too Long", "correct-horse-battery-staple")
    before = schemas()

    with pytest.raises(Exception):  # noqa: B017 - any failure must roll everything back
        provision_brand(name="Delta", slug="delta", owner=bad_owner)

    assert schema_name_for("delta") not in schemas()
    assert schemas() == before
    assert not Brand.objects.filter(slug="delta").exists()
    assert not Domain.objects.filter(domain__startswith="delta.").exists()


def test_same_signup_token_provisions_once(db):
    token = uuid.uuid4()
    provision_brand(name="Eps", slug="epsilon", owner=OWNER, signup_token=token)
    with pytest.raises(ValidationError) as excinfo:
        provision_brand(name="Eps", slug="epsilon-2", owner=OWNER, signup_token=token)
    assert excinfo.value.code == "taken"
    assert not Brand.objects.filter(slug="epsilon-2").exists()
    assert schema_name_for("epsilon_2") not in schemas()


def test_missing_template_is_an_explicit_error(db, settings):
    from tenants.services import ProvisioningError

    settings.TENANT_BASE_SCHEMA = "no_such_template"
    with pytest.raises(ProvisioningError, match="Template schema"):
        provision_brand(name="Zeta", slug="zeta", owner=OWNER)
    assert "brand_zeta" not in schemas()


def test_template_schema_is_fully_migrated_so_clones_start_current(db, settings):
    from django.db.migrations.executor import MigrationExecutor
    from django_tenants.utils import schema_context

    template = Brand.objects.get(kind="template")
    assert template.schema_name == settings.TENANT_BASE_SCHEMA
    # migrate_schemas walks every Brand row, so the template is migrated with each deploy.
    with schema_context(template.schema_name):
        executor = MigrationExecutor(connection)
        targets = executor.loader.graph.leaf_nodes()
        assert executor.migration_plan(targets) == []


def test_staff_admin_lives_on_the_public_host_only(db):
    from django.test import Client

    staff = User.objects.create_superuser(
        email="ops@keel.example", full_name="Platform Ops", password="correct-horse-battery"
    )
    client = Client(HTTP_HOST="localhost")
    client.force_login(staff)
    page = client.get("/admin/tenants/brand/")
    assert page.status_code == 200
    assert b"Alpha" in page.content and b"Beta" in page.content
    # The same person is unknown on a brand host, and brand hosts have no admin.
    brand_host = Client(HTTP_HOST="alpha.localhost")
    brand_host.cookies = client.cookies
    assert brand_host.get("/admin/").status_code == 404
    assert brand_host.get("/").status_code == 302


def test_signup_takes_a_pre_cloned_schema_from_the_pool(db, settings):
    from tenants.services import refill_pool

    assert refill_pool(2) == 2
    pooled = list(Brand.objects.filter(kind="pool").order_by("id"))
    assert [tables_in(p.schema_name) for p in pooled] == [
        tables_in(settings.TENANT_BASE_SCHEMA)
    ] * 2

    brand = provision_brand(name="Pooled", slug="pooled", owner=OWNER)

    assert brand.pk == pooled[0].pk  # the pool row became the brand
    assert brand.kind == "brand"
    assert pooled[0].schema_name not in schemas()
    assert "brand_pooled" in schemas()
    assert Brand.objects.filter(kind="pool").count() == 1
    with schema_context(brand.schema_name):
        assert User.objects.get().email == "founder@gamma.example"
    assert refill_pool(2) == 1


def test_failed_signup_returns_the_pooled_schema(db):
    from tenants.services import refill_pool

    refill_pool(1)
    pooled = Brand.objects.get(kind="pool")
    bad_owner = Owner("x" * 300 + "@example.com", "Too Long", "correct-horse-battery-staple")

    with pytest.raises(Exception):  # noqa: B017 - any failure must roll everything back
        provision_brand(name="Delta", slug="delta", owner=bad_owner)

    assert Brand.objects.get(kind="pool").schema_name == pooled.schema_name
    assert pooled.schema_name in schemas()
    assert "brand_delta" not in schemas()
