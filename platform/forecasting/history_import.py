"""Sales-history CSV import: daily units per SKU from before Keel, for forecasting.

One of the kinds on the Imports page (`catalog.imports` runs the job: upload, a worker checks
every row and reports problems by line and column, a person confirms, a worker applies all
rows or none). This module holds the rules of this kind: `plan_sales` parses and checks a
file, `write_sales` upserts the rows; `load_sales` is the same write for code (the demo
brand's simulated history).

Rows are keyed by SKU × channel × warehouse × date and hold the **value for that day**, so
importing the same file twice changes nothing and a corrected file replaces what it names.
A row must be dated before Keel's first order from its channel (`services.Cutover`): from
then on the orders are the history, and a day is never counted from both.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models.functions import Lower

from catalog.imports import (
    LOOKUP_CHUNK,
    PROGRESS_STEP,
    Problem,
    Progress,
    _Bad,
    _boolean,
    _chunks,
    _decimal,
    _no_progress,
    _quantity,
    _Spec,
    read_table,
)
from catalog.models import SKU
from forecasting import services
from forecasting.models import ImportedSale, SkuSegment
from inventory.models import Warehouse

COLUMNS: tuple[str, ...] = ("date", "sku", "units", "channel", "warehouse", "revenue", "stockout")
SPEC = _Spec(COLUMNS, ("date", "sku", "units"))
# The engine reads at most ForecastSettings.history_days (730 by default); five years leaves
# room for brands that raise it, and catches a century typo (2205 for 2025).
MAX_AGE_DAYS = 5 * 366
_REVENUE_LIMITS = (12, 2)  # ImportedSale.revenue: 14 digits, 2 decimals
_CHANNEL_MAX = ImportedSale._meta.get_field("channel").max_length
WRITE_CHUNK = 2_000
_UNITS_MESSAGES = {
    "malformed_number": "Units must be a whole number, like 12.",
    "negative_quantity": "Units sold cannot be negative; returns are not imported here.",
    "out_of_range": "This number of units is too large.",
}

TEMPLATE: list[list[str]] = [
    list(COLUMNS),
    ["2025-11-01", "TEE-NVY-M", "14", "shopify", "", "418.60", ""],
    ["2025-11-01", "TEE-NVY-L", "0", "shopify", "", "0", "yes"],
    ["2025-11-02", "TEE-NVY-M", "9", "amazon", "", "269.10", ""],
]


@dataclass(frozen=True)
class SaleRow:
    """One day of one SKU's sales, ready to write."""

    sku_id: int
    channel: str
    warehouse_id: int | None
    day: date
    units: int
    revenue: Decimal | None = None
    stockout: bool = False

    @property
    def key(self) -> tuple[int, str, int | None, date]:
        return (self.sku_id, self.channel, self.warehouse_id, self.day)

    def values(self) -> tuple[int, Decimal | None, bool]:
        return (self.units, self.revenue, self.stockout)


@dataclass
class SalesPlan:
    problems: list[Problem]
    order: dict[str, int] = field(default_factory=dict)
    total: int = 0
    rows: list[SaleRow] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


def _date(text: str, today: date) -> date:
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise _Bad("malformed_date", "Write the date as YYYY-MM-DD, like 2025-11-01.") from None
    if len(text) != 10:  # fromisoformat also takes 20251101 and week dates
        raise _Bad("malformed_date", "Write the date as YYYY-MM-DD, like 2025-11-01.")
    if day >= today:
        raise _Bad("not_past", "History ends yesterday: today's sales come from orders.")
    if day < today - timedelta(days=MAX_AGE_DAYS):
        raise _Bad("out_of_range", "More than five years ago; forecasts read two years.")
    return day


