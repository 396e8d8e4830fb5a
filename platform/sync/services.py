"""Connections and sync: the business rules between connector plugins and the platform.

Connections — `create_connection`, `update_connection`, `pause_connection`,
`resume_connection`, `test_connection`. Settings are validated against the plugin's JSON
Schema; credentials are sealed (sync.sealed) and never returned, logged or written to the
activity log (which records the names of the fields that changed, not their values).

Runs — `request_sync` queues one SyncRun per connection at a time (a partial unique
index); `execute_run` (the `sync.run_sync` task) walks the connection's streams:

- channels: `orders` (pull since the stored cursor → orders.services.ingest_order on the
  connection's channel key), `listings` (the channel's variants, for inventory ids) and
  `tracking` (reconciliation: shipped fulfillment orders of the channel's orders that the
  outbox push below did not report → push_fulfillment);
- 3PLs: `fulfillments` (reconciliation: open fulfillment orders at the warehouses the
  connection serves that the outbox push below did not send → push_fulfillment_order),
  `shipments` (confirmations → orders.services.mark_shipped) and `stock` (3PL on-hand →
  cycle-count corrections through inventory.services, never a balance overwrite; a level
  below what is reserved re-routes the newest orders first, orders.services.reroute_shortage).

Every page commits its effects, then its cursor and the run's progress; a worker killed
mid-run is redelivered (acks_late) and resumes from the stored cursor, and re-applying a
page is harmless because ingestion is idempotent by (channel, external id) and ordered by
the channel's updated_at. One execution per connection at a time is enforced with a
PostgreSQL session advisory lock, which the server releases if the worker dies.

Errors follow connectors.errors: AuthError twice in a row marks the connection "needs
attention" and it is not called again until a person reconnects it; RateLimited and
TransientError end the execution with a retry countdown (Retry-After when the vendor sent
one), PermanentError fails the run with the message.

Webhooks — `receive_webhook` verifies the raw body through the plugin, stores it (one
WebhookReceipt per (connection, topic, event id): redeliveries are dropped at the door)
and hands it to `process_receipt` (the `sync.process_webhook` task). A delivery that
fails verification gets 401 and writes nothing: one WARNING on the `keel.security` logger.

Availability — stock changes reach channels through the outbox: the
`channel.push_available` handler (sync.handlers) marks the SKU on every channel
connection (PendingAvailable) and schedules a debounced `push_available`, which publishes
only quantities that differ from what the channel last accepted. A full comparison every
few hours catches anything a lost message would have missed.

Fulfillment orders and shipments — pushed through the outbox too. Opening a fulfillment
order at a warehouse a 3PL connection serves, and shipping one whose order came from a
connected channel (3PL confirmation, label, a person), write an outbox message in that
transaction (internal events `fulfillment.opened` / `fulfillment.shipped`, one message per
fulfillment order and purpose). Its handler (`deliver_fulfillment`, `deliver_tracking`)
sends it with `send_fulfillment` / `send_tracking`, which the runs' reconciliation passes
use as well: one push per (connection, fulfillment order) is recorded (FulfillmentPush),
an advisory claim keeps the two paths from sending the same one at once, and the 3PL gets
the same idempotency key from either. The periodic passes only catch what the outbox push
skipped: orders opened before the connection was made, pushes skipped while it was paused
or refusing credentials, refusals retried up to MAX_PUSH_ATTEMPTS. The fulfillments pass
reads open orders only (the working set) on every poll; the tracking pass looks back
TRACKING_RECONCILE_WINDOW and runs at most every TRACKING_RECONCILE_EVERY on schedule.

Decisions:
- The receipt is written only after the signature verifies, so a forged delivery leaves no
  row (RELIABILITY 6); the bytes verified are the raw request body, untouched.
- The event id comes from `parse_webhook`, which is offline and cheap, so duplicates are
  dropped at the door; the task parses the stored body again to apply it.
- A page of orders is ingested in one batch (orders.services.ingest_orders) and commits
  together with the cursor after it: a crash re-reads the page, never skips it. A page the
  batch refuses falls back to one transaction per order, so one bad order fails alone.
- Pushes run inside the outbox's consuming transaction, with short in-process retries
  (OUTBOX_PUSH_RETRY); a longer Retry-After or an outage is handed back to the outbox
  (RetryLater), which retries with backoff and parks the message after its attempts (the
  reconciliation pass still finds the order). Refused credentials count towards "needs
  attention" and end the message, so an expired token costs one request per waiting order,
  and the pass sends them once a person reconnects.
- The channel's own dedupe (Shopify: a fulfillment with the same tracking number) makes a
  replay after a lost answer harmless. Shipments made before the connection existed are
  not reported.
- 3PL stock: a SKU the 3PL does not report is left alone (a snapshot page that lacks it
  says nothing about it), and shipments are applied before stock in each run so a
  shipment is not counted twice; one the 3PL ships between the two pulls is corrected by
  the next run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import random
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db import connection as db
from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.utils import timezone

from audit.context import current_actor
from audit.services import record
from catalog.models import SKU, BundleComponent, ListingMapping
from catalog.services import resolve_listing
from config.crypto import InvalidToken
from connectors import types as ct
from connectors.config import validate_connection
from connectors.errors import (
    AuthError,
    ConfigurationError,
    ConnectorError,
    PermanentError,
    RateLimited,
    TransientError,
    WebhookVerificationError,
)
from connectors.http import RetryPolicy
from inventory import services as stock
from inventory.models import StockBalance, StockStatus, Warehouse
from orders.models import FulfillmentOrder, FulfillmentStatus, ServiceLevel, ShipType
from orders.services import (
    OPEN_FULFILLMENT,
    IngestResult,
    OrderInput,
    ingest_order,
    ingest_orders,
    mark_sent,
    mark_shipped,
    reroute_shortage,
)
from outbox.registry import RetryLater
from sync import plugins
from sync.mapping import order_input
from sync.models import (
    ACTIVE_RUN_STATUSES,
    AvailablePush,
    ChannelListing,
    Connection,
    ConnectionKind,
    ConnectionStatus,
    FulfillmentPush,
    PendingAvailable,
    PushStatus,
    ReceiptStatus,
    RunStatus,
    RunTrigger,
    SyncCursor,
    SyncRun,
    WebhookReceipt,
)
from sync.sealed import seal

log = logging.getLogger(__name__)
security_log = logging.getLogger("keel.security")

STREAM_ORDERS = "orders"
STREAM_LISTINGS = "listings"
STREAM_FULFILLMENTS = "fulfillments"
STREAM_SHIPMENTS = "shipments"
STREAM_STOCK = "stock"
STREAM_TRACKING = "tracking"

CHANNEL_KEY = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
# Channel names other entry points use for their own orders.
RESERVED_CHANNEL_KEYS = frozenset({"manual", "api", "csv", "import"})
DEFAULT_POLL_SECONDS = {
    ConnectionKind.CHANNEL: 120,
    ConnectionKind.THREEPL: 300,
    ConnectionKind.CARRIER: 3600,
}
MIN_POLL_SECONDS = 30

# Consecutive credential refusals before a connection is parked for a person: one can be a
# vendor hiccup, two in a row across polls is not.
AUTH_FAILURE_LIMIT = 2
# Executions of one run that ended without finishing (worker killed) before it is given up:
# a run that kills its worker every time must not loop forever (RELIABILITY 13).
MAX_LOST_EXECUTIONS = 3
MAX_RUN_RETRIES = 5
# A task's retry countdown never exceeds BrandTask.retry_backoff_max, which the visibility
# timeout check (config.celery.check_visibility) budgets for; a longer Retry-After ends the
# run and the connection waits it out between polls instead.
MAX_COUNTDOWN = 600.0
BACKOFF_BASE = 10.0
# Under the 14-minute soft time limit, with room for the page in flight.
RUN_TIME_BUDGET = 10 * 60
MAX_PAGES_PER_STREAM = 500
MAX_PUSHES_PER_RUN = 500
MAX_PUSH_ATTEMPTS = 3
# Reconciliation of shipments to channels: how far back it looks, and how often a
# scheduled run makes the pass (each shipment is pushed through the outbox when it
# happens; this only catches what that push skipped).
TRACKING_RECONCILE_WINDOW = timedelta(days=7)
TRACKING_RECONCILE_EVERY = timedelta(minutes=30)
RUN_ERRORS_KEPT = 50
# A running run whose heartbeat is older than this lost its worker for good (the hard time
# limit is 15 minutes); a queued or retrying one this late lost its message.
STALE_RUNNING = timedelta(minutes=20)
STALE_WAITING = timedelta(minutes=15)
LISTINGS_EVERY = timedelta(hours=6)
AVAILABLE_FULL_EVERY = timedelta(hours=6)
AVAILABLE_DEBOUNCE_SECONDS = 5
AVAILABLE_BATCH = 100
AVAILABLE_PENDING_LIMIT = 5000
RECEIPT_SWEEP_AFTER = timedelta(seconds=60)
RECEIPT_MAX_ATTEMPTS = 5
RECEIPT_BATCH = 100
RECEIPT_TIME_BUDGET = 60.0
# Lifetime of the "a task is coming" flag; if that task is lost, the next delivery after
# this long schedules another (and the beat sweep catches the rest within a minute).
RECEIPT_SCHEDULE_TTL = 15
# A claimed delivery still not applied after this long lost its worker: put back.
RECEIPT_CLAIM_TIMEOUT = timedelta(minutes=5)
RECEIPT_RETENTION = timedelta(days=30)
RUN_RETENTION = timedelta(days=90)
TEST_RETRY = RetryPolicy(max_attempts=2, max_retry_after=5.0)
# One quick reconnect, then give up (see send_task).
PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.1}

RUN_TASK = "sync.run_sync"
WEBHOOK_TASK = "sync.process_webhook"
AVAILABLE_TASK = "sync.push_available"
UNPARSABLE_TOPIC = "unparsable"


def send_task(name: str, *args: Any, countdown: float | None = None) -> None:
    """Publish a sync task in the current brand's context (tests replace this).

    Best effort: with the broker down a request must not wait on kombu's reconnects (a
    webhook has 5 seconds) or fail after its work committed. Everything published here is
    also found by the schedule: queued runs are re-sent, waiting receipts swept, pushes
    re-checked.
    """
    from config.celery import app

    try:
        app.send_task(
            name,
            args=list(args),
            countdown=countdown,
            queue="sync",
            retry=True,
            retry_policy=PUBLISH_RETRY_POLICY,
        )
    except Exception as exc:  # noqa: BLE001  (any broker refusal: the schedule recovers it)
        log.warning("could not publish %s (%s); the schedule will", name, type(exc).__name__)


def _after_commit(name: str, *args: Any, countdown: float | None = None) -> None:
    transaction.on_commit(lambda: send_task(name, *args, countdown=countdown))


# --- Connectors installed -----------------------------------------------------------------


def connector_choices(kind: str | None = None) -> list[ct.ConnectorInfo]:
    """Installed connectors (optionally of one kind), channels first, then by name."""
    order = {ct.ConnectorKind.CHANNEL: 0, ct.ConnectorKind.THREEPL: 1, ct.ConnectorKind.CARRIER: 2}
    found = [i for i in plugins.infos().values() if kind is None or i.kind == kind]
    return sorted(found, key=lambda i: (order[i.kind], i.display_name.lower()))


def streams_for(info: ct.ConnectorInfo) -> list[str]:
    caps = info.capabilities
    streams: list[str] = []
    if info.kind == ct.ConnectorKind.CHANNEL:
        if ct.Capability.ORDERS_PULL in caps:
            streams.append(STREAM_ORDERS)
        if ct.Capability.LISTINGS_LIST in caps:
            streams.append(STREAM_LISTINGS)
        if ct.Capability.FULFILLMENT_PUSH in caps:
            streams.append(STREAM_TRACKING)
    elif info.kind == ct.ConnectorKind.THREEPL:
        if ct.Capability.FULFILLMENT_ORDER_PUSH in caps:
            streams.append(STREAM_FULFILLMENTS)
        if ct.Capability.SHIPMENTS_PULL in caps:
            streams.append(STREAM_SHIPMENTS)
        if ct.Capability.STOCK_PULL in caps:
            streams.append(STREAM_STOCK)
    return streams


def accepts_webhooks(info: ct.ConnectorInfo | None) -> bool:
    return info is not None and ct.Capability.WEBHOOKS in info.capabilities


def webhook_path(conn: Connection) -> str:
    return f"/hooks/{conn.uuid}/"


# --- Connections ------------------------------------------------------------------------


def _invalid(field: str, message: str, code: str = "invalid") -> ValidationError:
    return ValidationError({field: ValidationError(message, code=code)})


def _check_channel_key(key: str, exclude_pk: int | None = None) -> str:
    key = (key or "").strip().lower()
    if not CHANNEL_KEY.match(key):
        raise _invalid(
            "channel_key",
            "Use 1–100 lowercase letters, digits, dots, dashes or underscores.",
        )
    if key in RESERVED_CHANNEL_KEYS:
        raise _invalid("channel_key", f"“{key}” is reserved for Keel's own orders.", "reserved")
    clash = Connection.objects.filter(channel_key=key)
    if exclude_pk is not None:
        clash = clash.exclude(pk=exclude_pk)
    if clash.exists():
        raise _invalid("channel_key", "Another connection uses this channel key.", "duplicate")
    return key


def _check_warehouse_map(mapping: Mapping[str, Any] | None) -> dict[str, str]:
    if not mapping:
        return {}
    if not isinstance(mapping, Mapping):
        raise _invalid("warehouse_map", "Map each remote location to a warehouse code.")
    codes = {c.lower(): c for c in Warehouse.objects.values_list("code", flat=True)}
    clean: dict[str, str] = {}
    unknown = []
    for location, code in mapping.items():
        location = str(location).strip()
        code = str(code or "").strip()
        if not location or not code:
            raise _invalid("warehouse_map", "Locations and warehouse codes cannot be blank.")
        if code.lower() not in codes:
            unknown.append(code)
            continue
        if codes[code.lower()] in clean.values():
            # Stock levels are per location: two locations in one warehouse would each
            # overwrite the other's count.
            raise _invalid(
                "warehouse_map", f"Map one location to {codes[code.lower()]}, not several."
            )
        clean[location] = codes[code.lower()]
    if unknown:
        raise _invalid(
            "warehouse_map",
            f"Unknown warehouse code(s): {', '.join(sorted(set(unknown)))}.",
            "unknown_warehouse",
        )
    return clean


def _validate(
    info: ct.ConnectorInfo, settings: Mapping[str, Any], credentials: Mapping[str, Any]
) -> None:
    unknown = set(settings) | set(credentials)
    unknown -= set(info.settings_schema.get("properties", {}))
    if unknown:
        raise _invalid("settings", f"Unknown setting(s): {', '.join(sorted(unknown))}.")
    misplaced = set(credentials) - info.secret_fields
    if misplaced:
        raise _invalid("credentials", f"Not credentials: {', '.join(sorted(misplaced))}.")
    try:
        validate_connection(info, settings, credentials)
    except ConfigurationError as exc:
        # The SDK's message names fields and rules, never values.
        raise _invalid("settings", exc.message) from None


def _split(
    info: ct.ConnectorInfo, values: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    settings = {k: v for k, v in values.items() if k not in info.secret_fields}
    credentials = {
        k: v for k, v in values.items() if k in info.secret_fields and v not in ("", None)
    }
    return settings, credentials


def _poll_interval(value: int | None, kind: str) -> int:
    if value is None:
        return DEFAULT_POLL_SECONDS.get(kind, 300)
    if not isinstance(value, int) or isinstance(value, bool) or value < MIN_POLL_SECONDS:
        raise _invalid("poll_interval", f"Poll at most every {MIN_POLL_SECONDS} seconds.")
    return value


def create_connection(
    *,
    connector: str,
    display_name: str,
    channel_key: str,
    settings: Mapping[str, Any],
    credentials: Mapping[str, Any] | None = None,
    warehouse_map: Mapping[str, Any] | None = None,
    poll_interval: int | None = None,
) -> Connection:
    """Connect a plugin: settings and credentials are validated together against its
    schema, credentials sealed. Secret fields passed inside `settings` are moved to the
    credentials, so callers that hold one form's values may pass them all as settings."""
    try:
        info = plugins.info_for(connector)
    except ConfigurationError:
        raise _invalid("connector", f"No connector named “{connector}” is installed.") from None
    moved, extra = _split(info, settings)
    credentials = {**extra, **{k: v for k, v in (credentials or {}).items() if v not in ("", None)}}
    _validate(info, moved, credentials)
    display_name = (display_name or "").strip() or info.display_name
    with transaction.atomic():
        conn = Connection(
            connector=info.name,
            kind=str(info.kind),
            display_name=display_name[:120],
            channel_key=_check_channel_key(channel_key),
            settings=moved,
            credentials=seal(credentials) if credentials else "",
            credential_fields=sorted(credentials),
            warehouse_map=_check_warehouse_map(warehouse_map),
            poll_interval=_poll_interval(poll_interval, str(info.kind)),
        )
        conn.save()
        record(
            "connection.created",
            obj=conn,
            changes={
                "connector": info.name,
                "display_name": conn.display_name,
                "channel_key": conn.channel_key,
                "settings": moved,
                # Names only: the values never reach the log.
                "credentials": sorted(credentials),
                "warehouse_map": conn.warehouse_map,
                "poll_interval": conn.poll_interval,
            },
        )
    return conn


