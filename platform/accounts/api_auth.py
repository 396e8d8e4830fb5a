from rest_framework import authentication, exceptions

from accounts.services import authenticate_api_key
from audit.context import Actor, set_actor
from audit.models import ActorType


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """`Authorization: Api-Key <key>` (or `Bearer <key>`): the key is the principal."""

    keywords = ("api-key", "bearer")

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        keyword, _, raw = header.partition(" ")
        if keyword.lower() not in self.keywords:
            return None
        raw = raw.strip()
        api_key = authenticate_api_key(raw) if raw else None
        if api_key is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
        # The request-scoped context resets in audit.middleware at the end of the request.
        set_actor(Actor(ActorType.API_KEY, str(api_key.pk), f"API key {api_key.prefix}"))
        return (api_key, api_key)

    def authenticate_header(self, request) -> str:
        # A 401 (not 403) with this challenge tells clients to send a key.
        return 'Api-Key realm="api"'