def _parse(
    line: int,
    cells: dict[str, str],
    skus: dict[str, int],
    warehouses: dict[str, int],
    today: date,
    problems: list[Problem],
) -> SaleRow | None:
    ok = True
    parsed: dict[str, Any] = {"warehouse_id": None, "revenue": None, "stockout": False}

    def bad(column: str, code: str, message: str) -> None:
        nonlocal ok
        problems.append(Problem(line, column, cells.get(column, "")[:200], code, message))
        ok = False

    if not cells["date"]:
        bad("date", "required", "Every row needs a date.")
    else:
        try:
            parsed["day"] = _date(cells["date"], today)
        except _Bad as exc:
            bad("date", exc.code, exc.message)
    code = cells["sku"]
    if not code:
        bad("sku", "required", "Every row needs a SKU code.")
    elif code.lower() not in skus:
        bad("sku", "unknown_sku", f"No SKU {code} in the catalog; import the item master first.")
    else:
        parsed["sku_id"] = skus[code.lower()]
    if not cells["units"]:
        bad("units", "required", "Every row needs the units sold that day (0 or more).")
    else:
        try:
            parsed["units"] = _quantity(cells["units"])
        except _Bad as exc:
            bad("units", exc.code, _UNITS_MESSAGES.get(exc.code, exc.message))
    channel = cells.get("channel", "").lower()
    if len(channel) > _CHANNEL_MAX:
        bad("channel", "too_long", f"At most {_CHANNEL_MAX} characters.")
    warehouse = cells.get("warehouse", "")
    if warehouse:
        if warehouse.lower() in warehouses:
            parsed["warehouse_id"] = warehouses[warehouse.lower()]
        else:
            bad("warehouse", "unknown_warehouse", f"No warehouse with the code {warehouse}.")
    try:
        parsed["revenue"] = _decimal(cells.get("revenue", ""), "revenue", _REVENUE_LIMITS)
    except _Bad as exc:
        bad("revenue", exc.code, exc.message)
    try:
        parsed["stockout"] = _boolean(cells.get("stockout", ""))
    except _Bad as exc:
        bad("stockout", exc.code, exc.message)
    if not ok:
        return None
    return SaleRow(channel=channel, **parsed)


def _lookups(records: Sequence[tuple[int, dict[str, str]]]) -> tuple[dict[str, int], dict]:
    keys = sorted({cells["sku"].lower() for _, cells in records if cells["sku"]})
    skus: dict[str, int] = {}
    for chunk in _chunks(keys, LOOKUP_CHUNK):
        found = (
            SKU.objects.annotate(code_lower=Lower("code"))
            .filter(code_lower__in=chunk)
            .values_list("code_lower", "pk")
        )
        skus.update(dict(found))
    warehouses = {code.lower(): pk for code, pk in Warehouse.objects.values_list("code", "pk")}
    return skus, warehouses


def plan_sales(
    data: bytes, *, progress: Progress = _no_progress, today: date | None = None
) -> SalesPlan:
    """Parse and check a sales-history CSV; counts compare with the rows already imported."""
    table, problems = read_table(data, SPEC)
    if table is None:
        return SalesPlan(problems=problems)
    plan = SalesPlan(problems=problems, order=table.order)
    plan.total = len(table.records) + sum(p.code == "wrong_field_count" for p in problems)
    return _check(plan, table.records, progress, today, "line")


def plan_records(records: Sequence[dict[str, str]], *, today: date | None = None) -> SalesPlan:
    """Check rows given as column → text (the API's JSON rows, numbered from 0 in `line`)."""
    plan = SalesPlan(problems=[], order={c: i for i, c in enumerate(COLUMNS)}, total=len(records))
    cells = [(i, {c: (r.get(c) or "").strip() for c in COLUMNS}) for i, r in enumerate(records)]
    return _check(plan, cells, _no_progress, today, "row")


def _check(
    plan: SalesPlan,
    records: Sequence[tuple[int, dict[str, str]]],
    progress: Progress,
    today: date | None,
    noun: str,
) -> SalesPlan:
    problems = plan.problems
    today = today or services.brand_today()
    skus, warehouses = _lookups(records)
    cutover = services.first_order_days()

    seen: dict[tuple, int] = {}
    for done, (line, cells) in enumerate(records, 1):
        row = _parse(line, cells, skus, warehouses, today, problems)
        if row is not None:
            if row.key in seen:
                message = f"Same SKU, channel, warehouse and date as {noun} {seen[row.key]}."
                problems.append(Problem(line, "date", cells["date"], "duplicate_row", message))
            elif not cutover.counts(row.channel, row.day):
                first = cutover.first(row.channel)
                where = f"from {row.channel}" if row.channel else "from any channel"
                message = (
                    f"Keel has orders {where} since {first:%Y-%m-%d}; imported history must "
                    "end the day before (from then on the orders are the history)."
                )
                problems.append(Problem(line, "date", cells["date"], "overlaps_orders", message))
            else:
                seen[row.key] = line
                plan.rows.append(row)
        if done % PROGRESS_STEP == 0:
            progress("Checking rows", done, plan.total)
    plan.counts = _outcomes(plan.rows)
    return plan


