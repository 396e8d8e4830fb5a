"""Dashboard panels contributed by apps, so the dashboard never imports every app.

An app registers a panel from its `AppConfig.ready()`:

    from config.dashboard import Panel, register

    register(Panel(
        key="replenishment_exceptions",
        title="Replenishment exceptions",
        template="replenishment/_dashboard_panel.html",
        permission="forecasting.view",
        context=exceptions_context,     # (user) -> dict, or None to hide the panel today
        order=20,
    ))

The template is included with the context under `panel`. Panels are computed on every
dashboard view: keep `context` to a few indexed queries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from accounts.roles import has_permission


@dataclass(frozen=True)
class Panel:
    key: str
    title: str
    template: str
    permission: str
    context: Callable[[Any], dict | None]
    order: int = 100


_PANELS: dict[str, Panel] = {}


def register(panel: Panel) -> None:
    _PANELS[panel.key] = panel


def panels_for(user: Any) -> list[tuple[Panel, dict]]:
    """The panels `user` may see, in order, each with its context (hidden when None)."""
    shown = []
    for panel in sorted(_PANELS.values(), key=lambda p: (p.order, p.key)):
        if not has_permission(user, panel.permission):
            continue
        context = panel.context(user)
        if context is not None:
            shown.append((panel, context))
    return shown
