"""Contract-test kit: the checks every connector must pass against its fake server.

Integrators subclass :class:`ConnectorContract` in a test module and provide a ``harness``
fixture returning a :class:`ContractHarness` (the plugin, its settings, a started fake
sharing a :class:`~connectors.clock.VirtualClock`, and small adapters saying how to seed
the fake and which calls to make)::

    import pytest
    from connectors.clock import VirtualClock
    from connectors.testing import ConnectorContract, ContractHarness

    class TestShipBayContract(ConnectorContract):
        @pytest.fixture
        def harness(self):
            clock = VirtualClock()
            with FakeShipBay(clock=clock) as fake:
                yield ContractHarness(plugin=keel_shipbay, name="shipbay", clock=clock, ...)

Checks that need a piece the harness does not provide (a fake, a pull, webhooks...) are
skipped with a reason, so a network-free connector such as the sandbox runs the subset that
applies. Every check is also a plain function (``check_*``) usable outside pytest classes.

What is checked:

- metadata: valid :class:`~connectors.types.ConnectorInfo`, settings schema is a JSON Schema
  object, secret fields exist and are ``writeOnly``; the factory builds, through a plugin
  manager holding only this plugin, an object implementing the kind's protocol and every
  method its capabilities name, answers ``None`` for other names and refuses invalid settings;
- pagination: a multi-page pull returns every seeded item exactly once, and a pull resumed
  from a stored cursor by a fresh instance (a killed worker) neither loses nor repeats items;
- politeness: ``Retry-After`` (or the vendor's header) is honoured — no request before it
  expires; 5xx and malformed bodies are retried a bounded number of times; 4xx is not
  retried; revoked credentials raise :class:`~connectors.errors.AuthError` after exactly one
  request and the instance sends nothing more;
- webhooks (channels declaring them): valid deliveries verify and parse; tampered bodies,
  re-serialised JSON, a wrong secret and a missing signature are rejected;
- idempotent pushes (3PL fulfillment orders and inbound shipments, channel fulfillments,
  carrier labels): the same push twice makes one remote object — for inbound shipments and
  channel fulfillments the replay comes from a fresh instance, as a redelivered task would;
- secrets: no credential value appears in any log record (message, arguments, extras,
  traceback) or error message produced while doing all of the above.

Depends on pytest and the SDK only.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from connectors.clock import VirtualClock
from connectors.config import check_schema
from connectors.errors import AuthError, ConfigurationError, ConnectorError, PermanentError
from connectors.fakeapi import FakeAPI, FakeResponse
from connectors.http import EgressPolicy, HttpContext
from connectors.manager import make_test_manager
from connectors.state import ConnectionState, MemoryState
from connectors.types import (
    Capability,
    ConnectorInfo,
    FulfillmentConfirmation,
    FulfillmentRequest,
    InboundShipment,
    PullResult,
    RateRequest,
)

__all__ = [
    "ConnectorContract",
    "ContractHarness",
    "WebhookCase",
    "check_auth_failure",
    "check_connector_info",
    "check_factory",
    "check_idempotent_pushes",
    "check_malformed_body_retried",
    "check_pagination",
    "check_permanent_error_not_retried",
    "check_resume_from_cursor",
    "check_retry_after",
    "check_secrets_not_logged",
    "check_transient_errors_retried",
    "check_webhooks",
]


@dataclasses.dataclass
class WebhookCase:
    """How to produce a genuine delivery for a channel connector's webhooks.

    ``sign(body, secret)`` returns the headers the vendor would send with ``body``;
    ``signature_header`` names the header carrying the signature.
    """

    body: bytes
    secret: str
    sign: Callable[[bytes, str], Mapping[str, str]]
    signature_header: str


@dataclasses.dataclass
class ContractHarness:
    """Everything the contract checks need about one connector and its fake."""

    plugin: object
    name: str
    clock: VirtualClock
    settings: Mapping[str, Any]
    credentials: Mapping[str, str]
    #: The started fake (``None`` for connectors without a network API).
    fake: FakeAPI | None = None
    #: Put ``n`` items into the fake for ``pull`` and return their ids.
    seed_items: Callable[[int], set[str]] | None = None
    #: Items to seed for the pagination checks (at least three pages' worth).
    page_items: int = 0
    #: One page of the pull under test: ``pull(connector, cursor) -> PullResult``.
    pull: Callable[[Any, str | None], PullResult[Any]] | None = None
    item_id: Callable[[Any], str] = lambda item: str(item.external_id)
    #: One cheap, idempotent call that makes exactly one request when healthy.
    probe: Callable[[Any], object] | None = None
    #: The vendor's 429 asking to retry after the given seconds.
    throttle_response: Callable[[float], FakeResponse] | None = None
    #: Make the fake reject the current credentials from now on.
    revoke_credentials: Callable[[], None] | None = None
    webhook: WebhookCase | None = None
    #: A request for 3PL idempotency checks, and how to count orders the fake created.
    fulfillment_request: FulfillmentRequest | None = None
    count_created: Callable[[], int] | None = None
    #: A shipment to quote and buy a label for (carriers).
    rate_request: RateRequest | None = None
    #: A shipment to report to a channel (``fulfillment.push``, with the channel's order and
    #: line ids), and how to count the fulfillments the fake then holds for that order.
    channel_shipment: FulfillmentConfirmation | None = None
    count_channel_fulfillments: Callable[[], int] | None = None
    #: An advance shipping notice (``inbound.push``), and how to count the fake's ASNs.
    inbound_shipment: InboundShipment | None = None
    count_inbound: Callable[[], int] | None = None
    state: ConnectionState = dataclasses.field(default_factory=MemoryState)
    #: Deterministic jitter for the client's backoff.
    seed: int = 1234

    def http(self) -> HttpContext:
        return HttpContext(
            clock=self.clock,
            egress=EgressPolicy.permissive(),
            uniform=random.Random(self.seed).uniform,
            log_context={"connection": "contract-test"},
        )

    def build(
        self,
        *,
        name: str | None = None,
        settings: Mapping[str, Any] | None = None,
        credentials: Mapping[str, str] | None = None,
    ) -> Any:
        """Build an instance through a manager holding only this plugin, like the platform."""
        pm = make_test_manager(self.plugin)
        return pm.hook.keel_connector_factory(
            name=name or self.name,
            settings=dict(self.settings if settings is None else settings),
            credentials=dict(self.credentials if credentials is None else credentials),
            http=self.http(),
            state=self.state,
            clock=self.clock,
        )

    def info(self) -> ConnectorInfo:
        pm = make_test_manager(self.plugin)
        for batch in pm.hook.keel_connector_info():
            for info in batch:
                if info.name == self.name:
                    return info
        raise AssertionError(f"plugin does not describe a connector named {self.name!r}")

    def secret_values(self) -> list[str]:
        return [v for v in self.credentials.values() if isinstance(v, str) and len(v) >= 6]

    def requests(self) -> int:
        assert self.fake is not None
        return self.fake.journal.count()


def _need(condition: object, what: str) -> None:
    if not condition:
        pytest.skip(f"harness provides no {what}")


# -- checks -----------------------------------------------------------------------------------


def check_connector_info(info: ConnectorInfo) -> None:
    """Metadata is complete and the settings schema is a usable JSON Schema."""
    assert isinstance(info, ConnectorInfo)
    assert info.display_name, "display_name is empty"
    assert info.version, "version is empty"
    assert info.capabilities, "a connector declares at least one capability"
    check_schema(info.settings_schema)
    properties = info.settings_schema.get("properties", {})
    for field in info.secret_fields:
        assert field in properties, f"secret field {field!r} missing from the schema"
        assert properties[field].get("writeOnly") is True, (
            f"secret field {field!r} must be marked writeOnly in the schema"
        )
    for field in info.settings_schema.get("required", []):
        assert field in properties, f"required field {field!r} is not a property"
    json.dumps(dict(info.settings_schema))  # the platform stores and serves it as JSON
    if Capability.WEBHOOKS in info.capabilities:
        assert info.webhook_deadline_s, "channels with webhooks declare their ack deadline"


def check_factory(harness: ContractHarness) -> None:
    """The factory builds a protocol-conforming instance and refuses what it should."""
    info = harness.info()
    check_connector_info(info)
    connector = harness.build()
    try:
        assert connector is not None, "factory returned None for its own connector name"
        assert connector.info == info
        # Only the declared capabilities' methods are required (see connectors.protocols).
        for method in (*info.methods(), "check_connection", "close"):
            assert callable(getattr(connector, method, None)), f"missing method {method}()"
    finally:
        connector.close()
    assert harness.build(name="no_such_connector_xyz") is None, (
        "factory must answer None for names it does not provide"
    )
    required = set(info.settings_schema.get("required", []))
    if required:
        with pytest.raises(ConfigurationError):
            harness.build(settings={}, credentials={})


def _drain(
    harness: ContractHarness, connector: Any, cursor: str | None, limit: int = 1000
) -> tuple[list[str], str | None, int]:
    assert harness.pull is not None
    ids: list[str] = []
    pages = 0
    while pages < limit:
        result = harness.pull(connector, cursor)
        pages += 1
        ids.extend(harness.item_id(item) for item in result.items)
        cursor = result.next_cursor
        if not result.has_more:
            return ids, cursor, pages
    raise AssertionError(f"pull did not finish within {limit} pages")


def check_pagination(harness: ContractHarness) -> None:
    """Every seeded item comes back exactly once over several pages."""
    _need(harness.pull and harness.seed_items and harness.page_items, "pull to paginate")
    assert harness.seed_items is not None
    expected = harness.seed_items(harness.page_items)
    connector = harness.build()
    try:
        ids, _, pages = _drain(harness, connector, None)
    finally:
        connector.close()
    assert pages >= 2, f"seeded {harness.page_items} items but the pull used one page"
    duplicates = {i for i in ids if ids.count(i) > 1}
    assert not duplicates, f"{len(duplicates)} items returned more than once in one pass"
    assert set(ids) == expected, (
        f"missing {len(expected - set(ids))}, unexpected {len(set(ids) - expected)}"
    )


def check_resume_from_cursor(harness: ContractHarness) -> None:
    """A fresh instance continuing from a stored mid-pass cursor completes the pass."""
    _need(harness.pull and harness.seed_items and harness.page_items, "pull to resume")
    assert harness.seed_items is not None and harness.pull is not None
    expected = harness.seed_items(harness.page_items)
    first = harness.build()
    try:
        page = harness.pull(first, None)
    finally:
        first.close()  # the worker dies here; only the stored cursor survives
    assert page.has_more, "need more than one page to test resuming"
    stored = json.loads(json.dumps(page.next_cursor))  # as persisted by the platform
    second = harness.build()
    try:
        rest, _, _ = _drain(harness, second, stored)
    finally:
        second.close()
    ids = [harness.item_id(item) for item in page.items] + rest
    assert len(ids) == len(set(ids)), "resumed pass repeated items"
    assert set(ids) == expected, "resumed pass lost items"


def check_retry_after(harness: ContractHarness, retry_after: float = 7.5) -> None:
    """After a 429 the next request waits out the announced time, and only one follows."""
    _need(harness.fake and harness.probe and harness.throttle_response, "429 fault")
    assert harness.fake and harness.probe and harness.throttle_response
    connector = harness.build()
    try:
        harness.fake.journal.clear()
        harness.fake.fail_next(harness.throttle_response(retry_after))
        harness.probe(connector)
    finally:
        connector.close()
    entries = harness.fake.journal.entries()
    assert [e.status for e in entries][:1] == [429]
    assert len(entries) == 2, f"expected one retry after the 429, got {len(entries) - 1}"
    waited = entries[1].at - entries[0].at
    assert waited >= retry_after - 1e-6, (
        f"retried after {waited:.3f}s, before Retry-After ({retry_after}s) expired"
    )


def check_transient_errors_retried(harness: ContractHarness, failures: int = 2) -> None:
    """5xx answers are retried with bounded, growing backoff until success."""
    _need(harness.fake and harness.probe, "probe against a fake")
    assert harness.fake and harness.probe
    connector = harness.build()
    try:
        harness.fake.journal.clear()
        harness.fake.fail_next(FakeResponse.json({"error": "unavailable"}, 503), times=failures)
        sleeps_before = len(harness.clock.sleeps)
        harness.probe(connector)
    finally:
        connector.close()
    statuses = harness.fake.journal.statuses()
    assert statuses[:failures] == [503] * failures
    assert len(statuses) == failures + 1 and 200 <= statuses[-1] < 300, statuses
    delays = [d for d in harness.clock.sleeps[sleeps_before:] if d > 0]
    assert len(delays) >= 1 and all(d <= 30 for d in delays), f"backoff delays {delays}"


def check_malformed_body_retried(harness: ContractHarness) -> None:
    """A truncated JSON body on a read is retried, not parsed into garbage."""
    _need(harness.fake and harness.probe, "probe against a fake")
    assert harness.fake and harness.probe
    connector = harness.build()
    try:
        harness.fake.journal.clear()
        harness.fake.fail_next(FakeResponse.malformed())
        harness.probe(connector)
    finally:
        connector.close()
    assert harness.requests() == 2


def check_permanent_error_not_retried(harness: ContractHarness) -> None:
    """A 4xx is raised as PermanentError after exactly one request."""
    _need(harness.fake and harness.probe, "probe against a fake")
    assert harness.fake and harness.probe
    connector = harness.build()
    try:
        harness.fake.journal.clear()
        harness.fake.fail_next(FakeResponse.json({"error": "invalid request"}, 400))
        with pytest.raises(PermanentError):
            harness.probe(connector)
    finally:
        connector.close()
    assert harness.requests() == 1


def check_auth_failure(harness: ContractHarness) -> None:
    """Revoked credentials: AuthError after one request, then no more requests at all."""
    _need(harness.fake and harness.probe and harness.revoke_credentials, "credential revocation")
    assert harness.fake and harness.probe and harness.revoke_credentials
    connector = harness.build()
    try:
        harness.revoke_credentials()
        harness.fake.journal.clear()
        with pytest.raises(AuthError):
            harness.probe(connector)
        assert harness.requests() == 1, "auth failures must not be retried"
        for _ in range(3):
            with pytest.raises(AuthError):
                harness.probe(connector)
        if harness.pull is not None:
            with pytest.raises(AuthError):
                harness.pull(connector, None)
    finally:
        connector.close()
    assert harness.requests() == 1, "the instance kept calling the API after an AuthError"


def check_webhooks(harness: ContractHarness) -> None:
    """Only genuine deliveries verify; they parse into a WebhookEvent."""
    info = harness.info()
    if Capability.WEBHOOKS not in info.capabilities:
        pytest.skip("connector declares no webhooks")
    _need(harness.webhook, "webhook case")
    case = harness.webhook
    assert case is not None
    connector = harness.build()
    try:
        headers = dict(case.sign(case.body, case.secret))
        connector.verify_webhook(headers=headers, body=case.body)
        event = connector.parse_webhook(headers=headers, body=case.body)
        assert event.event_id and event.topic
        upper = {k.upper(): v for k, v in headers.items()}
        connector.verify_webhook(headers=upper, body=case.body)  # header names are case-blind

        tampered = bytearray(case.body)
        tampered[len(tampered) // 2] ^= 0x01
        reserialised = json.dumps(json.loads(case.body), indent=2).encode()
        assert reserialised != case.body
        wrong = dict(case.sign(case.body, case.secret + "-wrong"))
        missing = {k: v for k, v in headers.items() if k.lower() != case.signature_header.lower()}
        for label, hdrs, body in (
            ("tampered body", headers, bytes(tampered)),
            ("re-serialised JSON", headers, reserialised),
            ("wrong secret", wrong, case.body),
            ("missing signature", missing, case.body),
            ("empty body", headers, b""),
        ):
            try:
                connector.verify_webhook(headers=hdrs, body=body)
            except ConnectorError as exc:
                assert type(exc).__name__ == "WebhookVerificationError", (label, exc)
            else:
                raise AssertionError(f"{label}: delivery verified but must not")
    finally:
        connector.close()


def check_idempotent_pushes(harness: ContractHarness) -> None:
    """The same push twice creates one remote object and returns the same id."""
    info = harness.info()
    checked = False
    connector = harness.build()
    try:
        if (
            Capability.FULFILLMENT_ORDER_PUSH in info.capabilities
            and harness.fulfillment_request is not None
        ):
            request = harness.fulfillment_request
            first = connector.push_fulfillment_order(request=request, idempotency_key="k-1")
            again = connector.push_fulfillment_order(request=request, idempotency_key="k-1")
            assert first.external_id == again.external_id
            if harness.count_created is not None:
                assert harness.count_created() == 1
            checked = True
        if Capability.LABELS_BUY in info.capabilities and harness.rate_request is not None:
            rates = connector.quote_rates(request=harness.rate_request)
            assert rates, "no rates quoted"
            amounts = [r.amount.amount for r in rates]
            assert amounts == sorted(amounts), "rates must come cheapest first"
            label = connector.buy_label(
                rate=rates[0], request=harness.rate_request, idempotency_key="label-1"
            )
            again = connector.buy_label(
                rate=rates[0], request=harness.rate_request, idempotency_key="label-1"
            )
            assert label == again
            checked = True
        if (
            Capability.FULFILLMENT_PUSH in info.capabilities
            and harness.channel_shipment is not None
        ):
            _check_channel_fulfillment_replay(harness, connector)
            checked = True
        if Capability.INBOUND_PUSH in info.capabilities and harness.inbound_shipment is not None:
            _check_inbound_replay(harness, connector)
            checked = True
    finally:
        connector.close()
    if not checked:
        pytest.skip("no idempotent push to check")


def _check_channel_fulfillment_replay(harness: ContractHarness, connector: Any) -> None:
    # The replay is what a redelivered task does after the first push's answer was lost:
    # a fresh instance, the same shipment. The channel must end up with one fulfillment.
    shipment = harness.channel_shipment
    assert shipment is not None
    first = connector.push_fulfillment(shipment=shipment)
    replayer = harness.build()
    try:
        again = replayer.push_fulfillment(shipment=shipment)
    finally:
        replayer.close()
    assert not first.already_existed, "the first push reported an existing fulfillment"
    assert again.already_existed, "a replayed shipment must come back with already_existed"
    assert again.external_id == first.external_id
    assert again.order_ref == first.order_ref == shipment.order_ref
    if harness.count_channel_fulfillments is not None:
        assert harness.count_channel_fulfillments() == 1


def _check_inbound_replay(harness: ContractHarness, connector: Any) -> None:
    shipment = harness.inbound_shipment
    assert shipment is not None
    first = connector.push_inbound(shipment=shipment, idempotency_key="asn-1")
    replayer = harness.build()
    try:
        again = replayer.push_inbound(shipment=shipment, idempotency_key="asn-1")
    finally:
        replayer.close()
    assert again.external_id == first.external_id
    assert again.reference == first.reference == shipment.reference
    if harness.count_inbound is not None:
        assert harness.count_inbound() == 1


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _record_texts(record: logging.LogRecord) -> Iterator[str]:
    yield record.getMessage()
    yield repr(record.args)
    if record.exc_info:
        yield logging.Formatter().formatException(record.exc_info)
    for key, value in vars(record).items():
        if key not in ("msg", "args", "exc_info"):
            yield f"{key}={value!r}"


def check_secrets_not_logged(harness: ContractHarness) -> None:
    """Run the failure paths with DEBUG logging; no credential value may appear anywhere."""
    secrets = harness.secret_values()
    _need(secrets, "credentials")
    capture = _Capture()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    messages: list[str] = []
    try:
        connector = harness.build()
        try:
            if harness.pull is not None:
                harness.pull(connector, None)
            if harness.fake is not None and harness.probe is not None:
                harness.fake.fail_next(FakeResponse.json({"error": "busy"}, 503))
                harness.probe(connector)
                # A vendor echoing the credential back must not get it into our errors.
                echo = ", ".join(secrets)
                harness.fake.fail_next(FakeResponse.json({"error": f"bad key {echo}"}, 422))
                try:
                    harness.probe(connector)
                except ConnectorError as exc:
                    messages.append(str(exc))
                if harness.revoke_credentials is not None:
                    harness.revoke_credentials()
                    try:
                        harness.probe(connector)
                    except ConnectorError as exc:
                        messages.append(str(exc))
            if harness.webhook is not None:
                try:
                    connector.verify_webhook(headers={}, body=harness.webhook.body)
                except ConnectorError as exc:
                    messages.append(str(exc))
        finally:
            connector.close()
    finally:
        root.removeHandler(capture)
        root.setLevel(previous)
    assert capture.records or harness.fake is None, "nothing was logged: is logging wired?"
    for text in [t for r in capture.records for t in _record_texts(r)] + messages:
        for secret in secrets:
            assert secret not in text, "a credential value reached a log record or error"


class ConnectorContract:
    """Contract tests; subclass as ``Test<Name>Contract`` and define a ``harness`` fixture."""

    def test_metadata_and_factory(self, harness: ContractHarness) -> None:
        check_factory(harness)

    def test_pagination_returns_every_item_once(self, harness: ContractHarness) -> None:
        check_pagination(harness)

    def test_resume_from_stored_cursor(self, harness: ContractHarness) -> None:
        check_resume_from_cursor(harness)

    def test_retry_after_is_honoured(self, harness: ContractHarness) -> None:
        check_retry_after(harness)

    def test_transient_errors_are_retried(self, harness: ContractHarness) -> None:
        check_transient_errors_retried(harness)

    def test_malformed_body_is_retried(self, harness: ContractHarness) -> None:
        check_malformed_body_retried(harness)

    def test_permanent_errors_are_not_retried(self, harness: ContractHarness) -> None:
        check_permanent_error_not_retried(harness)

    def test_auth_failure_without_retry_storm(self, harness: ContractHarness) -> None:
        check_auth_failure(harness)

    def test_webhook_verification(self, harness: ContractHarness) -> None:
        check_webhooks(harness)

    def test_pushes_are_idempotent(self, harness: ContractHarness) -> None:
        check_idempotent_pushes(harness)

    def test_secrets_never_logged(self, harness: ContractHarness) -> None:
        check_secrets_not_logged(harness)
