"""Single-threaded BLAS for the statsmodels-based fits.

ETS and ARIMA fits multiply small matrices; OpenBLAS spreading each product over both
cores only adds contention. Measured on the 2-core machine while other processes ran,
a seasonal auto_arima search took 26 s with the default threads and 6.4 s with one; and
worker processes already occupy the cores. A `ThreadpoolController` is built once per
process (≈ 10 ms, it inspects the loaded libraries); entering its limit then costs
≈ 10 µs, against ≈ 3 ms for a fresh `threadpool_limits` each time.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

from threadpoolctl import ThreadpoolController


@cache
def _controller() -> ThreadpoolController:
    return ThreadpoolController()


@contextmanager
def single_threaded_blas(enabled: bool = True) -> Iterator[None]:
    """Run the block with BLAS limited to one thread (no-op when not `enabled`)."""
    if not enabled:
        yield
        return
    with _controller().limit(limits=1, user_api="blas"):
        yield
