"""A policy's rules as one immutable value: what requests are judged by.

A request keeps the rules of the policy version it was opened under (a JSON snapshot in
`ApprovalPolicyVersion.rules`), so editing a policy never changes who may decide a
request already waiting.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from accounts.roles import Role
from approvals.registry import Facts

RULE_FIELDS = [
    "amount_above",
    "variance_above",
    "sku_tags",
    "suppliers",
    "approvers",
    "required_approvals",
    "allow_self_approval",
    "auto_approve_up_to",
    "escalate_after",
    "escalate_to",
    "expire_after",
]


def money(amount: Decimal | None, currency: str) -> str:
    return "unknown" if amount is None else f"{amount:,.2f} {currency}"


def _dec(value: Any) -> Decimal | None:
    return None if value is None or value == "" else Decimal(str(value))


def _seconds(value: timedelta | None) -> int | None:
    return None if value is None else int(value.total_seconds())


def _duration(value: Any) -> timedelta | None:
    if value is None:
        return None
    return value if isinstance(value, timedelta) else timedelta(seconds=int(value))


@dataclass(frozen=True)
class Rules:
    amount_above: Decimal | None = None
    variance_above: Decimal | None = None
    sku_tags: tuple[str, ...] = ()
    suppliers: tuple[str, ...] = ()
    # role -> most it may approve (None: any amount). Order is display order.
    approvers: tuple[tuple[str, Decimal | None], ...] = ()
    required_approvals: int = 1
    allow_self_approval: bool = False
    auto_approve_up_to: Decimal | None = None
    escalate_after: timedelta | None = None
    escalate_to: tuple[str, ...] = ()
    expire_after: timedelta | None = None

    # --- (de)serialisation ---------------------------------------------------------------

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> Rules:
        """From model fields or a JSON snapshot (decimals as strings, durations in s)."""
        approvers = values.get("approvers") or {}
        return cls(
            amount_above=_dec(values.get("amount_above")),
            variance_above=_dec(values.get("variance_above")),
            sku_tags=tuple(t.lower() for t in values.get("sku_tags") or ()),
            suppliers=tuple(s.lower() for s in values.get("suppliers") or ()),
            approvers=tuple(
                (role, _dec(limit))
                for role, limit in sorted(
                    approvers.items(),
                    key=lambda item: Role.values.index(item[0]) if item[0] in Role.values else 99,
                )
            ),
            required_approvals=int(values.get("required_approvals") or 1),
            allow_self_approval=bool(values.get("allow_self_approval")),
            auto_approve_up_to=_dec(values.get("auto_approve_up_to")),
            escalate_after=_duration(values.get("escalate_after")),
            escalate_to=tuple(values.get("escalate_to") or ()),
            expire_after=_duration(values.get("expire_after")),
        )

    @classmethod
    def of(cls, policy) -> Rules:
        return cls.from_values({name: getattr(policy, name) for name in RULE_FIELDS})

    def as_json(self) -> dict[str, Any]:
        return {
            "amount_above": None if self.amount_above is None else str(self.amount_above),
            "variance_above": None if self.variance_above is None else str(self.variance_above),
            "sku_tags": list(self.sku_tags),
            "suppliers": list(self.suppliers),
            "approvers": {
                role: None if limit is None else str(limit) for role, limit in self.approvers
            },
            "required_approvals": self.required_approvals,
            "allow_self_approval": self.allow_self_approval,
            "auto_approve_up_to": (
                None if self.auto_approve_up_to is None else str(self.auto_approve_up_to)
            ),
            "escalate_after": _seconds(self.escalate_after),
            "escalate_to": list(self.escalate_to),
            "expire_after": _seconds(self.expire_after),
        }

    # --- conditions ----------------------------------------------------------------------

    @property
    def is_always(self) -> bool:
        return (
            self.amount_above is None
            and self.variance_above is None
            and not self.sku_tags
            and not self.suppliers
        )

    def match(self, facts: Facts, currency: str) -> list[str] | None:
        """Reasons every condition holds for `facts`, or None when one does not.

        Unknown amounts and variances satisfy their condition: a gate must not open
        because a number is missing.
        """
        reasons: list[str] = []
        if self.amount_above is not None:
            if facts.amount is None:
                reasons.append("its value is unknown, so it may be above the threshold")
            elif facts.amount > self.amount_above:
                reasons.append(
                    f"{money(facts.amount, currency)} is above {money(self.amount_above, currency)}"
                )
            else:
                return None
        if self.variance_above is not None:
            if facts.variance_pct is None:
                reasons.append("its variance is unknown, so it may be above the threshold")
            elif facts.variance_pct > self.variance_above:
                reasons.append(
                    f"a variance of {facts.variance_pct:.1f}% is above {self.variance_above}%"
                )
            else:
                return None
        if self.sku_tags:
            hit = sorted({t.lower() for t in facts.tags} & set(self.sku_tags))
            if not hit:
                return None
            reasons.append(f"tagged {', '.join(hit)}")
        if self.suppliers:
            if facts.supplier.lower() not in self.suppliers:
                return None
            reasons.append(f"supplier {facts.supplier}")
        return reasons or ["the policy applies always"]

    def auto_approves(self, amount: Decimal | None) -> bool:
        return (
            self.auto_approve_up_to is not None
            and amount is not None
            and amount <= self.auto_approve_up_to
        )

    # --- who decides ---------------------------------------------------------------------

    def eligible_roles(self, *, escalated: bool) -> list[str]:
        roles = [role for role, _ in self.approvers]
        if escalated:
            roles += [role for role in self.escalate_to if role not in roles]
        return roles

    def limit_for(self, role: str, *, escalated: bool) -> tuple[bool, Decimal | None]:
        """(eligible, limit) for a role; escalation adds its roles without a limit."""
        for name, limit in self.approvers:
            if name == role:
                return True, limit
        if escalated and role in self.escalate_to:
            return True, None
        return False, None

    def may_decide(self, role: str, amount: Decimal | None, *, escalated: bool) -> bool:
        eligible, limit = self.limit_for(role, escalated=escalated)
        if not eligible:
            return False
        # An unknown amount is beyond every limit: only unlimited roles may decide it.
        return limit is None or (amount is not None and amount <= limit)

    def describe_approvers(self, currency: str) -> str:
        parts = [
            f"{Role(role).label}" + ("" if limit is None else f" up to {money(limit, currency)}")
            for role, limit in self.approvers
            if role in Role.values
        ]
        text = ", ".join(parts)
        if self.required_approvals > 1:
            text += f"; {self.required_approvals} different people must approve"
        return text

    def describe_conditions(self, currency: str) -> str:
        if self.is_always:
            return "Always"
        parts = []
        if self.amount_above is not None:
            parts.append(f"amount above {money(self.amount_above, currency)}")
        if self.variance_above is not None:
            parts.append(f"variance above {self.variance_above}%")
        if self.sku_tags:
            parts.append(f"SKU tagged {' or '.join(self.sku_tags)}")
        if self.suppliers:
            parts.append(f"supplier {' or '.join(self.suppliers)}")
        text = " and ".join(parts)
        return text[0].upper() + text[1:]
