"""Sidebar navigation. Each app adds its section here as it ships.

A section appears only when it exists and the person's role may see it; sections that
later features bring (Catalog, Inventory, Orders, Purchasing, Forecasts, Approvals,
Connections) register here with their permission when they land.
"""

from dataclasses import dataclass

from django.urls import reverse

from accounts.roles import has_permission


@dataclass(frozen=True)
class Section:
    label: str
    url_name: str
    permission: str


SECTIONS: list[Section] = [
    Section("Dashboard", "dashboard", "dashboard.view"),
    Section("Team", "accounts:team", "team.view"),
    Section("API keys", "accounts:api_keys", "apikeys.view"),
    Section("Activity", "audit:activity", "activity.view"),
    Section("Workers", "worker_health", "workers.view"),
    Section("Settings", "accounts:brand_settings", "brand.view"),
]


def visible_sections(user) -> list[dict]:
    return [
        {"label": s.label, "url": reverse(s.url_name), "url_name": s.url_name}
        for s in SECTIONS
        if has_permission(user, s.permission)
    ]
