"""ShipBay passes Keel's connector contract against its fake (run: pytest tests/)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from keel_shipbay.fake import contract_harness

from connectors.testing import ConnectorContract, ContractHarness


class TestShipBayContract(ConnectorContract):
    @pytest.fixture
    def harness(self) -> Iterator[ContractHarness]:
        with contract_harness() as harness:
            yield harness
