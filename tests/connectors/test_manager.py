"""Plugin discovery: built-ins and entry points through one manager, broken plugins isolated."""

from __future__ import annotations

import logging
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pluggy
import pytest

import connectors.sandbox as sandbox_plugin
import connectors.shopify as shopify_plugin
from connectors import manager
from connectors.manager import (
    DEFAULT_PLUGINS,
    ENTRY_POINT_GROUP,
    get_plugin_manager,
    make_test_manager,
)
from tests.connectors import sample_plugins

ROOT = Path(__file__).resolve().parents[2]


def ep(name: str, value: str) -> metadata.EntryPoint:
    return metadata.EntryPoint(name=name, value=value, group=ENTRY_POINT_GROUP)


@pytest.fixture
def entry_points(monkeypatch: pytest.MonkeyPatch):
    """Replace installed entry points with the given ones for one test."""
    get_plugin_manager.cache_clear()
    installed: list[metadata.EntryPoint] = []
    monkeypatch.setattr(manager, "_entry_points", lambda: list(installed))
    yield installed
    get_plugin_manager.cache_clear()


def names(pm) -> set[str]:
    return {info.name for batch in pm.hook.keel_connector_info() for info in batch}


def test_builtins_register_through_the_manager_without_installation(entry_points):
    pm = get_plugin_manager()
    assert {"shopify", "threepl", "sandbox", "shippo", "easypost", "ltl"} <= {
        n for n, _ in pm.list_name_plugin()
    }
    assert names(pm) == {
        "shopify",
        "threepl",
        "sandbox_channel",
        "sandbox_3pl",
        "sandbox_carrier",
        "shippo",
        "easypost",
        "ltl_broker",
        "ltl_direct",
        "amazon",
    }
    assert all(pm.sources[m.rsplit(".", 1)[-1]].builtin for m in DEFAULT_PLUGINS)
    assert pm.load_errors == {}


def test_manager_is_cached_per_allowlist(entry_points):
    assert get_plugin_manager() is get_plugin_manager()
    assert get_plugin_manager(["a"]) is get_plugin_manager(("a",))
    assert get_plugin_manager(["a"]) is not get_plugin_manager()


def test_entry_point_plugins_load_and_the_allowlist_filters_them(entry_points):
    entry_points.append(ep("acme", "tests.connectors.sample_plugins:good"))
    assert "acme_post" in names(get_plugin_manager())
    assert "acme_post" not in names(get_plugin_manager(allowlist=[]))
    assert "acme_post" in names(get_plugin_manager(allowlist=["acme"]))
    described = {d.source.name: d for d in get_plugin_manager().describe()}
    assert [i.name for i in described["acme"].connectors] == ["acme_post"]
    assert not described["acme"].source.builtin


def test_blocked_plugins_are_not_registered(entry_points):
    pm = get_plugin_manager(blocked=["sandbox"])
    assert not {"sandbox_channel", "sandbox_3pl", "sandbox_carrier"} & names(pm)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("keel_no_such_module_xyz", "ModuleNotFoundError"),
        ("tests.connectors.sample_plugins:misspelled", "PluginValidationError"),
        ("tests.connectors.sample_plugins:not_info", "TypeError"),
        ("tests.connectors.sample_plugins:steals_shopify", "ValueError"),
        ("tests.connectors.sample_plugins:wrong_arguments", "PluginValidationError"),
    ],
)
def test_a_broken_plugin_is_logged_and_skipped_not_fatal(
    entry_points, caplog: pytest.LogCaptureFixture, value: str, reason: str
):
    entry_points.extend([ep("broken", value), ep("acme", "tests.connectors.sample_plugins:good")])
    with caplog.at_level(logging.ERROR, logger="connectors.manager"):
        pm = get_plugin_manager()
    assert pm.load_errors["broken"].startswith(reason)
    assert pm.get_plugin("broken") is None
    assert "acme_post" in names(pm) and "shopify" in names(pm)
    assert "broken" in caplog.text
    pm.check_pending()  # what is left is consistent
    # the genuine Shopify connector still answers its name
    assert (
        next(i for b in pm.hook.keel_connector_info() for i in b if i.name == "shopify").version
        != "6.6.6"
    )


def test_an_installed_keel_is_not_registered_twice(entry_points, caplog):
    # Keel's own pyproject declares the built-ins under the same names.
    entry_points.append(ep("shopify", "connectors.shopify"))
    pm = get_plugin_manager()
    assert pm.load_errors == {}
    assert [n for n, _ in pm.list_name_plugin()].count("shopify") == 1


def test_a_third_party_plugin_cannot_take_a_builtin_name(entry_points, caplog):
    entry_points.append(ep("shopify", "tests.connectors.sample_plugins:good"))
    with caplog.at_level(logging.WARNING, logger="connectors.manager"):
        pm = get_plugin_manager()
    assert "acme_post" not in names(pm)
    assert "name is taken" in caplog.text


def test_factory_is_firstresult_and_none_for_unknown_names():
    pm = make_test_manager(sandbox_plugin, sample_plugins.good)
    assert (
        pm.hook.keel_connector_factory(
            name="nothing", settings={}, credentials={}, http=None, state=None, clock=None
        )
        is None
    )
    made = pm.hook.keel_connector_factory(
        name="acme_post", settings={}, credentials={}, http=None, state=None, clock=None
    )
    assert made is not None and not isinstance(made, list)


def test_test_manager_holds_only_the_given_plugins():
    pm = make_test_manager(shopify_plugin)
    assert names(pm) == {"shopify"}
    with pytest.raises(pluggy.PluginValidationError):
        make_test_manager(sample_plugins.misspelled)
    with pytest.raises(ValueError):
        make_test_manager(shopify_plugin, sample_plugins.steals_shopify)


def test_entry_points_are_loaded_lazily_and_connectors_never_import_django():
    code = (
        "import sys, connectors.manager, connectors.testing, connectors.http\n"
        "assert 'connectors.shopify' not in sys.modules, 'built-ins imported at import time'\n"
        "assert not [m for m in sys.modules if m == 'django' or m.startswith('django.')]\n"
        "pm = connectors.manager.get_plugin_manager()\n"
        "assert 'connectors.shopify' in sys.modules\n"
        "assert not [m for m in sys.modules if m == 'django' or m.startswith('django.')]\n"
    )
    subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, check=True, env={"PYTHONPATH": str(ROOT)}
    )


def test_connectors_package_imports_nothing_from_django_or_the_platform():
    import ast

    platform_apps = {p.name for p in (ROOT / "platform").iterdir() if p.is_dir()}
    forbidden = {"django", "rest_framework", "celery", "tenants", *platform_apps}
    for path in (ROOT / "connectors").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules = [node.module]
            else:
                continue
            for module in modules:
                assert module.split(".")[0] not in forbidden, f"{path}: imports {module}"
