"""The real WSGI app on a threaded server, for the browser tests.

Not `runserver`: it would re-run system checks and print a banner on every start, and its
autoreloader must be switched off anyway. Django's own threaded WSGI server is what
`runserver` uses underneath, so behaviour (static files via WhiteNoise, middleware) is the
same.

    python -m tests.e2e.serve HOST PORT
"""

from __future__ import annotations

import sys

from django.core.servers.basehttp import run


def main(argv: list[str]) -> None:
    host, port = argv[0], int(argv[1])
    # Importing config.wsgi sets DJANGO_SETTINGS_MODULE and runs django.setup().
    from config.wsgi import application

    run(host, port, application, threading=True)


if __name__ == "__main__":
    main(sys.argv[1:])
