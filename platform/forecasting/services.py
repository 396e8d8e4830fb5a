"""Demand history, segmentation and forecast runs (the engine does the statistics).

Demand history (`rebuild_demand`)
    Units per SKU × channel × warehouse × day, days in the brand's timezone by `placed_at`.
    Lines of cancelled orders are left out; a bundle line counts as the bundle SKU (its
    demand is for the bundle; components are stock, not demand). The warehouse is the one
    the line was routed to (open, sent or shipped fulfillments); units not routed (held,
    unrouted) have no warehouse. A bundle line goes whole to the warehouse holding most of
    its component units. Returns (inventory `return` movements) fill `returned` on their
    own day and never net the units down. Incremental: `since` rebuilds that window in one
    transaction. `refresh_demand` picks the window: from the earliest day of an order or
    return changed since its last pass, and at least the last 30 days at night (late
    routing changes and stock-outs land there). Manual runs and the replenishment plan
    refresh first, so they never read orders that arrived after the night as zero sales.

Stock-outs
    A day is a stock-out day when the SKU's available-to-promise stock summed over all
    warehouses was zero at some moment of it (the level carried into the day, or after any
    change during it), reconstructed from the inventory `StockEvent` history. Demand on
    such a day is censored, so the engine reads it as missing. Days before a SKU's first
    stock event are not marked (nothing is known about them), and the opening level of
    that first day is ignored (stock arriving for the first time is not a stock-out).
    A bundle is out whenever one of its components is.

Forecast runs
    `run_forecasts` creates a run and its chunks (settings.chunk_size SKUs each) and
    publishes one `forecasting.forecast_chunk` task per chunk on the forecast queue, so
    worker processes forecast chunks in parallel; each chunk calls the engine with
    `n_jobs=1` (prefork workers cannot fork joblib pools). A chunk counts its SKUs into
    the run with one UPDATE and the chunk that brings `done` to `total` finishes the run;
    a redelivered chunk finds itself finished and does nothing. Per-SKU failures are rows
    in `ForecastFailure`; they never stop the run. Only one brand-wide run is open at a
    time: starting another returns the open one.

    Warm start: the engine's `warm_state()` is stored per SKU and passed back while the
    last full backtest is younger than `full_refit_days` (and the engine itself falls back
    to a full fit when the demand class changed). New SKUs (selling for fewer than
    `new_sku_days` days) get a launch profile built from comparable SKUs (same product
    category, else a shared product tag) that launched inside the history window.

Summaries for other apps (`forecast_summary`)
    next_28 sums the daily means of the next 28 days from today. Its 95 % bounds assume
    independent daily errors with σ_day = (hi95 − lo95) / 3.92: simple, and slightly
    narrow for autocorrelated demand. `daily_std` on SkuForecast is the RMS of those σ_day
    over the first 28 days.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from django.core.exceptions import ValidationError
from django.db import (
    DataError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    connection,
    transaction,
)
from django.db.models import Count, F, Max, Min, Q, Sum
from django.utils import timezone

from audit.services import record
from catalog.models import SKU, BundleComponent, Lifecycle
from forecasting.models import (
    SEGMENT_ORDER,
    DemandDay,
    ForecastChunk,
    ForecastFailure,
    ForecastRun,
    ForecastSettings,
    ImportedSale,
    RunKind,
    RunState,
    Segment,
    SegmentPolicy,
    SkuForecast,
    SkuSegment,
    StockoutDay,
)
from inventory.models import MovementKind, StockEvent, StockMovement
from orders.models import (
    FulfillmentLine,
    FulfillmentOrder,
    FulfillmentStatus,
    Order,
    OrderLine,
    OrderStatus,
)

Z95 = 1.959963984540054
SUMMARY_DAYS = 28
NIGHTLY_REBUILD_DAYS = 30
DEMAND_CHANGE_SLACK = timedelta(minutes=10)  # order transactions still open at a refresh
RUN_RETENTION_DAYS = 90
STALE_RUN = timedelta(hours=6)  # an open run older than this lost its chunk tasks
NIGHTLY_HOUR = 2  # brand-local hour the nightly run starts (orders are quiet, day is closed)
LOCK_CLASS = 7_401
TRANSIENT = (
    OperationalError,
    InterfaceError,
    ConnectionError,
    TimeoutError,
)  # advisory lock namespace of this app


class ForecastingError(ValidationError):
    """A forecasting request the current state refuses (code says why)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message, code=code)


# --- Small helpers ------------------------------------------------------------------------


def brand_timezone() -> ZoneInfo:
    from approvals.services import current_brand

    try:
        return ZoneInfo(current_brand().timezone or "UTC")
    except Exception:  # noqa: BLE001 - an unknown zone name must not stop forecasting
        return ZoneInfo("UTC")


def brand_now() -> datetime:
    return timezone.now().astimezone(brand_timezone())


def brand_today() -> date:
    return brand_now().date()


def _lock(name: str) -> None:
    """Serialise one kind of work per brand until the transaction ends."""
    key = f"{connection.schema_name}:{name}"
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [LOCK_CLASS, key])


def lock_demand_history() -> None:
    """Hold the demand-history lock until the transaction ends (rebuilds and history
    imports take it, so one waits for the other)."""
    _lock("demand")


def _table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def settings() -> ForecastSettings:
    return ForecastSettings.current()


# --- Segments -------------------------------------------------------------------------------


def segment_tag(segment: str) -> str:
    """The SKU tag approvals policies match for a segment, e.g. "segment:hero"."""
    if segment not in Segment.values:
        raise ValueError(f"unknown segment {segment!r}")
    return f"segment:{segment}"


