"""Regression found by schema fuzzing (100 examples): a warehouse cutoff time sent with a
fraction of a second was stored and echoed back as "12:46:21.250000", which the documented
`format: time` does not allow. A daily cutoff is kept to the second."""

from __future__ import annotations

import jsonschema
from django_tenants.utils import schema_context

from inventory.models import Warehouse
from tests.conftest import brand_client


def test_cutoff_time_with_a_fraction_of_a_second_is_kept_to_the_second(brand_a, owner_a):
    response = brand_client(brand_a, owner_a).post(
        "/api/v1/warehouses/",
        {"code": "FRAC", "name": "Fraction DC", "cutoff_time": "12:46:21.250000"},
        content_type="application/json",
    )

    assert response.status_code == 201, response.content
    assert response.json()["cutoff_time"] == "12:46:21"
    assert jsonschema.FormatChecker().conforms(response.json()["cutoff_time"], "time")
    with schema_context(brand_a.schema_name):
        assert Warehouse.objects.get(code="FRAC").cutoff_time.microsecond == 0
