"""Connector secrets never leave their sealed column: not in API responses, pages, logs,
captured output, the activity log or sync run records (RELIABILITY 24a, log side)."""

from __future__ import annotations

import json
import logging

from audit.models import ActivityEntry
from sync import services
from sync.models import SyncRun, WebhookReceipt
from tests.conftest import brand_client
from tests.sync.conftest import SHOP_SECRET
from tests.sync.test_webhooks import deliver

NEW_TOKEN = "shpat_replacement_token_77777"


def test_secrets_appear_nowhere_across_a_connection_s_life(
    brand_a, owner_a, shop, shop_catalog, shopify, tasks, clock, caplog, capsys
):
    secrets = [shopify.access_token, SHOP_SECRET, NEW_TOKEN]
    seen: list[str] = []
    client = brand_client(brand_a, owner_a)
    caplog.set_level(logging.DEBUG)

    # pages and API while it works
    for path in (
        "/connections/",
        f"/connections/{shop.pk}/",
        f"/connections/{shop.pk}/edit/",
        "/api/v1/connections/",
        f"/api/v1/connections/{shop.pk}/",
        "/api/v1/connectors/",
    ):
        seen.append(client.get(path).content.decode())
    seen.append(client.post(f"/api/v1/connections/{shop.pk}/test/").content.decode())
    services.request_sync(shop, trigger="manual")
    tasks.drain(clock=clock)
    seen.append(client.get("/api/v1/sync-runs/").content.decode())

    # a genuine and a forged webhook
    good = shopify.webhook_for(shopify.order_ids[0], secret=SHOP_SECRET)
    forged = shopify.webhook_for(shopify.order_ids[1], secret="guessed-secret-000000")
    assert deliver(brand_a, shop, good.headers, good.body) == 200
    assert deliver(brand_a, shop, forged.headers, forged.body) == 401
    tasks.drain(clock=clock)

    # new credentials through the form, then the vendor refuses them
    shopify.revoke_token()
    edit = client.post(
        f"/connections/{shop.pk}/edit/",
        {
            "display_name": "Shop",
            "poll_interval": 120,
            "cfg_shop_domain": shopify.shop,
            "cfg_api_base_url": shopify.url,
            "cfg_access_token": NEW_TOKEN,
        },
        follow=True,
    )
    seen.append(edit.content.decode())
    seen.append(client.post(f"/connections/{shop.pk}/test/", follow=True).content.decode())
    services.resume_connection(shop)
    services.request_sync(shop, trigger="manual")
    tasks.drain(clock=clock)
    seen.append(client.get(f"/connections/{shop.pk}/").content.decode())
    run = SyncRun.objects.order_by("-id").first()
    seen.append(client.get(f"/connections/runs/{run.pk}/").content.decode())

    # then: refused requests and rejected webhooks were logged, but no secret anywhere
    assert any(r.name == "connectors.http" for r in caplog.records)
    assert any(r.name == "keel.security" for r in caplog.records)
    out = capsys.readouterr()
    records = "\n".join(
        f"{r.getMessage()} {json.dumps(r.__dict__, default=str)}" for r in caplog.records
    )
    activity = json.dumps(list(ActivityEntry.objects.values("changes", "object_repr")))
    runs = json.dumps(list(SyncRun.objects.values("errors", "message")), default=str)
    receipts = json.dumps(list(WebhookReceipt.objects.values("headers", "result")))
    for secret in secrets:
        for name, text in [
            ("pages and API", "\n".join(seen)),
            ("log records", records),
            ("captured output", out.out + out.err),
            ("activity log", activity),
            ("sync runs", runs),
            ("webhook receipts", receipts),
        ]:
            assert secret not in text, f"{secret[:6]}… found in {name}"
