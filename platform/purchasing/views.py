"""Purchasing pages: suppliers (with their SKUs and scorecards), purchase orders (list,
create, edit lines, detail with approval status and timeline, receive), PO PDFs.

Every change goes through purchasing.services; a service error comes back inline on the
form (422 for a plain POST, 200 with the fragment for htmx). Each POST checks the
permission for that kind of change, whatever page it came from.
"""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Count, F, Q, Sum
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views import View
from django_htmx.http import HttpResponseClientRedirect

from accounts.roles import has_permission
from accounts.views import RoleRequiredMixin
from approvals.rules import money
from audit.models import ActivityEntry
from catalog.forms import Line, SKULines, apply_service_error
from purchasing import services, stats
from purchasing.documents import po_pdf
from purchasing.forms import (
    PurchaseOrderForm,
    ReasonForm,
    RescheduleForm,
    SupplierForm,
    SupplierSKUForm,
)
from purchasing.models import (
    POState,
    PurchaseOrder,
    ReceiptReason,
    Supplier,
    SupplierSKU,
)

PAGE_SIZE = 50
BADGES = {
    POState.DRAFT: "muted",
    POState.PENDING_APPROVAL: "warn",
    POState.APPROVED: "",
    POState.SENT: "",
    POState.PARTIALLY_RECEIVED: "warn",
    POState.RECEIVED: "ok",
    POState.CLOSED: "muted",
    POState.CANCELLED: "bad",
}
WINDOWS = (90, 365)


def _done(request: HttpRequest, url: str) -> HttpResponse:
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


def _error_status(request: HttpRequest) -> int:
    # htmx swaps only 2xx responses, so its error fragments come back as 200.
    return 200 if request.htmx else 422


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def _orders():
    return (
        PurchaseOrder.objects.select_related("supplier", "warehouse")
        .annotate(
            total_value=Sum(F("lines__quantity") * F("lines__unit_cost")),
            line_count=Count("lines"),
        )
        .order_by("-id")
    )


def _with_badges(orders) -> list[PurchaseOrder]:
    rows = list(orders)
    for po in rows:
        po.badge = BADGES.get(po.state, "")
    return rows


# --- Suppliers -----------------------------------------------------------------------------


class SupplierListView(RoleRequiredMixin, View):
    permission = "purchasing.view"

    def get(self, request: HttpRequest) -> HttpResponse:
        q = request.GET.get("q", "").strip()
        suppliers = Supplier.objects.annotate(
            sku_count=Count("skus", distinct=True),
            open_orders=Count("orders", filter=Q(orders__state__in=services.OPEN), distinct=True),
        ).order_by("name", "code")
        if q:
            suppliers = suppliers.filter(Q(code__icontains=q) | Q(name__icontains=q))
        page = Paginator(suppliers, PAGE_SIZE).get_page(request.GET.get("page"))
        return render(
            request,
            "purchasing/supplier_list.html",
            {"page": page, "q": q, "purchasing_tab": "suppliers", "querystring": f"q={q}"},
        )


class SupplierFormView(RoleRequiredMixin, View):
    permission = "suppliers.edit"

    def get(self, request: HttpRequest, pk: int | None = None) -> HttpResponse:
        supplier = get_object_or_404(Supplier, pk=pk) if pk else None
        return self.render(SupplierForm(instance=supplier), supplier)

    def post(self, request: HttpRequest, pk: int | None = None) -> HttpResponse:
        supplier = get_object_or_404(Supplier, pk=pk) if pk else None
        # The form only validates (on this loaded copy); the service loads, locks and saves
        # the row itself.
        form = SupplierForm(request.POST, instance=supplier or Supplier())
        if form.is_valid():
            fields = {name: form.cleaned_data[name] for name in form.Meta.fields}
            try:
                if supplier is None:
                    supplier = services.create_supplier(actor=request.user, **fields)
                    messages.success(request, f"Supplier {supplier.code} added.")
                else:
                    supplier = services.update_supplier(supplier, actor=request.user, **fields)
                    messages.success(request, f"Supplier {supplier.code} saved.")
            except ValidationError as exc:
                apply_service_error(form, exc)
            else:
                return _done(request, reverse("purchasing:supplier_detail", args=[supplier.pk]))
        return self.render(form, supplier, status=_error_status(request))

    def render(self, form, supplier, status: int = 200) -> HttpResponse:
        return render(
            self.request,
            "purchasing/supplier_form.html",
            {"form": form, "supplier": supplier, "purchasing_tab": "suppliers"},
            status=status,
        )


