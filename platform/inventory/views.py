"""Warehouse and stock pages: balances, warehouses, receipts, adjustments, status changes,
transfers, manual holds and cycle counts.

Every change goes through inventory.services, which locks, checks and logs; a StockError
comes back inline on the form (422 for a plain POST, 200 with the fragment for htmx).
Each POST is guarded by the permission for that kind of change, whatever page it came from.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import Lower
from django.forms import Form
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views import View
from django_htmx.http import HttpResponseClientRedirect

from accounts.roles import has_permission
from accounts.views import RoleRequiredMixin
from approvals.models import ApprovalRequest
from catalog.forms import Line, SKULines, apply_service_error
from catalog.models import SKU
from inventory import services
from inventory.forms import (
    SERVICE_ERROR_FIELDS,
    AdjustForm,
    ChangeStatusForm,
    HoldForm,
    ReceiveForm,
    StartCountForm,
    TransferForm,
    WarehouseForm,
)
from inventory.models import (
    CountStatus,
    CycleCount,
    Reservation,
    ReservationKind,
    ReservationStatus,
    StockBalance,
    StockMovement,
    StockStatus,
    Transfer,
    TransferStatus,
    Warehouse,
)
from inventory.services import (
    Reference,
    ReserveLine,
    StockError,
    create_warehouse,
    update_warehouse,
)

PAGE_SIZE = 50
# Holds people may release by hand; order-line reservations close with their order.
RELEASABLE = [ReservationKind.MANUAL_HOLD, ReservationKind.CHANNEL_BUFFER]
# A count sheet lists the SKUs stocked at the warehouse; beyond this, people type codes.
COUNT_SHEET_ROWS = 500


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def _querystring(request: HttpRequest) -> str:
    query = request.GET.copy()
    query.pop("page", None)
    return query.urlencode()


def _done(request: HttpRequest, url: str) -> HttpResponse:
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


def _error_status(request: HttpRequest) -> int:
    # htmx swaps only 2xx responses, so its error fragments come back as 200.
    return 200 if request.htmx else 422


def _with_available(balances: Iterable[StockBalance]) -> list[StockBalance]:
    """Attach available to promise to sellable rows (None for other statuses)."""
    rows = list(balances)
    for row in rows:
        row.available = (
            services.atp(row.quantity, row.reserved, row.warehouse.safety_buffer)
            if row.status == StockStatus.SELLABLE and row.warehouse.is_active
            else None
        )
    return rows


def _balances(params: QueryDict, *, warehouse: Warehouse | None = None) -> QuerySet:
    """Non-empty balance rows matching the stock-table filters (q, warehouse, status)."""
    rows = StockBalance.objects.exclude(quantity=0, reserved=0).select_related("sku", "warehouse")
    q = params.get("q", "").strip()
    if q:
        rows = rows.filter(sku__in=SKU.objects.search(q).values("pk"))
    if warehouse is not None:
        rows = rows.filter(warehouse=warehouse)
    elif _int(params.get("warehouse")):
        rows = rows.filter(warehouse_id=_int(params.get("warehouse")))
    if params.get("status") in StockStatus.values:
        rows = rows.filter(status=params["status"])
    return rows.order_by("sku__code", "warehouse__priority", "warehouse__code", "status")


class StockView(RoleRequiredMixin, View):
    """All stock: one row per SKU × warehouse × status that holds anything."""

    permission = "stock.view"
    template_name = "inventory/stock.html"

    def get(self, request: HttpRequest) -> HttpResponse:
        params = request.GET
        page = Paginator(_balances(params), PAGE_SIZE).get_page(params.get("page"))
        page.object_list = _with_available(page.object_list)
        totals = dict(
            StockBalance.objects.values_list("status")
            .annotate(units=Sum("quantity"))
            .values_list("status", "units")
        )
        context = {
            "page": page,
            "filters": {
                "q": params.get("q", "").strip(),
                "warehouse": _int(params.get("warehouse")),
                "status": params.get("status", ""),
            },
            "warehouses": Warehouse.objects.all(),
            "statuses": StockStatus.choices,
            "totals": [
                (value, label, totals.get(value) or 0) for value, label in StockStatus.choices
            ],
            "querystring": _querystring(request),
            "inventory_tab": "stock",
        }
        template = self.template_name + ("#results" if request.htmx else "")
        return render(request, template, context)


# --- Single-SKU stock actions ---------------------------------------------------------------


class StockActionView(RoleRequiredMixin, View):
    """A form that changes one SKU's stock at one warehouse, then shows that SKU's page."""

    permission = "stock.move"
    template_name = "inventory/stock_action.html"
    form_class: type[Form]
    title = ""
    intro = ""
    submit_label = ""

    def get(self, request: HttpRequest) -> HttpResponse:
        initial = {
            "sku": request.GET.get("sku", ""),
            "warehouse": _int(request.GET.get("warehouse")),
        }
        if request.GET.get("status") in StockStatus.values:
            initial["status"] = request.GET["status"]
        return self.render(self.form_class(initial=initial))

    def post(self, request: HttpRequest) -> HttpResponse:
        form = self.form_class(request.POST)
        if form.is_valid():
            try:
                message = self.perform(form.cleaned_data)
            except ValidationError as exc:
                apply_service_error(form, exc, SERVICE_ERROR_FIELDS)
            else:
                messages.success(request, message)
                sku = form.cleaned_data["sku"]
                return _done(request, reverse("catalog:sku_detail", args=[sku.pk]))
        return self.render(form, status=_error_status(request))

    def render(self, form: Form, status: int = 200) -> HttpResponse:
        template = self.template_name + ("#action-form" if self.request.htmx else "")
        context = {
            "form": form,
            "title": self.title,
            "intro": self.intro,
            "submit_label": self.submit_label,
            "action_url": self.request.path,
            "inventory_tab": "stock",
        }
        return render(self.request, template, context, status=status)

    def perform(self, data: dict) -> str:
        raise NotImplementedError


class ReceiveView(StockActionView):
    form_class = ReceiveForm
    title = "Receive stock"
    intro = (
        "Stock that arrived outside a purchase order: samples, returns to stock, opening counts."
    )
    submit_label = "Receive"

    def perform(self, data: dict) -> str:
        reference = Reference("document", data["reference"]) if data["reference"] else Reference()
        services.receive(
            sku=data["sku"],
            warehouse=data["warehouse"],
            quantity=data["quantity"],
            status=data["status"],
            reference=reference,
            note=data["note"],
        )
        return (
            f"Received {data['quantity']} × {data['sku'].code} at {data['warehouse'].code} "
            f"({StockStatus(data['status']).label.lower()})."
        )


class AdjustView(StockActionView):
    form_class = AdjustForm
    title = "Adjust stock"
    intro = "Correct a quantity with a reason: damage, loss, found units. It shows in the ledger."
    submit_label = "Adjust"

    def perform(self, data: dict) -> str:
        outcome = services.request_adjustment(
            sku=data["sku"],
            warehouse=data["warehouse"],
            delta=data["quantity"],
            reason_code=data["reason_code"],
            status=data["status"],
            note=data["note"],
            requested_by=self.request.user,
        )
        if outcome.pending:
            return (
                f"The adjustment of {data['sku'].code} at {data['warehouse'].code} by "
                f"{data['quantity']:+d} needs approval: it posts once approved. Follow it in "
                f"Approvals › My requests (request #{outcome.approval.pk})."
            )
        return f"Adjusted {data['sku'].code} at {data['warehouse'].code} by {data['quantity']:+d}."


class ChangeStatusView(StockActionView):
    form_class = ChangeStatusForm
    title = "Change stock status"
    intro = "Move units between sellable, damaged and quarantined at one warehouse."
    submit_label = "Change status"

    def perform(self, data: dict) -> str:
        services.change_status(
            sku=data["sku"],
            warehouse=data["warehouse"],
            quantity=data["quantity"],
            from_status=data["status"],
            to_status=data["to_status"],
            note=data["note"],
        )
        return (
            f"Moved {data['quantity']} × {data['sku'].code} at {data['warehouse'].code} from "
            f"{StockStatus(data['status']).label.lower()} to "
            f"{StockStatus(data['to_status']).label.lower()}."
        )


# --- Warehouses -----------------------------------------------------------------------------


class WarehouseListView(RoleRequiredMixin, View):
    permission = "stock.view"
    template_name = "inventory/warehouse_list.html"

    def get(self, request: HttpRequest) -> HttpResponse:
        show_inactive = request.GET.get("status") == "inactive"
        warehouses = (
            Warehouse.objects.filter(is_active=not show_inactive)
            .annotate(
                sellable=Sum("balances__quantity", filter=Q(balances__status=StockStatus.SELLABLE)),
                in_transit=Sum(
                    "balances__quantity", filter=Q(balances__status=StockStatus.IN_TRANSIT)
                ),
            )
            .order_by("priority", "code")
        )
        page = Paginator(warehouses, PAGE_SIZE).get_page(request.GET.get("page"))
        return render(
            request,
            self.template_name,
            {
                "page": page,
                "show_inactive": show_inactive,
                "querystring": _querystring(request),
                "inventory_tab": "warehouses",
            },
        )


class WarehouseDetailView(RoleRequiredMixin, View):
    permission = "stock.view"
    template_name = "inventory/warehouse_detail.html"

    def get(self, request: HttpRequest, pk: int) -> HttpResponse:
        warehouse = get_object_or_404(Warehouse, pk=pk)
        params = request.GET
        page = Paginator(_balances(params, warehouse=warehouse), PAGE_SIZE).get_page(
            params.get("page")
        )
        page.object_list = _with_available(page.object_list)
        context = {
            "warehouse": warehouse,
            "page": page,
            "filters": {"q": params.get("q", "").strip(), "status": params.get("status", "")},
            "statuses": StockStatus.choices,
            "querystring": _querystring(request),
            "inventory_tab": "warehouses",
        }
        if request.htmx:
            return render(request, self.template_name + "#results", context)
        transfers = (
            Transfer.objects.select_related("source", "destination")
            .annotate(units=Sum("lines__quantity"))
            .order_by("-id")
        )
        context.update(
            {
                "inbound": transfers.filter(destination=warehouse)[:10],
                "outbound": transfers.filter(source=warehouse)[:10],
                "open_counts": CycleCount.objects.filter(
                    warehouse=warehouse, status=CountStatus.OPEN
                ),
                "capabilities": [
                    label
                    for value, label in Warehouse._meta.get_field("capabilities").base_field.choices
                    if value in warehouse.capabilities
                ],
            }
        )
        return render(request, self.template_name, context)


class WarehouseFormView(RoleRequiredMixin, View):
    permission = "warehouses.edit"
    template_name = "inventory/warehouse_form.html"

    def get_object(self, pk: int | None) -> Warehouse | None:
        return get_object_or_404(Warehouse, pk=pk) if pk is not None else None

    def get(self, request: HttpRequest, pk: int | None = None) -> HttpResponse:
        warehouse = self.get_object(pk)
        initial = {} if warehouse else {"timezone": request.tenant.timezone}
        form = WarehouseForm(instance=warehouse, initial=initial)
        return render(request, self.template_name, {"form": form, "warehouse": warehouse})

    def post(self, request: HttpRequest, pk: int | None = None) -> HttpResponse:
        warehouse = self.get_object(pk)
        form = WarehouseForm(request.POST, instance=warehouse)
        if form.is_valid():
            fields = {name: form.cleaned_data[name] for name in form.Meta.fields}
            try:
                if warehouse is None:
                    saved = create_warehouse(**fields)
                else:
                    saved = update_warehouse(warehouse, **fields)
            except ValidationError as exc:
                apply_service_error(form, exc)
            else:
                messages.success(request, f"Warehouse {saved.code} saved.")
                return _done(request, reverse("inventory:warehouse_detail", args=[saved.pk]))
        return render(
            request,
            self.template_name,
            {"form": form, "warehouse": warehouse},
            status=_error_status(request),
        )


# --- Transfers ------------------------------------------------------------------------------


class TransferListView(RoleRequiredMixin, View):
    permission = "stock.view"
    template_name = "inventory/transfer_list.html"

    def get(self, request: HttpRequest) -> HttpResponse:
        status = request.GET.get("status", "")
        transfers = (
            Transfer.objects.select_related("source", "destination")
            .annotate(units=Sum("lines__quantity"), skus=Count("lines"))
            .order_by("-id")
        )
        if status in TransferStatus.values:
            transfers = transfers.filter(status=status)
        warehouse = _int(request.GET.get("warehouse"))
        if warehouse:
            transfers = transfers.filter(Q(source_id=warehouse) | Q(destination_id=warehouse))
        page = Paginator(transfers, PAGE_SIZE).get_page(request.GET.get("page"))
        return render(
            request,
            self.template_name,
            {
                "page": page,
                "filters": {"status": status, "warehouse": warehouse},
                "statuses": TransferStatus.choices,
                "warehouses": Warehouse.objects.all(),
                "querystring": _querystring(request),
                "inventory_tab": "transfers",
            },
        )


class TransferCreateView(RoleRequiredMixin, View):
    permission = "stock.move"
    template_name = "inventory/transfer_form.html"

    def get(self, request: HttpRequest) -> HttpResponse:
        if request.htmx and request.GET.get("row"):
            return render(request, "catalog/_sku_lines.html#line-row", {"line": Line()})
        form = TransferForm(initial={"source": _int(request.GET.get("source"))})
        code = request.GET.get("sku", "")
        lines = SKULines(initial=[Line(code=code)] if code else [], allow_bundles=False)
        return self.render(form, lines)

    def post(self, request: HttpRequest) -> HttpResponse:
        form = TransferForm(request.POST)
        lines = SKULines(request.POST, allow_bundles=False)
        # Validate both so every mistake shows at once.
        form_ok, lines_ok = form.is_valid(), lines.is_valid()
        if form_ok and lines_ok:
            data = form.cleaned_data
            try:
                transfer = services.ship_transfer(
                    source=data["source"],
                    destination=data["destination"],
                    lines=lines.cleaned,
                    note=data["note"],
                )
            except StockError as exc:
                _transfer_error(form, lines, exc)
            else:
                units = sum(q for _, q in lines.cleaned)
                messages.success(
                    request,
                    f"Transfer #{transfer.pk} shipped: {units} units in transit from "
                    f"{data['source'].code} to {data['destination'].code}.",
                )
                return _done(request, reverse("inventory:transfer_detail", args=[transfer.pk]))
        return self.render(form, lines, status=_error_status(request))

    def render(self, form: TransferForm, lines: SKULines, status: int = 200) -> HttpResponse:
        template = self.template_name + ("#transfer-form" if self.request.htmx else "")
        context = {"form": form, "lines": lines, "inventory_tab": "transfers"}
        return render(self.request, template, context, status=status)


def _transfer_error(form: TransferForm, lines: SKULines, exc: StockError) -> None:
    if exc.code == "insufficient_stock":
        lines.add_error(exc.details.get("sku"), exc.messages[0])
    elif exc.code == "same_warehouse":
        form.add_error("destination", exc.messages[0])
    else:
        lines.add_error(None, " ".join(exc.messages))


class TransferDetailView(RoleRequiredMixin, View):
    permission = "stock.view"
    template_name = "inventory/transfer_detail.html"

    def get(self, request: HttpRequest, pk: int) -> HttpResponse:
        return render(request, self.template_name, _transfer_context(pk))


def _transfer_context(pk: int, *, errors: list[str] | None = None, typed=None) -> dict:
    transfer = get_object_or_404(Transfer.objects.select_related("source", "destination"), pk=pk)
    lines = list(transfer.lines.select_related("sku").order_by("sku__code"))
    for line in lines:
        line.remaining = line.quantity - line.received_quantity
        line.typed = (typed or {}).get(line.sku_id, line.remaining)
    return {
        "transfer": transfer,
        "receiving": transfer.status == TransferStatus.IN_TRANSIT,
        "lines": lines,
        "errors": errors or [],
        "movements": StockMovement.objects.filter(
            reference_type="transfer", reference_id=str(transfer.pk)
        ).select_related("sku", "warehouse"),
        "inventory_tab": "transfers",
    }


class TransferReceiveView(RoleRequiredMixin, View):
    """Receive a transfer: every remaining unit, or the quantities typed per line."""

    permission = "stock.move"

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        transfer = get_object_or_404(Transfer, pk=pk)
        typed: dict[int, str] = {
            sku_id: request.POST[f"receive_{sku_id}"]
            for sku_id in transfer.lines.values_list("sku_id", flat=True)
            if f"receive_{sku_id}" in request.POST
        }
        errors: list[str] = []
        quantities: dict[int, int] = {}
        for sku_id, raw in typed.items():
            try:
                quantities[sku_id] = int(raw or 0)
            except ValueError:
                errors.append("Quantities received are whole numbers.")
                break
        if not errors:
            try:
                received = services.receive_transfer(
                    transfer=transfer, quantities=quantities or None
                )
            except StockError as exc:
                errors = exc.messages
            else:
                verb = (
                    "received" if received.status == TransferStatus.RECEIVED else "partly received"
                )
                messages.success(
                    request,
                    f"Transfer #{received.pk} {verb}: the stock is sellable at "
                    f"{received.destination.code}.",
                )
                return _done(request, reverse("inventory:transfer_detail", args=[transfer.pk]))
        context = _transfer_context(pk, errors=errors, typed=typed)
        return render(
            request, TransferDetailView.template_name, context, status=_error_status(request)
        )


# --- Manual holds ---------------------------------------------------------------------------


class HoldsView(RoleRequiredMixin, View):
    """Stock held back by hand (samples, QA) and channel buffers; create and release."""

    permission = "stock.view"
    template_name = "inventory/holds.html"

    def context(self, form: HoldForm | None = None) -> dict:
        holds = Reservation.objects.filter(
            status=ReservationStatus.ACTIVE, kind__in=RELEASABLE
        ).select_related("sku", "warehouse", "bundle_sku")
        can_reserve = has_permission(self.request.user, "stock.reserve")
        initial = {"sku": self.request.GET.get("sku", "")}
        return {
            "page": Paginator(holds, PAGE_SIZE).get_page(self.request.GET.get("page")),
            "form": form or (HoldForm(initial=initial) if can_reserve else None),
            "querystring": _querystring(self.request),
            "inventory_tab": "holds",
        }

    def get(self, request: HttpRequest) -> HttpResponse:
        return render(request, self.template_name, self.context())

    def post(self, request: HttpRequest) -> HttpResponse:
        self.require("stock.reserve")
        form = HoldForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            try:
                services.reserve(
                    lines=[ReserveLine(data["sku"], data["warehouse"], data["quantity"])],
                    kind=ReservationKind.MANUAL_HOLD,
                    # Each hold is its own reference, so two holds never merge.
                    reference=Reference("manual_hold", uuid.uuid4().hex),
                    expires_at=data["expires_at"],
                    note=data["note"],
                )
            except ValidationError as exc:
                apply_service_error(form, exc, SERVICE_ERROR_FIELDS)
            else:
                messages.success(
                    request,
                    f"Holding {data['quantity']} × {data['sku'].code} at {data['warehouse'].code}.",
                )
                return _done(request, reverse("inventory:holds"))
        return render(
            request, self.template_name, self.context(form), status=_error_status(request)
        )


class HoldReleaseView(RoleRequiredMixin, View):
    permission = "stock.reserve"

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        hold = get_object_or_404(Reservation, pk=pk, kind__in=RELEASABLE)
        released = services.release(ids=[hold.pk])
        if released:
            messages.success(request, f"Released {hold.quantity} × {hold.sku.code}.")
        else:
            messages.info(request, "That hold was already released.")
        back = request.POST.get("next", "")
        if not url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}):
            back = reverse("inventory:holds")
        return _done(request, back)


# --- Cycle counts ---------------------------------------------------------------------------


class CountsView(RoleRequiredMixin, View):
    permission = "stock.view"
    template_name = "inventory/count_list.html"

    def context(self, form: StartCountForm | None = None) -> dict:
        counts = (
            CycleCount.objects.select_related("warehouse")
            .annotate(
                skus=Count("lines"),
                off=Count(
                    "lines",
                    filter=~Q(lines__posted_variance=0) & Q(lines__posted_variance__isnull=False),
                ),
            )
            .order_by("-id")
        )
        can_count = has_permission(self.request.user, "stock.count")
        initial = {"warehouse": _int(self.request.GET.get("warehouse"))}
        return {
            "page": Paginator(counts, PAGE_SIZE).get_page(self.request.GET.get("page")),
            "form": form or (StartCountForm(initial=initial) if can_count else None),
            "querystring": _querystring(self.request),
            "inventory_tab": "counts",
        }

    def get(self, request: HttpRequest) -> HttpResponse:
        return render(request, self.template_name, self.context())

    def post(self, request: HttpRequest) -> HttpResponse:
        self.require("stock.count")
        form = StartCountForm(request.POST)
        if form.is_valid():
            count = services.start_count(
                warehouse=form.cleaned_data["warehouse"], note=form.cleaned_data["note"]
            )
            return _done(request, reverse("inventory:count_detail", args=[count.pk]))
        return render(
            request, self.template_name, self.context(form), status=_error_status(request)
        )


def _count_context(count: CycleCount, sheet: SKULines | None = None) -> dict:
    entered = list(count.lines.select_related("sku").order_by("sku__code"))
    sheet_full = False
    if sheet is None and count.status == CountStatus.OPEN:
        counted = {line.sku_id for line in entered}
        stocked = (
            StockBalance.objects.filter(
                warehouse=count.warehouse, status=StockStatus.SELLABLE, quantity__gt=0
            )
            .exclude(sku_id__in=counted)
            .select_related("sku")
            .order_by("sku__code")[:COUNT_SHEET_ROWS]
        )
        listed = [Line(code=b.sku.code, hint=str(b.quantity)) for b in stocked]
        sheet_full = len(listed) == COUNT_SHEET_ROWS
        sheet = SKULines(initial=listed, blank_rows=3, min_quantity=0)
    return {
        "count": count,
        "entered": entered,
        "sheet": sheet,
        "sheet_full": sheet_full,
        "sheet_limit": COUNT_SHEET_ROWS,
        "variance_total": sum(line.variance for line in entered),
        "inventory_tab": "counts",
        "approval": (
            ApprovalRequest.objects.for_subject(services.CYCLE_COUNT, count.pk)
            .order_by("-id")
            .first()
            if count.status != CountStatus.OPEN or count.resolution
            else None
        ),
    }


class CountDetailView(RoleRequiredMixin, View):
    """A count sheet: SKUs stocked here with what the system expects, and what was found."""

    permission = "stock.view"
    template_name = "inventory/count_detail.html"

    def get(self, request: HttpRequest, pk: int) -> HttpResponse:
        if request.htmx and request.GET.get("row"):
            return render(request, self.template_name + "#count-row", {"line": Line()})
        count = get_object_or_404(CycleCount.objects.select_related("warehouse"), pk=pk)
        return render(request, self.template_name, _count_context(count))


class CountEnterView(RoleRequiredMixin, View):
    """Save counted quantities (all rows or none); expected is the system quantity now."""

    permission = "stock.count"

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        count = get_object_or_404(CycleCount.objects.select_related("warehouse"), pk=pk)
        sheet = SKULines(
            request.POST, min_quantity=0, allow_bundles=False, skip_without_quantity=True
        )
        if sheet.is_valid():
            try:
                with transaction.atomic():
                    for sku, counted in sheet.cleaned:
                        services.enter_count(count=count, sku=sku, counted=counted)
            except StockError as exc:
                sheet.add_error(None, " ".join(exc.messages))
            else:
                messages.success(request, f"Saved {len(sheet.cleaned)} counted SKUs.")
                return _done(request, reverse("inventory:count_detail", args=[count.pk]))
        return self.render(count, sheet, _error_status(request))

    def render(self, count: CycleCount, sheet: SKULines, status: int) -> HttpResponse:
        template = CountDetailView.template_name + ("#count-sheet" if self.request.htmx else "")
        # Rows not typed into are still part of the sheet; show their expected quantity.
        codes = {line.code.lower() for line in sheet.lines if line.code}
        expected = dict(
            StockBalance.objects.filter(warehouse=count.warehouse, status=StockStatus.SELLABLE)
            .annotate(code=Lower("sku__code"))
            .filter(code__in=codes)
            .values_list("code", "quantity")
        )
        for line in sheet.lines:
            if line.code:
                line.hint = str(expected.get(line.code.lower(), 0))
        return render(self.request, template, _count_context(count, sheet), status=status)


class CountPostView(RoleRequiredMixin, View):
    """Correct sellable stock to the counted quantities."""

    permission = "stock.count"

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        count = get_object_or_404(CycleCount.objects.select_related("warehouse"), pk=pk)
        try:
            posted = services.post_count(count=count, requested_by=request.user)
        except StockError as exc:
            context = _count_context(count)
            context["post_errors"] = exc.messages
            template = CountDetailView.template_name + ("#count-sheet" if request.htmx else "")
            return render(request, template, context, status=_error_status(request))
        if posted.status == CountStatus.PENDING_APPROVAL:
            messages.info(
                request,
                f"Count #{posted.pk} is worth more than the brand's ceiling: it posts once "
                "approved in the approvals inbox.",
            )
            return _done(request, reverse("inventory:count_detail", args=[posted.pk]))
        corrections = posted.lines.exclude(posted_variance=0).count()
        messages.success(
            request,
            f"Count #{posted.pk} posted: {corrections} SKU{'s' if corrections != 1 else ''} "
            f"corrected at {posted.warehouse.code}.",
        )
        return _done(request, reverse("inventory:count_detail", args=[posted.pk]))
