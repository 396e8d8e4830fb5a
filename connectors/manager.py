"""The plugin manager: which connectors exist in this deployment.

``get_plugin_manager()`` builds it on first use (never at import time), then returns the
same instance. It registers the built-in connectors (:data:`DEFAULT_PLUGINS`, the way
Datasette does, so they work even when Keel itself is not pip-installed) and every plugin
published under the entry point group ``keel.connectors`` that the operator's allowlist
admits. Built-ins and third-party plugins go through the same registration and validation.

A plugin that fails to import, to register, declares a hook that does not exist (caught by
``check_pending``), or answers ``keel_connector_info`` with something invalid is logged and
left out; the others load. ``pm.load_errors`` keeps the reasons for ``connectors list``.

Callers use the hooks directly::

    pm = get_plugin_manager(settings.KEEL_CONNECTOR_PLUGINS)
    infos = [info for batch in pm.hook.keel_connector_info() for info in batch]
    connector = pm.hook.keel_connector_factory(
        name="shopify", settings=..., credentials=..., http=..., state=..., clock=...
    )

Tests build a manager holding only the plugins under test with :func:`make_test_manager`,
so whatever happens to be installed never changes their results.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import logging
from collections.abc import Callable, Iterable
from importlib import metadata
from types import ModuleType
from typing import Any

import pluggy

from connectors import hookspecs
from connectors.types import ConnectorInfo

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "keel.connectors"

#: Built-in plugins, registered under the last part of their module name — the same names
#: their entry points use in Keel's pyproject.toml, so an installed Keel is not registered twice.
DEFAULT_PLUGINS: tuple[str, ...] = (
    "connectors.shopify",
    "connectors.threepl",
    "connectors.sandbox",
    "connectors.shippo",
    "connectors.easypost",
    "connectors.ltl",
    "connectors.amazon",
)


@dataclasses.dataclass(frozen=True, slots=True)
class PluginSource:
    """Where a registered plugin came from."""

    name: str
    module: str
    builtin: bool
    distribution: str = ""
    version: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class PluginDescription:
    """One row of ``connectors list``."""

    source: PluginSource
    connectors: tuple[ConnectorInfo, ...]


class KeelPluginManager(pluggy.PluginManager):
    """A :class:`pluggy.PluginManager` for the ``keel`` hooks that remembers where each
    plugin came from, which connector names it owns, and which plugins failed to load."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        self.add_hookspecs(hookspecs)
        self.sources: dict[str, PluginSource] = {}
        self.load_errors: dict[str, str] = {}
        self.connector_owners: dict[str, str] = {}

    def register_checked(self, plugin: object, source: PluginSource) -> None:
        """Register ``plugin`` and validate it; on any problem unregister it and raise.

        ``check_pending`` after each registration pins a misspelled hook (an implementation
        with no spec) on the plugin that brought it, not on the whole deployment.
        """
        name = source.name
        if self.get_plugin(name) is not None:
            raise ValueError(f"a plugin named {name!r} is already registered")
        self.register(plugin, name=name)
        try:
            self.check_pending()
            infos = self._infos_of(name)
        except Exception:
            self.unregister(name=name)
            raise
        for info in infos:
            self.connector_owners[info.name] = name
        self.sources[name] = source

    def connectors_of(self, plugin_name: str) -> list[ConnectorInfo]:
        """What ``plugin_name``'s ``keel_connector_info`` answers, type-checked."""
        infos: list[ConnectorInfo] = []
        for impl in self.hook.keel_connector_info.get_hookimpls():
            if impl.plugin_name != plugin_name:
                continue
            answer = impl.function()
            if not isinstance(answer, list | tuple):
                raise TypeError("keel_connector_info must return a list of ConnectorInfo")
            for info in answer:
                if not isinstance(info, ConnectorInfo):
                    raise TypeError(
                        f"keel_connector_info returned {type(info).__name__}, not ConnectorInfo"
                    )
                infos.append(info)
        return infos

    def _infos_of(self, plugin_name: str) -> list[ConnectorInfo]:
        infos = self.connectors_of(plugin_name)
        seen: set[str] = set()
        for info in infos:
            owner = self.connector_owners.get(info.name)
            if owner is not None or info.name in seen:
                raise ValueError(
                    f"connector name {info.name!r} is already provided by {owner or 'itself'}"
                )
            seen.add(info.name)
        return infos

    def describe(self) -> list[PluginDescription]:
        """Registered plugins with the connectors each provides, sorted by plugin name."""
        return [
            PluginDescription(source=source, connectors=tuple(self.connectors_of(name)))
            for name, source in sorted(self.sources.items())
            if self.get_plugin(name) is not None
        ]


