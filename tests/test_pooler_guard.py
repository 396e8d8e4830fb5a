"""Pooler guard (RELIABILITY 21): `manage.py check` fails when brand isolation could leak
through a transaction-mode connection pooler, and passes for direct or session pooling."""

from __future__ import annotations

import pytest
from django.core.checks import registry
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from config.checks import check_pooler


@pytest.mark.parametrize("mode", ["direct", "session"])
def test_direct_or_session_pooling_passes(settings, mode):
    settings.KEEL_DB_POOL_MODE = mode
    settings.TENANT_LIMIT_SET_CALLS = True

    assert check_pooler() == []


@pytest.mark.parametrize("mode", ["transaction", "statement"])
def test_transaction_pooling_with_search_path_set_once_per_connection_fails(settings, mode):
    settings.KEEL_DB_POOL_MODE = mode
    settings.TENANT_LIMIT_SET_CALLS = True

    errors = check_pooler()

    assert [e.id for e in errors] == ["keel.E001"]
    assert "TENANT_LIMIT_SET_CALLS" in errors[0].msg
    assert "pool_mode = session" in errors[0].hint


def test_transaction_pooling_is_refused_even_with_search_path_set_per_query(settings):
    # SET search_path and the query are separate statements; in autocommit the pooler may
    # route them to different server connections.
    settings.KEEL_DB_POOL_MODE = "transaction"
    settings.TENANT_LIMIT_SET_CALLS = False

    assert [e.id for e in check_pooler()] == ["keel.E001"]


def test_an_unknown_mode_is_named(settings):
    settings.KEEL_DB_POOL_MODE = "trasnaction"

    errors = check_pooler()

    assert [e.id for e in errors] == ["keel.E002"]
    assert "'trasnaction'" in errors[0].msg


def test_the_check_is_registered_and_fails_manage_py_check(settings):
    assert check_pooler in registry.registry.get_checks()
    settings.KEEL_DB_POOL_MODE = "session"
    call_command("check", verbosity=0)

    settings.KEEL_DB_POOL_MODE = "transaction"
    with pytest.raises(SystemCheckError, match="keel.E001"):
        call_command("check", verbosity=0)


def test_the_shipped_default_is_a_direct_connection():
    from django.conf import settings

    # The test run uses the defaults of config/settings.py (no KEEL_DB_POOL_MODE set).
    assert settings.KEEL_DB_POOL_MODE == "direct"
    assert settings.TENANT_LIMIT_SET_CALLS is True
    assert check_pooler() == []
