"""Replenishment arithmetic and the per-SKU daily state, as pure functions (no Django).

Everything here takes plain numbers so the services can feed it from the database and the
property tests can feed it from hypothesis.

Inventory policy: a periodic-review (R, s, S) policy.

- Safety stock covers demand variability *and* lead-time variability at a service level
  (cycle service level, the probability of not stocking out during a replenishment cycle):
  ``SS = z(service level) × sqrt(LT × σ_d² + d̄² × σ_LT²)`` with z from the standard normal.
- Reorder point ``ROP = d̄ × LT + SS``; order-up-to ``S = ROP + d̄ × review period``.
- Inventory position = available + on order − backorders. At or below the reorder point we
  order ``S − position`` rounded up to the case pack and to at least the MOQ (the smallest
  multiple of the case pack that is ≥ MOQ); above it we order nothing.

State of a SKU × warehouse, most urgent first:

1. ``escalate`` — a person must look: no supplier, no forecast, lead-time data that
   contradicts the quoted lead time, or stock projected to run out before the next receipt
   can arrive (ordering now cannot fix it: expedite, transfer or accept the gap).
2. ``accelerate`` — the 7-day velocity exceeds the 28-day average by more than the brand's
   accelerate threshold (default 15 %).
3. ``brake`` — the 7-day velocity is below the 28-day average by more than the brake
   threshold (default 30 %). Braking is deliberately less sensitive than accelerating: a
   false brake risks a stock-out, a false accelerate only costs some holding.
4. ``healthy`` — none of the above.

The 28-day window includes the last 7 days (the usual "7 vs 28 day run rate"); days on
which the SKU was out of stock (``None``) are left out of both averages, because a day with
nothing to sell says nothing about demand.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

HEALTHY = "healthy"
ACCELERATE = "accelerate"
BRAKE = "brake"
ESCALATE = "escalate"
STATES = (ACCELERATE, BRAKE, ESCALATE, HEALTHY)

DEFAULT_ACCELERATE_THRESHOLD = 0.15
DEFAULT_BRAKE_THRESHOLD = 0.30
# Without a measured history the quoted lead time is all we have; suppliers' quotes are
# optimistic more often than not, so we assume a standard deviation of a quarter of the
# quote (at least one day) rather than pretending the quote is exact.
QUOTED_LEAD_TIME_CV = 0.25
# Measured lead times "contradict" the quote when at least this many receipts say so and
# the measured mean is off by more than half the quote and more than a week.
CONTRADICTION_MIN_SAMPLES = 3
CONTRADICTION_RELATIVE = 0.5
CONTRADICTION_MIN_DAYS = 7.0
# Fewer known (in-stock) days than these and the velocities are not trusted.
MIN_KNOWN_DAYS_7 = 4
MIN_KNOWN_DAYS_28 = 14


def z_score(service_level: float) -> float:
    """The standard normal quantile for a cycle service level in (0, 1)."""
    if not 0 < service_level < 1:
        raise ValueError("service level must be strictly between 0 and 1")
    return NormalDist().inv_cdf(service_level)


def safety_stock(
    *,
    daily_mean: float,
    daily_std: float,
    lead_time_mean: float,
    lead_time_std: float,
    service_level: float,
) -> float:
    """Units held against demand and lead-time variability; never negative.

    A service level at or below 50 % has z ≤ 0: we hold no safety stock rather than a
    negative one (which would lower the reorder point below expected lead-time demand).
    """
    for name, value in (
        ("daily_mean", daily_mean),
        ("daily_std", daily_std),
        ("lead_time_mean", lead_time_mean),
        ("lead_time_std", lead_time_std),
    ):
        if value < 0 or math.isnan(value):
            raise ValueError(f"{name} must be a non-negative number")
    z = max(0.0, z_score(service_level))
    variance = lead_time_mean * daily_std**2 + daily_mean**2 * lead_time_std**2
    return z * math.sqrt(variance)


def reorder_point(*, daily_mean: float, lead_time_mean: float, safety: float) -> float:
    return daily_mean * lead_time_mean + safety


def order_up_to(*, reorder_point: float, daily_mean: float, review_period_days: float) -> float:
    return reorder_point + daily_mean * review_period_days


def minimum_order(moq: int, case_pack: int) -> int:
    """The smallest quantity a supplier accepts: a multiple of the case pack that is ≥ MOQ."""
    if moq < 1 or case_pack < 1:
        raise ValueError("MOQ and case pack must be at least 1")
    return math.ceil(moq / case_pack) * case_pack


def order_quantity(
    *,
    order_up_to: float,
    reorder_point: float,
    available: int,
    on_order: int,
    backorders: int = 0,
    moq: int = 1,
    case_pack: int = 1,
    force: bool = False,
) -> int:
    """Units to order now: zero above the reorder point, else up to S in whole cases, ≥ MOQ.

    `force` orders up to S even above the reorder point (an accelerating SKU pulls its next
    order forward instead of waiting for the position to reach the reorder point).
    """
    position = available + on_order - backorders
    if position > reorder_point and not force:
        return 0
    need = order_up_to - position
    if need <= 0:
        return 0
    cases = math.ceil(need / case_pack - 1e-9)
    return max(cases * case_pack, minimum_order(moq, case_pack))


@dataclass(frozen=True)
class Numbers:
    """Everything the quantity was computed from, kept with the recommendation."""

    daily_mean: float
    daily_std: float
    lead_time_mean: float
    lead_time_std: float
    service_level: float
    review_period_days: int
    safety_stock: float
    reorder_point: float
    order_up_to: float
    available: int
    on_order: int
    backorders: int
    quantity: int


def compute(
    *,
    daily_mean: float,
    daily_std: float,
    lead_time_mean: float,
    lead_time_std: float,
    service_level: float,
    review_period_days: int,
    available: int,
    on_order: int,
    backorders: int = 0,
    moq: int = 1,
    case_pack: int = 1,
    force: bool = False,
) -> Numbers:
    """Safety stock, reorder point, order-up-to and the quantity, in one go."""
    ss = safety_stock(
        daily_mean=daily_mean,
        daily_std=daily_std,
        lead_time_mean=lead_time_mean,
        lead_time_std=lead_time_std,
        service_level=service_level,
    )
    rop = reorder_point(daily_mean=daily_mean, lead_time_mean=lead_time_mean, safety=ss)
    out = order_up_to(
        reorder_point=rop, daily_mean=daily_mean, review_period_days=review_period_days
    )
    qty = order_quantity(
        order_up_to=out,
        reorder_point=rop,
        available=available,
        on_order=on_order,
        backorders=backorders,
        moq=moq,
        case_pack=case_pack,
        force=force,
    )
    return Numbers(
        daily_mean=daily_mean,
        daily_std=daily_std,
        lead_time_mean=lead_time_mean,
        lead_time_std=lead_time_std,
        service_level=service_level,
        review_period_days=review_period_days,
        safety_stock=ss,
        reorder_point=rop,
        order_up_to=out,
        available=available,
        on_order=on_order,
        backorders=backorders,
        quantity=qty,
    )


def quoted_lead_time(quoted_days: float) -> tuple[float, float]:
    """Mean and assumed standard deviation when only the supplier's quote is known."""
    return float(quoted_days), max(1.0, QUOTED_LEAD_TIME_CV * quoted_days)


