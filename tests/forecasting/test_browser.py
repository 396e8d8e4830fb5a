"""Forecast pages in a real browser: the runs page's progress follows a run as its chunks
finish (htmx polling), and an Ops manager re-forecasts a SKU from its chart page.

The server is another process (tests/e2e), so what it serves is committed by `floor` and
removed afterwards (alpha's business tables emptied, the person and the activity entries
deleted). Chunks are run from a plain thread while the page is open: Playwright's event
loop makes Django refuse ORM calls in the test's own thread.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.db import connections
from django.db.models import Max
from django_tenants.utils import schema_context
from playwright.sync_api import Page, expect

from accounts.models import User
from accounts.roles import Role
from audit.models import ActivityEntry
from forecasting import services
from forecasting.models import ForecastSettings, SkuForecast
from tests.conftest import empty_business_tables
from tests.e2e.browser import LiveServer, chromium_page, track_failed_assets
from tests.e2e.conftest import live  # noqa: F401  (the server fixture)
from tests.factories import SKUFactory, UserFactory
from tests.forecasting.helpers import intermittent_history, put_demand, smooth_history

pytestmark = [pytest.mark.e2e, pytest.mark.django_db]

PASSWORD = "correct-horse-battery-staple"
OPS = "fran.e2e@alpha.example"
SCHEMA = "brand_alpha"


@dataclass(frozen=True)
class Floor:
    run_id: int
    sku_id: int
    total: int


@pytest.fixture(scope="module")
def floor(django_db_setup, django_db_blocker) -> Iterator[Floor]:
    """Committed: an Ops manager, four SKUs with history (two per chunk) and a queued run
    whose chunk tasks were not published (the test runs them)."""
    with django_db_blocker.unblock(), schema_context(SCHEMA):
        last_entry = ActivityEntry.objects.aggregate(last=Max("id"))["last"] or 0
        hasher = PBKDF2PasswordHasher()
        person = UserFactory(email=OPS, full_name="Fran Forecast", role=Role.OPS_MANAGER)
        person.password = hasher.encode(PASSWORD, hasher.salt())
        person.save(update_fields=["password"])
        ForecastSettings.objects.update_or_create(pk=1, defaults={"chunk_size": 2})
        today = services.brand_today()
        skus = [SKUFactory(code=f"E2E-F{i}") for i in range(4)]
        put_demand(skus[0], today - timedelta(days=150), smooth_history(150, level=6))
        for i, sku in enumerate(skus[1:], start=1):
            put_demand(sku, today - timedelta(days=200), intermittent_history(200, seed=i))
        run = services.run_forecasts(kind="manual", publish=False)
    try:
        yield Floor(run.pk, skus[0].pk, run.total)
    finally:
        with django_db_blocker.unblock(), schema_context(SCHEMA):
            empty_business_tables(SCHEMA)
            User.objects.filter(email=OPS).delete()
            ActivityEntry.objects.filter(id__gt=last_entry).delete()


def sign_in(page: Page, base: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("Email").fill(OPS)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/")


def run_chunk_in_thread(run_id: int, index: int) -> None:
    def work() -> None:
        try:
            with schema_context(SCHEMA):
                services.run_chunk(run_id, index)
        finally:
            connections.close_all()

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(timeout=120)


def test_the_runs_page_follows_a_run_to_its_end(live: LiveServer, floor: Floor):  # noqa: F811
    base = f"http://{live.brand_host('alpha')}"
    with chromium_page() as page:
        failed = track_failed_assets(page)
        sign_in(page, base)
        page.get_by_role("link", name="Forecasts").click()
        page.get_by_role("link", name="Runs").click()
        progress = page.locator("#run-progress")
        expect(progress).to_contain_text(f"0 of {floor.total} SKUs")

        run_chunk_in_thread(floor.run_id, 0)
        expect(progress).to_contain_text(f"2 of {floor.total} SKUs", timeout=10_000)
        expect(progress.locator("progress")).to_have_attribute("value", "2")

        run_chunk_in_thread(floor.run_id, 1)
        # Finished: the progress card goes and the polling stops.
        expect(progress.locator("progress")).to_have_count(0, timeout=10_000)
        expect(progress).not_to_have_attribute("hx-trigger", "every 2s")
        page.reload()
        expect(page.get_by_role("row", name=f"#{floor.run_id}")).to_contain_text("Succeeded")
        assert failed == []


def test_an_ops_manager_forecasts_a_sku_again_from_its_chart(live: LiveServer, floor: Floor):  # noqa: F811
    base = f"http://{live.brand_host('alpha')}"
    with schema_context(SCHEMA):
        before = SkuForecast.objects.filter(sku_id=floor.sku_id).first()
    with chromium_page() as page:
        failed = track_failed_assets(page)
        sign_in(page, base)
        page.goto(f"{base}/forecasting/skus/{floor.sku_id}/")
        expect(page.get_by_role("img", name="E2E-F0: demand and forecast")).to_be_visible()

        page.get_by_role("button", name="Forecast now").click()

        expect(page.get_by_text("E2E-F0 forecast again from its latest history.")).to_be_visible(
            timeout=60_000
        )
        expect(page.locator("svg.forecast-chart polyline.mean")).to_have_count(1)
        assert failed == []
    with schema_context(SCHEMA):
        after = SkuForecast.objects.select_related("run").get(sku_id=floor.sku_id)
    assert after.run.kind == "single"
    assert before is None or after.generated_at > before.generated_at
