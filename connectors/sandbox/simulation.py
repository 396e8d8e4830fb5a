"""Deterministic simulated order traffic for the sandbox channel.

Orders are a pure function of (seed, hour): each UTC hour draws a Poisson number of orders
whose rate follows a weekly pattern (weekends busier) and a daily curve (quiet at night,
peaking in the evening), and picks SKUs with weights where a few "trending" SKUs ramp up over
a 28-day cycle. The same hour always yields the same orders with the same ids, so a pull can
be repeated, resumed or reconciled with no stored state, and any two processes agree.

About 2 % of orders are cancelled 2–6 hours after being placed, so pulls also see updates.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import random
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from connectors.types import (
    Address,
    Customer,
    Money,
    Order,
    OrderLine,
    OrderStatus,
    OrderTotals,
    OrderType,
    ServiceLevel,
)

#: Relative order volume Monday..Sunday (mean 1.0).
WEEKLY = (0.95, 0.88, 0.9, 0.97, 1.05, 1.15, 1.1)
#: Relative order volume by UTC hour (mean 1.0): quiet overnight, evening peak.
DAILY = (
    0.35, 0.25, 0.2, 0.2, 0.25, 0.4, 0.6, 0.8, 1.0, 1.1, 1.15, 1.2,
    1.25, 1.25, 1.2, 1.2, 1.25, 1.35, 1.5, 1.6, 1.55, 1.35, 1.0, 0.65,
)  # fmt: skip
TREND_CYCLE_DAYS = 28
MAX_CANCEL_DELAY = timedelta(hours=6)

CITIES = (
    ("Brooklyn", "NY", "11201"),
    ("Austin", "TX", "73301"),
    ("Portland", "OR", "97201"),
    ("Denver", "CO", "80202"),
    ("Chicago", "IL", "60601"),
    ("Atlanta", "GA", "30301"),
    ("San Diego", "CA", "92101"),
    ("Seattle", "WA", "98101"),
)
FIRST = ("Ada", "Grace", "Linus", "Margaret", "Alan", "Barbara", "Ken", "Radia", "Frances")
LAST = ("Lovelace", "Hopper", "Torvalds", "Hamilton", "Turing", "Liskov", "Allen", "Perlman")


def stable_int(*parts: object, bits: int = 64) -> int:
    """A hash that is the same in every process (``hash()`` is salted per process)."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[: bits // 8], "big")


def _poisson(rng: random.Random, lam: float) -> int:
    # Knuth: exact and fast for the small hourly rates simulated here.
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    threshold, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= threshold:
            return k
        k += 1


@dataclasses.dataclass(frozen=True)
class SimulationConfig:
    seed: int
    skus: tuple[str, ...]
    trending_skus: frozenset[str]
    orders_per_day: float
    trend_multiplier: float
    currency: str
    cancel_rate: float = 0.02
    channel: str = "sandbox_channel"


@dataclasses.dataclass(frozen=True)
class _SimOrder:
    external_id: str
    placed_at: datetime
    cancelled_at: datetime | None
    hour: int
    index: int

    def event_times(self) -> list[datetime]:
        return [self.placed_at] + ([self.cancelled_at] if self.cancelled_at else [])


