"""Who is acting and in which request, carried through the call stack.

Middleware (people), the API key authenticator and Celery tasks set it; services read it
through `audit.services.record` so they never take the request as an argument.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass

from audit.models import ActorType


@dataclass(frozen=True)
class Actor:
    type: str
    id: str = ""
    label: str = ""


SYSTEM = Actor(ActorType.SYSTEM, "", "Keel")

_actor: contextvars.ContextVar[Actor | None] = contextvars.ContextVar("keel_actor", default=None)
_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("keel_request_id", default="")


def actor_for_user(user) -> Actor:
    return Actor(ActorType.USER, str(user.pk), user.email)


def current_actor() -> Actor:
    return _actor.get() or SYSTEM


def set_actor(actor: Actor | None) -> contextvars.Token:
    return _actor.set(actor)


def reset_actor(token: contextvars.Token) -> None:
    _actor.reset(token)


def current_request_id() -> str:
    return _request_id.get()


def set_request_id(value: str) -> contextvars.Token:
    return _request_id.set(value)


def reset_request_id(token: contextvars.Token) -> None:
    _request_id.reset(token)
