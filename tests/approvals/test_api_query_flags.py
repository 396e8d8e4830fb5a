"""Regression found by schema fuzzing: the approval-requests list's boolean filters
(`mine`, `decidable`) refuse values that are not booleans instead of reading them as
"false" and returning every request."""

from __future__ import annotations

import pytest

from tests.conftest import brand_client


@pytest.mark.parametrize("query", ["mine=null", "mine=maybe", "decidable=2", "decidable="])
def test_a_non_boolean_flag_is_400_naming_it(brand_a, owner_a, query):
    response = brand_client(brand_a, owner_a).get(f"/api/v1/approval-requests/?{query}")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert list(error["fields"]) == [query.split("=")[0]]


@pytest.mark.parametrize("query", ["mine=true", "mine=false", "decidable=1", "decidable=0"])
def test_boolean_flags_are_accepted(brand_a, owner_a, query):
    response = brand_client(brand_a, owner_a).get(f"/api/v1/approval-requests/?{query}")
    assert response.status_code == 200