def _entry_points() -> Iterable[metadata.EntryPoint]:
    return metadata.entry_points(group=ENTRY_POINT_GROUP)


def _try_register(pm: KeelPluginManager, loader: Callable[[], Any], source: PluginSource) -> None:
    try:
        plugin = loader()
        pm.register_checked(plugin, source)
    except Exception as exc:
        # A broken third-party package must not take the platform down with it.
        pm.load_errors[source.name] = f"{type(exc).__name__}: {exc}"
        logger.exception(
            "connector plugin %r (%s) failed to load and was skipped",
            source.name,
            source.distribution or source.module,
        )


def _build(allowlist: frozenset[str] | None, blocked: frozenset[str]) -> KeelPluginManager:
    pm = KeelPluginManager()
    for name in blocked:
        pm.set_blocked(name)
    for module_name in DEFAULT_PLUGINS:
        name = module_name.rsplit(".", 1)[-1]
        if pm.is_blocked(name):
            continue
        source = PluginSource(name=name, module=module_name, builtin=True)
        _try_register(pm, functools.partial(importlib.import_module, module_name), source)
    for ep in _entry_points():
        if pm.is_blocked(ep.name):
            continue
        dist = getattr(ep, "dist", None)
        source = PluginSource(
            name=ep.name,
            module=ep.value,
            builtin=False,
            distribution=dist.name if dist is not None else "",
            version=dist.version if dist is not None else "",
        )
        existing = pm.sources.get(ep.name)
        if existing is not None:
            if existing.module != ep.value:
                logger.warning(
                    "connector plugin %r from %s ignored: the name is taken by %s",
                    ep.name,
                    source.distribution,
                    existing.module,
                )
            continue
        if allowlist is not None and ep.name not in allowlist:
            logger.info("connector plugin %r not in the allowlist; not loaded", ep.name)
            continue
        _try_register(pm, ep.load, source)
    return pm


@functools.cache
def _cached(allowlist: frozenset[str] | None, blocked: frozenset[str]) -> KeelPluginManager:
    return _build(allowlist, blocked)


def get_plugin_manager(
    allowlist: Iterable[str] | None = None, *, blocked: Iterable[str] = ()
) -> KeelPluginManager:
    """The deployment's plugin manager, built on first call and cached.

    ``allowlist``: entry point names of third-party plugins the operator admits (``None``:
    every installed plugin). Built-ins are always registered unless ``blocked`` names them.
    """
    allowed = frozenset(allowlist) if allowlist is not None else None
    return _cached(allowed, frozenset(blocked))


get_plugin_manager.cache_clear = _cached.cache_clear  # type: ignore[attr-defined]


def make_test_manager(*plugins: object) -> KeelPluginManager:
    """A fresh manager holding only ``plugins`` (modules or objects); errors propagate.

    Not cached and blind to entry points, so tests see exactly the plugins they name.
    """
    pm = KeelPluginManager()
    for index, plugin in enumerate(plugins):
        if isinstance(plugin, ModuleType):
            name = plugin.__name__.rsplit(".", 1)[-1]
            module = plugin.__name__
        else:
            name = getattr(plugin, "name", None) or f"{type(plugin).__name__}-{index}"
            module = type(plugin).__module__
        pm.register_checked(plugin, PluginSource(name=name, module=module, builtin=False))
    return pm
