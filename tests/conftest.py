"""Test harness: real PostgreSQL and Redis (started by scripts/test.sh).

The test database is migrated once per session; two brands (alpha, beta) are provisioned
once by the real provisioning service and committed. Each test then runs inside a
transaction that is rolled back, so tests never re-run migrations or re-create schemas.
"""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django_tenants.utils import schema_context

from tenants.models import Brand
from tenants.services import Owner, domain_for, provision_brand
from tests.factories import UserFactory

PASSWORD = "correct-horse-battery-staple"


@pytest.fixture(scope="session", autouse=True)
def _fast_password_hashing():
    # PBKDF2's 1M iterations cost ~0.3 s per user created or signed in; tests check
    # behaviour, not hash strength.
    from django.conf import settings

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Provisioning tests exercise the clone path unless they fill the pool themselves.
    settings.KEEL_SCHEMA_POOL_SIZE = 0


@pytest.fixture(scope="session")
def django_db_setup(_fast_password_hashing, django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        # pytest-django creates test_<name> only when a collected test uses the database;
        # never provision the fixtures into a developer's real database.
        assert connection.settings_dict["NAME"].startswith("test_"), "not a test database"
        call_command("keel_bootstrap", skip_migrate=True, pool=0, verbosity=0)
        for slug in ("alpha", "beta"):
            provision_brand(
                name=slug.title(),
                slug=slug,
                owner=Owner(f"owner@{slug}.example", f"{slug.title()} Owner", PASSWORD),
            )
        cache.clear()


@pytest.fixture(autouse=True)
def _back_to_public():
    yield
    connection.set_schema_to_public()


@pytest.fixture
def brand_a(db) -> Brand:
    return Brand.objects.get(slug="alpha")


@pytest.fixture
def brand_b(db) -> Brand:
    return Brand.objects.get(slug="beta")


def host_of(brand: Brand) -> str:
    return domain_for(brand.slug)


def brand_client(brand: Brand, user=None) -> Client:
    """A test client talking to `brand`'s host, signed in as `user` when given."""
    client = Client(HTTP_HOST=host_of(brand))
    if user is not None:
        # The session row lives in the brand's schema, like a real sign-in.
        with schema_context(brand.schema_name):
            client.force_login(user)
    return client


def make_user(brand: Brand, **fields):
    with schema_context(brand.schema_name):
        return UserFactory(**fields)


@pytest.fixture
def owner_a(brand_a):
    with schema_context(brand_a.schema_name):
        from accounts.models import User

        return User.objects.get(email="owner@alpha.example")


@pytest.fixture
def owner_b(brand_b):
    with schema_context(brand_b.schema_name):
        from accounts.models import User

        return User.objects.get(email="owner@beta.example")


# Business data that tests committing from threads create; people, sessions, the
# activity log and migration history are left as provisioning wrote them.
BUSINESS_APPS = (
    "catalog_",
    "inventory_",
    "orders_",
    "idempotency_",
    "purchasing_",
    "forecasting_",
    "replenishment_",
    "shipping_",
    # Committed sends leave outbox messages (PO emails); later tests expect none.
    "outbox_",
)

# Configuration rows migrations seed into every brand: they are not test data.
SEEDED = {"forecasting_segmentpolicy"}


def empty_business_tables(schema: str) -> None:
    """Truncate a brand's business tables (data committed by threads or a server process),
    restoring the state every other test expects."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = %s AND table_type = 'BASE TABLE'",
            [schema],
        )
        tables = sorted(
            t for (t,) in cursor.fetchall() if t.startswith(BUSINESS_APPS) and t not in SEEDED
        )
        cursor.execute(
            f"TRUNCATE {', '.join(f'{schema}.{t}' for t in tables)} RESTART IDENTITY CASCADE"
        )


@pytest.fixture
def in_alpha(brand_a):
    """Run the test body inside brand alpha's schema (rolled back afterwards)."""
    with schema_context(brand_a.schema_name):
        yield brand_a


def purge_task_queues() -> None:
    """Drop tasks that committed work queued for workers (outbox relay kicks and the like):
    no worker runs them in these tests, and the next test expects empty queues."""
    from config.celery import app

    app.control.purge()


@pytest.fixture
def committed_alpha(django_db_setup, django_db_blocker):
    """For tests whose threads need committed rows: alpha's business tables are emptied
    after, restoring the state every other test expects."""
    with django_db_blocker.unblock():
        with schema_context("brand_alpha"):
            yield
        empty_business_tables("brand_alpha")
        connection.set_schema_to_public()
    purge_task_queues()
