from django.conf import settings

from accounts.roles import has_permission
from config.navigation import visible_sections


def shell(request) -> dict:
    """What the base layout needs: brand, navigation the person may see, settings."""
    tenant = getattr(request, "tenant", None)
    is_brand = tenant is not None and getattr(tenant, "kind", "") == "brand"
    user = getattr(request, "user", None)
    return {
        "brand": tenant if is_brand else None,
        "nav_sections": visible_sections(user, *_current(request)) if is_brand else [],
        "base_domain": settings.BASE_DOMAIN,
        "can": _Can(user),
    }


def _current(request) -> tuple[str, str]:
    match = getattr(request, "resolver_match", None)
    return (match.view_name, match.namespace) if match else ("", "")


class _Can:
    """`{% if can.team_invite %}` in templates: the same matrix the views enforce."""

    def __init__(self, user):
        self._user = user

    def __getattr__(self, name: str) -> bool:
        return has_permission(self._user, name.replace("_", ".", 1))
