"""`python manage.py connectors list [--json]`: the connector plugins this deployment loads.

One block per plugin (entry point name, where it comes from, its connectors with kind,
version and capabilities), then the plugins that failed to load and why. Secret fields
are listed by name so an operator knows what a connection will ask for.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from sync import plugins


class Command(BaseCommand):
    help = "Inspect connector plugins. `list` shows what is installed and what failed to load."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["list"])
        parser.add_argument(
            "--json", action="store_true", dest="as_json", help="Machine-readable output."
        )

    def handle(self, *args: Any, action: str, as_json: bool = False, **options: Any) -> None:
        pm = plugins.manager()
        described = pm.describe()
        if as_json:
            self.stdout.write(_json(described, pm.load_errors))
            return
        self.stdout.write("Connector plugins (entry point group keel.connectors):")
        for plugin in described:
            source = plugin.source
            origin = (
                "built in"
                if source.builtin
                else f"{source.distribution or '?'} {source.version}".strip()
            )
            self.stdout.write(f"  {source.name}  ({origin}; module {source.module})")
            for info in plugin.connectors:
                caps = ", ".join(sorted(str(c) for c in info.capabilities))
                self.stdout.write(
                    f"    {info.name:<18} {info.kind!s:<8} {info.version:<8} "
                    f"{info.display_name}  [{caps}]"
                )
                if info.secret_fields:
                    self.stdout.write(f"{'':22}secrets: {', '.join(sorted(info.secret_fields))}")
        if pm.load_errors:
            self.stdout.write("Failed to load:")
            for name, error in sorted(pm.load_errors.items()):
                self.stdout.write(f"  {name}: {error}")
        else:
            self.stdout.write("Failed to load: none")


def _json(described: list, errors: dict[str, str]) -> str:
    return json.dumps(
        {
            "plugins": [
                {
                    "name": p.source.name,
                    "module": p.source.module,
                    "builtin": p.source.builtin,
                    "distribution": p.source.distribution,
                    "version": p.source.version,
                    "connectors": [
                        {
                            "name": i.name,
                            "kind": str(i.kind),
                            "version": i.version,
                            "display_name": i.display_name,
                            "capabilities": sorted(str(c) for c in i.capabilities),
                            "secret_fields": sorted(i.secret_fields),
                        }
                        for i in p.connectors
                    ],
                }
                for p in described
            ],
            "load_errors": dict(sorted(errors.items())),
        },
        indent=2,
    )
