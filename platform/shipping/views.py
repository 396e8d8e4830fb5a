"""Shipping pages: shipments list and page (rates compared, why this carrier, label print,
tracking timeline, exceptions), carrier performance per lane, the exception queue and the
settings. Every change goes through shipping.services; a refusal comes back as a message
on the page it came from (422 for a form with field errors)."""

from __future__ import annotations

from decimal import Decimal

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views import View

from accounts.models import User
from accounts.roles import has_permission
from accounts.views import RoleRequiredMixin
from approvals.models import ApprovalRequest
from orders.models import FulfillmentOrder
from shipping import freight, services
from shipping.models import (
    BookingStatus,
    ExceptionStatus,
    FreightBooking,
    Label,
    LabelStatus,
    RateQuote,
    Shipment,
    ShipmentException,
    ShipmentState,
    ShippingSettings,
)


def _can(user) -> dict[str, bool]:
    return {
        "operate": has_permission(user, "shipping.operate"),
        "exceptions": has_permission(user, "shipping.exceptions"),
        "settings": has_permission(user, "shipping.settings"),
    }


def _message(request: HttpRequest, exc: ValidationError) -> None:
    messages.error(request, " ".join(exc.messages))


class ShipmentListView(RoleRequiredMixin, View):
    permission = "shipping.view"

    def get(self, request: HttpRequest) -> HttpResponse:
        qs = Shipment.objects.select_related("warehouse", "fulfillment__order")
        state = request.GET.get("state", "")
        ship_type = request.GET.get("ship_type", "")
        if state in ShipmentState.values:
            qs = qs.filter(state=state)
        if ship_type in ("parcel", "ltl"):
            qs = qs.filter(ship_type=ship_type)
        page = Paginator(qs, 50).get_page(request.GET.get("page"))
        ready = (
            FulfillmentOrder.objects.filter(status__in=["open", "sent"], shipments__isnull=True)
            .select_related("order", "warehouse")
            .order_by("-created_at")[:20]
        )
        return render(
            request,
            "shipping/list.html",
            {
                "page": page,
                "states": ShipmentState.choices,
                "state": state,
                "ship_type": ship_type,
                "ready": ready,
                "can": _can(request.user),
                "shipping_tab": "shipments",
                "querystring": f"state={state}&ship_type={ship_type}",
            },
        )


class CreateShipmentView(RoleRequiredMixin, View):
    """Start (and rate, for parcels) the shipment of a fulfillment order."""

    permission = "shipping.operate"

    def post(self, request: HttpRequest, fo_id: int) -> HttpResponse:
        fo = get_object_or_404(FulfillmentOrder, pk=fo_id)
        try:
            shipment = services.create_shipment(fo, actor=request.user)
            if shipment.state in services.RATEABLE and shipment.ship_type == "parcel":
                shipment = services.rate_shipment(shipment, actor=request.user)
            elif shipment.state in services.RATEABLE and freight.freight_connections():
                shipment = freight.quote_freight(shipment, actor=request.user)
        except ValidationError as exc:
            _message(request, exc)
            return redirect("shipping:list")
        return redirect("shipping:detail", shipment.pk)


class FulfillmentShipmentView(RoleRequiredMixin, View):
    """A fulfillment order's shipment page (and from there its label), for links from the
    orders pages: the live shipment, else the latest, else the list to create one."""

    permission = "shipping.view"

    def get(self, request: HttpRequest, fo_id: int) -> HttpResponse:
        fo = get_object_or_404(FulfillmentOrder, pk=fo_id)
        shipment = (
            fo.shipments.exclude(state__in=[ShipmentState.VOIDED, ShipmentState.RETURNED])
            .order_by("-id")
            .first()
            or fo.shipments.order_by("-id").first()
        )
        if shipment is None:
            messages.info(request, f"FO-{fo.pk} has no shipment yet: create it below.")
            return redirect("shipping:list")
        return redirect("shipping:detail", shipment.pk)


