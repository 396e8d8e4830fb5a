"""Forecast combination: the equal-weight mean of a few fitted methods.

Averaging the forecasts of methods that each capture part of a series' behaviour is one
of the most reliable gains in forecasting practice (the M3/M4 results; Petropoulos &
Svetunkov 2020 for intermittent demand): errors of different models partly cancel, and
the combination is never much worse than its best member. The engine offers it as one
more backtest candidate (see `core.py` for which members), so it is chosen only when its
rolling-origin score beats every single method.

Intervals: the members' bounds are averaged level by level (quantile averaging). That
keeps each bound between the members' bounds and, unlike averaging variances, needs no
assumption about the members' error distributions (Gaussian for ETS / ARIMA, count
distributions for the Croston family).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self

import numpy as np

from .base import Forecast, ForecastMethod


@dataclass(eq=False, kw_only=True)
class Combination(ForecastMethod):
    """Mean of `members` (unfitted method templates, at least one, distinct names)."""

    name = "combo"

    members: tuple[ForecastMethod, ...] = ()

    fitted: tuple[ForecastMethod, ...] = field(default=(), init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.members:
            raise ValueError("a combination needs at least one member method")
        names = [member.name for member in self.members]
        if len(set(names)) != len(names):
            raise ValueError(f"combination members must be distinct, got {names}")

    @property
    def member_names(self) -> tuple[str, ...]:
        return tuple(member.name for member in self.members)

    def _fit(self, y: np.ndarray, warm: Mapping[str, Any]) -> None:
        stored = warm.get("members") or {}
        self.fitted = tuple(
            member.clone().fit(y, m=self.m, freq=self.freq, warm=stored.get(member.name))
            for member in self.members
        )

    def _forecast(self, h: int, levels: tuple[float, ...]) -> Forecast:
        parts = [member.forecast(h, levels) for member in self.fitted]
        return Forecast(
            np.mean([part.mean for part in parts], axis=0),
            {level: np.mean([part.lower[level] for part in parts], axis=0) for level in levels},
            {level: np.mean([part.upper[level] for part in parts], axis=0) for level in levels},
        )

    def structure(self, params: Mapping[str, Any]) -> dict[str, Any]:
        stored = params.get("members") or {}
        return {
            "members": {
                member.name: member.structure(stored.get(member.name) or {})
                for member in self.members
            }
        }

    def clone(self) -> Self:
        return dataclasses.replace(self, members=tuple(m.clone() for m in self.members))

    def params(self) -> dict[str, Any]:
        return {"members": {member.name: member.params() for member in self.fitted}}
