"""Demand forecasting engine: plain numpy/pandas/statsmodels/pmdarima, no Django.

The forecasting app (models, services, Celery tasks) calls this package; nothing here
touches the database, so it runs the same in a web request, a worker and a benchmark.

    from forecasting.engine import forecast_series, forecast_many, classify

    result = forecast_series(daily_units, h=28, freq="D", oos=out_of_stock_mask)
    result.method, result.mean, result.intervals[95.0], result.scores["seasonal_naive"]
    tomorrow = forecast_series(longer_history, h=28, freq="D", warm=result.warm_state())
    result.model.update(new_days)  # or append to the fitted model itself
    batch = forecast_many({sku_id: units, ...}, h=28, freq="D", progress=on_progress)

Pipeline per series (core.py): prepare (NaN and out-of-stock periods become missing) →
Syntetos–Boylan class (classify.py) → rolling-origin backtest of the class's candidates
scored by RMSSE (backtest.py) → the mean of the candidates within 50 % of the best score
("combo") unless one method beats it clearly (paired t-test over the windows) → final fit
on the whole history → point forecast and 80 % / 95 % intervals. `report.backtest_report`
compares that choice with single methods on held-out data
(tests/benchmarks/bench_forecast.py prints it for every data set).

Decisions (the details sit in each module's docstring):
- Missing is not zero. Stock-out periods are NaN for every method: Croston/SBA/TSB drop
  them, auto_arima's Kalman filter skips them, ETS fills them with its own one-step
  predictions, the seasonal naive repeats the last observed value of the phase, the
  backtest does not score them and ADI / CV² leave them out.
- Candidates by class: smooth/erratic → seasonal naive, naive, ETS, auto_arima, ADIDA;
  intermittent/lumpy → TSB, ADIDA (daily series also ETS and auto_arima, which carry the
  weekday pattern); new → TSB, ADIDA, launch profile (when given); dead → zeros. The
  seasonal naive is backtested for every class (the reference score) but
  competes only for smooth/erratic series with m <= 12; it wins ties. Croston and SBA
  stay available (`EngineConfig.candidates`) but are not defaults: they never decay when
  a part stops selling, and on the car-parts hold-out they were 60 % worse than TSB.
- Selection by RMSSE, not MASE: the forecast sizes stock, which needs the mean; MAE
  rewards forecasting the median, i.e. zero for intermittent demand.
- auto_arima speed: bounded stepwise search once per series per full refit (at the oldest
  backtest origin), the order refitted everywhere else; daily series go through weekly
  totals and a day-of-week split instead of an m=7 seasonal search; seasonal ARIMA only
  for m <= 12. Warm runs refit the stored order; `model.update()` appends observations.
- Intervals: Gaussian for seasonal naive, ETS and ARIMA; Poisson / negative binomial
  quantiles (dispersion from in-sample one-step errors) for the Croston family, ADIDA and
  the launch profile; a combination averages its members' bounds level by level. All
  forecasts and bounds are clipped at zero.
- Periods before an item's first sale are dropped (pre-launch time is not demand).
- BLAS runs single-threaded inside the engine (threads.py): 3–4× faster fits here.
- Determinism: no method draws random numbers; batch results come back in input order.
"""

from __future__ import annotations

from .backtest import MethodScore, backtest_method, cutoffs, mase, naive_scale, rmsse
from .batch import BatchResult, ForecastFailure, SeriesInput, forecast_many
from .classify import ClassifyConfig, DemandClass, DemandStats, classify, demand_stats
from .core import (
    BASELINE,
    COMBINATION,
    DEFAULT_CANDIDATES,
    EngineConfig,
    ForecastResult,
    choose,
    forecast_series,
    make_method,
)
from .methods import (
    ADIDA,
    ETS,
    METHODS,
    SBA,
    TSB,
    AutoArima,
    Combination,
    Croston,
    Forecast,
    ForecastMethod,
    Naive,
    ProfileScaled,
    SeasonalNaive,
    launch_profile,
)
from .series import SEASON_LENGTHS, prepare, season_length

__all__ = [
    "ADIDA",
    "BASELINE",
    "COMBINATION",
    "DEFAULT_CANDIDATES",
    "ETS",
    "METHODS",
    "SBA",
    "SEASON_LENGTHS",
    "TSB",
    "AutoArima",
    "Combination",
    "BatchResult",
    "ClassifyConfig",
    "Croston",
    "DemandClass",
    "DemandStats",
    "EngineConfig",
    "Forecast",
    "ForecastFailure",
    "ForecastMethod",
    "ForecastResult",
    "Naive",
    "MethodScore",
    "ProfileScaled",
    "SeasonalNaive",
    "SeriesInput",
    "backtest_method",
    "choose",
    "classify",
    "cutoffs",
    "demand_stats",
    "forecast_many",
    "forecast_series",
    "launch_profile",
    "make_method",
    "mase",
    "naive_scale",
    "prepare",
    "rmsse",
    "season_length",
]