UNSET: Any = object()


def update_connection(
    conn: Connection,
    *,
    display_name: str = UNSET,
    settings: Mapping[str, Any] = UNSET,
    credentials: Mapping[str, Any] | None = None,
    warehouse_map: Mapping[str, Any] = UNSET,
    poll_interval: int = UNSET,
) -> Connection:
    """Change a connection. Credentials given replace those fields; blank or absent ones
    keep their stored value. New credentials put a connection that needed attention back
    to work (the person reconnected it)."""
    info = plugins.info_for(conn.connector)
    with transaction.atomic():
        conn = Connection.objects.select_for_update().get(pk=conn.pk)
        stored = plugins.conn_credentials(conn)
        new_settings, extra = _split(info, settings if settings is not UNSET else conn.settings)
        given = {**extra, **{k: v for k, v in (credentials or {}).items() if v not in ("", None)}}
        merged = {**stored, **given}
        _validate(info, new_settings, merged)
        changes: dict[str, Any] = {}
        if display_name is not UNSET and display_name.strip() != conn.display_name:
            changes["display_name"] = [conn.display_name, display_name.strip()[:120]]
            conn.display_name = display_name.strip()[:120]
        if new_settings != conn.settings:
            changes["settings"] = [conn.settings, new_settings]
            conn.settings = new_settings
        changed_secrets = sorted(k for k, v in given.items() if stored.get(k) != v)
        if changed_secrets:
            changes["credentials"] = changed_secrets
            conn.credentials = seal(merged)
            conn.credential_fields = sorted(merged)
        if warehouse_map is not UNSET:
            clean = _check_warehouse_map(warehouse_map)
            if clean != conn.warehouse_map:
                changes["warehouse_map"] = [conn.warehouse_map, clean]
                conn.warehouse_map = clean
        if poll_interval is not UNSET:
            interval = _poll_interval(poll_interval, conn.kind)
            if interval != conn.poll_interval:
                changes["poll_interval"] = [conn.poll_interval, interval]
                conn.poll_interval = interval
        if changed_secrets and conn.status == ConnectionStatus.NEEDS_ATTENTION:
            changes["status"] = [conn.status, ConnectionStatus.ACTIVE]
            conn.status = ConnectionStatus.ACTIVE
            conn.status_reason = ""
            conn.auth_failures = 0
        if changes:
            conn.save()
            record("connection.updated", obj=conn, changes=changes)
    return conn


def pause_connection(conn: Connection) -> Connection:
    """Stop polling and pushing; webhooks are still stored and wait for resume."""
    with transaction.atomic():
        conn = Connection.objects.select_for_update().get(pk=conn.pk)
        if conn.status == ConnectionStatus.PAUSED:
            return conn
        before = conn.status
        conn.status = ConnectionStatus.PAUSED
        conn.status_reason = f"Paused by {current_actor().label or 'Keel'}."[:500]
        conn.save(update_fields=["status", "status_reason", "updated_at"])
        record("connection.paused", obj=conn, changes={"status": [before, conn.status]})
    return conn


def resume_connection(conn: Connection) -> Connection:
    """Back to work: from paused, or from needs-attention once a person has fixed it.
    Webhooks stored while paused are processed now."""
    with transaction.atomic():
        conn = Connection.objects.select_for_update().get(pk=conn.pk)
        if conn.status == ConnectionStatus.ACTIVE:
            return conn
        before = conn.status
        conn.status = ConnectionStatus.ACTIVE
        conn.status_reason = ""
        conn.auth_failures = 0
        conn.throttled_until = None
        conn.save(
            update_fields=[
                "status",
                "status_reason",
                "auth_failures",
                "throttled_until",
                "updated_at",
            ]
        )
        record("connection.resumed", obj=conn, changes={"status": [before, conn.status]})
        # One task applies everything the connection received while paused.
        waiting = (
            WebhookReceipt.objects.filter(connection=conn, status=ReceiptStatus.RECEIVED)
            .values_list("pk", flat=True)
            .first()
        )
        if waiting is not None:
            _after_commit(WEBHOOK_TASK, waiting)
    return conn


@dataclasses.dataclass(frozen=True)
class TestResult:
    ok: bool
    message: str


