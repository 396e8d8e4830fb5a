"""`python manage.py connectors list`: built-ins, the pip-installed example, load errors."""

from __future__ import annotations

import json
from importlib import metadata
from io import StringIO

import pytest
from django.core.management import call_command

from connectors import manager
from sync import plugins


def run(*args: str) -> str:
    out = StringIO()
    call_command("connectors", *args, stdout=out)
    return out.getvalue()


def test_list_shows_builtins_and_the_installed_example_package():
    text = run("list")

    assert "shipbay  (keel-shipbay 0.1.0; module keel_shipbay)" in text
    assert "sandbox  (built in; module connectors.sandbox)" in text
    for line in (
        "shopify            channel",
        "threepl            3pl",
        "sandbox_channel    channel",
        "sandbox_3pl        3pl",
        "sandbox_carrier    carrier",
        "shipbay            3pl      0.1.0    ShipBay",
    ):
        assert line in text
    assert "secrets: access_token, previous_webhook_secret, webhook_secret" in text
    assert text.rstrip().endswith("Failed to load: none")


@pytest.fixture
def broken_install(monkeypatch):
    """The installed entry points plus a package whose import fails."""
    installed = list(metadata.entry_points(group=manager.ENTRY_POINT_GROUP))
    broken = metadata.EntryPoint(
        name="brokenpkg", value="keel_no_such_module", group=manager.ENTRY_POINT_GROUP
    )
    monkeypatch.setattr(manager, "_entry_points", lambda: [*installed, broken])
    manager.get_plugin_manager.cache_clear()
    yield
    manager.get_plugin_manager.cache_clear()


def test_a_plugin_that_fails_to_load_is_listed_with_its_reason(broken_install):
    text = run("list")
    data = json.loads(run("list", "--json"))

    assert "Failed to load:\n  brokenpkg: ModuleNotFoundError" in text
    assert "shipbay" in {p["name"] for p in data["plugins"]}
    assert data["load_errors"]["brokenpkg"].startswith("ModuleNotFoundError")
    # the platform carries on with the plugins that loaded
    assert "shipbay" in plugins.infos()