def lead_time_contradicts(*, measured_mean: float, samples: int, quoted_days: float) -> bool:
    """Whether enough receipts disagree with the quote that a person should fix the data."""
    if samples < CONTRADICTION_MIN_SAMPLES:
        return False
    gap = abs(measured_mean - quoted_days)
    return gap > max(CONTRADICTION_MIN_DAYS, CONTRADICTION_RELATIVE * quoted_days)


def velocity(days: Sequence[float | None], *, min_known: int) -> float | None:
    """Mean units per in-stock day, or None with too few in-stock days to trust."""
    known = [d for d in days if d is not None]
    if len(known) < min_known:
        return None
    return sum(known) / len(known)


def velocities(days: Sequence[float | None]) -> tuple[float | None, float | None]:
    """The 7-day and 28-day velocities from the last 28 days (oldest first)."""
    last_28 = list(days[-28:])
    return (
        velocity(last_28[-7:], min_known=MIN_KNOWN_DAYS_7),
        velocity(last_28, min_known=MIN_KNOWN_DAYS_28),
    )


@dataclass(frozen=True)
class Decision:
    state: str
    reason: str


def days_of_cover(available: float, daily_mean: float) -> float:
    return math.inf if daily_mean <= 0 else max(0.0, available) / daily_mean


def classify(
    *,
    velocity_7: float | None,
    velocity_28: float | None,
    has_supplier: bool = True,
    has_forecast: bool = True,
    lead_time_contradiction: str = "",
    available: float = 0,
    daily_mean: float = 0.0,
    days_to_next_receipt: float | None = None,
    accelerate_threshold: float = DEFAULT_ACCELERATE_THRESHOLD,
    brake_threshold: float = DEFAULT_BRAKE_THRESHOLD,
) -> Decision:
    """The state of one SKU × warehouse today and why, in words a buyer understands.

    `days_to_next_receipt` is the soonest stock could arrive: the next open PO's date, or
    the lead time when nothing is on order (None: unknown, no projection).
    `lead_time_contradiction` is a sentence describing the conflict, empty when none.
    """
    problems = []
    if not has_supplier:
        problems.append("no supplier is set up for this SKU")
    if not has_forecast:
        problems.append("there is no forecast for this SKU yet")
    if lead_time_contradiction:
        problems.append(lead_time_contradiction)
    cover = days_of_cover(available, daily_mean)
    if days_to_next_receipt is not None and cover < days_to_next_receipt:
        problems.append(
            f"stock lasts about {cover:.0f} days at {daily_mean:.1f}/day but the next "
            f"receipt cannot arrive for {days_to_next_receipt:.0f} days"
        )
    if problems:
        return Decision(ESCALATE, _sentence(problems))

    if velocity_7 is None or velocity_28 is None:
        return Decision(HEALTHY, "Too few in-stock days recently to judge a trend.")
    if velocity_28 <= 0:
        if velocity_7 > 0:
            return Decision(
                ACCELERATE,
                f"Selling {velocity_7:.1f}/day this week after nothing in the last 28 days.",
            )
        return Decision(HEALTHY, "No sales in the last 28 days.")
    change = velocity_7 / velocity_28 - 1
    if change > accelerate_threshold:
        return Decision(
            ACCELERATE,
            f"Last 7 days sold {velocity_7:.1f}/day, {change:+.0%} against the 28-day "
            f"average of {velocity_28:.1f}/day (threshold +{accelerate_threshold:.0%}).",
        )
    if change < -brake_threshold:
        return Decision(
            BRAKE,
            f"Last 7 days sold {velocity_7:.1f}/day, {change:+.0%} against the 28-day "
            f"average of {velocity_28:.1f}/day (threshold −{brake_threshold:.0%}).",
        )
    return Decision(
        HEALTHY,
        f"Last 7 days sold {velocity_7:.1f}/day, {change:+.0%} against the 28-day "
        f"average of {velocity_28:.1f}/day: within thresholds.",
    )


