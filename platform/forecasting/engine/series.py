"""Input preparation shared by every method: one float array, missing periods as NaN.

A period is *missing* when its value is NaN or when the out-of-stock mask marks it: a day
without stock says nothing about demand, so it must not be read as zero. Every method
receives the prepared array and decides how to live with the gaps (see each method's
docstring).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

# Season length per frequency. Business days count as days: the weekly cycle is what
# matters for demand, and the platform buckets by calendar day anyway.
SEASON_LENGTHS: dict[str, int] = {"H": 24, "D": 7, "W": 52, "M": 12, "Q": 4, "Y": 1}

_FREQ_ALIASES: dict[str, str] = {"B": "D", "A": "Y"}


def normalize_freq(freq: str | None) -> str | None:
    """Map a pandas-style alias ("MS", "ME", "W-SUN", "QS-JAN", "h") to H/D/W/M/Q/Y.

    Unknown aliases are returned upper-cased so callers can still pass `m` explicitly.
    """
    if freq is None:
        return None
    code = freq.strip().upper()
    if not code:
        return None
    head = code.split("-")[0].lstrip("0123456789")[:1]
    head = _FREQ_ALIASES.get(head, head)
    return head if head in SEASON_LENGTHS else code


def season_length(freq: str | None, m: int | None = None) -> int:
    """The season length to use: `m` when given, else the frequency's default, else 1."""
    if m is not None:
        if m < 1:
            raise ValueError(f"season length m must be >= 1, got {m}")
        return int(m)
    code = normalize_freq(freq)
    return SEASON_LENGTHS.get(code or "", 1)


def infer_freq(y: Any) -> str | None:
    """The frequency of a pandas Series with a PeriodIndex or regular DatetimeIndex."""
    if not isinstance(y, pd.Series):
        return None
    index = y.index
    if isinstance(index, pd.PeriodIndex):
        return normalize_freq(index.freqstr)
    if isinstance(index, pd.DatetimeIndex):
        freq = index.freqstr or (pd.infer_freq(index) if len(index) >= 3 else None)
        return normalize_freq(freq)
    return None


def prepare(y: Any, oos: Any = None) -> np.ndarray:
    """A 1-D float64 copy of `y` with NaN wherever a value is missing or `oos` is True.

    Raises ValueError on a wrong shape, a mask of another length, negative or infinite
    values: demand history is units sold (returns are kept apart), so a negative value
    is an upstream bug that would silently bias every method.
    """
    if isinstance(y, pd.Series):
        # to_numpy with na_value also handles nullable Int64/Float64 columns (pd.NA).
        values = y.to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
    else:
        values = np.array(y, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"a demand series must be 1-D, got shape {values.shape}")
    if np.isinf(values).any():
        raise ValueError("demand series contains infinite values")
    if (values < 0).any():
        raise ValueError("demand series contains negative values")
    if oos is not None:
        if isinstance(oos, pd.Series):
            mask = oos.to_numpy(dtype=bool, na_value=False)
        else:
            mask = np.asarray(oos, dtype=bool)
        if mask.shape != values.shape:
            raise ValueError(f"out-of-stock mask has shape {mask.shape}, series has {values.shape}")
        values[mask] = np.nan
    return values


def since_first_sale(y: np.ndarray) -> np.ndarray:
    """`y` from its first period with demand on (unchanged when nothing ever sold).

    Periods before the first sale are pre-launch or not-yet-listed time, not demand
    history: kept, they would open Croston's first interval with hundreds of days and
    dilute ADI and the MASE scale (M5 scales from the first sale for the same reason).
    """
    sold = np.flatnonzero(y > 0)
    return y[sold[0] :] if len(sold) else y


def seasonal_fill(y: np.ndarray, m: int) -> np.ndarray:
    """Fill gaps with the same phase of the nearest earlier cycle (later cycle for leading
    gaps), then with the mean of everything observed.

    Only used where a method needs a complete array (the ARIMA order search, the first ETS
    pass); the model fit itself then treats the gaps as missing. Raises ValueError when
    nothing at all is observed.
    """
    if not np.isnan(y).any():
        return y.copy()
    if np.isnan(y).all():
        raise ValueError("series has no observed values")
    m = max(1, min(m, len(y)))
    pad = (-len(y)) % m
    grid = pd.DataFrame(np.concatenate([y, np.full(pad, np.nan)]).reshape(-1, m))
    filled = grid.ffill().bfill().to_numpy().ravel()[: len(y)]
    # A phase never observed (e.g. a stock-out every Sunday) has nothing to copy.
    return np.where(np.isnan(filled), np.nanmean(y), filled)


def phase_shares(y: np.ndarray, period: int, window: int) -> np.ndarray:
    """Share of each phase (t % period) in a cycle's total, from the last `window` periods.

    Phase means are taken over observed periods only, so a stock-out does not lower its
    weekday's share. Falls back to equal shares when the window holds no demand.
    """
    n = len(y)
    start = max(0, n - window)
    recent = y[start:]
    phases = np.arange(start, n) % period
    means = np.zeros(period)
    for phase in range(period):
        values = recent[(phases == phase) & ~np.isnan(recent)]
        means[phase] = values.mean() if len(values) else np.nan
    if np.isnan(means).all() or np.nansum(means) <= 0:
        return np.full(period, 1.0 / period)
    means = np.where(np.isnan(means), np.nanmean(means), means)
    return means / means.sum()


def aggregate_cycles(
    y: np.ndarray, period: int, shares: np.ndarray, start: int = 0
) -> tuple[np.ndarray, int]:
    """Sum consecutive blocks of `period` values, blocks aligned to end at the last value.

    `start` is the position of y[0] in the full history, so phases (t % period) match
    the shares. Returns (totals, offset) where offset is the number of leading values
    dropped so the blocks are complete. A block with missing periods is scaled up by the
    shares of the periods that were observed (a stock-out on a Saturday does not halve
    the week); a block with nothing observed is NaN.
    """
    offset = len(y) % period
    blocks = y[offset:].reshape(-1, period)
    phases = (np.arange(start + offset, start + len(y)) % period).reshape(-1, period)
    seen = ~np.isnan(blocks)
    seen_share = np.where(seen, shares[phases], 0.0).sum(axis=1)
    sums = np.where(seen, blocks, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        totals = np.where(seen_share > 0, sums / seen_share, np.nan)
    complete = seen.all(axis=1)
    totals[complete] = sums[complete]
    return totals, offset
