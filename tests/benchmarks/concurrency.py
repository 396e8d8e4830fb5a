"""Shared by the benchmarks: time N writer threads, each on its own database connection."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from django.db import connections
from django_tenants.utils import schema_context


def time_writers(
    schema: str, writers: int, warm: Callable[[int], object], work: Callable[[int], object]
) -> float:
    """Run `warm(n)` (opens the thread's connection), then `work(n)` in every thread from a
    common start; returns the wall seconds of the `work` phase. A failure in any thread is
    raised after all have stopped."""
    barrier = threading.Barrier(writers + 1)
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            with schema_context(schema):
                warm(n)
                barrier.wait()
                work(n)
        except BaseException as exc:  # noqa: BLE001 - reported below, never swallowed
            errors.append(exc)
            barrier.abort()
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"{len(errors)} of {writers} writer threads failed: {errors[0]!r}")
    return elapsed