def _scorecard(supplier: Supplier) -> list[dict]:
    out = []
    for days in WINDOWS:
        summary = stats.supplier_summary(supplier.pk, window_days=days)
        out.append({"days": days, "stats": summary})
    return out


class SupplierDetailView(RoleRequiredMixin, View):
    permission = "purchasing.view"

    def get(self, request: HttpRequest, pk: int) -> HttpResponse:
        supplier = get_object_or_404(Supplier, pk=pk)
        return self.render(supplier, SupplierSKUForm(initial={"currency": supplier.currency}))

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        """Add or update one of the supplier's SKUs."""
        self.require("suppliers.edit")
        supplier = get_object_or_404(Supplier, pk=pk)
        form = SupplierSKUForm(request.POST)
        if form.is_valid():
            data = dict(form.cleaned_data)
            sku = data.pop("sku")
            try:
                services.save_supplier_sku(supplier=supplier, sku=sku, actor=request.user, **data)
            except ValidationError as exc:
                apply_service_error(form, exc)
            else:
                messages.success(request, f"{sku.code} saved for {supplier.code}.")
                return _done(request, reverse("purchasing:supplier_detail", args=[supplier.pk]))
        return self.render(supplier, form, status=_error_status(request))

    def render(self, supplier: Supplier, form, status: int = 200) -> HttpResponse:
        skus = list(SupplierSKU.objects.filter(supplier=supplier).select_related("sku"))
        by_sku = stats.lead_time_stats(supplier_ids=[supplier.pk])
        for row in skus:
            row.stats = by_sku.get((supplier.pk, row.sku_id))
        orders = _with_badges(_orders().filter(supplier=supplier)[:10])
        return render(
            self.request,
            "purchasing/supplier_detail.html",
            {
                "supplier": supplier,
                "skus": skus,
                "form": form,
                "scorecard": _scorecard(supplier),
                "orders": orders,
                "purchasing_tab": "suppliers",
            },
            status=status,
        )


class SupplierSKUDeleteView(RoleRequiredMixin, View):
    permission = "suppliers.edit"

    def post(self, request: HttpRequest, pk: int, row: int) -> HttpResponse:
        item = get_object_or_404(SupplierSKU, pk=row, supplier_id=pk)
        services.delete_supplier_sku(item, actor=request.user)
        messages.success(request, f"{item.sku.code} removed from {item.supplier.code}.")
        return _done(request, reverse("purchasing:supplier_detail", args=[pk]))


class ScorecardListView(RoleRequiredMixin, View):
    permission = "purchasing.view"

    def get(self, request: HttpRequest) -> HttpResponse:
        days = 90 if request.GET.get("window") == "90" else 365
        cards = stats.scorecards(window_days=days)
        rows = []
        for supplier in Supplier.objects.all():
            rows.append({"supplier": supplier, "stats": cards.get(supplier.pk)})
        rows.sort(key=lambda r: (r["stats"] is None, -(r["stats"].otif_rate if r["stats"] else 0)))
        return render(
            request,
            "purchasing/scorecards.html",
            {"rows": rows, "days": days, "purchasing_tab": "scorecards"},
        )


# --- Purchase orders -------------------------------------------------------------------------


class POListView(RoleRequiredMixin, View):
    permission = "purchasing.view"

    def get(self, request: HttpRequest) -> HttpResponse:
        params = request.GET
        state = params.get("state", "")
        supplier = _int(params.get("supplier"))
        orders = _orders()
        if state in POState.values:
            orders = orders.filter(state=state)
        if supplier:
            orders = orders.filter(supplier_id=supplier)
        page = Paginator(orders, PAGE_SIZE).get_page(params.get("page"))
        page.object_list = _with_badges(page.object_list)
        return render(
            request,
            "purchasing/po_list.html",
            {
                "page": page,
                "states": POState.choices,
                "suppliers": Supplier.objects.all(),
                "filters": {"state": state, "supplier": supplier},
                "querystring": f"state={state}&supplier={supplier or ''}",
                "purchasing_tab": "orders",
            },
        )


def _lines_from(po: PurchaseOrder) -> list[Line]:
    return [
        Line(code=line.sku.code, quantity=str(line.quantity))
        for line in po.lines.select_related("sku")
    ]


