"""Replenishment fixtures: brand alpha's schema, its people, and its local today."""

from __future__ import annotations

import pytest

from tests.approvals.conftest import make_people


@pytest.fixture
def alpha(in_alpha):
    return in_alpha


@pytest.fixture
def people(brand_a):
    return make_people(brand_a)


@pytest.fixture
def today(alpha, _segment_policies):
    from replenishment.services import brand_today

    return brand_today()


@pytest.fixture
def _segment_policies(alpha):
    """Seeded segment policies present (committing tests elsewhere empty them)."""
    from tests.replenishment.helpers import restore_segment_policies

    restore_segment_policies()
