"""A minimal parcel-carrier API fake, for the HTTP client's retry behaviour
(RELIABILITY 15: a flaky vendor answering 503 a few times, and 400 for an invalid address).

- ``POST /v1/rates`` validates the destination (400 ``invalid address`` when the postal code
  or country is missing) and answers rates;
- ``GET /v1/ping`` answers ``{"ok": true}``;
- ``GET /v1/slow`` answers after ``slow_seconds`` real seconds (client timeouts).

5xx bursts, 429s and malformed bodies come from :meth:`FakeAPI.fail_next`.
"""

from __future__ import annotations

from connectors.clock import Clock
from connectors.fakeapi import FakeAPI, FakeRequest, FakeResponse


class FakeCarrier(FakeAPI):
    def __init__(
        self,
        *,
        clock: Clock | None = None,
        api_key: str = "carrier_key_0123456789",
        slow_seconds: float = 0.5,
    ) -> None:
        super().__init__(clock=clock)
        self.api_key = api_key
        self.slow_seconds = slow_seconds
        self.route("GET", "/v1/ping", lambda r: FakeResponse.json({"ok": True}))
        self.route("GET", "/v1/slow", self._slow)
        self.route("POST", "/v1/rates", self._rates)

    def before_route(self, request: FakeRequest) -> FakeResponse | None:
        if request.header("authorization") != f"Bearer {self.api_key}":
            return FakeResponse.json({"error": "invalid api key"}, 401)
        return None

    def _slow(self, request: FakeRequest) -> FakeResponse:
        response = FakeResponse.json({"ok": True})
        response.delay = self.slow_seconds
        return response

    def _rates(self, request: FakeRequest) -> FakeResponse:
        body = request.json() or {}
        to = body.get("to") or {}
        if not to.get("postal_code") or not to.get("country"):
            return FakeResponse.json({"error": "invalid address", "field": "to"}, 400)
        return FakeResponse.json(
            {"rates": [{"service": "ground", "amount": "7.40", "currency": "USD"}]}
        )
