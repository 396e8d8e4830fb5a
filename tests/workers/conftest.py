"""Worker test fixtures.

The real worker only sees committed data, and `transactional_db` would flush the
committed alpha/beta brands other tests rely on. So worker tests use those session
brands, let the worker write rows tagged with an action of their own, read them from
the test transaction (READ COMMITTED sees the worker's commits) and delete them over a
separate connection, since a delete inside the test transaction would be rolled back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import redis
from django.conf import settings

from tests.workers.celery_tasks import FAILURES_KEY
from tests.workers.support import ALL_QUEUES, delete_rows, running_worker
from workers.beat import HEARTBEAT_KEY, LEADER_KEY


@pytest.fixture(scope="module")
def worker(django_db_setup, tmp_path_factory) -> Iterator[str]:
    """A real prefork worker on every product queue, shared by the module's tests."""
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    with running_worker(ALL_QUEUES, log) as name:
        yield name


@pytest.fixture
def broker() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    client.delete(FAILURES_KEY, LEADER_KEY, HEARTBEAT_KEY)
    yield client
    client.delete(FAILURES_KEY, LEADER_KEY, HEARTBEAT_KEY)
    client.close()


@pytest.fixture
def committed(db) -> Iterator[Callable[[str], None]]:
    """Register an action whose rows the worker writes (committed, so outside this test's
    transaction): they are deleted now, in case an aborted run left some, and again
    when the test ends, pass or fail."""
    actions: list[str] = []

    def clean_up(action: str) -> None:
        actions.append(action)
        delete_rows(action)

    try:
        yield clean_up
    finally:
        for action in actions:
            delete_rows(action)
