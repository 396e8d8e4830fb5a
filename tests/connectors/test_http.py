"""The SDK HTTP client against a real loopback server (RELIABILITY 15 and friends)."""

from __future__ import annotations

import logging
import random
from datetime import timedelta
from email.utils import format_datetime

import httpx
import pytest

from connectors.clock import SystemClock, VirtualClock
from connectors.errors import (
    AuthError,
    ConfigurationError,
    NotFoundError,
    PermanentError,
    RateLimited,
    TransientError,
)
from connectors.fakeapi import FakeResponse
from connectors.http import (
    EgressPolicy,
    HttpContext,
    Redactor,
    RetryPolicy,
    parse_link_header,
    parse_retry_after,
)
from tests.fakes.carrier import FakeCarrier

ADDRESS = {"to": {"postal_code": "11201", "country": "US"}}


def carrier_client(http: HttpContext, fake: FakeCarrier, **kwargs):
    return http.client(
        name="carrier",
        base_url=fake.url,
        headers={"Authorization": f"Bearer {fake.api_key}"},
        secrets=[fake.api_key],
        **kwargs,
    )


def test_503_three_times_then_200_takes_four_calls_with_exponential_backoff(
    clock: VirtualClock, carrier_fake: FakeCarrier
):
    # given a vendor failing three times; jitter pinned at its maximum
    http = HttpContext(clock=clock, egress=EgressPolicy.permissive(), uniform=lambda a, b: b)
    carrier_fake.fail_next(FakeResponse.json({"error": "unavailable"}, 503), times=3)
    with carrier_client(http, carrier_fake) as client:
        # when
        response = client.request_json("POST", "/v1/rates", json_body=ADDRESS, idempotent=True)
    # then
    assert response.data["rates"][0]["amount"] == "7.40"
    assert carrier_fake.journal.statuses() == [503, 503, 503, 200]
    assert clock.sleeps == [1.0, 2.0, 4.0]
    times = carrier_fake.journal.times()
    assert [round(b - a, 6) for a, b in zip(times, times[1:], strict=False)] == [1.0, 2.0, 4.0]


def test_backoff_uses_full_jitter_within_exponential_caps(
    clock: VirtualClock, carrier_fake: FakeCarrier
):
    http = HttpContext(
        clock=clock, egress=EgressPolicy.permissive(), uniform=random.Random(5).uniform
    )
    carrier_fake.fail_next(FakeResponse.json({}, 503), times=3)
    with carrier_client(http, carrier_fake) as client:
        client.request("GET", "/v1/ping")
    assert len(clock.sleeps) == 3
    for delay, cap in zip(clock.sleeps, (1, 2, 4), strict=True):
        assert 0 <= delay <= cap


def test_max_attempts_respected_then_transient_error(http: HttpContext, carrier_fake: FakeCarrier):
    carrier_fake.fail_next(FakeResponse.json({}, 502), times=10)
    client = carrier_client(http, carrier_fake, retry=RetryPolicy(max_attempts=4))
    with client, pytest.raises(TransientError) as caught:
        client.request("GET", "/v1/ping")
    assert caught.value.status == 502
    assert carrier_fake.journal.count() == 4


def test_400_invalid_address_is_not_retried(http: HttpContext, carrier_fake: FakeCarrier):
    with carrier_client(http, carrier_fake) as client, pytest.raises(PermanentError) as caught:
        client.request("POST", "/v1/rates", json_body={"to": {"country": "US"}})
    assert caught.value.status == 400
    assert "invalid address" in caught.value.detail
    assert carrier_fake.journal.count() == 1


def test_404_raises_not_found(http: HttpContext, carrier_fake: FakeCarrier):
    with carrier_client(http, carrier_fake) as client, pytest.raises(NotFoundError):
        client.request("GET", "/v1/nothing-here")
    assert carrier_fake.journal.count() == 1


def test_post_without_idempotency_is_not_retried_on_5xx(
    http: HttpContext, carrier_fake: FakeCarrier
):
    # A 503 to a plain POST may have been applied: repeating it could buy twice.
    carrier_fake.fail_next(FakeResponse.json({}, 503))
    with carrier_client(http, carrier_fake) as client, pytest.raises(TransientError):
        client.request("POST", "/v1/rates", json_body=ADDRESS)
    assert carrier_fake.journal.count() == 1


