"""What the two LTL fakes (:mod:`tests.fakes.ltl_broker`, :mod:`tests.fakes.ltl_direct`) share:
a deterministic tariff, business-day arithmetic, the shipment timeline driven by the fake's
clock, a sliding-window throttle and a minimal (but real) PDF writer for POD documents.

The tariff is a simplified LTL rating model: linehaul per hundredweight (CWT) growing with
lane distance and freight class, a minimum charge, a fuel surcharge on linehaul, flat
accessorial fees, a non-stackable surcharge and a hazmat fee. Distance is read from the
first three digits of US ZIP codes (the sectional centre), so every price is reproducible.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
MIN_CHARGE = Decimal("95.00")
FUEL_RATE = Decimal("0.27")
HAZMAT_FEE = Decimal("45.00")
NON_STACKABLE = Decimal("1.10")

#: Flat fees per accessorial, keyed by the canonical names (fakes map their own codes).
ACCESSORIAL_FEES: dict[str, Decimal] = {
    "liftgate_pickup": Decimal("75.00"),
    "liftgate_delivery": Decimal("75.00"),
    "residential_pickup": Decimal("95.00"),
    "residential_delivery": Decimal("95.00"),
    "appointment_delivery": Decimal("35.00"),
    "inside_delivery": Decimal("110.00"),
    "limited_access_delivery": Decimal("85.00"),
}

#: Pickups happen in this UTC window on the pickup day (10:00–17:00 US Eastern, summer).
PICKUP_OPENS = time(14, 0)
PICKUP_CLOSES = time(21, 0)


def zip3(postal_code: str) -> int | None:
    digits = (postal_code or "").strip()[:3]
    return int(digits) if len(digits) == 3 and digits.isdigit() else None


def lane_miles(origin_zip: str, destination_zip: str) -> int:
    """A made-up but monotonic distance between two US ZIP codes."""
    a, b = zip3(origin_zip), zip3(destination_zip)
    if a is None or b is None:
        raise ValueError("not a US ZIP code")
    return 40 + abs(a - b) * 3


def transit_days(miles: int, adjustment: int = 0) -> int:
    return max(1, math.ceil(miles / 500) + adjustment)


@dataclasses.dataclass(frozen=True)
class Line:
    """One rated line: ``pieces`` pieces of ``weight_lb`` each, in ``freight_class``."""

    pieces: int
    weight_lb: Decimal
    freight_class: str
    stackable: bool = True
    hazmat: bool = False


def rate(
    *,
    miles: int,
    lines: list[Line],
    accessorials: list[str],
    factor: Decimal = Decimal(1),
) -> tuple[Decimal, dict[str, Decimal]]:
    """Total and charge breakdown (rounded to cents) for a shipment on one carrier.

    ``factor`` scales the whole price: a carrier's tariff level, or the knob that makes one
    source "wildly different".
    """
    per_cwt = Decimal("9.50") + Decimal(miles) * Decimal("0.021")
    linehaul = Decimal(0)
    for line in lines:
        class_factor = max(Decimal("0.5"), Decimal(line.freight_class) / 100)
        amount = line.weight_lb * line.pieces / 100 * per_cwt * class_factor
        if not line.stackable:
            amount *= NON_STACKABLE
        linehaul += amount
    linehaul = max(MIN_CHARGE, linehaul * factor).quantize(CENT, ROUND_HALF_UP)
    charges = {"linehaul": linehaul, "fuel": (linehaul * FUEL_RATE).quantize(CENT, ROUND_HALF_UP)}
    for name in sorted(set(accessorials)):
        charges[name] = (ACCESSORIAL_FEES[name] * factor).quantize(CENT, ROUND_HALF_UP)
    if any(line.hazmat for line in lines):
        charges["hazmat"] = (HAZMAT_FEE * factor).quantize(CENT, ROUND_HALF_UP)
    return sum(charges.values(), Decimal(0)), charges


def is_business_day(day: date) -> bool:
    return day.weekday() < 5


def add_business_days(day: date, days: int) -> date:
    while days > 0:
        day += timedelta(days=1)
        if is_business_day(day):
            days -= 1
    return day


def pickup_window(pickup_date: date, now: datetime) -> tuple[datetime, datetime]:
    """The window on the requested day, or the next business day once today's dispatch
    cutoff (an hour before the window opens) has passed."""
    day = pickup_date
    while True:
        opens = datetime.combine(day, PICKUP_OPENS, tzinfo=UTC)
        if is_business_day(day) and now <= opens - timedelta(hours=1):
            return opens, datetime.combine(day, PICKUP_CLOSES, tzinfo=UTC)
        day += timedelta(days=1)


@dataclasses.dataclass
class Milestone:
    code: str  # canonical: booked, picked_up, in_transit, out_for_delivery, delivered, exception
    at: datetime
    description: str
    location: str


def timeline(
    *,
    booked_at: datetime,
    window_start: datetime,
    transit: int,
    origin: str,
    destination: str,
    delay_days: int = 0,
    exception: tuple[datetime, str] | None = None,
) -> list[Milestone]:
    """Every milestone of a shipment, past and future; the fake shows those ≤ its clock."""
    picked = window_start + timedelta(hours=2)
    delivery_day = add_business_days(window_start.date(), transit + delay_days)
    events = [
        Milestone("booked", booked_at, "Shipment booked, pickup scheduled", origin),
        Milestone("picked_up", picked, "Picked up by carrier", origin),
        Milestone(
            "in_transit",
            datetime.combine(window_start.date(), time(23, 30), tzinfo=UTC),
            "Departed origin terminal",
            origin,
        ),
        Milestone(
            "out_for_delivery",
            datetime.combine(delivery_day, time(12, 0), tzinfo=UTC),
            "Out for delivery",
            destination,
        ),
        Milestone(
            "delivered",
            datetime.combine(delivery_day, time(17, 30), tzinfo=UTC),
            "Delivered, signed by receiver",
            destination,
        ),
    ]
    if exception is not None:
        events.append(Milestone("exception", exception[0], exception[1], ""))
    return sorted(events, key=lambda m: m.at)


def estimated_delivery(window_start: datetime, transit: int, delay_days: int = 0) -> date:
    return add_business_days(window_start.date(), transit + delay_days)


class SlidingWindow:
    """The vendor's rate limit: at most ``limit`` requests in any ``window`` seconds."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._admitted: collections.deque[float] = collections.deque()

    def admit(self, now: float) -> float | None:
        """``None`` if the request is admitted, else seconds until it would be."""
        while self._admitted and self._admitted[0] <= now - self.window:
            self._admitted.popleft()
        if len(self._admitted) >= self.limit:
            return self._admitted[0] + self.window - now
        self._admitted.append(now)
        return None

    def remaining(self) -> int:
        return max(0, self.limit - len(self._admitted))


def _pdf_text(value: str) -> str:
    return value.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def tiny_pdf(lines: list[str]) -> bytes:
    """A valid one-page PDF (Helvetica text), with a correct cross-reference table."""
    text = " T* ".join(f"({_pdf_text(line)}) Tj" for line in lines)
    stream = f"BT /F1 12 Tf 14 TL 72 720 Td {text} ET".encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def pod_pdf(*, carrier: str, bol_number: str, pro_number: str, delivered_at: datetime) -> bytes:
    return tiny_pdf(
        [
            "Proof of Delivery",
            f"Carrier: {carrier}",
            f"BOL: {bol_number}",
            f"PRO: {pro_number}",
            f"Delivered: {delivered_at.isoformat()}",
            "Received in good condition. Signed: J. Receiver",
        ]
    )
