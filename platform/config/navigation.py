"""Sidebar navigation. Each app adds its section here as it ships.

A section appears only when it exists and the person's role may see it; sections that
later features bring (Catalog, Inventory, Orders, Purchasing, Forecasts, Approvals,
Connections) register here with their permission when they land.
"""

from collections.abc import Callable
from dataclasses import dataclass

from django.urls import reverse

from accounts.roles import has_permission


@dataclass(frozen=True)
class Section:
    label: str
    url_name: str
    permission: str
    # A count shown beside the label (e.g. approvals waiting for this person).
    badge: Callable[[object], int] | None = None


def _approvals_waiting(user) -> int:
    from approvals.services import pending_count_for

    return pending_count_for(user)


def _shipment_exceptions_open(user) -> int:
    from shipping.services import open_exception_count

    return open_exception_count()


SECTIONS: list[Section] = [
    Section("Dashboard", "dashboard", "dashboard.view"),
    # Unmapped listings, warehouses, transfers, counts and holds are tabs inside these two;
    # imports have their own section because Buyers use them without touching stock.
    Section("Catalog", "catalog:sku_list", "catalog.view"),
    Section("Inventory", "inventory:stock", "stock.view"),
    Section("Orders", "orders:list", "orders.view"),
    Section("Review queue", "orders:review", "orders.manage"),
    Section("Purchasing", "purchasing:po_list", "purchasing.view"),
    Section("Forecasts", "forecasting:overview", "forecasting.view"),
    Section("Replenishment", "replenishment:board", "forecasting.view"),
    Section("Shipping", "shipping:list", "shipping.view"),
    Section("Exceptions", "shipping:exceptions", "shipping.view", badge=_shipment_exceptions_open),
    Section("Approvals", "approvals:inbox", "approvals.view", badge=_approvals_waiting),
    Section("Connections", "sync:connections", "connections.view"),
    Section("Imports", "imports:upload", "catalog.import"),
    Section("Team", "accounts:team", "team.view"),
    Section("API keys", "accounts:api_keys", "apikeys.view"),
    Section("Webhooks", "webhooks:endpoints", "webhooks.manage"),
    Section("Activity", "audit:activity", "activity.view"),
    Section("Workers", "worker_health", "workers.view"),
    Section("Settings", "accounts:brand_settings", "brand.view"),
]


def visible_sections(user, current: str = "", namespace: str = "") -> list[dict]:
    """Sections the person may open; `active` marks the one the current page belongs to
    (its own URL, or any page in its app namespace)."""
    out = []
    # Orders has two sections in one namespace (Orders, Review queue): a page that is no
    # section's own marks only the first section of its namespace.
    claimed = current in {s.url_name for s in SECTIONS}
    marked: set[str] = set()
    for s in SECTIONS:
        if not has_permission(user, s.permission):
            continue
        ns = s.url_name.partition(":")[0] if ":" in s.url_name else ""
        active = current == s.url_name or bool(
            ns and ns == namespace and not claimed and ns not in marked
        )
        if ns:
            marked.add(ns)
        out.append(
            {
                "label": s.label,
                "url": reverse(s.url_name),
                "url_name": s.url_name,
                "active": active,
                "badge": s.badge(user) if s.badge else None,
                "badge_id": "nav-count-" + s.url_name.replace(":", "-"),
            }
        )
    return out
