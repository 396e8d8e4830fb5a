"""`manage.py workers_status` against real Redis, with and without a real worker."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator

import pytest
import redis

from config.celery import app
from tests.workers.support import ROOT, child_env, running_worker
from workers.beat import LeaderElectedScheduler

# The worker below leaves `monitor` unconsumed so its depth stays put.
CONSUMED = ("sync", "forecast", "default")


def workers_status(**env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "workers_status", "--timeout", "1"],
        cwd=ROOT,
        env={**child_env(), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def monitor_queue(broker: redis.Redis) -> Iterator[str]:
    broker.delete("monitor")
    yield "monitor"
    broker.delete("monitor")


def test_status_fails_clearly_without_worker_or_beat(db, broker):
    # given: nothing consumes the broker and no beat has ticked

    # when
    result = workers_status()

    # then
    assert result.returncode == 1
    assert "Workers: none answered" in result.stdout
    assert "Beat: no heartbeat" in result.stdout
    assert result.stderr.strip() == (
        "CommandError: Unhealthy: no worker answered within 1s; "
        "beat has no heartbeat (is a beat process running?)"
    )


def test_status_fails_clearly_when_the_broker_is_down(db):
    # given: a broker address nothing listens on
    down = "redis://127.0.0.1:9/0"

    # when
    result = workers_status(REDIS_URL=down, CELERY_BROKER_URL=down)

    # then
    assert result.returncode == 1
    assert result.stderr.startswith("CommandError: Broker unreachable: ")
    assert "Connection refused" in result.stderr


def test_status_lists_worker_and_queue_depths_and_passes_once_beat_ticks(
    db, broker, monitor_queue, tmp_path
):
    # given: a worker on three queues, three messages waiting in the fourth
    for _ in range(3):
        app.send_task("tests.workers.never_run", queue=monitor_queue)
    with running_worker(CONSUMED, tmp_path / "worker.log") as name:
        # when: no beat has ticked yet
        without_beat = workers_status()

        # then: the worker and the depths are listed, but beat is missing
        assert without_beat.returncode == 1
        assert f"Worker {name}: default, forecast, sync" in without_beat.stdout
        assert "Queues: sync=0, forecast=0, monitor=3, default=0" in without_beat.stdout
        assert without_beat.stderr.strip() == (
            "CommandError: Unhealthy: beat has no heartbeat (is a beat process running?)"
        )

        # when: a scheduler ticks once
        beat = LeaderElectedScheduler(app=app, schedule_filename=str(tmp_path / "beat"))
        try:
            beat.tick()
            healthy = workers_status()
        finally:
            beat.close()

    # then: healthy
    assert healthy.returncode == 0, healthy.stderr
    assert healthy.stderr == ""
    queues, worker, beat_line = healthy.stdout.splitlines()
    assert queues == "Queues: sync=0, forecast=0, monitor=3, default=0"
    assert worker == f"Worker {name}: default, forecast, sync"
    # the age counts the command's own start-up, a second or two
    tick = re.fullmatch(
        rf"Beat: leader {re.escape(beat.lock.node_id)}, last tick (\d+)s ago", beat_line
    )
    assert tick is not None, beat_line
    assert int(tick.group(1)) <= 10
