"""Keel connector SDK: canonical types, hook specifications, plugin manager, HTTP client,
contract-test kit, and the built-in connectors (one subpackage each).

Nothing here imports Django or the platform: a connector is an ordinary pip package that
depends on this SDK only. See ``connectors/README.md``.

Plugins mark their hook implementations with :data:`hookimpl`::

    from connectors import hookimpl

    @hookimpl
    def keel_connector_info():
        return [INFO]
"""

from __future__ import annotations

import pluggy

__version__ = "1.0.0"

#: Decorator for hook implementations in connector plugins.
hookimpl = pluggy.HookimplMarker("keel")

__all__ = ["__version__", "hookimpl"]
