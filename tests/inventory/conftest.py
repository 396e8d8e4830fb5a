import pytest
from django.db import connection
from django_tenants.utils import schema_context

STOCK_TABLES = [
    "inventory_stockevent",
    "inventory_stockmovement",
    "inventory_reservation",
    "inventory_stockbalance",
    "inventory_transferline",
    "inventory_transfer",
    "inventory_countline",
    "inventory_cyclecount",
    "inventory_warehouse",
    "catalog_bundlecomponent",
    "catalog_listingmapping",
    "catalog_unmappedlisting",
    "catalog_sku",
    "catalog_product",
    "audit_activityentry",
]


@pytest.fixture
def in_alpha(brand_a):
    """Run the test body inside brand alpha's schema (rolled back afterwards)."""
    with schema_context(brand_a.schema_name):
        yield brand_a


@pytest.fixture
def committed_alpha(django_db_setup, django_db_blocker):
    """For tests whose threads need committed rows: alpha's stock tables are emptied after.

    Truncating restores the state every other test expects (no catalog or stock rows; the
    activity log keeps only what provisioning wrote, which tests don't rely on).
    """
    with django_db_blocker.unblock():
        with schema_context("brand_alpha"):
            yield
        with connection.cursor() as cursor:
            cursor.execute(
                "TRUNCATE "
                + ", ".join(f"brand_alpha.{t}" for t in STOCK_TABLES[:-1])
                + " RESTART IDENTITY CASCADE"
            )
        connection.set_schema_to_public()