def test_connection(conn: Connection) -> TestResult:
    """One cheap authenticated request through the plugin ("Test connection").

    Bounded: two attempts and no long Retry-After waits, so a person is not kept waiting.
    Refused credentials mark the connection as needing attention; a success clears that.
    """
    try:
        with plugins.connector_for(conn, retry=TEST_RETRY) as connector:
            connector.check_connection()
        result = TestResult(True, "Connected: the credentials work.")
    except AuthError as exc:
        result = TestResult(False, f"Credentials refused: {exc.message}")
    except InvalidToken:
        result = TestResult(False, "Stored credentials cannot be decrypted; enter them again.")
    except ConnectorError as exc:
        result = TestResult(False, exc.message)
    now = timezone.now()
    with transaction.atomic():
        conn = Connection.objects.select_for_update().get(pk=conn.pk)
        before = conn.status
        conn.last_test_at, conn.last_test_ok = now, result.ok
        conn.last_test_message = result.message[:500]
        if not result.ok and result.message.startswith("Credentials refused"):
            conn.status = ConnectionStatus.NEEDS_ATTENTION
            conn.status_reason = "The credentials were refused when tested; enter new ones."
        elif result.ok and conn.status == ConnectionStatus.NEEDS_ATTENTION:
            conn.status, conn.status_reason, conn.auth_failures = ConnectionStatus.ACTIVE, "", 0
        conn.save()
        changes: dict[str, Any] = {"ok": result.ok, "message": conn.last_test_message}
        if conn.status != before:
            changes["status"] = [before, conn.status]
        record("connection.tested", obj=conn, changes=changes)
    return result


# --- Runs ---------------------------------------------------------------------------------


def request_sync(
    conn: Connection,
    *,
    trigger: str,
    streams: Iterable[str] | None = None,
    requested_by: str = "",
) -> tuple[SyncRun, bool]:
    """Queue a run of the connection's streams; returns (run, created). A connection
    already syncing returns its active run instead of starting a second one."""
    info = plugins.info_for(conn.connector)
    available = streams_for(info)
    wanted = [s for s in (streams or available) if s in available]
    if not wanted:
        raise ValidationError("This connection has nothing to sync.", code="nothing_to_sync")
    if conn.status != ConnectionStatus.ACTIVE and trigger != RunTrigger.SCHEDULE:
        raise ValidationError(
            f"The connection is {conn.get_status_display().lower()}; resume it first.",
            code="connection_not_active",
        )
    existing = SyncRun.objects.filter(connection=conn, status__in=ACTIVE_RUN_STATUSES).first()
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            run = SyncRun.objects.create(
                connection=conn,
                trigger=trigger,
                streams=wanted,
                requested_by=(requested_by or current_actor().label)[:200],
            )
    except IntegrityError:
        # A concurrent request queued one first: that one covers this request too.
        return SyncRun.objects.get(connection=conn, status__in=ACTIVE_RUN_STATUSES), False
    if trigger in (RunTrigger.MANUAL, RunTrigger.API):
        record("connection.sync_requested", obj=conn, changes={"run": run.pk, "streams": wanted})
    _after_commit(RUN_TASK, run.pk)
    return run, True


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What the task does next: nothing, or retry after `countdown` seconds."""

    retry: bool = False
    countdown: float = 0.0


DONE = Outcome()


def _lock_key(name: str) -> str:
    return f"keel.sync:{db.schema_name}:{name}"


@contextmanager
def exclusive(name: str) -> Iterator[bool]:
    """A session-level advisory lock: held across this execution's many transactions and
    released by PostgreSQL itself if the process dies (a SIGKILLed worker frees it)."""
    key = _lock_key(name)
    with db.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(hashtext(%s))", [key])
        acquired = bool(cursor.fetchone()[0])
    try:
        yield acquired
    finally:
        if acquired:
            with db.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(hashtext(%s))", [key])


class _Work:
    """One execution of a run: its connector, progress and the budget left."""

    def __init__(self, run: SyncRun, conn: Connection, info: ct.ConnectorInfo, connector: Any):
        self.run = run
        self.conn = conn
        self.info = info
        self.connector = connector
        self.counts: Counter[str] = Counter(run.counts or {})
        self.errors: list[dict[str, str]] = list(run.errors or [])
        self.error_count = run.error_count
        self.pages = run.pages
        self.deadline = time.monotonic() + RUN_TIME_BUDGET
        self.unfinished: list[str] = []

    def error(self, stream: str, code: str, message: str, ref: str = "") -> None:
        self.error_count += 1
        if len(self.errors) < RUN_ERRORS_KEPT:
            self.errors.append(
                {
                    "at": timezone.now().isoformat(timespec="seconds"),
                    "stream": stream,
                    "code": code,
                    "message": message[:500],
                    "ref": ref[:255],
                }
            )

    def out_of_time(self) -> bool:
        return time.monotonic() > self.deadline

    def _progress(self) -> dict[str, Any]:
        return {
            "pages": self.pages,
            "counts": dict(self.counts),
            "errors": self.errors,
            "error_count": self.error_count,
            "heartbeat_at": timezone.now(),
        }

    def save_progress(self, stream: str = "") -> None:
        fields = self._progress()
        if stream:
            fields["current_stream"] = stream
        SyncRun.objects.filter(pk=self.run.pk).update(**fields)

    def checkpoint(self, stream: str, cursor: str | None) -> None:
        """The page's effects are committed: store where the next pull starts, and the
        run's progress, together."""
        self.pages += 1
        with transaction.atomic():
            SyncCursor.objects.update_or_create(
                connection=self.conn, stream=stream, defaults={"value": cursor}
            )
            SyncRun.objects.filter(pk=self.run.pk).update(current_stream=stream, **self._progress())


def _cursor(conn: Connection, stream: str) -> str | None:
    return (
        SyncCursor.objects.filter(connection=conn, stream=stream)
        .values_list("value", flat=True)
        .first()
    )


def execute_run(run_id: int, *, worker: str = "") -> Outcome:
    """Run (or resume) one SyncRun. Safe to call again for the same run: a finished run
    is left alone, an interrupted one continues from the stored cursors."""
    run = SyncRun.objects.select_related("connection").filter(pk=run_id).first()
    if run is None or not run.is_active:
        return DONE
    with exclusive(f"connection:{run.connection_id}") as acquired:
        if not acquired:
            # Another execution is live on this connection (a duplicate delivery of this
            # run): it finishes the work; this copy is dropped.
            log.info("sync run %s: connection busy, duplicate delivery dropped", run_id)
            return DONE
        return _execute_locked(run_id, worker=worker)


def _execute_locked(run_id: int, *, worker: str) -> Outcome:
    now = timezone.now()
    with transaction.atomic():
        run = (
            SyncRun.objects.select_for_update(of=("self",))
            .select_related("connection")
            .get(pk=run_id)
        )
        if not run.is_active:
            return DONE
        conn = run.connection
        run.attempts += 1
        lost = run.attempts - 1 - run.retries
        if lost >= MAX_LOST_EXECUTIONS:
            _finish(
                run,
                RunStatus.FAILED,
                f"The worker running this sync stopped {lost} times before it finished; "
                "given up (the next scheduled sync starts afresh from the stored cursor).",
            )
            return DONE
        if conn.status != ConnectionStatus.ACTIVE:
            _finish(run, RunStatus.CANCELLED, f"The connection is {conn.get_status_display()}.")
            return DONE
        run.status = RunStatus.RUNNING
        run.started_at = run.started_at or now
        run.heartbeat_at = now
        run.next_retry_at = None
        run.worker = worker[:200]
        run.save()
    try:
        info = plugins.info_for(conn.connector)
        with plugins.connector_for(conn) as connector:
            work = _Work(run, conn, info, connector)
            try:
                for stream in run.streams:
                    if work.out_of_time():
                        work.unfinished.append(stream)
                        continue
                    work.save_progress(stream)
                    STREAM_HANDLERS[stream](work)
            finally:
                work.save_progress()
    except AuthError as exc:
        return _auth_failed(run_id, exc)
    except RateLimited as exc:
        return _retry_or_fail(run_id, exc, exc.retry_after)
    except TransientError as exc:
        return _retry_or_fail(run_id, exc, exc.retry_after)
    except InvalidToken:
        _finish_id(run_id, RunStatus.FAILED, "Stored credentials cannot be decrypted.")
        _needs_attention(
            conn.pk,
            "The stored credentials cannot be decrypted with the configured keys "
            "(KEEL_FERNET_KEYS); enter them again.",
        )
        return DONE
    except ConnectorError as exc:
        _finish_id(run_id, RunStatus.FAILED, exc.message)
        _note_error(conn.pk, exc.message)
        return DONE
    except Exception as exc:
        log.exception("sync run %s failed", run_id)
        _finish_id(run_id, RunStatus.FAILED, f"Internal error: {type(exc).__name__}.")
        raise
    status = RunStatus.PARTIAL if work.error_count else RunStatus.SUCCEEDED
    message = _summary(work)
    with transaction.atomic():
        run = SyncRun.objects.select_for_update().get(pk=run_id)
        _finish(run, status, message)
        Connection.objects.filter(pk=conn.pk).update(
            last_success_at=timezone.now(), auth_failures=0, throttled_until=None
        )
    if work.unfinished:
        request_sync(conn, trigger=RunTrigger.FOLLOW_UP, streams=work.unfinished)
    return DONE


def _summary(work: _Work) -> str:
    parts = [f"{name.replace('_', ' ')} {n}" for name, n in sorted(work.counts.items()) if n]
    text = ", ".join(parts) or "nothing new"
    if work.unfinished:
        text += f"; continuing with {', '.join(work.unfinished)} in a new run"
    return text[:500]


def _finish(run: SyncRun, status: str, message: str) -> None:
    run.status = status
    run.finished_at = timezone.now()
    run.message = message[:500]
    run.next_retry_at = None
    run.save()


def _finish_id(run_id: int, status: str, message: str) -> None:
    with transaction.atomic():
        run = SyncRun.objects.select_for_update().get(pk=run_id)
        if run.is_active:
            _finish(run, status, message)


def _note_error(conn_id: int, message: str) -> None:
    Connection.objects.filter(pk=conn_id).update(
        last_error_at=timezone.now(), last_error=message[:1000]
    )


def _needs_attention(conn_id: int, reason: str) -> None:
    with transaction.atomic():
        conn = Connection.objects.select_for_update().get(pk=conn_id)
        conn.last_error_at = timezone.now()
        conn.last_error = reason[:1000]
        if conn.status == ConnectionStatus.ACTIVE:
            conn.status = ConnectionStatus.NEEDS_ATTENTION
            conn.status_reason = reason[:500]
            record(
                "connection.needs_attention",
                obj=conn,
                changes={"status": [ConnectionStatus.ACTIVE, conn.status], "reason": reason},
            )
        conn.save()


