"""The example third-party package, pip-installed, is discovered and works with no platform
change (the test harness installs it: pip install -e connectors/examples/keel-shipbay)."""

from __future__ import annotations

from collections.abc import Iterator
from importlib import metadata

import pytest

from connectors.manager import ENTRY_POINT_GROUP, get_plugin_manager
from connectors.testing import ConnectorContract, ContractHarness
from connectors.types import ConnectorKind

INSTALL = "pip install -e connectors/examples/keel-shipbay"


def _installed() -> metadata.EntryPoint:
    found = [ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name == "shipbay"]
    assert found, f"keel-shipbay is not installed; the test harness runs `{INSTALL}`"
    return found[0]


@pytest.fixture
def fresh_manager():
    get_plugin_manager.cache_clear()
    yield get_plugin_manager()
    get_plugin_manager.cache_clear()


def test_entry_point_is_published_by_the_distribution():
    entry_point = _installed()
    assert entry_point.value == "keel_shipbay"
    assert entry_point.dist is not None and entry_point.dist.name == "keel-shipbay"


def test_plugin_manager_discovers_it_through_entry_points(fresh_manager):
    _installed()
    source = fresh_manager.sources["shipbay"]
    assert (source.builtin, source.distribution, source.version) == (False, "keel-shipbay", "0.1.0")
    infos = {
        info.name: info for batch in fresh_manager.hook.keel_connector_info() for info in batch
    }
    assert infos["shipbay"].kind is ConnectorKind.THREEPL
    assert "shipbay" not in fresh_manager.load_errors


def test_operator_allowlist_can_leave_it_out():
    _installed()
    get_plugin_manager.cache_clear()
    try:
        pm = get_plugin_manager(allowlist=["something-else"])
        assert pm.get_plugin("shipbay") is None
    finally:
        get_plugin_manager.cache_clear()


def test_fulfillment_push_through_the_deployment_manager_reaches_its_fake(fresh_manager):
    _installed()
    from keel_shipbay.fake import contract_harness

    with contract_harness() as harness:
        # Built exactly as the platform will: the deployment's manager, by connector name.
        connector = fresh_manager.hook.keel_connector_factory(
            name="shipbay",
            settings=harness.settings,
            credentials=harness.credentials,
            http=harness.http(),
            state=harness.state,
            clock=harness.clock,
        )
        ack = connector.push_fulfillment_order(
            request=harness.fulfillment_request, idempotency_key="e2e-1"
        )
        assert harness.fake.fulfillments["FR-contract"]["id"] == ack.external_id


class TestShipBayContract(ConnectorContract):
    @pytest.fixture
    def harness(self) -> Iterator[ContractHarness]:
        _installed()
        from keel_shipbay.fake import contract_harness

        with contract_harness() as harness:
            yield harness
