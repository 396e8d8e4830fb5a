"""`manage.py forecast_backtest`: a brand backtests its own demand history."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django_tenants.utils import schema_context

from forecasting import services
from tests.factories import SKUFactory
from tests.forecasting.helpers import intermittent_history, put_demand, smooth_history

pytestmark = pytest.mark.django_db


def test_backtest_prints_mean_scores_per_method_over_the_brands_skus(brand_a):
    with schema_context(brand_a.schema_name):
        today = services.brand_today()
        put_demand(SKUFactory(), today - timedelta(days=150), smooth_history(150))
        put_demand(SKUFactory(), today - timedelta(days=200), intermittent_history(200, rate=0.3))
    out = StringIO()

    call_command(
        "forecast_backtest",
        brand="alpha",
        horizon=14,
        jobs=1,
        methods="chosen,seasonal_naive,naive",
        stdout=out,
    )

    text = out.getvalue()
    assert "backtesting 2 SKUs, last 14 days held out" in text
    assert "hold-out 14 (freq D, m=7): 2 series" in text and "series/s" in text
    table = [line.split() for line in text.splitlines()]
    rows = {cells[0]: cells for cells in table if len(cells) >= 6 and cells[1].isdigit()}
    for method in ("chosen", "seasonal_naive", "naive"):
        assert rows[method][1] == "2"  # both SKUs scored
        assert float(rows[method][2]) > 0  # mean MASE


def test_backtest_refuses_unknown_brands_and_methods(brand_a):
    with pytest.raises(CommandError, match="No brand"):
        call_command("forecast_backtest", brand="nobody")
    with pytest.raises(CommandError, match="Unknown methods"):
        call_command("forecast_backtest", brand="alpha", methods="chosen,magic")


def test_backtest_says_so_when_there_is_no_history(brand_a):
    out = StringIO()
    call_command("forecast_backtest", brand="alpha", stdout=out)
    assert "no SKU has demand history yet" in out.getvalue()