def test_429_is_retried_even_for_post_and_honours_retry_after(
    clock: VirtualClock, http: HttpContext, carrier_fake: FakeCarrier
):
    carrier_fake.fail_next(FakeResponse.json({}, 429, headers={"Retry-After": "12"}))
    with carrier_client(http, carrier_fake) as client:
        client.request("POST", "/v1/rates", json_body=ADDRESS)
    first, second = carrier_fake.journal.entries()
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at == pytest.approx(12.0)


def test_retry_after_as_http_date(
    clock: VirtualClock, http: HttpContext, carrier_fake: FakeCarrier
):
    when = format_datetime(clock.now() + timedelta(seconds=30), usegmt=True)
    carrier_fake.fail_next(FakeResponse.json({}, 503, headers={"Retry-After": when}))
    with carrier_client(http, carrier_fake) as client:
        client.request("GET", "/v1/ping")
    first, second = carrier_fake.journal.entries()
    assert second.at - first.at == pytest.approx(30.0)


def test_vendor_x_retry_after_header_is_honoured(http: HttpContext, carrier_fake: FakeCarrier):
    carrier_fake.fail_next(FakeResponse.json({}, 429, headers={"x-retry-after": "25"}))
    with carrier_client(http, carrier_fake) as client:
        client.request("GET", "/v1/ping")
    first, second = carrier_fake.journal.entries()
    assert second.at - first.at >= 25.0


def test_retry_after_longer_than_policy_is_handed_back(
    http: HttpContext, carrier_fake: FakeCarrier
):
    # Blocking a worker for ten minutes is the task scheduler's job, not the client's.
    carrier_fake.fail_next(FakeResponse.json({}, 429, headers={"Retry-After": "600"}))
    with carrier_client(http, carrier_fake) as client, pytest.raises(RateLimited) as caught:
        client.request("GET", "/v1/ping")
    assert caught.value.retry_after == 600
    assert carrier_fake.journal.count() == 1


def test_gate_holds_every_request_of_the_client_until_retry_after(
    clock: VirtualClock, http: HttpContext, carrier_fake: FakeCarrier
):
    carrier_fake.fail_next(FakeResponse.json({}, 429, headers={"Retry-After": "8"}))
    with carrier_client(http, carrier_fake) as client:
        client.request("GET", "/v1/ping")
        client.request("GET", "/v1/ping")
    times = carrier_fake.journal.times()
    assert times[1] - times[0] >= 8 and times[2] >= times[1]


def test_auth_failure_is_sticky_and_never_retried(http: HttpContext, carrier_fake: FakeCarrier):
    client = http.client(
        name="carrier", base_url=carrier_fake.url, headers={"Authorization": "Bearer wrong-key"}
    )
    with client:
        for _ in range(5):
            with pytest.raises(AuthError):
                client.request("GET", "/v1/ping")
    assert carrier_fake.journal.count() == 1


def test_malformed_json_is_retried_for_reads(http: HttpContext, carrier_fake: FakeCarrier):
    carrier_fake.fail_next(FakeResponse.malformed())
    with carrier_client(http, carrier_fake) as client:
        assert client.request_json("GET", "/v1/ping").data == {"ok": True}
    assert carrier_fake.journal.count() == 2


def test_malformed_json_on_a_plain_post_raises_transient(
    http: HttpContext, carrier_fake: FakeCarrier
):
    carrier_fake.fail_next(FakeResponse.malformed())
    with carrier_client(http, carrier_fake) as client, pytest.raises(TransientError):
        client.request_json("POST", "/v1/rates", json_body=ADDRESS)
    assert carrier_fake.journal.count() == 1


def test_read_timeout_is_retried_for_reads(carrier_fake: FakeCarrier):
    # Real clock: the timeout is a real socket timeout.
    carrier_fake.slow_seconds = 0.3
    http = HttpContext(
        clock=SystemClock(),
        egress=EgressPolicy.permissive(),
        timeout=httpx.Timeout(0.1),
        retry=RetryPolicy(max_attempts=2, base_delay=0.01),
    )
    with carrier_client(http, carrier_fake) as client, pytest.raises(TransientError):
        client.request("GET", "/v1/slow")
    assert carrier_fake.journal.count() == 2


