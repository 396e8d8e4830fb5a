"""Conventions shared by every endpoint: error format, pagination, throttling, schema."""

from django.core.cache import cache
from django_tenants.utils import schema_context

from accounts.services import create_api_key
from tests.conftest import brand_client, make_user


def test_unauthenticated_request_gets_401_in_the_error_format(brand_a):
    response = brand_client(brand_a).get("/api/v1/users/")
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "not_authenticated"
    assert error["request_id"] == response["X-Request-ID"]


def test_validation_errors_name_fields_with_codes(brand_a, owner_a):
    response = brand_client(brand_a, owner_a).patch(
        "/api/v1/brand/",
        {"currency": "dollars", "timezone": "Mars/Olympus"},
        content_type="application/json",
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["fields"]["currency"][0]["code"] in {"invalid", "max_length"}
    assert error["fields"]["timezone"] == [
        {"code": "invalid_timezone", "message": "Unknown IANA timezone."}
    ]
    brand_a.refresh_from_db()
    assert (brand_a.currency, brand_a.timezone) == ("USD", "UTC")


def test_not_found_uses_the_error_format(brand_a, owner_a):
    response = brand_client(brand_a, owner_a).get("/api/v1/users/999999/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_lists_use_cursor_pagination(brand_a, owner_a):
    for _ in range(5):
        make_user(brand_a)
    client = brand_client(brand_a, owner_a)

    first = client.get("/api/v1/users/?page_size=4").json()
    assert len(first["results"]) == 4
    assert "cursor=" in first["next"]
    second = client.get(first["next"].split("alpha.localhost", 1)[-1]).json()
    ids = [u["id"] for u in first["results"] + second["results"]]
    assert len(ids) == len(set(ids)) == 6  # 5 new + the owner, none repeated


def test_rate_limit_per_key_answers_429_with_retry_after(brand_a, owner_a, settings):
    settings.API_RATE_LIMIT = "3/min"
    cache.clear()
    with schema_context(brand_a.schema_name):
        first_key = create_api_key(actor=owner_a, name="Busy", scope="read")
        other_key = create_api_key(actor=owner_a, name="Quiet", scope="read")
    client = brand_client(brand_a)
    busy = {"HTTP_AUTHORIZATION": f"Api-Key {first_key.secret}"}

    statuses = [client.get("/api/v1/brand/", **busy).status_code for _ in range(4)]

    assert statuses == [200, 200, 200, 429]
    limited = client.get("/api/v1/brand/", **busy)
    assert limited.json()["error"]["code"] == "throttled"
    assert 0 < int(limited["Retry-After"]) <= 60
    # Budgets are per key: another key of the same brand is unaffected.
    quiet = {"HTTP_AUTHORIZATION": f"Api-Key {other_key.secret}"}
    assert client.get("/api/v1/brand/", **quiet).status_code == 200
    cache.clear()


def test_openapi_schema_and_docs_are_served_from_the_brand_host(brand_a):
    client = brand_client(brand_a)
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    document = schema.json()
    assert document["openapi"].startswith("3.")
    assert {"/api/v1/users/", "/api/v1/api-keys/", "/api/v1/brand/"} <= set(document["paths"])

    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in html
    assert "cdn" not in html.lower()
