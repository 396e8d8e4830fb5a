"""Apps' dashboard panels: shown to who may see them, hidden when they have nothing."""

import copy

import pytest

from accounts.roles import Role
from config import dashboard
from tests.conftest import brand_client, make_user


@pytest.fixture
def panels():
    saved = dict(dashboard._PANELS)
    dashboard._PANELS.clear()
    yield dashboard
    dashboard._PANELS.clear()
    dashboard._PANELS.update(saved)


@pytest.mark.django_db
def test_panels_follow_permissions_and_their_context(brand_a, panels, tmp_path, settings):
    (tmp_path / "panel.html").write_text("<p>{{ panel.line }}</p>")
    # Assign a new value (not an in-place edit) so Django resets its template engines.
    templates = copy.deepcopy(settings.TEMPLATES)
    templates[0]["DIRS"] = [*templates[0]["DIRS"], str(tmp_path)]
    settings.TEMPLATES = templates
    panels.register(
        dashboard.Panel(
            "late", "Late things", "panel.html", "orders.manage", lambda u: {"line": "3 late"}
        )
    )
    panels.register(
        dashboard.Panel("quiet", "Nothing today", "panel.html", "dashboard.view", lambda u: None)
    )

    ops = brand_client(brand_a, make_user(brand_a, role=Role.OPS_MANAGER)).get("/")
    viewer = brand_client(brand_a, make_user(brand_a, role=Role.VIEWER)).get("/")

    assert "Late things" in ops.text and "3 late" in ops.text
    assert "Late things" not in viewer.text
    assert "Nothing today" not in ops.text
