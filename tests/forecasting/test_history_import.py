"""Sales-history import: a brand's pre-Keel daily sales become demand history, segments and
forecasts, through the same validate → confirm → apply jobs as the other CSV imports."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.urls import reverse

from catalog import imports
from catalog.models import SKU, ImportJob, ImportStatus
from forecasting import history_import, services
from forecasting.history_import import SaleRow
from forecasting.models import DemandDay, ImportedSale, SkuSegment, StockoutDay
from orders.services import ingest_order
from tests.catalog.imports_support import media, to_csv  # noqa: F401 - fixture
from tests.conftest import brand_client, make_user
from tests.factories import SKUFactory, WarehouseFactory
from tests.orders.conftest import build_network, order_input, publish_typical_rules

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media")]

COLUMNS = history_import.COLUMNS


def sales_csv(rows: list[dict[str, str]]) -> bytes:
    return to_csv(COLUMNS, [[r.get(c, "") for c in COLUMNS] for r in rows])


def upload(data: bytes, user) -> ImportJob:
    upload = ContentFile(data, name="history.csv")
    return imports.create_job(kind="sales_history", upload=upload, user=user)


def run(data: bytes, user) -> ImportJob:
    job = imports.validate_job(upload(data, user).pk)
    assert job.status == ImportStatus.READY, job.report[:5]
    imports.confirm_job(job, user=user)
    return imports.apply_job(job.pk)


def problems(job: ImportJob) -> set[tuple[int, str, str]]:
    return {(p["line"], p["column"], p["code"]) for p in job.report}


def demand() -> set[tuple]:
    return set(
        DemandDay.objects.values_list("sku__code", "channel", "warehouse__code", "day", "units")
    )


def ago(days: int) -> date:
    return services.brand_today() - timedelta(days=days)


def placed(day: date) -> datetime:
    return datetime.combine(day, time(12), tzinfo=services.brand_timezone()).astimezone(UTC)


@pytest.fixture
def world(in_alpha, owner_a):
    SKUFactory(code="TEE")
    SKUFactory(code="HAT")
    WarehouseFactory(code="MAIN")
    return owner_a


def test_history_becomes_demand_days_and_a_second_import_changes_nothing(world):
    rows = [
        {"date": ago(40).isoformat(), "sku": "tee", "units": "5", "channel": "Shopify"},
        {"date": ago(40).isoformat(), "sku": "TEE", "units": "2", "channel": "amazon"},
        {"date": ago(39).isoformat(), "sku": "TEE", "units": "0", "stockout": "yes"},
        {"date": ago(39).isoformat(), "sku": "HAT", "units": "3", "warehouse": "main"},
        {"date": ago(38).isoformat(), "sku": "HAT", "units": "1", "revenue": "19.99"},
    ]
    job = run(sales_csv(rows), world)

    assert job.status == ImportStatus.APPLIED
    assert job.counts["created"] == 5 and job.counts["units"] == 11
    assert demand() == {
        ("TEE", "shopify", None, ago(40), 5),
        ("TEE", "amazon", None, ago(40), 2),
        ("HAT", "", "MAIN", ago(39), 3),
        ("HAT", "", None, ago(38), 1),
    }
    # A stock-out day is read as missing, not as a day of zero demand.
    assert set(StockoutDay.objects.values_list("sku__code", "day")) == {("TEE", ago(39))}
    tee = services.daily_units([ImportedSale.objects.first().sku_id], start=ago(40), end=ago(38))
    assert list(tee.values())[0] == [7.0, None, 0.0]

    stamps = list(ImportedSale.objects.order_by("pk").values_list("pk", "updated_at"))
    again = run(sales_csv(rows), world)
    assert again.counts == {**again.counts, "created": 0, "updated": 0, "unchanged": 5}
    assert list(ImportedSale.objects.order_by("pk").values_list("pk", "updated_at")) == stamps

    rows[0]["units"] = "6"
    fixed = run(sales_csv(rows), world)
    assert (fixed.counts["updated"], fixed.counts["unchanged"]) == (1, 4)
    assert ("TEE", "shopify", None, ago(40), 6) in demand()
    assert ImportedSale.objects.count() == 5


def test_every_bad_row_is_reported_by_line_and_column_and_nothing_is_written(world):
    good = {"date": ago(10).isoformat(), "sku": "TEE", "units": "1"}
    rows = [
        good,
        {**good, "date": "2025/11/01"},
        {**good, "date": "20251101"},
        {**good, "date": services.brand_today().isoformat()},
        {**good, "date": ago(2000).isoformat()},
        {**good, "date": ""},
        {**good, "sku": "NOPE"},
        {**good, "units": "-2"},
        {**good, "units": "1.5"},
        {**good, "units": ""},
        {**good, "warehouse": "ATLANTIS"},
        {**good, "revenue": "12,50"},
        {**good, "revenue": "-1"},
        {**good, "stockout": "maybe"},
        {**good, "channel": "x" * 101},
        dict(good),  # same key as line 2
    ]
    job = imports.validate_job(upload(sales_csv(rows), world).pk)

    assert job.status == ImportStatus.INVALID
    assert problems(job) == {
        (3, "date", "malformed_date"),
        (4, "date", "malformed_date"),
        (5, "date", "not_past"),
        (6, "date", "out_of_range"),
        (7, "date", "required"),
        (8, "sku", "unknown_sku"),
        (9, "units", "negative_quantity"),
        (10, "units", "malformed_number"),
        (11, "units", "required"),
        (12, "warehouse", "unknown_warehouse"),
        (13, "revenue", "malformed_number"),
        (14, "revenue", "negative_number"),
        (15, "stockout", "invalid_boolean"),
        (16, "channel", "too_long"),
        (17, "date", "duplicate_row"),
    }
    assert all(p["message"] for p in job.report)
    assert not ImportedSale.objects.exists() and not DemandDay.objects.exists()


def test_a_bad_header_is_one_problem_naming_the_expected_columns(world):
    job = imports.validate_job(upload(b"day,sku,qty\r\n2025-01-01,TEE,1\r\n", world).pk)
    assert problems(job) == {(1, "", "bad_header")}
    assert "date" in job.report[0]["message"] and "units" in job.report[0]["message"]


@pytest.fixture
def shop(in_alpha, owner_a):
    """Orders from the "shop" channel can be ingested and routed (TEE, HAT, MUG)."""
    build_network()
    publish_typical_rules()
    return owner_a


def test_history_stops_where_the_channels_orders_start_so_no_day_counts_twice(shop):
    first_order = ago(20)
    ingest_order(order_input(lines=(("TEE", 2),), placed_at=placed(first_order)))
    rows = [
        {"date": ago(21).isoformat(), "sku": "TEE", "units": "4", "channel": "shop"},
        {"date": ago(20).isoformat(), "sku": "TEE", "units": "9", "channel": "shop"},
        {"date": ago(21).isoformat(), "sku": "TEE", "units": "1"},
        {"date": ago(20).isoformat(), "sku": "TEE", "units": "1"},
        {"date": ago(20).isoformat(), "sku": "TEE", "units": "3", "channel": "wholesale"},
    ]
    job = imports.validate_job(upload(sales_csv(rows), shop).pk)
    assert problems(job) == {(3, "date", "overlaps_orders"), (5, "date", "overlaps_orders")}
    assert first_order.isoformat() in job.report[0]["message"]

    del rows[3], rows[1]
    run(sales_csv(rows), shop)
    tee = {(ch, day): units for code, ch, _wh, day, units in demand() if code == "TEE"}
    assert tee == {
        ("shop", ago(21)): 4,
        ("", ago(21)): 1,
        ("wholesale", ago(20)): 3,
        ("shop", ago(20)): 2,  # the order, not an imported row
    }

    # A backfill brings older orders from the channel: from their first day on the orders
    # are the history and the imported day drops out instead of being added to them.
    ingest_order(order_input(lines=(("TEE", 1),), placed_at=placed(ago(21))))
    services.rebuild_demand()
    tee = {(ch, day): units for code, ch, _wh, day, units in demand() if code == "TEE"}
    assert tee[("shop", ago(21))] == 1
    assert ("", ago(21)) not in tee  # blank channel: before the first order of any channel


def test_orders_arriving_between_check_and_confirm_turn_the_job_invalid(shop):
    rows = [{"date": ago(5).isoformat(), "sku": "TEE", "units": "4", "channel": "shop"}]
    job = imports.validate_job(upload(sales_csv(rows), shop).pk)
    assert job.status == ImportStatus.READY
    ingest_order(order_input(lines=(("TEE", 1),), placed_at=placed(ago(6))))

    imports.confirm_job(job, user=shop)
    job = imports.apply_job(job.pk)

    assert job.status == ImportStatus.INVALID
    assert problems(job) == {(2, "date", "overlaps_orders")}
    assert not ImportedSale.objects.exists()


def test_imported_revenue_ranks_segments_and_a_year_of_history_is_forecast(world):
    # Ten SKUs so every segment has members: SKU-0 sells most, TEE and HAT nothing.
    skus = [SKUFactory(code=f"SKU-{i}") for i in range(8)]
    rng = np.random.default_rng(7)
    rows = []
    for days_back in range(1, 366):
        day = ago(days_back)
        weekend = 1.4 if day.weekday() >= 5 else 1.0
        for i, sku in enumerate(skus):
            units = int(rng.poisson((8 - i) * 2 * weekend))
            rows.append(SaleRow(sku.pk, "", None, day, units, Decimal(units * 20)))

    result = history_import.load_sales(rows)

    assert result["created"] == 365 * 8
    segments = dict(SkuSegment.objects.values_list("sku__code", "segment"))
    assert segments["SKU-0"] == "hero"
    assert {segments["TEE"], segments["HAT"]} <= {"tail", "discontinue"}
    assert "discontinue" in {segments["TEE"], segments["HAT"]}

    forecast = services.forecast_one(skus[0])
    assert forecast.demand_class == "smooth"
    # 16 units a weekday, 40 % more at weekends: about 16 × 28 × 1.11 ≈ 500 in four weeks.
    assert 400 < sum(forecast.mean[:28]) < 600


def test_load_sales_refuses_what_the_import_would(world):
    tee = SKU.objects.get(code="TEE")
    with pytest.raises(ValueError, match="before today"):
        history_import.load_sales([SaleRow(tee.pk, "", None, services.brand_today(), 1)])
    with pytest.raises(ValueError, match="twice"):
        history_import.load_sales([SaleRow(tee.pk, "", None, ago(3), 1)] * 2)
    assert not ImportedSale.objects.exists()


def test_the_imports_page_offers_the_kind_and_its_template(world, brand_a):
    client = brand_client(brand_a, world)
    page = client.get(reverse("imports:upload"))
    assert b"Sales history" in page.content and b"overlaps_orders" in page.content
    template = client.get(reverse("imports:template", args=["sales_history"]))
    body = b"".join(template.streaming_content).decode("utf-8-sig")
    assert body.splitlines()[0] == ",".join(COLUMNS)


# --- API ---------------------------------------------------------------------------------


def test_api_imports_rows_all_or_nothing_with_the_csv_rules(world, brand_a):
    buyer = brand_client(brand_a, make_user(brand_a, role="buyer"))
    rows = [
        {"date": ago(3).isoformat(), "sku": "TEE", "units": 4, "channel": "shopify"},
        {"date": ago(2).isoformat(), "sku": "HAT", "units": "2", "revenue": 39.8},
        {"date": ago(1).isoformat(), "sku": "TEE", "units": 0, "stockout": True},
    ]

    def post(payload, key):
        return buyer.post(
            "/api/v1/sales-history/",
            payload,
            content_type="application/json",
            HTTP_IDEMPOTENCY_KEY=key,
        )

    bad = post(
        {
            "rows": [
                *rows,
                {"date": "2025-13-01", "sku": "NOPE", "units": -1},
                {"sku": "TEE"},
                {"date": ago(1).isoformat(), "sku": "TEE", "units": 1, "colour": "red"},
            ]
        },
        "k-bad",
    )
    assert bad.status_code == 400
    fields = bad.json()["error"]["fields"]
    assert {path: [e["code"] for e in errs] for path, errs in fields.items()} == {
        "rows.3.date": ["malformed_date"],
        "rows.3.sku": ["unknown_sku"],
        "rows.3.units": ["negative_quantity"],
        "rows.4.date": ["required"],
        "rows.4.units": ["required"],
        "rows.5.colour": ["unknown_field"],
    }
    assert not ImportedSale.objects.exists()

    done = post({"rows": rows}, "k-1")
    assert done.status_code == 200, done.json()
    assert done.json()["created"] == 3 and done.json()["units"] == 6
    assert ("TEE", "shopify", None, ago(3), 4) in demand()
    assert set(StockoutDay.objects.values_list("sku__code", "day")) == {("TEE", ago(1))}
    assert ImportedSale.objects.get(sku__code="HAT").revenue == Decimal("39.80")
    # a retry with the same key replays the answer; the same rows under a new key change nothing
    assert post({"rows": rows}, "k-1").json() == done.json()
    again = post({"rows": rows}, "k-2").json()
    assert (again["created"], again["unchanged"]) == (0, 3)

    viewer = brand_client(brand_a, make_user(brand_a, role="viewer"))
    refused = viewer.post("/api/v1/sales-history/", {"rows": rows}, content_type="application/json")
    assert refused.status_code == 403