class ShipmentDetailView(RoleRequiredMixin, View):
    permission = "shipping.view"

    def get(self, request: HttpRequest, pk: int) -> HttpResponse:
        shipment = get_object_or_404(
            Shipment.objects.select_related("warehouse", "fulfillment__order", "chosen_quote"),
            pk=pk,
        )
        quotes = list(
            RateQuote.objects.filter(shipment=shipment, labels__isnull=True).select_related(
                "connection"
            )
        ) or list(shipment.quotes.select_related("connection"))
        scored = {row["ref"]: row for row in shipment.choice_table}
        rows = sorted(
            ({"quote": q, "scored": scored.get(str(q.pk), {})} for q in quotes),
            key=lambda r: (r["quote"].pk != shipment.chosen_quote_id, -(r["quote"].score or 0)),
        )
        approval = (
            ApprovalRequest.objects.for_subject(services.LABEL_SUBJECT, shipment.pk)
            .order_by("-id")
            .first()
        )
        outcome = getattr(shipment, "outcome", None) if hasattr(shipment, "outcome") else None
        return render(
            request,
            "shipping/detail.html",
            {
                "shipment": shipment,
                "rows": rows,
                "labels": shipment.labels.all(),
                "live_label": shipment.labels.filter(status=LabelStatus.PURCHASED).first(),
                "events": shipment.events.all(),
                "exceptions": shipment.exceptions.select_related("owner"),
                "approval": approval,
                "outcome": outcome,
                "can": _can(request.user),
                "rateable": shipment.state in services.RATEABLE and shipment.ship_type == "parcel",
                "threshold": services.label_threshold(),
                "freight_quotes": shipment.freight_quotes.filter(superseded=False),
                "booking": shipment.bookings.exclude(status=BookingStatus.FAILED).first(),
                "failed_bookings": shipment.bookings.filter(status=BookingStatus.FAILED),
                "freight_approval": ApprovalRequest.objects.for_subject(
                    freight.BOOKING_SUBJECT, shipment.pk
                )
                .order_by("-id")
                .first(),
                "shipping_tab": "shipments",
            },
        )


class ShipmentActionView(RoleRequiredMixin, View):
    """POST actions on one shipment: rate, choose, buy, void, rate-delivery."""

    permission = "shipping.view"

    def post(self, request: HttpRequest, pk: int, action: str) -> HttpResponse:
        shipment = get_object_or_404(Shipment, pk=pk)
        user = request.user
        try:
            if action == "rate":
                services.rate_shipment(shipment, actor=user)
                messages.success(request, "Rates refreshed.")
            elif action == "choose":
                quote = get_object_or_404(
                    RateQuote, pk=request.POST.get("quote"), shipment=shipment
                )
                services.choose_quote(shipment, quote, actor=user)
            elif action == "buy":
                result = services.request_label(
                    shipment, actor=user, label_format=request.POST.get("format", "pdf")
                )
                if result.state == "pending":
                    messages.info(
                        request,
                        "This label needs approval: it was sent to the approvals inbox "
                        f"(request #{result.approval.pk}).",
                    )
                elif result.label is not None and result.label.status == LabelStatus.FAILED:
                    messages.error(request, f"The carrier refused: {result.label.error}")
                else:
                    messages.success(request, "Label bought.")
            elif action == "void":
                label = get_object_or_404(Label, shipment=shipment, status=LabelStatus.PURCHASED)
                services.void_label(label, actor=user, reason=request.POST.get("reason", ""))
                messages.success(request, "Label voided.")
            elif action == "quote_freight":
                freight.quote_freight(shipment, actor=user)
                messages.success(request, "Freight quotes refreshed.")
            elif action == "book":
                result = freight.request_booking(shipment, actor=user)
                if result["state"] == "pending":
                    messages.info(
                        request,
                        "Quotes vary too much: the booking was sent to the approvals inbox "
                        f"(request #{result['approval'].pk}).",
                    )
                else:
                    messages.success(request, "Freight booked: print the bill of lading.")
            elif action == "pod":
                upload = request.FILES.get("document")
                final = (request.POST.get("final_total") or "").strip()
                freight.upload_pod(
                    shipment,
                    content=upload.read() if upload else b"",
                    filename=upload.name if upload else "",
                    signed_by=request.POST.get("signed_by", ""),
                    final_total=Decimal(final) if final else None,
                    actor=user,
                )
                messages.success(request, "Proof of delivery stored: the shipment is complete.")
            elif action == "rating":
                services.rate_delivery(shipment, int(request.POST.get("rating", "0")), actor=user)
                messages.success(request, "Thanks: the rating feeds the carrier's lane score.")
            else:
                raise Http404
        except (ValueError, TypeError, ArithmeticError):
            messages.error(request, "That value is not valid.")
        except ValidationError as exc:
            _message(request, exc)
        return redirect("shipping:detail", shipment.pk)


