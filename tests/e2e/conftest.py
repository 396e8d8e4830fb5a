"""Browser tests: a real server process and headless Chromium against the test database.

pytest-django's `live_server` is not used: its transactional teardown flushes every table,
which would wipe the brands the session provisioned once in the public schema. Instead a
separate server process talks to the same test database and commits for real.

The tests carry the plain `django_db` mark: it makes pytest-django create the test database
even when only this directory runs, and the test's own reads happen in the usual rolled-back
transaction (which sees the server's commits). What the server committed cannot be rolled
back, so brands created through the browser are dropped by `drop_after_module`, after every
test transaction of the module has ended: dropping a schema inside one would either be
rolled back or wait forever on the locks the test's own reads hold.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.conf import settings
from django.db import connection

from tenants.models import Brand
from tests.e2e.browser import LiveServer, database_url, running_server


@pytest.fixture(scope="module")
def live(django_db_setup, tmp_path_factory) -> Iterator[LiveServer]:
    # After django_db_setup the connection points at the test database (test_keel, or
    # test_keel_gw<n> under xdist); the server must use exactly that one.
    log = tmp_path_factory.mktemp("e2e-server") / "server.log"
    with running_server(
        database_url=database_url(connection.settings_dict),
        redis_url=settings.REDIS_URL,
        log=log,
    ) as server:
        yield server


@pytest.fixture(scope="module")
def drop_after_module(django_db_setup, django_db_blocker) -> Iterator[list[str]]:
    """Slugs appended here have their Brand row and schema dropped when the module ends."""
    slugs: list[str] = []
    yield slugs
    with django_db_blocker.unblock():
        connection.set_schema_to_public()
        for brand in Brand.objects.filter(slug__in=slugs):
            brand.delete(force_drop=True)
