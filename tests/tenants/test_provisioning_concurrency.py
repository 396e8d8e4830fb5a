"""Concurrent signups against the real database (threads, each on its own connection).

These tests commit, so they clean up the brands they create themselves.
"""

from __future__ import annotations

import threading

import pytest
from django.core.exceptions import ValidationError
from django.db import connection, connections

from tenants.models import Brand
from tenants.services import Owner, provision_brand

OWNER = Owner("racer@example.com", "Rae Racer", "correct-horse-battery-staple")


def race(slugs: list[str]) -> list[object]:
    barrier = threading.Barrier(len(slugs))
    results: list[object] = [None] * len(slugs)

    def attempt(i: int, slug: str) -> None:
        barrier.wait()
        try:
            results[i] = provision_brand(name=slug, slug=slug, owner=OWNER).schema_name
        except ValidationError as exc:
            results[i] = exc.code
        finally:
            connections.close_all()

    threads = [threading.Thread(target=attempt, args=(i, s)) for i, s in enumerate(slugs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def brand_schemas() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'brand_race%%'")
        return {row[0] for row in cursor.fetchall()}


@pytest.fixture
def committed(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        yield
        for brand in Brand.objects.filter(slug__startswith="race") | Brand.objects.filter(
            kind="pool"
        ):
            brand.delete(force_drop=True)
        assert brand_schemas() == set()


def test_same_slug_at_the_same_instant_provisions_exactly_once(committed):
    results = race(["race-same"] * 4)

    assert sorted(results, key=str) == ["brand_race_same", "taken", "taken", "taken"]
    assert Brand.objects.filter(slug="race-same").count() == 1
    assert brand_schemas() == {"brand_race_same"}


def test_different_slugs_provision_in_parallel(committed):
    results = race(["race-one", "race-two", "race-three"])

    assert sorted(results) == ["brand_race_one", "brand_race_three", "brand_race_two"]
    assert brand_schemas() == {"brand_race_one", "brand_race_two", "brand_race_three"}


def test_concurrent_signups_share_the_pool_and_fall_back_to_cloning(committed):
    from tenants.services import refill_pool

    refill_pool(2)
    results = race(["race-a", "race-b", "race-c"])

    assert sorted(results) == ["brand_race_a", "brand_race_b", "brand_race_c"]
    assert Brand.objects.filter(kind="pool").count() == 0
    assert brand_schemas() == {"brand_race_a", "brand_race_b", "brand_race_c"}


def test_same_slug_races_with_a_full_pool_still_provision_once(committed):
    from tenants.services import refill_pool

    refill_pool(4)
    results = race(["race-pooled"] * 4)

    assert sorted(results, key=str) == ["brand_race_pooled", "taken", "taken", "taken"]
    assert brand_schemas() == {"brand_race_pooled"}
    assert Brand.objects.filter(kind="pool").count() == 3