def _service_error(form, lines: SKULines, exc: ValidationError) -> None:
    if hasattr(exc, "error_dict"):
        for name, errors in exc.error_dict.items():
            if name in form.fields:
                form.add_error(name, errors)
            else:
                for error in errors:
                    lines.add_error(None, " ".join(ValidationError(error).messages))
        return
    lines.add_error(None, " ".join(exc.messages))


class POCreateView(RoleRequiredMixin, View):
    permission = "purchasing.draft"
    template_name = "purchasing/po_form.html"

    def get(self, request: HttpRequest) -> HttpResponse:
        if request.htmx and request.GET.get("row"):
            return render(request, "catalog/_sku_lines.html#line-row", {"line": Line()})
        form = PurchaseOrderForm(initial={"supplier": _int(request.GET.get("supplier"))})
        code = request.GET.get("sku", "")
        lines = SKULines(initial=[Line(code=code)] if code else [], allow_bundles=False)
        return self.render(form, lines)

    def post(self, request: HttpRequest) -> HttpResponse:
        form = PurchaseOrderForm(request.POST)
        lines = SKULines(request.POST, allow_bundles=False)
        form_ok, lines_ok = form.is_valid(), lines.is_valid()
        if form_ok and lines_ok:
            data = form.cleaned_data
            try:
                po = services.create_draft(
                    supplier=data["supplier"],
                    warehouse=data["warehouse"],
                    lines=[services.DraftLine(sku, q) for sku, q in lines.cleaned],
                    actor=request.user,
                    note=data["note"],
                    expected_on=data["expected_on"],
                )
            except ValidationError as exc:
                _service_error(form, lines, exc)
            else:
                messages.success(request, f"{po.number} drafted. Submit it when it is ready.")
                return _done(request, reverse("purchasing:po_detail", args=[po.pk]))
        return self.render(form, lines, status=_error_status(request))

    def render(self, form, lines, status: int = 200) -> HttpResponse:
        template = self.template_name + ("#po-form" if self.request.htmx else "")
        context = {
            "form": form,
            "lines": lines,
            "purchasing_tab": "orders",
            "action": reverse("purchasing:po_create"),
        }
        return render(self.request, template, context, status=status)


class POEditView(RoleRequiredMixin, View):
    """Change a PO's lines; behind approval, a higher total asks for approval again."""

    permission = "purchasing.draft"
    template_name = "purchasing/po_form.html"

    def get(self, request: HttpRequest, pk: int) -> HttpResponse:
        if request.htmx and request.GET.get("row"):
            return render(request, "catalog/_sku_lines.html#line-row", {"line": Line()})
        po = get_object_or_404(PurchaseOrder, pk=pk)
        return self.render(po, SKULines(initial=_lines_from(po), allow_bundles=False))

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        po = get_object_or_404(PurchaseOrder, pk=pk)
        lines = SKULines(request.POST, allow_bundles=False)
        if lines.is_valid():
            try:
                po = services.update_lines(
                    po,
                    lines=[services.DraftLine(sku, q) for sku, q in lines.cleaned],
                    actor=request.user,
                )
            except ValidationError as exc:
                lines.add_error(None, " ".join(exc.messages))
            else:
                messages.success(
                    request,
                    f"{po.number} saved (version {po.version}); "
                    f"it is {po.get_state_display().lower()}.",
                )
                return _done(request, reverse("purchasing:po_detail", args=[po.pk]))
        return self.render(po, lines, status=_error_status(request))

    def render(self, po, lines, status: int = 200) -> HttpResponse:
        template = self.template_name + ("#po-form" if self.request.htmx else "")
        context = {
            "po": po,
            "lines": lines,
            "purchasing_tab": "orders",
            "action": reverse("purchasing:po_edit", args=[po.pk]),
        }
        return render(self.request, template, context, status=status)


TIMELINE_LABELS = {
    "purchase_order.created": "drafted it",
    "purchase_order.lines_changed": "changed the lines",
    "purchase_order.draft": "returned it to draft",
    "purchase_order.pending_approval": "sent it for approval",
    "purchase_order.approved": "approved it",
    "purchase_order.sent": "sent it to the supplier",
    "purchase_order.emailed_again": "asked to email it to the supplier again",
    "purchase_order.emailed": "emailed it to the supplier",
    "purchase_order.email_skipped": "did not email it",
    "purchase_order.received": "received goods",
    "purchase_order.rescheduled": "moved the expected date",
    "purchase_order.cancelled": "cancelled it",
    "purchase_order.closed": "closed it short",
}


