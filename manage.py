#!/usr/bin/env python
"""Django's command-line utility for Keel."""

import os
import sys
from pathlib import Path

# platform/ is a source root, not a package: a package named `platform` would shadow
# the standard library module that Django, uuid and Celery import.
ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "platform"))
sys.path.insert(1, str(ROOT))


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