def _existing(rows: Sequence[SaleRow]) -> dict[tuple, tuple]:
    """The stored (units, revenue, stockout) of the rows' keys."""
    found: dict[tuple, tuple] = {}
    for chunk in _chunks(sorted({r.sku_id for r in rows}), LOOKUP_CHUNK):
        stored = ImportedSale.objects.filter(sku_id__in=chunk).values_list(
            "sku_id", "channel", "warehouse_id", "day", "units", "revenue", "stockout"
        )
        for sku_id, channel, warehouse_id, day, units, revenue, stockout in stored:
            found[(sku_id, channel, warehouse_id, day)] = (units, revenue, stockout)
    return found


def _outcomes(rows: Sequence[SaleRow], existing: dict | None = None) -> dict[str, int]:
    existing = _existing(rows) if existing is None else existing
    counts = {"created": 0, "updated": 0, "unchanged": 0}
    for row in rows:
        stored = existing.get(row.key)
        if stored is None:
            counts["created"] += 1
        else:
            counts["unchanged" if stored == row.values() else "updated"] += 1
    return counts


def write_sales(
    rows: Sequence[SaleRow], *, job_id: int | None = None, progress: Progress = _no_progress
) -> dict[str, Any]:
    """Upsert the rows (unchanged ones are not touched), then rebuild the demand history
    from the earliest day written and, when the segment window moved, the segments.

    Runs inside the caller's transaction; holds the demand-history lock, so a nightly
    rebuild waits for it (and it for the rebuild)."""
    with transaction.atomic():
        services.lock_demand_history()
        existing = _existing(rows)
        counts = _outcomes(rows, existing)
        changed = [r for r in rows if existing.get(r.key) != r.values()]
        done = 0
        for chunk in _chunks(changed, WRITE_CHUNK):
            _upsert(chunk, job_id)
            done += len(chunk)
            progress("Writing", done, len(changed))
        units = sum(r.units for r in rows)
        result: dict[str, Any] = {**counts, "units": units, "demand_rows": 0}
        if changed:
            since = min(r.day for r in changed)
            result["demand_rows"] = services.rebuild_demand(since=since)
            window = services.settings().segment_window_days
            if since >= services.brand_today() - timedelta(days=window) or not _segmented():
                services.recompute_segments()
        if rows:
            result["first_day"] = min(r.day for r in rows).isoformat()
            result["last_day"] = max(r.day for r in rows).isoformat()
    return result


def _segmented() -> bool:
    return SkuSegment.objects.exists()


def _upsert(rows: Sequence[SaleRow], job_id: int | None) -> None:
    # ON CONFLICT on the constraint's columns; its NULLS NOT DISTINCT makes a blank
    # warehouse conflict with itself (PostgreSQL 15).
    ImportedSale.objects.bulk_create(
        [
            ImportedSale(
                sku_id=r.sku_id,
                channel=r.channel,
                warehouse_id=r.warehouse_id,
                day=r.day,
                units=r.units,
                revenue=r.revenue,
                stockout=r.stockout,
                import_job_id=job_id,
            )
            for r in rows
        ],
        update_conflicts=True,
        unique_fields=["sku", "channel", "warehouse", "day"],
        update_fields=["units", "revenue", "stockout", "import_job", "updated_at"],
    )


def load_sales(rows: Iterable[SaleRow]) -> dict[str, Any]:
    """Write history rows from code (no CSV, no job), with the import's rules: the same
    checks against the cutover, then the same upsert and rebuild. Raises ValueError on a
    row the import would refuse."""
    rows = list(rows)
    cutover = services.first_order_days()
    today = services.brand_today()
    keys: set[tuple] = set()
    for row in rows:
        if row.day >= today or not cutover.counts(row.channel, row.day):
            raise ValueError(f"{row}: history must end before today and before Keel's orders")
        if row.key in keys:
            raise ValueError(f"{row}: the same SKU, channel, warehouse and day twice")
        keys.add(row.key)
    return write_sales(rows)
