"""Carrier choice scored on the brand's own lanes. Pure Python, no Django.

For each rate of a shipment:

    score = w_price × price score + w_reliability × reliability + w_transit × transit score

- price score = cheapest price / this price (1 for the cheapest),
- transit score = fastest estimate / this estimate (0.5 when the carrier gives none),
- reliability mixes on-time rate (60 %), damage rate (20 %), cost variance between quote and
  invoice (10 %) and people's ratings (10 %). Each rate is Bayesian-shrunk: a lane with few
  deliveries for this carrier service leans on the carrier's overall record, which itself
  leans on a neutral prior when the carrier is new to the brand (pseudo-counts below).

"Do not use": on a lane where at least two carrier services each have ``min_history``
deliveries, those whose on-time rate is in the bottom 10 % of that group (at least the single
worst once there are three) and clearly worse than the lane's best (10 points) are marked and
are not chosen while anything else is available.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

# Neutral priors for a carrier nobody has history with, and their weight in pseudo-deliveries.
PRIOR_ON_TIME = 0.85
PRIOR_DAMAGE = 0.01
PRIOR_VARIANCE = 0.02
PRIOR_RATING = 0.6
CARRIER_PRIOR_STRENGTH = 10.0
LANE_PRIOR_STRENGTH = 8.0
DO_NOT_USE_GAP = 0.10
DO_NOT_USE_SHARE = 0.10


@dataclass(frozen=True)
class Weights:
    price: float = 0.50
    reliability: float = 0.35
    transit: float = 0.15

    def normalized(self) -> Weights:
        total = self.price + self.reliability + self.transit
        if total <= 0:
            return Weights()
        return Weights(self.price / total, self.reliability / total, self.transit / total)


@dataclass(frozen=True)
class Outcome:
    """One delivered shipment, as lane statistics see it."""

    carrier: str
    service: str
    lane: str
    on_time: bool | None
    damaged: bool = False
    quoted: Decimal | None = None
    invoiced: Decimal | None = None
    rating: int | None = None  # 1–5
    week: int = 0

    @property
    def key(self) -> str:
        return service_key(self.carrier, self.service)


@dataclass(frozen=True)
class Candidate:
    ref: str
    carrier: str
    service: str
    price: Decimal
    days: int | None = None

    @property
    def key(self) -> str:
        return service_key(self.carrier, self.service)


@dataclass
class Stats:
    deliveries: int = 0
    timed: int = 0
    on_time: int = 0
    damaged: int = 0
    variance_sum: float = 0.0
    variance_n: int = 0
    rating_sum: float = 0.0
    rating_n: int = 0
    weeks: set[int] = field(default_factory=set)

    def add(self, o: Outcome) -> None:
        self.deliveries += 1
        self.weeks.add(o.week)
        if o.on_time is not None:
            self.timed += 1
            self.on_time += int(o.on_time)
        self.damaged += int(o.damaged)
        if o.quoted is not None and o.invoiced is not None and o.quoted > 0:
            self.variance_sum += abs(float(o.invoiced - o.quoted)) / float(o.quoted)
            self.variance_n += 1
        if o.rating is not None:
            self.rating_sum += (min(max(o.rating, 1), 5) - 1) / 4
            self.rating_n += 1

    @property
    def on_time_rate(self) -> float | None:
        return self.on_time / self.timed if self.timed else None


@dataclass(frozen=True)
class Reliability:
    on_time: float
    damage: float
    variance: float
    rating: float
    lane_deliveries: int
    lane_on_time_raw: float | None

    @property
    def score(self) -> float:
        return (
            0.6 * self.on_time
            + 0.2 * (1 - min(1.0, self.damage * 10))
            + 0.1 * (1 - min(1.0, self.variance * 5))
            + 0.1 * self.rating
        )


@dataclass(frozen=True)
class Scored:
    candidate: Candidate
    price_score: float
    transit_score: float
    reliability: Reliability
    score: float
    do_not_use: bool

    def as_json(self) -> dict:
        c, r = self.candidate, self.reliability
        return {
            "ref": c.ref,
            "carrier": c.carrier,
            "service": c.service,
            "price": str(c.price),
            "days": c.days,
            "price_score": round(self.price_score, 4),
            "transit_score": round(self.transit_score, 4),
            "reliability": round(r.score, 4),
            "on_time": round(r.on_time, 4),
            "damage": round(r.damage, 4),
            "lane_deliveries": r.lane_deliveries,
            "lane_on_time": None if r.lane_on_time_raw is None else round(r.lane_on_time_raw, 4),
            "score": round(self.score, 4),
            "do_not_use": self.do_not_use,
        }


@dataclass(frozen=True)
class Choice:
    chosen: Scored | None
    table: list[Scored]
    reason: str


def service_key(carrier: str, service: str) -> str:
    return f"{carrier} {service}".strip()


def lane_of(origin_postal: str, dest_state: str, dest_postal: str = "") -> str:
    """ "900→CA": origin 3-digit postal prefix to destination state (or postal prefix when
    the state is unknown)."""
    origin = (origin_postal or "").strip()[:3] or "?"
    dest = (dest_state or "").strip().upper() or (dest_postal or "").strip()[:3] or "?"
    return f"{origin}→{dest}"


@dataclass
class History:
    """Outcomes grouped for scoring: per (lane, service key) and per carrier overall."""

    lane: dict[tuple[str, str], Stats] = field(default_factory=lambda: defaultdict(Stats))
    carrier: dict[str, Stats] = field(default_factory=lambda: defaultdict(Stats))

    @classmethod
    def of(cls, outcomes: Iterable[Outcome]) -> History:
        h = cls()
        for o in outcomes:
            h.add(o)
        return h

    def add(self, o: Outcome) -> None:
        self.lane[(o.lane, o.key)].add(o)
        self.carrier[o.carrier].add(o)


def _shrink(successes: float, n: float, prior: float, strength: float) -> float:
    return (successes + strength * prior) / (n + strength)


def reliability(history: History, lane: str, carrier: str, service: str) -> Reliability:
    overall = history.carrier.get(carrier) or Stats()
    here = history.lane.get((lane, service_key(carrier, service))) or Stats()
    s = CARRIER_PRIOR_STRENGTH
    carrier_on_time = _shrink(overall.on_time, overall.timed, PRIOR_ON_TIME, s)
    carrier_damage = _shrink(overall.damaged, overall.deliveries, PRIOR_DAMAGE, s)
    carrier_variance = _shrink(overall.variance_sum, overall.variance_n, PRIOR_VARIANCE, s)
    carrier_rating = _shrink(overall.rating_sum, overall.rating_n, PRIOR_RATING, s)
    k = LANE_PRIOR_STRENGTH
    return Reliability(
        on_time=_shrink(here.on_time, here.timed, carrier_on_time, k),
        damage=_shrink(here.damaged, here.deliveries, carrier_damage, k),
        variance=_shrink(here.variance_sum, here.variance_n, carrier_variance, k),
        rating=_shrink(here.rating_sum, here.rating_n, carrier_rating, k),
        lane_deliveries=here.deliveries,
        lane_on_time_raw=here.on_time_rate,
    )


def do_not_use(history: History, lane: str, min_history: int) -> set[str]:
    """Service keys to avoid on `lane` (see the module docstring)."""
    rated = sorted(
        (stats.on_time_rate, key)
        for (lane_key, key), stats in history.lane.items()
        if lane_key == lane and stats.timed >= max(1, min_history)
    )
    if len(rated) < 2:
        return set()
    count = max(1 if len(rated) >= 3 else 0, math.floor(len(rated) * DO_NOT_USE_SHARE))
    best = rated[-1][0]
    if count == 0:
        # Two services only: the worse is avoided only when it is far worse.
        worst_rate, worst_key = rated[0]
        return {worst_key} if best - worst_rate >= 2 * DO_NOT_USE_GAP else set()
    return {key for rate, key in rated[:count] if best - rate >= DO_NOT_USE_GAP}


def _pct(value: float) -> str:
    return f"{round(value * 100):.0f} %"


def score(
    candidates: Sequence[Candidate],
    history: History,
    lane: str,
    weights: Weights = Weights(),
    *,
    min_history: int = 20,
    weeks: int | None = None,
) -> Choice:
    """Score every candidate and choose one, with a sentence saying why."""
    if not candidates:
        return Choice(None, [], "No carrier quoted this shipment.")
    w = weights.normalized()
    cheapest = min(c.price for c in candidates)
    days = [c.days for c in candidates if c.days]
    fastest = min(days) if days else None
    avoid = do_not_use(history, lane, min_history)
    table = []
    for c in candidates:
        price_score = float(cheapest / c.price) if c.price > 0 else 1.0
        transit = (fastest / c.days) if (c.days and fastest) else 0.5
        rel = reliability(history, lane, c.carrier, c.service)
        total = w.price * price_score + w.reliability * rel.score + w.transit * transit
        table.append(Scored(c, price_score, transit, rel, total, c.key in avoid))
    # Stable: best score first, then cheaper, then the reference, so ties never flap.
    table.sort(key=lambda s: (s.do_not_use, -s.score, s.candidate.price, s.candidate.ref))
    chosen = table[0]
    return Choice(chosen, table, explain(chosen, table, lane, cheapest, weeks))


def explain(
    chosen: Scored, table: Sequence[Scored], lane: str, cheapest: Decimal, weeks: int | None
) -> str:
    c, rel = chosen.candidate, chosen.reliability
    over = f" over {weeks} weeks" if weeks else ""
    history = (
        f"{_pct(rel.lane_on_time_raw)} on time on {lane}{over} ({rel.lane_deliveries} deliveries)"
        if rel.lane_on_time_raw is not None
        else f"no delivery history on {lane} yet (expected {_pct(rel.on_time)} on time)"
    )
    cheapest_row = min(table, key=lambda s: (s.candidate.price, s.candidate.ref))
    if c.price <= cheapest:
        sentence = f"{c.carrier} {c.service}: the cheapest at {c.price}, {history}"
    else:
        dearer = (c.price - cheapest) / cheapest * 100
        sentence = f"{c.carrier} {c.service}: {dearer:.0f} % dearer than the cheapest but {history}"
        other = cheapest_row.reliability
        if other.lane_on_time_raw is not None:
            sentence += (
                f" vs {_pct(other.lane_on_time_raw)} for {cheapest_row.candidate.carrier} "
                f"{cheapest_row.candidate.service}"
            )
        if cheapest_row.do_not_use:
            sentence += ", which is marked do-not-use on this lane"
    if chosen.do_not_use:
        sentence += "; every carrier that quoted is marked do-not-use here"
    return sentence + f" (score {chosen.score:.2f})."


def weights_from(values: Mapping[str, object] | None, default: Weights) -> Weights:
    """Weights from a {"price", "reliability", "transit"} mapping, falling back per key."""
    if not values:
        return default
    return Weights(
        float(values.get("price", default.price)),  # type: ignore[arg-type]
        float(values.get("reliability", default.reliability)),  # type: ignore[arg-type]
        float(values.get("transit", default.transit)),  # type: ignore[arg-type]
    )
