"""REST API of the purchasing app, registered on the brand API router by config.api_urls."""

from rest_framework.routers import BaseRouter


def register(router: BaseRouter) -> None:
    """Add this app's viewsets to the brand API router."""