def segments_of(sku_ids: Iterable[int]) -> dict[int, str]:
    """Segment per SKU id; SKUs never segmented are "tail" (the cautious middle)."""
    ids = list(dict.fromkeys(int(i) for i in sku_ids))
    found = dict(SkuSegment.objects.filter(sku_id__in=ids).values_list("sku_id", "segment"))
    return {sku_id: found.get(sku_id, Segment.TAIL.value) for sku_id in ids}


# (review cadence days, service level) per segment; the data migration seeds the same
# (see its docstring for why these values).
DEFAULT_POLICIES: dict[str, tuple[int, str]] = {
    Segment.HERO: (7, "0.980"),
    Segment.SUPPORTING: (7, "0.950"),
    Segment.TAIL: (30, "0.900"),
    Segment.DISCONTINUE: (30, "0.800"),
}


def segment_policies() -> dict[str, SegmentPolicy]:
    """Policy per segment, in segment order; a missing one comes back with its default."""
    rows = {p.segment: p for p in SegmentPolicy.objects.all()}
    for segment in SEGMENT_ORDER:
        if segment.value not in rows:
            cadence, level = DEFAULT_POLICIES[segment]
            rows[segment.value], _ = SegmentPolicy.objects.get_or_create(
                segment=segment.value,
                defaults={"review_cadence_days": cadence, "service_level": Decimal(level)},
            )
    return {s.value: rows[s.value] for s in SEGMENT_ORDER}


def update_segment_policy(
    segment: str, *, review_cadence_days: int, service_level: Decimal
) -> SegmentPolicy:
    """Change a segment's review cadence and service level (audited)."""
    errors: dict[str, list[ValidationError]] = {}
    if not 1 <= int(review_cadence_days) <= 365:
        errors["review_cadence_days"] = [
            ValidationError("Between 1 and 365 days.", code="out_of_range")
        ]
    level = Decimal(str(service_level))
    if not Decimal("0.5") <= level <= Decimal("0.999"):
        errors["service_level"] = [ValidationError("Between 0.5 and 0.999.", code="out_of_range")]
    if errors:
        raise ValidationError(errors)
    if segment not in Segment.values:
        raise ForecastingError(f"Unknown segment {segment!r}.", "unknown_segment")
    segment_policies()  # make sure the row exists
    with transaction.atomic():
        policy = SegmentPolicy.objects.select_for_update().get(segment=segment)
        before = [policy.review_cadence_days, str(policy.service_level)]
        policy.review_cadence_days = int(review_cadence_days)
        policy.service_level = level.quantize(Decimal("0.001"))
        policy.save(update_fields=["review_cadence_days", "service_level", "updated_at"])
        record(
            "forecasting.segment_policy_changed",
            obj=policy,
            changes={
                "review_cadence_days": [before[0], policy.review_cadence_days],
                "service_level": [before[1], str(policy.service_level)],
            },
        )
    return policy


# Cumulative share of SKUs (by revenue rank) that ends each segment.
SEGMENT_BOUNDS: list[tuple[str, float]] = [
    (Segment.HERO, 0.10),
    (Segment.SUPPORTING, 0.40),
    (Segment.TAIL, 0.90),
    (Segment.DISCONTINUE, 1.0),
]


def segment_for_rank(rank: int, count: int) -> str:
    """Segment of the SKU ranked `rank` (1 = most revenue) among `count`."""
    position = (rank - 1) / count
    for segment, bound in SEGMENT_BOUNDS:
        if position < bound:
            return segment.value
    return Segment.DISCONTINUE.value


def assign_segments(revenue: dict[int, Decimal]) -> list[tuple[int, str, Decimal, int]]:
    """(sku_id, segment, revenue, rank) by descending revenue; ties keep the lower id first."""
    ranked = sorted(revenue.items(), key=lambda item: (-item[1], item[0]))
    count = len(ranked)
    return [
        (sku_id, segment_for_rank(rank, count), value, rank)
        for rank, (sku_id, value) in enumerate(ranked, start=1)
    ]


def trailing_revenue(*, today: date | None = None, days: int | None = None) -> dict[int, Decimal]:
    """Revenue per SKU over the last `days` days before today: active SKUs (zero when they
    sold nothing) and any SKU that sold. Cancelled orders are left out."""
    today = today or brand_today()
    days = days or settings().segment_window_days
    tz = brand_timezone()
    start = datetime.combine(today - timedelta(days=days), datetime.min.time(), tzinfo=tz)
    end = datetime.combine(today, datetime.min.time(), tzinfo=tz)
    sold = (
        OrderLine.objects.filter(
            sku__isnull=False, order__placed_at__gte=start, order__placed_at__lt=end
        )
        .exclude(order__status=OrderStatus.CANCELLED)
        .values("sku_id")
        .annotate(revenue=Sum(F("quantity") * F("unit_price")))
    )
    revenue = {
        sku_id: Decimal("0")
        for sku_id in SKU.objects.filter(status=Lifecycle.ACTIVE).values_list("pk", flat=True)
    }
    for row in sold:
        revenue[row["sku_id"]] = Decimal(row["revenue"] or 0).quantize(Decimal("0.01"))
    cutover = first_order_days()
    imported = ImportedSale.objects.filter(
        day__gte=today - timedelta(days=days), day__lt=today, revenue__isnull=False
    ).values_list("sku_id", "channel", "day", "revenue")
    for sku_id, channel, day, value in imported:
        if cutover.counts(channel, day):
            revenue[sku_id] = revenue.get(sku_id, Decimal("0")) + value
    return revenue


