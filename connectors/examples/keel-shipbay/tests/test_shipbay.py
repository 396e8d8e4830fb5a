"""ShipBay-specific behaviour beyond the contract."""

from __future__ import annotations

import pytest
from keel_shipbay.fake import contract_harness

from connectors.errors import PermanentError
from connectors.types import Address, FulfillmentLine, FulfillmentRequest


def test_fulfillment_reaches_shipbay_with_an_idempotency_key():
    with contract_harness() as harness:
        connector = harness.build()
        request = harness.fulfillment_request
        ack = connector.push_fulfillment_order(request=request, idempotency_key="fo-1")
        replay = connector.push_fulfillment_order(request=request, idempotency_key="fo-1")
        assert ack == replay
        assert list(harness.fake.fulfillments) == [request.request_id]
        posts = harness.fake.journal.entries("POST")
        assert [e.headers["idempotency-key"] for e in posts] == ["fo-1", "fo-1"]


def test_invalid_address_is_a_permanent_error():
    with contract_harness() as harness:
        request = FulfillmentRequest(
            request_id="FR-bad",
            order_ref="#2",
            ship_to=Address(name="Nobody", country="GB"),
            lines=(FulfillmentLine("KEEL-001-M", 1),),
        )
        with pytest.raises(PermanentError):
            harness.build().push_fulfillment_order(request=request, idempotency_key="fo-2")
        assert harness.fake.journal.count("POST") == 1
