"""Loaded into a real worker (`-I tests.shipping.kill_hook`) by test_worker_kill.py.

When KEEL_TEST_LABEL_KILL_MARKER names a file that does not exist yet, the first label
commit after the carrier's answer writes the worker process id there and waits to be
killed: the moment between "the carrier sold the label" and "we stored it". Later
executions (the redelivered task) find the file and commit normally.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from shipping import services

MARKER = os.environ.get("KEEL_TEST_LABEL_KILL_MARKER", "")
_commit = services.commit_label


def _commit_or_hang(label_id, bought, document):
    marker = Path(MARKER)
    if MARKER and not marker.exists():
        marker.write_text(f"{os.getpid()} {bought.tracking_number}")
        time.sleep(120)
    return _commit(label_id, bought, document)


if MARKER:
    services.commit_label = _commit_or_hang
