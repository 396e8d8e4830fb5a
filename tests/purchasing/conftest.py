"""Purchasing fixtures: a brand schema, captured email."""

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
def mails(settings):
    from django.core import mail

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    mail.outbox = []
    return mail.outbox
