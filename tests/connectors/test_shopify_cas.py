"""Shopify available-quantity pushes as compare-and-swap (RELIABILITY 4's channel half):
the compare value is the quantity Keel last saw on Shopify; a stale answer
(CHANGE_FROM_QUANTITY_STALE from 2026-01, COMPARE_QUANTITY_STALE before) is re-read and
retried at most three times, then reported stale."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

import connectors.shopify as shopify_plugin
from connectors.clock import VirtualClock
from connectors.http import HttpContext
from connectors.manager import make_test_manager
from connectors.shopify.connector import SEEN_KEY, ShopifyConnector
from connectors.state import MemoryState
from connectors.types import AvailableQuantity, PushOutcome
from tests.connectors.conftest import shopify_credentials, shopify_settings
from tests.fakes.shopify import FakeShopify

NEW_API = "2026-04"


@pytest.fixture(params=["2024-10", "2026-01", NEW_API])
def version(request) -> str:
    return request.param


@pytest.fixture
def fake(clock: VirtualClock, version: str) -> Iterator[FakeShopify]:
    with FakeShopify(clock=clock, api_version=version) as server:
        yield server


def build(fake: FakeShopify, http: HttpContext, clock, state: MemoryState) -> ShopifyConnector:
    pm = make_test_manager(shopify_plugin)
    return pm.hook.keel_connector_factory(
        name="shopify",
        settings=shopify_settings(fake, api_version=fake.api_version),
        credentials=shopify_credentials(fake),
        http=http,
        state=state,
        clock=clock,
    )


def item(fake: FakeShopify, n: int = 0) -> int:
    return fake.variants[n]["inventory_item_id"]


def level(fake: FakeShopify, quantity: int, n: int = 0) -> AvailableQuantity:
    return AvailableQuantity(inventory_ref=str(item(fake, n)), available=quantity)


def sent_documents(fake: FakeShopify) -> list[dict]:
    return [json.loads(e.body) for e in fake.journal.entries("POST", "graphql")]


def writes(fake: FakeShopify) -> list[dict]:
    return [d for d in sent_documents(fake) if "inventorySetQuantities" in d["query"]]


def test_compare_value_is_the_quantity_keel_last_saw(fake, http, clock, version):
    state = MemoryState()
    connector = build(fake, http, clock, state)
    # first push: Keel has never seen the item, so it reads it first
    [first] = connector.push_available(levels=[level(fake, 30)])
    assert first.outcome is PushOutcome.APPLIED and first.previous == 50
    assert fake.journal.count("POST", "graphql") == 2
    # second push: no read; Shopify still holds what Keel wrote, so the swap succeeds
    [second] = connector.push_available(levels=[level(fake, 12)])
    assert second.outcome is PushOutcome.APPLIED and second.previous == 30
    assert fake.journal.count("POST", "graphql") == 3
    assert fake.available(item(fake)) == 12
    [_, last] = writes(fake)
    [quantity] = last["variables"]["input"]["quantities"]
    field = "compareQuantity" if version < "2026-01" else "changeFromQuantity"
    assert quantity[field] == 30 and quantity["quantity"] == 12
    if version >= "2026-01":
        assert "compareQuantity" not in quantity
        assert "ignoreCompareQuantity" not in last["variables"]["input"]
        assert "@idempotent(key: $idempotencyKey)" in last["query"]
        assert last["variables"]["idempotencyKey"] != writes(fake)[0]["variables"]["idempotencyKey"]
    assert state.get(SEEN_KEY) == {
        f"gid://shopify/InventoryItem/{item(fake)}@gid://shopify/Location/{fake.location_id}": 12
    }


def test_a_change_behind_keels_back_is_reread_and_retried(fake, http, clock, version):
    state = MemoryState()
    connector = build(fake, http, clock, state)
    connector.push_available(levels=[level(fake, 5)])
    # Shopify sells one unit Keel has not ingested yet
    assert fake.change_available(item(fake), -1) == 4
    [result] = connector.push_available(levels=[level(fake, 3)])
    assert result.outcome is PushOutcome.APPLIED
    assert result.attempts == 2 and result.previous == 4
    stale = "COMPARE_QUANTITY_STALE" if version < "2026-01" else "CHANGE_FROM_QUANTITY_STALE"
    assert [a["codes"] for a in fake.inventory_attempts] == [[], [stale], []]
    assert fake.available(item(fake)) == 3
    # a write never overwrote a quantity it had not seen
    assert [(w["from"], w["to"]) for w in fake.inventory_writes] == [(50, 5), (4, 3)]


def test_quantity_that_keeps_changing_gives_up_after_three_retries(fake, http, clock, version):
    connector = build(fake, http, clock, MemoryState())
    connector.push_available(levels=[level(fake, 40)])
    fake.inventory_writes.clear()
    fake.journal.clear()
    fake.change_available(item(fake), -1)
    fake.interleave_sales(10)  # and a sale lands before every later write
    [result] = connector.push_available(levels=[level(fake, 20)])
    assert result.outcome is PushOutcome.STALE and result.attempts == 4
    assert "retry later" in result.message
    assert fake.inventory_writes == []
    # 1 write with the remembered value, then 3 × (re-read + write)
    assert fake.journal.count("POST", "graphql") == 1 + 3 * 2


def test_stale_items_in_a_batch_retry_the_whole_atomic_call(fake, http, clock, version):
    connector = build(fake, http, clock, MemoryState())
    connector.push_available(levels=[level(fake, 10, 0), level(fake, 10, 1), level(fake, 10, 2)])
    fake.change_available(item(fake, 1), +2)
    results = connector.push_available(
        levels=[level(fake, 7, 0), level(fake, 7, 1), level(fake, 7, 2)]
    )
    assert [r.outcome for r in results] == [PushOutcome.APPLIED] * 3
    assert [r.previous for r in results] == [10, 12, 10]
    assert [fake.available(item(fake, n)) for n in range(3)] == [7, 7, 7]


def test_2026_04_fake_refuses_the_old_syntax_and_replays_idempotent_requests(clock):
    with FakeShopify(clock=clock, api_version=NEW_API) as fake:
        url = f"{fake.url}/admin/api/{NEW_API}/graphql.json"
        headers = {"X-Shopify-Access-Token": fake.access_token}
        gid = f"gid://shopify/InventoryItem/{item(fake)}"
        location = f"gid://shopify/Location/{fake.location_id}"

        def mutate(quantity: dict, *, key: str | None = "k-1", directive: bool = True) -> dict:
            query = "mutation M($input: InventorySetQuantitiesInput!, $idempotencyKey: String!)"
            query += " { inventorySetQuantities(input: $input)"
            query += " @idempotent(key: $idempotencyKey)" if directive else ""
            query += " { userErrors { code field message } } }"
            variables = {
                "input": {
                    "name": "available",
                    "reason": "correction",
                    "quantities": [{"inventoryItemId": gid, "locationId": location, **quantity}],
                },
                "idempotencyKey": key,
            }
            return httpx.post(
                url, json={"query": query, "variables": variables}, headers=headers
            ).json()

        assert "errors" in mutate({"quantity": 9, "compareQuantity": 50})
        assert "errors" in mutate({"quantity": 9})
        assert "errors" in mutate({"quantity": 9, "changeFromQuantity": 50}, directive=False)
        applied = mutate({"quantity": 9, "changeFromQuantity": 50})
        assert applied["data"]["inventorySetQuantities"]["userErrors"] == []
        # the same key and input again: replayed, not applied twice (and not stale)
        assert mutate({"quantity": 9, "changeFromQuantity": 50})["data"] == applied["data"]
        assert [(w["from"], w["to"]) for w in fake.inventory_writes] == [(50, 9)]
        # the same key with other input is refused
        mismatch = mutate({"quantity": 8, "changeFromQuantity": 9})
        codes = [e["code"] for e in mismatch["data"]["inventorySetQuantities"]["userErrors"]]
        assert codes == ["IDEMPOTENCY_KEY_PARAMETER_MISMATCH"]
        # null skips the check
        skipped = mutate({"quantity": 4, "changeFromQuantity": None}, key="k-2")
        assert skipped["data"]["inventorySetQuantities"]["userErrors"] == []
        assert fake.available(item(fake)) == 4
