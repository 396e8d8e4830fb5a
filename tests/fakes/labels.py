"""Shared by the parcel-carrier fakes: printable label documents (a small real PDF made
with reportlab, a ZPL II text) as Shippo's and EasyPost's label URLs return, and faults
aimed at one endpoint."""

from __future__ import annotations

import dataclasses
import io
import re
from typing import Any

from reportlab.lib.units import inch
from reportlab.pdfgen import canvas

from connectors.fakeapi import FakeRequest, FakeResponse


def label_pdf(*, tracking_number: str, carrier: str, service: str) -> bytes:
    """A 4×6 in shipping label as a one-page PDF (deterministic bytes)."""
    buffer = io.BytesIO()
    page = canvas.Canvas(buffer, pagesize=(4 * inch, 6 * inch), invariant=1)
    page.setFont("Helvetica-Bold", 16)
    page.drawString(0.3 * inch, 5.4 * inch, carrier)
    page.setFont("Helvetica", 11)
    page.drawString(0.3 * inch, 5.1 * inch, service)
    page.drawString(0.3 * inch, 1.0 * inch, f"TRACKING # {tracking_number}")
    page.showPage()
    page.save()
    return buffer.getvalue()


def label_zpl(*, tracking_number: str, carrier: str, service: str) -> bytes:
    """The same label in ZPL II, as thermal printers take it."""
    return (
        "^XA\n"
        f"^FO40,40^A0N,40,40^FD{carrier}^FS\n"
        f"^FO40,100^A0N,28,28^FD{service}^FS\n"
        f"^FO40,900^BCN,120,Y,N,N^FD{tracking_number}^FS\n"
        "^XZ\n"
    ).encode("ascii")


class TargetedFaults:
    """Faults aimed at one endpoint, for carrier fakes (mixed in before ``FakeAPI``).

    - :meth:`fail_on` answers the next ``times`` requests matching (method, path regex)
      with ``response`` *without* applying them (a 5xx burst on one endpoint);
    - :meth:`lose_next_answer` applies the next matching request, then answers 504 — the
      carrier did the work but its answer never reached us.
    """

    def _fault_lists(self) -> tuple[list[Any], list[Any]]:
        if not hasattr(self, "_targeted"):
            self._targeted: list[Any] = []
            self._lost: list[Any] = []
        return self._targeted, self._lost

    def fail_on(self, method: str, path: str, response: FakeResponse, times: int = 1) -> None:
        with self.lock:  # type: ignore[attr-defined]
            targeted, _ = self._fault_lists()
            targeted.extend([(method.upper(), re.compile(path), response)] * times)

    def lose_next_answer(self, method: str, path: str) -> None:
        with self.lock:  # type: ignore[attr-defined]
            _, lost = self._fault_lists()
            lost.append((method.upper(), re.compile(path)))

    def handle(self, request: FakeRequest) -> tuple[FakeResponse, bool]:
        with self.lock:  # type: ignore[attr-defined]
            targeted, lost = self._fault_lists()
            for index, (method, pattern, response) in enumerate(targeted):
                if method == request.method and pattern.search(request.path):
                    del targeted[index]
                    return dataclasses.replace(response), True
        response, faulted = super().handle(request)  # type: ignore[misc]
        if faulted or response.status >= 300:
            return response, faulted
        with self.lock:  # type: ignore[attr-defined]
            for index, (method, pattern) in enumerate(lost):
                if method == request.method and pattern.search(request.path):
                    del lost[index]
                    gateway = FakeResponse(status=504, body=b"<html>504 Gateway Time-out</html>")
                    return gateway, False
        return response, faulted
