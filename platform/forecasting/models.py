"""Demand history, forecast runs, per-SKU forecasts and revenue segments.

- `DemandDay` is the demand history the engine reads: units sold per SKU × channel ×
  warehouse × brand-local day, rebuilt from orders by `services.rebuild_demand`. Returns sit
  in their own column so they never net sales down (the engine refuses negative demand).
- `ImportedSale` is sales history from before Keel (a CSV import): it fills the demand
  history on the days before Keel's first order from its channel.
- `StockoutDay` marks days with no sellable stock anywhere: the engine reads those days as
  missing, not as zero demand.
- `ForecastRun` is one nightly (or manual) run, split into `ForecastChunk`s that workers
  forecast in parallel; `done` / `failed` count SKUs, so `done / total` is the progress.
- `SkuForecast` holds each SKU's latest forecast, and the engine's warm state for the next
  night.
- `SkuSegment` ranks SKUs by trailing revenue (hero, supporting, tail, discontinue);
  `SegmentPolicy` is the review cadence and service level each segment plans with.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import models

from catalog.models import SKU
from inventory.models import Warehouse


class Segment(models.TextChoices):
    HERO = "hero", "Hero"
    SUPPORTING = "supporting", "Supporting"
    TAIL = "tail", "Tail"
    DISCONTINUE = "discontinue", "Discontinue"


# Best first; also the order segments are shown in.
SEGMENT_ORDER = [Segment.HERO, Segment.SUPPORTING, Segment.TAIL, Segment.DISCONTINUE]


class DemandDay(models.Model):
    sku = models.ForeignKey(SKU, on_delete=models.CASCADE, related_name="+")
    channel = models.CharField(max_length=100, blank=True)
    # Null: the units were not routed to a warehouse (held, unrouted or cancelled routing).
    warehouse = models.ForeignKey(
        Warehouse, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    day = models.DateField()
    units = models.PositiveIntegerField(default=0)
    returned = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["sku_id", "day"]
        constraints = [
            models.UniqueConstraint(
                fields=["sku", "channel", "warehouse", "day"],
                name="demand_day_once",
                nulls_distinct=False,
            )
        ]
        indexes = [models.Index(fields=["day", "sku"], name="demand_day_by_day")]

    def __str__(self) -> str:
        return f"{self.sku_id} {self.channel or '-'} {self.day}: {self.units}"


class ImportedSale(models.Model):
    """Units (and revenue) sold on one day before Keel, from a sales-history import.

    A brand arrives with years of sales in Shopify, a spreadsheet or its old system; without
    them the first forecasts would see days, not seasons. `rebuild_demand` adds these rows
    to the demand history only on days before Keel's first order from the same channel
    (blank channel: before its first order from any channel), so a day is never counted
    from both sources. `stockout` marks a day the SKU could not sell (read as missing).
    """

    sku = models.ForeignKey(SKU, on_delete=models.CASCADE, related_name="+")
    # Blank: history not split by channel.
    channel = models.CharField(max_length=100, blank=True)
    warehouse = models.ForeignKey(
        Warehouse, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    day = models.DateField()
    units = models.PositiveIntegerField(default=0)
    revenue = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    stockout = models.BooleanField(default=False)
    import_job = models.ForeignKey(
        "catalog.ImportJob", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["sku_id", "day"]
        constraints = [
            models.UniqueConstraint(
                fields=["sku", "channel", "warehouse", "day"],
                name="imported_sale_once",
                nulls_distinct=False,
            ),
            models.CheckConstraint(
                condition=models.Q(revenue__isnull=True) | models.Q(revenue__gte=0),
                name="imported_sale_revenue_not_negative",
            ),
        ]
        indexes = [models.Index(fields=["day", "sku"], name="imported_sale_by_day")]

    def __str__(self) -> str:
        return f"{self.sku_id} {self.channel or '-'} {self.day}: {self.units} (imported)"


class StockoutDay(models.Model):
    sku = models.ForeignKey(SKU, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()

    class Meta:
        ordering = ["sku_id", "day"]
        constraints = [models.UniqueConstraint(fields=["sku", "day"], name="stockout_day_once")]

    def __str__(self) -> str:
        return f"{self.sku_id} out of stock {self.day}"


class RunKind(models.TextChoices):
    NIGHTLY = "nightly", "Nightly"
    MANUAL = "manual", "Manual"
    SINGLE = "single", "Single SKU"


class RunState(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class ForecastRun(models.Model):
    kind = models.CharField(max_length=10, choices=RunKind.choices, default=RunKind.NIGHTLY)
    state = models.CharField(max_length=10, choices=RunState.choices, default=RunState.QUEUED)
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)  # SKUs finished, failed ones included
    failed = models.PositiveIntegerField(default=0)
    warm_started = models.PositiveIntegerField(default=0)
    chunks = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    requested_by_label = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(done__lte=models.F("total")), name="run_done_within_total"
            ),
            models.CheckConstraint(
                condition=models.Q(failed__lte=models.F("done")), name="run_failed_within_done"
            ),
            # At most one run in flight: a second start joins it instead (see services).
            models.UniqueConstraint(
                models.Value(True),
                condition=models.Q(state__in=["queued", "running"]) & ~models.Q(kind="single"),
                name="one_open_forecast_run",
            ),
        ]

    def __str__(self) -> str:
        return f"Forecast run #{self.pk} ({self.state})"

    @property
    def percent(self) -> int:
        return int(100 * self.done / self.total) if self.total else 0

    @property
    def is_open(self) -> bool:
        return self.state in (RunState.QUEUED, RunState.RUNNING)

    @property
    def seconds(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.finished_at
        if end is None:
            from django.utils import timezone

            end = timezone.now()
        return (end - self.started_at).total_seconds()


class ForecastChunk(models.Model):
    """A slice of a run's SKUs that one task forecasts; `finished` guards against a
    redelivered task counting its SKUs twice."""

    run = models.ForeignKey(ForecastRun, on_delete=models.CASCADE, related_name="chunk_rows")
    index = models.PositiveIntegerField()
    sku_ids = models.JSONField(default=list)
    finished = models.BooleanField(default=False)
    seconds = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["run_id", "index"]
        constraints = [models.UniqueConstraint(fields=["run", "index"], name="forecast_chunk_once")]

    def __str__(self) -> str:
        return f"Run #{self.run_id} chunk {self.index}"


class ForecastFailure(models.Model):
    run = models.ForeignKey(ForecastRun, on_delete=models.CASCADE, related_name="failures")
    sku = models.ForeignKey(SKU, on_delete=models.CASCADE, related_name="+")
    error = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.sku_id} failed in run #{self.run_id}"


class SkuForecast(models.Model):
    """The latest forecast of one SKU (daily units, all channels and warehouses)."""

    sku = models.OneToOneField(SKU, on_delete=models.CASCADE, related_name="forecast")
    run = models.ForeignKey(ForecastRun, on_delete=models.SET_NULL, null=True, related_name="+")
    generated_at = models.DateTimeField()
    start = models.DateField(help_text="First forecast day")
    horizon = models.PositiveIntegerField()
    method = models.CharField(max_length=40)
    demand_class = models.CharField(max_length=20)
    mean = models.JSONField(default=list)
    lo80 = models.JSONField(default=list)
    hi80 = models.JSONField(default=list)
    lo95 = models.JSONField(default=list)
    hi95 = models.JSONField(default=list)
    scores = models.JSONField(default=dict)  # method -> backtest MASE
    daily_mean = models.FloatField(default=0.0)
    daily_std = models.FloatField(default=0.0)
    warm = models.JSONField(default=dict)
    warm_started = models.BooleanField(default=False)
    launch_profile = models.BooleanField(default=False)
    # When every candidate was last backtested (the next full refit is due from here).
    full_fit_at = models.DateTimeField(null=True, blank=True)
    seconds = models.FloatField(default=0.0)

    class Meta:
        ordering = ["sku_id"]

    def __str__(self) -> str:
        return f"{self.sku_id}: {self.method} from {self.start}"


class SkuSegment(models.Model):
    sku = models.OneToOneField(SKU, on_delete=models.CASCADE, related_name="segment")
    segment = models.CharField(max_length=12, choices=Segment.choices)
    trailing_revenue = models.DecimalField(max_digits=16, decimal_places=2, default=Decimal("0"))
    rank = models.PositiveIntegerField()
    computed_at = models.DateTimeField()

    class Meta:
        ordering = ["rank"]
        indexes = [models.Index(fields=["segment"], name="sku_segment_by_segment")]

    def __str__(self) -> str:
        return f"{self.sku_id}: {self.segment} (#{self.rank})"


class SegmentPolicy(models.Model):
    segment = models.CharField(max_length=12, choices=Segment.choices, unique=True)
    review_cadence_days = models.PositiveIntegerField()
    service_level = models.DecimalField(max_digits=4, decimal_places=3)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(service_level__gte=Decimal("0.5"))
                & models.Q(service_level__lte=Decimal("0.999")),
                name="segment_service_level_range",
            ),
            models.CheckConstraint(
                condition=models.Q(review_cadence_days__gte=1, review_cadence_days__lte=365),
                name="segment_review_cadence_range",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.segment}: every {self.review_cadence_days} d at {self.service_level}"


class ForecastSettings(models.Model):
    """One row per brand (pk 1): how far ahead and how far back forecasts look."""

    horizon_days = models.PositiveIntegerField(default=56)
    history_days = models.PositiveIntegerField(default=730)
    segment_window_days = models.PositiveIntegerField(default=90)
    full_refit_days = models.PositiveIntegerField(
        default=7, help_text="Backtest every candidate again after this many days"
    )
    new_sku_days = models.PositiveIntegerField(
        default=56, help_text="SKUs selling for fewer days get a launch profile"
    )
    # SKUs per task: a smooth SKU costs 100× an intermittent one on a first run, and small
    # chunks keep every worker process busy to the end and the progress bar moving.
    chunk_size = models.PositiveIntegerField(default=20)
    # When services.refresh_demand last brought DemandDay up to date with the orders: the
    # next refresh rebuilds only from the earliest day an order changed since.
    demand_as_of = models.DateTimeField(null=True, blank=True, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "forecast settings"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(horizon_days__gte=7, horizon_days__lte=365),
                name="forecast_horizon_range",
            ),
            models.CheckConstraint(
                condition=models.Q(chunk_size__gte=1), name="forecast_chunk_size_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"Forecast settings ({self.horizon_days} d ahead)"

    @classmethod
    def current(cls) -> ForecastSettings:
        row, _ = cls.objects.get_or_create(pk=1)
        return row
