"""Fixtures for the forecasting engine tests: small slices of the real demand data.

The data sets live beside the repository in ../shared/data/forecast (see its README for
sources and licences) and are read in place, never copied into the repository. CI has
them checked out there; without them these tests fail and say where they looked.
The engine tests need no database.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = REPO_ROOT.parent / "shared" / "data" / "forecast"


def data_file(name: str) -> Path:
    path = DATA_DIR / name
    if not path.exists():
        pytest.fail(
            f"forecast test data missing: {path} not found. The engine tests read the real "
            f"demand data sets from ../shared/data/forecast beside the repository "
            f"({DATA_DIR})."
        )
    return path


@cache
def _wide(name: str) -> pd.DataFrame:
    long = pd.read_csv(data_file(name), dtype={"unique_id": str})
    return long.pivot(index="unique_id", columns="period", values="y").sort_index(axis=1)


@pytest.fixture(scope="session")
def carparts() -> pd.DataFrame:
    """Monthly car-part sales, one row per series (NaN = not recorded)."""
    return _wide("carparts_monthly.csv.gz")


@pytest.fixture(scope="session")
def jewelry() -> pd.DataFrame:
    """Weekly costume-jewelry sales, one row per SKU."""
    return _wide("jewelry_weekly.csv.gz")


@pytest.fixture(scope="session")
def aus_food_nsw() -> np.ndarray:
    """Monthly turnover of New South Wales food retailing (A3349398A): trending and
    strongly seasonal, 1982-04 .. 2018-12."""
    frame = pd.read_csv(data_file("aus_retail_monthly.csv.gz"))
    series = frame[frame["unique_id"] == "A3349398A"].sort_values("Month")
    return series["Turnover"].to_numpy(dtype=float)