def test_connection_refused_is_transient(http: HttpContext):
    # A port nothing listens on: nothing was sent, so even a POST may be retried.
    with FakeCarrier() as fake:
        url = fake.url
    client = http.client(
        name="carrier", base_url=url, retry=RetryPolicy(max_attempts=3, base_delay=0.01)
    )
    with client, pytest.raises(TransientError):
        client.request("POST", "/v1/rates", json_body=ADDRESS)
    assert len(http.clock.sleeps) == 2  # type: ignore[attr-defined]


def test_absolute_urls_on_another_origin_are_refused(http: HttpContext, carrier_fake: FakeCarrier):
    with carrier_client(http, carrier_fake) as client, pytest.raises(PermanentError):
        client.request("GET", "https://evil.example/steal?page_info=x")
    assert carrier_fake.journal.count() == 0


def test_egress_policy_refuses_plain_http_and_private_addresses():
    strict = HttpContext()
    with pytest.raises(ConfigurationError):
        strict.client(name="x", base_url="http://api.example.com")
    with pytest.raises(ConfigurationError):
        strict.client(name="x", base_url="https://127.0.0.1:8443")
    with pytest.raises(ConfigurationError):
        strict.client(name="x", base_url="https://169.254.169.254/latest/meta-data")
    with pytest.raises(ConfigurationError):
        strict.client(name="x", base_url="ftp://files.example.com")


def test_logs_never_contain_secrets(
    caplog: pytest.LogCaptureFixture, http: HttpContext, carrier_fake: FakeCarrier
):
    # given a secret in a header, in the query string and echoed back by the vendor
    caplog.set_level(logging.DEBUG)
    secret = carrier_fake.api_key
    carrier_fake.fail_next(FakeResponse.json({"error": f"key {secret} is throttled"}, 503))
    with carrier_client(http, carrier_fake) as client:
        client.request("GET", "/v1/ping", params={"api_key": secret, "page": "2"})
        carrier_fake.fail_next(FakeResponse.json({"error": f"bad key {secret}"}, 422))
        with pytest.raises(PermanentError) as caught:
            client.request("GET", "/v1/ping", params={"token": secret})
    # then
    assert secret not in str(caught.value)
    assert "[REDACTED]" in str(caught.value)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "GET" in text and "page=2" in text
    assert secret not in text
    assert "Bearer" not in text or "[REDACTED]" in text


def test_redactor_covers_headers_query_and_encoded_values():
    redactor = Redactor(["s3cr3t+value/x"])
    assert redactor.text("token s3cr3t+value/x") == "token [REDACTED]"
    assert "s3cr3t" not in redactor.url("https://h/p?q=s3cr3t%2Bvalue%2Fx&page=1")
    assert "page=1" in redactor.url("https://h/p?access_token=abc&page=1")
    assert "abc" not in redactor.url("https://h/p?access_token=abc&page=1")
    assert redactor.headers({"X-Shopify-Access-Token": "zzz", "Accept": "json"}) == {
        "X-Shopify-Access-Token": "[REDACTED]",
        "Accept": "json",
    }


def test_parse_link_header_returns_urls_verbatim():
    value = (
        "<https://shop.myshopify.com/admin/api/2024-10/orders.json?limit=250&page_info=abc>; "
        'rel="previous", '
        "<https://shop.myshopify.com/admin/api/2024-10/orders.json?limit=250&page_info=d%3De>; "
        'rel="next"'
    )
    links = parse_link_header(value)
    assert links["next"].endswith("page_info=d%3De")
    assert links["previous"].endswith("page_info=abc")
    assert parse_link_header(None) == {}


def test_parse_retry_after_variants(clock: VirtualClock):
    assert parse_retry_after({"retry-after": "2.0"}, clock.now) == 2.0
    assert parse_retry_after({"x-retry-after": "25"}, clock.now) == 25.0
    assert parse_retry_after({"retry-after": "soon"}, clock.now) is None
    assert parse_retry_after({}, clock.now) is None
    past = format_datetime(clock.now() - timedelta(seconds=5), usegmt=True)
    assert parse_retry_after({"retry-after": past}, clock.now) == 0.0
