"""Labels under real concurrency: threads on their own connections, released together."""

from __future__ import annotations

import threading

from django.db import connections
from django_tenants.utils import schema_context

from accounts.roles import Role
from shipping import services
from shipping.models import Label, LabelStatus
from sync.state import DatabaseState
from tests.factories import UserFactory
from tests.shipping.factories import make_fo


def run_together(work, count: int) -> list:
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def target(i: int) -> None:
        try:
            with schema_context("brand_alpha"):
                barrier.wait()
                results[i] = work(i)
        except Exception as exc:  # noqa: BLE001 - the test inspects every outcome
            results[i] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    return results


def test_four_clicks_on_buy_at_the_same_instant_buy_one_label(committed_shipping):
    # given: a rated parcel and four ops managers (or one impatient double-clicker)
    shipment = services.rate_shipment(services.create_shipment(make_fo()))
    people = [UserFactory(role=Role.OPS_MANAGER) for _ in range(4)]
    # when
    results = run_together(lambda i: services.request_label(shipment, actor=people[i]), 4)
    # then: nobody failed, one label at the carrier and here
    assert not [r for r in results if isinstance(r, Exception)], results
    labels = list(Label.objects.filter(shipment=shipment))
    assert len(labels) == 1
    assert labels[0].status == LabelStatus.PURCHASED
    assert {r.label.pk for r in results} == {labels[0].pk}
    assert len(DatabaseState(labels[0].connection_id).get("labels", {})) == 1
