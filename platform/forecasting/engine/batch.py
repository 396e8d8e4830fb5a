"""Forecast many series in parallel processes, reporting progress as chunks finish.

Series are sent to joblib's process pool (loky) in chunks, so the per-task pickling and
scheduling overhead is paid per chunk rather than per series: a Croston fit takes
≈ 0.1 ms, far less than shipping one task. Results stream back as chunks complete and
`progress(done, total)` is called in the calling process, where a Celery task can update
its state. Each series runs with single-threaded BLAS (see `threads.py`): two processes
on two cores already use the machine.

Results come back keyed as the input, in input order, whatever the completion order.
A series whose pipeline raises (bad input) lands in `failures` instead of stopping the
batch. Fitted model objects are dropped unless `keep_models=True`: they hold copies of
the data and would dominate the traffic between processes.

Celery: inside a prefork (daemonic) worker process joblib cannot start processes and
runs the loop in-process with a warning (joblib issue #1208); `BatchResult.n_jobs` reports
the number of processes actually used. Either consume the forecast queue with a
`--pool threads` / `--pool solo` worker, or fan chunks out as separate tasks with
`n_jobs=1`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from joblib import Parallel, delayed, effective_n_jobs, parallel_config

from .core import EngineConfig, ForecastResult, forecast_series

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class SeriesInput:
    """One series with its optional extras: stock-out mask, launch profile, warm state."""

    y: Any
    oos: Any = None
    profile: Sequence[float] | np.ndarray | None = None
    warm: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class ForecastFailure:
    """A series the pipeline could not forecast, with the reason."""

    key: Hashable
    error: str


@dataclass
class BatchResult:
    """Outcome of `forecast_many`."""

    results: dict[Hashable, ForecastResult] = field(default_factory=dict)
    failures: dict[Hashable, ForecastFailure] = field(default_factory=dict)
    seconds: float = 0.0
    n_jobs: int = 1  # processes actually used (see the module docstring on Celery)


def _as_input(value: Any) -> SeriesInput:
    return value if isinstance(value, SeriesInput) else SeriesInput(value)


def _run_chunk(
    chunk: list[tuple[Hashable, SeriesInput]],
    options: dict[str, Any],
    config: EngineConfig,
    keep_models: bool,
) -> list[tuple[Hashable, ForecastResult | ForecastFailure]]:
    out: list[tuple[Hashable, ForecastResult | ForecastFailure]] = []
    for key, item in chunk:
        try:
            result = forecast_series(
                item.y,
                oos=item.oos,
                profile=item.profile,
                warm=item.warm,
                config=config,
                key=key,
                **options,
            )
        except Exception as exc:  # reported per series, see the module docstring
            out.append((key, ForecastFailure(key, f"{type(exc).__name__}: {exc}")))
            continue
        if not keep_models:
            result.model = None
        out.append((key, result))
    return out


def _chunks(
    items: list[tuple[Hashable, SeriesInput]], size: int
) -> Iterable[list[tuple[Hashable, SeriesInput]]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def forecast_many(
    series: Mapping[Hashable, Any],
    *,
    h: int,
    m: int | None = None,
    freq: str | None = None,
    config: EngineConfig | None = None,
    n_jobs: int = 2,
    chunk_size: int | None = None,
    full_refit: bool = False,
    keep_models: bool = False,
    progress: ProgressCallback | None = None,
) -> BatchResult:
    """Run `forecast_series` on every series, in `n_jobs` processes (1 = in this process).

    series: key → array / pandas Series / `SeriesInput` (for a mask, profile or warm state).
    chunk_size: series per task; None = about eight tasks per process, at most 25 series:
        a smooth series costs 100× an intermittent one, and small chunks keep both
        processes busy to the end and the progress updates frequent.
    progress: called as progress(done, total) at the start and after every chunk.
    """
    config = config or EngineConfig()
    started = time.perf_counter()
    items = [(key, _as_input(value)) for key, value in series.items()]
    total = len(items)
    with parallel_config(backend="loky"):
        n_jobs = effective_n_jobs(max(1, int(n_jobs)))
    if chunk_size is None:
        chunk_size = max(1, min(25, math.ceil(total / (n_jobs * 8)))) if total else 1
    options = {"h": h, "m": m, "freq": freq, "full_refit": full_refit}
    if progress:
        progress(0, total)

    collected: dict[Hashable, ForecastResult | ForecastFailure] = {}
    chunks = list(_chunks(items, chunk_size))
    if n_jobs == 1 or len(chunks) <= 1:
        outputs: Iterable[list[Any]] = (
            _run_chunk(chunk, options, config, keep_models) for chunk in chunks
        )
    else:
        outputs = Parallel(n_jobs=n_jobs, backend="loky", return_as="generator_unordered")(
            delayed(_run_chunk)(chunk, options, config, keep_models) for chunk in chunks
        )
    for output in outputs:
        collected.update(output)
        if progress:
            progress(len(collected), total)

    batch = BatchResult(seconds=0.0, n_jobs=n_jobs)
    for key, _ in items:
        outcome = collected[key]
        if isinstance(outcome, ForecastFailure):
            batch.failures[key] = outcome
        else:
            batch.results[key] = outcome
    batch.seconds = time.perf_counter() - started
    return batch
