"""Subject types: how an app puts its drafts behind approval without approvals knowing it.

An app that drafts consequential things (purchasing's purchase orders, fulfillment's
labels, inventory's large stock adjustments) registers one `SubjectType` from its
`AppConfig.ready()`:

    from approvals.registry import Facts, SubjectType, register

    register(SubjectType(
        key="purchase_order",
        label="Purchase order",
        facts_of=po_facts,            # subject id -> Facts (amount in brand currency, …)
        on_approved=send_po,          # (request, continuation_key) -> None
        on_rejected=back_to_draft,    # (request) -> None; request.resolution is the reason
        context_for=po_context,       # (request) -> DecisionContext shown in the inbox
    ))

Contract for the callbacks (approvals.services calls them, nothing else does):
- They run inside the transaction that changes the request, after approvals took the
  subject's lock (`approvals.services.lock_subject`). Writes they make commit or roll back
  with the decision; anything external (emails, API calls) belongs in
  `transaction.on_commit`.
- `on_approved` runs exactly once per approved request. Its `continuation_key`
  ("approval_request:<id>") is unique: store it with the effect (a ledger reference, an
  outbound message id) so a retry can recognise work already done. Raising refuses the
  approval: nothing of the decision is kept and the approver sees the message.
- A subject app that edits a subject takes `lock_subject` before its own row lock and
  then calls `approvals.services.subject_changed`, so edits and decisions on one subject
  queue instead of deadlocking.

Policies are data (approvals.models.ApprovalPolicy) keyed by the same `key`; defaults for
the subject types Keel knows about exist from signup, whether or not their app has
registered yet.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from approvals.models import ApprovalRequest


@dataclass(frozen=True)
class Facts:
    """What policies look at, as the subject is now.

    `amount` is in the brand's currency; None means it cannot be valued (no unit cost,
    another currency), and a policy with an amount condition then requires approval:
    an unknown amount is never assumed small. The same holds for `variance_pct`.
    """

    title: str
    amount: Decimal | None = None
    variance_pct: Decimal | None = None
    tags: frozenset[str] = frozenset()
    supplier: str = ""
    # Bumped by the subject app on every edit; an approval covers one version.
    version: int = 1

    def as_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "amount": None if self.amount is None else str(self.amount),
            "variance_pct": None if self.variance_pct is None else str(self.variance_pct),
            "tags": sorted(self.tags),
            "supplier": self.supplier,
            "version": self.version,
        }


@dataclass(frozen=True)
class ContextTable:
    caption: str
    columns: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class DecisionContext:
    """What an approver needs on the page to decide, as display strings.

    `facts` are label/value pairs; `tables` carry lists (PO lines, competing rates);
    `warnings` say what would make approving fail or be unwise right now.
    """

    facts: list[tuple[str, str]] = field(default_factory=list)
    tables: list[ContextTable] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    link: tuple[str, str] | None = None  # (label, url) of the subject's own page


def _no_context(request: ApprovalRequest) -> DecisionContext:
    return DecisionContext()


@dataclass(frozen=True)
class SubjectType:
    key: str
    label: str
    facts_of: Callable[[str], Facts]
    on_approved: Callable[[ApprovalRequest, str], None]
    on_rejected: Callable[[ApprovalRequest], None]
    context_for: Callable[[ApprovalRequest], DecisionContext] = _no_context
    # An expired or cancelled request returns the subject as a rejection does unless the
    # type says otherwise. A request superseded by an edit calls nothing: the subject is
    # waiting on the request that replaced it.
    on_expired: Callable[[ApprovalRequest], None] | None = None
    on_cancelled: Callable[[ApprovalRequest], None] | None = None

    def expired(self, request: ApprovalRequest) -> None:
        (self.on_expired or self.on_rejected)(request)

    def cancelled(self, request: ApprovalRequest) -> None:
        (self.on_cancelled or self.on_rejected)(request)


_TYPES: dict[str, SubjectType] = {}

# Subject types Keel ships default policies for, named before their apps exist.
KNOWN_LABELS = {
    "purchase_order": "Purchase order",
    "shipping_label": "Shipping label",
    "freight_booking": "Freight booking",
    "routing_override": "Routing override",
    "stock_adjustment": "Stock adjustment",
    "connection_credential_change": "Connection credential change",
}


class UnknownSubjectType(LookupError):
    pass


def register(subject_type: SubjectType) -> SubjectType:
    """Add a subject type. Registering the same key twice is a bug, unless it is the same
    object (ready() may run twice in some test runners)."""
    existing = _TYPES.get(subject_type.key)
    if existing is not None and existing is not subject_type:
        raise ValueError(f"Subject type {subject_type.key!r} is already registered")
    _TYPES[subject_type.key] = subject_type
    return subject_type


def unregister(key: str) -> None:
    _TYPES.pop(key, None)


def get(key: str) -> SubjectType:
    try:
        return _TYPES[key]
    except KeyError:
        raise UnknownSubjectType(f"No subject type {key!r} is registered") from None


def is_registered(key: str) -> bool:
    return key in _TYPES


def label_for(key: str) -> str:
    if key in _TYPES:
        return _TYPES[key].label
    return KNOWN_LABELS.get(key) or key.replace("_", " ").capitalize()


def registered() -> list[SubjectType]:
    return sorted(_TYPES.values(), key=lambda t: t.label)


@contextlib.contextmanager
def temporarily(subject_type: SubjectType) -> Iterator[SubjectType]:
    """Register `subject_type` for the block, restoring whatever held its key before
    (tests register stand-ins, e.g. a purchase order before purchasing exists)."""
    previous = _TYPES.get(subject_type.key)
    _TYPES[subject_type.key] = subject_type
    try:
        yield subject_type
    finally:
        if previous is None:
            _TYPES.pop(subject_type.key, None)
        else:
            _TYPES[subject_type.key] = previous
