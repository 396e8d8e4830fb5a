"""The server-drawn forecast chart (no database)."""

from __future__ import annotations

import re
from datetime import date, timedelta

from forecasting.chart import ChartData, render_svg

START = date(2026, 9, 1)


def chart(**kw) -> str:
    history = kw.pop("history", [5.0, None, None, 0.0, 7.0])
    return render_svg(ChartData(history_start=START, history=history, **kw), title="A <b> SKU")


def test_history_bars_and_stockout_columns():
    svg = chart()

    assert len(re.findall(r'class="history"', svg)) == 2  # zero days draw no bar
    assert len(re.findall(r'class="stockout"', svg)) == 2
    assert "2026-09-02: out of stock" in svg
    assert '<title id="chart-title">A &lt;b&gt; SKU</title>' in svg  # the title is escaped


def test_forecast_mean_bands_and_on_order_markers_inside_the_range():
    mean = [6.0, 6.0, 6.0]
    svg = chart(
        forecast_start=START + timedelta(days=5),
        mean=mean,
        lo80=[4.0] * 3,
        hi80=[8.0] * 3,
        lo95=[3.0] * 3,
        hi95=[9.0] * 3,
        on_order=[(START + timedelta(days=6), 40), (START + timedelta(days=400), 99)],
    )

    assert svg.count('class="mean"') == 1
    assert svg.count('class="band80"') == 1 and svg.count('class="band95"') == 1
    assert "+40" in svg and "+99" not in svg  # orders beyond the horizon are not drawn
    labels = [float(v) for v in re.findall(r'fill="#6b7280">([\d.]+)</text>', svg)]
    assert labels == [0.0, 2.5, 5.0, 7.5, 10.0]  # round steps above the highest bound (9)


def test_an_empty_history_still_draws_axes():
    svg = chart(history=[])

    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert 'class="history"' not in svg
