"""Backtest every SKU's demand history of a brand and print per-method accuracy.

    manage.py forecast_backtest --brand acme                      # all SKUs with history
    manage.py forecast_backtest --brand acme --horizon 28 --jobs 2 --limit 500
    manage.py forecast_backtest --brand acme --methods chosen,seasonal_naive,croston_tsb

The last `--horizon` days of each SKU's daily history (all channels and warehouses, stock-out
days as missing) are held out; the engine's own per-SKU choice ("chosen") and each single
method forecast them (forecasting.engine.report.backtest_report). The table shows mean MASE
and RMSSE per method over the same SKUs, how long each took per SKU and the throughput, so
a brand sees on its own data whether the per-SKU choice pays off. Plain auto_arima costs
seconds per SKU: it is left out unless named in --methods. Read-only: nothing is stored.
"""

from __future__ import annotations

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django_tenants.utils import schema_context

from tenants.models import Brand

DEFAULT_METHODS = ("chosen", "seasonal_naive", "naive", "croston_tsb", "adida", "ets")


class Command(BaseCommand):
    help = "Backtest every SKU's demand history and print per-method MASE / RMSSE."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--brand", required=True, help="Brand slug or schema name")
        parser.add_argument("--horizon", type=int, default=28, help="Days held out (default 28)")
        parser.add_argument("--jobs", type=int, default=2, help="Processes (default 2)")
        parser.add_argument("--limit", type=int, default=None, help="At most N SKUs (by id)")
        parser.add_argument(
            "--methods",
            default=",".join(DEFAULT_METHODS),
            help="Comma-separated report methods (add auto_arima for the slow reference)",
        )
        parser.add_argument(
            "--by-class", action="store_true", help="Also print mean RMSSE per demand class"
        )

    def handle(self, *args, **options) -> None:
        from forecasting.engine.report import REPORT_METHODS, backtest_report

        brand = Brand.objects.filter(slug=options["brand"]).first() or (
            Brand.objects.filter(schema_name=options["brand"]).first()
        )
        if brand is None:
            raise CommandError(f"No brand {options['brand']!r}.")
        methods = [m.strip() for m in options["methods"].split(",") if m.strip()]
        unknown = [m for m in methods if m not in REPORT_METHODS]
        if unknown:
            raise CommandError(f"Unknown methods {unknown}; known: {', '.join(REPORT_METHODS)}")
        horizon = options["horizon"]
        if horizon < 1:
            raise CommandError("--horizon must be at least 1.")

        with schema_context(brand.schema_name):
            series = self._series(options["limit"])
        if not series:
            self.stdout.write(f"{brand.slug}: no SKU has demand history yet; nothing to test.")
            return
        self.stdout.write(
            f"{brand.slug}: backtesting {len(series)} SKUs, last {horizon} days held out, "
            f"{options['jobs']} process(es)…"
        )
        report = backtest_report(
            series, h=horizon, freq="D", n_jobs=options["jobs"], methods=methods
        )
        self.stdout.write(report.as_table())
        if options["by_class"]:
            for cls, scores in report.by_class().items():
                line = ", ".join(f"{name} {value:.3f}" for name, value in scores.items())
                self.stdout.write(f"  {cls}: {line}")

    def _series(self, limit: int | None) -> dict:
        from forecasting import services
        from forecasting.engine import SeriesInput

        config = services.settings()
        today = services.brand_today()
        ids = services.forecastable_sku_ids()
        if limit:
            ids = ids[:limit]
        histories = services.history_arrays(
            ids,
            start=today - timedelta(days=config.history_days),
            end=today - timedelta(days=1),
        )
        out = {}
        for sku_id, (units, mask) in histories.items():
            sold = (units > 0).nonzero()[0]
            if len(sold):
                out[sku_id] = SeriesInput(units[sold[0] :], oos=mask[sold[0] :])
        return out