class LabelDocumentView(RoleRequiredMixin, View):
    """The label file: PDF shown inline (print from the browser), ZPL downloaded."""

    permission = "shipping.view"

    def get(self, request: HttpRequest, pk: int) -> HttpResponse:
        label = get_object_or_404(Label, pk=pk)
        if not label.document:
            raise Http404("This label has no document.")
        is_pdf = label.label_format == "pdf"
        response = FileResponse(
            label.document.open("rb"),
            as_attachment=not is_pdf,
            filename=f"label-{label.tracking_number or label.pk}.{label.label_format}",
            content_type="application/pdf" if is_pdf else "application/octet-stream",
        )
        return response


class FreightDocumentView(RoleRequiredMixin, View):
    """A booking's bill of lading or proof of delivery."""

    permission = "shipping.view"

    def get(self, request: HttpRequest, pk: int, kind: str) -> HttpResponse:
        booking = get_object_or_404(FreightBooking, pk=pk)
        document = booking.bol_document if kind == "bol" else booking.pod_document
        if kind not in ("bol", "pod") or not document:
            raise Http404("No such document.")
        is_pdf = document.name.endswith(".pdf")
        return FileResponse(
            document.open("rb"),
            filename=f"{kind}-{booking.bol_number}.{document.name.rsplit('.', 1)[-1]}",
            content_type="application/pdf" if is_pdf else "application/octet-stream",
            as_attachment=not is_pdf,
        )


class LanesView(RoleRequiredMixin, View):
    permission = "shipping.view"

    def get(self, request: HttpRequest) -> HttpResponse:
        lane = request.GET.get("lane", "").strip()
        try:
            asked = int(request.GET.get("weeks") or 0)
        except ValueError:
            asked = 0
        weeks = max(1, min(104, asked)) if asked else None
        rows = services.carrier_performance(weeks=weeks, lane=lane)
        cfg = services.load_settings()
        return render(
            request,
            "shipping/lanes.html",
            {
                "rows": rows,
                "lane": lane,
                "weeks": weeks or cfg.history_weeks,
                "min_history": cfg.min_history,
                "shipping_tab": "lanes",
            },
        )


class ExceptionQueueView(RoleRequiredMixin, View):
    permission = "shipping.view"

    def get(self, request: HttpRequest) -> HttpResponse:
        status = request.GET.get("status", "")
        qs = ShipmentException.objects.select_related("shipment", "owner")
        if status in ExceptionStatus.values:
            qs = qs.filter(status=status)
        else:
            qs = qs.exclude(status=ExceptionStatus.RESOLVED)
        page = Paginator(qs, 50).get_page(request.GET.get("page"))
        people = [
            u
            for u in User.objects.filter(is_active=True)
            if has_permission(u, "shipping.exceptions")
        ]
        return render(
            request,
            "shipping/exceptions.html",
            {
                "page": page,
                "status": status,
                "statuses": ExceptionStatus.choices,
                "people": people,
                "can": _can(request.user),
                "shipping_tab": "exceptions",
                "querystring": f"status={status}",
            },
        )


