import uuid

from audit.context import (
    actor_for_user,
    reset_actor,
    reset_request_id,
    set_actor,
    set_request_id,
)


class RequestContextMiddleware:
    """Tag each request with an id (echoed as X-Request-ID) and the signed-in person."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming[:64] if incoming.isascii() and incoming else uuid.uuid4().hex
        request.request_id = request_id
        rid_token = set_request_id(request_id)
        user = getattr(request, "user", None)
        actor_token = set_actor(
            actor_for_user(user) if user is not None and user.is_authenticated else None
        )
        try:
            response = self.get_response(request)
        finally:
            reset_actor(actor_token)
            reset_request_id(rid_token)
        response["X-Request-ID"] = request_id
        return response