@dataclass(frozen=True)
class Cutover:
    """Where imported sales history ends: the brand-local day of Keel's first order per
    channel. An imported row counts only before its channel's first order (a blank channel:
    before the first order of any channel), so no day is counted twice."""

    by_channel: dict[str, date]

    @property
    def first_any(self) -> date | None:
        return min(self.by_channel.values(), default=None)

    def first(self, channel: str) -> date | None:
        return self.by_channel.get(channel) if channel else self.first_any

    def counts(self, channel: str, day: date) -> bool:
        first = self.first(channel)
        return first is None or day < first


def first_order_days() -> Cutover:
    tz = brand_timezone()
    rows = Order.objects.values_list("channel").annotate(first=Min("placed_at"))
    return Cutover({channel: first.astimezone(tz).date() for channel, first in rows})


def recompute_segments(*, today: date | None = None) -> dict[str, int]:
    """Re-rank every SKU by trailing revenue; returns SKU counts per segment."""
    now = timezone.now()
    assigned = assign_segments(trailing_revenue(today=today))
    with transaction.atomic():
        _lock("segments")
        SkuSegment.objects.all().delete()
        SkuSegment.objects.bulk_create(
            [
                SkuSegment(
                    sku_id=sku_id,
                    segment=segment,
                    trailing_revenue=value,
                    rank=rank,
                    computed_at=now,
                )
                for sku_id, segment, value, rank in assigned
            ],
            batch_size=2000,
        )
        counts = segment_counts()
        record("forecasting.segments_recomputed", changes={"counts": counts})
    return counts


def segment_revenue() -> dict[str, Decimal]:
    """Trailing revenue per segment at the last recomputation."""
    out = {s.value: Decimal("0") for s in SEGMENT_ORDER}
    for row in SkuSegment.objects.values("segment").annotate(total=Sum("trailing_revenue")):
        out[row["segment"]] = row["total"] or Decimal("0")
    return out


def segment_counts() -> dict[str, int]:
    counts = {s.value: 0 for s in SEGMENT_ORDER}
    for row in SkuSegment.objects.values("segment").annotate(n=Count("id")):
        counts[row["segment"]] = row["n"]
    return counts


# --- Demand history ---------------------------------------------------------------------------


def rebuild_demand(*, since: date | None = None) -> int:
    """Rebuild DemandDay (and StockoutDay) from `since` (brand-local day) or from scratch.

    Returns the number of DemandDay rows written. The delete and insert run in one
    transaction, so readers see either the old or the new history of the window.
    """
    tz = brand_timezone()
    start = (
        datetime.combine(since, datetime.min.time(), tzinfo=tz)
        if since is not None
        else datetime(1970, 1, 1, tzinfo=ZoneInfo("UTC"))
    )
    params = {
        "tz": str(tz),
        "start": start,
        "cancelled": OrderStatus.CANCELLED.value,
        "closed_fo": [FulfillmentStatus.CANCELLED.value, FulfillmentStatus.REJECTED.value],
        "return_kind": MovementKind.RETURN.value,
        "since_day": since or date(1970, 1, 1),
    }
    # Table names from the models, values bound.
    sql = f"""
    INSERT INTO {_table(DemandDay)} (sku_id, channel, warehouse_id, day, units, returned)
    WITH lines AS (
        SELECT ol.id, ol.sku_id, o.channel, ol.quantity, s.is_bundle,
               (o.placed_at AT TIME ZONE %(tz)s)::date AS day
        FROM {_table(OrderLine)} ol
        JOIN {_table(Order)} o ON o.id = ol.order_id
        JOIN {_table(SKU)} s ON s.id = ol.sku_id
        WHERE o.status <> %(cancelled)s AND o.placed_at >= %(start)s
    ),
    routed AS (
        SELECT fl.order_line_id AS line_id, fo.warehouse_id, SUM(fl.quantity) AS q
        FROM {_table(FulfillmentLine)} fl
        JOIN {_table(FulfillmentOrder)} fo ON fo.id = fl.fulfillment_id
        JOIN lines l ON l.id = fl.order_line_id
        WHERE fo.status <> ALL(%(closed_fo)s)
        GROUP BY 1, 2
    ),
    routed_total AS (SELECT line_id, SUM(q) AS q FROM routed GROUP BY 1),
    sales AS (
        SELECT l.sku_id, l.channel, r.warehouse_id, l.day, r.q AS units
        FROM lines l JOIN routed r ON r.line_id = l.id
        WHERE NOT l.is_bundle
      UNION ALL
        SELECT l.sku_id, l.channel, NULL, l.day, l.quantity - COALESCE(t.q, 0)
        FROM lines l LEFT JOIN routed_total t ON t.line_id = l.id
        WHERE NOT l.is_bundle AND l.quantity > COALESCE(t.q, 0)
      UNION ALL
        SELECT l.sku_id, l.channel, b.warehouse_id, l.day, l.quantity
        FROM lines l
        LEFT JOIN LATERAL (
            SELECT r.warehouse_id FROM routed r WHERE r.line_id = l.id
            ORDER BY r.q DESC, r.warehouse_id LIMIT 1
        ) b ON TRUE
        WHERE l.is_bundle
    ),
    first_order AS (
        SELECT channel, MIN((placed_at AT TIME ZONE %(tz)s)::date) AS day
        FROM {_table(Order)} GROUP BY channel
    ),
    imported AS (
        SELECT i.sku_id, i.channel, i.warehouse_id, i.day, i.units
        FROM {_table(ImportedSale)} i
        LEFT JOIN first_order f ON f.channel = i.channel
        WHERE i.day >= %(since_day)s AND i.units > 0
          AND i.day < COALESCE(
              CASE WHEN i.channel = '' THEN (SELECT MIN(day) FROM first_order) ELSE f.day END,
              'infinity'::date)
    ),
    returns AS (
        SELECT m.sku_id, COALESCE(o.channel, '') AS channel, m.warehouse_id,
               (m.created_at AT TIME ZONE %(tz)s)::date AS day, m.quantity AS returned
        FROM {_table(StockMovement)} m
        LEFT JOIN {_table(Order)} o
               ON m.reference_type = 'order' AND m.reference_id = o.id::text
        WHERE m.kind = %(return_kind)s AND m.quantity > 0 AND m.created_at >= %(start)s
    )
    SELECT sku_id, channel, warehouse_id, day, SUM(units)::int, SUM(returned)::int
    FROM (
        SELECT sku_id, channel, warehouse_id, day, units, 0 AS returned FROM sales
        UNION ALL
        SELECT sku_id, channel, warehouse_id, day, units, 0 FROM imported
        UNION ALL
        SELECT sku_id, channel, warehouse_id, day, 0, returned FROM returns
    ) all_rows
    GROUP BY sku_id, channel, warehouse_id, day
    HAVING SUM(units) > 0 OR SUM(returned) > 0
    """  # noqa: S608
    with transaction.atomic():
        _lock("demand")
        old = DemandDay.objects.all() if since is None else DemandDay.objects.filter(day__gte=since)
        old._raw_delete(old.db)
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            written = cursor.rowcount
        rebuild_stockouts(since=since)
    return written


