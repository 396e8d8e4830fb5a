"""Per-brand throttle fairness (RELIABILITY 24e, functional part).

Brand alpha's API key floods the API at 10× its budget (API_RATE_LIMIT, made small here):
every request past the budget gets 429 with `Retry-After` and the JSON error body, and
nothing it does spends brand beta's budget: beta's requests, interleaved with the flood,
all succeed. The two keys (and the two owners) deliberately share the same primary key,
so only the brand prefix of the cache key keeps the budgets apart.
Beta's latency under the flood is measured by tests/benchmarks/bench_throttle.py.
"""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.db import connection
from django_tenants.utils import schema_context

from accounts.services import create_api_key
from tests.conftest import brand_client

LIMIT = 5
FLOOD = LIMIT * 10


@pytest.fixture
def small_budget(settings):
    settings.API_RATE_LIMIT = f"{LIMIT}/min"
    cache.clear()
    yield
    cache.clear()


def same_next_id(table: str, *schemas: str) -> None:
    """Make the next row of `table` get the same id in every schema."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT max(last_value) FROM pg_sequences "
            "WHERE sequencename = %s AND schemaname = ANY(%s)",
            [f"{table}_id_seq", list(schemas)],
        )
        (top,) = cursor.fetchone()
        for schema in schemas:
            cursor.execute(
                "SELECT setval(pg_get_serial_sequence(%s, 'id'), %s)",
                [f'"{schema}".{table}', (top or 0) + 100],
            )


@pytest.fixture
def twin_keys(brand_a, brand_b, owner_a, owner_b):
    same_next_id("accounts_apikey", brand_a.schema_name, brand_b.schema_name)
    with schema_context(brand_a.schema_name):
        alpha = create_api_key(actor=owner_a, name="Flood", scope="read")
    with schema_context(brand_b.schema_name):
        beta = create_api_key(actor=owner_b, name="Steady", scope="read")
    assert alpha.api_key.pk == beta.api_key.pk
    return alpha.secret, beta.secret


def test_flooding_brand_is_throttled_while_the_other_brand_is_served(
    brand_a, brand_b, twin_keys, small_budget
):
    alpha_key, beta_key = twin_keys
    alpha = brand_client(brand_a)
    beta = brand_client(brand_b)
    alpha_auth = {"HTTP_AUTHORIZATION": f"Api-Key {alpha_key}"}
    beta_auth = {"HTTP_AUTHORIZATION": f"Api-Key {beta_key}"}
    alpha_statuses: list[int] = []
    beta_statuses: list[int] = []
    throttled = []

    for i in range(FLOOD):
        response = alpha.get("/api/v1/users/", **alpha_auth)
        alpha_statuses.append(response.status_code)
        if response.status_code == 429:
            throttled.append(response)
        # Beta keeps calling at its own pace (within its budget) throughout the flood.
        if i % (FLOOD // LIMIT) == 0:
            beta_response = beta.get("/api/v1/users/", **beta_auth)
            beta_statuses.append(beta_response.status_code)
            assert b"alpha" not in beta_response.content

    assert alpha_statuses[:LIMIT] == [200] * LIMIT
    assert alpha_statuses[LIMIT:] == [429] * (FLOOD - LIMIT)
    for response in throttled:
        assert 0 < int(response["Retry-After"]) <= 60
        error = response.json()["error"]
        assert error["code"] == "throttled"
        assert error["request_id"] == response["X-Request-ID"]
    assert beta_statuses == [200] * LIMIT


def test_same_person_id_in_two_brands_has_two_budgets(
    brand_a, brand_b, owner_a, owner_b, small_budget
):
    """Session principals too: owners that share a primary key do not share a budget."""
    assert owner_a.pk == owner_b.pk  # both brands were provisioned the same way
    alpha = brand_client(brand_a, owner_a)
    beta = brand_client(brand_b, owner_b)

    flood = [alpha.get("/api/v1/brand/").status_code for _ in range(LIMIT * 3)]
    steady = [beta.get("/api/v1/brand/").status_code for _ in range(LIMIT)]

    assert flood == [200] * LIMIT + [429] * (LIMIT * 2)
    assert steady == [200] * LIMIT


def test_concurrent_requests_never_pass_more_than_the_budget(settings):
    """Check and record are one atomic step: 40 requests of one key at the same instant
    (threads, each its own Redis connection path) admit exactly the budget."""
    import threading
    from types import SimpleNamespace

    from django.core.cache import cache

    from config.api import PrincipalRateThrottle

    settings.API_RATE_LIMIT = "10/min"
    cache.clear()
    request = SimpleNamespace(auth=SimpleNamespace(pk=4242, prefix="keel_conc"), user=None)
    barrier = threading.Barrier(40)
    admitted: list[bool] = []

    def call() -> None:
        throttle = PrincipalRateThrottle()
        barrier.wait()
        admitted.append(throttle.allow_request(request, None))

    threads = [threading.Thread(target=call) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert admitted.count(True) == 10
    refused = PrincipalRateThrottle()
    assert refused.allow_request(request, None) is False
    assert 0 < refused.wait() <= 60
