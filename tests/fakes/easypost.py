"""A fake of EasyPost's REST API (https://api.easypost.com/v2), the parts Keel uses.

Documented behaviour reproduced (limits are constructor arguments):

- HTTP Basic auth with the API key as user name and an empty password; a wrong or revoked
  key answers 401 ``{"error": {"code": "APIKEY.INACTIVE", ...}}``;
- errors are ``{"error": {"code", "message", "errors": [{"field", "message"}]}}``;
- list endpoints (``GET /v2/shipments``, ``/v2/addresses``, ``/v2/trackers``) are rate
  limited: ``list_limit`` requests in ``list_window`` seconds, then 429 ``RATE_LIMITED``
  with ``Retry-After``;
- ``POST /v2/shipments`` (``{"shipment": {to_address, from_address, parcel, reference,
  options}}``, inches and ounces) verifies both addresses — 422 ``ADDRESS.VERIFY.FAILURE``
  naming the field — and answers the shipment with ``rates`` (``rate`` as a string,
  ``delivery_days``, ``shipment_id``);
- ``POST /v2/shipments/{id}/buy`` (``{"rate": {"id"}}``) buys synchronously: the shipment
  gets ``postage_label``, ``tracking_code``, ``selected_rate`` and a ``tracker``. A shipment
  is bought at most once: buying it again is 422 ``SHIPMENT.POSTAGE.EXISTS``. Every purchase
  counts in :attr:`FakeEasyPost.labels_bought`;
- ``GET /v2/shipments?purchased=true&page_size=&before_id=`` pages newest first with
  ``has_more``;
- ``POST /v2/shipments/{id}/refund`` sets ``refund_status`` ``submitted``; EasyPost decides
  later (:meth:`FakeEasyPost.settle_refunds`: ``refunded``, or ``rejected`` once scanned);
  a second refund request is 422;
- ``POST /v2/trackers`` creates a tracker or returns the existing one for the code;
- ``tracker.updated`` Events delivered with ``X-Hmac-Signature: hmac-sha256-hex=<hex>``, the
  HMAC-SHA256 of the raw body keyed with the NFKD-normalised webhook secret;
- label files on unauthenticated URLs: a real PDF or ZPL text.

Faults aimed at one endpoint (:class:`~tests.fakes.labels.TargetedFaults`): ``fail_on``
answers without applying, ``lose_next_answer`` applies the request and then answers 504.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import hmac
import json
import math
import re
import unicodedata
from decimal import Decimal
from typing import Any

from connectors.clock import Clock
from connectors.fakeapi import FakeAPI, FakeRequest, FakeResponse
from tests.fakes.labels import TargetedFaults, label_pdf, label_zpl

#: (carrier, service, base, per lb, days)
SERVICES = (
    ("USPS", "GroundAdvantage", "4.95", "0.85", 5),
    ("USPS", "Priority", "8.10", "1.10", 2),
    ("USPS", "Express", "29.40", "2.60", 1),
    ("UPS", "Ground", "9.45", "0.70", 4),
)
ADDRESS_FIELDS = ("street1", "city", "zip", "country")
LIST_PATHS = re.compile(r"^/v2/(shipments|addresses|trackers)$")


def error(status: int, code: str, message: str, errors: list[dict[str, str]] | None = None):
    return FakeResponse.json(
        {"error": {"code": code, "message": message, "errors": errors or []}}, status
    )


def throttled(retry_after: float) -> FakeResponse:
    seconds = max(1, math.ceil(retry_after))
    response = error(429, "RATE_LIMITED", "You have exceeded the rate limit. Slow down.")
    response.headers["Retry-After"] = str(seconds)
    return response


def sign_webhook(body: bytes, secret: str) -> str:
    key = unicodedata.normalize("NFKD", secret).encode("utf-8")
    return "hmac-sha256-hex=" + hmac.new(key, body, hashlib.sha256).hexdigest()


class FakeEasyPost(TargetedFaults, FakeAPI):
    def __init__(
        self,
        *,
        clock: Clock | None = None,
        api_key: str = "EZTK4f1c2b3a5d6e7f8091a2b3c4d5e6f7",
        webhook_secret: str = "easypost-webhook-secret-8d2f",
        list_limit: int = 20,
        list_window: float = 60.0,
        max_page_size: int = 100,
    ) -> None:
        super().__init__(clock=clock)
        self.api_key = api_key
        self.webhook_secret = webhook_secret
        self.list_limit = list_limit
        self.list_window = list_window
        self.max_page_size = max_page_size
        self.key_revoked = False
        self._admitted: collections.deque[float] = collections.deque()
        self.shipments: dict[str, dict[str, Any]] = {}
        self.trackers: dict[str, dict[str, Any]] = {}
        self.documents: dict[str, bytes] = {}
        self.purchases = 0
        self._serial = 0

        self.route("GET", "/v2/addresses", self._addresses)
        self.route("POST", "/v2/shipments", self._create_shipment)
        self.route("GET", "/v2/shipments", self._list_shipments)
        self.route("GET", r"/v2/shipments/(?P<id>shp_\w+)", self._get_shipment)
        self.route("POST", r"/v2/shipments/(?P<id>shp_\w+)/buy", self._buy)
        self.route("POST", r"/v2/shipments/(?P<id>shp_\w+)/refund", self._refund)
        self.route("POST", "/v2/trackers", self._create_tracker)
        self.route("GET", r"/files/postage_label/(?P<id>\w+)\.(?P<ext>pdf|zpl)", self._file)

    # -- test controls --------------------------------------------------------------------------

    @property
    def labels_bought(self) -> int:
        with self.lock:
            return self.purchases

    def revoke_key(self) -> None:
        self.key_revoked = True

    def settle_refunds(self) -> None:
        with self.lock:
            for shipment in self.shipments.values():
                if shipment["refund_status"] != "submitted":
                    continue
                tracker = self.trackers[shipment["tracking_code"]]
                used = len(tracker["tracking_details"]) > 1
                shipment["refund_status"] = "rejected" if used else "refunded"
                shipment["updated_at"] = self._now()

    def scan(
        self,
        tracking_code: str,
        status: str,
        status_detail: str,
        message: str,
        *,
        city: str = "Memphis",
        state: str = "TN",
    ) -> dict[str, Any]:
        """The carrier scans a parcel; returns the Tracker as EasyPost sends it."""
        with self.lock:
            tracker = self.trackers[tracking_code]
            tracker["tracking_details"].append(
                self._detail(status, status_detail, message, city, state)
            )
            tracker["status"] = status
            tracker["status_detail"] = status_detail
            tracker["updated_at"] = self._now()
            return json.loads(json.dumps(tracker))

    def event(self, tracker: dict[str, Any], previous_status: str = "pre_transit") -> bytes:
        """A ``tracker.updated`` Event body, as EasyPost POSTs it."""
        with self.lock:
            event_id = self._id("evt")
        return json.dumps(
            {
                "object": "Event",
                "id": event_id,
                "mode": "test",
                "description": "tracker.updated",
                "previous_attributes": {"status": previous_status},
                "created_at": self._now(),
                "updated_at": self._now(),
                "result": tracker,
                "status": "pending",
                "pending_urls": ["https://keel.example/hooks/abc/"],
                "completed_urls": [],
            },
            separators=(",", ":"),
        ).encode()

    def webhook_delivery(
        self, body: bytes, *, secret: str | None = None
    ) -> tuple[dict[str, str], bytes]:
        headers = {
            "Content-Type": "application/json",
            "X-Hmac-Signature": sign_webhook(body, secret or self.webhook_secret),
        }
        return headers, body

    def seed_labels(self, count: int) -> list[str]:
        """Purchased shipments made outside Keel (for listing tests); their ids."""
        ids = []
        with self.lock:
            for _ in range(count):
                address = {"street1": "1 A St", "city": "X", "zip": "10001", "country": "US"}
                shipment = self._shipment(
                    {
                        "to_address": address,
                        "from_address": address,
                        "parcel": {"weight": 16.0},
                    }
                )
                self._purchase(shipment, shipment["rates"][0])
                ids.append(shipment["id"])
        return ids

    # -- cross-cutting --------------------------------------------------------------------------

    def before_route(self, request: FakeRequest) -> FakeResponse | None:
        if request.path.startswith("/files/"):
            return None
        expected = "Basic " + base64.b64encode(f"{self.api_key}:".encode()).decode()
        if self.key_revoked or request.header("authorization") != expected:
            return error(
                401,
                "APIKEY.INACTIVE",
                "This api key is no longer active. Please use a different api key.",
            )
        if request.method == "GET" and LIST_PATHS.match(request.path):
            now = request.at
            while self._admitted and self._admitted[0] <= now - self.list_window:
                self._admitted.popleft()
            if len(self._admitted) >= self.list_limit:
                return throttled(self._admitted[0] + self.list_window - now)
            self._admitted.append(now)
        return None

    # -- helpers --------------------------------------------------------------------------------

    def _id(self, prefix: str) -> str:
        self._serial += 1
        return f"{prefix}_{self._serial:032x}"

    def _now(self) -> str:
        return self.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")

    def _detail(
        self, status: str, status_detail: str, message: str, city: str, state: str
    ) -> dict[str, Any]:
        return {
            "object": "TrackingDetail",
            "message": message,
            "description": "",
            "status": status,
            "status_detail": status_detail,
            "datetime": self._now(),
            "source": "USPS",
            "carrier_code": "",
            "tracking_location": {
                "object": "TrackingLocation",
                "city": city,
                "state": state,
                "country": "US" if city else None,
                "zip": None,
            },
        }

    @staticmethod
    def _address_errors(body: dict[str, Any]) -> list[dict[str, str]]:
        errors = []
        for side in ("to_address", "from_address"):
            address = body.get(side) or {}
            for field in ADDRESS_FIELDS:
                if not str(address.get(field) or "").strip():
                    errors.append({"field": f"{side}.{field}", "message": "cannot be blank"})
            zip_code = str(address.get("zip") or "")
            if zip_code and zip_code.strip("0") == "":
                errors.append({"field": f"{side}.zip", "message": "Invalid ZIP Code."})
        return errors

    def _shipment(self, body: dict[str, Any]) -> dict[str, Any]:
        shipment_id = self._id("shp")
        ounces = Decimal(str(body["parcel"]["weight"]))
        pounds = max(Decimal(1), (ounces / 16).to_integral_value(rounding="ROUND_CEILING"))
        created = self._now()
        rates = []
        for carrier, service, base, per_lb, days in SERVICES:
            amount = (Decimal(base) + Decimal(per_lb) * pounds).quantize(Decimal("0.01"))
            rates.append(
                {
                    "id": self._id("rate"),
                    "object": "Rate",
                    "mode": "test",
                    "carrier": carrier,
                    "service": service,
                    "rate": str(amount),
                    "currency": "USD",
                    "retail_rate": str(amount + Decimal("1.25")),
                    "delivery_days": days,
                    "est_delivery_days": days,
                    "delivery_date_guaranteed": False,
                    "shipment_id": shipment_id,
                    "carrier_account_id": "ca_" + carrier.lower(),
                    "created_at": created,
                }
            )
        shipment = {
            "id": shipment_id,
            "object": "Shipment",
            "mode": "test",
            "reference": body.get("reference"),
            "to_address": {"id": self._id("adr"), **body["to_address"]},
            "from_address": {"id": self._id("adr"), **body["from_address"]},
            "parcel": {"id": self._id("prcl"), "object": "Parcel", **body["parcel"]},
            "options": body.get("options") or {},
            "rates": rates,
            "selected_rate": None,
            "postage_label": None,
            "tracking_code": None,
            "tracker": None,
            "refund_status": None,
            "status": "unknown",
            "messages": [],
            "created_at": created,
            "updated_at": created,
        }
        self.shipments[shipment_id] = shipment
        return shipment

    def _purchase(self, shipment: dict[str, Any], rate: dict[str, Any]) -> None:
        self.purchases += 1
        code = f"9405{int(shipment['id'][4:], 16):018d}"
        label_format = str(shipment["options"].get("label_format") or "PNG").upper()
        ext = "zpl" if label_format == "ZPL" else "pdf"
        make = label_zpl if ext == "zpl" else label_pdf
        label_id = self._id("pl")
        self.documents[label_id] = make(
            tracking_number=code, carrier=rate["carrier"], service=rate["service"]
        )
        url = f"{self.url}/files/postage_label/{label_id}.{ext}"
        tracker = {
            "id": self._id("trk"),
            "object": "Tracker",
            "mode": "test",
            "tracking_code": code,
            "status": "pre_transit",
            "status_detail": "label_created",
            "carrier": rate["carrier"],
            "shipment_id": shipment["id"],
            "public_url": f"https://track.easypost.com/{code}",
            "tracking_details": [
                self._detail("pre_transit", "label_created", "Shipping Label Created", "", "")
            ],
            "created_at": self._now(),
            "updated_at": self._now(),
        }
        self.trackers[code] = tracker
        shipment.update(
            selected_rate=rate,
            tracking_code=code,
            tracker=tracker,
            status="pre_transit",
            updated_at=self._now(),
            postage_label={
                "object": "PostageLabel",
                "id": label_id,
                "label_date": self._now(),
                "label_file_type": "application/zpl" if ext == "zpl" else "application/pdf",
                "label_size": "4x6",
                "label_resolution": 300,
                "label_url": url,
                "label_pdf_url": url if ext == "pdf" else None,
                "label_zpl_url": url if ext == "zpl" else None,
            },
        )

    # -- handlers -------------------------------------------------------------------------------

    def _addresses(self, request: FakeRequest) -> FakeResponse:
        return FakeResponse.json({"addresses": [], "has_more": False})

    def _create_shipment(self, request: FakeRequest) -> FakeResponse:
        try:
            body = (request.json() or {}).get("shipment") or {}
        except ValueError:
            return error(400, "BAD_REQUEST", "The request could not be understood.")
        errors = self._address_errors(body)
        if errors:
            return error(422, "ADDRESS.VERIFY.FAILURE", "Unable to verify address.", errors)
        weight = (body.get("parcel") or {}).get("weight")
        if not weight or float(weight) <= 0:
            return error(
                422,
                "PARCEL.INVALID",
                "Parcel weight must be positive.",
                [{"field": "parcel.weight", "message": "must be greater than 0"}],
            )
        return FakeResponse.json(self._shipment(body), 201)

    def _list_shipments(self, request: FakeRequest) -> FakeResponse:
        size = min(self.max_page_size, max(1, int(request.arg("page_size", "20") or 20)))
        items = sorted(self.shipments.values(), key=lambda s: s["id"], reverse=True)
        if request.arg("purchased") == "true":
            items = [s for s in items if s["postage_label"]]
        before = request.arg("before_id")
        if before:
            items = [s for s in items if s["id"] < before]
        return FakeResponse.json({"shipments": items[:size], "has_more": len(items) > size})

    def _get_shipment(self, request: FakeRequest) -> FakeResponse:
        shipment = self.shipments.get(request.params["id"])
        if shipment is None:
            return error(404, "SHIPMENT.NOT_FOUND", "The requested resource could not be found.")
        return FakeResponse.json(shipment)

    def _buy(self, request: FakeRequest) -> FakeResponse:
        shipment = self.shipments.get(request.params["id"])
        if shipment is None:
            return error(404, "SHIPMENT.NOT_FOUND", "The requested resource could not be found.")
        if shipment["postage_label"]:
            return error(422, "SHIPMENT.POSTAGE.EXISTS", "Shipment already has postage.")
        rate_id = ((request.json() or {}).get("rate") or {}).get("id")
        rate = next((r for r in shipment["rates"] if r["id"] == rate_id), None)
        if rate is None:
            return error(422, "SHIPMENT.RATE.INVALID", "Rate does not belong to this shipment.")
        self._purchase(shipment, rate)
        return FakeResponse.json(shipment)

    def _refund(self, request: FakeRequest) -> FakeResponse:
        shipment = self.shipments.get(request.params["id"])
        if shipment is None:
            return error(404, "SHIPMENT.NOT_FOUND", "The requested resource could not be found.")
        if not shipment["postage_label"]:
            return error(422, "SHIPMENT.REFUND.INVALID", "Shipment has no postage to refund.")
        if shipment["refund_status"]:
            return error(422, "SHIPMENT.REFUND.EXISTS", "A refund was already requested.")
        shipment["refund_status"] = "submitted"
        shipment["updated_at"] = self._now()
        return FakeResponse.json(shipment)

    def _create_tracker(self, request: FakeRequest) -> FakeResponse:
        body = (request.json() or {}).get("tracker") or {}
        code = str(body.get("tracking_code") or "")
        if not code:
            return error(
                422,
                "TRACKER.INVALID",
                "Invalid tracker.",
                [{"field": "tracking_code", "message": "cannot be blank"}],
            )
        tracker = self.trackers.get(code)
        if tracker is None:
            tracker = {
                "id": self._id("trk"),
                "object": "Tracker",
                "mode": "test",
                "tracking_code": code,
                "status": "unknown",
                "status_detail": "unknown",
                "carrier": body.get("carrier") or "USPS",
                "tracking_details": [],
                "created_at": self._now(),
                "updated_at": self._now(),
            }
            self.trackers[code] = tracker
        return FakeResponse.json(tracker)

    def _file(self, request: FakeRequest) -> FakeResponse:
        document = self.documents.get(request.params["id"])
        if document is None:
            return FakeResponse(status=404, body=b"NoSuchKey")
        kind = "application/pdf" if request.params["ext"] == "pdf" else "application/zpl"
        return FakeResponse(body=document, headers={"Content-Type": kind})