def refresh_demand(*, today: date | None = None, at_least_days: int = 0) -> int | None:
    """Bring demand history up to date with the orders and returns that changed since the
    last refresh; returns the DemandDay rows written, or None when nothing changed.

    Rebuilds from the earliest brand-local day of an order placed, edited or cancelled (or
    a return booked) since the last refresh, and at least the last `at_least_days` days
    (the nightly run's window for stock-outs and re-routed lines, which leave orders
    untouched). A manual forecast run, a single-SKU forecast and the replenishment plan
    call this first, so orders that arrived after the night's rebuild — a channel's
    backfill on its first day, above all — are demand, not days of zero sales.
    """
    today = today or brand_today()
    tz = brand_timezone()
    with transaction.atomic():
        _lock("demand")
        # Taken once the lock is held; `updated_at` comes from the writer's clock before
        # its commit, so changes of the last minutes count as changed again next time.
        started = timezone.now()
        as_of = settings().demand_as_of
        orders = Order.objects.all()
        returns = StockMovement.objects.filter(kind=MovementKind.RETURN)
        if as_of is not None:
            orders = orders.filter(updated_at__gte=as_of - DEMAND_CHANGE_SLACK)
            returns = returns.filter(created_at__gte=as_of - DEMAND_CHANGE_SLACK)
        moments = [
            orders.aggregate(first=Min("placed_at"))["first"],
            returns.aggregate(first=Min("created_at"))["first"],
        ]
        days = [m.astimezone(tz).date() for m in moments if m is not None]
        if at_least_days:
            days.append(today - timedelta(days=at_least_days))
        written = rebuild_demand(since=min(days)) if days else None
        ForecastSettings.objects.filter(pk=1).update(demand_as_of=started)
    return written


def rebuild_stockouts(*, since: date | None = None, today: date | None = None) -> int:
    """Recompute StockoutDay from `since` (or from the first stock event) up to today."""
    tz = brand_timezone()
    today = today or brand_today()
    start_at = datetime.combine(since, datetime.min.time(), tzinfo=tz) if since else None

    # Levels carried into the window: each row's last event before it.
    levels: dict[int, dict[int, int]] = defaultdict(dict)
    if start_at is not None:
        opening = (
            StockEvent.objects.filter(created_at__lt=start_at)
            .order_by("sku_id", "warehouse_id", "-id")
            .distinct("sku_id", "warehouse_id")
            .values_list("sku_id", "warehouse_id", "available_after")
        )
        for sku_id, warehouse_id, available in opening:
            levels[sku_id][warehouse_id] = available
    events = StockEvent.objects.order_by("sku_id", "id")
    if start_at is not None:
        events = events.filter(created_at__gte=start_at)

    out_days: dict[int, set[date]] = defaultdict(set)
    by_sku: dict[int, list[tuple[date, int, int]]] = defaultdict(list)
    for sku_id, warehouse_id, created_at, available in events.values_list(
        "sku_id", "warehouse_id", "created_at", "available_after"
    ).iterator(chunk_size=5000):
        by_sku[sku_id].append((created_at.astimezone(tz).date(), warehouse_id, available))

    for sku_id in set(by_sku) | set(levels):
        current = dict(levels.get(sku_id, {}))
        changes = by_sku.get(sku_id, [])
        known_before = bool(current)
        first_day = since if known_before and since else (changes[0][0] if changes else None)
        if first_day is None:
            continue
        pending = iter(changes)
        nxt = next(pending, None)
        day = first_day
        while day <= today:
            total = sum(current.values())
            # The level carried into the SKU's very first day of data is "nothing yet".
            low = total if (known_before or day != first_day) else None
            while nxt is not None and nxt[0] <= day:
                current[nxt[1]] = nxt[2]
                total = sum(current.values())
                low = total if low is None else min(low, total)
                nxt = next(pending, None)
            if low is not None and low <= 0:
                out_days[sku_id].add(day)
            day += timedelta(days=1)

    cutover = first_order_days()
    flagged = ImportedSale.objects.filter(stockout=True)
    if since is not None:
        flagged = flagged.filter(day__gte=since)
    for sku_id, channel, day in flagged.values_list("sku_id", "channel", "day"):
        if cutover.counts(channel, day):
            out_days[sku_id].add(day)

    # A bundle cannot sell on a day one of its components is out.
    components: dict[int, list[int]] = defaultdict(list)
    for bundle_id, component_id in BundleComponent.objects.values_list("bundle_id", "component_id"):
        components[bundle_id].append(component_id)
    for bundle_id, parts in components.items():
        days = set().union(*(out_days.get(p, set()) for p in parts))
        if days:
            out_days[bundle_id] |= days

    with transaction.atomic():
        _lock("stockouts")
        old = (
            StockoutDay.objects.all()
            if since is None
            else StockoutDay.objects.filter(day__gte=since)
        )
        old._raw_delete(old.db)
        rows = [
            StockoutDay(sku_id=sku_id, day=day)
            for sku_id, days in out_days.items()
            for day in sorted(days)
            if since is None or day >= since
        ]
        StockoutDay.objects.bulk_create(rows, batch_size=5000)
    return len(rows)