def note_auth_failure(conn_id: int, message: str) -> bool:
    """Count a credential refusal; park the connection at the limit. True when parked."""
    with transaction.atomic():
        conn = Connection.objects.select_for_update().get(pk=conn_id)
        conn.auth_failures += 1
        conn.last_error_at = timezone.now()
        conn.last_error = message[:1000]
        conn.save(update_fields=["auth_failures", "last_error_at", "last_error", "updated_at"])
        parked = conn.auth_failures >= AUTH_FAILURE_LIMIT
    if parked:
        _needs_attention(
            conn_id,
            f"Credentials were refused {AUTH_FAILURE_LIMIT} times in a row; Keel stopped "
            "calling this connection. Enter new credentials (Edit) or resume it.",
        )
    return parked


def _auth_failed(run_id: int, exc: AuthError) -> Outcome:
    run = SyncRun.objects.get(pk=run_id)
    _finish_id(run_id, RunStatus.FAILED, f"Credentials refused: {exc.message}")
    note_auth_failure(run.connection_id, exc.message)
    return DONE


def backoff(retries: int) -> float:
    """Exponential backoff with jitter for failures that did not say when to come back."""
    delay = min(MAX_COUNTDOWN, BACKOFF_BASE * 2**retries)
    return delay * random.uniform(0.75, 1.0)


def _retry_or_fail(run_id: int, exc: ConnectorError, retry_after: float | None) -> Outcome:
    run = SyncRun.objects.get(pk=run_id)
    retries = run.retries
    countdown = retry_after if retry_after is not None else backoff(retries)
    if countdown > MAX_COUNTDOWN:
        until = timezone.now() + timedelta(seconds=countdown)
        _finish_id(
            run_id,
            RunStatus.THROTTLED,
            f"{exc.message}; the vendor asked to wait {countdown:.0f}s, so the next sync "
            f"starts after {until:%H:%M:%S} UTC.",
        )
        Connection.objects.filter(pk=run.connection_id).update(throttled_until=until)
        _note_error(run.connection_id, exc.message)
        return DONE
    if retries >= MAX_RUN_RETRIES:
        _finish_id(run_id, RunStatus.FAILED, f"{exc.message} (gave up after {retries} retries)")
        _note_error(run.connection_id, exc.message)
        return DONE
    with transaction.atomic():
        run = SyncRun.objects.select_for_update().get(pk=run_id)
        if not run.is_active:
            return DONE
        run.status = RunStatus.RETRYING
        run.retries += 1
        run.next_retry_at = timezone.now() + timedelta(seconds=countdown)
        run.message = f"{exc.message}; retrying in {countdown:.1f}s"[:500]
        run.save()
    return Outcome(retry=True, countdown=countdown)


# --- Channel streams ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Applied:
    """What applying one channel order did: created, updated, unchanged or skipped."""

    outcome: str
    message: str = ""


def _applied(result: IngestResult) -> Applied:
    if result.created:
        return Applied("created")
    return Applied("updated" if result.applied else "unchanged", "; ".join(result.messages))


def apply_order(conn: Connection, order: ct.Order) -> Applied:
    """Hand a channel order to ingestion on the connection's channel key."""
    data = order_input(order, channel=conn.channel_key)
    if data is None:
        return Applied("skipped", "no shippable lines")
    return _applied(ingest_order(data))


def _ingest_page(work: _Work, orders: Iterable[ct.Order]) -> None:
    """A page through the batch ingestion path (one transaction, stock read and locked
    once); a page the batch refuses is applied order by order, so one bad order is
    reported and the rest still arrive."""
    inputs = []
    for order in orders:
        data = order_input(order, channel=work.conn.channel_key)
        if data is None:
            work.counts["skipped"] += 1
        else:
            inputs.append(data)
    for data, outcome in zip(inputs, _ingest_all(inputs), strict=True):
        if isinstance(outcome, ValidationError):
            work.counts["failed"] += 1
            work.error(STREAM_ORDERS, "invalid_order", " ".join(outcome.messages), data.external_id)
            continue
        work.counts[_applied(outcome).outcome] += 1


def _pull_orders(work: _Work) -> None:
    cursor = _cursor(work.conn, STREAM_ORDERS)
    for _ in range(MAX_PAGES_PER_STREAM):
        result = work.connector.pull_orders(cursor=cursor)
        cursor = result.next_cursor
        # The page's orders and the cursor after them commit together.
        with transaction.atomic():
            _ingest_page(work, result.items)
            work.checkpoint(STREAM_ORDERS, cursor)
        if not result.has_more:
            return
        if work.out_of_time():
            break
    work.unfinished.append(STREAM_ORDERS)


def _pull_listings(work: _Work) -> None:
    last = SyncCursor.objects.filter(connection=work.conn, stream=STREAM_LISTINGS).first()
    due = last is None or last.updated_at < timezone.now() - LISTINGS_EVERY
    if not due and work.run.trigger not in (RunTrigger.MANUAL, RunTrigger.API):
        return
    cursor: str | None = None
    for _ in range(MAX_PAGES_PER_STREAM):
        result = work.connector.list_listings(cursor=cursor)
        for listing in result.items:
            ChannelListing.objects.update_or_create(
                connection=work.conn,
                external_id=listing.external_id[:255],
                defaults={
                    "external_sku": listing.sku[:255],
                    "inventory_ref": listing.inventory_ref[:255],
                    "title": listing.title[:255],
                    "active": listing.active,
                },
            )
        work.counts["listings"] += len(result.items)
        cursor = result.next_cursor
        # The pass restarts each time; the row's time says when it last completed a page.
        work.checkpoint(STREAM_LISTINGS, None)
        if not result.has_more:
            return


def pending_tracking(conn: Connection, *, now: datetime | None = None):
    """Reconciliation: fulfillment orders of this channel's orders that shipped in the
    last TRACKING_RECONCILE_WINDOW (and since the connection was made) and are not yet
    reported to it (nor given up on after repeated refusals). Each shipment is pushed
    through the outbox when it happens; this finds the ones that push skipped (connection
    paused or refusing credentials then) or that the channel refused and may take now."""
    since = max(conn.created_at, (now or timezone.now()) - TRACKING_RECONCILE_WINDOW)
    return (
        FulfillmentOrder.objects.filter(
            order__channel=conn.channel_key,
            status=FulfillmentStatus.SHIPPED,
            closed_at__gte=since,
        )
        .exclude(Exists(_settled_pushes(conn)))
        .order_by("closed_at", "id")
    )


def _settled_pushes(conn: Connection):
    """Pushes of a fulfillment order to `conn` that are done with: sent, or refused
    MAX_PUSH_ATTEMPTS times."""
    return FulfillmentPush.objects.filter(connection=conn, fulfillment=OuterRef("pk")).filter(
        Q(status=PushStatus.SENT) | Q(attempts__gte=MAX_PUSH_ATTEMPTS)
    )


def _push_settled(conn: Connection, fo_id: int) -> bool:
    return (
        FulfillmentPush.objects.filter(connection=conn, fulfillment_id=fo_id)
        .filter(Q(status=PushStatus.SENT) | Q(attempts__gte=MAX_PUSH_ATTEMPTS))
        .exists()
    )


@contextmanager
def _push_claim(conn: Connection, fo_id: int) -> Iterator[bool]:
    """One push of a fulfillment order to a connection at a time, whichever path sends it
    (the outbox handler or a sync run's reconciliation), so the loser finds it recorded
    instead of sending it again. Inside a transaction (the outbox handler) the claim is
    held until commit, which is when its record becomes visible; outside one (a sync run)
    it is a session lock released after the record committed."""
    name = f"push:{conn.pk}:{fo_id}"
    if not db.in_atomic_block:
        with exclusive(name) as acquired:
            yield acquired
        return
    with db.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(hashtext(%s))", [_lock_key(name)])
        acquired = bool(cursor.fetchone()[0])
    yield acquired


@dataclasses.dataclass(frozen=True)
class PushResult:
    """One push of a fulfillment order: sent, refused (recorded, with the message),
    skipped (already settled or no longer due) or busy (another path is sending it now)."""

    outcome: str
    message: str = ""
    ref: str = ""


SENT, REFUSED, SKIPPED, BUSY = "sent", "refused", "skipped", "busy"


def channel_shipment(fo: FulfillmentOrder) -> ct.FulfillmentConfirmation | None:
    """A shipped fulfillment order as the channel knows it: its order id, its line ids and
    the tracking. None when no line still points at a channel line (the channel replaced
    the order's lines after it was routed)."""
    lines = tuple(
        ct.FulfillmentLine(
            sku=ln.order_line.external_sku,
            quantity=ln.quantity,
            external_line_id=ln.order_line.external_line_id,
        )
        for ln in fo.lines.all()
        if ln.order_line is not None
    )
    if not lines:
        return None
    return ct.FulfillmentConfirmation(
        external_id=f"FO-{fo.pk}",
        request_id=f"FO-{fo.pk}",
        order_ref=fo.order.external_id,
        carrier=fo.carrier,
        tracking_numbers=(fo.tracking_number,) if fo.tracking_number else (),
        lines=lines,
        shipped_at=fo.closed_at or timezone.now(),
    )


def _record_tracking(
    conn: Connection, fo: FulfillmentOrder, *, external_id: str = "", error: str = ""
) -> None:
    with transaction.atomic():
        push, _ = FulfillmentPush.objects.select_for_update().get_or_create(
            connection=conn,
            fulfillment=fo,
            defaults={"request_id": f"FO-{fo.pk}", "status": PushStatus.FAILED},
        )
        push.attempts += 1
        push.status = PushStatus.FAILED if error else PushStatus.SENT
        push.error = error[:500]
        push.external_id = external_id[:255] or push.external_id
        push.save()
        if not error:
            record(
                "fulfillment.reported",
                obj=fo,
                changes={
                    "connection": conn.display_name,
                    "external_id": external_id,
                    "tracking": fo.tracking_number,
                },
            )


def send_tracking(conn: Connection, connector: Any, fo_id: int) -> PushResult:
    """Report one shipped fulfillment order to its channel, once: skipped when already
    reported (or given up on), a refusal recorded on the push (shown on the connection)."""
    with _push_claim(conn, fo_id) as claimed:
        if not claimed:
            return PushResult(BUSY, ref=f"FO-{fo_id}")
        fo = (
            FulfillmentOrder.objects.filter(pk=fo_id, status=FulfillmentStatus.SHIPPED)
            .select_related("order")
            .prefetch_related("lines__order_line")
            .first()
        )
        if fo is None or _push_settled(conn, fo_id):
            return PushResult(SKIPPED, ref=f"FO-{fo_id}")
        shipment = channel_shipment(fo)
        if shipment is None:
            problem = "No line of this shipment is a channel line."
            _record_tracking(conn, fo, error=problem)
            return PushResult(REFUSED, problem, f"FO-{fo_id}")
        try:
            result = connector.push_fulfillment(shipment=shipment)
        except PermanentError as exc:
            _record_tracking(conn, fo, error=exc.message)
            return PushResult(REFUSED, exc.message, shipment.request_id)
        _record_tracking(conn, fo, external_id=result.external_id)
        return PushResult(SENT, ref=shipment.request_id)


