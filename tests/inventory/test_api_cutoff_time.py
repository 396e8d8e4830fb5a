"""Warehouse cutoff times over the API: a wall-clock time of day, HH:MM:SS, no offset.

Regressions found by schema fuzzing: "12:46:21.250000" was stored and echoed back with its
fraction; and the schema declared `format: time`, which JSON Schema defines as RFC 3339
full-time (offset required), so a format-checking client rejected every cutoff we sent
("06:35:02"), while an input with an offset ("06:35:02Z") was accepted and the offset lost.
"""

from __future__ import annotations

import jsonschema_rs
from django_tenants.utils import schema_context
from drf_spectacular.generators import SchemaGenerator

from inventory.models import Warehouse
from tests.conftest import brand_client

JSON = "application/json"


def cutoff_schema(component: str = "Warehouse") -> dict:
    schema = SchemaGenerator(urlconf="config.urls_tenant").get_schema(request=None, public=True)
    return schema["components"]["schemas"][component]["properties"]["cutoff_time"]


def conforms(value: object, component: str = "Warehouse") -> bool:
    """Validated as format-checking clients (and the schema fuzzer) do; OpenAPI 3.0's
    `nullable` becomes JSON Schema's null type."""
    schema = dict(cutoff_schema(component))
    if schema.pop("nullable", False):
        schema = {"anyOf": [schema, {"type": "null"}]}
    validator = jsonschema_rs.Draft202012Validator(schema, validate_formats=True)
    return validator.is_valid(value)


def test_cutoff_time_with_a_fraction_of_a_second_is_kept_to_the_second(brand_a, owner_a):
    response = brand_client(brand_a, owner_a).post(
        "/api/v1/warehouses/",
        {"code": "FRAC", "name": "Fraction DC", "cutoff_time": "12:46:21.250000"},
        content_type=JSON,
    )

    assert response.status_code == 201, response.content
    assert response.json()["cutoff_time"] == "12:46:21"
    assert conforms(response.json()["cutoff_time"])
    with schema_context(brand_a.schema_name):
        assert Warehouse.objects.get(code="FRAC").cutoff_time.microsecond == 0


def test_every_cutoff_the_api_answers_matches_its_own_schema(brand_a, owner_a):
    client = brand_client(brand_a, owner_a)

    created = client.post(
        "/api/v1/warehouses/",
        {"code": "EARLY", "name": "Early DC", "cutoff_time": "06:35"},
        content_type=JSON,
    )
    cleared = client.patch(
        f"/api/v1/warehouses/{created.json()['id']}/", {"cutoff_time": None}, content_type=JSON
    )

    assert created.status_code == 201, created.content
    assert created.json()["cutoff_time"] == "06:35:00"
    assert cleared.status_code == 200, cleared.content
    assert cleared.json()["cutoff_time"] is None
    for value in ("06:35:00", "23:59:59", None):
        assert conforms(value)
    assert "format" not in cutoff_schema()


def test_an_offset_or_a_malformed_time_is_refused_and_nothing_is_saved(brand_a, owner_a):
    client = brand_client(brand_a, owner_a)

    for value in ("06:35:02Z", "06:35:02+02:00", "6:35", "24:00", "16:30:60", "noon", 1630):
        response = client.post(
            "/api/v1/warehouses/",
            {"code": "ODD", "name": "Odd DC", "cutoff_time": value},
            content_type=JSON,
        )
        assert response.status_code == 400, (value, response.content)
        error = response.json()["error"]
        assert error["code"] == "validation_error"
        assert error["fields"]["cutoff_time"] == [
            {
                "code": "invalid",
                "message": "Write a time of day as HH:MM or HH:MM:SS, without a UTC offset.",
            }
        ]
        if isinstance(value, str):
            assert not conforms(value, "WarehouseRequest")  # the schema says so too
    with schema_context(brand_a.schema_name):
        assert not Warehouse.objects.filter(code="ODD").exists()