def daily_units(sku_ids: Iterable[int], *, start: date, end: date) -> dict[int, list[float | None]]:
    """Units per day start..end (inclusive), all channels and warehouses summed; None on
    stock-out days. Every requested SKU is in the answer."""
    ids = list(dict.fromkeys(int(i) for i in sku_ids))
    if end < start:
        return {sku_id: [] for sku_id in ids}
    length = (end - start).days + 1
    out: dict[int, list[float | None]] = {sku_id: [0.0] * length for sku_id in ids}
    rows = (
        DemandDay.objects.filter(sku_id__in=ids, day__gte=start, day__lte=end)
        .values("sku_id", "day")
        .annotate(total=Sum("units"))
    )
    for row in rows:
        out[row["sku_id"]][(row["day"] - start).days] = float(row["total"])
    for sku_id, day in StockoutDay.objects.filter(
        sku_id__in=ids, day__gte=start, day__lte=end
    ).values_list("sku_id", "day"):
        out[sku_id][(day - start).days] = None
    return out


def history_arrays(
    sku_ids: Sequence[int], *, start: date, end: date
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """(units, out-of-stock mask) per SKU, as the engine wants them; one query each."""
    length = (end - start).days + 1
    units = {sku_id: np.zeros(length) for sku_id in sku_ids}
    masks = {sku_id: np.zeros(length, dtype=bool) for sku_id in sku_ids}
    if length <= 0:
        return {sku_id: (units[sku_id], masks[sku_id]) for sku_id in sku_ids}
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT sku_id, day - %s::date, SUM(units) FROM {_table(DemandDay)} "  # noqa: S608
            "WHERE sku_id = ANY(%s) AND day BETWEEN %s AND %s GROUP BY 1, 2",
            [start, list(sku_ids), start, end],
        )
        for sku_id, offset, total in cursor.fetchall():
            units[sku_id][offset] = float(total)
        cursor.execute(
            f"SELECT sku_id, day - %s::date FROM {_table(StockoutDay)} "  # noqa: S608
            "WHERE sku_id = ANY(%s) AND day BETWEEN %s AND %s",
            [start, list(sku_ids), start, end],
        )
        for sku_id, offset in cursor.fetchall():
            masks[sku_id][offset] = True
    return {sku_id: (units[sku_id], masks[sku_id]) for sku_id in sku_ids}


def demand_days(sku_id: int, *, start: date, end: date) -> list[dict[str, Any]]:
    """Per-day detail of one SKU (units, returned, stock-out) for pages and the API."""
    totals = {
        row["day"]: row
        for row in DemandDay.objects.filter(sku_id=sku_id, day__gte=start, day__lte=end)
        .values("day")
        .annotate(units=Sum("units"), returned=Sum("returned"))
    }
    out_days = set(
        StockoutDay.objects.filter(sku_id=sku_id, day__gte=start, day__lte=end).values_list(
            "day", flat=True
        )
    )
    days = []
    day = start
    while day <= end:
        row = totals.get(day)
        days.append(
            {
                "day": day,
                "units": int(row["units"]) if row else 0,
                "returned": int(row["returned"]) if row else 0,
                "stockout": day in out_days,
            }
        )
        day += timedelta(days=1)
    return days


# --- Forecast summaries -----------------------------------------------------------------------


@dataclass(frozen=True)
class ForecastSummary:
    sku_id: int
    method: str
    daily_mean: float
    daily_std: float
    next_28: float
    lo95_28: float
    hi95_28: float
    generated_at: datetime


def _window(forecast: SkuForecast, today: date, days: int) -> slice:
    offset = max(0, (today - forecast.start).days)
    return slice(offset, offset + days)


def summarize(forecast: SkuForecast, *, today: date | None = None) -> ForecastSummary:
    today = today or brand_today()
    window = _window(forecast, today, SUMMARY_DAYS)
    mean = np.asarray(forecast.mean[window], dtype=float)
    lo = np.asarray(forecast.lo95[window], dtype=float)
    hi = np.asarray(forecast.hi95[window], dtype=float)
    # Past the stored horizon (a stale forecast) the last daily mean carries on.
    missing = SUMMARY_DAYS - len(mean)
    total = float(mean.sum()) + (missing * forecast.daily_mean if missing > 0 else 0.0)
    sigma_sq = float((((hi - lo) / (2 * Z95)) ** 2).sum())
    if missing > 0:
        sigma_sq += missing * forecast.daily_std**2
    sigma = math.sqrt(sigma_sq)
    return ForecastSummary(
        sku_id=forecast.sku_id,
        method=forecast.method,
        daily_mean=forecast.daily_mean,
        daily_std=forecast.daily_std,
        next_28=total,
        lo95_28=max(0.0, total - Z95 * sigma),
        hi95_28=total + Z95 * sigma,
        generated_at=forecast.generated_at,
    )