def _push_tracking(work: _Work) -> None:
    """Reconciliation pass of the tracking stream (see pending_tracking): a scheduled run
    makes it at most every TRACKING_RECONCILE_EVERY, a person's "Sync now" always."""
    if not _reconcile_due(work, STREAM_TRACKING, TRACKING_RECONCILE_EVERY):
        return
    pending = pending_tracking(work.conn).values_list("pk", flat=True)
    if _push_pending(work, STREAM_TRACKING, pending, send_tracking, "reported", "not_reported"):
        work.checkpoint(STREAM_TRACKING, None)


def _push_pending(
    work: _Work,
    stream: str,
    pending: QuerySet,
    send: Callable[[Connection, Any, int], PushResult],
    sent_key: str,
    refused_key: str,
) -> bool:
    """Send up to MAX_PUSHES_PER_RUN pending fulfillment orders with `send`, counting
    what went and recording refusals as the stream's errors; progress is saved every 20
    sends so a long pass shows it. False when the run's time ran out first (the stream is
    then left unfinished for the next run)."""
    sent = 0
    for fo_id in pending[:MAX_PUSHES_PER_RUN]:
        result = send(work.conn, work.connector, fo_id)
        if result.outcome == REFUSED:
            work.counts[refused_key] += 1
            work.error(stream, "refused", result.message, result.ref)
        elif result.outcome == SENT:
            work.counts[sent_key] += 1
            sent += 1
            if sent % 20 == 0:
                work.save_progress(stream)
        if work.out_of_time():
            work.unfinished.append(stream)
            return False
    return True


def _reconcile_due(work: _Work, stream: str, every: timedelta) -> bool:
    if work.run.trigger in (RunTrigger.MANUAL, RunTrigger.API):
        return True
    last = SyncCursor.objects.filter(connection=work.conn, stream=stream).first()
    return last is None or last.updated_at < timezone.now() - every


# --- 3PL streams --------------------------------------------------------------------------


def _served_warehouses(conn: Connection) -> dict[str, Warehouse]:
    """Remote location → warehouse, for the warehouses this connection serves."""
    codes = {code.lower(): loc for loc, code in conn.warehouse_map.items()}
    found = Warehouse.objects.filter(code__in=list(conn.warehouse_map.values()))
    by_code = {w.code.lower(): w for w in found}
    return {loc: by_code[c] for c, loc in codes.items() if c in by_code}


def _external_skus(conn: Connection, sku_ids: Iterable[int]) -> dict[int, str]:
    """Our SKU → the code this connection knows it by (a listing mapping on the
    connection's channel key), defaulting to our own code."""
    sku_ids = set(sku_ids)
    names = dict(SKU.objects.filter(pk__in=sku_ids).values_list("pk", "code"))
    for sku_id, external in ListingMapping.objects.filter(
        channel=conn.channel_key, sku_id__in=sku_ids
    ).values_list("sku_id", "external_sku"):
        names[sku_id] = external
    return names


def _country(value: str) -> str:
    value = (value or "").strip().upper()
    return value if re.fullmatch(r"[A-Z]{2}", value) else ""


def fulfillment_request(conn: Connection, fo: FulfillmentOrder) -> ct.FulfillmentRequest:
    order = fo.order
    lines = list(fo.lines.all())
    names = _external_skus(conn, (ln.sku_id for ln in lines))
    level = ct.ServiceLevel.STANDARD
    if fo.ship_type == ShipType.LTL:
        level = ct.ServiceLevel.FREIGHT
    elif order.service_level == ServiceLevel.EXPEDITED:
        level = ct.ServiceLevel.EXPEDITED
    return ct.FulfillmentRequest(
        request_id=f"FO-{fo.pk}",
        order_ref=order.external_id,
        ship_to=ct.Address(
            name=order.ship_name,
            company=order.ship_company,
            line1=order.ship_line1,
            line2=order.ship_line2,
            city=order.ship_city,
            region=order.ship_state,
            postal_code=order.ship_postal_code,
            country=_country(order.ship_country),
            phone=order.ship_phone,
            email=order.customer_email,
        ),
        lines=tuple(
            ct.FulfillmentLine(
                sku=names.get(ln.sku_id, ""),
                quantity=ln.quantity,
                external_line_id=str(ln.order_line_id or ""),
            )
            for ln in lines
        ),
        service_level=level,
        order_type=ct.OrderType(order.order_type),
        customer=ct.Customer(name=order.customer_name, email=order.customer_email),
        placed_at=order.placed_at,
    )


def pending_fulfillments(conn: Connection):
    """Reconciliation: open fulfillment orders at this connection's warehouses not yet sent
    to it (nor given up on). Each is pushed through the outbox as it opens; this finds the
    ones that push skipped (connection paused or refusing credentials then, or made after
    the order opened) or that the 3PL refused and may take now. Open orders are the
    working set, so the query stays small."""
    warehouses = _served_warehouses(conn).values()
    return (
        FulfillmentOrder.objects.filter(
            warehouse__in=[w.pk for w in warehouses], status=FulfillmentStatus.OPEN
        )
        .exclude(Exists(_settled_pushes(conn)))
        .order_by("id")
    )


def _record_push(
    conn: Connection,
    fo: FulfillmentOrder,
    request_id: str,
    *,
    external_id: str = "",
    error: str = "",
) -> None:
    with transaction.atomic():
        push, _ = FulfillmentPush.objects.select_for_update().get_or_create(
            connection=conn,
            fulfillment=fo,
            defaults={"request_id": request_id, "status": PushStatus.FAILED},
        )
        push.attempts += 1
        push.status = PushStatus.FAILED if error else PushStatus.SENT
        push.error = error[:500]
        push.external_id = external_id[:255] or push.external_id
        push.save()
        if error:
            return
        # The fulfillment order is now the warehouse's.
        mark_sent(fo, via=conn.display_name, external_id=external_id, request_id=request_id)


def send_fulfillment(conn: Connection, connector: Any, fo_id: int) -> PushResult:
    """Send one open fulfillment order to a 3PL connection, once. The remote idempotency
    key is stable per connection and order, whichever path sends it, so a replay after a
    lost answer is one order at the 3PL."""
    with _push_claim(conn, fo_id) as claimed:
        if not claimed:
            return PushResult(BUSY, ref=f"FO-{fo_id}")
        fo = (
            FulfillmentOrder.objects.filter(pk=fo_id, status=FulfillmentStatus.OPEN)
            .select_related("order")
            .prefetch_related("lines")
            .first()
        )
        if fo is None or _push_settled(conn, fo_id):
            return PushResult(SKIPPED, ref=f"FO-{fo_id}")
        request = fulfillment_request(conn, fo)
        try:
            ack = connector.push_fulfillment_order(
                request=request, idempotency_key=f"{conn.uuid}:{request.request_id}"
            )
        except PermanentError as exc:
            _record_push(conn, fo, request.request_id, error=exc.message)
            return PushResult(REFUSED, exc.message, request.request_id)
        _record_push(conn, fo, request.request_id, external_id=ack.external_id)
        return PushResult(SENT, ref=request.request_id)


def _push_fulfillments(work: _Work) -> None:
    """Reconciliation pass of the fulfillments stream (see pending_fulfillments)."""
    pending = pending_fulfillments(work.conn).values_list("pk", flat=True)
    _push_pending(work, STREAM_FULFILLMENTS, pending, send_fulfillment, "sent", "not_sent")


def _fulfillment_for(conn: Connection, request_id: str) -> FulfillmentOrder | None:
    push = (
        FulfillmentPush.objects.filter(connection=conn, request_id=request_id)
        .select_related("fulfillment")
        .first()
    )
    if push is not None:
        return push.fulfillment
    match = re.fullmatch(r"FO-(\d+)", request_id or "")
    if match is None:
        return None
    served = [w.pk for w in _served_warehouses(conn).values()]
    return FulfillmentOrder.objects.filter(pk=int(match.group(1)), warehouse__in=served).first()


def _apply_shipment(work: _Work, shipment: ct.FulfillmentConfirmation) -> None:
    fo = _fulfillment_for(work.conn, shipment.request_id)
    if fo is None:
        # Shipped by the 3PL for an order Keel did not send (e.g. entered in its portal).
        work.counts["shipments_unknown"] += 1
        return
    if fo.status == FulfillmentStatus.SHIPPED:
        work.counts["shipments_known"] += 1
        return
    if fo.status not in OPEN_FULFILLMENT:
        work.counts["shipments_failed"] += 1
        work.error(
            STREAM_SHIPMENTS,
            "closed",
            f"The 3PL shipped FO-{fo.pk}, which is {fo.get_status_display().lower()} in Keel.",
            shipment.request_id,
        )
        return
    mark_shipped(
        fo,
        tracking_number=(shipment.tracking_numbers[0] if shipment.tracking_numbers else "")[:100],
        carrier=shipment.carrier[:100],
    )
    work.counts["shipped"] += 1


def _pull_shipments(work: _Work) -> None:
    cursor = _cursor(work.conn, STREAM_SHIPMENTS)
    for _ in range(MAX_PAGES_PER_STREAM):
        result = work.connector.pull_shipment_confirmations(cursor=cursor)
        for shipment in result.items:
            _apply_shipment(work, shipment)
        cursor = result.next_cursor
        work.checkpoint(STREAM_SHIPMENTS, cursor)
        if not result.has_more:
            return
        if work.out_of_time():
            break
    work.unfinished.append(STREAM_SHIPMENTS)


def _resolve_skus(work: _Work, external: set[str]) -> dict[str, int]:
    """3PL SKU → our SKU id: a listing mapping on the connection's channel key, else our
    own code (3PLs usually stock under the brand's codes); anything else is parked in the
    unmapped queue for a person to map."""
    found = dict(
        ListingMapping.objects.filter(
            channel=work.conn.channel_key, external_sku__in=external
        ).values_list("external_sku", "sku_id")
    )
    rest = external - set(found)
    if rest:
        by_code = {
            code.lower(): pk
            for pk, code in SKU.objects.filter(is_bundle=False).values_list("pk", "code")
            if code.lower() in {r.lower() for r in rest}
        }
        for name in rest:
            if name.lower() in by_code:
                found[name] = by_code[name.lower()]
            else:
                resolve_listing(channel=work.conn.channel_key, external_sku=name)
                work.counts["stock_unmapped"] += 1
                work.error(
                    STREAM_STOCK,
                    "unmapped_sku",
                    f"The 3PL stocks {name}, which matches no SKU; map it in Unmapped listings.",
                    name,
                )
    return found


