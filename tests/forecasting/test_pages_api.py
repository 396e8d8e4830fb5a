"""Forecast pages and API: who may read, who may start runs and edit segment policies,
what the SKU page draws and what the API returns."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django_tenants.utils import schema_context

from forecasting import services
from forecasting.models import ForecastRun, SegmentPolicy, SkuForecast
from forecasting.views import backtest_rows
from tests.conftest import brand_client, make_user
from tests.factories import SKUFactory
from tests.forecasting.helpers import put_demand, put_forecast, put_stockouts

pytestmark = pytest.mark.django_db


@pytest.fixture
def data(brand_a):
    with schema_context(brand_a.schema_name):
        today = services.brand_today()
        sku = SKUFactory(code="TEE-1")
        put_demand(sku, today - timedelta(days=60), [3] * 60, channel="shop")
        put_demand(sku, today - timedelta(days=30), [1] * 30, channel="amazon")
        put_stockouts(sku, [today - timedelta(days=5), today - timedelta(days=4)])
        put_forecast(sku, start=today, mean=[4.0] * 56, spread=1.5)
        return {"sku": sku, "today": today}


@pytest.fixture
def viewer(brand_a):
    return make_user(brand_a, role="viewer")


@pytest.fixture
def manager(brand_a):
    return make_user(brand_a, role="ops_manager")


def test_the_sku_page_draws_history_stockouts_forecast_and_bands(brand_a, viewer, data):
    client = brand_client(brand_a, viewer)

    page = client.get(f"/forecasting/skus/{data['sku'].pk}/")

    assert page.status_code == 200
    html = page.content.decode()
    svg = html[html.index("<svg") : html.index("</svg>")]
    assert len(re.findall(r'class="stockout"', svg)) == 2
    assert 'class="mean"' in svg and 'class="band95"' in svg and 'class="band80"' in svg
    assert 'class="history"' in svg
    assert "Forecast now" not in html  # viewers read only
    assert "seasonal_naive" in html and "ets" in html  # the backtest table


def test_a_viewer_reads_every_page_but_cannot_start_runs_or_edit_policies(brand_a, viewer, data):
    client = brand_client(brand_a, viewer)

    for url in ("/forecasting/", "/forecasting/runs/", "/forecasting/segments/"):
        assert client.get(url).status_code == 200, url
    assert client.post("/forecasting/runs/").status_code == 403
    assert client.post(f"/forecasting/skus/{data['sku'].pk}/").status_code == 403
    refused = client.post(
        "/forecasting/segments/",
        {"segment": "hero", "hero-review_cadence_days": 3, "hero-service_level": "0.99"},
    )
    assert refused.status_code == 403
    with schema_context(brand_a.schema_name):
        assert not ForecastRun.objects.exists()
        assert SegmentPolicy.objects.get(segment="hero").review_cadence_days == 7


def test_the_overview_lists_forecasts_with_their_28_day_totals(brand_a, viewer, data):
    page = brand_client(brand_a, viewer).get("/forecasting/?q=TEE")

    html = page.content.decode()
    assert "TEE-1" in html and "<strong>112</strong>" in html  # 28 × 4 units


def test_a_manager_edits_a_segment_policy_and_bad_values_show_inline(brand_a, manager, data):
    client = brand_client(brand_a, manager)

    ok = client.post(
        "/forecasting/segments/",
        {"segment": "hero", "hero-review_cadence_days": 3, "hero-service_level": "0.990"},
    )
    bad = client.post(
        "/forecasting/segments/",
        {"segment": "tail", "tail-review_cadence_days": 30, "tail-service_level": "1.5"},
    )

    assert ok.status_code == 302
    assert bad.status_code == 422 and "errorlist" in bad.content.decode()
    with schema_context(brand_a.schema_name):
        hero = SegmentPolicy.objects.get(segment="hero")
        assert (hero.review_cadence_days, hero.service_level) == (3, Decimal("0.990"))
        assert SegmentPolicy.objects.get(segment="tail").service_level == Decimal("0.900")


def test_a_manager_starts_a_run_from_the_page(brand_a, manager, data):
    response = brand_client(brand_a, manager).post("/forecasting/runs/")

    with schema_context(brand_a.schema_name):
        run = ForecastRun.objects.get()
    assert response.status_code == 302 and response["Location"].endswith(f"/runs/{run.pk}/")
    assert (run.kind, run.state, run.total) == ("manual", "queued", 1)


def test_the_runs_page_polls_only_while_a_run_is_open(brand_a, viewer, data):
    client = brand_client(brand_a, viewer)
    assert "every 2s" not in client.get("/forecasting/runs/").content.decode()
    with schema_context(brand_a.schema_name):
        run = services.run_forecasts(kind="manual", publish=False)

    html = client.get("/forecasting/runs/").content.decode()
    fragment = client.get(
        "/forecasting/runs/?fragment=progress", HTTP_HX_REQUEST="true"
    ).content.decode()

    assert "every 2s" in html and f"0 of {run.total} SKUs" in html
    assert fragment.strip().startswith('<div id="run-progress"') and "<progress" in fragment


# --- API -----------------------------------------------------------------------------------


def test_api_forecast_per_sku_with_intervals(brand_a, viewer, data):
    client = brand_client(brand_a, viewer)

    listing = client.get("/api/v1/forecasts/").json()
    one = client.get(f"/api/v1/forecasts/{data['sku'].pk}/").json()

    assert [row["sku_code"] for row in listing["results"]] == ["TEE-1"]
    assert one["method"] == "ets" and one["horizon"] == 56 and one["segment"] == "tail"
    assert one["next_28"] == pytest.approx(112.0)
    assert len(one["intervals"]["95"]["upper"]) == 56
    assert one["intervals"]["80"]["lower"][0] == pytest.approx(4.0 - 1.2815515655446004 * 1.5)
    assert "warm" not in one
    assert client.get("/api/v1/forecasts/?segment=hero").json()["results"] == []


def test_api_demand_history_flags_stockouts_and_splits_channels(brand_a, viewer, data):
    today = data["today"]
    start, end = today - timedelta(days=10), today - timedelta(days=1)

    body = (
        brand_client(brand_a, viewer)
        .get(f"/api/v1/demand-history/{data['sku'].pk}/?start={start}&end={end}")
        .json()
    )

    assert body["units"] == 10 * 4 and body["stockout_days"] == 2
    assert body["channels"] == {"shop": 30, "amazon": 10}
    assert [d["stockout"] for d in body["days"]].count(True) == 2
    bad = brand_client(brand_a, viewer).get(
        f"/api/v1/demand-history/{data['sku'].pk}/?start={end}&end={start}"
    )
    assert bad.status_code == 400 and bad.json()["error"]["fields"]["start"]


def test_api_viewer_reads_runs_but_cannot_start_one(brand_a, viewer, data):
    client = brand_client(brand_a, viewer)

    assert client.get("/api/v1/forecast-runs/").status_code == 200
    refused = client.post("/api/v1/forecast-runs/")

    assert refused.status_code == 403
    with schema_context(brand_a.schema_name):
        assert not ForecastRun.objects.exists()


def test_api_starting_a_run_twice_returns_the_run_in_flight(brand_a, manager, data):
    client = brand_client(brand_a, manager)

    first = client.post("/api/v1/forecast-runs/", HTTP_IDEMPOTENCY_KEY="k1")
    replay = client.post("/api/v1/forecast-runs/", HTTP_IDEMPOTENCY_KEY="k1")
    second = client.post("/api/v1/forecast-runs/", HTTP_IDEMPOTENCY_KEY="k2")

    assert first.status_code == 201 and first.json()["state"] == "queued"
    assert replay.status_code == 201 and replay.json()["id"] == first.json()["id"]
    assert second.status_code == 200 and second.json()["id"] == first.json()["id"]
    with schema_context(brand_a.schema_name):
        assert ForecastRun.objects.count() == 1


def test_api_segments_list_and_patch(brand_a, viewer, manager, data):
    rows = brand_client(brand_a, viewer).get("/api/v1/segments/").json()
    assert [r["segment"] for r in rows] == ["hero", "supporting", "tail", "discontinue"]
    assert rows[0]["tag"] == "segment:hero" and rows[0]["service_level"] == "0.980"

    denied = brand_client(brand_a, viewer).patch(
        "/api/v1/segments/hero/", {"service_level": "0.99"}, content_type="application/json"
    )
    changed = brand_client(brand_a, manager).patch(
        "/api/v1/segments/hero/", {"service_level": "0.99"}, content_type="application/json"
    )
    invalid = brand_client(brand_a, manager).patch(
        "/api/v1/segments/hero/", {"service_level": "2"}, content_type="application/json"
    )

    assert denied.status_code == 403
    assert changed.status_code == 200 and changed.json()["service_level"] == "0.990"
    assert changed.json()["review_cadence_days"] == 7
    assert invalid.status_code == 400
    with schema_context(brand_a.schema_name):
        assert SkuForecast.objects.count() == 1
        assert SegmentPolicy.objects.get(segment="hero").service_level == Decimal("0.990")


def test_the_dashboard_shows_a_run_with_failures_and_hides_a_clean_one(brand_a, viewer, data):
    client = brand_client(brand_a, viewer)
    with schema_context(brand_a.schema_name):
        run = ForecastRun.objects.create(kind="nightly", state="succeeded", total=5, done=5)
    assert "could not be forecast" not in client.get("/").content.decode()

    with schema_context(brand_a.schema_name):
        ForecastRun.objects.filter(pk=run.pk).update(failed=2)
    html = client.get("/").content.decode()

    assert "2 of 5 SKUs could not be forecast" in html


def test_the_sku_page_marks_units_on_open_purchase_orders(brand_a, viewer, data, monkeypatch):
    import purchasing.services

    sku, today = data["sku"], data["today"]
    due = today + timedelta(days=10)
    seen = []

    def open_quantities(sku_ids=None):
        seen.append(list(sku_ids))
        return {(sku.pk, 1): [(due, 30)], (sku.pk, 2): [(due, 20)]}

    monkeypatch.setattr(purchasing.services, "open_quantities", open_quantities)

    html = brand_client(brand_a, viewer).get(f"/forecasting/skus/{sku.pk}/").content.decode()

    assert seen == [[sku.pk]]
    assert 'class="on-order"' in html and "+50" in html  # both warehouses on the same day
    assert f"{due.isoformat()}: 50 units on order" in html


def test_the_backtest_table_ranks_by_the_score_that_chooses(brand_a, viewer):
    with schema_context(brand_a.schema_name):
        today = services.brand_today()
        sku = SKUFactory(code="WEEKLY-1")
        # weekday pattern with noise: several candidates score close, so a combination wins
        units = [
            5 + (3 if (today - timedelta(days=d)).weekday() >= 5 else 0) + d % 3
            for d in range(240, 0, -1)
        ]
        put_demand(sku, today - timedelta(days=240), units, channel="shop")
        forecast = services.forecast_one(sku)
        rows = backtest_rows(forecast)

    full = forecast.warm["scores"]
    assert [r.method for r in rows] == sorted(full, key=lambda n: full[n]["rmsse"])
    assert {r.method: (r.rmsse, r.mase) for r in rows} == {
        n: (s["rmsse"], s["mase"]) for n, s in full.items()
    }
    assert forecast.method in {r.method for r in rows}
    # the combination names its members when it is the chosen forecast
    by_method = {r.method: r for r in rows}
    if forecast.method == "combo":
        assert by_method["combo"].members == tuple(forecast.warm["params"]["members"])
        assert len(by_method["combo"].members) >= 2
    assert all(not r.members for r in rows if r.method != "combo")

    html = brand_client(brand_a, viewer).get(f"/forecasting/skus/{sku.pk}/").content.decode()
    table = html[html.index("Backtest scores") :]
    assert '<th class="num">RMSSE</th>' in table
    chosen_row = table[: table.index('badge ok">chosen')].rsplit("<tr>", 1)[1]
    assert forecast.method in chosen_row
    # the API carries the same scores, without the rest of the engine's state
    api = brand_client(brand_a, viewer).get(f"/api/v1/forecasts/{sku.pk}/").json()
    assert api["backtest"] == {n: {"rmsse": s["rmsse"], "mase": s["mase"]} for n, s in full.items()}
    assert "warm" not in api