def forecast_summary(sku_ids: Iterable[int]) -> dict[int, ForecastSummary]:
    """Summaries of the SKUs that have a forecast (others are absent)."""
    today = brand_today()
    ids = list(dict.fromkeys(int(i) for i in sku_ids))
    return {
        forecast.sku_id: summarize(forecast, today=today)
        for forecast in SkuForecast.objects.filter(sku_id__in=ids).defer("warm", "scores")
    }


# --- Forecast runs ----------------------------------------------------------------------------


def forecastable_sku_ids(sku_ids: Iterable[int] | None = None) -> list[int]:
    """SKUs with demand in the history window (optionally among `sku_ids`), by id."""
    start = brand_today() - timedelta(days=settings().history_days)
    rows = DemandDay.objects.filter(day__gte=start, units__gt=0)
    if sku_ids is not None:
        rows = rows.filter(sku_id__in=list(sku_ids))
    return sorted(set(rows.values_list("sku_id", flat=True).distinct()))


def open_run() -> ForecastRun | None:
    return (
        ForecastRun.objects.filter(state__in=[RunState.QUEUED, RunState.RUNNING])
        .exclude(kind=RunKind.SINGLE)
        .first()
    )


def run_forecasts(
    *, sku_ids: Iterable[int] | None = None, kind: str = "nightly", publish: bool = True
) -> ForecastRun:
    """Start a run over `sku_ids` (default: every SKU with demand history).

    A manual run refreshes demand history first (`refresh_demand`). Returns the run
    already in flight instead when there is one. Chunk tasks are
    published when the transaction commits (`publish=False` leaves them for the caller,
    e.g. a benchmark driving chunks itself).
    """
    if kind not in RunKind.values or kind == RunKind.SINGLE:
        raise ForecastingError(f"Unknown run kind {kind!r}.", "invalid_kind")
    from audit.context import current_actor

    if kind == RunKind.MANUAL:
        refresh_demand()
    config = settings()
    ids = forecastable_sku_ids(sku_ids)
    try:
        with transaction.atomic():
            _lock("run")
            existing = open_run()
            if existing is not None and existing.created_at < timezone.now() - STALE_RUN:
                # Its chunk tasks were lost (broker or worker gone): close it, start afresh.
                fail_run(existing, f"Abandoned: not finished within {STALE_RUN}.")
                existing = None
            if existing is not None:
                return existing
            run = ForecastRun.objects.create(
                kind=kind,
                state=RunState.QUEUED,
                total=len(ids),
                requested_by_label=current_actor().label[:200],
            )
            size = max(1, config.chunk_size)
            chunks = [
                ForecastChunk(run=run, index=i, sku_ids=ids[start : start + size])
                for i, start in enumerate(range(0, len(ids), size))
            ]
            ForecastChunk.objects.bulk_create(chunks)
            run.chunks = len(chunks)
            if not chunks:
                run.state = RunState.SUCCEEDED
                run.started_at = run.finished_at = timezone.now()
            run.save(update_fields=["chunks", "state", "started_at", "finished_at"])
            record("forecasting.run_started", obj=run, changes={"kind": kind, "skus": len(ids)})
            if publish and chunks:
                transaction.on_commit(lambda: _publish_chunks(run.pk, len(chunks)))
    except IntegrityError:
        # Another process opened one between our check and insert (the lock makes this
        # rare); theirs is the run.
        existing = open_run()
        if existing is None:
            raise
        return existing
    return run


def _publish_chunks(run_id: int, count: int) -> None:
    from forecasting.tasks import forecast_chunk

    for index in range(count):
        forecast_chunk.apply_async(args=(run_id, index))


def _comparable_profiles(
    new_ids: list[int], *, start: date, end: date, length: int
) -> dict[int, np.ndarray]:
    """Launch profile per new SKU from SKUs of the same category (else a shared tag) that
    launched inside the window, excluding the new ones themselves."""
    from forecasting.engine import launch_profile

    if not new_ids:
        return {}
    products = {
        sku_id: (category, tags or [])
        for sku_id, category, tags in SKU.objects.filter(pk__in=new_ids).values_list(
            "pk", "product__category", "product__tags"
        )
    }
    categories = {category for category, _ in products.values() if category}
    tags = {tag for _, sku_tags in products.values() for tag in sku_tags}
    peers = (
        SKU.objects.filter(
            Q(product__category__in=categories) | Q(product__tags__overlap=list(tags))
        )
        .exclude(pk__in=new_ids)
        .values_list("pk", "product__category", "product__tags")
    )
    peers = {pk: (category, peer_tags) for pk, category, peer_tags in peers}
    if not peers:
        return {}
    # Only peers whose first sale falls inside the window have a launch to learn from.
    launched = set(
        DemandDay.objects.filter(sku_id__in=list(peers), units__gt=0)
        .values("sku_id")
        .annotate(first=Min("day"))
        .filter(first__gt=start)
        .values_list("sku_id", flat=True)
    )
    candidates = [(pk, *peers[pk]) for pk in sorted(launched)]
    if not candidates:
        return {}
    cache: dict[tuple[str, tuple[str, ...]], np.ndarray | None] = {}
    out: dict[int, np.ndarray] = {}
    for sku_id, (category, tags) in products.items():
        key = (category or "", tuple(sorted(tags)))
        if key not in cache:
            similar = [pk for pk, cat, _ in candidates if category and cat == category]
            if not similar and tags:
                similar = [pk for pk, _, other in candidates if set(other or []) & set(tags)]
            similar = similar[:100]
            profile = None
            if similar:
                histories = history_arrays(similar, start=start, end=end)
                series = [np.where(mask, np.nan, y) for y, mask in histories.values()]
                try:
                    profile = launch_profile(series, length)
                except ValueError:
                    profile = None
            cache[key] = profile
        if cache[key] is not None:
            out[sku_id] = cache[key]
    return out


