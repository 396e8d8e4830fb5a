"""Worker and scheduler health, for the `workers_status` command and the Workers page."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import redis
from django.conf import settings

from workers.beat import HEARTBEAT_KEY, LEADER_KEY


@dataclass
class Health:
    broker_ok: bool
    workers: dict[str, list[str]] = field(default_factory=dict)  # name -> queues
    queue_depths: dict[str, int] = field(default_factory=dict)
    beat_leader: str | None = None
    beat_heartbeat_age: float | None = None
    error: str = ""

    @property
    def beat_ok(self) -> bool:
        return self.beat_heartbeat_age is not None and self.beat_heartbeat_age < (
            settings.CELERY_BEAT_LOCK_TTL * 2
        )


def snapshot(timeout: float = 1.0) -> Health:
    from config.celery import app

    client = redis.Redis.from_url(app.conf.broker_url, socket_timeout=timeout)
    try:
        client.ping()
    except redis.RedisError as exc:
        return Health(broker_ok=False, error=str(exc))
    health = Health(broker_ok=True)
    for queue in settings.CELERY_TASK_QUEUES_NAMES:
        health.queue_depths[queue] = int(client.llen(queue))
    leader = client.get(LEADER_KEY)
    health.beat_leader = leader.decode() if leader else None
    beat = client.get(HEARTBEAT_KEY)
    if beat:
        health.beat_heartbeat_age = time.time() - json.loads(beat)["at"]
    try:
        replies = app.control.inspect(timeout=timeout).active_queues() or {}
    except Exception as exc:  # noqa: BLE001 - the broker may refuse mid-check
        health.error = str(exc)
        replies = {}
    health.workers = {name: sorted(q["name"] for q in queues) for name, queues in replies.items()}
    return health
