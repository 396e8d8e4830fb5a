import zoneinfo

from django.utils import timezone


class BrandTimezoneMiddleware:
    """Show dates in the brand's timezone; storage stays UTC."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        tenant = getattr(request, "tenant", None)
        name = getattr(tenant, "timezone", "") if getattr(tenant, "kind", "") == "brand" else ""
        try:
            timezone.activate(zoneinfo.ZoneInfo(name)) if name else timezone.deactivate()
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            timezone.deactivate()
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()