def _timeline(po: PurchaseOrder) -> list[dict]:
    entries = ActivityEntry.objects.filter(
        object_type="purchasing.purchaseorder", object_id=str(po.pk)
    ).order_by("created_at", "id")
    out = []
    for entry in entries:
        changes = entry.changes or {}
        detail = changes.get("reason") or ""
        if entry.action == "purchase_order.lines_changed":
            before, after = changes.get("total", ["", ""])
            detail = f"Total {before} → {after} {po.currency}, version {changes['version'][1]}"
        elif entry.action == "purchase_order.rescheduled":
            detail = f"{' → '.join(changes.get('expected_on', []))}: {detail}"
        elif entry.action == "purchase_order.sent" and changes.get("amendment"):
            detail = f"Amendment (version {changes.get('version')})"
        elif entry.action == "purchase_order.emailed":
            detail = f"To {changes.get('to')}, version {changes.get('version')}"
            if (changes.get("attempt") or 1) > 1:
                detail += f", attempt {changes['attempt']}"
        out.append(
            {
                "actor": entry.actor_label,
                "label": TIMELINE_LABELS.get(entry.action, entry.action),
                "action": entry.action,
                "at": entry.created_at,
                "detail": detail,
            }
        )
    return out


def _detail_context(request: HttpRequest, po: PurchaseOrder, **extra) -> dict:
    lines = list(po.lines.select_related("sku"))
    request_ = services.current_request(po)
    user = request.user
    received = any(line.received_quantity for line in lines)
    editable = po.state in services.EDITABLE and not received
    emails = services.email_log(po)
    return {
        "po": po,
        "badge": BADGES.get(po.state, ""),
        "lines": lines,
        "total": money(services.po_total(po), po.currency),
        "approval": request_,
        "approval_amount": money(request_.amount, request_.currency) if request_ else "",
        "timeline": _timeline(po),
        "emails": emails,
        "email_failed": next((e for e in emails[:1] if e.state == "failed"), None),
        "receipts": po.receipts.prefetch_related("lines__line__sku"),
        "warnings": services.warnings_for(po),
        "may": {
            "edit": editable and has_permission(user, "purchasing.draft"),
            "submit": po.state == POState.DRAFT and has_permission(user, "purchasing.draft"),
            "cancel": editable and has_permission(user, "purchasing.draft"),
            "reschedule": po.state in services.OPEN and has_permission(user, "purchasing.draft"),
            "receive": po.state in services.RECEIVABLE
            and has_permission(user, "purchasing.receive"),
            "close": po.state == POState.PARTIALLY_RECEIVED
            and has_permission(user, "purchasing.receive"),
            "resend": po.state in (POState.SENT, POState.PARTIALLY_RECEIVED)
            and bool(po.supplier.email)
            and has_permission(user, "purchasing.draft"),
        },
        "cancel_form": extra.pop("cancel_form", ReasonForm()),
        "reschedule_form": extra.pop(
            "reschedule_form", RescheduleForm(initial={"expected_on": po.expected_on})
        ),
        "close_form": extra.pop("close_form", ReasonForm()),
        "purchasing_tab": "orders",
        **extra,
    }


class PODetailView(RoleRequiredMixin, View):
    permission = "purchasing.view"

    def get(self, request: HttpRequest, pk: int) -> HttpResponse:
        po = get_object_or_404(PurchaseOrder.objects.select_related("supplier", "warehouse"), pk=pk)
        return render(request, "purchasing/po_detail.html", _detail_context(request, po))