def _sentence(parts: list[str]) -> str:
    text = "; ".join(parts)
    return text[0].upper() + text[1:] + "."


@dataclass(frozen=True)
class WarehousePosition:
    warehouse_id: int
    available: int
    on_order: int
    reorder_point: float
    order_up_to: float


@dataclass(frozen=True)
class Transfer:
    from_warehouse_id: int
    to_warehouse_id: int
    quantity: int


def transfers(positions: Sequence[WarehousePosition], *, min_quantity: int = 1) -> list[Transfer]:
    """Moves from long warehouses to short ones of the same SKU.

    Short: position (available + on order) at or below its reorder point; it wants up to
    its order-up-to level. Long: available stock above its own order-up-to level; only that
    excess may leave, so a transfer never makes the source short. Largest need is served
    first from the largest excess; moves smaller than `min_quantity` are not worth a truck.
    """
    needs = []
    for p in positions:
        position = p.available + p.on_order
        if position <= p.reorder_point:
            need = math.ceil(p.order_up_to - position - 1e-9)
            if need > 0:
                needs.append([need, p.warehouse_id])
    excess = []
    for p in positions:
        spare = math.floor(p.available - p.order_up_to + 1e-9)
        if spare > 0 and p.available + p.on_order > p.reorder_point:
            excess.append([spare, p.warehouse_id])
    needs.sort(key=lambda x: (-x[0], x[1]))
    excess.sort(key=lambda x: (-x[0], x[1]))
    out = []
    for need in needs:
        for spare in excess:
            if need[0] <= 0:
                break
            qty = min(need[0], spare[0])
            if qty < min_quantity or spare[1] == need[1]:
                continue
            out.append(Transfer(spare[1], need[1], qty))
            need[0] -= qty
            spare[0] -= qty
    return out
