"""The role × permission matrix: the single place that says who may do what.

Views (`accounts.views.RoleRequiredMixin`), the API (`accounts.permissions.RolePermission`)
and services all ask `has_permission`, so the UI and the API can never disagree.
Later apps add their permissions here next to the ones below.

API keys are not people: a key's scope maps to a fixed permission set. Managing people
and keys is never open to keys, so a leaked key cannot mint new keys or owners.
"""

from __future__ import annotations

from django.db import models


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    OPS_MANAGER = "ops_manager", "Ops manager"
    BUYER = "buyer", "Buyer"
    WAREHOUSE = "warehouse", "Warehouse"
    VIEWER = "viewer", "Viewer"


class Scope(models.TextChoices):
    READ = "read", "Read only"
    WRITE = "write", "Read and write"


PERMISSIONS: dict[str, str] = {
    "dashboard.view": "See the dashboard",
    "brand.view": "See the brand profile",
    "brand.edit": "Edit the brand profile (name, timezone, currency)",
    "team.view": "See teammates and their roles",
    "team.invite": "Invite teammates",
    "team.manage": "Change roles, deactivate and reactivate teammates",
    "apikeys.view": "See API keys (never their secrets)",
    "apikeys.manage": "Create and revoke API keys",
    "activity.view": "Browse the activity log",
    "workers.view": "See worker and scheduler health",
    "catalog.view": "See products, SKUs, bundles and listing mappings",
    "catalog.edit": "Create and edit products, SKUs, bundles; resolve unmapped listings",
    "catalog.import": "Import and export the item master and opening stock (CSV)",
    "warehouses.edit": "Create and edit warehouses",
    "stock.view": "See stock levels, movements and reservations",
    "stock.move": "Receive, adjust, transfer stock and change its status",
    "stock.reserve": "Create and release manual holds and channel buffers",
    "stock.count": "Run cycle counts and post corrections",
    "orders.view": "See orders, fulfillment orders and routing decisions",
    "orders.create": "Enter orders by hand or through the API",
    "orders.manage": "Cancel orders, resolve the review queue, re-route",
    "routing.edit": "Draft, simulate and publish routing rules",
    # Who may *decide* a request is the policy's approver roles, not a permission.
    "approvals.view": "See approval requests, their decisions and the policies",
    "approvals.manage_policies": "Edit approval policies and the approvals webhook",
    # Never granted to API keys: a leaked key must not add a receiver of every event.
    "webhooks.manage": "Add, edit and delete partner webhook endpoints; replay deliveries",
    "outbox.manage": "See outgoing messages (channel pushes, webhooks) and retry parked ones",
    "connections.view": "See connections to channels, 3PLs and carriers, and their sync runs",
    "connections.sync": "Sync a connection now",
    # Never granted to API keys: a key that could repoint a connection's API URL could
    # send its stored token elsewhere.
    "connections.manage": "Add and edit connections and their credentials, test, pause, resume",
    "purchasing.view": "See suppliers, purchase orders, receipts and supplier scorecards",
    "suppliers.edit": "Create and edit suppliers and their SKUs (cost, MOQ, case pack)",
    "purchasing.draft": "Draft, edit, submit and cancel purchase orders",
    "purchasing.receive": "Receive purchase orders into stock",
    "forecasting.view": "See demand history, forecasts, segments and recommendations",
    "forecasting.manage": "Run forecasts now; change segment and replenishment settings",
    "shipping.view": "See shipments, rates, labels, tracking, exceptions and carrier performance",
    "shipping.operate": "Buy and void labels, book freight, upload POD, rate shipments",
    "shipping.exceptions": "Work the shipment exception queue",
    "shipping.settings": "Change shipping thresholds and carrier scoring weights",
}

_EVERYONE = {
    "dashboard.view",
    "brand.view",
    "team.view",
    "catalog.view",
    "stock.view",
    "orders.view",
    "approvals.view",
    "purchasing.view",
    "forecasting.view",
    "shipping.view",
}
_ADMIN = set(PERMISSIONS)
_OPERATIONS = {
    "activity.view",
    "workers.view",
    "catalog.edit",
    "catalog.import",
    "warehouses.edit",
    "stock.move",
    "stock.reserve",
    "stock.count",
    "orders.create",
    "orders.manage",
    "routing.edit",
    "outbox.manage",
    "connections.view",
    "connections.sync",
    "suppliers.edit",
    "purchasing.draft",
    "purchasing.receive",
    "forecasting.manage",
    "shipping.operate",
    "shipping.exceptions",
    "shipping.settings",
}
_BUYING = {
    "catalog.edit",
    "catalog.import",
    "suppliers.edit",
    "purchasing.draft",
    "purchasing.receive",
    "forecasting.manage",
}

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    Role.OWNER: frozenset(_ADMIN),
    Role.ADMIN: frozenset(_ADMIN),
    Role.OPS_MANAGER: frozenset(_EVERYONE | _OPERATIONS),
    Role.BUYER: frozenset(_EVERYONE | _BUYING),
    Role.WAREHOUSE: frozenset(
        _EVERYONE
        | {
            "stock.move",
            "stock.count",
            "purchasing.receive",
            "shipping.operate",
            "shipping.exceptions",
        }
    ),
    Role.VIEWER: frozenset(_EVERYONE),
}

_KEY_READ = {
    "brand.view",
    "team.view",
    "activity.view",
    "catalog.view",
    "stock.view",
    "orders.view",
    "approvals.view",
    "connections.view",
    "purchasing.view",
    "forecasting.view",
    "shipping.view",
}
SCOPE_PERMISSIONS: dict[str, frozenset[str]] = {
    Scope.READ: frozenset(_KEY_READ),
    Scope.WRITE: frozenset(
        _KEY_READ
        | {
            "brand.edit",
            "catalog.edit",
            "warehouses.edit",
            "stock.move",
            "stock.reserve",
            "stock.count",
            "orders.create",
            "orders.manage",
            "connections.sync",
            "suppliers.edit",
            "purchasing.draft",
            "purchasing.receive",
            "forecasting.manage",
            "shipping.operate",
            "shipping.exceptions",
        }
    ),
}

# Which roles a person may hand out: only an owner makes owners.
ASSIGNABLE_ROLES: dict[str, tuple[str, ...]] = {
    Role.OWNER: tuple(Role.values),
    Role.ADMIN: tuple(r for r in Role.values if r != Role.OWNER),
}


def role_has(role: str, permission: str) -> bool:
    if permission not in PERMISSIONS:
        raise KeyError(f"Unknown permission {permission!r}")
    return permission in ROLE_PERMISSIONS.get(role, frozenset())


def scope_has(scope: str, permission: str) -> bool:
    if permission not in PERMISSIONS:
        raise KeyError(f"Unknown permission {permission!r}")
    return permission in SCOPE_PERMISSIONS.get(scope, frozenset())


def has_permission(principal, permission: str) -> bool:
    """True when a user (active, signed in) or an API key holds `permission`."""
    from accounts.models import ApiKey

    if principal is None:
        return False
    if isinstance(principal, ApiKey):
        return principal.is_active and scope_has(principal.scope, permission)
    if not getattr(principal, "is_authenticated", False) or not principal.is_active:
        return False
    return role_has(principal.role, permission)


def can_assign(actor_role: str, target_role: str) -> bool:
    return target_role in ASSIGNABLE_ROLES.get(actor_role, ())
