"""The SKU forecast chart as inline SVG, built on the server (no chart library, no JS).

History bars (units per day), stock-out days as hatched columns (demand unknown there),
the forecast mean as a line inside its 80 % and 95 % interval bands, and units on order
(open purchase orders) as markers on their expected day. Everything is numbers and dates
that this module formats itself, so the markup needs no escaping beyond the title text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from html import escape

WIDTH, HEIGHT = 960, 300
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 16, 40


@dataclass
class ChartData:
    history_start: date
    history: Sequence[float | None]  # None = stock-out day
    forecast_start: date | None = None
    mean: Sequence[float] = ()
    lo80: Sequence[float] = ()
    hi80: Sequence[float] = ()
    lo95: Sequence[float] = ()
    hi95: Sequence[float] = ()
    on_order: list[tuple[date, int]] = field(default_factory=list)


def _nice_step(value: float) -> float:
    """The smallest round grid step (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8 × 10^k) >= value."""
    if value <= 0:
        return 0.25
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if value <= step * magnitude + 1e-12:
            return step * magnitude
    return 10 * magnitude


def _fmt(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def render_svg(data: ChartData, *, title: str = "Demand and forecast") -> str:
    """The chart as an <svg> element with a <title> and a text description for readers."""
    days = len(data.history)
    horizon = len(data.mean)
    first = data.history_start
    last = (data.forecast_start or first + timedelta(days=days)) + timedelta(
        days=max(horizon, 1) - 1
    )
    span = max(1, (last - first).days + 1)
    highest = max(
        [v for v in data.history if v is not None] + list(data.hi95 or data.mean or []) + [0.0],
        default=0.0,
    )
    top = 4 * _nice_step(highest * 1.05 / 4)  # four grid steps of a round size
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_w / span

    def x(day: date) -> float:
        return LEFT + (day - first).days * step

    def y(value: float) -> float:
        return TOP + plot_h * (1 - min(value, top) / top)

    parts: list[str] = [
        f'<svg class="forecast-chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="chart-title chart-desc" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="chart-title">{escape(title)}</title>',
        f'<desc id="chart-desc">{days} days of history and {horizon} days of forecast '
        f"with 80% and 95% intervals; hatched days were out of stock.</desc>",
        "<defs><pattern id='oos-hatch' width='6' height='6' patternUnits='userSpaceOnUse' "
        "patternTransform='rotate(45)'><rect width='6' height='6' fill='#fde8e8'/>"
        "<line x1='0' y1='0' x2='0' y2='6' stroke='#e5a4a4' stroke-width='3'/></pattern></defs>",
    ]
    # Grid and y labels.
    for i in range(5):
        value = top * i / 4
        gy = y(value)
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{gy:.1f}" y2="{gy:.1f}" '
            f'stroke="#e5e7eb" stroke-width="1"/>'
            f'<text x="{LEFT - 6}" y="{gy + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="#6b7280">{_fmt(value)}</text>'
        )
    # Month ticks on the x axis.
    tick = date(first.year, first.month, 1)
    while tick <= last:
        if tick >= first:
            tx = x(tick)
            parts.append(
                f'<line x1="{tx:.1f}" x2="{tx:.1f}" y1="{TOP + plot_h}" y2="{TOP + plot_h + 4}" '
                f'stroke="#9ca3af"/><text x="{tx + 2:.1f}" y="{TOP + plot_h + 16}" '
                f'font-size="11" fill="#6b7280">{tick.strftime("%b %Y")}</text>'
            )
        tick = date(tick.year + (tick.month == 12), tick.month % 12 + 1, 1)

    # History: bars, stock-outs hatched over the full height.
    bar_w = max(step * 0.8, 0.6)
    for i, value in enumerate(data.history):
        bx = x(first + timedelta(days=i))
        if value is None:
            parts.append(
                f'<rect class="stockout" x="{bx:.1f}" y="{TOP}" width="{max(step, 1):.1f}" '
                f'height="{plot_h}" fill="url(#oos-hatch)"><title>'
                f"{(first + timedelta(days=i)).isoformat()}: out of stock</title></rect>"
            )
        elif value > 0:
            parts.append(
                f'<rect class="history" x="{bx:.1f}" y="{y(value):.1f}" width="{bar_w:.1f}" '
                f'height="{TOP + plot_h - y(value):.1f}" fill="#94a3b8"/>'
            )

    # Forecast bands and mean.
    if horizon and data.forecast_start is not None:
        xs = [x(data.forecast_start + timedelta(days=i)) + step / 2 for i in range(horizon)]

        def band(lower: Sequence[float], upper: Sequence[float], css: str, fill: str) -> None:
            if len(lower) != horizon or len(upper) != horizon:
                return
            points = [f"{px:.1f},{y(v):.1f}" for px, v in zip(xs, upper, strict=True)]
            points += [
                f"{px:.1f},{y(v):.1f}" for px, v in zip(reversed(xs), reversed(lower), strict=True)
            ]
            parts.append(f'<polygon class="{css}" points="{" ".join(points)}" fill="{fill}"/>')

        band(data.lo95, data.hi95, "band95", "#dbeafe")
        band(data.lo80, data.hi80, "band80", "#bfdbfe")
        line = " ".join(f"{px:.1f},{y(v):.1f}" for px, v in zip(xs, data.mean, strict=True))
        parts.append(
            f'<polyline class="mean" points="{line}" fill="none" stroke="#1d4ed8" '
            f'stroke-width="2"/>'
        )
        fx = x(data.forecast_start)
        parts.append(
            f'<line class="today" x1="{fx:.1f}" x2="{fx:.1f}" y1="{TOP}" y2="{TOP + plot_h}" '
            f'stroke="#111827" stroke-dasharray="4 3"/>'
            f'<text x="{fx + 4:.1f}" y="{TOP + 10}" font-size="11" fill="#111827">today</text>'
        )

    # Units on order, on their expected day.
    for when, units in data.on_order:
        if not first <= when <= last:
            continue
        ox = x(when) + step / 2
        base = TOP + plot_h
        parts.append(
            f'<g class="on-order"><path d="M{ox:.1f},{base - 12} l-6,12 h12 z" '
            f'fill="#059669"/><text x="{ox:.1f}" y="{base - 16}" text-anchor="middle" '
            f'font-size="11" fill="#047857">+{units}</text>'
            f"<title>{when.isoformat()}: {units} units on order</title></g>"
        )

    # Legend.
    legend = [
        ("#94a3b8", "Units sold"),
        ("url(#oos-hatch)", "Out of stock"),
        ("#1d4ed8", "Forecast"),
        ("#bfdbfe", "80% interval"),
        ("#dbeafe", "95% interval"),
        ("#059669", "On order"),
    ]
    lx = LEFT
    ly = HEIGHT - 8
    for fill, label in legend:
        parts.append(
            f'<rect x="{lx}" y="{ly - 9}" width="10" height="10" fill="{fill}"/>'
            f'<text x="{lx + 14}" y="{ly}" font-size="11" fill="#374151">{label}</text>'
        )
        lx += 24 + 7 * len(label)
    parts.append("</svg>")
    return "".join(parts)
