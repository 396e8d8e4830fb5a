"""Helpers for worker tests: a real worker process, broker inspection, row lookup."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import quote

import redis
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django_tenants.utils import schema_context

from audit.models import ActivityEntry
from config.celery import app
from tenants.models import Brand
from tests.workers.celery_tasks import FAILURES_KEY

ROOT = Path(__file__).resolve().parents[2]
ALL_QUEUES = tuple(settings.CELERY_TASK_QUEUES_NAMES)
WORKER_START_SECONDS = 30


def wait_for(
    predicate: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.1
) -> Any:
    """Poll until `predicate()` is truthy and return it; fail naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def database_url() -> str:
    """DATABASE_URL of the pytest database (test_<name>), for processes we start."""
    db = connection.settings_dict
    auth = quote(db["USER"] or "")
    if db["PASSWORD"]:
        auth += ":" + quote(db["PASSWORD"])
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def child_env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "platform"), str(ROOT)]),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "KEEL_SCHEMA_POOL_SIZE": "0",
    }


def _stop(proc: subprocess.Popen) -> None:
    # The worker and its prefork children share the session we gave it, so signalling
    # the group reaches the children even if the parent has already gone.
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


@contextmanager
def running_worker(
    queues: Sequence[str],
    log_path: Path,
    include: Sequence[str] = ("tests.workers.celery_tasks",),
) -> Iterator[str]:
    """Start a prefork worker consuming `queues`, importing the test task modules in
    `include`; yield its node name once it answers."""
    # A stray worker on this broker would take our messages (and lack the test tasks).
    others = app.control.ping(timeout=0.5)
    assert others == [], f"another worker is consuming this test broker: {others}"
    name = f"keel-test-{uuid.uuid4().hex[:8]}@{socket.gethostname()}"
    cmd = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "config",
        "worker",
        "-P",
        "prefork",
        "-c",
        "2",
        "-Q",
        ",".join(queues),
        "-I",
        ",".join(include),
        "-n",
        name,
        "--without-gossip",
        "--without-mingle",
        "-l",
        "INFO",
    ]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=child_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:

        def answers() -> bool:
            if proc.poll() is not None:
                raise AssertionError(
                    f"worker exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}"
                )
            return bool(app.control.ping(destination=[name], timeout=0.5))

        wait_for(answers, timeout=WORKER_START_SECONDS, what=f"worker {name} to answer ping")
        yield name
    except BaseException:
        sys.stderr.write(f"--- worker log ({log_path}) ---\n{log_path.read_text()[-5000:]}\n")
        raise
    finally:
        _stop(proc)


def queued(client: redis.Redis, queue: str) -> list[dict[str, Any]]:
    """Messages waiting in a Redis queue, oldest first, with the body decoded."""
    messages = []
    # kombu LPUSHes and consumers BRPOP, so the list's tail is the oldest message.
    for raw in reversed(client.lrange(queue, 0, -1)):
        message = json.loads(raw)
        assert message["properties"]["body_encoding"] == "base64"
        args, kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        messages.append({"headers": message["headers"], "args": args, "kwargs": kwargs})
    return messages


def drained(client: redis.Redis, queues: Sequence[str] = ALL_QUEUES) -> bool:
    """Nothing waiting and nothing reserved-but-unacknowledged (acks_late), twice over:
    kombu pops a message before it records it as unacked, so one look can miss it."""

    def empty() -> bool:
        return all(client.llen(q) == 0 for q in queues) and client.hlen("unacked") == 0

    if not empty():
        return False
    time.sleep(0.2)
    return empty()


def failures(client: redis.Redis) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in client.lrange(FAILURES_KEY, 0, -1)]


def all_schemas() -> list[str]:
    """public, the template and every brand: everywhere a stray row could land."""
    return list(Brand.objects.order_by("schema_name").values_list("schema_name", flat=True))


def rows_by_schema(action: str) -> dict[str, list[ActivityEntry]]:
    found = {}
    for schema in all_schemas():
        with schema_context(schema):
            found[schema] = list(ActivityEntry.objects.filter(action=action).order_by("id"))
    return found


def delete_rows(action: str) -> None:
    """Delete `action` rows in every schema over a connection of its own (autocommit)."""
    schemas = all_schemas()
    side = connections.create_connection(DEFAULT_DB_ALIAS)
    try:
        table = side.ops.quote_name(ActivityEntry._meta.db_table)
        with side.cursor() as cursor:
            for schema in schemas:
                cursor.execute(
                    f"DELETE FROM {side.ops.quote_name(schema)}.{table} WHERE action = %s",
                    [action],
                )
    finally:
        side.close()
