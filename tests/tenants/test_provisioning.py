import uuid

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django_tenants.utils import schema_context

from accounts.models import User
from audit.models import ActivityEntry
from tenants.models import Brand, Domain
from tenants.services import Owner, ProvisioningError, provision_brand, schema_name_for

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


# --- A failure at every provisioning step leaves nothing behind -------------------------
#
# Failures are injected in PostgreSQL itself (a row trigger or an event trigger that
# raises), so the real provisioning code runs unchanged up to the failing statement. The
# triggers are created inside the test's transaction and vanish with its rollback.


def _install_failing_row_trigger(table: str, event: str = "INSERT") -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE OR REPLACE FUNCTION public.keel_test_fail_row() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected failure on %', "
            "TG_TABLE_NAME; END $$"
        )
        cursor.execute(
            f"CREATE TRIGGER keel_test_fail BEFORE {event} ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION public.keel_test_fail_row()"
        )


def _install_failing_ddl_trigger(tag: str, schema: str) -> None:
    # Fires after the DDL statement ran, so the clone is interrupted half-way (the schema
    # and its first table exist) and the rename has already happened when it raises.
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE OR REPLACE FUNCTION public.keel_test_fail_ddl() RETURNS event_trigger "
            "LANGUAGE plpgsql AS $$ BEGIN "
            "IF EXISTS (SELECT 1 FROM pg_event_trigger_ddl_commands() "
            f"WHERE schema_name = '{schema}' OR object_identity = '{schema}') THEN "
            "RAISE EXCEPTION 'injected failure after %', TG_TAG; END IF; END $$"
        )
        cursor.execute(
            f"CREATE EVENT TRIGGER keel_test_fail_ddl ON ddl_command_end WHEN TAG IN ('{tag}') "
            "EXECUTE FUNCTION public.keel_test_fail_ddl()"
        )


def _footprint(slug: str) -> dict:
    """Everything provisioning `slug` could leave behind, read from the catalogs."""
    schema = schema_name_for(slug)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = %s", [schema]
        )
        (tables,) = cursor.fetchone()
    return {
        "schemas": schemas(),
        "tables_in_brand_schema": tables,
        "brand_rows": sorted(Brand.objects.values_list("slug", "kind", "schema_name")),
        "domain_rows": sorted(Domain.objects.values_list("domain", flat=True)),
    }


def _template_table(table: str) -> str:
    from django.conf import settings

    return f'"{settings.TENANT_BASE_SCHEMA}".{table}'


# (step, how to make exactly that step fail); the template's triggers are copied by
# the clone, so the brand's own owner and activity inserts fail in the new schema.
# Each entry: step, how to make exactly that step fail, the database's error for it.
CLONE_PATH_STEPS = [
    (
        "brand_row",
        lambda: _install_failing_row_trigger("public.tenants_brand"),
        "injected failure on tenants_brand",
    ),
    (
        "clone",
        lambda: _install_failing_ddl_trigger("CREATE TABLE", "brand_delta"),
        "injected failure after CREATE TABLE",
    ),
    (
        "domain_row",
        lambda: _install_failing_row_trigger("public.tenants_domain"),
        "injected failure on tenants_domain",
    ),
    (
        "owner_user",
        lambda: _install_failing_row_trigger(_template_table("accounts_user")),
        "injected failure on accounts_user",
    ),
    (
        "activity",
        lambda: _install_failing_row_trigger(_template_table("audit_activityentry")),
        "injected failure on audit_activityentry",
    ),
]


@pytest.mark.parametrize(
    ("step", "inject", "cause"), CLONE_PATH_STEPS, ids=[s[0] for s in CLONE_PATH_STEPS]
)
def test_failure_at_each_clone_path_step_leaves_no_schema_domain_or_user(db, step, inject, cause):
    before = _footprint("delta")
    inject()

    with pytest.raises(ProvisioningError) as excinfo:
        provision_brand(name="Delta", slug="delta", owner=OWNER)

    assert cause in str(excinfo.value.__cause__)  # it failed at this step, not earlier

    assert _footprint("delta") == before
    assert before["tables_in_brand_schema"] == 0
    assert "brand_delta" not in schemas()


POOL_PATH_STEPS = [
    (
        # The pooled row is updated, not inserted.
        "take_pooled_row",
        lambda: _install_failing_row_trigger("public.tenants_brand", event="UPDATE"),
        "injected failure on tenants_brand",
    ),
    (
        "rename_schema",
        lambda: _install_failing_ddl_trigger("ALTER SCHEMA", "brand_delta"),
        "injected failure after ALTER SCHEMA",
    ),
    CLONE_PATH_STEPS[2],
    CLONE_PATH_STEPS[3],
    CLONE_PATH_STEPS[4],
]


@pytest.mark.parametrize(
    ("step", "inject", "cause"), POOL_PATH_STEPS, ids=[s[0] for s in POOL_PATH_STEPS]
)
def test_failure_at_each_pool_path_step_returns_the_pooled_schema_intact(db, step, inject, cause):
    from tenants.services import refill_pool

    in_template = step in ("owner_user", "activity")
    if in_template:
        inject()  # before the pool is filled, so the pooled copy carries the trigger
    refill_pool(1)
    pooled = Brand.objects.get(kind="pool")
    pooled_tables = tables_in(pooled.schema_name)
    before = _footprint("delta")
    if not in_template:
        inject()

    with pytest.raises(ProvisioningError) as excinfo:
        provision_brand(name="Delta", slug="delta", owner=OWNER)

    assert cause in str(excinfo.value.__cause__)

    assert _footprint("delta") == before
    assert Brand.objects.get(kind="pool").schema_name == pooled.schema_name
    assert tables_in(pooled.schema_name) == pooled_tables
    with schema_context(pooled.schema_name):
        assert User.objects.count() == 0


def test_a_leftover_schema_with_the_brand_s_name_is_never_adopted(db):
    # A brand deleted with a queryset delete (admin bulk action) keeps its schema; a new
    # signup for the same slug must not inherit its tables, people and data.
    with connection.cursor() as cursor:
        cursor.execute('CREATE SCHEMA "brand_stray"')
        cursor.execute('CREATE TABLE "brand_stray".leftover (secret text)')
    before = _footprint("stray")

    with pytest.raises(ValidationError) as excinfo:
        provision_brand(name="Stray", slug="stray", owner=OWNER)

    assert excinfo.value.code == "taken"
    assert _footprint("stray") == before
    assert tables_in("brand_stray") == {"leftover"}


def test_clone_into_an_existing_schema_is_an_error_not_a_silent_no_op(db):
    from tenants.services import ProvisioningError, clone_template_into

    with connection.cursor() as cursor:
        cursor.execute('CREATE SCHEMA "brand_occupied"')

    with pytest.raises(ProvisioningError, match="already exist"):
        clone_template_into("brand_occupied")
    assert tables_in("brand_occupied") == set()
