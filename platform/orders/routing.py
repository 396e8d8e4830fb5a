"""The routing engine: pure functions from facts to a decision (no database, no clock).

Layer 1 — hard rules: the first active rule whose conditions all hold decides. Its
actions may name the warehouse (`ship_from`), rank warehouses (`prefer`), demand a
capability (`require_capability`) or the ship type (`ship_type`). A `ship_from`
warehouse that cannot fill the whole order hands the order to layer 2 with that
warehouse preferred.

Layer 2 — scoring: candidate plans (every warehouse that fills the order alone; failing
that, the fewest-warehouse splits) are scored on distance to the customer, stock cover
left behind, being before the warehouse's cutoff, number of packages and, when delivery
history exists for the lanes from the plan's warehouses to the customer's state, carrier
on-time performance on those lanes. The best plan wins with a confidence from its margin
over the runner-up; below the brand's threshold the order goes to layer 3 (people).

A line goes wholly to one warehouse (no quantity splits within a line). The same facts
always give the same decision: ties break on warehouse priority then id.

Rule vocabulary (JSON on orders.Rule):
  conditions: country_in, state_in, postal_prefix_in, channel_in, order_type_in,
              service_level_in, sku_tag_any, weight_kg_gte, weight_kg_lt,
              order_value_gte, order_value_lt (brand currency; an order in another
              currency matches no value condition)
  actions:    ship_from (warehouse code), prefer (list of codes),
              require_capability (capability), ship_type ("parcel" | "ltl")
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from itertools import combinations
from zoneinfo import ZoneInfo

CONDITION_KEYS = {
    "country_in",
    "state_in",
    "postal_prefix_in",
    "channel_in",
    "order_type_in",
    "service_level_in",
    "sku_tag_any",
    "weight_kg_gte",
    "weight_kg_lt",
    "order_value_gte",
    "order_value_lt",
}
ACTION_KEYS = {"ship_from", "prefer", "require_capability", "ship_type"}
LIST_CONDITIONS = CONDITION_KEYS - {
    "weight_kg_gte",
    "weight_kg_lt",
    "order_value_gte",
    "order_value_lt",
}
MAX_DISTANCE_KM = 4500.0
# A score lead of this many points over the runner-up gives full confidence.
CONFIDENT_MARGIN = 0.3

# Approximate population centres of US states (lat, lon): enough to rank warehouses.
US_STATE_CENTROIDS: dict[str, tuple[float, float]] = {
    "AL": (32.8, -86.8),
    "AK": (61.4, -150.0),
    "AZ": (33.7, -111.9),
    "AR": (34.9, -92.4),
    "CA": (36.2, -119.4),
    "CO": (39.6, -105.0),
    "CT": (41.6, -72.7),
    "DE": (39.3, -75.5),
    "DC": (38.9, -77.0),
    "FL": (27.8, -81.7),
    "GA": (33.0, -83.6),
    "HI": (21.1, -157.5),
    "ID": (44.2, -115.0),
    "IL": (41.3, -88.4),
    "IN": (39.8, -86.3),
    "IA": (42.0, -93.2),
    "KS": (38.5, -96.7),
    "KY": (37.7, -84.7),
    "LA": (30.7, -91.5),
    "ME": (44.7, -69.4),
    "MD": (39.1, -76.8),
    "MA": (42.2, -71.5),
    "MI": (42.9, -84.2),
    "MN": (45.7, -93.9),
    "MS": (32.7, -89.7),
    "MO": (38.5, -92.3),
    "MT": (46.9, -110.5),
    "NE": (41.1, -97.0),
    "NV": (37.0, -116.8),
    "NH": (43.5, -71.6),
    "NJ": (40.3, -74.5),
    "NM": (34.8, -106.2),
    "NY": (41.5, -74.4),
    "NC": (35.6, -79.4),
    "ND": (47.5, -99.8),
    "OH": (40.4, -82.8),
    "OK": (35.6, -96.9),
    "OR": (44.6, -122.1),
    "PA": (40.6, -77.2),
    "RI": (41.7, -71.5),
    "SC": (33.9, -80.9),
    "SD": (44.3, -99.4),
    "TN": (35.7, -86.7),
    "TX": (31.1, -97.6),
    "UT": (40.2, -111.9),
    "VT": (44.0, -72.7),
    "VA": (37.8, -78.2),
    "WA": (47.4, -121.5),
    "WV": (38.5, -80.9),
    "WI": (44.3, -89.6),
    "WY": (42.8, -107.3),
}


@dataclass(frozen=True)
class WarehouseInfo:
    id: int
    code: str
    country: str
    state: str
    lat: float | None
    lon: float | None
    capabilities: frozenset[str]
    priority: int
    cutoff: tuple[int, int] | None = None  # (hour, minute) local
    timezone: str = "UTC"
    postal_code: str = ""


@dataclass(frozen=True)
class LineInfo:
    line_id: int
    sku_id: int
    quantity: int
    tags: frozenset[str] = frozenset()
    weight_g: float = 0.0
    hazmat: bool = False
    # For bundles: ((component_sku_id, per_bundle), …); stock is checked on components.
    components: tuple[tuple[int, int], ...] = ()
    code: str = ""  # for explanations only

    def needs(self) -> dict[int, int]:
        if self.components:
            return {sku: per * self.quantity for sku, per in self.components}
        return {self.sku_id: self.quantity}


@dataclass(frozen=True)
class OrderFacts:
    channel: str
    order_type: str
    service_level: str
    country: str
    state: str
    postal_code: str
    # In the brand's currency; None for an order in another currency (Keel does not
    # convert), which no value condition matches.
    value: Decimal | None
    lines: tuple[LineInfo, ...]
    now: datetime

    @property
    def weight_kg(self) -> float:
        return sum(line.weight_g * line.quantity for line in self.lines) / 1000.0

    @property
    def tags(self) -> frozenset[str]:
        return frozenset().union(*(line.tags for line in self.lines)) if self.lines else frozenset()


@dataclass(frozen=True)
class RuleInfo:
    id: int
    name: str
    position: int
    conditions: dict
    actions: dict


@dataclass(frozen=True)
class Plan:
    """warehouse_id → line ids it ships, ordered by warehouse id."""

    allocations: tuple[tuple[int, tuple[int, ...]], ...]

    @property
    def warehouse_ids(self) -> tuple[int, ...]:
        return tuple(w for w, _ in self.allocations)

    def as_json(self, codes: dict[int, str]) -> dict:
        return {codes[w]: list(lines) for w, lines in self.allocations}


@dataclass
class Decision:
    layer: str  # rules | scoring | review | hold
    plan: Plan | None
    confidence: float | None
    explanation: str
    rule: RuleInfo | None = None
    ship_type: str | None = None
    hold_reason: str = ""
    candidates: list[dict] = field(default_factory=list)


# --- Rules -----------------------------------------------------------------------------


def validate_rule(conditions: dict, actions: dict, warehouse_codes: set[str]) -> list[str]:
    """Problems with a rule, in words; empty when it is valid."""
    problems = []
    for key in set(conditions) - CONDITION_KEYS:
        problems.append(f"Unknown condition {key!r}.")
    for key in set(actions) - ACTION_KEYS:
        problems.append(f"Unknown action {key!r}.")
    for key in LIST_CONDITIONS & set(conditions):
        value = conditions[key]
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            problems.append(f"{key} needs a non-empty list of strings.")
    for key in CONDITION_KEYS - LIST_CONDITIONS & set(conditions):
        try:
            float(conditions[key])
        except (TypeError, ValueError):
            problems.append(f"{key} needs a number.")
    codes = [actions["ship_from"]] if "ship_from" in actions else []
    codes += actions.get("prefer", []) if isinstance(actions.get("prefer", []), list) else []
    for code in codes:
        if code not in warehouse_codes:
            problems.append(f"Unknown warehouse {code!r}.")
    if "ship_type" in actions and actions["ship_type"] not in ("parcel", "ltl"):
        problems.append("ship_type is parcel or ltl.")
    if not actions:
        problems.append("A rule needs at least one action.")
    return problems


def rule_matches(rule: RuleInfo, facts: OrderFacts) -> bool:
    c = rule.conditions
    checks = [
        ("country_in", lambda v: facts.country.upper() in {x.upper() for x in v}),
        ("state_in", lambda v: facts.state.upper() in {x.upper() for x in v}),
        (
            "postal_prefix_in",
            lambda v: any(facts.postal_code.upper().startswith(p.upper()) for p in v),
        ),
        ("channel_in", lambda v: facts.channel in v),
        ("order_type_in", lambda v: facts.order_type in v),
        ("service_level_in", lambda v: facts.service_level in v),
        ("sku_tag_any", lambda v: bool(facts.tags & set(v))),
        ("weight_kg_gte", lambda v: facts.weight_kg >= float(v)),
        ("weight_kg_lt", lambda v: facts.weight_kg < float(v)),
        ("order_value_gte", lambda v: facts.value is not None and facts.value >= Decimal(str(v))),
        ("order_value_lt", lambda v: facts.value is not None and facts.value < Decimal(str(v))),
    ]
    return all(check(c[key]) for key, check in checks if key in c)


def first_matching_rule(rules: list[RuleInfo], facts: OrderFacts) -> RuleInfo | None:
    for rule in sorted(rules, key=lambda r: r.position):
        if rule_matches(rule, facts):
            return rule
    return None


# --- Plans and scoring -----------------------------------------------------------------


def _can_fill(wh: int, lines: list[LineInfo], atp: dict[tuple[int, int], int]) -> bool:
    needs: dict[int, int] = defaultdict(int)
    for line in lines:
        for sku, qty in line.needs().items():
            needs[sku] += qty
    return all(atp.get((sku, wh), 0) >= qty for sku, qty in needs.items())


def candidate_plans(
    facts: OrderFacts, warehouses: list[WarehouseInfo], atp: dict[tuple[int, int], int]
) -> list[Plan]:
    """Every single-warehouse plan; else the fewest-warehouse splits (lines kept whole)."""
    lines = list(facts.lines)
    ids = [w.id for w in warehouses]
    singles = [
        Plan(((w, tuple(line.line_id for line in lines)),)) for w in ids if _can_fill(w, lines, atp)
    ]
    if singles:
        return singles
    for size in range(2, min(len(ids), len(lines)) + 1):
        plans = set()
        for group in combinations(ids, size):
            plan = _assign(lines, group, atp)
            if plan is not None:
                plans.add(plan)
        if plans:
            return sorted(plans, key=lambda p: p.allocations)
        if size >= 3:
            break  # beyond three warehouses the search explodes; people decide
    return []


def _assign(lines: list[LineInfo], group: tuple[int, ...], atp) -> Plan | None:
    """Give each line to the first warehouse of `group` that still has stock for it;
    every warehouse in the group must get at least one line (else a smaller plan exists)."""
    left = {(sku, w): atp.get((sku, w), 0) for line in lines for sku in line.needs() for w in group}
    out: dict[int, list[int]] = defaultdict(list)
    # Biggest lines first: they are the hard ones to place.
    for line in sorted(lines, key=lambda ln: (-ln.quantity, ln.line_id)):
        for w in group:
            if all(left[(sku, w)] >= qty for sku, qty in line.needs().items()):
                for sku, qty in line.needs().items():
                    left[(sku, w)] -= qty
                out[w].append(line.line_id)
                break
        else:
            return None
    if set(out) != set(group):
        return None
    return Plan(tuple(sorted((w, tuple(sorted(ls))) for w, ls in out.items())))


def haversine_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * 6371.0 * math.asin(math.sqrt(h))


def destination_point(facts: OrderFacts) -> tuple[float, float] | None:
    if facts.country.upper() == "US":
        return US_STATE_CENTROIDS.get(facts.state.upper())
    return None


def _before_cutoff(wh: WarehouseInfo, now: datetime) -> bool:
    if wh.cutoff is None:
        return True
    local = now.astimezone(ZoneInfo(wh.timezone))
    return (local.hour, local.minute) < wh.cutoff


@dataclass(frozen=True)
class Weights:
    distance: float = 0.45
    cover: float = 0.20
    cutoff: float = 0.15
    packages: float = 0.20
    preferred_bonus: float = 0.10
    # Counted only when some candidate warehouse has delivery history to the customer's
    # state; without any, every plan would score the same on it.
    carrier: float = 0.15


# A warehouse with few deliveries on a lane is pulled toward the others' on-time rate:
# this many deliveries of the pooled rate are added to its own record.
CARRIER_PRIOR_DELIVERIES = 10


@dataclass(frozen=True)
class CarrierRecord:
    """Deliveries with a known on-time outcome from warehouses to this order's destination:
    warehouse id → (on time, timed). Empty when there is no history."""

    lanes: dict[int, tuple[int, int]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return any(timed for _, timed in self.lanes.values())

    @property
    def pooled(self) -> float:
        on_time = sum(o for o, _ in self.lanes.values())
        timed = sum(t for _, t in self.lanes.values())
        return on_time / timed if timed else 0.0

    def rate(self, warehouse_id: int) -> float:
        on_time, timed = self.lanes.get(warehouse_id, (0, 0))
        k = CARRIER_PRIOR_DELIVERIES
        return (on_time + k * self.pooled) / (timed + k)


def score_plan(
    plan: Plan,
    facts: OrderFacts,
    warehouses: dict[int, WarehouseInfo],
    atp: dict[tuple[int, int], int],
    weights: Weights,
    preferred: frozenset[int] = frozenset(),
    carrier: CarrierRecord | None = None,
) -> dict:
    lines = {line.line_id: line for line in facts.lines}
    dest = destination_point(facts)
    distances, covers, units_total, cutoff_ok = [], [], 0, 0
    for wh_id, line_ids in plan.allocations:
        wh = warehouses[wh_id]
        units = sum(lines[i].quantity for i in line_ids)
        units_total += units
        if dest is not None and wh.lat is not None and wh.lon is not None:
            distances.append((haversine_km((wh.lat, wh.lon), dest), units))
        elif wh.country.upper() == facts.country.upper():
            distances.append((MAX_DISTANCE_KM / 3, units))
        else:
            distances.append((MAX_DISTANCE_KM, units))
        for i in line_ids:
            for sku, qty in lines[i].needs().items():
                have = atp.get((sku, wh_id), 0)
                covers.append((have - qty) / have if have else 0.0)
        cutoff_ok += _before_cutoff(wh, facts.now)
    km = sum(d * u for d, u in distances) / max(units_total, 1)
    parts = {
        "distance": 1 - min(km, MAX_DISTANCE_KM) / MAX_DISTANCE_KM,
        "cover": min(covers) if covers else 0.0,
        "cutoff": cutoff_ok / len(plan.allocations),
        "packages": 1 / len(plan.allocations),
    }
    if carrier:
        # Units-weighted, like distance: the part shipping most of the order counts most.
        parts["carrier"] = sum(
            carrier.rate(wh_id) * sum(lines[i].quantity for i in line_ids)
            for wh_id, line_ids in plan.allocations
        ) / max(units_total, 1)
    total = sum(getattr(weights, k) * v for k, v in parts.items())
    if preferred & set(plan.warehouse_ids):
        total += weights.preferred_bonus
    return {
        "warehouses": [warehouses[w].code for w in plan.warehouse_ids],
        "score": round(total, 4),
        "parts": {k: round(v, 4) for k, v in parts.items()},
        "distance_km": round(km),
    }


# --- The decision ----------------------------------------------------------------------


def decide(
    facts: OrderFacts,
    *,
    warehouses: list[WarehouseInfo],
    atp: dict[tuple[int, int], int],
    rules: list[RuleInfo],
    threshold: float,
    weights: Weights = Weights(),
    exclude: frozenset[int] = frozenset(),
    carrier: CarrierRecord | None = None,
) -> Decision:
    """Route one order. `exclude` removes warehouses (e.g. one that rejected it);
    `carrier` is the on-time history from the warehouses to the order's destination."""
    by_id = {w.id: w for w in warehouses if w.id not in exclude}
    codes = {w.id: w.code for w in warehouses}
    by_code = {w.code: w for w in by_id.values()}
    rule = first_matching_rule(rules, facts)
    actions = rule.actions if rule else {}
    ship_type = actions.get("ship_type")
    required = set()
    if any(line.hazmat for line in facts.lines):
        required.add("hazmat")
    if actions.get("require_capability"):
        required.add(actions["require_capability"])
    eligible = [w for w in by_id.values() if required <= w.capabilities]
    eligible.sort(key=lambda w: (w.priority, w.id))
    rule_note = f"Rule “{rule.name}”" if rule else "No rule matched"

    preferred: list[int] = []
    if "ship_from" in actions:
        target = by_code.get(actions["ship_from"])
        if (
            target is not None
            and target in eligible
            and _can_fill(target.id, list(facts.lines), atp)
        ):
            plan = Plan(((target.id, tuple(line.line_id for line in facts.lines)),))
            return Decision(
                "rules",
                plan,
                1.0,
                f"{rule_note} ships everything from {target.code}.",
                rule=rule,
                ship_type=ship_type,
            )
        if target is not None:
            preferred.append(target.id)
            why = "cannot ship it" if target not in eligible else "is short of stock"
            rule_note += f" wanted {target.code}, which {why}"
        else:
            rule_note += f" names warehouse {actions['ship_from']}, which is not available"
    for code in actions.get("prefer", []):
        if code in by_code:
            preferred.append(by_code[code].id)

    plans = candidate_plans(facts, eligible, atp)
    if not plans:
        need = ", ".join(sorted({line.code or f"SKU #{line.sku_id}" for line in facts.lines}))
        return Decision(
            "hold",
            None,
            None,
            f"{rule_note}; no warehouse{' with ' + ', '.join(sorted(required)) if required else ''}"
            f" has stock for the whole order, even split ({need}).",
            rule=rule,
            ship_type=ship_type,
            hold_reason="insufficient_stock",
        )
    scored = sorted(
        (
            (score_plan(p, facts, by_id, atp, weights, frozenset(preferred), carrier), p)
            for p in plans
        ),
        key=lambda sp: (
            -sp[0]["score"],
            [by_id[w].priority for w in sp[1].warehouse_ids],
            sp[1].warehouse_ids,
        ),
    )
    candidates = [dict(s, plan=p.as_json(codes)) for s, p in scored]
    best, best_plan = scored[0]
    if len(scored) == 1:
        confidence = 1.0 if len(best_plan.allocations) == 1 else 0.8
    else:
        second = scored[1][0]["score"]
        # The margin in score points decides: 0.03 (≈ 300 km, or a few days of cover) is a
        # coin toss worth a person's look at the default 0.60 threshold; 0.15 is certain.
        confidence = min(1.0, 0.5 + (best["score"] - second) / CONFIDENT_MARGIN)
    explanation = (
        f"{rule_note}; scored {len(scored)} plan{'s' if len(scored) > 1 else ''}: "
        f"{' + '.join(best['warehouses'])} is best (score {best['score']:.2f}, "
        f"~{best['distance_km']} km to the customer, {len(best_plan.allocations)} "
        f"package{'s' if len(best_plan.allocations) > 1 else ''}"
        + (
            f", {best['parts']['carrier']:.0%} on time to {facts.state or facts.country}"
            if "carrier" in best["parts"]
            else ""
        )
        + ")"
    )
    if len(scored) > 1:
        runner = scored[1][0]
        explanation += f", ahead of {' + '.join(runner['warehouses'])} ({runner['score']:.2f})"
    explanation += f". Confidence {confidence:.2f}."
    if confidence < threshold:
        return Decision(
            "review",
            best_plan,
            round(confidence, 3),
            explanation + f" Below the {threshold:.2f} threshold: a person decides.",
            rule=rule,
            ship_type=ship_type,
            hold_reason="awaiting_review",
            candidates=candidates,
        )
    return Decision(
        "scoring",
        best_plan,
        round(confidence, 3),
        explanation,
        rule=rule,
        ship_type=ship_type,
        candidates=candidates,
    )
