"""Shipping fixtures: brand alpha with people, purchases run right after commit."""

from __future__ import annotations

import pytest

from accounts.roles import Role
from tests.factories import UserFactory


@pytest.fixture
def alpha(in_alpha):
    return in_alpha


@pytest.fixture
def ops(alpha):
    return UserFactory(role=Role.OPS_MANAGER, email="ops@alpha.example")


@pytest.fixture
def owner(alpha):
    from accounts.models import User

    return User.objects.get(email="owner@alpha.example")


@pytest.fixture
def viewer(alpha):
    return UserFactory(role=Role.VIEWER, email="viewer@alpha.example")


@pytest.fixture
def oncommit(django_capture_on_commit_callbacks):
    """Run what services schedule after commit (the label purchase) inside the test's
    transaction, as a committed request would."""

    def run(fn, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return fn(*args, **kwargs)

    return run


@pytest.fixture
def events_seen():
    """Subscribe a test topic to the shipping domain events; yields a reader of what was
    enqueued (event type, object id)."""
    from outbox import registry
    from outbox.models import OutboxMessage

    topic = "test.shipping_events"
    types = ("shipment.delivered", "shipment.exception")
    for name in types:
        registry.subscribe(name, topic)

    def seen() -> list[tuple[str, str]]:
        return [
            (m.payload["type"], m.payload["object_id"])
            for m in OutboxMessage.objects.filter(topic=topic).order_by("id")
        ]

    yield seen
    for name in types:
        registry.unsubscribe(name, topic)


@pytest.fixture
def shipped(ops, oncommit):
    """A parcel with a purchased sandbox label, ready for tracking events."""
    from shipping import services
    from tests.shipping.factories import make_fo

    def make(**kw):
        shipment = services.rate_shipment(services.create_shipment(make_fo(**kw)))
        oncommit(services.request_label, shipment, actor=ops)
        shipment.refresh_from_db()
        assert shipment.state == "label_purchased"
        return shipment

    return make


@pytest.fixture
def committed_shipping(committed_alpha):
    """committed_alpha, plus removing what it does not: the built-in sandbox carrier
    connection (after the shipping rows that reference it), and the people and activity
    entries the test committed."""
    from django.db.models import Max

    from accounts.models import User
    from audit.models import ActivityEntry

    last_entry = ActivityEntry.objects.aggregate(last=Max("id"))["last"] or 0
    last_user = User.objects.aggregate(last=Max("id"))["last"] or 0
    yield
    from shipping.models import Label, RateQuote, Shipment
    from shipping.services import SANDBOX_CHANNEL_KEY
    from sync.models import Connection

    Label.objects.all().delete()
    Shipment.objects.update(chosen_quote=None)
    RateQuote.objects.all().delete()
    Shipment.objects.all().delete()
    Connection.objects.filter(channel_key=SANDBOX_CHANNEL_KEY).delete()
    User.objects.filter(id__gt=last_user).delete()
    ActivityEntry.objects.filter(id__gt=last_entry).delete()
