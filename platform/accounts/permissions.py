from rest_framework.permissions import SAFE_METHODS, BasePermission

from accounts.roles import has_permission


class RolePermission(BasePermission):
    """Checks the role matrix for the view's `required_permissions`.

    A view declares `required_permissions = {"list": "team.view", "create": ...}` keyed by
    action (viewsets) or HTTP method; "read"/"write" keys cover safe/unsafe methods.
    No declaration means the view is closed: forgetting one fails safe.
    """

    message = "Your role or key scope does not allow this."

    def has_permission(self, request, view) -> bool:
        principal = request.auth if request.auth is not None else request.user
        if principal is None or not getattr(principal, "is_authenticated", False):
            return False
        permission = required_permission(request, view)
        return permission is not None and has_permission(principal, permission)


def required_permission(request, view) -> str | None:
    table = getattr(view, "required_permissions", None) or {}
    action = getattr(view, "action", None)
    if action and action in table:
        return table[action]
    if request.method in table:
        return table[request.method]
    return table.get("read" if request.method in SAFE_METHODS else "write")
