"""Deliveries: signed POSTs to a real local receiver, retries with backoff, replay."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from outbox import services as outbox
from outbox.models import MessageStatus, OutboxMessage
from tests.webhooks.receiver import receiver
from webhooks import services, signing
from webhooks.handlers import DISPATCH_TOPIC
from webhooks.models import DeliveryStatus, WebhookDelivery


def endpoint_for(url: str, events=("order.created",), **kw):
    return services.create_endpoint(actor=None, url=url, event_types=list(events), **kw)


def publish_order_created(order_id: int = 41) -> str:
    event_id = outbox.publish_domain_event(
        "order.created", order_id, {"id": order_id, "external_id": "SHOP-1001", "total": "19.90"}
    )
    [message] = OutboxMessage.objects.filter(topic=DISPATCH_TOPIC, status=MessageStatus.PENDING)
    assert outbox.consume(message.pk) == "done"
    return event_id


def test_a_delivery_is_signed_and_the_receiver_verifies_it(in_alpha):
    with receiver() as partner:
        # given: an endpoint whose secret the partner holds
        issued = endpoint_for(partner.url)
        partner.secret = issued.secret

        # when: an order is created and its delivery attempted
        event_id = publish_order_created()
        [delivery] = WebhookDelivery.objects.all()
        services.attempt_delivery(delivery.pk, attempt=1)

    # then: one signed POST with the event headers; the delivery records the answer
    [request] = partner.received
    assert request.signature_ok is True
    assert request.path == "/hooks/keel"
    assert request.headers[signing.EVENT_ID_HEADER] == event_id
    assert request.headers[signing.EVENT_TYPE_HEADER] == "order.created"
    assert request.headers["Content-Type"] == "application/json"
    body = json.loads(request.body)
    assert (body["id"], body["type"], body["brand"]) == (event_id, "order.created", "alpha")
    assert body["data"]["external_id"] == "SHOP-1001"
    # the signature covers "<t>.<raw body>" and fails for any other body or secret
    header = request.headers[signing.SIGNATURE_HEADER]
    assert header.startswith("t=") and ",v1=" in header
    assert not signing.verify(issued.secret, request.body + b" ", header)
    assert not signing.verify("whsec_wrong", request.body, header)
    assert not signing.verify(issued.secret, request.body, header, now=time.time() + 3600)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.status_code) == (
        DeliveryStatus.SUCCEEDED,
        1,
        200,
    )
    assert delivery.response_excerpt == '{"received": true, "status": 200}'
    assert delivery.duration_ms is not None and delivery.delivered_at is not None


def test_a_500_is_retried_with_backoff_until_it_succeeds(in_alpha, settings):
    settings.KEEL_WEBHOOK_RETRY_BASE_SECONDS = 60
    with receiver([500, 503, 200]) as partner:
        # given
        endpoint_for(partner.url)
        event_id = publish_order_created()
        [delivery] = WebhookDelivery.objects.all()
        waits = []

        # when: attempts 1 and 2 fail, attempt 3 succeeds; a duplicate task for attempt 2
        # arrives after it happened
        for attempt in (1, 2):
            services.attempt_delivery(delivery.pk, attempt=attempt)
            delivery.refresh_from_db()
            assert delivery.status == DeliveryStatus.PENDING
            waits.append((delivery.next_attempt_at - delivery.last_attempt_at).total_seconds())
        services.attempt_delivery(delivery.pk, attempt=2)
        services.attempt_delivery(delivery.pk, attempt=3)

    # then: 60 s then 120 s (±20 % jitter), three calls with the same event id
    assert 48 <= waits[0] <= 72
    assert 96 <= waits[1] <= 144
    assert [r.headers[signing.EVENT_ID_HEADER] for r in partner.received] == [event_id] * 3
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.status_code) == (
        DeliveryStatus.SUCCEEDED,
        3,
        200,
    )


def test_a_delivery_gives_up_after_max_attempts(in_alpha, settings):
    settings.KEEL_WEBHOOK_MAX_ATTEMPTS = 3
    with receiver([500]) as partner:
        endpoint_for(partner.url)
        publish_order_created()
        [delivery] = WebhookDelivery.objects.all()

        for attempt in (1, 2, 3, 4):
            services.attempt_delivery(delivery.pk, attempt=attempt)

    assert len(partner.received) == 3
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.next_attempt_at) == (
        DeliveryStatus.FAILED,
        3,
        None,
    )


def test_an_unreachable_receiver_is_a_failed_attempt_with_the_error(in_alpha):
    with receiver() as partner:
        url = partner.url
    endpoint_for(url)
    publish_order_created()
    [delivery] = WebhookDelivery.objects.all()

    services.attempt_delivery(delivery.pk, attempt=1)

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.status_code) == (
        DeliveryStatus.PENDING,
        1,
        None,
    )
    assert delivery.error.startswith("ConnectError")


def test_replay_resends_the_same_event_id(in_alpha):
    with receiver() as partner:
        issued = endpoint_for(partner.url)
        partner.secret = issued.secret
        event_id = publish_order_created()
        [original] = WebhookDelivery.objects.all()
        services.attempt_delivery(original.pk, attempt=1)

        again = services.replay(original)
        services.attempt_delivery(again.pk, attempt=1)

    assert [r.headers[signing.EVENT_ID_HEADER] for r in partner.received] == [event_id] * 2
    assert partner.received[0].body == partner.received[1].body
    assert all(r.signature_ok for r in partner.received)
    again.refresh_from_db()
    assert (again.replay_of_id, again.event_id, again.status) == (
        original.pk,
        event_id,
        DeliveryStatus.SUCCEEDED,
    )


def test_events_reach_only_active_endpoints_subscribed_to_them(in_alpha):
    # given
    wants = endpoint_for("http://127.0.0.1:9/a", events=["order.created", "stock.changed"])
    endpoint_for("http://127.0.0.1:9/b", events=["stock.changed"])
    endpoint_for("http://127.0.0.1:9/c", events=["order.created"], is_active=False)

    # when: the event is published and its outbox message delivered twice
    event_id = outbox.publish_domain_event("order.created", 7, {"id": 7})
    [message] = OutboxMessage.objects.filter(topic=DISPATCH_TOPIC)
    outcomes = [outbox.consume(message.pk), outbox.consume(message.pk)]

    # then: one delivery, for the one endpoint that wants it
    assert outcomes == ["done", "duplicate"]
    assert list(WebhookDelivery.objects.values_list("endpoint_id", "event_id")) == [
        (wants.endpoint.pk, event_id)
    ]


def test_no_endpoint_for_an_event_means_no_outbox_message(in_alpha):
    endpoint_for("http://127.0.0.1:9/a", events=["stock.changed"])

    outbox.publish_domain_event("order.created", 7, {"id": 7})

    assert not OutboxMessage.objects.filter(topic=DISPATCH_TOPIC).exists()


def test_send_due_claims_due_deliveries_for_one_task_each(in_alpha):
    endpoint_for("http://127.0.0.1:9/a")
    publish_order_created(1)
    publish_order_created(2)
    due, later = WebhookDelivery.objects.order_by("id")
    now = timezone.now()
    WebhookDelivery.objects.filter(pk=due.pk).update(next_attempt_at=now)

    assert services.send_due(now) == 1
    assert services.send_due(now) == 0  # claimed: not queued again until the claim lapses
    due.refresh_from_db()
    assert due.next_attempt_at == now + timedelta(seconds=services.CLAIM_SECONDS)


def test_private_and_plain_http_targets_are_refused_in_production(in_alpha, settings):
    settings.KEEL_WEBHOOKS_ALLOW_PRIVATE = False
    refused = [
        "http://partner.example/hook",
        "https://127.0.0.1/hook",
        "https://localhost:8443/hook",
        "https://10.0.0.7/hook",
        "https://[::1]/hook",
        "https://169.254.169.254/latest/meta-data",
    ]
    for url in refused:
        with pytest.raises(ValidationError) as error:
            endpoint_for(url)
        assert error.value.error_dict["url"][0].code == "destination_refused", url


def test_an_endpoint_turned_private_is_not_called(in_alpha, settings):
    with receiver() as partner:
        endpoint_for(partner.url)
        publish_order_created()
        [delivery] = WebhookDelivery.objects.all()
        settings.KEEL_WEBHOOKS_ALLOW_PRIVATE = False

        services.attempt_delivery(delivery.pk, attempt=1)

    assert partner.received == []
    delivery.refresh_from_db()
    assert delivery.error.startswith("Refused:") and delivery.status_code is None
