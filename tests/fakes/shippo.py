"""A fake of Shippo's REST API (https://api.goshippo.com), the parts Keel uses.

Documented behaviour reproduced (limits are constructor arguments):

- ``Authorization: ShippoToken <key>``; a wrong or revoked token answers 401
  ``{"detail": "Invalid token."}``;
- list endpoints (``GET /transactions``, ``GET /carrier_accounts``) are rate limited per
  token: ``list_limit`` requests in any ``list_window`` seconds, then 429 with
  ``Retry-After`` (whole seconds) and ``{"detail": "Request was throttled. ..."}``;
  single-object requests are not limited here;
- ``POST /shipments`` validates both addresses (400 naming the field, never retried) and
  answers the shipment with its rates (``object_id``, ``amount`` as a string, ``provider``,
  ``servicelevel.token``, ``estimated_days``, ``object_created``);
- ``POST /transactions`` buys a label from a rate. With ``"async": true`` it answers
  ``QUEUED`` and the label appears on a later ``GET /transactions/{id}`` (after
  ``queued_polls`` reads) as ``SUCCESS`` with ``tracking_number`` and ``label_url``;
  ``metadata`` (≤ 100 characters) is stored and listed back. Every purchase counts in
  :attr:`FakeShippo.labels_bought`;
- ``GET /transactions`` pages newest first with ``page``/``results`` and absolute
  ``next``/``previous`` URLs; ``object_created_gt`` filters;
- ``POST /refunds`` requests a refund: the transaction becomes ``REFUNDPENDING`` until
  :meth:`FakeShippo.settle_refunds` (``REFUNDED``, or ``REFUNDREJECTED`` for a label the
  carrier already scanned); a second refund of the same transaction is a 400;
- ``GET /tracks/{carrier}/{number}``: ``tracking_status`` and ``tracking_history`` with
  ``substatus`` codes (``address_issue``, ``package_damaged``, ``return_to_sender``...);
- ``track_updated`` webhooks signed with ``Shippo-Auth-Signature: t=<unix>,v1=<hex>``, the
  HMAC-SHA256 of ``"<t>.<raw body>"`` (:func:`sign_webhook`, :meth:`webhook_delivery`);
- label files on unauthenticated (pre-signed) URLs: a real PDF or ZPL text.

Faults aimed at one endpoint (:class:`~tests.fakes.labels.TargetedFaults`): ``fail_on``
answers without applying; ``lose_next_answer`` applies the request and then answers 504, as
when the carrier bought the label but the answer never reached us.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import json
import math
import re
import uuid
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from connectors.clock import Clock
from connectors.fakeapi import FakeAPI, FakeRequest, FakeResponse
from tests.fakes.labels import TargetedFaults, label_pdf, label_zpl

#: (provider, token, name, base, per kg, days)
SERVICES = (
    ("USPS", "usps_ground_advantage", "Ground Advantage", "5.10", "1.90", 5),
    ("USPS", "usps_priority", "Priority Mail", "8.70", "2.40", 2),
    ("UPS", "ups_ground", "Ground", "9.80", "1.30", 4),
    ("UPS", "ups_next_day_air", "Next Day Air", "31.50", "6.10", 1),
)
ADDRESS_FIELDS = ("street1", "city", "zip", "country")
LIST_PATHS = re.compile(r"^/(transactions|carrier_accounts)/?$")


def throttled(retry_after: float) -> FakeResponse:
    seconds = max(1, math.ceil(retry_after))
    return FakeResponse.json(
        {"detail": f"Request was throttled. Expected available in {seconds} seconds."},
        429,
        headers={"Retry-After": str(seconds)},
    )


def sign_webhook(body: bytes, secret: str, timestamp: int) -> str:
    digest = hmac.new(
        secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    return f"t={timestamp},v1={digest}"


class FakeShippo(TargetedFaults, FakeAPI):
    def __init__(
        self,
        *,
        clock: Clock | None = None,
        api_key: str = "shippo_test_5f0c3b1d9e7a4c2b8a6d",
        webhook_secret: str = "shippo_hmac_secret_2b7e151628aed2a6",
        list_limit: int = 50,
        list_window: float = 60.0,
        queued_polls: int = 2,
        max_results: int = 100,
    ) -> None:
        super().__init__(clock=clock)
        self.api_key = api_key
        self.webhook_secret = webhook_secret
        self.list_limit = list_limit
        self.list_window = list_window
        self.queued_polls = queued_polls
        self.max_results = max_results
        self.token_revoked = False
        self._admitted: collections.deque[float] = collections.deque()
        self.shipments: dict[str, dict[str, Any]] = {}
        self.rates: dict[str, dict[str, Any]] = {}
        self.transactions: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.tracks: dict[str, dict[str, Any]] = {}
        self.documents: dict[str, bytes] = {}
        self._pending_polls: dict[str, int] = {}
        self._refusals: list[str] = []
        self._serial = 0

        self.route("GET", r"/carrier_accounts/?", self._carrier_accounts)
        self.route("POST", r"/shipments/?", self._create_shipment)
        self.route("POST", r"/transactions/?", self._create_transaction)
        self.route("GET", r"/transactions/?", self._list_transactions)
        self.route("GET", r"/transactions/(?P<id>\w+)/?", self._get_transaction)
        self.route("POST", r"/refunds/?", self._create_refund)
        self.route("GET", r"/tracks/(?P<carrier>\w+)/(?P<number>\w+)/?", self._get_track)
        self.route("GET", r"/labels/(?P<id>\w+)\.(?P<ext>pdf|zpl)", self._label_file)

    # -- test controls --------------------------------------------------------------------------

    @property
    def labels_bought(self) -> int:
        """Labels purchased (transactions that did not end in ERROR)."""
        with self.lock:
            return sum(1 for t in self.transactions.values() if t["status"] != "ERROR")

    def revoke_token(self) -> None:
        self.token_revoked = True

    def refuse_next_purchase(self, text: str) -> None:
        """The carrier refuses the next label: its transaction ends in ``ERROR``."""
        with self.lock:
            self._refusals.append(text)

    def settle_refunds(self) -> None:
        """Shippo decides pending refunds: scanned labels are rejected, the rest refunded."""
        with self.lock:
            for refund in self.refunds.values():
                if refund["status"] != "QUEUED":
                    continue
                transaction = self.transactions[refund["transaction"]]
                track = self.tracks.get(transaction["tracking_number"])
                used = bool(track and len(track["tracking_history"]) > 1)
                refund["status"] = "ERROR" if used else "SUCCESS"
                transaction["status"] = "REFUNDREJECTED" if used else "REFUNDED"
                transaction["object_updated"] = self._now()

    def scan(
        self,
        tracking_number: str,
        status: str,
        details: str,
        *,
        substatus: str | None = None,
        city: str = "Louisville",
        state: str = "KY",
    ) -> dict[str, Any]:
        """The carrier scans a parcel; returns the track object as Shippo sends it."""
        with self.lock:
            track = self.tracks[tracking_number]
            event = self._status(status, details, substatus, city, state)
            track["tracking_history"].append(event)
            track["tracking_status"] = event
            return json.loads(json.dumps(track))

    def webhook_delivery(
        self, track: dict[str, Any], *, secret: str | None = None, timestamp: int | None = None
    ) -> tuple[dict[str, str], bytes]:
        """A ``track_updated`` delivery (headers, raw body) as Shippo POSTs it."""
        body = json.dumps(
            {"event": "track_updated", "test": True, "data": track}, separators=(",", ":")
        ).encode()
        stamp = int(self.clock.now().timestamp()) if timestamp is None else timestamp
        headers = {
            "Content-Type": "application/json",
            "Shippo-Auth-Signature": sign_webhook(body, secret or self.webhook_secret, stamp),
        }
        return headers, body

    def seed_labels(self, count: int) -> list[str]:
        """Purchased labels made outside Keel (for listing tests); their transaction ids."""
        ids = []
        for _ in range(count):
            shipment = self._shipment(
                {
                    "address_from": {"street1": "1 A St", "city": "X", "zip": "1", "country": "US"},
                    "address_to": {"street1": "2 B St", "city": "Y", "zip": "2", "country": "US"},
                    "parcels": [{"weight": "500", "mass_unit": "g"}],
                }
            )
            rate = shipment["rates"][0]
            transaction = self._transaction(rate, {"label_file_type": "PDF"}, queued=False)
            ids.append(transaction["object_id"])
            self.clock.sleep(1)
        return ids

    # -- cross-cutting --------------------------------------------------------------------------

    def before_route(self, request: FakeRequest) -> FakeResponse | None:
        if request.path.startswith("/labels/"):
            return None  # pre-signed file URLs carry no token
        if self.token_revoked or request.header("authorization") != f"ShippoToken {self.api_key}":
            return FakeResponse.json({"detail": "Invalid token."}, 401)
        if request.method == "GET" and LIST_PATHS.match(request.path):
            now = request.at
            while self._admitted and self._admitted[0] <= now - self.list_window:
                self._admitted.popleft()
            if len(self._admitted) >= self.list_limit:
                return throttled(self._admitted[0] + self.list_window - now)
            self._admitted.append(now)
        return None

    # -- helpers --------------------------------------------------------------------------------

    def _id(self) -> str:
        self._serial += 1
        return uuid.UUID(int=self._serial).hex

    def _now(self) -> str:
        return self.clock.now().isoformat().replace("+00:00", "Z")

    def _status(
        self, status: str, details: str, substatus: str | None, city: str, state: str
    ) -> dict[str, Any]:
        return {
            "object_id": self._id(),
            "object_created": self._now(),
            "status": status,
            "status_details": details,
            "status_date": self._now(),
            "substatus": {"code": substatus, "text": details, "action_required": True}
            if substatus
            else None,
            "location": {"city": city, "state": state, "zip": "", "country": "US"},
        }

    @staticmethod
    def _address_errors(body: dict[str, Any]) -> dict[str, Any]:
        errors: dict[str, Any] = {}
        for side in ("address_from", "address_to"):
            address = body.get(side)
            if not isinstance(address, dict):
                errors[side] = ["This field is required."]
                continue
            missing = [f for f in ADDRESS_FIELDS if not str(address.get(f) or "").strip()]
            if missing:
                errors[side] = {f: ["This field may not be blank."] for f in missing}
            elif str(address["zip"]).strip("0") == "":
                errors[side] = {"zip": ["The address could not be verified: unknown ZIP code."]}
        return errors

    def _shipment(self, body: dict[str, Any]) -> dict[str, Any]:
        grams = Decimal(0)
        for parcel in body.get("parcels") or []:
            weight = Decimal(str(parcel["weight"]))
            unit = parcel.get("mass_unit", "g")
            grams += weight * {"g": 1, "kg": 1000, "oz": Decimal("28.3495"), "lb": 453}[unit]
        kg = max(grams, Decimal(100)) / 1000
        shipment_id = self._id()
        created = self._now()
        rates = []
        for provider, token, name, base, per_kg, days in SERVICES:
            amount = (Decimal(base) + Decimal(per_kg) * kg).quantize(Decimal("0.01"))
            rate = {
                "object_id": self._id(),
                "object_created": created,
                "shipment": shipment_id,
                "amount": str(amount),
                "currency": "USD",
                "provider": provider,
                "servicelevel": {"name": name, "token": token},
                "estimated_days": days,
                "duration_terms": f"Delivery in {days} business days.",
                "attributes": [],
            }
            rates.append(rate)
            self.rates[rate["object_id"]] = rate
        rates.sort(key=lambda r: Decimal(r["amount"]))
        rates[0]["attributes"] = ["CHEAPEST"]
        shipment = {
            "object_id": shipment_id,
            "object_created": created,
            "status": "SUCCESS",
            "address_from": body["address_from"],
            "address_to": body["address_to"],
            "parcels": body.get("parcels") or [],
            "metadata": body.get("metadata", ""),
            "rates": rates,
            "messages": [],
        }
        self.shipments[shipment_id] = shipment
        return shipment

    def _transaction(
        self, rate: dict[str, Any], body: dict[str, Any], *, queued: bool
    ) -> dict[str, Any]:
        transaction = {
            "object_id": self._id(),
            "object_state": "VALID",
            "object_created": self._now(),
            "object_updated": self._now(),
            "status": "QUEUED",
            "rate": rate["object_id"],
            "metadata": body.get("metadata", ""),
            "label_file_type": body.get("label_file_type") or "PDF_4x6",
            "tracking_number": "",
            "tracking_url_provider": "",
            "label_url": "",
            "messages": [],
        }
        self.transactions[transaction["object_id"]] = transaction
        if queued:
            self._pending_polls[transaction["object_id"]] = self.queued_polls
        else:
            self._complete(transaction)
        return transaction

    def _complete(self, transaction: dict[str, Any]) -> None:
        rate = self.rates[transaction["rate"]]
        if self._refusals:
            text = self._refusals.pop(0)
            transaction.update(
                status="ERROR",
                object_updated=self._now(),
                messages=[{"source": rate["provider"], "code": "", "text": text}],
            )
            return
        number = f"9400{int(transaction['object_id'], 16):018d}"
        ext = "zpl" if transaction["label_file_type"].startswith("ZPL") else "pdf"
        make = label_zpl if ext == "zpl" else label_pdf
        self.documents[transaction["object_id"]] = make(
            tracking_number=number,
            carrier=rate["provider"],
            service=rate["servicelevel"]["name"],
        )
        transaction.update(
            status="SUCCESS",
            tracking_number=number,
            tracking_url_provider=f"https://tools.usps.com/go/TrackConfirmAction?tLabels={number}",
            label_url=f"{self.url}/labels/{transaction['object_id']}.{ext}",
            object_updated=self._now(),
        )
        pre = self._status("PRE_TRANSIT", "Shipping label created.", None, "", "")
        self.tracks[number] = {
            "carrier": rate["provider"].lower(),
            "tracking_number": number,
            "transaction": transaction["object_id"],
            "metadata": transaction["metadata"],
            "servicelevel": rate["servicelevel"],
            "eta": None,
            "tracking_status": pre,
            "tracking_history": [pre],
        }

    def _public(self, transaction: dict[str, Any], *, expand: bool) -> dict[str, Any]:
        """The transaction as served: ``rate`` is an id unless expanded (lists expand it)."""
        out = dict(transaction)
        if expand:
            rate = self.rates[transaction["rate"]]
            out["rate"] = {
                "object_id": rate["object_id"],
                "amount": rate["amount"],
                "currency": rate["currency"],
                "amount_local": rate["amount"],
                "currency_local": rate["currency"],
                "provider": rate["provider"],
                "servicelevel_name": rate["servicelevel"]["name"],
                "servicelevel_token": rate["servicelevel"]["token"],
            }
        return out

    def _page(self, request: FakeRequest, items: list[dict[str, Any]], path: str) -> FakeResponse:
        page = max(1, int(request.arg("page", "1") or 1))
        results = min(self.max_results, max(1, int(request.arg("results", "25") or 25)))
        start = (page - 1) * results
        chunk = items[start : start + results]

        def link(number: int) -> str:
            query = {k: v[0] for k, v in request.query.items()}
            query.update(page=str(number), results=str(results))
            return f"{self.url}{path}?{urlencode(query)}"

        return FakeResponse.json(
            {
                "next": link(page + 1) if start + results < len(items) else None,
                "previous": link(page - 1) if page > 1 else None,
                "results": chunk,
            }
        )

    # -- handlers -------------------------------------------------------------------------------

    def _carrier_accounts(self, request: FakeRequest) -> FakeResponse:
        accounts = [
            {"object_id": self._id(), "carrier": "usps", "active": True, "test": True},
            {"object_id": self._id(), "carrier": "ups", "active": True, "test": True},
        ]
        return self._page(request, accounts, "/carrier_accounts/")

    def _create_shipment(self, request: FakeRequest) -> FakeResponse:
        try:
            body = request.json() or {}
        except ValueError:
            return FakeResponse.json({"detail": "JSON parse error"}, 400)
        errors = self._address_errors(body)
        if not body.get("parcels"):
            errors["parcels"] = ["This field is required."]
        if errors:
            return FakeResponse.json(errors, 400)
        return FakeResponse.json(self._shipment(body), 201)

    def _create_transaction(self, request: FakeRequest) -> FakeResponse:
        body = request.json() or {}
        rate = self.rates.get(str(body.get("rate") or ""))
        if rate is None:
            return FakeResponse.json({"rate": ["Rate object does not exist."]}, 400)
        if len(str(body.get("metadata") or "")) > 100:
            return FakeResponse.json(
                {"metadata": ["Ensure this field has no more than 100 characters."]}, 400
            )
        transaction = self._transaction(rate, body, queued=bool(body.get("async", True)))
        return FakeResponse.json(transaction, 201)

    def _get_transaction(self, request: FakeRequest) -> FakeResponse:
        transaction = self.transactions.get(request.params["id"])
        if transaction is None:
            return FakeResponse.json({"detail": "Not found."}, 404)
        left = self._pending_polls.get(transaction["object_id"])
        if left is not None:
            if left <= 0:
                del self._pending_polls[transaction["object_id"]]
                self._complete(transaction)
            else:
                self._pending_polls[transaction["object_id"]] = left - 1
                transaction["status"] = "WAITING" if left == 1 else "QUEUED"
        expand = "rate" in (request.query.get("expand") or [])
        return FakeResponse.json(self._public(transaction, expand=expand))

    def _list_transactions(self, request: FakeRequest) -> FakeResponse:
        items = sorted(self.transactions.values(), key=lambda t: t["object_created"], reverse=True)
        after = request.arg("object_created_gt")
        if after:
            items = [t for t in items if t["object_created"] > after]
        status = request.arg("object_status")
        if status:
            items = [t for t in items if t["status"] == status]
        return self._page(request, [self._public(t, expand=True) for t in items], "/transactions/")

    def _create_refund(self, request: FakeRequest) -> FakeResponse:
        body = request.json() or {}
        transaction = self.transactions.get(str(body.get("transaction") or ""))
        if transaction is None:
            return FakeResponse.json({"transaction": ["Transaction does not exist."]}, 400)
        if transaction["status"] in ("REFUNDPENDING", "REFUNDED", "REFUNDREJECTED"):
            return FakeResponse.json(
                {"transaction": ["A refund for this transaction has already been requested."]},
                400,
            )
        if transaction["status"] != "SUCCESS":
            return FakeResponse.json({"transaction": ["Only purchased labels are refunded."]}, 400)
        refund = {
            "object_id": self._id(),
            "object_created": self._now(),
            "status": "QUEUED",
            "transaction": transaction["object_id"],
            "test": True,
        }
        self.refunds[refund["object_id"]] = refund
        transaction["status"] = "REFUNDPENDING"
        return FakeResponse.json(refund, 201)

    def _get_track(self, request: FakeRequest) -> FakeResponse:
        number = request.params["number"]
        track = self.tracks.get(number)
        if track is None:
            # Shippo answers unknown numbers with an empty UNKNOWN track, not a 404.
            return FakeResponse.json(
                {
                    "carrier": request.params["carrier"],
                    "tracking_number": number,
                    "tracking_status": None,
                    "tracking_history": [],
                }
            )
        return FakeResponse.json(track)

    def _label_file(self, request: FakeRequest) -> FakeResponse:
        document = self.documents.get(request.params["id"])
        if document is None:
            return FakeResponse(status=404, body=b"NoSuchKey")
        kind = "application/pdf" if request.params["ext"] == "pdf" else "application/zpl"
        return FakeResponse(body=document, headers={"Content-Type": kind})
