"""A worker killed (SIGKILL) between the carrier's answer and our commit of a label.

A real prefork worker buys the label; a hook (tests/shipping/kill_hook.py) holds it right
after the carrier sold the label and before our transaction stores it, and the test kills
that pool process. The broker redelivers the task (acks_late + reject_on_worker_lost), the
second execution finds the `purchasing` row and asks the carrier again with the same
idempotency key: exactly one label at the carrier and one in our database.
"""

from __future__ import annotations

import os
import signal

import pytest
import redis
from django.conf import settings

from config.celery import app
from shipping import services
from shipping.models import Label, LabelStatus
from sync.state import DatabaseState
from tests.shipping.factories import make_fo
from tests.workers.support import drained, running_worker, wait_for


def _to_worker(label_id: int) -> None:
    app.send_task("shipping.purchase_label", args=[label_id])


@pytest.mark.real_broker
def test_a_label_purchase_killed_before_our_commit_ends_with_one_label(
    committed_shipping, tmp_path, monkeypatch
):
    marker = tmp_path / "killed"
    monkeypatch.setenv("KEEL_TEST_LABEL_KILL_MARKER", str(marker))
    monkeypatch.setattr(services, "dispatch_purchase", _to_worker)
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    with running_worker(
        ["default"],
        tmp_path / "worker.log",
        include=("tests.workers.celery_tasks", "tests.shipping.kill_hook"),
    ):
        # given: a rated parcel under the approval threshold
        shipment = services.rate_shipment(services.create_shipment(make_fo()))
        # when: its label is bought by the worker, which dies after the carrier answered
        services.request_label(shipment)
        wait_for(marker.exists, timeout=60, what="the carrier's answer in the worker")
        pid = int(marker.read_text().split()[0])
        os.kill(pid, signal.SIGKILL)
        # then: redelivered, the purchase completes
        wait_for(
            lambda: Label.objects.filter(shipment=shipment, status=LabelStatus.PURCHASED).exists(),
            timeout=90,
            what="the label to be stored after the kill",
        )
        wait_for(lambda: drained(broker, ["default"]), timeout=20, what="the queue to drain")
    labels = list(Label.objects.filter(shipment=shipment))
    assert len(labels) == 1
    label = labels[0]
    assert label.status == LabelStatus.PURCHASED
    assert label.attempts == 2, "bought once, asked again once after the kill"
    sold = DatabaseState(label.connection_id).get("labels", {})
    assert list(sold) == [label.idempotency_key]
    assert sold[label.idempotency_key]["tracking_number"] == label.tracking_number
    assert marker.read_text().split()[1] == label.tracking_number