@dataclasses.dataclass
class LevelsApplied:
    """What applying one warehouse's reported levels did."""

    # SKUs whose count correction posted.
    corrected: int = 0
    # Orders re-routed off the warehouse because it ran short of what they reserved.
    rerouted: int = 0
    # (sku id, why the ledger refused its level)
    problems: list[tuple[int, str]] = dataclasses.field(default_factory=list)


def apply_stock_levels(
    warehouse: Warehouse, levels: Mapping[int, int], *, note: str
) -> LevelsApplied:
    """Bring sellable stock at `warehouse` to the reported on-hand quantities as count
    corrections (inventory.services cycle count), changing only SKUs that differ.

    A level below what open orders have reserved at the warehouse means it cannot ship
    them all: the newest of those orders are re-routed elsewhere (or held for stock) by
    orders.services.reroute_shortage, which logs a decision saying what ran short, and the
    correction posts after them, in one transaction per such SKU, so the count never
    leaves less on hand than reserved. A level the ledger still refuses (stock reserved by
    something other than fulfillment orders) is reported and the others post.
    """
    rows = {
        sku_id: (quantity, reserved)
        for sku_id, quantity, reserved in StockBalance.objects.filter(
            warehouse=warehouse, status=StockStatus.SELLABLE, sku_id__in=list(levels)
        ).values_list("sku_id", "quantity", "reserved")
    }
    changed = {s: q for s, q in levels.items() if q != rows.get(s, (0, 0))[0]}
    result = LevelsApplied()
    if not changed:
        return result
    skus = SKU.objects.in_bulk(list(changed))
    short = {s: q for s, q in changed.items() if q < rows.get(s, (0, 0))[1]}
    for sku_id, quantity in short.items():
        try:
            with transaction.atomic():
                moved = reroute_shortage(
                    warehouse=warehouse,
                    sku=skus[sku_id],
                    on_hand=quantity,
                    source=note[:1].lower() + note[1:],
                )
                _post_count(warehouse, skus, {sku_id: quantity}, note)
        except ValidationError as exc:
            result.problems.append((sku_id, " ".join(exc.messages)))
            continue
        result.corrected += 1
        result.rerouted += len(moved)
    rest = {s: q for s, q in changed.items() if s not in short}
    if not rest:
        return result
    try:
        with transaction.atomic():
            _post_count(warehouse, skus, rest, note)
        result.corrected += len(rest)
        return result
    except ValidationError:
        pass
    # One SKU the ledger refuses must not hold back the rest: post them one by one.
    for sku_id, quantity in rest.items():
        try:
            with transaction.atomic():
                _post_count(warehouse, skus, {sku_id: quantity}, note)
            result.corrected += 1
        except ValidationError as exc:
            result.problems.append((sku_id, " ".join(exc.messages)))
    return result


def _post_count(
    warehouse: Warehouse, skus: Mapping[int, SKU], levels: Mapping[int, int], note: str
) -> None:
    count = stock.start_count(warehouse=warehouse, note=note[:500])
    for sku_id, quantity in levels.items():
        stock.enter_count(count=count, sku=skus[sku_id], counted=quantity)
    # The 3PL is the truth for its own stock: its report posts without a person deciding.
    stock.post_count(count=count, gated=False)


def _apply_levels(work: _Work, levels: Iterable[ct.StockLevel], unmapped: set[str]) -> None:
    served = _served_warehouses(work.conn)
    by_location: dict[str, dict[str, int]] = defaultdict(dict)
    for level in levels:
        if level.location not in served:
            if level.location not in unmapped:
                unmapped.add(level.location)
                work.error(
                    STREAM_STOCK,
                    "unmapped_location",
                    f"3PL location “{level.location}” is not mapped to a warehouse; its "
                    "stock is not applied.",
                    level.location,
                )
            continue
        by_location[level.location][level.sku] = max(level.on_hand, 0)
    if not by_location:
        return
    names = {sku for rows in by_location.values() for sku in rows}
    sku_ids = _resolve_skus(work, names)
    for location, rows in by_location.items():
        warehouse = served[location]
        levels_by_id = {sku_ids[name]: q for name, q in rows.items() if name in sku_ids}
        applied = apply_stock_levels(
            warehouse, levels_by_id, note=f"Stock reported by {work.conn.display_name}"
        )
        work.counts["stock_corrected"] += applied.corrected
        work.counts["stock_checked"] += len(levels_by_id)
        work.counts["rerouted_short"] += applied.rerouted
        problems = applied.problems
        codes = dict(SKU.objects.filter(pk__in=[p[0] for p in problems]).values_list("pk", "code"))
        for sku_id, problem in problems:
            work.error(STREAM_STOCK, "refused", problem, codes.get(sku_id, str(sku_id)))


def _pull_stock(work: _Work) -> None:
    cursor = _cursor(work.conn, STREAM_STOCK)
    unmapped: set[str] = set()
    for _ in range(MAX_PAGES_PER_STREAM):
        result = work.connector.pull_stock_levels(cursor=cursor)
        _apply_levels(work, result.items, unmapped)
        cursor = result.next_cursor
        work.checkpoint(STREAM_STOCK, cursor)
        if not result.has_more:
            return
        if work.out_of_time():
            break
    work.unfinished.append(STREAM_STOCK)


STREAM_HANDLERS = {
    STREAM_ORDERS: _pull_orders,
    STREAM_LISTINGS: _pull_listings,
    STREAM_FULFILLMENTS: _push_fulfillments,
    STREAM_SHIPMENTS: _pull_shipments,
    STREAM_STOCK: _pull_stock,
    STREAM_TRACKING: _push_tracking,
}


# --- Pushes through the outbox ---------------------------------------------------------------
#
# orders.services publishes the internal events `fulfillment.opened` and
# `fulfillment.shipped` in the transaction that opens or ships a fulfillment order;
# sync.handlers subscribes FULFILLMENT_TOPIC and TRACKING_TOPIC to them (only for the
# orders a connection must hear about) and calls deliver_fulfillment / deliver_tracking
# inside the outbox's consuming transaction.

FULFILLMENT_TOPIC = "threepl.push_fulfillment"
TRACKING_TOPIC = "channel.push_tracking"
# Short in-process retries: the outbox's consuming transaction stays open during the call,
# so longer waits (a Retry-After beyond this) go back to the outbox (RetryLater).
OUTBOX_PUSH_RETRY = RetryPolicy(max_attempts=3, max_delay=5.0, max_retry_after=10.0)
# Another path holds this order's push claim: it will have recorded it by then.
BUSY_RETRY_SECONDS = 10.0


def _capable(connector: str, capability: ct.Capability) -> bool:
    info = plugins.infos().get(connector)
    return info is not None and capability in info.capabilities


def fulfillment_connections(warehouse_id: int) -> list[Connection]:
    """Active 3PL connections that receive the fulfillment orders of this warehouse."""
    pushing = [
        conn
        for conn in Connection.objects.active().filter(kind=ConnectionKind.THREEPL).order_by("pk")
        if conn.warehouse_map and _capable(conn.connector, ct.Capability.FULFILLMENT_ORDER_PUSH)
    ]
    if not pushing:
        return []
    code = Warehouse.objects.filter(pk=warehouse_id).values_list("code", flat=True).first()
    if code is None:
        return []
    return [c for c in pushing if code.lower() in {v.lower() for v in c.warehouse_map.values()}]


def tracking_connection(channel_key: str) -> Connection | None:
    """The active channel connection that takes shipments of orders on `channel_key`."""
    conn = (
        Connection.objects.active()
        .filter(kind=ConnectionKind.CHANNEL, channel_key=channel_key)
        .first()
    )
    if conn is None or not _capable(conn.connector, ct.Capability.FULFILLMENT_PUSH):
        return None
    return conn


def served_by_threepl(data: Mapping[str, Any]) -> bool:
    """Outbox subscription guard, asked for every fulfillment order routing opens: only
    those a 3PL must receive cost a row. A brand without 3PL connections pays one small
    SELECT without the ORM (this runs in every routing transaction, per order)."""
    table = db.ops.quote_name(Connection._meta.db_table)
    with db.cursor() as cursor:
        cursor.execute(
            f"SELECT connector, warehouse_map::text FROM {table} "  # noqa: S608  (model table)
            "WHERE status = %s AND kind = %s AND warehouse_map <> '{}'::jsonb",
            [ConnectionStatus.ACTIVE, ConnectionKind.THREEPL],
        )
        maps = [
            json.loads(wmap)
            for connector, wmap in cursor.fetchall()
            if _capable(connector, ct.Capability.FULFILLMENT_ORDER_PUSH)
        ]
    if not maps:
        return False
    code = Warehouse.objects.filter(pk=data["warehouse"]).values_list("code", flat=True).first()
    return code is not None and any(
        code.lower() in {v.lower() for v in wmap.values()} for wmap in maps
    )


def reported_to_channel(data: Mapping[str, Any]) -> bool:
    """Outbox subscription guard: only shipments of a connected channel's orders."""
    return tracking_connection(str(data.get("channel") or "")) is not None


def deliver_fulfillment(fo_id: int) -> str:
    """FULFILLMENT_TOPIC handler: send an open fulfillment order to the 3PL connection that
    serves its warehouse. Returns what happened (for the worker's log and tests).

    A refusal is recorded on the push (shown on the connection, retried by reconciliation
    until MAX_PUSH_ATTEMPTS). Refused credentials count towards "needs attention" and the
    message is done: the reconciliation pass sends the order once a person reconnects, so
    an expired token costs one request per waiting order, not a retry storm. Rate limits
    and outages raise RetryLater, so the outbox tries again (honouring Retry-After).
    """
    fo = FulfillmentOrder.objects.filter(pk=fo_id).values_list("status", "warehouse_id").first()
    if fo is None or fo[0] != FulfillmentStatus.OPEN:
        return "not_open"
    outcome = "no_connection"
    for conn in fulfillment_connections(fo[1]):
        outcome = _deliver(conn, fo_id, send_fulfillment, "fulfillment order")
        if outcome in (SENT, SKIPPED):
            break
    return outcome


def deliver_tracking(fo_id: int) -> str:
    """TRACKING_TOPIC handler: report a shipped fulfillment order to its channel (same
    failure handling as deliver_fulfillment). Shipments made before the connection existed
    are not reported."""
    fo = (
        FulfillmentOrder.objects.filter(pk=fo_id)
        .values_list("status", "closed_at", "order__channel")
        .first()
    )
    if fo is None or fo[0] != FulfillmentStatus.SHIPPED:
        return "not_shipped"
    conn = tracking_connection(fo[2])
    if conn is None:
        return "no_connection"
    if fo[1] is not None and fo[1] < conn.created_at:
        return "before_connection"
    return _deliver(conn, fo_id, send_tracking, "shipment")