@dataclass
class ChunkOutcome:
    forecasts: list[SkuForecast]
    failures: dict[int, str]
    warm_started: int
    seconds: float


def compute_forecasts(
    sku_ids: Sequence[int],
    *,
    run: ForecastRun | None = None,
    full_refit: bool = False,
    config: ForecastSettings | None = None,
    today: date | None = None,
) -> ChunkOutcome:
    """Forecast `sku_ids` in this process (no database writes)."""
    from forecasting.engine import SeriesInput, forecast_many

    started = time.perf_counter()
    config = config or settings()
    today = today or brand_today()
    end = today - timedelta(days=1)
    start = today - timedelta(days=config.history_days)
    histories = history_arrays(list(sku_ids), start=start, end=end)
    previous = {
        f.sku_id: f
        for f in SkuForecast.objects.filter(sku_id__in=list(sku_ids)).only(
            "sku_id", "warm", "full_fit_at"
        )
    }
    now = timezone.now()
    refit_before = now - timedelta(days=config.full_refit_days)

    new_ids = []
    for sku_id, (y, _mask) in histories.items():
        sold = np.flatnonzero(y > 0)
        if len(sold) and len(y) - sold[0] < config.new_sku_days:
            new_ids.append(sku_id)
    profiles = _comparable_profiles(
        new_ids, start=start, end=end, length=config.new_sku_days + config.horizon_days
    )

    series: dict[int, SeriesInput] = {}
    failures: dict[int, str] = {}
    for sku_id in sku_ids:
        y, mask = histories[sku_id]
        sold = np.flatnonzero(y > 0)
        if not len(sold):
            failures[sku_id] = "No demand in the history window."
            continue
        # From the first sale, before masking stock-outs: a first sale on a stock-out day
        # still marks the launch (the engine would otherwise see the NaN as no sale).
        y, mask = y[sold[0] :], mask[sold[0] :]
        prior = previous.get(sku_id)
        warm = None
        if (
            not full_refit
            and prior is not None
            and prior.warm
            and prior.full_fit_at is not None
            and prior.full_fit_at > refit_before
        ):
            warm = prior.warm
        series[sku_id] = SeriesInput(y, oos=mask, profile=profiles.get(sku_id), warm=warm)

    batch = forecast_many(series, h=config.horizon_days, freq="D", n_jobs=1)
    for key, failure in batch.failures.items():
        failures[int(key)] = failure.error

    forecasts = []
    warm_started = 0
    for key, result in batch.results.items():
        sku_id = int(key)
        mean = np.asarray(result.mean, dtype=float)
        lo80, hi80 = result.intervals.get(80.0, (mean, mean))
        lo95, hi95 = result.intervals.get(95.0, (mean, mean))
        head = slice(0, min(SUMMARY_DAYS, len(mean)))
        sigma = (np.asarray(hi95[head]) - np.asarray(lo95[head])) / (2 * Z95)
        prior = previous.get(sku_id)
        if result.warm_started:
            warm_started += 1
        scores = {
            name: (score.mase if math.isfinite(score.mase) else None)
            for name, score in result.scores.items()
        }
        forecasts.append(
            SkuForecast(
                sku_id=sku_id,
                run=run,
                generated_at=now,
                start=today,
                horizon=len(mean),
                method=result.method,
                demand_class=str(result.demand_class),
                mean=[round(float(v), 4) for v in mean],
                lo80=[round(float(v), 4) for v in lo80],
                hi80=[round(float(v), 4) for v in hi80],
                lo95=[round(float(v), 4) for v in lo95],
                hi95=[round(float(v), 4) for v in hi95],
                scores=scores,
                daily_mean=float(mean.mean()) if len(mean) else 0.0,
                daily_std=float(np.sqrt(np.mean(sigma**2))) if len(sigma) else 0.0,
                warm=result.warm_state(),
                warm_started=result.warm_started,
                launch_profile=result.method == "profile" or sku_id in profiles,
                full_fit_at=(
                    prior.full_fit_at if result.warm_started and prior is not None else now
                ),
                seconds=float(result.timings.get("total", 0.0)),
            )
        )
    return ChunkOutcome(forecasts, failures, warm_started, time.perf_counter() - started)


FORECAST_FIELDS = [
    "run",
    "generated_at",
    "start",
    "horizon",
    "method",
    "demand_class",
    "mean",
    "lo80",
    "hi80",
    "lo95",
    "hi95",
    "scores",
    "daily_mean",
    "daily_std",
    "warm",
    "warm_started",
    "launch_profile",
    "full_fit_at",
    "seconds",
]


def _save_forecasts(forecasts: list[SkuForecast]) -> None:
    SkuForecast.objects.bulk_create(
        forecasts,
        update_conflicts=True,
        unique_fields=["sku"],
        update_fields=FORECAST_FIELDS,
        batch_size=500,
    )


