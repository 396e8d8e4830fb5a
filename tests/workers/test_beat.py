"""Beat single-instance guard on real Redis (RELIABILITY 17): a leader lock, and a
scheduler that only sends while it holds it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import redis

from config.celery import app
from tests.workers.celery_tasks import RECORD_FANOUT
from tests.workers.support import queued, wait_for
from workers.beat import HEARTBEAT_KEY, LEADER_KEY, LeaderElectedScheduler, LeaderLock

TTL = 1  # seconds; short so a takeover fits in a test
QUEUE = "keel_test_beat"  # no worker consumes it: sends stay countable
INTERVAL = 1  # seconds; schedule_window slots are whole seconds


@pytest.fixture
def beat_queue(broker: redis.Redis) -> Iterator[str]:
    broker.delete(QUEUE)
    yield QUEUE
    broker.delete(QUEUE)


class Beats:
    """Scheduler instances for one test; whatever is still running is closed at the end."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.running: list[LeaderElectedScheduler] = []

    def start(self, name: str) -> LeaderElectedScheduler:
        sched = LeaderElectedScheduler(app=app, schedule_filename=str(self.tmp_path / name))
        # Only the probe: the product's entries (some every few seconds) would send real
        # tasks into the shared test broker's queues.
        sched.schedule.clear()
        sched.update_from_dict(
            {
                "probe": {
                    "task": "workers.fan_out",
                    "schedule": timedelta(seconds=INTERVAL),
                    "args": (RECORD_FANOUT,),
                    "options": {"queue": QUEUE},
                }
            }
        )
        self.running.append(sched)
        return sched

    def stop(self, sched: LeaderElectedScheduler) -> None:
        self.running.remove(sched)
        sched.close()


@pytest.fixture
def beats(tmp_path: Path) -> Iterator[Beats]:
    made = Beats(tmp_path)
    yield made
    for sched in list(made.running):
        made.stop(sched)


def sends(sched: LeaderElectedScheduler) -> int:
    return sched.schedule["probe"].total_run_count


def test_only_one_lock_holder_and_it_renews(broker):
    # given
    a = LeaderLock(broker, TTL, node_id="a")
    b = LeaderLock(broker, TTL, node_id="b")

    # when / then: a takes the lock, b cannot
    assert a.acquire_or_renew() is True
    assert b.acquire_or_renew() is False
    assert broker.get(LEADER_KEY) == b"a"

    # when: a keeps renewing past its first TTL
    for _ in range(3):
        time.sleep(TTL * 0.6)
        assert a.acquire_or_renew() is True
        # then: b never gets in
        assert b.acquire_or_renew() is False
    assert 0 < broker.pttl(LEADER_KEY) <= TTL * 1000

    # when: a stops renewing (crashed)
    stopped = time.monotonic()
    wait_for(b.acquire_or_renew, timeout=TTL + 1, what="b to take over", interval=0.02)
    takeover = time.monotonic() - stopped

    # then: b holds it once the TTL lapsed, and a has lost it
    assert TTL * 0.9 <= takeover <= TTL + 0.5
    assert broker.get(LEADER_KEY) == b"b"
    assert a.acquire_or_renew() is False

    # and: a's release does not delete b's lock; b's own release does
    a.release()
    assert broker.get(LEADER_KEY) == b"b"
    b.release()
    assert broker.get(LEADER_KEY) is None


def test_only_the_leader_scheduler_sends_and_the_other_takes_over(
    settings, broker, beat_queue, beats
):
    # given: two schedulers on the same Redis with a 1 s entry
    settings.CELERY_BEAT_LOCK_TTL = TTL
    a = beats.start("a")
    b = beats.start("b")

    # when: both tick for 3.5 s
    until = time.monotonic() + 3.5
    while time.monotonic() < until:
        a.tick()
        b.tick()
        time.sleep(0.05)

    # then: only the first to tick (a) sent, once per interval
    assert broker.get(LEADER_KEY) == a.lock.node_id.encode()
    assert sends(b) == 0
    assert 2 <= sends(a) <= 4
    assert len(queued(broker, QUEUE)) == sends(a)
    assert a.max_interval == TTL / 4  # renews well inside the TTL

    # when: a dies without releasing; b keeps ticking
    a_sent = sends(a)
    stopped = time.monotonic()

    def b_sent() -> bool:
        b.tick()
        return sends(b) > 0

    wait_for(b_sent, timeout=TTL + INTERVAL + 1, what="b to send", interval=0.05)
    takeover = time.monotonic() - stopped
    until = time.monotonic() + 2.2
    while time.monotonic() < until:
        b.tick()
        time.sleep(0.05)

    # then: b took over within TTL + one interval and a's count stayed put
    assert takeover <= TTL + INTERVAL
    assert broker.get(LEADER_KEY) == b.lock.node_id.encode()
    assert sends(a) == a_sent
    assert 2 <= sends(b) <= 4
    messages = queued(broker, QUEUE)
    assert len(messages) == a_sent + sends(b)
    # every send names its own slot, so fan_out absorbs any duplicate send of one
    windows = [m["kwargs"]["window"] for m in messages]
    assert all(w.startswith("probe:") for w in windows)
    assert len(set(windows)) == len(windows)
    assert {m["headers"]["task"] for m in messages} == {"workers.fan_out"}
    assert {tuple(m["args"]) for m in messages} == {(RECORD_FANOUT,)}


def test_a_closing_leader_hands_over_at_once(settings, broker, beat_queue, beats):
    # given: a leads
    settings.CELERY_BEAT_LOCK_TTL = 30
    a = beats.start("a")
    b = beats.start("b")
    a.tick()
    b.tick()
    assert broker.get(LEADER_KEY) == a.lock.node_id.encode()

    # when: a shuts down cleanly
    beats.stop(a)
    b.tick()

    # then: b leads on its next tick, without waiting out the 30 s TTL
    assert broker.get(LEADER_KEY) == b.lock.node_id.encode()


def test_every_tick_writes_a_heartbeat(settings, broker, beat_queue, beats):
    # given
    settings.CELERY_BEAT_LOCK_TTL = TTL
    a = beats.start("a")

    # when
    before = time.time()
    a.tick()

    # then
    beat = json.loads(broker.get(HEARTBEAT_KEY))
    assert beat["node"] == a.lock.node_id
    assert beat["leader"] is True
    assert before <= beat["at"] <= time.time()
    assert 0 < broker.ttl(HEARTBEAT_KEY) <= 2 * TTL