class ExceptionActionView(RoleRequiredMixin, View):
    permission = "shipping.exceptions"

    def post(self, request: HttpRequest, pk: int, action: str) -> HttpResponse:
        exc = get_object_or_404(ShipmentException, pk=pk)
        user = request.user
        back = request.POST.get("next") or reverse("shipping:exceptions")
        if not back.startswith("/"):
            back = reverse("shipping:exceptions")
        try:
            if action == "acknowledge":
                services.acknowledge_exception(exc, actor=user)
            elif action == "resolve":
                services.resolve_exception(
                    exc, actor=user, resolution=request.POST.get("resolution", "")
                )
            elif action == "assign":
                owner = User.objects.filter(pk=request.POST.get("owner") or 0).first()
                services.assign_exception(exc, owner, actor=user)
            elif action == "reship":
                replacement = services.propose_reship(exc, actor=user)
                messages.success(
                    request, f"Reship {replacement.reference} drafted: rate it and buy its label."
                )
                return redirect("shipping:detail", replacement.pk)
            else:
                raise Http404
        except ValidationError as exc_:
            _message(request, exc_)
        return redirect(back)


class SettingsForm(forms.ModelForm):
    class Meta:
        model = ShippingSettings
        fields = [
            "label_approval_threshold",
            "ltl_weight_kg",
            "ltl_cartons",
            "ltl_pallets",
            "wholesale_retail_ltl",
            "weight_price",
            "weight_reliability",
            "weight_transit",
            "history_weeks",
            "min_history",
            "no_scan_hours",
            "late_tolerance_pct",
            "escalate_after_hours",
            "sandbox_carrier",
        ]
        labels = {
            "weight_price": "Weight: price",
            "weight_reliability": "Weight: reliability",
            "weight_transit": "Weight: transit time",
            "history_weeks": "Lane history window (weeks)",
            "min_history": "Minimum deliveries for do-not-use",
        }

    channel_weights = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text='One channel per line: "name price reliability transit" ("faire 0.2 0.3 0.5").',
    )


def _channel_lines(weights: dict) -> str:
    return "\n".join(
        f"{name} {w.get('price')} {w.get('reliability')} {w.get('transit')}"
        for name, w in sorted(weights.items())
    )


def _parse_channel_lines(text: str) -> dict:
    out = {}
    for raw in text.splitlines():
        parts = raw.split()
        if not parts:
            continue
        if len(parts) != 4:
            raise ValidationError(
                {
                    "channel_weights": ValidationError(
                        f"“{raw}” needs a channel and three weights.", code="invalid"
                    )
                }
            )
        out[parts[0]] = {"price": parts[1], "reliability": parts[2], "transit": parts[3]}
    return out


class SettingsView(RoleRequiredMixin, View):
    permission = "shipping.settings"

    def get(self, request: HttpRequest) -> HttpResponse:
        cfg = services.load_settings()
        threshold = services.label_threshold()
        if threshold is not None:
            cfg.label_approval_threshold = threshold
        form = SettingsForm(
            instance=cfg, initial={"channel_weights": _channel_lines(cfg.channel_weights)}
        )
        return render(request, "shipping/settings.html", {"form": form, "shipping_tab": "settings"})

    def post(self, request: HttpRequest) -> HttpResponse:
        cfg = services.load_settings()
        form = SettingsForm(request.POST, instance=cfg)
        if form.is_valid():
            values = {k: form.cleaned_data[k] for k in SettingsForm.Meta.fields}
            try:
                values["channel_weights"] = _parse_channel_lines(
                    form.cleaned_data["channel_weights"]
                )
                services.update_settings(actor=request.user, **values)
            except PermissionDenied:
                raise
            except ValidationError as exc:
                if hasattr(exc, "error_dict"):
                    for field, errors in exc.error_dict.items():
                        form.add_error(field if field in form.fields else None, errors)
                else:
                    form.add_error(None, exc)
            else:
                messages.success(request, "Shipping settings saved.")
                return redirect("shipping:settings")
        return render(
            request,
            "shipping/settings.html",
            {"form": form, "shipping_tab": "settings"},
            status=422,
        )
