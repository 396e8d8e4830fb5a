"""Stock services: the only code that changes balances, movements and reservations.

Every public function here runs in one transaction and goes through `_apply`, which
1. makes sure the balance rows exist (one INSERT … ON CONFLICT DO NOTHING, keys sorted),
2. locks them with SELECT … FOR UPDATE in one fixed order (sku, warehouse, status), so
   two operations touching the same rows in opposite orders queue instead of deadlocking,
3. checks the results (nothing negative, reservations within sellable stock) and raises
   StockError before writing anything,
4. writes the balances, the ledger movements, the available-to-promise events (outbox)
   and one activity-log entry.
The database constraints on StockBalance back the Python checks up.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from accounts.models import User
from approvals import services as approvals
from approvals.models import ApprovalRequest, RequestState
from approvals.registry import Facts
from audit.context import current_actor
from audit.services import record
from catalog.models import SKU, BundleComponent
from inventory.models import (
    AdjustmentState,
    CountLine,
    CountStatus,
    CycleCount,
    MovementKind,
    ReasonCode,
    Reservation,
    ReservationKind,
    ReservationStatus,
    StockAdjustmentRequest,
    StockBalance,
    StockEvent,
    StockMovement,
    StockStatus,
    Transfer,
    TransferLine,
    TransferStatus,
    Warehouse,
)

SELLABLE = StockStatus.SELLABLE
Key = tuple[int, int, str]  # (sku_id, warehouse_id, status)


class StockError(ValidationError):
    """A stock operation that would break an invariant. Nothing was written."""

    def __init__(self, message: str, code: str, **params):
        super().__init__(message, code=code, params=params)
        self.details = params


class InsufficientStock(StockError):
    def __init__(self, sku: str, warehouse: str, status: str, available: int, requested: int):
        super().__init__(
            f"Insufficient stock of {sku} at {warehouse} ({status}): {available} available, "
            f"{requested} requested.",
            code="insufficient_stock",
            sku=sku,
            warehouse=warehouse,
            status=status,
            available=available,
            requested=requested,
        )


@dataclass(frozen=True)
class Change:
    """A signed change to one balance row; `kind` names the movement it records."""

    sku_id: int
    warehouse_id: int
    status: str
    quantity: int = 0
    reserved: int = 0
    kind: str = ""

    @property
    def key(self) -> Key:
        return (self.sku_id, self.warehouse_id, self.status)


@dataclass
class Operation:
    operation_id: uuid.UUID
    movements: list[StockMovement] = field(default_factory=list)
    events: list[StockEvent] = field(default_factory=list)


@dataclass(frozen=True)
class Reference:
    type: str = ""
    id: str = ""


def _positive(quantity: int, what: str = "quantity") -> int:
    if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity <= 0:
        raise StockError(f"The {what} must be a whole number above zero.", "invalid_quantity")
    return quantity


def _status(value: str) -> str:
    if value not in StockStatus.values:
        raise StockError(f"Unknown stock status {value!r}.", "invalid_status")
    return value


def atp(quantity: int, reserved: int, safety_buffer: int) -> int:
    """Available to promise from a sellable row."""
    return max(quantity - reserved - safety_buffer, 0)


def _lock(keys: Iterable[Key]) -> dict[Key, StockBalance]:
    keys = sorted(set(keys))
    StockBalance.objects.bulk_create(
        [StockBalance(sku_id=s, warehouse_id=w, status=st) for s, w, st in keys],
        ignore_conflicts=True,
    )
    # A superset filter (sku ∈ …, warehouse ∈ …, status ∈ …) keeps the query short for
    # bulk work; ordering makes every transaction take row locks in the same order.
    rows = (
        StockBalance.objects.select_for_update()
        .filter(
            sku_id__in={k[0] for k in keys},
            warehouse_id__in={k[1] for k in keys},
            status__in={k[2] for k in keys},
        )
        .order_by("sku_id", "warehouse_id", "status")
    )
    wanted = set(keys)
    return {
        (b.sku_id, b.warehouse_id, b.status): b
        for b in rows
        if (b.sku_id, b.warehouse_id, b.status) in wanted
    }


def _labels(sku_ids: Iterable[int], warehouse_ids: Iterable[int]) -> tuple[dict, dict]:
    skus = dict(SKU.objects.filter(pk__in=set(sku_ids)).values_list("pk", "code"))
    whs = dict(Warehouse.objects.filter(pk__in=set(warehouse_ids)).values_list("pk", "code"))
    return skus, whs


def _shortage(key: Key, before: tuple[int, int], changes: Sequence[Change]) -> InsufficientStock:
    old_quantity, old_reserved = before
    available = old_quantity - old_reserved if key[2] == SELLABLE else old_quantity
    requested = sum(max(-c.quantity, 0) + max(c.reserved, 0) for c in changes if c.key == key)
    skus, whs = _labels([key[0]], [key[1]])
    return InsufficientStock(skus[key[0]], whs[key[1]], key[2], max(available, 0), requested)


def _apply(
    changes: Sequence[Change],
    *,
    action: str,
    reason_code: str = "",
    reference: Reference = Reference(),
    note: str = "",
    log: bool = True,
) -> Operation:
    """Apply `changes` atomically under row locks; see the module docstring."""
    if not changes:
        raise StockError("Nothing to do.", "empty_operation")
    operation = Operation(uuid.uuid4())
    with transaction.atomic():
        balances = _lock(c.key for c in changes)
        warehouses = {
            w.pk: w for w in Warehouse.objects.filter(pk__in={c.warehouse_id for c in changes})
        }
        before = {k: (b.quantity, b.reserved) for k, b in balances.items()}

        for change in changes:
            balance = balances[change.key]
            balance.quantity += change.quantity
            balance.reserved += change.reserved
        for key, balance in balances.items():
            bad_reserved = balance.status == SELLABLE and balance.reserved > balance.quantity
            if balance.quantity < 0 or balance.reserved < 0 or bad_reserved:
                raise _shortage(key, before[key], changes)

        changed = [b for k, b in balances.items() if (b.quantity, b.reserved) != before[k]]
        now = timezone.now()
        for balance in changed:
            balance.updated_at = now
        StockBalance.objects.bulk_update(changed, ["quantity", "reserved", "updated_at"])

        actor_label = current_actor().label[:200]
        running = {k: before[k][0] for k in balances}
        movements = []
        for change in changes:
            if change.quantity == 0:
                continue
            running[change.key] += change.quantity
            movements.append(
                StockMovement(
                    operation_id=operation.operation_id,
                    kind=change.kind,
                    sku_id=change.sku_id,
                    warehouse_id=change.warehouse_id,
                    status=change.status,
                    quantity=change.quantity,
                    balance_after=running[change.key],
                    reason_code=reason_code,
                    reference_type=reference.type,
                    reference_id=reference.id,
                    note=note[:500],
                    actor_label=actor_label,
                )
            )
        operation.movements = StockMovement.objects.bulk_create(movements)

        events = []
        for (sku_id, wh_id, status), balance in balances.items():
            if status != SELLABLE:
                continue
            buffer = warehouses[wh_id].safety_buffer
            old = atp(*before[(sku_id, wh_id, status)], buffer)
            new = atp(balance.quantity, balance.reserved, buffer)
            if old != new:
                events.append(
                    StockEvent(
                        operation_id=operation.operation_id,
                        sku_id=sku_id,
                        warehouse_id=wh_id,
                        available_before=old,
                        available_after=new,
                        cause=action.split(".")[-1][:24],
                    )
                )
        operation.events = StockEvent.objects.bulk_create(events)

        if log:
            skus, whs = _labels({c.sku_id for c in changes}, {c.warehouse_id for c in changes})
            record(
                action,
                changes={
                    "operation": str(operation.operation_id),
                    "lines": [
                        [skus[c.sku_id], whs[c.warehouse_id], c.status, c.quantity, c.reserved]
                        for c in changes[:50]
                    ],
                    "reason": reason_code,
                    "reference": [reference.type, reference.id],
                },
            )
    return operation


# --- Warehouses ------------------------------------------------------------------------

WAREHOUSE_FIELDS = [
    "code",
    "name",
    "kind",
    "address_line1",
    "address_line2",
    "city",
    "state",
    "postal_code",
    "country",
    "latitude",
    "longitude",
    "timezone",
    "cutoff_time",
    "capabilities",
    "priority",
    "safety_buffer",
    "is_active",
]


def _jsonable(value: object) -> object:
    return value if value is None or isinstance(value, str | int | bool | list) else str(value)


def _check_warehouse_code(code: str, exclude_pk: int | None = None) -> None:
    # The case-insensitive unique index would say "constraint violated"; say it plainly.
    clash = Warehouse.objects.filter(code__iexact=code)
    if exclude_pk is not None:
        clash = clash.exclude(pk=exclude_pk)
    if clash.exists():
        raise ValidationError(
            {"code": ValidationError("Another warehouse already uses this code.", code="duplicate")}
        )


def create_warehouse(**fields) -> Warehouse:
    unknown = set(fields) - set(WAREHOUSE_FIELDS)
    if unknown:
        raise ValidationError(f"Unknown fields: {', '.join(sorted(unknown))}", code="invalid")
    with transaction.atomic():
        _check_warehouse_code(fields.get("code", ""))
        warehouse = Warehouse(**fields)
        warehouse.full_clean(validate_constraints=True)
        warehouse.save()
        record(
            "warehouse.created",
            obj=warehouse,
            changes={f: [None, _jsonable(getattr(warehouse, f))] for f in fields},
        )
    return warehouse


def update_warehouse(warehouse: Warehouse, **fields) -> Warehouse:
    unknown = set(fields) - set(WAREHOUSE_FIELDS)
    if unknown:
        raise ValidationError(f"Unknown fields: {', '.join(sorted(unknown))}", code="invalid")
    with transaction.atomic():
        warehouse = Warehouse.objects.select_for_update().get(pk=warehouse.pk)
        if "code" in fields:
            _check_warehouse_code(fields["code"], exclude_pk=warehouse.pk)
        before = {f: getattr(warehouse, f) for f in WAREHOUSE_FIELDS}
        for name, value in fields.items():
            setattr(warehouse, name, value)
        warehouse.full_clean(validate_constraints=True)
        warehouse.save()
        changes = {
            f: [_jsonable(before[f]), _jsonable(getattr(warehouse, f))]
            for f in WAREHOUSE_FIELDS
            if before[f] != getattr(warehouse, f)
        }
        if "safety_buffer" in changes:
            _buffer_events(warehouse, before["safety_buffer"])
        if changes:
            record("warehouse.updated", obj=warehouse, changes=changes)
    return warehouse


def _buffer_events(warehouse: Warehouse, old_buffer: int) -> None:
    """A new safety buffer moves available-to-promise of every SKU stocked there without a
    movement: emit its events like `_apply` does, or channel pushes would never hear of it.

    The sellable rows are locked in the usual order first, so a movement racing with this
    change either committed before (its quantities are read here) or waits and then reads
    the new buffer: the before/after values of one row's events always chain.
    """
    rows = (
        StockBalance.objects.select_for_update()
        .filter(warehouse=warehouse, status=SELLABLE)
        .order_by("sku_id", "warehouse_id", "status")
        .values_list("sku_id", "quantity", "reserved")
    )
    operation_id = uuid.uuid4()
    events = []
    for sku_id, quantity, reserved in rows:
        old = atp(quantity, reserved, old_buffer)
        new = atp(quantity, reserved, warehouse.safety_buffer)
        if old != new:
            events.append(
                StockEvent(
                    operation_id=operation_id,
                    sku_id=sku_id,
                    warehouse_id=warehouse.pk,
                    available_before=old,
                    available_after=new,
                    cause="buffer_changed",
                )
            )
    StockEvent.objects.bulk_create(events, batch_size=5000)


# --- Movements -------------------------------------------------------------------------


def receive(
    *,
    sku: SKU,
    warehouse: Warehouse,
    quantity: int,
    status: str = SELLABLE,
    reference: Reference = Reference(),
    note: str = "",
) -> Operation:
    _positive(quantity)
    _no_bundle(sku)
    return _apply(
        [Change(sku.pk, warehouse.pk, _status(status), quantity, kind=MovementKind.RECEIPT)],
        action="stock.received",
        reference=reference,
        note=note,
    )


def adjust(
    *,
    sku: SKU,
    warehouse: Warehouse,
    delta: int,
    reason_code: str,
    status: str = SELLABLE,
    note: str = "",
    reference: Reference = Reference(),
) -> Operation:
    """Post an adjustment now. People's adjustments go through `request_adjustment`,
    which applies the approval policy first; this is the posting step (and the path of
    imports and other system corrections)."""
    _check_adjustment(sku, delta, reason_code, status)
    return _apply(
        [Change(sku.pk, warehouse.pk, _status(status), delta, kind=MovementKind.ADJUSTMENT)],
        action="stock.adjusted",
        reason_code=reason_code,
        reference=reference,
        note=note,
    )


def _check_adjustment(sku: SKU, delta: int, reason_code: str, status: str) -> None:
    if not isinstance(delta, int) or isinstance(delta, bool) or delta == 0:
        raise StockError(
            "An adjustment changes stock by a whole number, not zero.", "invalid_quantity"
        )
    if reason_code not in ReasonCode.values:
        raise StockError("Choose a reason for the adjustment.", "reason_required")
    _status(status)
    _no_bundle(sku)


def change_status(
    *,
    sku: SKU,
    warehouse: Warehouse,
    quantity: int,
    from_status: str,
    to_status: str,
    note: str = "",
) -> Operation:
    _positive(quantity)
    if _status(from_status) == _status(to_status):
        raise StockError("Choose two different statuses.", "same_status")
    if StockStatus.IN_TRANSIT in (from_status, to_status):
        raise StockError("In-transit stock moves only through transfers.", "invalid_status")
    _no_bundle(sku)
    kind = MovementKind.STATUS_CHANGE
    return _apply(
        [
            Change(sku.pk, warehouse.pk, from_status, -quantity, kind=kind),
            Change(sku.pk, warehouse.pk, to_status, quantity, kind=kind),
        ],
        action="stock.status_changed",
        note=note,
    )


def record_return(
    *,
    sku: SKU,
    warehouse: Warehouse,
    quantity: int,
    status: str = SELLABLE,
    reference: Reference = Reference(),
    note: str = "",
) -> Operation:
    _positive(quantity)
    _no_bundle(sku)
    return _apply(
        [Change(sku.pk, warehouse.pk, _status(status), quantity, kind=MovementKind.RETURN)],
        action="stock.returned",
        reference=reference,
        note=note,
    )


def _no_bundle(sku: SKU) -> None:
    if sku.is_bundle:
        raise StockError(
            f"{sku.code} is a bundle: its stock is its components'.", "bundle_has_no_stock"
        )


# --- Transfers -------------------------------------------------------------------------


def ship_transfer(
    *,
    source: Warehouse,
    destination: Warehouse,
    lines: Sequence[tuple[SKU, int]],
    note: str = "",
) -> Transfer:
    """Take stock out of `source` (sellable) and put it in transit to `destination`."""
    if source.pk == destination.pk:
        raise StockError("Choose two different warehouses.", "same_warehouse")
    merged: dict[int, int] = defaultdict(int)
    skus = {}
    for sku, quantity in lines:
        _positive(quantity)
        _no_bundle(sku)
        merged[sku.pk] += quantity
        skus[sku.pk] = sku
    if not merged:
        raise StockError("A transfer needs at least one line.", "empty_operation")
    with transaction.atomic():
        transfer = Transfer.objects.create(source=source, destination=destination, note=note)
        TransferLine.objects.bulk_create(
            [TransferLine(transfer=transfer, sku_id=s, quantity=q) for s, q in merged.items()]
        )
        changes = []
        for sku_id, quantity in merged.items():
            changes.append(
                Change(sku_id, source.pk, SELLABLE, -quantity, kind=MovementKind.TRANSFER_OUT)
            )
            changes.append(
                Change(
                    sku_id,
                    destination.pk,
                    StockStatus.IN_TRANSIT,
                    quantity,
                    kind=MovementKind.TRANSFER_IN_TRANSIT,
                )
            )
        _apply(
            changes,
            action="stock.transfer_shipped",
            reference=Reference("transfer", str(transfer.pk)),
            note=note,
        )
    return transfer


def receive_transfer(
    *, transfer: Transfer, quantities: dict[int, int] | None = None, note: str = ""
) -> Transfer:
    """Move in-transit stock into the destination's sellable stock.

    `quantities` maps sku_id → units received now (partial receipts); by default the rest
    of every line. The transfer is received once every line is.
    """
    with transaction.atomic():
        transfer = Transfer.objects.select_for_update().get(pk=transfer.pk)
        if transfer.status != TransferStatus.IN_TRANSIT:
            raise StockError("This transfer is not in transit.", "transfer_not_in_transit")
        lines = {line.sku_id: line for line in transfer.lines.select_for_update()}
        todo = quantities or {s: ln.quantity - ln.received_quantity for s, ln in lines.items()}
        changes = []
        for sku_id, quantity in todo.items():
            if quantity == 0:
                continue
            line = lines.get(sku_id)
            if line is None:
                raise StockError("That SKU is not on this transfer.", "unknown_line")
            _positive(quantity)
            if line.received_quantity + quantity > line.quantity:
                raise StockError(
                    "More received than was shipped on this line.",
                    "over_receipt",
                    remaining=line.quantity - line.received_quantity,
                )
            line.received_quantity += quantity
            changes.append(
                Change(
                    sku_id,
                    transfer.destination_id,
                    StockStatus.IN_TRANSIT,
                    -quantity,
                    kind=MovementKind.TRANSFER_IN,
                )
            )
            changes.append(
                Change(
                    sku_id,
                    transfer.destination_id,
                    SELLABLE,
                    quantity,
                    kind=MovementKind.TRANSFER_IN,
                )
            )
        _apply(
            changes,
            action="stock.transfer_received",
            reference=Reference("transfer", str(transfer.pk)),
            note=note,
        )
        TransferLine.objects.bulk_update(lines.values(), ["received_quantity"])
        if all(ln.received_quantity == ln.quantity for ln in lines.values()):
            transfer.status = TransferStatus.RECEIVED
            transfer.received_at = timezone.now()
            transfer.save(update_fields=["status", "received_at"])
    return transfer


# --- Reservations ----------------------------------------------------------------------


@dataclass(frozen=True)
class ReserveLine:
    sku: SKU
    warehouse: Warehouse
    quantity: int


def expand_bundles(lines: Sequence[ReserveLine]) -> list[tuple[int, int, int, int | None]]:
    """(sku_id, warehouse_id, quantity, bundle_sku_id) with bundles replaced by components."""
    bundle_ids = [line.sku.pk for line in lines if line.sku.is_bundle]
    components: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for bc in BundleComponent.objects.filter(bundle_id__in=bundle_ids):
        components[bc.bundle_id].append((bc.component_id, bc.quantity))
    out = []
    for line in lines:
        _positive(line.quantity)
        if line.sku.is_bundle:
            if not components[line.sku.pk]:
                raise StockError(f"Bundle {line.sku.code} has no components.", "empty_bundle")
            for component_id, per in components[line.sku.pk]:
                out.append((component_id, line.warehouse.pk, line.quantity * per, line.sku.pk))
        else:
            out.append((line.sku.pk, line.warehouse.pk, line.quantity, None))
    return out


def reserve(
    *,
    lines: Sequence[ReserveLine],
    kind: str,
    reference: Reference,
    expires_at: datetime | None = None,
    note: str = "",
) -> list[Reservation]:
    """Reserve every line or none (InsufficientStock names the first short line)."""
    if kind not in ReservationKind.values:
        raise StockError(f"Unknown reservation kind {kind!r}.", "invalid_kind")
    if not reference.type or not reference.id:
        raise StockError("A reservation needs a reference.", "reference_required")
    expanded = expand_bundles(lines)
    # One row per (sku, warehouse) per reference: merge repeated lines.
    merged: dict[tuple[int, int], tuple[int, int | None]] = {}
    for sku_id, wh_id, quantity, bundle_id in expanded:
        prev, prev_bundle = merged.get((sku_id, wh_id), (0, bundle_id))
        merged[(sku_id, wh_id)] = (prev + quantity, prev_bundle)
    with transaction.atomic():
        taken = Reservation.objects.filter(
            kind=kind,
            reference_type=reference.type,
            reference_id=reference.id,
            status=ReservationStatus.ACTIVE,
        ).filter(Q(*[Q(sku_id=s, warehouse_id=w) for (s, w) in merged], _connector=Q.OR))
        if taken.exists():
            raise StockError(
                "This reference already holds an active reservation of this kind for that "
                "SKU and warehouse; release it first.",
                "already_reserved",
            )
        _apply(
            [Change(s, w, SELLABLE, reserved=q) for (s, w), (q, _) in merged.items()],
            action="stock.reserved",
            reference=reference,
            note=note,
        )
        reservations = Reservation.objects.bulk_create(
            [
                Reservation(
                    sku_id=s,
                    warehouse_id=w,
                    quantity=q,
                    kind=kind,
                    bundle_sku_id=bundle_id,
                    reference_type=reference.type,
                    reference_id=reference.id,
                    expires_at=expires_at,
                    note=note[:500],
                )
                for (s, w), (q, bundle_id) in merged.items()
            ]
        )
    return reservations


def reserve_many(
    requests: Sequence[tuple[Sequence[ReserveLine], Reference]], *, kind: str
) -> list[Reservation]:
    """Reserve several references' lines in ONE locked pass (bulk ingestion).

    All or nothing, like `reserve`: the balance rows of every request are locked together
    in the usual order and checked before anything is written. Each (reference, SKU,
    warehouse) gets one reservation row.
    """
    if kind not in ReservationKind.values:
        raise StockError(f"Unknown reservation kind {kind!r}.", "invalid_kind")
    rows: dict[tuple[str, str, int, int], list] = {}
    for lines, reference in requests:
        if not reference.type or not reference.id:
            raise StockError("A reservation needs a reference.", "reference_required")
        for sku_id, wh_id, quantity, bundle_id in expand_bundles(lines):
            key = (reference.type, reference.id, sku_id, wh_id)
            if key in rows:
                rows[key][0] += quantity
            else:
                rows[key] = [quantity, bundle_id]
    if not rows:
        return []
    totals: dict[tuple[int, int], int] = defaultdict(int)
    for (_, _, sku_id, wh_id), (quantity, _) in rows.items():
        totals[(sku_id, wh_id)] += quantity
    with transaction.atomic():
        _apply(
            [Change(s, w, SELLABLE, reserved=q) for (s, w), q in sorted(totals.items())],
            action="stock.reserved",
            reference=Reference("batch", str(len(requests))),
        )
        return Reservation.objects.bulk_create(
            [
                Reservation(
                    sku_id=sku_id,
                    warehouse_id=wh_id,
                    quantity=quantity,
                    kind=kind,
                    bundle_sku_id=bundle_id,
                    reference_type=ref_type,
                    reference_id=ref_id,
                )
                for (ref_type, ref_id, sku_id, wh_id), (quantity, bundle_id) in rows.items()
            ]
        )


def _close(reservations: Q, *, consume: bool, action: str) -> list[Reservation]:
    with transaction.atomic():
        rows = list(
            Reservation.objects.select_for_update()
            .filter(reservations, status=ReservationStatus.ACTIVE)
            .order_by("id")
        )
        if not rows:
            return []
        changes = [
            Change(
                r.sku_id,
                r.warehouse_id,
                SELLABLE,
                quantity=-r.quantity if consume else 0,
                reserved=-r.quantity,
                kind=MovementKind.SHIP if consume else "",
            )
            for r in rows
        ]
        first = rows[0]
        _apply(
            changes, action=action, reference=Reference(first.reference_type, first.reference_id)
        )
        now = timezone.now()
        status = ReservationStatus.CONSUMED if consume else ReservationStatus.RELEASED
        Reservation.objects.filter(pk__in=[r.pk for r in rows]).update(status=status, closed_at=now)
        for r in rows:
            r.status, r.closed_at = status, now
    return rows


def release(
    *, reference: Reference | None = None, ids: Iterable[int] | None = None
) -> list[Reservation]:
    """Release active reservations (by reference or ids) back to available stock."""
    return _close(_selector(reference, ids), consume=False, action="stock.released")


def consume(
    *, reference: Reference | None = None, ids: Iterable[int] | None = None
) -> list[Reservation]:
    """Pick/ship reserved stock: it leaves sellable stock and the reservation closes."""
    return _close(_selector(reference, ids), consume=True, action="stock.shipped")


def _selector(reference: Reference | None, ids: Iterable[int] | None) -> Q:
    if reference is not None:
        return Q(reference_type=reference.type, reference_id=reference.id)
    if ids is not None:
        return Q(pk__in=list(ids))
    raise StockError("Say which reservations.", "reference_required")


def expire_reservations(now: datetime | None = None) -> int:
    """Release every active reservation whose expiry has passed; returns how many."""
    now = now or timezone.now()
    expired = list(
        Reservation.objects.filter(
            status=ReservationStatus.ACTIVE, expires_at__lte=now
        ).values_list("pk", flat=True)
    )
    if not expired:
        return 0
    return len(_close(Q(pk__in=expired), consume=False, action="stock.reservations_expired"))


# --- Cycle counts ----------------------------------------------------------------------


def start_count(*, warehouse: Warehouse, note: str = "") -> CycleCount:
    with transaction.atomic():
        count = CycleCount.objects.create(warehouse=warehouse, note=note)
        record("stock.count_started", obj=count)
    return count


def enter_count(*, count: CycleCount, sku: SKU, counted: int) -> CountLine:
    if not isinstance(counted, int) or counted < 0:
        raise StockError("A count is a whole number, zero or more.", "invalid_quantity")
    if count.status != CountStatus.OPEN:
        raise StockError("This count is already closed.", "count_closed")
    _no_bundle(sku)
    expected = (
        StockBalance.objects.filter(sku=sku, warehouse_id=count.warehouse_id, status=SELLABLE)
        .values_list("quantity", flat=True)
        .first()
        or 0
    )
    with transaction.atomic():
        line, _ = CountLine.objects.update_or_create(
            count=count, sku=sku, defaults={"counted": counted, "expected": expected}
        )
        CycleCount.objects.filter(pk=count.pk).update(version=F("version") + 1)
    return line


CYCLE_COUNT = "cycle_count"


@dataclass(frozen=True)
class CountVariance:
    sku: SKU
    current: int
    counted: int

    @property
    def variance(self) -> int:
        return self.counted - self.current


def count_variances(count: CycleCount) -> list[CountVariance]:
    """Each counted SKU against the sellable quantity there now."""
    lines = list(count.lines.select_related("sku__product"))
    current = dict(
        StockBalance.objects.filter(
            warehouse_id=count.warehouse_id,
            status=SELLABLE,
            sku_id__in=[line.sku_id for line in lines],
        ).values_list("sku_id", "quantity")
    )
    return [CountVariance(ln.sku, current.get(ln.sku_id, 0), ln.counted) for ln in lines]


def count_value(variances: Sequence[CountVariance], currency: str) -> Decimal | None:
    """What the corrections are worth (gains and losses both count); None if any SKU
    with a variance has no cost in `currency`."""
    total = Decimal("0")
    for v in variances:
        if v.variance:
            value = adjustment_value(v.sku, v.variance, currency)
            if value is None:
                return None
            total += value
    return total


def count_facts(count: CycleCount) -> Facts:
    """What the cycle-count policy looks at: the corrections posting would make now."""
    variances = count_variances(count)
    changed = [v for v in variances if v.variance]
    units = sum(abs(v.variance) for v in changed)
    on_hand_total = sum(v.current for v in changed)
    return Facts(
        title=(
            f"Post count #{count.pk} at {count.warehouse.code}: "
            f"{len(changed)} SKU{'s' if len(changed) != 1 else ''} corrected, {units} units"
        ),
        amount=count_value(variances, approvals.current_brand().currency),
        variance_pct=Decimal(units * 100) / on_hand_total if on_hand_total > 0 else None,
        tags=frozenset(t for v in changed for t in (*v.sku.tags, *v.sku.product.tags)),
        version=count.version,
    )


def post_count(*, count: CycleCount, requested_by: object = None, gated: bool = True) -> CycleCount:
    """Correct sellable stock to the counted quantities, as count_correction movements.

    The variance is taken against the quantity at posting time (under lock), so
    movements that happened while people counted are not undone. When the brand's
    cycle-count policy asks for approval (corrections worth more than its ceiling), the
    count waits in the approvals inbox instead and posts when approved. `gated=False` is
    for a warehouse system's own stock report (a 3PL is the truth for its stock: there is
    no decision to approve).
    """
    with transaction.atomic():
        if gated:
            approvals.lock_subject(CYCLE_COUNT, count.pk)
        count = CycleCount.objects.select_for_update().get(pk=count.pk)
        if count.status != CountStatus.OPEN:
            raise StockError("This count is already closed.", "count_closed")
        if not count.lines.exists():
            raise StockError("Enter at least one counted SKU.", "empty_operation")
        if gated and approvals.requirement(CYCLE_COUNT, count_facts(count)) is not None:
            person = requested_by if isinstance(requested_by, User) else None
            count.status = CountStatus.PENDING_APPROVAL
            count.requested_by = person
            count.save(update_fields=["status", "requested_by"])
            record("stock.count_submitted", obj=count, changes={"version": count.version})
            outcome = approvals.open_request(CYCLE_COUNT, count.pk, requested_by=requested_by)
            if outcome.state == approvals.NOT_REQUIRED:
                _post_count_now(count, Reference("cycle_count", str(count.pk)))
            count.refresh_from_db()
            return count
        _post_count_now(count, Reference("cycle_count", str(count.pk)))
    return count


def post_approved_count(request: ApprovalRequest, key: str) -> None:
    """The approval's continuation: post the count, exactly once.

    Refuses (nothing of the decision is kept) when the sheet changed since the request
    opened, or when the corrections are now worth more than what was approved (stock
    moved while it waited): the count then needs posting again.
    """
    count = CycleCount.objects.select_for_update().get(pk=int(request.subject_id))
    if count.status == CountStatus.POSTED:
        return
    if count.status != CountStatus.PENDING_APPROVAL:
        raise StockError(f"Count #{count.pk} is not waiting for approval.", "count_closed")
    if count.version != request.subject_version:
        raise StockError("The count changed after this request was opened.", "count_changed")
    value = count_value(count_variances(count), request.currency)
    if request.amount is not None and (value is None or value > request.amount):
        raise StockError(
            "The corrections are worth more now than when approval was asked (stock moved "
            "meanwhile): reject this request and post the count again.",
            "count_changed",
        )
    _post_count_now(count, Reference("approval_request", str(request.pk)))


def reopen_count(request: ApprovalRequest, state: str) -> None:
    """Rejected, expired or cancelled: the count reopens, unposted, with the reason."""
    count = CycleCount.objects.select_for_update().get(pk=int(request.subject_id))
    if count.status != CountStatus.PENDING_APPROVAL:
        return
    count.status = CountStatus.OPEN
    count.resolution = (request.resolution or state)[:500]
    count.save(update_fields=["status", "resolution"])
    record(f"stock.count_{state}", obj=count, changes={"reason": request.resolution})


def _post_count_now(count: CycleCount, reference: Reference) -> None:
    lines = list(count.lines.all())
    balances = _lock((line.sku_id, count.warehouse_id, SELLABLE) for line in lines)
    changes = []
    for line in lines:
        current = balances[(line.sku_id, count.warehouse_id, SELLABLE)].quantity
        line.posted_variance = line.counted - current
        if line.posted_variance:
            changes.append(
                Change(
                    line.sku_id,
                    count.warehouse_id,
                    SELLABLE,
                    line.posted_variance,
                    kind=MovementKind.COUNT_CORRECTION,
                )
            )
    if changes:
        _apply(
            changes,
            action="stock.count_posted",
            reason_code="correction",
            reference=reference,
        )
    CountLine.objects.bulk_update(lines, ["posted_variance"])
    count.status = CountStatus.POSTED
    count.posted_at = timezone.now()
    count.save(update_fields=["status", "posted_at"])


# --- Reads -----------------------------------------------------------------------------


def available_to_promise(
    *, sku_ids: Iterable[int] | None = None, warehouse_ids: Iterable[int] | None = None
) -> dict[tuple[int, int], int]:
    """ATP per (sku_id, warehouse_id) for stocked SKUs, from sellable rows."""
    rows = StockBalance.objects.filter(status=SELLABLE, warehouse__is_active=True)
    # One array parameter instead of an IN list: for 10,000 ids the list form spends most
    # of its time building and binding parameters (≈5x slower, measured in bench_stock).
    if sku_ids is not None:
        rows = rows.extra(
            where=['"inventory_stockbalance"."sku_id" = ANY(%s)'],  # noqa: S610
            params=[list(sku_ids)],
        )
    if warehouse_ids is not None:
        rows = rows.filter(warehouse_id__in=list(warehouse_ids))
    return {
        (s, w): atp(q, r, buf)
        for s, w, q, r, buf in rows.values_list(
            "sku_id", "warehouse_id", "quantity", "reserved", "warehouse__safety_buffer"
        )
    }


def bundle_availability(
    bundle: SKU, *, warehouse_ids: Iterable[int] | None = None
) -> dict[int, int]:
    """Bundles buildable per warehouse: min over components of floor(ATP / per-bundle qty)."""
    components = list(
        BundleComponent.objects.filter(bundle=bundle).values_list("component_id", "quantity")
    )
    if not components:
        return {}
    if warehouse_ids is None:
        warehouse_ids = Warehouse.objects.filter(is_active=True).values_list("pk", flat=True)
    warehouse_ids = list(warehouse_ids)
    stock = available_to_promise(sku_ids=[c for c, _ in components], warehouse_ids=warehouse_ids)
    return {
        wh: min(stock.get((component, wh), 0) // per for component, per in components)
        for wh in warehouse_ids
    }


# --- Adjustments behind approval -------------------------------------------------------
#
# A person's adjustment (the adjust page, POST /api/v1/movements/ kind adjustment) goes
# through `request_adjustment`: when the brand's stock-adjustment policy applies — by
# default, value |delta| × unit cost above 500 in the brand currency, or a SKU without a
# cost in that currency — it becomes a StockAdjustmentRequest waiting for approval and
# the ledger does not change. Approval posts it once through `adjust`, with reference
# ("approval_request", <id>); rejection, expiry and cancellation close it unposted.

STOCK_ADJUSTMENT = "stock_adjustment"


@dataclass(frozen=True)
class AdjustmentOutcome:
    """Posted now (`operation`), or waiting for approval (`request`, `approval`)."""

    operation: Operation | None = None
    request: StockAdjustmentRequest | None = None
    approval: ApprovalRequest | None = None

    @property
    def pending(self) -> bool:
        return self.operation is None


def adjustment_value(sku: SKU, delta: int, currency: str) -> Decimal | None:
    """|delta| × unit cost in `currency`; None when the SKU has no cost in it (Keel does
    not convert currencies, and an unknown value must not count as a small one)."""
    if sku.unit_cost is None or (sku.cost_currency or "").upper() != currency.upper():
        return None
    return abs(delta) * sku.unit_cost


def on_hand(sku_id: int, warehouse_id: int, status: str) -> tuple[int, int]:
    row = (
        StockBalance.objects.filter(sku_id=sku_id, warehouse_id=warehouse_id, status=status)
        .values_list("quantity", "reserved")
        .first()
    )
    return row or (0, 0)


def _check_postable(sku: SKU, warehouse: Warehouse, status: str, delta: int) -> None:
    """Refuse, as `adjust` would, a removal the stock there cannot cover right now: an
    approver should never be asked to approve what cannot post."""
    if delta >= 0:
        return
    quantity, reserved = on_hand(sku.pk, warehouse.pk, status)
    available = quantity - reserved if status == SELLABLE else quantity
    if available + delta < 0:
        raise InsufficientStock(sku.code, warehouse.code, status, max(available, 0), -delta)


def adjustment_facts(adjustment: StockAdjustmentRequest) -> Facts:
    """What the stock-adjustment policy looks at."""
    quantity, _ = on_hand(adjustment.sku_id, adjustment.warehouse_id, adjustment.status)
    sku = adjustment.sku
    title = f"Adjust {sku.code} at {adjustment.warehouse.code} by {adjustment.delta:+d}"
    if adjustment.status != SELLABLE:
        title += f" ({StockStatus(adjustment.status).label.lower()})"
    return Facts(
        title=title,
        amount=adjustment.value,
        # Share of what is there now; unknown when nothing is there to compare with.
        variance_pct=(Decimal(abs(adjustment.delta) * 100) / quantity if quantity > 0 else None),
        tags=frozenset(sku.tags) | frozenset(sku.product.tags),
        version=adjustment.version,
    )


def _operation(operation_id: uuid.UUID) -> Operation:
    return Operation(
        operation_id,
        movements=list(StockMovement.objects.filter(operation_id=operation_id).order_by("id")),
    )


def request_adjustment(
    *,
    sku: SKU,
    warehouse: Warehouse,
    delta: int,
    reason_code: str,
    status: str = SELLABLE,
    note: str = "",
    requested_by: object = None,
) -> AdjustmentOutcome:
    """Adjust stock, or hold the adjustment for approval when the brand's policy says so.

    Invalid adjustments (zero, no reason, a bundle, more than is there) are refused with
    the same StockError either way. `requested_by` is the person asking (None for an API
    key); they cannot approve their own request unless the policy allows it.
    """
    _check_adjustment(sku, delta, reason_code, status)
    currency = approvals.current_brand().currency
    draft = StockAdjustmentRequest(
        sku=sku,
        warehouse=warehouse,
        status=status,
        delta=delta,
        reason_code=reason_code,
        note=note[:500],
        value=adjustment_value(sku, delta, currency),
        currency=currency,
    )
    if approvals.requirement(STOCK_ADJUSTMENT, adjustment_facts(draft)) is None:
        return AdjustmentOutcome(
            operation=adjust(
                sku=sku,
                warehouse=warehouse,
                delta=delta,
                reason_code=reason_code,
                status=status,
                note=note,
            )
        )
    with transaction.atomic():
        _check_postable(sku, warehouse, status, delta)
        person = requested_by if isinstance(requested_by, User) else None
        draft.requested_by = person
        draft.requested_by_label = (person.email if person else current_actor().label)[:200]
        draft.save()
        record(
            "stock.adjustment_requested",
            obj=draft,
            changes={
                "sku": sku.code,
                "warehouse": warehouse.code,
                "status": status,
                "delta": delta,
                "value": None if draft.value is None else str(draft.value),
                "reason": reason_code,
            },
        )
        outcome = approvals.open_request(STOCK_ADJUSTMENT, draft.pk, requested_by=requested_by)
        if outcome.state == approvals.NOT_REQUIRED:
            # The policy changed between the check above and now: post as if ungated.
            _post_adjustment(draft, Reference(), key=None)
    draft.refresh_from_db()
    if draft.state == AdjustmentState.POSTED:
        return AdjustmentOutcome(_operation(draft.operation_id), draft, outcome.request)
    assert outcome.state == RequestState.PENDING
    return AdjustmentOutcome(None, draft, outcome.request)


def change_adjustment_request(
    adjustment: StockAdjustmentRequest, *, delta: int, requested_by: object = None
) -> AdjustmentOutcome:
    """Change the quantity of an adjustment still waiting for approval.

    A larger value than the approval covers re-opens approval (the pending request is
    superseded, approvals given so far no longer count); a smaller one keeps it.
    """
    with transaction.atomic():
        # The subject lock first, as every approvals path takes it: edits and decisions on
        # one adjustment queue instead of deadlocking.
        approvals.lock_subject(STOCK_ADJUSTMENT, adjustment.pk)
        adjustment = (
            StockAdjustmentRequest.objects.select_for_update(of=("self",))
            .select_related("sku__product", "warehouse")
            .get(pk=adjustment.pk)
        )
        if adjustment.state != AdjustmentState.PENDING:
            raise StockError(
                f"This adjustment is {adjustment.get_state_display().lower()}; it cannot change.",
                "adjustment_closed",
            )
        _check_adjustment(adjustment.sku, delta, adjustment.reason_code, adjustment.status)
        _check_postable(adjustment.sku, adjustment.warehouse, adjustment.status, delta)
        before = (adjustment.delta, adjustment.version)
        adjustment.delta = delta
        adjustment.value = adjustment_value(adjustment.sku, delta, adjustment.currency)
        adjustment.version += 1
        adjustment.save(update_fields=["delta", "value", "version"])
        record(
            "stock.adjustment_request_changed",
            obj=adjustment,
            changes={"delta": [before[0], delta], "version": [before[1], adjustment.version]},
        )
        outcome = approvals.subject_changed(
            STOCK_ADJUSTMENT, adjustment.pk, adjustment.value, requested_by=requested_by
        )
        if outcome.state == approvals.NOT_REQUIRED:
            _post_adjustment(adjustment, Reference(), key=None)
    adjustment.refresh_from_db()
    if adjustment.state == AdjustmentState.POSTED:
        return AdjustmentOutcome(_operation(adjustment.operation_id), adjustment, outcome.request)
    return AdjustmentOutcome(None, adjustment, outcome.request)


def _post_adjustment(
    adjustment: StockAdjustmentRequest, reference: Reference, key: str | None
) -> Operation:
    operation = adjust(
        sku=adjustment.sku,
        warehouse=adjustment.warehouse,
        delta=adjustment.delta,
        reason_code=adjustment.reason_code,
        status=adjustment.status,
        note=adjustment.note,
        reference=reference,
    )
    adjustment.state = AdjustmentState.POSTED
    adjustment.operation_id = operation.operation_id
    adjustment.continuation_key = key
    adjustment.closed_at = timezone.now()
    adjustment.save(update_fields=["state", "operation_id", "continuation_key", "closed_at"])
    return operation


def post_approved_adjustment(request: ApprovalRequest, key: str) -> None:
    """The approval's continuation: post the adjustment, exactly once.

    Runs inside the approving transaction. A posted adjustment (same key) is left alone;
    one that changed since the request opened, or can no longer post, refuses the
    approval (the StockError reaches the approver and nothing is recorded).
    """
    adjustment = (
        StockAdjustmentRequest.objects.select_for_update(of=("self",))
        .select_related("sku", "warehouse")
        .get(pk=int(request.subject_id))
    )
    if adjustment.state == AdjustmentState.POSTED and adjustment.continuation_key == key:
        return
    if adjustment.state != AdjustmentState.PENDING:
        raise StockError(
            f"This adjustment is {adjustment.get_state_display().lower()}; it cannot post.",
            "adjustment_closed",
        )
    if adjustment.version != request.subject_version:
        raise StockError(
            "The adjustment changed after this approval request was opened.",
            "adjustment_changed",
        )
    _post_adjustment(adjustment, Reference("approval_request", str(request.pk)), key)


def close_adjustment_request(request: ApprovalRequest, state: str) -> None:
    """Rejected, expired or cancelled: the adjustment closes unposted, with the reason."""
    adjustment = StockAdjustmentRequest.objects.select_for_update().get(pk=int(request.subject_id))
    if adjustment.state != AdjustmentState.PENDING:
        return
    adjustment.state = state
    adjustment.resolution = request.resolution
    adjustment.closed_at = timezone.now()
    adjustment.save(update_fields=["state", "resolution", "closed_at"])
    record(
        f"stock.adjustment_{state}",
        obj=adjustment,
        changes={"state": [AdjustmentState.PENDING, state], "reason": request.resolution},
    )