class Simulation:
    """Orders for one sandbox connection. See the module docstring."""

    def __init__(self, config: SimulationConfig) -> None:
        if not config.skus:
            raise ValueError("the sandbox needs at least one SKU")
        self.config = config

    def price(self, sku: str) -> Money:
        cents = 1200 + stable_int(self.config.seed, "price", sku) % 7800
        cents = cents - cents % 100 + 99  # retail-looking .99 prices
        return Money(Decimal(cents) / 100, self.config.currency)

    def weight(self, sku: str, when: datetime) -> float:
        if sku not in self.config.trending_skus:
            return 1.0
        day = int(when.timestamp() // 86400)
        ramp = (day % TREND_CYCLE_DAYS) / (TREND_CYCLE_DAYS - 1)
        return 1.0 + (self.config.trend_multiplier - 1.0) * ramp

    def rate(self, when: datetime) -> float:
        """Expected orders per hour at ``when``."""
        return self.config.orders_per_day / 24 * WEEKLY[when.weekday()] * DAILY[when.hour]

    def _hour(self, hour: int) -> list[_SimOrder]:
        start = datetime.fromtimestamp(hour * 3600, tz=UTC)
        rng = random.Random(stable_int(self.config.seed, "orders", hour))
        count = _poisson(rng, self.rate(start))
        offsets = sorted(rng.uniform(0, 3600) for _ in range(count))
        orders = []
        for index, offset in enumerate(offsets):
            placed = start + timedelta(seconds=round(offset, 3))
            cancelled = None
            if rng.random() < self.config.cancel_rate:
                cancelled = placed + timedelta(seconds=rng.uniform(7200, 21600))
            orders.append(_SimOrder(f"SBX-{hour}-{index}", placed, cancelled, hour, index))
        return orders

    def _build(self, sim: _SimOrder, as_of: datetime) -> Order:
        cfg = self.config
        rng = random.Random(stable_int(cfg.seed, "order", sim.external_id))
        weights = [self.weight(sku, sim.placed_at) for sku in cfg.skus]
        roll = rng.random()
        order_type = OrderType.DTC
        if roll < 0.03:
            order_type = OrderType.WHOLESALE
        elif roll < 0.09:
            order_type = OrderType.SUBSCRIPTION
        n_lines = 1 + (rng.random() < 0.35) + (rng.random() < 0.1)
        chosen: list[str] = []
        for _ in range(n_lines):
            sku = rng.choices(cfg.skus, weights=weights)[0]
            if sku not in chosen:
                chosen.append(sku)
        lines = []
        for k, sku in enumerate(chosen):
            quantity = (
                rng.randint(6, 24)
                if order_type is OrderType.WHOLESALE
                else 1 + (rng.random() < 0.2)
            )
            lines.append(
                OrderLine(
                    external_id=f"{sim.external_id}-L{k}",
                    sku=sku,
                    quantity=quantity,
                    unit_price=self.price(sku),
                    title=sku.replace("-", " ").title(),
                    listing_id=f"SBX-L-{sku}",
                )
            )
        service = rng.choices(
            (ServiceLevel.STANDARD, ServiceLevel.EXPEDITED, ServiceLevel.OVERNIGHT),
            weights=(80, 15, 5),
        )[0]
        subtotal = sum(
            (line.unit_price * line.quantity for line in lines), Money.zero(cfg.currency)
        )
        shipping = Money(
            {"standard": "5.00", "expedited": "12.00", "overnight": "25.00"}[service.value],
            cfg.currency,
        )
        if subtotal.amount >= 75 and service is ServiceLevel.STANDARD:
            shipping = Money.zero(cfg.currency)
        tax = Money((subtotal.amount * Decimal("0.08")).quantize(Decimal("0.01")), cfg.currency)
        total = subtotal + shipping + tax
        first, last = rng.choice(FIRST), rng.choice(LAST)
        city, region, postal = rng.choice(CITIES)
        email = f"{first}.{last}.{stable_int(sim.external_id) % 10000}@example.com".lower()
        cancelled = sim.cancelled_at is not None and sim.cancelled_at <= as_of
        return Order(
            external_id=sim.external_id,
            channel=cfg.channel,
            number=f"SBX{sim.hour % 100000:05d}{sim.index:02d}",
            placed_at=sim.placed_at,
            updated_at=sim.cancelled_at if cancelled and sim.cancelled_at else sim.placed_at,
            status=OrderStatus.CANCELLED if cancelled else OrderStatus.OPEN,
            lines=tuple(lines),
            totals=OrderTotals(subtotal, shipping, tax, Money.zero(cfg.currency), total),
            ship_to=Address(
                name=f"{first} {last}",
                line1=f"{rng.randint(1, 2400)} {rng.choice(('Oak', 'Pine', 'Main', 'Elm'))} St",
                city=city,
                region=region,
                postal_code=postal,
                country="US",
                email=email,
            ),
            customer=Customer(
                external_id=f"SBX-C-{stable_int(cfg.seed, email) % 10**8}",
                email=email,
                name=f"{first} {last}",
            ),
            order_type=order_type,
            service_level=service,
            flags=frozenset({"sandbox"}),
            raw={"simulated": True, "hour": sim.hour, "index": sim.index},
        )

    def changes_between(
        self,
        start: datetime,
        end: datetime,
        *,
        pass_start: datetime | None = None,
        as_of: datetime | None = None,
    ) -> list[Order]:
        """Orders whose first change after ``pass_start`` falls in ``(start, end]``, as of
        ``as_of``; oldest change first.

        A pass over ``(pass_start, as_of]`` split into windows thus returns every changed
        order exactly once, in its final state (defaults: the window is the whole pass).
        """
        pass_start = pass_start or start
        as_of = as_of or end
        first_hour = math.floor((pass_start - MAX_CANCEL_DELAY).timestamp() / 3600)
        first_hour = max(first_hour, math.floor((start - MAX_CANCEL_DELAY).timestamp() / 3600))
        last_hour = math.floor(end.timestamp() / 3600)
        found = []
        for hour in range(first_hour, last_hour + 1):
            for sim in self._hour(hour):
                changes = [t for t in sim.event_times() if pass_start < t <= as_of]
                if changes and start < changes[0] <= end:
                    found.append(self._build(sim, as_of))
        found.sort(key=lambda o: (o.updated_at, o.external_id))
        return found

    def placed_between(self, start: datetime, end: datetime) -> Iterator[Order]:
        """Orders placed in ``[start, end)``, as of ``end`` (cancelled ones say so), in
        the order they were placed: the channel's sales history before a connection's
        backfill starts (the demo brand's imported history)."""
        for hour in range(math.floor(start.timestamp() / 3600), math.ceil(end.timestamp() / 3600)):
            for sim in self._hour(hour):
                if start <= sim.placed_at < end:
                    yield self._build(sim, end)

    def order(self, external_id: str, as_of: datetime) -> Order | None:
        """One order by id, as of ``as_of`` (``None`` if the id was never generated)."""
        try:
            _, hour_s, index_s = external_id.split("-")
            hour, index = int(hour_s), int(index_s)
        except ValueError:
            return None
        orders = self._hour(hour)
        if not 0 <= index < len(orders) or orders[index].placed_at > as_of:
            return None
        return self._build(orders[index], as_of)


def demo_skus() -> Sequence[str]:
    """The SKUs the sandbox sells when a connection names none."""
    return tuple(
        f"KEEL-{item}-{size}"
        for item in ("TEE-BLK", "TEE-WHT", "HOOD-NVY", "CAP-OLV")
        for size in ("S", "M", "L")
    )
