"""Celery beat that only schedules while it holds a Redis leader lock.

Run two beat processes (for failover) and only the lock holder sends; if it dies the
other takes over once the lock's TTL lapses. Fan-out entries also carry a `window`
(the schedule slot) so a duplicate send in the handover absorbs itself in
workers.tasks.fan_out.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid

import redis
from celery.beat import PersistentScheduler, ScheduleEntry
from django.conf import settings

LEADER_KEY = "keel:beat:leader"
HEARTBEAT_KEY = "keel:beat:heartbeat"

# Take the lock if free, or extend it if we already hold it; atomic in Redis.
_ACQUIRE = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""

# Delete the lock only if we still hold it. A GET then DEL from Python could delete the
# lock another node took in between (ours expired), leaving two leaders.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class LeaderLock:
    def __init__(self, client: redis.Redis, ttl_seconds: float, node_id: str | None = None):
        self.client = client
        self.ttl_ms = int(ttl_seconds * 1000)
        self.node_id = node_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._script = client.register_script(_ACQUIRE)
        self._release = client.register_script(_RELEASE)

    def acquire_or_renew(self) -> bool:
        return bool(self._script(keys=[LEADER_KEY], args=[self.node_id, self.ttl_ms]))

    def release(self) -> None:
        self._release(keys=[LEADER_KEY], args=[self.node_id])


def schedule_window(entry: ScheduleEntry, now: float | None = None) -> str:
    """The slot this run belongs to: the same for every beat that sends it."""
    now = time.time() if now is None else now
    run_every = getattr(entry.schedule, "run_every", None)
    seconds = max(int(run_every.total_seconds()), 1) if run_every is not None else 60
    return f"{entry.name}:{int(now // seconds)}"


class LeaderElectedScheduler(PersistentScheduler):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.lock = LeaderLock(
            redis.Redis.from_url(self.app.conf.broker_url), settings.CELERY_BEAT_LOCK_TTL
        )
        # Renew well inside the TTL even when nothing is due.
        self.max_interval = min(self.max_interval, settings.CELERY_BEAT_LOCK_TTL / 4)

    def tick(self, *args, **kwargs):
        leader = self.lock.acquire_or_renew()
        self.lock.client.set(
            HEARTBEAT_KEY,
            json.dumps({"node": self.lock.node_id, "leader": leader, "at": time.time()}),
            ex=int(settings.CELERY_BEAT_LOCK_TTL * 2),
        )
        if not leader:
            return self.max_interval
        return super().tick(*args, **kwargs)

    def apply_async(self, entry, producer=None, advance=True, **kwargs):
        if entry.task == "workers.fan_out":
            entry.kwargs = {**(entry.kwargs or {}), "window": schedule_window(entry)}
        return super().apply_async(entry, producer=producer, advance=advance, **kwargs)

    def close(self):
        self.lock.release()
        super().close()
