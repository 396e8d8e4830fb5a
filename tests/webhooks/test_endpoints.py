"""Endpoints through the UI and the API: secrets shown once, permissions, the delivery log."""

from __future__ import annotations

import json
import logging

import pytest
from django_tenants.utils import schema_context

from accounts.services import create_api_key
from audit.models import ActivityEntry
from outbox import services as outbox
from outbox.models import OutboxMessage
from tests.conftest import brand_client, make_user
from tests.webhooks.receiver import receiver
from webhooks import services, signing
from webhooks.handlers import DISPATCH_TOPIC
from webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint

JSON = "application/json"


@pytest.fixture(autouse=True)
def _generous_rate_limit(settings):
    settings.API_RATE_LIMIT = "100000/min"


def in_schema(brand):
    return schema_context(brand.schema_name)


def activity_text(brand) -> str:
    with in_schema(brand):
        return json.dumps(
            list(ActivityEntry.objects.values("action", "object_repr", "changes")), default=str
        )


def test_the_secret_is_shown_once_and_never_again(brand_a, owner_a, caplog):
    caplog.set_level(logging.DEBUG)
    client = brand_client(brand_a, owner_a)
    with receiver() as partner:
        # when: an endpoint is created over the API, then read, listed, edited, shown in
        # the UI, sent a test event and its deliveries listed
        created = client.post(
            "/api/v1/webhook-endpoints/",
            {"url": partner.url, "description": "ERP", "event_types": ["order.created"]},
            content_type=JSON,
        )
        secret = created.json()["secret"]
        partner.secret = secret
        pk = created.json()["id"]
        reads = [
            client.get("/api/v1/webhook-endpoints/"),
            client.get(f"/api/v1/webhook-endpoints/{pk}/"),
            client.patch(
                f"/api/v1/webhook-endpoints/{pk}/", {"description": "ERP prod"}, content_type=JSON
            ),
            client.get("/webhooks/"),
            client.get(f"/webhooks/{pk}/"),
            client.get(f"/webhooks/{pk}/edit/"),
            client.post(f"/webhooks/{pk}/test/", follow=True),
            client.get("/api/v1/webhook-deliveries/"),
        ]
        with in_schema(brand_a):
            delivery = WebhookDelivery.objects.get()
        reads.append(client.get(f"/webhooks/deliveries/{delivery.pk}/"))

    # then: the secret was in the creation answer only (not cacheable), and it works
    assert created.status_code == 201
    assert created["Cache-Control"] == "no-store"
    assert secret.startswith("whsec_") and len(secret) > 40
    assert [r.status_code for r in reads] == [200] * 9
    for response in reads:
        assert secret not in response.content.decode(), response.wsgi_request.path
    assert "secret" not in reads[1].json()
    assert [r.signature_ok for r in partner.received] == [True]
    assert "Test event delivered: HTTP 200" in reads[6].content.decode()
    # never in the logs, the activity log, or the database column in clear
    assert secret not in caplog.text
    assert secret not in activity_text(brand_a)
    with in_schema(brand_a):
        stored = WebhookEndpoint.objects.get(pk=pk)
        assert secret not in stored.secret_encrypted
        assert services.endpoint_secret(stored) == secret


def test_creating_in_the_ui_shows_the_secret_on_that_page_only(brand_a, owner_a):
    client = brand_client(brand_a, owner_a)

    page = client.post(
        "/webhooks/new/",
        {"url": "http://127.0.0.1:9/in", "description": "BI", "event_types": ["stock.changed"]},
    )

    assert page.status_code == 200
    assert page["Cache-Control"] == "no-store"
    with in_schema(brand_a):
        endpoint = WebhookEndpoint.objects.get()
        secret = services.endpoint_secret(endpoint)
    assert secret in page.content.decode()
    assert endpoint.event_types == ["stock.changed"] and endpoint.description == "BI"
    assert secret not in client.get(f"/webhooks/{endpoint.pk}/").content.decode()


def test_rolling_the_secret_shows_the_new_one_once_and_the_old_one_stops(brand_a, owner_a):
    client = brand_client(brand_a, owner_a)
    with in_schema(brand_a):
        issued = services.create_endpoint(
            actor=owner_a, url="http://127.0.0.1:9/x", event_types=["order.created"]
        )

    page = client.post(f"/webhooks/{issued.endpoint.pk}/rotate-secret/")

    with in_schema(brand_a):
        new = services.endpoint_secret(WebhookEndpoint.objects.get())
    assert new != issued.secret
    assert new in page.content.decode() and issued.secret not in page.content.decode()
    body = b'{"x":1}'
    assert not signing.verify(issued.secret, body, signing.sign(new, body))
    assert new not in activity_text(brand_a) and issued.secret not in activity_text(brand_a)


def test_invalid_endpoints_are_refused_with_field_errors(brand_a, owner_a):
    client = brand_client(brand_a, owner_a)

    api = client.post(
        "/api/v1/webhook-endpoints/",
        {"url": "http://127.0.0.1:9/x", "event_types": ["order.exploded"]},
        content_type=JSON,
    )
    empty = client.post(
        "/api/v1/webhook-endpoints/",
        {"url": "http://127.0.0.1:9/x", "event_types": []},
        content_type=JSON,
    )
    ui = client.post("/webhooks/new/", {"url": "not a url", "event_types": []})

    assert api.status_code == 400 and "event_types.0" in api.json()["error"]["fields"]
    assert empty.status_code == 400 and "event_types" in empty.json()["error"]["fields"]
    assert ui.status_code == 422
    with in_schema(brand_a):
        assert WebhookEndpoint.objects.count() == 0


