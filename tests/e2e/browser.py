"""Helpers for the browser tests: the server process and headless Chromium.

Playwright's sync API keeps an asyncio loop running in the test's thread while a browser is
open, and Django refuses ORM calls from such a thread. Tests therefore touch the database
only before or after the `chromium_page()` block, never inside it.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from playwright.sync_api import Page, sync_playwright

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # A proxy from the environment must never see the test's *.localhost traffic.
    "--no-proxy-server",
]
STARTUP_TIMEOUT = 30.0
PAGE_TIMEOUT_MS = 15_000


@dataclass(frozen=True)
class LiveServer:
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://localhost:{self.port}"

    def brand_host(self, slug: str) -> str:
        return f"{slug}.localhost:{self.port}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url(db: dict) -> str:
    """A DATABASE_URL for Django's `settings_dict` of a connection."""
    auth = quote(db["USER"] or "", safe="")
    if db["PASSWORD"]:
        auth += ":" + quote(db["PASSWORD"], safe="")
    host = db["HOST"] or "127.0.0.1"
    port = f":{db['PORT']}" if db["PORT"] else ""
    return f"postgres://{auth}@{host}{port}/{quote(db['NAME'], safe='')}"


def _wait_until_serving(proc: subprocess.Popen, port: int, log: Path) -> None:
    # A 200 for the signup page proves more than an open port: settings loaded, the
    # public tenant resolved and the database answered.
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"e2e server exited with {proc.returncode}:\n{log.read_text()}")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", "/signup/", headers={"Host": f"localhost:{port}"})
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.1)
    pytest.fail(f"e2e server did not serve /signup/ within {STARTUP_TIMEOUT}s:\n{log.read_text()}")


@contextlib.contextmanager
def running_server(*, database_url: str, redis_url: str, log: Path) -> Iterator[LiveServer]:
    """The real app (tests.e2e.serve) in its own process, stopped on exit."""
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "platform"), str(ROOT)]),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "BASE_DOMAIN": "localhost",
        # Tests own the pool: a signup must not queue refills a test worker might run.
        "KEEL_SCHEMA_POOL_SIZE": "0",
        "PUBLIC_PORT": str(port),
        "DEBUG": "1",
        # No connection outlives its request: when the session ends and pytest-django
        # drops the test database, no idle server connection may still hold it open.
        "DB_CONN_MAX_AGE": "0",
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.e2e.serve", "127.0.0.1", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_until_serving(proc, port, log)
        yield LiveServer(port=port, log=log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def chromium_page() -> Iterator[Page]:
    """A fresh headless Chromium page; the Debian browser, never a downloaded one."""
    if not Path(CHROMIUM).exists():
        # Failing, not skipping: a missing browser must not turn into a green run.
        pytest.fail(f"{CHROMIUM} not found; install the Debian package `chromium` (make test).")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(PAGE_TIMEOUT_MS)
            yield page
        finally:
            browser.close()


def track_failed_assets(page: Page) -> list[str]:
    """Collect failed sub-resource loads: a broken stylesheet or htmx script would not
    stop a flow, so tests assert this list is empty."""
    failed: list[str] = []
    page.on(
        "response",
        lambda r: (
            failed.append(f"{r.status} {r.url}")
            if r.status >= 400 and r.request.resource_type != "document"
            else None
        ),
    )
    return failed