def _deliver(conn: Connection, fo_id: int, send, what: str) -> str:
    try:
        with plugins.connector_for(conn, retry=OUTBOX_PUSH_RETRY) as connector:
            result = send(conn, connector, fo_id)
    except AuthError as exc:
        note_auth_failure(conn.pk, exc.message)
        return "auth_failed"
    except InvalidToken:
        _needs_attention(
            conn.pk,
            "The stored credentials cannot be decrypted with the configured keys "
            "(KEEL_FERNET_KEYS); enter them again.",
        )
        return "auth_failed"
    except (RateLimited, TransientError) as exc:
        raise RetryLater(f"{conn.display_name}: {exc.message}", seconds=exc.retry_after) from exc
    if result.outcome == BUSY:
        raise RetryLater(f"FO-{fo_id} is being sent by a sync run", seconds=BUSY_RETRY_SECONDS)
    if result.outcome == REFUSED:
        _note_error(conn.pk, f"{conn.display_name} refused {what} {result.ref}: {result.message}")
        log.warning("%s refused %s %s", conn.display_name, what, result.ref)
    elif result.outcome == SENT:
        Connection.objects.filter(pk=conn.pk).update(
            last_success_at=timezone.now(), auth_failures=0
        )
    return result.outcome


# --- Webhooks -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class WebhookOutcome:
    status: int
    receipt_id: int | None = None
    duplicate: bool = False


_NOT_FOUND = WebhookOutcome(404)


def receive_webhook(
    *, token: str, headers: Mapping[str, str], body: bytes, remote: str = ""
) -> WebhookOutcome:
    """Verify a delivery over its raw bytes, store it once, acknowledge.

    401 for a bad signature (nothing stored, a `keel.security` warning), 404 for an
    unknown connection or one whose connector takes no webhooks, 200 otherwise — also for
    a duplicate, which is dropped.
    """
    conn = _webhook_connection(token)
    info = plugins.infos().get(conn.connector) if conn is not None else None
    if conn is None or not accepts_webhooks(info):
        security_log.warning(
            "webhook for no known webhook connection",
            extra={"brand": db.schema_name, "token": token[:40], "remote": remote},
        )
        return _NOT_FOUND
    try:
        with plugins.connector_for(conn) as connector:
            connector.verify_webhook(headers=headers, body=body)
            try:
                event = connector.parse_webhook(headers=headers, body=body)
                topic, event_id, delivery_id, problem = (
                    event.topic,
                    event.event_id,
                    event.delivery_id,
                    "",
                )
            except (PermanentError, ValueError, TypeError) as exc:
                # Verified but unreadable: kept (and shown) rather than bounced, since the
                # vendor would only send the same bytes again.
                topic, delivery_id = UNPARSABLE_TOPIC, ""
                event_id = "sha256:" + hashlib.sha256(body).hexdigest()
                problem = str(getattr(exc, "message", exc))[:500] or type(exc).__name__
    except WebhookVerificationError as exc:
        security_log.warning(
            "webhook rejected: %s",
            exc.message,
            extra={
                "brand": db.schema_name,
                "connection": conn.pk,
                "remote": remote,
                "bytes": len(body),
            },
        )
        return WebhookOutcome(401)
    except InvalidToken:
        log.error("webhook for connection %s: stored credentials cannot be decrypted", conn.pk)
        return WebhookOutcome(503)
    except ConfigurationError as exc:
        # The connector refuses its stored settings (e.g. after a plugin upgrade): the
        # vendor retries later; a person sees it on the connection.
        log.error("webhook for connection %s: %s", conn.pk, exc.message)
        _note_error(conn.pk, exc.message)
        return WebhookOutcome(503)
    receipt_id = _store_receipt(
        conn, topic[:100], event_id[:255], delivery_id[:255], headers, body, problem
    )
    if receipt_id is None:
        return WebhookOutcome(200, duplicate=True)
    if not problem and conn.status != ConnectionStatus.PAUSED:
        schedule_receipts(conn.pk, receipt_id)
    return WebhookOutcome(200, receipt_id=receipt_id)


def _webhook_connection(token: str) -> Connection | None:
    """The connection a webhook URL names: one indexed SELECT of the columns verifying
    needs, without the ORM's query building (this is the webhook hot path)."""
    table = db.ops.quote_name(Connection._meta.db_table)
    with db.cursor() as cursor:
        cursor.execute(
            "SELECT id, connector, kind, channel_key, settings::text, credentials, status "  # noqa: S608
            f"FROM {table} WHERE uuid = %s",
            [token],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    conn = Connection(
        id=row[0],
        uuid=token,
        connector=row[1],
        kind=row[2],
        channel_key=row[3],
        settings=json.loads(row[4]),
        credentials=row[5],
        status=row[6],
    )
    conn._state.adding = False
    return conn


def schedule_receipts(connection_id: int, receipt_id: int) -> None:
    """Ask a worker to apply what a connection received: one task at a time per
    connection, since each applies everything waiting. The task clears the flag before it
    claims, so a delivery stored after that schedules the next task."""
    try:
        first = cache.add(f"sync:receipts:{connection_id}", 1, RECEIPT_SCHEDULE_TTL)
    except Exception as exc:  # noqa: BLE001  (cache down: the delivery is stored; sweep)
        log.warning("webhook scheduling skipped (%s); the sweep applies it", type(exc).__name__)
        return
    if first:
        _after_commit(WEBHOOK_TASK, receipt_id)


def _store_receipt(
    conn: Connection,
    topic: str,
    event_id: str,
    delivery_id: str,
    headers: Mapping[str, str],
    body: bytes,
    problem: str,
) -> int | None:
    """INSERT … ON CONFLICT DO NOTHING: a concurrent twin waits on the unique index and
    then finds the event stored, with no error and no savepoint. None for a duplicate."""
    table = db.ops.quote_name(WebhookReceipt._meta.db_table)
    status = ReceiptStatus.FAILED if problem else ReceiptStatus.RECEIVED
    with db.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} "  # noqa: S608  (table name from the model, values bound)
            "(connection_id, received_at, topic, event_id, delivery_id, headers, body, "
            "status, attempts, external_id, result) "
            "VALUES (%s, %s, %s, %s, %s, %s::jsonb, %s, %s, 0, '', %s) "
            "ON CONFLICT (connection_id, topic, event_id) DO NOTHING RETURNING id",
            [
                conn.pk,
                timezone.now(),
                topic,
                event_id,
                delivery_id,
                json.dumps(dict(headers)),
                body,
                status,
                problem,
            ],
        )
        row = cursor.fetchone()
    return row[0] if row else None


def process_receipt(receipt_id: int) -> str:
    """Apply stored deliveries: this one, and whatever else of its connection is waiting,
    in batches (one transaction and one batch ingestion each), so a burst of webhooks
    costs a few transactions rather than one task's worth of work each. The task of a
    delivery a batch already took finds nothing to do. Returns this receipt's status."""
    first = (
        WebhookReceipt.objects.filter(pk=receipt_id).values_list("connection_id", "status").first()
    )
    if first is None or first[1] != ReceiptStatus.RECEIVED:
        return "skipped"
    cache.delete(f"sync:receipts:{first[0]}")
    deadline = time.monotonic() + RECEIPT_TIME_BUDGET
    while claimed := _claim_receipts(first[0]):
        _apply_receipts(claimed)
        if time.monotonic() > deadline:
            # Plenty more waiting: hand the rest to a fresh task rather than hold a worker.
            _after_commit(WEBHOOK_TASK, receipt_id)
            break
    status = WebhookReceipt.objects.filter(pk=receipt_id).values_list("status", flat=True).first()
    return status or "skipped"


def _claim_receipts(connection_id: int) -> list[int]:
    """Take up to a batch of waiting deliveries, oldest first, committed as ours
    (`processing`, attempts + 1). A worker killed while applying them leaves them claimed;
    the schedule puts them back after a while, and the attempt count stops a delivery
    that kills its worker every time from being retried forever."""
    now = timezone.now()
    with transaction.atomic():
        paused = Connection.objects.filter(pk=connection_id, status=ConnectionStatus.PAUSED)
        if paused.exists():
            return []
        ids = list(
            WebhookReceipt.objects.select_for_update(skip_locked=True)
            .filter(connection_id=connection_id, status=ReceiptStatus.RECEIVED)
            .order_by("received_at", "id")
            .values_list("pk", flat=True)[:RECEIPT_BATCH]
        )
        WebhookReceipt.objects.filter(pk__in=ids).update(
            status=ReceiptStatus.PROCESSING, attempts=F("attempts") + 1, claimed_at=now
        )
    return ids


def _apply_receipts(ids: list[int]) -> None:
    """Parse the claimed deliveries again and ingest their orders in one transaction."""
    with transaction.atomic():
        receipts = list(
            WebhookReceipt.objects.select_for_update()
            .filter(pk__in=ids, status=ReceiptStatus.PROCESSING)
            .order_by("received_at", "id")
        )
        if not receipts:
            return
        conn = Connection.objects.get(pk=receipts[0].connection_id)
        waiting: list[tuple[WebhookReceipt, OrderInput]] = []
        with plugins.connector_for(conn) as connector:
            for receipt in receipts:
                if receipt.attempts > RECEIPT_MAX_ATTEMPTS:
                    _close_receipt(receipt, ReceiptStatus.FAILED, "Given up after repeated tries.")
                    continue
                try:
                    event = connector.parse_webhook(
                        headers=dict(receipt.headers), body=bytes(receipt.body)
                    )
                except (PermanentError, ValueError, TypeError) as exc:
                    _close_receipt(receipt, ReceiptStatus.FAILED, str(getattr(exc, "message", exc)))
                    continue
                if event.order is None:
                    _close_receipt(
                        receipt, ReceiptStatus.IGNORED, f"{event.topic} carries no order"
                    )
                    continue
                receipt.external_id = event.order.external_id[:255]
                data = order_input(event.order, channel=conn.channel_key)
                if data is None:
                    _close_receipt(receipt, ReceiptStatus.IGNORED, "no shippable lines")
                    continue
                waiting.append((receipt, data))
        for (receipt, _), outcome in zip(
            waiting, _ingest_all([d for _, d in waiting]), strict=True
        ):
            if isinstance(outcome, ValidationError):
                _close_receipt(receipt, ReceiptStatus.FAILED, " ".join(outcome.messages))
                continue
            applied = _applied(outcome)
            message = applied.outcome + (f": {applied.message}" if applied.message else "")
            _close_receipt(receipt, ReceiptStatus.PROCESSED, message)


def _ingest_all(inputs: list[OrderInput]) -> list[IngestResult | ValidationError]:
    """Batch ingestion; if the batch refuses, one by one so only the bad order fails."""
    if not inputs:
        return []
    try:
        with transaction.atomic():
            return list(ingest_orders(inputs))
    except ValidationError:
        pass
    outcomes: list[IngestResult | ValidationError] = []
    for data in inputs:
        try:
            with transaction.atomic():
                outcomes.append(ingest_order(data))
        except ValidationError as exc:
            outcomes.append(exc)
    return outcomes