def test_replay_over_the_api_sends_the_same_event_again(brand_a, owner_a):
    client = brand_client(brand_a, owner_a)
    with receiver() as partner, in_schema(brand_a):
        services.create_endpoint(actor=owner_a, url=partner.url, event_types=["order.created"])
        event_id = outbox.publish_domain_event("order.created", 5, {"id": 5})
        outbox.consume(OutboxMessage.objects.get(topic=DISPATCH_TOPIC).pk)
        original = WebhookDelivery.objects.get()
        services.attempt_delivery(original.pk, attempt=1)

        replayed = client.post(
            f"/api/v1/webhook-deliveries/{original.pk}/replay/", HTTP_IDEMPOTENCY_KEY="r-1"
        )
        repeat = client.post(
            f"/api/v1/webhook-deliveries/{original.pk}/replay/", HTTP_IDEMPOTENCY_KEY="r-1"
        )
        services.attempt_delivery(replayed.json()["id"], attempt=1)
        by_event = client.get(f"/api/v1/webhook-deliveries/?event_id={event_id}")

    assert replayed.status_code == 201
    assert (replayed.json()["event_id"], replayed.json()["replay_of"]) == (event_id, original.pk)
    assert repeat["Idempotent-Replayed"] == "true" and repeat.json()["id"] == replayed.json()["id"]
    assert [r.headers[signing.EVENT_ID_HEADER] for r in partner.received] == [event_id] * 2
    assert [d["status"] for d in by_event.json()["results"]] == [DeliveryStatus.SUCCEEDED] * 2


def test_the_delivery_log_filters_by_status_and_event(brand_a, owner_a):
    client = brand_client(brand_a, owner_a)
    with in_schema(brand_a):
        issued = services.create_endpoint(
            actor=owner_a,
            url="http://127.0.0.1:9/x",
            event_types=["order.created", "stock.changed"],
        )
        outbox.publish_domain_event("order.created", 1, {"id": 1})
        outbox.publish_domain_event("stock.changed", "1:1", {"sku": {"id": 1}})
        for message in OutboxMessage.objects.filter(topic=DISPATCH_TOPIC):
            outbox.consume(message.pk)
        WebhookDelivery.objects.filter(event_type="stock.changed").update(
            status=DeliveryStatus.FAILED
        )
    url = f"/webhooks/{issued.endpoint.pk}/"

    failed = client.get(url, {"status": "failed"}, HTTP_HX_REQUEST="true")
    created = client.get(url, {"event_type": "order.created"})

    assert failed.status_code == 200
    assert "stock.changed" in failed.content.decode()
    assert "order.created" not in failed.content.decode()
    assert "<html" not in failed.content.decode()  # the fragment only
    assert created.content.decode().count('href="/webhooks/deliveries/') == 1


@pytest.mark.parametrize("role", ["ops_manager", "buyer", "warehouse", "viewer"])
def test_only_owners_and_admins_manage_webhooks(brand_a, role):
    person = make_user(brand_a, role=role)
    client = brand_client(brand_a, person)

    answers = [
        client.get("/webhooks/").status_code,
        client.post("/webhooks/new/", {"url": "http://127.0.0.1:9/x"}).status_code,
        client.get("/api/v1/webhook-endpoints/").status_code,
        client.post(
            "/api/v1/webhook-endpoints/",
            {"url": "http://127.0.0.1:9/x", "event_types": ["order.created"]},
            content_type=JSON,
        ).status_code,
        client.get("/api/v1/webhook-deliveries/").status_code,
    ]

    assert answers == [403] * 5
    with in_schema(brand_a):
        assert WebhookEndpoint.objects.count() == 0


def test_api_keys_never_manage_webhooks_not_even_write_keys(brand_a, owner_a):
    with in_schema(brand_a):
        write_key = create_api_key(actor=owner_a, name="ERP", scope="write")
        issued = services.create_endpoint(
            actor=owner_a, url="http://127.0.0.1:9/x", event_types=["order.created"]
        )
    client = brand_client(brand_a)
    auth = {"HTTP_AUTHORIZATION": f"Api-Key {write_key.secret}"}

    answers = [
        client.get("/api/v1/webhook-endpoints/", **auth).status_code,
        client.post(
            "/api/v1/webhook-endpoints/",
            {"url": "http://127.0.0.1:9/y", "event_types": ["order.created"]},
            content_type=JSON,
            **auth,
        ).status_code,
        client.delete(f"/api/v1/webhook-endpoints/{issued.endpoint.pk}/", **auth).status_code,
        client.get("/api/v1/webhook-deliveries/", **auth).status_code,
    ]

    assert answers == [403] * 4
    with in_schema(brand_a):
        assert list(WebhookEndpoint.objects.values_list("url", flat=True)) == [
            "http://127.0.0.1:9/x"
        ]


def test_deleting_an_endpoint_over_the_api(brand_a, owner_a):
    client = brand_client(brand_a, owner_a)
    with in_schema(brand_a):
        issued = services.create_endpoint(
            actor=owner_a, url="http://127.0.0.1:9/x", event_types=["order.created"]
        )

    answer = client.delete(f"/api/v1/webhook-endpoints/{issued.endpoint.pk}/")

    assert answer.status_code == 204
    with in_schema(brand_a):
        assert WebhookEndpoint.objects.count() == 0
        assert ActivityEntry.objects.filter(action="webhook_endpoint.deleted").count() == 1


def test_webhooks_section_shows_for_owners_only(brand_a, owner_a):
    viewer = make_user(brand_a, role="viewer")

    owner_page = brand_client(brand_a, owner_a).get("/").content.decode()
    viewer_page = brand_client(brand_a, viewer).get("/").content.decode()

    assert 'href="/webhooks/"' in owner_page
    assert 'href="/webhooks/"' not in viewer_page
