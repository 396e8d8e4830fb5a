"""System checks for deployment settings Keel cannot run safely with.

Pooler guard (RELIABILITY 21). django-tenants routes a request to its brand by setting
PostgreSQL's `search_path` on the connection. With TENANT_LIMIT_SET_CALLS on (Keel's
setting) it is set once per connection and then trusted; with it off, `SET search_path`
still runs as a statement of its own before the query. Both assume one Django connection
is one PostgreSQL session. A pooler in transaction (or statement) mode breaks that: between
two transactions the pooler may hand the server connection, with the search_path another
brand left on it, to someone else — one brand's query then reads another brand's rows.
KEEL_DB_POOL_MODE says how connections reach PostgreSQL; `manage.py check` (run by every
deploy and by `runserver`/`migrate`) refuses the combinations that can leak.
"""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, register

POOL_MODES = ("direct", "session", "transaction", "statement")
SHARING_MODES = ("transaction", "statement")


@register()
def check_pooler(app_configs=None, **kwargs) -> list[Error]:
    mode = getattr(settings, "KEEL_DB_POOL_MODE", "direct")
    if mode not in POOL_MODES:
        return [
            Error(
                f"KEEL_DB_POOL_MODE={mode!r} is not one of {', '.join(POOL_MODES)}.",
                hint="Say how connections reach PostgreSQL: directly or through a pooler "
                "in session or transaction mode.",
                id="keel.E002",
            )
        ]
    if mode not in SHARING_MODES:
        return []
    if getattr(settings, "TENANT_LIMIT_SET_CALLS", False):
        why = (
            "TENANT_LIMIT_SET_CALLS sets each brand's search_path once per connection, but a "
            f"{mode}-mode pooler gives that server connection to other clients between "
            "transactions: queries could run in another brand's schema."
        )
    else:
        why = (
            "`SET search_path` runs as its own statement before each query; outside a "
            f"transaction a {mode}-mode pooler may send the query to a server connection "
            "another brand's search_path is set on."
        )
    return [
        Error(
            f"Brand isolation is unsafe behind a {mode}-mode connection pooler. {why}",
            hint="Connect directly or run PgBouncer with pool_mode = session, and set "
            "KEEL_DB_POOL_MODE accordingly (README: 'Connection poolers').",
            id="keel.E001",
        )
    ]