class POActionView(RoleRequiredMixin, View):
    """submit / cancel / reschedule / close from the PO page."""

    permission = "purchasing.view"
    PERMISSIONS = {
        "submit": "purchasing.draft",
        "cancel": "purchasing.draft",
        "reschedule": "purchasing.draft",
        "close": "purchasing.receive",
        "resend": "purchasing.draft",
    }

    def post(self, request: HttpRequest, pk: int, action: str) -> HttpResponse:
        if action not in self.PERMISSIONS:
            # 404 like an unknown order: a 403 here would answer differently from the
            # pages that never existed (the isolation walk expects 404/405 only).
            raise Http404("Unknown action.")
        self.require(self.PERMISSIONS[action])
        po = get_object_or_404(PurchaseOrder.objects.select_related("supplier", "warehouse"), pk=pk)
        form = None
        try:
            if action == "submit":
                po = services.submit(po, actor=request.user)
                text = {
                    POState.SENT: f"{po.number} is approved and sent to {po.supplier.name}.",
                    POState.PENDING_APPROVAL: f"{po.number} is waiting for approval.",
                }.get(po.state, f"{po.number} is {po.get_state_display().lower()}.")
            elif action == "cancel":
                form = ReasonForm(request.POST)
                if not form.is_valid():
                    return self.invalid(po, cancel_form=form)
                po = services.cancel(po, actor=request.user, reason=form.cleaned_data["reason"])
                text = f"{po.number} cancelled."
            elif action == "resend":
                po = services.resend(po, actor=request.user)
                text = f"{po.number} emailed to {po.supplier.email} again."
            elif action == "reschedule":
                form = RescheduleForm(request.POST)
                if not form.is_valid():
                    return self.invalid(po, reschedule_form=form)
                po = services.reschedule(po, actor=request.user, **form.cleaned_data)
                text = f"{po.number} now expected {po.expected_on:%d %b %Y}."
            else:
                form = ReasonForm(request.POST)
                if not form.is_valid():
                    return self.invalid(po, close_form=form)
                po = services.close(po, actor=request.user, reason=form.cleaned_data["reason"])
                text = f"{po.number} closed short."
        except ValidationError as exc:
            return self.invalid(po, errors=exc.messages)
        messages.success(request, text)
        return _done(request, reverse("purchasing:po_detail", args=[po.pk]))

    def invalid(self, po: PurchaseOrder, **extra) -> HttpResponse:
        po.refresh_from_db()
        return render(
            self.request,
            "purchasing/po_detail.html",
            _detail_context(self.request, po, **extra),
            status=422,
        )


class POReceiveView(RoleRequiredMixin, View):
    permission = "purchasing.receive"

    def get(self, request: HttpRequest, pk: int) -> HttpResponse:
        po = get_object_or_404(PurchaseOrder.objects.select_related("supplier", "warehouse"), pk=pk)
        return self.render(po, {}, {}, [])

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        po = get_object_or_404(PurchaseOrder.objects.select_related("supplier", "warehouse"), pk=pk)
        quantities, reasons, errors = {}, {}, []
        for line in po.lines.all():
            raw = request.POST.get(f"qty_{line.pk}", "").strip()
            reason = request.POST.get(f"reason_{line.pk}", "")
            if raw:
                try:
                    quantities[line.pk] = int(raw)
                except ValueError:
                    errors.append(f"Line {line.pk}: enter a whole number.")
            if reason:
                reasons[line.pk] = reason
        if not errors:
            try:
                receipt = services.receive(
                    po,
                    quantities=quantities,
                    reasons=reasons,
                    actor=request.user,
                    note=request.POST.get("note", ""),
                    operation_key=request.POST.get("operation_key") or None,
                )
            except ValidationError as exc:
                errors = exc.messages
            else:
                po.refresh_from_db()
                units = sum(line.quantity for line in receipt.lines.all())
                messages.success(
                    request,
                    f"Received {units} units on {po.number}; "
                    f"it is {po.get_state_display().lower()}.",
                )
                return _done(request, reverse("purchasing:po_detail", args=[po.pk]))
        return self.render(po, request.POST, reasons, errors, status=_error_status(request))

    def render(self, po, typed, reasons, errors, status: int = 200) -> HttpResponse:
        lines = list(po.lines.select_related("sku"))
        for line in lines:
            line.typed = typed.get(f"qty_{line.pk}", "") if typed else ""
            line.reason = reasons.get(line.pk, "")
        return render(
            self.request,
            "purchasing/po_receive.html",
            {
                "po": po,
                "lines": lines,
                "reasons": [c for c in ReceiptReason.choices if c[0]],
                "errors": errors,
                "note": typed.get("note", "") if typed else "",
                # One key per form load: a double-submitted form posts one receipt.
                "operation_key": (typed.get("operation_key") if typed else "")
                or f"ui:{uuid.uuid4()}",
                "purchasing_tab": "orders",
            },
            status=status,
        )


class POPdfView(RoleRequiredMixin, View):
    permission = "purchasing.view"

    def get(self, request: HttpRequest, pk: int) -> HttpResponse:
        po = get_object_or_404(PurchaseOrder.objects.select_related("supplier", "warehouse"), pk=pk)
        response = HttpResponse(po_pdf(po), content_type="application/pdf")
        response["Content-Disposition"] = f'inline; filename="{po.number}.pdf"'
        return response
