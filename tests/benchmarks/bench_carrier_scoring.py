"""Carrier choice scored on lane history vs "always the cheapest". Prints figures; asserts
nothing.

    .venv/bin/python tests/benchmarks/bench_carrier_scoring.py [--smoke] [--seed N]
    (also run by scripts/bench.sh)

A seeded ground truth: 24 lanes (origin postal prefix → destination state) and four
carrier services with their own price level and transit estimate. Each service has an
on-time probability per lane; the cheapest one (ValuePost Saver) is late on about a third
of the lanes (55 % on time there, 93 % elsewhere), ValuePost Ground is steady at 90 %,
Reliant Ground 97 %, Swift 2-Day 95 %. Orders are replayed week by week: each week the
scorer sees the delivered outcomes of the last 12 weeks (the brand's default window),
chooses a service for each order with shipping.scoring (default weights 50/35/15,
do-not-use after 20 deliveries), and the outcome drawn from the ground truth feeds the
history. The baseline always takes the cheapest rate and learns nothing.

Printed per policy: orders, cost per order, on-time rate; then the differences. Pure
Python (no database): shipping.scoring is Django-free.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "platform"), str(ROOT)]

from shipping import scoring  # noqa: E402  (path set above)

# (carrier, service, price factor, estimated days)
SERVICES = (
    ("ValuePost", "Saver", Decimal("1.00"), 5),
    ("ValuePost", "Ground", Decimal("1.12"), 4),
    ("Reliant", "Ground", Decimal("1.25"), 3),
    ("Swift", "2-Day", Decimal("1.80"), 2),
)
BASE_ON_TIME = {
    ("ValuePost", "Saver"): 0.93,
    ("ValuePost", "Ground"): 0.90,
    ("Reliant", "Ground"): 0.97,
    ("Swift", "2-Day"): 0.95,
}
LATE_LANE_ON_TIME = 0.55
WINDOW_WEEKS = 12
MIN_HISTORY = 20


@dataclass(frozen=True)
class Truth:
    lanes: tuple[str, ...]
    on_time: dict[tuple[str, str, str], float]  # (lane, carrier, service) → probability


def ground_truth(seed: int) -> Truth:
    rng = random.Random(seed)
    origins = ("900", "606", "100")
    states = ("CA", "NY", "TX", "FL", "IL", "WA", "GA", "AZ")
    lanes = tuple(f"{o}→{s}" for o in origins for s in states)
    late_lanes = set(rng.sample(lanes, k=len(lanes) // 3))
    on_time = {}
    for lane in lanes:
        for carrier, service, _, _ in SERVICES:
            p = BASE_ON_TIME[(carrier, service)]
            if (carrier, service) == ("ValuePost", "Saver") and lane in late_lanes:
                p = LATE_LANE_ON_TIME
            on_time[(lane, carrier, service)] = p
    return Truth(lanes, on_time)


@dataclass
class Result:
    orders: int = 0
    cost: Decimal = Decimal(0)
    on_time: int = 0

    @property
    def cost_per_order(self) -> Decimal:
        return (self.cost / self.orders).quantize(Decimal("0.01")) if self.orders else Decimal(0)

    @property
    def on_time_rate(self) -> float:
        return self.on_time / self.orders if self.orders else 0.0


Policy = Callable[[list[scoring.Candidate], scoring.History, str], scoring.Candidate]


def scored_policy(
    candidates: list[scoring.Candidate], history: scoring.History, lane: str
) -> scoring.Candidate:
    choice = scoring.score(
        candidates, history, lane, scoring.Weights(), min_history=MIN_HISTORY, weeks=WINDOW_WEEKS
    )
    assert choice.chosen is not None
    return choice.chosen.candidate


def cheapest_policy(
    candidates: list[scoring.Candidate], history: scoring.History, lane: str
) -> scoring.Candidate:
    return min(candidates, key=lambda c: (c.price, c.ref))


def replay(
    policy: Policy, *, seed: int, weeks: int, orders_per_week: int, truth: Truth | None = None
) -> Result:
    """Replay `weeks` × `orders_per_week` orders through `policy`; outcomes drawn from the
    ground truth feed the history the policy sees from the next week on."""
    truth = truth or ground_truth(seed)
    rng = random.Random(seed * 7919 + 1)
    outcomes: list[scoring.Outcome] = []
    result = Result()
    for week in range(weeks):
        recent = [o for o in outcomes if week - o.week <= WINDOW_WEEKS]
        history = scoring.History.of(recent)
        this_week = []
        for n in range(orders_per_week):
            lane = rng.choice(truth.lanes)
            base = Decimal(rng.randint(600, 1400)) / 100
            candidates = [
                scoring.Candidate(
                    f"{n}:{i}", carrier, service, (base * factor).quantize(Decimal("0.01")), days
                )
                for i, (carrier, service, factor, days) in enumerate(SERVICES)
            ]
            chosen = policy(candidates, history, lane)
            on_time = rng.random() < truth.on_time[(lane, chosen.carrier, chosen.service)]
            result.orders += 1
            result.cost += chosen.price
            result.on_time += int(on_time)
            this_week.append(
                scoring.Outcome(
                    chosen.carrier,
                    chosen.service,
                    lane,
                    on_time,
                    quoted=chosen.price,
                    invoiced=chosen.price,
                    week=week,
                )
            )
        outcomes.extend(this_week)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="small run (CI)")
    parser.add_argument("--seed", type=int, default=20261123)
    args, _ = parser.parse_known_args(argv)
    weeks, per_week = (12, 100) if args.smoke else (52, 1000)
    truth = ground_truth(args.seed)
    print(
        f"carrier scoring: {weeks} weeks × {per_week} orders, {len(truth.lanes)} lanes, "
        f"seed {args.seed}"
    )
    results = {}
    for name, policy in (("lane-scored", scored_policy), ("always cheapest", cheapest_policy)):
        started = time.perf_counter()
        results[name] = replay(
            policy, seed=args.seed, weeks=weeks, orders_per_week=per_week, truth=truth
        )
        elapsed = time.perf_counter() - started
        r = results[name]
        print(
            f"  {name:16s} orders {r.orders:7d}  cost/order {r.cost_per_order:>7}  "
            f"on time {r.on_time_rate * 100:5.1f} %  ({elapsed:.1f} s)"
        )
    scored, cheap = results["lane-scored"], results["always cheapest"]
    extra = (scored.cost_per_order - cheap.cost_per_order) / cheap.cost_per_order * 100
    print(
        f"  scored vs cheapest: on time {(scored.on_time_rate - cheap.on_time_rate) * 100:+.1f} "
        f"points, cost per order {extra:+.1f} %, late shipments "
        f"{(1 - scored.on_time_rate) / max(1e-9, 1 - cheap.on_time_rate):.2f}× the baseline's"
    )


if __name__ == "__main__":
    main()