def _close_receipt(receipt: WebhookReceipt, status: str, result: str) -> None:
    receipt.status = status
    receipt.result = result[:500]
    receipt.processed_at = timezone.now()
    receipt.save(update_fields=["status", "result", "processed_at", "external_id"])


# --- Availability ---------------------------------------------------------------------------


def pushes_available(conn: Connection) -> bool:
    info = plugins.infos().get(conn.connector)
    return info is not None and ct.Capability.AVAILABLE_PUSH in info.capabilities


def mark_available_changed(sku_ids: Iterable[int], *, full: bool = False) -> int:
    """Note SKUs whose availability changed on every channel connection that publishes
    quantities, and schedule their pushes. `full` marks every mapped SKU."""
    sku_ids = set(sku_ids)
    bundles = set(
        BundleComponent.objects.filter(component_id__in=sku_ids).values_list("bundle_id", flat=True)
    )
    now = timezone.now()
    marked = 0
    for conn in Connection.objects.active().filter(kind=ConnectionKind.CHANNEL):
        if not pushes_available(conn):
            continue
        mapped = ListingMapping.objects.filter(channel=conn.channel_key)
        if not full:
            mapped = mapped.filter(sku_id__in=sku_ids | bundles)
        rows = [
            PendingAvailable(connection=conn, sku_id=s, marked_at=now)
            for s in set(mapped.values_list("sku_id", flat=True))
        ]
        if not rows:
            continue
        PendingAvailable.objects.bulk_create(
            rows,
            update_conflicts=True,
            unique_fields=["connection", "sku"],
            update_fields=["marked_at"],
        )
        marked += len(rows)
        schedule_available_push(conn)
    return marked


def schedule_available_push(conn: Connection) -> None:
    """Debounced: one push per connection per few seconds, whatever the burst."""
    if cache.add(f"sync:available:{conn.pk}", 1, AVAILABLE_DEBOUNCE_SECONDS * 4):
        _after_commit(AVAILABLE_TASK, conn.pk, countdown=AVAILABLE_DEBOUNCE_SECONDS)


def available_quantities(sku_ids: Iterable[int]) -> dict[int, int]:
    """Units a channel may sell: available-to-promise summed over active warehouses;
    bundles by what their components allow."""
    sku_ids = set(sku_ids)
    bundles = SKU.objects.filter(pk__in=sku_ids, is_bundle=True)
    plain = sku_ids - {b.pk for b in bundles}
    totals: dict[int, int] = dict.fromkeys(sku_ids, 0)
    for (sku_id, _), quantity in stock.available_to_promise(sku_ids=plain).items():
        totals[sku_id] += quantity
    for bundle in bundles:
        totals[bundle.pk] = sum(stock.bundle_availability(bundle).values())
    return totals


def push_available(connection_id: int) -> Outcome:
    """Publish changed available quantities of the SKUs marked for this channel."""
    cache.delete(f"sync:available:{connection_id}")
    conn = Connection.objects.filter(pk=connection_id).first()
    if conn is None or conn.status != ConnectionStatus.ACTIVE or not pushes_available(conn):
        return DONE
    with exclusive(f"available:{conn.pk}") as acquired:
        if not acquired:
            # A push is running and may have read its SKUs before ours were marked.
            return Outcome(retry=True, countdown=AVAILABLE_DEBOUNCE_SECONDS)
        return _push_available_locked(conn)


def _push_available_locked(conn: Connection) -> Outcome:
    pending = list(
        PendingAvailable.objects.filter(connection=conn)
        .order_by("marked_at")
        .values_list("pk", "sku_id", "marked_at")[:AVAILABLE_PENDING_LIMIT]
    )
    if not pending:
        return DONE
    sku_ids = {sku_id for _, sku_id, _ in pending}
    mapped: dict[int, tuple[str, str]] = {}
    for sku_id, external, listing_id in ListingMapping.objects.filter(
        channel=conn.channel_key, sku_id__in=sku_ids
    ).values_list("sku_id", "external_sku", "external_listing_id"):
        mapped.setdefault(sku_id, (external, listing_id))
    refs = dict(
        ChannelListing.objects.filter(
            connection=conn, external_sku__in=[e for e, _ in mapped.values()], active=True
        ).values_list("external_sku", "inventory_ref")
    )
    quantities = available_quantities(mapped)
    last = dict(
        AvailablePush.objects.filter(connection=conn, sku_id__in=list(mapped)).values_list(
            "sku_id", "quantity"
        )
    )
    todo = []
    for sku_id, (external, listing_id) in mapped.items():
        ref = refs.get(external) or listing_id or external
        if last.get(sku_id) != quantities[sku_id]:
            todo.append((sku_id, ref, quantities[sku_id]))
    try:
        with plugins.connector_for(conn) as connector:
            for start in range(0, len(todo), AVAILABLE_BATCH):
                batch = todo[start : start + AVAILABLE_BATCH]
                results = connector.push_available(
                    levels=[ct.AvailableQuantity(inventory_ref=r, available=q) for _, r, q in batch]
                )
                _record_available(conn, batch, results)
    except AuthError as exc:
        note_auth_failure(conn.pk, exc.message)
        return DONE
    except (RateLimited, TransientError) as exc:
        return Outcome(retry=True, countdown=min(exc.retry_after or backoff(0), MAX_COUNTDOWN))
    except ConnectorError as exc:
        _note_error(conn.pk, exc.message)
    # Cleared only if not marked again meanwhile (a newer change needs a newer push).
    cleared = Q()
    for pk, _, marked_at in pending:
        cleared |= Q(pk=pk, marked_at=marked_at)
    PendingAvailable.objects.filter(cleared).delete()
    if PendingAvailable.objects.filter(connection=conn).exists():
        schedule_available_push(conn)
    return DONE


def _record_available(
    conn: Connection,
    batch: list[tuple[int, str, int]],
    results: list[ct.AvailablePushResult],
) -> None:
    with transaction.atomic():
        for (sku_id, ref, quantity), result in zip(batch, results, strict=True):
            defaults: dict[str, Any] = {
                "inventory_ref": ref[:255],
                "outcome": str(result.outcome),
                "message": result.message[:300],
            }
            if result.outcome == ct.PushOutcome.APPLIED:
                defaults["quantity"] = quantity
            AvailablePush.objects.update_or_create(
                connection=conn, sku_id=sku_id, defaults=defaults
            )


# --- Schedule -----------------------------------------------------------------------------


def poll_connections(now: datetime | None = None) -> dict[str, int]:
    """The per-brand beat work: queue due polls, recover lost work, keep tables small."""
    now = now or timezone.now()
    summary = Counter(reaped=reap_stale_runs(now), swept=sweep_receipts(now), queued=0)
    infos = plugins.infos()
    for conn in Connection.objects.active():
        info = infos.get(conn.connector)
        if info is None:
            _needs_attention(
                conn.pk,
                f"The connector “{conn.connector}” is no longer installed on this deployment.",
            )
            continue
        if conn.throttled_until and conn.throttled_until > now:
            continue
        due = conn.last_polled_at is None or conn.last_polled_at <= now - timedelta(
            seconds=conn.poll_interval
        )
        if due and streams_for(info):
            _, created = request_sync(conn, trigger=RunTrigger.SCHEDULE)
            Connection.objects.filter(pk=conn.pk).update(last_polled_at=now)
            summary["queued"] += created
        if ct.Capability.AVAILABLE_PUSH in info.capabilities:
            _full_available_check(conn, now)
    summary["pruned"] = prune(now)
    return dict(summary)


def _full_available_check(conn: Connection, now: datetime) -> None:
    last = SyncCursor.objects.filter(connection=conn, stream="available_full").first()
    if last is not None and last.updated_at > now - AVAILABLE_FULL_EVERY:
        if PendingAvailable.objects.filter(connection=conn).exists():
            schedule_available_push(conn)
        return
    SyncCursor.objects.update_or_create(
        connection=conn, stream="available_full", defaults={"value": now.isoformat()}
    )
    mapped = set(
        ListingMapping.objects.filter(channel=conn.channel_key).values_list("sku_id", flat=True)
    )
    if mapped:
        PendingAvailable.objects.bulk_create(
            [PendingAvailable(connection=conn, sku_id=s, marked_at=now) for s in mapped],
            update_conflicts=True,
            unique_fields=["connection", "sku"],
            update_fields=["marked_at"],
        )
        schedule_available_push(conn)


def reap_stale_runs(now: datetime) -> int:
    """Runs whose worker vanished for good, or whose message was lost."""
    reaped = 0
    stale = SyncRun.objects.filter(
        status=RunStatus.RUNNING, heartbeat_at__lt=now - STALE_RUNNING
    ).values_list("pk", flat=True)
    for run_id in stale:
        _finish_id(run_id, RunStatus.FAILED, "The worker running this sync stopped answering.")
        reaped += 1
    waiting = SyncRun.objects.filter(
        Q(status=RunStatus.QUEUED, queued_at__lt=now - STALE_WAITING)
        | Q(status=RunStatus.RETRYING, next_retry_at__lt=now - STALE_WAITING)
    ).values_list("pk", flat=True)
    for run_id in waiting:
        # Its task message never arrived (broker outage): send it again. A copy that was
        # only late finds the run taken or finished.
        send_task(RUN_TASK, run_id)
        reaped += 1
    return reaped


def sweep_receipts(now: datetime) -> int:
    """Deliveries whose processing task was lost (broker down at receipt) or whose worker
    died while applying them."""
    WebhookReceipt.objects.filter(
        status=ReceiptStatus.PROCESSING, claimed_at__lt=now - RECEIPT_CLAIM_TIMEOUT
    ).update(status=ReceiptStatus.RECEIVED)
    waiting = dict(
        WebhookReceipt.objects.filter(
            status=ReceiptStatus.RECEIVED, received_at__lt=now - RECEIPT_SWEEP_AFTER
        )
        .exclude(connection__status=ConnectionStatus.PAUSED)
        .order_by("received_at")
        .values_list("connection_id", "pk")[:500]
    )
    # One task per connection: it applies everything of that connection that waits.
    for receipt_id in waiting.values():
        send_task(WEBHOOK_TASK, receipt_id)
    return len(waiting)


def prune(now: datetime) -> int:
    """Old processed deliveries and finished runs (the activity log keeps the story)."""
    receipts = WebhookReceipt.objects.filter(
        received_at__lt=now - RECEIPT_RETENTION, status__in=[ReceiptStatus.PROCESSED, "ignored"]
    )
    runs = SyncRun.objects.filter(queued_at__lt=now - RUN_RETENTION).exclude(
        status__in=ACTIVE_RUN_STATUSES
    )
    return receipts.delete()[0] + runs.delete()[0]
