"""Supplier lead-time and delivery statistics, from receipts.

One sample per PO line that has received anything: lead time = the date of the receipt
that completed the line (or of its last receipt, when it never completed) − the date the
PO was sent, in days (brand-local dates). On time: completed on or before `expected_on`.
In full: received ≥ ordered. OTIF: both. Fill rate: received / ordered (capped at 1 per
line, summed over lines). The trailing window picks samples by that receipt date.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from zoneinfo import ZoneInfo

from purchasing.models import PurchaseOrderLine, ReceiptLine


@dataclass(frozen=True)
class LeadTimeStats:
    supplier_id: int
    sku_id: int
    samples: int
    mean_days: float
    std_days: float
    on_time_rate: float
    fill_rate: float
    otif_rate: float

    @property
    def variance_days(self) -> float:
        return self.std_days**2


@dataclass(frozen=True)
class Sample:
    supplier_id: int
    sku_id: int
    days: int
    on_time: bool
    in_full: bool
    ordered: int
    received: int


def _tz():
    from approvals.services import current_brand

    return ZoneInfo(current_brand().timezone)


def _today(tz) -> date:
    from django.utils import timezone

    return timezone.now().astimezone(tz).date()


def samples(
    *,
    window_days: int = 365,
    supplier_ids: Iterable[int] | None = None,
    sku_ids: Iterable[int] | None = None,
    today: date | None = None,
) -> list[Sample]:
    tz = _tz()
    today = today or _today(tz)
    since = today - timedelta(days=window_days)
    lines = PurchaseOrderLine.objects.filter(
        received_quantity__gt=0, purchase_order__sent_at__isnull=False
    )
    if supplier_ids is not None:
        lines = lines.filter(purchase_order__supplier_id__in=list(supplier_ids))
    if sku_ids is not None:
        lines = lines.filter(sku_id__in=list(sku_ids))
    lines = {
        row[0]: row
        for row in lines.values_list(
            "pk",
            "purchase_order__supplier_id",
            "sku_id",
            "quantity",
            "purchase_order__sent_at",
            "purchase_order__expected_on",
        )
    }
    receipts: dict[int, list[tuple]] = defaultdict(list)
    for line_id, received_at, quantity in (
        ReceiptLine.objects.filter(line_id__in=list(lines), quantity__gt=0)
        .order_by("receipt__received_at", "id")
        .values_list("line_id", "receipt__received_at", "quantity")
    ):
        receipts[line_id].append((received_at, quantity))
    out = []
    for line_id, (_, supplier_id, sku_id, ordered, sent_at, expected_on) in lines.items():
        arrivals = receipts.get(line_id)
        if not arrivals:
            continue
        total, finished = 0, None
        for received_at, quantity in arrivals:
            total += quantity
            if total >= ordered:
                finished = received_at
                break
        finished = finished or arrivals[-1][0]
        received = sum(q for _, q in arrivals)
        finished_on = finished.astimezone(tz).date()
        if finished_on < since or finished_on > today:
            continue
        out.append(
            Sample(
                supplier_id=supplier_id,
                sku_id=sku_id,
                days=(finished_on - sent_at.astimezone(tz).date()).days,
                on_time=finished_on <= expected_on,
                in_full=received >= ordered,
                ordered=ordered,
                received=received,
            )
        )
    return out


def summarize(supplier_id: int, sku_id: int, group: list[Sample]) -> LeadTimeStats:
    n = len(group)
    if not n:
        return LeadTimeStats(supplier_id, sku_id, 0, 0.0, 0.0, 0.0, 0.0, 0.0)
    mean = sum(s.days for s in group) / n
    # Sample standard deviation (n − 1): these are draws from the supplier's process.
    std = math.sqrt(sum((s.days - mean) ** 2 for s in group) / (n - 1)) if n > 1 else 0.0
    ordered = sum(s.ordered for s in group)
    filled = sum(min(s.received, s.ordered) for s in group)
    return LeadTimeStats(
        supplier_id=supplier_id,
        sku_id=sku_id,
        samples=n,
        mean_days=mean,
        std_days=std,
        on_time_rate=sum(s.on_time for s in group) / n,
        fill_rate=filled / ordered if ordered else 0.0,
        otif_rate=sum(s.on_time and s.in_full for s in group) / n,
    )


def lead_time_stats(
    *,
    window_days: int = 365,
    supplier_ids: Iterable[int] | None = None,
    sku_ids: Iterable[int] | None = None,
    today: date | None = None,
) -> dict[tuple[int, int], LeadTimeStats]:
    """(supplier_id, sku_id) → statistics over the trailing `window_days`."""
    groups: dict[tuple[int, int], list[Sample]] = defaultdict(list)
    for sample in samples(
        window_days=window_days, supplier_ids=supplier_ids, sku_ids=sku_ids, today=today
    ):
        groups[(sample.supplier_id, sample.sku_id)].append(sample)
    return {key: summarize(*key, group) for key, group in groups.items()}


def supplier_summary(
    supplier_id: int, *, window_days: int = 365, today: date | None = None
) -> LeadTimeStats:
    """All of one supplier's SKUs together (sku_id 0): the scorecard's headline."""
    group = samples(window_days=window_days, supplier_ids=[supplier_id], today=today)
    return summarize(supplier_id, 0, group)


def scorecards(*, window_days: int = 365, today: date | None = None) -> dict[int, LeadTimeStats]:
    """supplier_id → headline statistics, for suppliers with receipts in the window."""
    groups: dict[int, list[Sample]] = defaultdict(list)
    for sample in samples(window_days=window_days, today=today):
        groups[sample.supplier_id].append(sample)
    return {pk: summarize(pk, 0, group) for pk, group in groups.items()}
