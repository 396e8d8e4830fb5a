"""Forecast runs under real concurrency: threads on their own connections, one barrier."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connections
from django_tenants.utils import schema_context

from forecasting import services
from forecasting.models import ForecastChunk, ForecastRun, SkuForecast
from tests.factories import SKUFactory
from tests.forecasting.helpers import intermittent_history, put_demand


def run_together(work, count: int) -> list:
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def target(i: int) -> None:
        try:
            with schema_context("brand_alpha"):
                barrier.wait()
                results[i] = work(i)
        except Exception as exc:  # noqa: BLE001 - the test inspects every outcome
            results[i] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def seed(count: int) -> None:
    today = services.brand_today()
    for i in range(count):
        put_demand(SKUFactory(), today - timedelta(days=120), intermittent_history(120, seed=i))


@pytest.mark.django_db
def test_a_run_without_any_history_finishes_at_once(in_alpha):
    run = services.run_forecasts(kind="manual")

    assert (run.state, run.total, run.chunks) == ("succeeded", 0, 0)
    assert services.open_run() is None


@pytest.mark.usefixtures("committed_alpha")
def test_starts_at_the_same_instant_open_one_run():
    seed(2)

    results = run_together(lambda i: services.run_forecasts(kind="manual", publish=False), 4)

    assert not [r for r in results if isinstance(r, Exception)], results
    assert len({r.pk for r in results}) == 1
    assert ForecastRun.objects.count() == 1


@pytest.mark.usefixtures("committed_alpha")
def test_a_chunk_delivered_twice_at_once_counts_once():
    seed(2)
    run = services.run_forecasts(kind="manual", publish=False)
    assert run.chunks == 1

    results = run_together(lambda i: services.run_chunk(run.pk, 0), 2)

    assert sorted(results) == [False, True]
    run.refresh_from_db()
    assert (run.state, run.done, run.total) == ("succeeded", 2, 2)
    assert ForecastChunk.objects.get(run=run).finished
    assert SkuForecast.objects.count() == 2