def run_chunk(run_id: int, index: int) -> bool:
    """Forecast one chunk of a run and count it in; False when it had already been done."""
    chunk = ForecastChunk.objects.select_related("run").get(run_id=run_id, index=index)
    if chunk.finished or chunk.run.state not in (RunState.QUEUED, RunState.RUNNING):
        return False
    ForecastRun.objects.filter(pk=run_id, state=RunState.QUEUED).update(
        state=RunState.RUNNING, started_at=timezone.now()
    )
    try:
        outcome = compute_forecasts(chunk.sku_ids, run=chunk.run)
    except TRANSIENT:
        raise  # BrandTask retries these with backoff; the chunk is not counted yet
    except Exception as exc:  # noqa: BLE001 - the chunk's SKUs fail, the run goes on
        outcome = ChunkOutcome(
            [], {s: f"{type(exc).__name__}: {exc}" for s in chunk.sku_ids}, 0, 0.0
        )
    with transaction.atomic():
        claimed = ForecastChunk.objects.filter(pk=chunk.pk, finished=False).update(
            finished=True, seconds=outcome.seconds
        )
        if not claimed:
            return False
        try:
            with transaction.atomic():
                _save_forecasts(outcome.forecasts)
        except DataError as exc:
            # A value the database refuses fails this chunk's SKUs, never the run: a
            # chunk left unfinished would keep the run open forever.
            outcome = ChunkOutcome(
                [],
                {
                    **outcome.failures,
                    **{f.sku_id: f"Could not store the forecast: {exc}" for f in outcome.forecasts},
                },
                0,
                outcome.seconds,
            )
        ForecastFailure.objects.bulk_create(
            [
                ForecastFailure(run_id=run_id, sku_id=sku_id, error=error[:2000])
                for sku_id, error in outcome.failures.items()
            ]
        )
        ForecastRun.objects.filter(pk=run_id).update(
            done=F("done") + len(chunk.sku_ids),
            failed=F("failed") + len(outcome.failures),
            warm_started=F("warm_started") + outcome.warm_started,
        )
        run = ForecastRun.objects.select_for_update().get(pk=run_id)
        if run.done >= run.total and run.state in (RunState.QUEUED, RunState.RUNNING):
            _finish(run)
    return True


def _finish(run: ForecastRun) -> None:
    run.finished_at = timezone.now()
    if run.started_at is None:
        run.started_at = run.finished_at
    if run.total and run.failed == run.total:
        run.state = RunState.FAILED
        run.error = "Every SKU failed; see the failures."
    else:
        run.state = RunState.SUCCEEDED
    run.save(update_fields=["state", "finished_at", "started_at", "error"])
    record(
        "forecasting.run_finished",
        obj=run,
        changes={"state": run.state, "done": run.done, "failed": run.failed},
    )


def fail_run(run: ForecastRun, error: str) -> ForecastRun:
    """Close a run that cannot go on (e.g. its chunks were lost), keeping what it did."""
    with transaction.atomic():
        run = ForecastRun.objects.select_for_update().get(pk=run.pk)
        if not run.is_open:
            return run
        run.state = RunState.FAILED
        run.error = error[:2000]
        run.finished_at = timezone.now()
        run.save(update_fields=["state", "error", "finished_at"])
        record("forecasting.run_failed", obj=run, changes={"error": run.error})
    return run


def resume_run(run: ForecastRun) -> int:
    """Publish the run's unfinished chunks again (after a lost worker); idempotent."""
    pending = list(
        ForecastChunk.objects.filter(run=run, finished=False).values_list("index", flat=True)
    )
    from forecasting.tasks import forecast_chunk

    for index in pending:
        forecast_chunk.apply_async(args=(run.pk, index))
    return len(pending)


def forecast_one(sku: SKU) -> SkuForecast:
    """Forecast one SKU now, backtesting every candidate again (a person asked)."""
    refresh_demand()
    now = timezone.now()
    with transaction.atomic():
        run = ForecastRun.objects.create(
            kind=RunKind.SINGLE, state=RunState.RUNNING, total=1, chunks=1, started_at=now
        )
    outcome = compute_forecasts([sku.pk], run=run, full_refit=True)
    with transaction.atomic():
        if outcome.forecasts:
            _save_forecasts(outcome.forecasts)
        for sku_id, error in outcome.failures.items():
            ForecastFailure.objects.create(run=run, sku_id=sku_id, error=error[:2000])
        run.done = 1
        run.failed = len(outcome.failures)
        run.save(update_fields=["done", "failed"])
        _finish(run)
    if not outcome.forecasts:
        raise ForecastingError(
            f"{sku.code} could not be forecast: {outcome.failures.get(sku.pk, 'unknown')}",
            "forecast_failed",
        )
    return SkuForecast.objects.get(sku=sku)


# --- Nightly ----------------------------------------------------------------------------------


def nightly(*, today: date | None = None) -> ForecastRun | None:
    """Rebuild recent demand, re-segment, then start the forecast run (once per day)."""
    today = today or brand_today()
    tz = brand_timezone()
    day_start = datetime.combine(today, datetime.min.time(), tzinfo=tz)
    if ForecastRun.objects.filter(kind=RunKind.NIGHTLY, created_at__gte=day_start).exists():
        return None
    refresh_demand(today=today, at_least_days=NIGHTLY_REBUILD_DAYS)
    recompute_segments(today=today)
    prune_runs()
    return run_forecasts(kind=RunKind.NIGHTLY)


def prune_runs(*, keep_days: int = RUN_RETENTION_DAYS) -> int:
    """Delete finished runs (their chunks and failures) older than `keep_days`; the
    forecasts they made stay."""
    cutoff = timezone.now() - timedelta(days=keep_days)
    old = ForecastRun.objects.filter(created_at__lt=cutoff).exclude(
        state__in=[RunState.QUEUED, RunState.RUNNING]
    )
    deleted, _ = old.delete()
    return deleted


def last_run() -> ForecastRun | None:
    return ForecastRun.objects.exclude(kind=RunKind.SINGLE).first()


def history_bounds(sku_id: int) -> tuple[date | None, date | None]:
    row = DemandDay.objects.filter(sku_id=sku_id).aggregate(first=Min("day"), last=Max("day"))
    return row["first"], row["last"]
