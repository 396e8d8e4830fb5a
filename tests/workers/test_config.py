"""Celery configuration guards (RELIABILITY 13, 14): redelivery, limits, queues."""

from __future__ import annotations

import redis

from config.celery import VISIBILITY_MARGIN_SECONDS, app, check_visibility, longest_countdown
from workers.base import BrandTask

QUEUES = {"sync", "forecast", "monitor", "default"}


def product_tasks() -> dict:
    # What a worker registers at start-up; autodiscovery is lazy in other processes.
    app.loader.import_default_modules()
    return {
        name: task for name, task in app.tasks.items() if not name.startswith(("celery.", "tests."))
    }


def test_visibility_timeout_outlasts_every_tasks_countdown_and_hard_limit():
    # given
    visibility = app.conf.broker_transport_options["visibility_timeout"]
    tasks = product_tasks()

    # when / then: Redis never redelivers a task that is still waiting or running
    assert {"workers.fan_out", "accounts.cleanup_expired"} <= set(tasks)
    assert app.conf.task_time_limit == 15 * 60
    assert app.conf.task_soft_time_limit < app.conf.task_time_limit
    for name, task in tasks.items():
        hard = task.time_limit or app.conf.task_time_limit
        assert visibility >= longest_countdown(task) + hard + VISIBILITY_MARGIN_SECONDS, name
    assert longest_countdown(tasks["accounts.cleanup_expired"]) == 600  # BrandTask backoff cap
    assert check_visibility() == []


def test_visibility_check_names_the_tasks_a_short_timeout_would_redeliver():
    # given: a timeout shorter than a BrandTask's backoff cap plus the hard limit
    too_short = 600 + 15 * 60

    # when
    problems = check_visibility(visibility_timeout=too_short)

    # then: the retrying brand tasks are flagged, the non-retrying fan-out is not
    problems = [p for p in problems if not p.startswith("tests.")]
    brand_tasks = sorted(
        name for name, task in product_tasks().items() if isinstance(task, BrandTask)
    )
    assert "accounts.cleanup_expired" in brand_tasks
    assert [p.split(":")[0] for p in problems] == brand_tasks
    assert problems[0] == (
        "accounts.cleanup_expired: visibility_timeout 1500s < 1800s "
        "(countdown 600s + time limit 900s + margin 300s)"
    )


def test_tasks_ack_late_and_requeue_when_their_worker_dies():
    # given / when
    tasks = product_tasks()

    # then
    assert app.conf.task_acks_late is True
    assert app.conf.task_reject_on_worker_lost is True
    # a prefetched task of a dead worker is redelivered too; keep that window to one
    assert app.conf.worker_prefetch_multiplier == 1
    assert {name: (t.acks_late, t.reject_on_worker_lost) for name, t in tasks.items()} == {
        name: (True, True) for name in tasks
    }


def test_product_queues_are_declared_and_routes_use_them():
    # given / when
    declared = {q.name: q for q in app.conf.task_queues}

    # then
    assert set(declared) == QUEUES
    assert app.conf.task_default_queue == "default"
    assert {route["queue"] for route in app.conf.task_routes.values()} <= QUEUES
    assert {name: q.routing_key for name, q in declared.items()} == {q: q for q in QUEUES}


def test_a_publish_by_routing_key_reaches_exactly_one_queue(broker: redis.Redis):
    # given: the product queues declared on the real broker, empty
    with app.connection_for_write() as conn:
        for queue in app.amqp.queues.values():
            queue(conn).declare()
    depths_before = {q: broker.llen(q) for q in QUEUES}
    assert depths_before == dict.fromkeys(QUEUES, 0), "a worker test left messages behind"
    try:
        # when: a message goes to the default exchange by routing key
        app.send_task("tests.workers.never_run", exchange="default", routing_key="monitor")

        # then: one copy, in monitor
        assert {q: broker.llen(q) for q in QUEUES} == {**depths_before, "monitor": 1}
    finally:
        broker.delete("monitor")


def test_beat_entries_name_registered_tasks():
    # given / when
    entries = app.conf.beat_schedule
    tasks = product_tasks()

    # then: a typo would only surface as an unregistered-task error at run time
    for name, entry in entries.items():
        assert entry["task"] in tasks, name
        if entry["task"] == "workers.fan_out":
            assert entry["args"][0] in tasks, name
