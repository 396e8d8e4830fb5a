"""RELIABILITY 13 for sync: a worker killed (SIGKILL) in the middle of a sync.

A real prefork worker runs the sync against the Shopify fake; once some pages are
committed its pool process is killed. The parent requeues the task (acks_late +
reject_on_worker_lost), the run resumes from the stored cursor, and the fake's full
order set arrives with nothing lost and nothing twice.
"""

from __future__ import annotations

import os
import signal

import pytest
import redis
from django.conf import settings

from orders.models import Order
from sync import services
from sync.models import SyncRun
from tests.fakes.shopify import FakeShopify
from tests.sync.conftest import connect_shopify
from tests.workers.support import drained, running_worker, wait_for

ORDERS = 400
PAGE = 25


class SlowShopify(FakeShopify):
    """Pages take a while, so there is a moment to kill the worker mid-pass."""

    def after_route(self, request, response):
        response = super().after_route(request, response)
        if request.path.endswith("/orders.json"):
            response.delay = 0.25
        return response


@pytest.mark.real_broker
def test_a_sync_killed_mid_run_resumes_from_its_cursor_with_no_loss_or_duplicates(
    committed_sync, tmp_path, monkeypatch
):
    # given: a worker that may call the fake on loopback, and a slow 400-order shop
    monkeypatch.setenv("KEEL_CONNECTOR_EGRESS_PERMISSIVE", "1")
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    with SlowShopify(orders=ORDERS) as fake, running_worker(["sync"], tmp_path / "worker.log"):
        conn = connect_shopify(fake, orders_page_size=PAGE)

        # when: the sync starts, and its worker process is killed after 3 pages
        run, _ = services.request_sync(conn, trigger="manual", streams=["orders"])
        wait_for(
            lambda: SyncRun.objects.get(pk=run.pk).pages >= 3,
            timeout=60,
            what="three committed pages",
        )
        first = SyncRun.objects.get(pk=run.pk)
        pid = int(first.worker.rsplit(":", 1)[1])
        os.kill(pid, signal.SIGKILL)
        killed_at_page = first.pages

        # then: redelivered, resumed, finished
        wait_for(
            lambda: SyncRun.objects.get(pk=run.pk).status == "succeeded",
            timeout=120,
            what="the run to finish after the kill",
        )
        wait_for(lambda: drained(broker, ["sync"]), timeout=10, what="the sync queue to drain")
        pages_requested = [e for e in fake.journal.entries("GET", r"/orders\.json$")]

    run.refresh_from_db()
    assert run.attempts == 2, "executed once more after the kill"
    assert run.worker != first.worker
    assert Order.objects.count() == ORDERS
    assert set(Order.objects.values_list("external_id", flat=True)) == {
        str(i) for i in fake.order_ids
    }
    # resumed from the stored cursor: the pass started once, and at most the page in
    # flight when the worker died was read twice
    starts = [e for e in pages_requested if "page_info" not in e.raw_query]
    assert len(starts) == 1
    assert ORDERS // PAGE <= len(pages_requested) <= ORDERS // PAGE + 1
    assert killed_at_page >= 3
