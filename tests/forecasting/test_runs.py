"""Forecast runs end to end through the Celery task code (eager, still through BrandTask's
brand check): chunks, progress, warm restarts, launch profiles, per-SKU failures."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from forecasting import services
from forecasting.models import (
    ForecastChunk,
    ForecastFailure,
    ForecastRun,
    ForecastSettings,
    RunState,
    SkuForecast,
)
from forecasting.tasks import forecast_chunk, nightly_task
from tests.factories import ProductFactory, SKUFactory
from tests.forecasting.helpers import (
    intermittent_history,
    put_demand,
    put_stockouts,
    smooth_history,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def eager_celery():
    from config.celery import app

    before = (app.conf.task_always_eager, app.conf.task_eager_propagates)
    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    yield app
    app.conf.task_always_eager, app.conf.task_eager_propagates = before


@pytest.fixture
def catalog(in_alpha):
    """A smooth seller, an intermittent one, an established and a brand-new tee."""
    ForecastSettings.objects.update_or_create(pk=1, defaults={"chunk_size": 2})
    today = services.brand_today()
    tees = ProductFactory(category="tees")
    skus = {
        "smooth": SKUFactory(code="SMOOTH"),
        "sparse": SKUFactory(code="SPARSE"),
        "old_tee": SKUFactory(code="OLD-TEE", product=tees),
        "new_tee": SKUFactory(code="NEW-TEE", product=ProductFactory(category="tees")),
    }
    put_demand(skus["smooth"], today - timedelta(days=200), smooth_history(200))
    put_demand(skus["sparse"], today - timedelta(days=300), intermittent_history(300))
    put_demand(skus["old_tee"], today - timedelta(days=120), smooth_history(120, level=5, seed=3))
    put_demand(skus["new_tee"], today - timedelta(days=12), smooth_history(12, level=4, seed=4))
    return skus


def run_all(django_capture_on_commit_callbacks, **kwargs) -> ForecastRun:
    with django_capture_on_commit_callbacks(execute=True):
        run = services.run_forecasts(**kwargs)
    run.refresh_from_db()
    return run


def test_a_run_forecasts_every_sku_with_history_in_chunks(
    catalog, eager_celery, django_capture_on_commit_callbacks
):
    run = run_all(django_capture_on_commit_callbacks, kind="manual")

    assert (run.state, run.total, run.done, run.failed, run.chunks) == ("succeeded", 4, 4, 0, 2)
    assert run.percent == 100 and run.finished_at is not None
    assert ForecastChunk.objects.filter(run=run, finished=True).count() == 2
    forecasts = {f.sku.code: f for f in SkuForecast.objects.select_related("sku")}
    assert set(forecasts) == {"SMOOTH", "SPARSE", "OLD-TEE", "NEW-TEE"}
    today = services.brand_today()
    for f in forecasts.values():
        assert (f.start, f.horizon, len(f.mean), f.run_id) == (today, 56, 56, run.pk)
        lo95, lo80, mean, hi80, hi95 = map(np.array, (f.lo95, f.lo80, f.mean, f.hi80, f.hi95))
        assert (lo95 <= lo80 + 1e-9).all() and (lo80 <= mean + 1e-9).all()
        assert (mean <= hi80 + 1e-9).all() and (hi80 <= hi95 + 1e-9).all()
        assert f.warm["method"] == f.method and not f.warm_started
        assert "seasonal_naive" in f.scores or f.method in ("seasonal_naive", "profile")
    assert forecasts["SMOOTH"].demand_class in ("smooth", "erratic")
    assert forecasts["SPARSE"].demand_class in ("intermittent", "lumpy")
    # The new tee learns its launch curve from the established tee of the same category.
    assert forecasts["NEW-TEE"].launch_profile
    assert not forecasts["OLD-TEE"].launch_profile
    assert 15 < forecasts["SMOOTH"].daily_mean < 25


def test_the_next_run_warm_starts_until_the_full_refit_interval_passes(
    catalog, eager_celery, django_capture_on_commit_callbacks
):
    first = run_all(django_capture_on_commit_callbacks)
    fitted = dict(SkuForecast.objects.values_list("sku_id", "full_fit_at"))

    second = run_all(django_capture_on_commit_callbacks)

    assert second.pk != first.pk
    assert second.warm_started == second.done - second.failed == 4
    after = SkuForecast.objects.all()
    assert all(f.warm_started for f in after)
    assert {f.sku_id: f.full_fit_at for f in after} == fitted  # still the first full fit

    SkuForecast.objects.update(full_fit_at=services.timezone.now() - timedelta(days=8))
    third = run_all(django_capture_on_commit_callbacks)

    assert third.warm_started == 0
    assert not SkuForecast.objects.filter(warm_started=True).exists()


def test_progress_counts_chunks_and_a_redelivered_chunk_counts_once(catalog):
    run = services.run_forecasts(kind="manual", publish=False)
    assert (run.state, run.done, run.total, run.percent) == ("queued", 0, 4, 0)

    assert services.run_chunk(run.pk, 0) is True
    run.refresh_from_db()
    assert (run.state, run.done, run.percent) == ("running", 2, 50)

    assert services.run_chunk(run.pk, 0) is False  # redelivered: nothing counted twice
    run.refresh_from_db()
    assert run.done == 2

    services.run_chunk(run.pk, 1)
    run.refresh_from_db()
    assert (run.state, run.done) == ("succeeded", 4)


def test_a_second_start_joins_the_run_in_flight(catalog):
    first = services.run_forecasts(kind="manual", publish=False)

    again = services.run_forecasts(kind="nightly", publish=False)

    assert again.pk == first.pk
    assert ForecastRun.objects.count() == 1


def test_a_failing_sku_is_recorded_and_the_run_goes_on(
    catalog, eager_celery, django_capture_on_commit_callbacks
):
    today = services.brand_today()
    # Out of stock on every day it sold: no observed demand at all.
    broken = SKUFactory(code="BROKEN")
    put_demand(broken, today - timedelta(days=10), [1] * 10)
    put_stockouts(broken, [today - timedelta(days=10 - i) for i in range(10)])

    run = run_all(django_capture_on_commit_callbacks)

    assert (run.state, run.total, run.done, run.failed) == ("succeeded", 5, 5, 1)
    failure = ForecastFailure.objects.get(run=run)
    assert failure.sku == broken and "no observed values" in failure.error
    assert SkuForecast.objects.count() == 4


def test_forecast_one_refits_a_single_sku_now(catalog):
    forecast = services.forecast_one(catalog["sparse"])

    assert forecast.sku == catalog["sparse"] and forecast.horizon == 56
    assert forecast.run.kind == "single" and forecast.run.state == RunState.SUCCEEDED
    assert not forecast.warm_started


def test_a_chunk_task_without_a_brand_refuses_to_run(catalog):
    from django.db import connection

    from workers.base import TenantContextMissing

    run = services.run_forecasts(kind="manual", publish=False)
    connection.set_schema_to_public()
    with pytest.raises(TenantContextMissing):
        forecast_chunk.apply(args=(run.pk, 0), throw=True)


def test_the_nightly_task_runs_once_in_the_brands_night(
    catalog, eager_celery, django_capture_on_commit_callbacks, monkeypatch
):
    monkeypatch.setattr(services, "NIGHTLY_HOUR", 24)
    assert nightly_task.apply().get() is None  # not the brand's night yet

    monkeypatch.setattr(services, "NIGHTLY_HOUR", services.brand_now().hour)
    monkeypatch.setattr(services, "rebuild_demand", lambda since=None: 0)  # keep test rows
    with django_capture_on_commit_callbacks(execute=True):
        run_id = nightly_task.apply().get()
    run = ForecastRun.objects.get(pk=run_id)
    assert (run.kind, run.state, run.done) == ("nightly", "succeeded", 4)
    assert services.segment_counts()["hero"] >= 1
    assert nightly_task.apply().get() is None  # once a day


def test_a_run_whose_chunks_were_lost_is_closed_by_the_next_start(catalog):
    lost = services.run_forecasts(kind="nightly", publish=False)
    ForecastRun.objects.filter(pk=lost.pk).update(
        created_at=services.timezone.now() - timedelta(hours=7)
    )

    fresh = services.run_forecasts(kind="manual", publish=False)

    lost.refresh_from_db()
    assert fresh.pk != lost.pk and fresh.state == "queued"
    assert lost.state == "failed" and "Abandoned" in lost.error


def test_old_finished_runs_are_pruned_but_their_forecasts_stay(
    catalog, eager_celery, django_capture_on_commit_callbacks
):
    old = run_all(django_capture_on_commit_callbacks)
    ForecastRun.objects.filter(pk=old.pk).update(
        created_at=services.timezone.now() - timedelta(days=91)
    )
    recent = services.run_forecasts(kind="manual", publish=False)  # still open: kept

    services.prune_runs()

    assert list(ForecastRun.objects.values_list("pk", flat=True)) == [recent.pk]
    assert SkuForecast.objects.count() == 4
    assert not SkuForecast.objects.filter(run__isnull=False).exists()
