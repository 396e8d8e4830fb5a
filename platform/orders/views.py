"""Order pages: the orders list, an order's page with its routing timeline, the review
queue, the routing-rules editor with its simulator, and manual entry of wholesale orders.

Views parse input and call orders.services, which route, reserve stock and write the
logs; errors the services raise come back inline (422 for a plain POST, 200 with the
fragment for htmx, which does not swap error responses).

Decisions:
- Manual orders arrive on the channel "manual" with our own SKU codes. Ingestion maps
  lines through the channel's listing mappings, so the first manual order of a SKU adds
  the mapping manual:<code> → that SKU (catalog.services.map_listing), in the same
  transaction as the order.
- Rule sets are versions. The editor either drafts a new version or edits a draft in
  place (orders.services.update_draft_rule_set): a draft has routed nothing, so changing
  it rewrites no history, and building a draft up over several sittings, simulating in
  between, leaves one draft rather than a trail of them. Published and archived versions
  never change; they are copied to a new draft. Simulating and publishing act on a saved
  draft.
- A suggested rule opens the editor with the published rules plus the suggestion last:
  first match wins, so it only takes the orders no earlier rule settles, which are the
  ones people were deciding by hand.
"""

from __future__ import annotations

import csv
import io
import secrets
import time as clock
from datetime import date, datetime, time, timedelta

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import Count, Exists, OuterRef, Prefetch, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.views import View
from django_htmx.http import HttpResponseClientRedirect

from accounts.roles import has_permission
from accounts.views import RoleRequiredMixin
from audit.models import ActivityEntry
from catalog.models import ListingMapping
from catalog.services import map_listing
from inventory import services as stock
from inventory.models import Warehouse
from orders import csv_import
from orders.forms import (
    RULE_PREFIX,
    ManualOrderForm,
    OrderCsvForm,
    PlanForm,
    PricedLine,
    PricedLines,
    ReasonForm,
    RuleFormSet,
    ShipForm,
    blank_rule,
    describe_row,
    formset_data,
    is_blank,
    raw_rows,
    rule_initial,
    rule_rows,
)
from orders.models import (
    DecisionLayer,
    FulfillmentOrder,
    FulfillmentStatus,
    HoldReason,
    Order,
    OrderLine,
    OrderStatus,
    RoutingDecision,
    RuleSet,
    RuleSetStatus,
)
from orders.services import (
    ADDRESS_FIELDS,
    OPEN_FULFILLMENT,
    LineInput,
    OrderInput,
    cancel_order,
    choose_plan,
    close_order,
    correct_address,
    draft_rule_set,
    ingest_order,
    mark_shipped,
    publish_rule_set,
    reject_fulfillment,
    release_fraud_hold,
    route_held_order,
    simulate,
    suggested_rules,
    update_draft_rule_set,
)

PAGE_SIZE = 50
MANUAL_CHANNEL = "manual"
# Held orders shown per reason; the rest are one click away in the filtered orders list.
QUEUE_GROUP_ROWS = 20
TIMELINE_ENTRIES = 200
SIMULATION_SIZES = (100, 500, 1000, 5000, 10000)
SIMULATION_ROWS = 200
ORDER_OBJECT = "orders.order"
FULFILLMENT_OBJECT = "orders.fulfillmentorder"

# Most urgent first: a person can settle these now; the others wait on stock or a channel.
QUEUE_ORDER = [
    HoldReason.AWAITING_REVIEW,
    HoldReason.INSUFFICIENT_STOCK,
    HoldReason.UNMAPPED_SKU,
    HoldReason.INVALID_ADDRESS,
    HoldReason.FRAUD,
]
QUEUE_HINTS = {
    HoldReason.AWAITING_REVIEW: (
        "Scoring was not sure enough. Compare the candidate plans and use one, or pick a "
        "warehouse per line."
    ),
    HoldReason.INSUFFICIENT_STOCK: (
        "No warehouse has stock for the whole order, even split. Receive or transfer stock, "
        "then route again."
    ),
    HoldReason.UNMAPPED_SKU: (
        "A line's channel SKU maps to none of your SKUs. Map it in Unmapped listings and the "
        "order routes again by itself."
    ),
    HoldReason.INVALID_ADDRESS: (
        "The ship-to address is incomplete. Fix it on the channel (the update routes the order "
        "again), or route it by hand if the address is good."
    ),
    HoldReason.FRAUD: (
        "The channel flagged possible fraud. Cancel it, or route it by hand once checked."
    ),
}
ACTION_LABELS = {
    "order.received": "Received",
    "order.updated": "Updated by the channel",
    "order.stale_update_ignored": "Older channel update ignored",
    "order.update_after_shipment": "Changed on the channel after shipping",
    "order.held": "Held",
    "order.routed": "Routed",
    "order.cancelled": "Cancelled",
    "order.closed": "Closed",
    "fulfillment.cancelled": "Fulfillment order cancelled",
    "fulfillment.rejected": "Fulfillment order rejected",
    "fulfillment.shipped": "Shipped",
}
# "carrier" is only scored when delivery history exists; older decisions lack it ("—").
SCORE_PARTS = ("distance", "cover", "cutoff", "packages", "carrier")


# --- Helpers --------------------------------------------------------------------------------


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def _date(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


def _querystring(request: HttpRequest) -> str:
    query = request.GET.copy()
    query.pop("page", None)
    return query.urlencode()


def _partial(request: HttpRequest) -> bool:
    # A history restore after a cache miss asks for the whole page, not the fragment.
    return bool(request.htmx) and not request.htmx.history_restore_request


def _done(request: HttpRequest, url: str) -> HttpResponse:
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


def _error_status(request: HttpRequest) -> int:
    # htmx swaps only 2xx responses, so its error fragments come back as 200.
    return 200 if request.htmx else 422


def _back(request: HttpRequest, default: str) -> str:
    back = request.POST.get("next", "")
    if back and url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}):
        return back
    return default


def _local_midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=timezone.get_current_timezone())


def orders_nav(active: str) -> dict:
    return {"orders_tab": active, "held_count": Order.objects.needs_review().count()}


def _plan_parts(plan: dict | None, lines: dict[int, OrderLine]) -> list[tuple[str, str]]:
    """(warehouse code, "TEE × 2, HAT × 1") per warehouse of a stored plan."""
    parts = []
    for code, line_ids in sorted((plan or {}).items()):
        described = []
        for line_id in line_ids:
            line = lines.get(line_id)
            if line is None:  # replaced since by a channel update
                described.append(f"line {line_id}")
            else:
                code_of = line.sku.code if line.sku_id else line.external_sku
                described.append(f"{code_of} × {line.quantity}")
        parts.append((code, ", ".join(described)))
    return parts


def _candidates(decision: RoutingDecision | None, lines: dict[int, OrderLine]) -> list[dict]:
    if decision is None:
        return []
    shown = []
    for rank, candidate in enumerate(decision.candidates, start=1):
        plan = candidate.get("plan", {})
        shown.append(
            {
                "rank": rank,
                "label": " + ".join(candidate.get("warehouses", [])),
                "score": candidate.get("score"),
                "parts": [candidate.get("parts", {}).get(name) for name in SCORE_PARTS],
                "distance_km": candidate.get("distance_km"),
                "plan": _plan_parts(plan, lines),
                "assignments": sorted(
                    (line_id, code) for code, ids in plan.items() for line_id in ids
                ),
                "usable": all(line_id in lines for ids in plan.values() for line_id in ids),
            }
        )
    return shown


def _shown(value) -> str:
    if value in (None, "", [], {}):
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_shown(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_shown(v) for v in value)
    return str(value)


def _entry_details(entry: ActivityEntry, lines: dict[int, OrderLine]) -> list[tuple[str, str]]:
    details = []
    for name, value in entry.changes.items():
        if entry.action == "order.updated" and isinstance(value, list) and len(value) == 2:
            details.append((name, f"{_shown(value[0])} → {_shown(value[1])}"))
        elif name == "plan" and isinstance(value, dict):
            parts = _plan_parts(value, lines)
            details.append((name, "; ".join(f"{code}: {what}" for code, what in parts)))
        else:
            details.append((name, _shown(value)))
    return details


# --- Orders list ----------------------------------------------------------------------------


def _filtered_orders(filters: dict) -> QuerySet[Order]:
    orders = Order.objects.annotate(line_count=Count("lines")).prefetch_related(
        Prefetch(
            "fulfillments",
            queryset=FulfillmentOrder.objects.exclude(status=FulfillmentStatus.CANCELLED)
            .select_related("warehouse")
            .order_by("id"),
            to_attr="shown_fulfillments",
        )
    )
    if filters["q"]:
        q = filters["q"]
        orders = orders.filter(
            Q(external_id__icontains=q)
            | Q(customer_name__icontains=q)
            | Q(customer_email__icontains=q)
            | Q(ship_name__icontains=q)
            | Q(ship_company__icontains=q)
        )
    if filters["status"]:
        orders = orders.filter(status=filters["status"])
    if filters["channel"]:
        orders = orders.filter(channel=filters["channel"])
    if filters["hold_reason"]:
        orders = orders.filter(hold_reason=filters["hold_reason"])
    if filters["warehouse"]:
        # Exists, not a join: a join would repeat an order split across warehouses.
        orders = orders.filter(
            Exists(
                FulfillmentOrder.objects.filter(
                    order=OuterRef("pk"), warehouse_id=filters["warehouse"]
                ).exclude(status=FulfillmentStatus.CANCELLED)
            )
        )
    if filters["since"]:
        orders = orders.filter(placed_at__gte=_local_midnight(filters["since"]))
    if filters["until"]:
        orders = orders.filter(placed_at__lt=_local_midnight(filters["until"] + timedelta(1)))
    return orders.order_by("-placed_at", "-id")


class OrderListView(RoleRequiredMixin, View):
    permission = "orders.view"
    template_name = "orders/list.html"

    def get(self, request: HttpRequest) -> HttpResponse:
        params = request.GET
        filters = {
            "q": params.get("q", "").strip(),
            "status": params.get("status", "")
            if params.get("status") in OrderStatus.values
            else "",
            "channel": params.get("channel", "").strip(),
            "hold_reason": params.get("hold_reason", "")
            if params.get("hold_reason") in HoldReason.values
            else "",
            "warehouse": _int(params.get("warehouse")),
            "since": _date(params.get("since")),
            "until": _date(params.get("until")),
        }
        page = Paginator(_filtered_orders(filters), PAGE_SIZE).get_page(params.get("page"))
        context = {
            "page": page,
            "filters": filters,
            "filtered": any(filters.values()),
            "querystring": _querystring(request),
        }
        if _partial(request):
            return render(request, self.template_name + "#results", context)
        context.update(
            {
                "statuses": OrderStatus.choices,
                "hold_reasons": HoldReason.choices,
                "channels": Order.objects.order_by("channel")
                .values_list("channel", flat=True)
                .distinct(),
                "warehouses": Warehouse.objects.all(),
                **orders_nav("orders"),
            }
        )
        return render(request, self.template_name, context)


# --- Order page -----------------------------------------------------------------------------


def _timeline(order: Order, lines: dict[int, OrderLine], fulfillments: list) -> list[dict]:
    """Routing decisions and activity entries of the order and its fulfillment orders,
    oldest first, so the page reads as the order's story."""
    items: list[dict] = []
    for decision in order.decisions.all():
        items.append(
            {
                "at": decision.created_at,
                "decision": decision,
                "chosen": _plan_parts(decision.chosen, lines),
                "candidates": _candidates(decision, lines),
            }
        )
    entries = ActivityEntry.objects.filter(
        Q(object_type=ORDER_OBJECT, object_id=str(order.pk))
        | Q(object_type=FULFILLMENT_OBJECT, object_id__in=[str(fo.pk) for fo in fulfillments])
    )[:TIMELINE_ENTRIES]
    for entry in entries:
        items.append(
            {
                "at": entry.created_at,
                "entry": entry,
                "label": ACTION_LABELS.get(entry.action, entry.action),
                "details": _entry_details(entry, lines),
            }
        )
    items.sort(key=lambda item: item["at"])
    return items


def _order_context(
    order: Order, *, errors: list[str] | None = None, fo_errors: dict | None = None
) -> dict:
    lines = list(order.lines.select_related("sku"))
    for line in lines:
        line.amount = line.unit_price * line.quantity
    fulfillments = list(
        order.fulfillments.select_related("warehouse").prefetch_related("lines__sku").order_by("id")
    )
    for fo in fulfillments:
        fo.is_open = fo.status in OPEN_FULFILLMENT
        fo.errors = (fo_errors or {}).get(fo.pk, [])
    return {
        "order": order,
        "lines": lines,
        "fulfillments": fulfillments,
        "timeline": _timeline(order, {line.pk: line for line in lines}, fulfillments),
        "errors": errors or [],
        "cancellable": order.status not in (OrderStatus.CANCELLED, OrderStatus.CLOSED)
        and not any(fo.status == FulfillmentStatus.SHIPPED for fo in fulfillments),
        **orders_nav("orders"),
    }


class OrderDetailView(RoleRequiredMixin, View):
    permission = "orders.view"
    template_name = "orders/detail.html"

    def get(self, request: HttpRequest, pk: int) -> HttpResponse:
        order = get_object_or_404(Order, pk=pk)
        return render(request, self.template_name, _order_context(order))


def _order_page(request: HttpRequest, order: Order, **errors) -> HttpResponse:
    order.refresh_from_db()
    return render(
        request, OrderDetailView.template_name, _order_context(order, **errors), status=422
    )


class CancelOrderView(RoleRequiredMixin, View):
    permission = "orders.manage"

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        order = get_object_or_404(Order, pk=pk)
        reason = request.POST.get("reason", "").strip()[:300] or "Cancelled by a person."
        try:
            cancel_order(order, reason=reason)
        except ValidationError as exc:
            return _order_page(request, order, errors=exc.messages)
        messages.success(request, f"Order {order.external_id} cancelled; its stock is released.")
        return _done(request, reverse("orders:detail", args=[order.pk]))


class CloseOrderView(RoleRequiredMixin, View):
    permission = "orders.manage"

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        order = get_object_or_404(Order, pk=pk)
        try:
            close_order(order, note=request.POST.get("note", "").strip())
        except ValidationError as exc:
            return _order_page(request, order, errors=exc.messages)
        messages.success(request, f"Order {order.external_id} closed.")
        return _done(request, reverse("orders:detail", args=[order.pk]))


class ShipView(RoleRequiredMixin, View):
    permission = "orders.manage"

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        fo = get_object_or_404(FulfillmentOrder.objects.select_related("order", "warehouse"), pk=pk)
        form = ShipForm(request.POST)
        if form.is_valid():
            try:
                mark_shipped(fo, **form.cleaned_data)
            except ValidationError as exc:
                return _order_page(request, fo.order, fo_errors={fo.pk: exc.messages})
            messages.success(request, f"FO-{fo.pk} shipped from {fo.warehouse.code}.")
            return _done(request, reverse("orders:detail", args=[fo.order_id]))
        errors = [e for field_errors in form.errors.values() for e in field_errors]
        return _order_page(request, fo.order, fo_errors={fo.pk: errors})


class RejectView(RoleRequiredMixin, View):
    permission = "orders.manage"

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        fo = get_object_or_404(FulfillmentOrder.objects.select_related("order", "warehouse"), pk=pk)
        form = ReasonForm(request.POST)
        if not form.is_valid():
            return _order_page(
                request, fo.order, fo_errors={fo.pk: ["Say why the warehouse cannot ship it."]}
            )
        try:
            order = reject_fulfillment(fo, reason=form.cleaned_data["reason"])
        except ValidationError as exc:
            return _order_page(request, fo.order, fo_errors={fo.pk: exc.messages})
        messages.success(request, f"FO-{fo.pk} rejected. {_routing_summary(order)}")
        return _done(request, reverse("orders:detail", args=[fo.order_id]))


def _routing_summary(order: Order) -> str:
    if order.status == OrderStatus.HELD:
        return f"Held: {order.get_hold_reason_display()}. {order.hold_detail}"
    codes = sorted(
        order.fulfillments.filter(status__in=OPEN_FULFILLMENT).values_list(
            "warehouse__code", flat=True
        )
    )
    if codes:
        return f"Routed to {' + '.join(codes)}."
    return f"Status: {order.get_status_display()}."


# --- Review queue ---------------------------------------------------------------------------


def _queue_items(orders: list[Order], data=None) -> list[dict]:
    """Held orders with what a person needs to settle them: candidate plans from the
    latest review decision, and a plan form with each warehouse's available stock."""
    warehouses = list(Warehouse.objects.filter(is_active=True).order_by("priority", "code"))
    sku_ids = {line.sku_id for order in orders for line in order.lines.all() if line.sku_id}
    available = stock.available_to_promise(sku_ids=sku_ids) if sku_ids else {}
    # Candidates only for orders still awaiting review: an older review decision of an
    # order since held for another reason no longer describes it.
    awaiting = [o.pk for o in orders if o.hold_reason == HoldReason.AWAITING_REVIEW]
    reviews = {
        d.order_id: d
        for d in RoutingDecision.objects.filter(order__in=awaiting, layer=DecisionLayer.REVIEW)
        .order_by("order_id", "-created_at", "-id")
        .distinct("order_id")
    }
    items = []
    for order in orders:
        lines = list(order.lines.all())
        by_id = {line.pk: line for line in lines}
        candidates = _candidates(reviews.get(order.pk), by_id)
        mapped = all(line.sku_id for line in lines)
        form = None
        if mapped:
            best = next((c for c in candidates if c["usable"]), None)
            initial = {f"line_{i}": code for i, code in best["assignments"]} if best else {}
            form = PlanForm(
                data,
                initial=initial,
                lines=lines,
                warehouses=warehouses,
                available=available,
                # Several orders share the queue page; the prefix keeps their inputs apart.
                prefix=f"o{order.pk}",
            )
        items.append(
            {
                "order": order,
                "lines": lines,
                "candidates": candidates,
                "form": form,
                "errors": [],
            }
        )
    return items


def _held(queryset: QuerySet[Order]) -> QuerySet[Order]:
    return queryset.prefetch_related(
        Prefetch("lines", queryset=OrderLine.objects.select_related("sku").order_by("id"))
    )


def _review_context(request: HttpRequest, failed: dict | None = None) -> dict:
    held = Order.objects.needs_review()
    counts = dict(
        held.order_by()
        .values_list("hold_reason")
        .annotate(n=Count("id"))
        .values_list("hold_reason", "n")
    )
    reason = request.GET.get("reason", "")
    if reason not in HoldReason.values:
        reason = ""
    groups = []
    for value in QUEUE_ORDER:
        count = counts.get(value, 0)
        if not count or (reason and value != reason):
            continue
        # Oldest first: whoever has waited longest is settled first.
        orders = list(
            _held(held.filter(hold_reason=value)).order_by("placed_at", "id")[:QUEUE_GROUP_ROWS]
        )
        items = _queue_items(orders)
        if failed is not None:
            items = [failed if i["order"].pk == failed["order"].pk else i for i in items]
        groups.append(
            {
                "reason": value,
                "label": HoldReason(value).label,
                "hint": QUEUE_HINTS[value],
                "count": count,
                "items": items,
                "more": count - len(items),
            }
        )
    shown = {i["order"].pk for g in groups for i in g["items"]}
    can_edit_rules = has_permission(request.user, "routing.edit")
    return {
        "groups": groups,
        "reason": reason,
        "reasons": [(v, HoldReason(v).label, counts.get(v, 0)) for v in QUEUE_ORDER],
        "failed": failed if failed is not None and failed["order"].pk not in shown else None,
        "suggestions": suggested_rules() if can_edit_rules else [],
        "queue_path": request.get_full_path(),
        **orders_nav("review"),
    }


class ReviewQueueView(RoleRequiredMixin, View):
    permission = "orders.manage"
    template_name = "orders/review.html"

    def get(self, request: HttpRequest) -> HttpResponse:
        return render(request, self.template_name, _review_context(request))


class _HeldOrderAction(RoleRequiredMixin, View):
    """A POST that settles one held order; answers the review queue's htmx with the
    order's block, and plain forms with a redirect back (or the page with the error)."""

    permission = "orders.manage"
    # Only a chosen plan is read from the POST; other actions show the plan form unbound.
    reads_plan = False

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        order = get_object_or_404(_held(Order.objects.all()), pk=pk)
        item = _queue_items([order], data=request.POST if self.reads_plan else None)[0]
        try:
            self.act(order, item)
        except ValidationError as exc:
            item["errors"] = exc.messages
        if item["errors"]:
            return self.failed(item)
        order.refresh_from_db()
        summary = _routing_summary(order)
        if request.htmx:
            if order.status == OrderStatus.HELD:
                fresh = _queue_items([_held(Order.objects.all()).get(pk=pk)])[0]
                fresh["note"] = summary
                return render(request, "orders/review.html#held-order", {"item": fresh})
            return render(
                request,
                "orders/review.html#held-order",
                {"item": {"order": order, "done": summary}},
            )
        messages.success(request, f"Order {order.external_id}: {summary}")
        return redirect(_back(request, reverse("orders:review")))

    def act(self, order: Order, item: dict) -> None:
        raise NotImplementedError

    def failed(self, item: dict) -> HttpResponse:
        request = self.request
        if request.htmx:
            return render(request, "orders/review.html#held-order", {"item": item})
        back = _back(request, "")
        if back.startswith(reverse("orders:detail", args=[item["order"].pk])):
            return _order_page(request, item["order"], errors=item["errors"])
        return render(
            request, ReviewQueueView.template_name, _review_context(request, item), status=422
        )


class ChoosePlanView(_HeldOrderAction):
    reads_plan = True

    def act(self, order: Order, item: dict) -> None:
        form = item["form"]
        if form is None:
            item["errors"] = ["Map every line to a SKU first; then pick warehouses."]
        elif form.is_valid():
            choose_plan(
                order,
                allocations=form.allocations(),
                actor=self.request.user,
                note=form.cleaned_data["note"],
            )
        else:
            item["errors"] = ["Pick a warehouse for every line."]


class RouteAgainView(_HeldOrderAction):
    def act(self, order: Order, item: dict) -> None:
        route_held_order(order)


class ReleaseFraudView(_HeldOrderAction):
    def act(self, order: Order, item: dict) -> None:
        release_fraud_hold(order, actor=self.request.user, note=self.request.POST.get("note", ""))


class CorrectAddressView(_HeldOrderAction):
    def act(self, order: Order, item: dict) -> None:
        posted = self.request.POST
        fields = {name: posted[name] for name in ADDRESS_FIELDS if name in posted}
        correct_address(order, actor=self.request.user, **fields)


# --- Manual entry ---------------------------------------------------------------------------


def _new_external_id() -> str:
    return f"M-{timezone.localdate():%y%m%d}-{secrets.token_hex(3).upper()}"


def _enter_order(data: dict, lines: list) -> Order:
    now = timezone.now()
    with transaction.atomic():
        codes = [sku.code for sku, _, _ in lines]
        mapped = set(
            ListingMapping.objects.filter(
                channel=MANUAL_CHANNEL, external_sku__in=codes
            ).values_list("external_sku", flat=True)
        )
        for sku, _, _ in lines:
            if sku.code not in mapped:
                map_listing(channel=MANUAL_CHANNEL, external_sku=sku.code, sku=sku)
        result = ingest_order(
            OrderInput(
                channel=MANUAL_CHANNEL,
                external_id=data["external_id"],
                placed_at=now,
                updated_at=now,
                currency=data["currency"],
                lines=[
                    LineInput(str(n), sku.code, quantity, price, title=sku.title)
                    for n, (sku, quantity, price) in enumerate(lines, start=1)
                ],
                order_type=data["order_type"],
                service_level=data["service_level"],
                customer_name=data["customer_name"],
                customer_email=data["customer_email"],
                note=data["note"],
                **{name: data[name] for name in ManualOrderForm.SHIP_TO},
            )
        )
    return result.order


class ManualOrderView(RoleRequiredMixin, View):
    """Type in an order (wholesale by default); it is ingested and routed like any other."""

    permission = "orders.create"
    template_name = "orders/manual.html"

    def get(self, request: HttpRequest) -> HttpResponse:
        if request.htmx and request.GET.get("row"):
            return render(request, self.template_name + "#line-row", {"line": PricedLine()})
        form = ManualOrderForm(
            initial={"external_id": _new_external_id(), "currency": request.tenant.currency}
        )
        return self.render(form, PricedLines())

    def post(self, request: HttpRequest) -> HttpResponse:
        form = ManualOrderForm(request.POST)
        lines = PricedLines(request.POST)
        # Validate both so every mistake shows at once.
        form_ok, lines_ok = form.is_valid(), lines.is_valid()
        if form_ok and lines_ok:
            external_id = form.cleaned_data["external_id"]
            existing = Order.objects.filter(channel=MANUAL_CHANNEL, external_id=external_id).first()
            if existing is not None:
                messages.info(request, f"Order {external_id} was already entered.")
                return _done(request, reverse("orders:detail", args=[existing.pk]))
            try:
                order = _enter_order(form.cleaned_data, lines.priced)
            except ValidationError as exc:
                _ingest_error(form, lines, exc)
            else:
                messages.success(
                    request, f"Order {order.external_id} entered. {_routing_summary(order)}"
                )
                return _done(request, reverse("orders:detail", args=[order.pk]))
        return self.render(form, lines, status=_error_status(request))

    def render(self, form: ManualOrderForm, lines: PricedLines, status: int = 200) -> HttpResponse:
        template = self.template_name + ("#order-form" if self.request.htmx else "")
        context = {"form": form, "lines": lines, **orders_nav("orders")}
        return render(self.request, template, context, status=status)


class OrderImportView(RoleRequiredMixin, View):
    """Upload orders as CSV: checked whole, then ingested like any channel's (one
    transaction, through orders.services.ingest_orders). `?template=1` downloads a file
    with the columns and an example row."""

    permission = "orders.create"
    template_name = "orders/import.html"

    def get(self, request: HttpRequest) -> HttpResponse:
        if request.GET.get("template"):
            return _orders_csv_template()
        return self.render(OrderCsvForm())

    def post(self, request: HttpRequest) -> HttpResponse:
        form = OrderCsvForm(request.POST, request.FILES)
        if not form.is_valid():
            return self.render(form, status=422)
        upload = form.cleaned_data["file"]
        if upload.size > csv_import.MAX_FILE_BYTES:
            form.add_error("file", "Files can be at most 5 MB; split this one.")
            return self.render(form, status=422)
        try:
            result = csv_import.import_orders_csv(
                upload.read(), channel=form.cleaned_data["channel"]
            )
        except csv_import.OrderCsvError as exc:
            return self.render(form, problems=exc.problems, status=422)
        except ValidationError as exc:
            form.add_error(None, exc)
            return self.render(form, status=422)
        messages.success(request, f"Imported {upload.name}: {result.summary}")
        channels = {order.channel for order in result.orders}
        url = reverse("orders:list")
        if len(channels) == 1:
            url += "?" + urlencode({"channel": next(iter(channels))})
        return redirect(url)

    def render(
        self, form: OrderCsvForm, *, problems: list | None = None, status: int = 200
    ) -> HttpResponse:
        shown = (problems or [])[: csv_import.MAX_PROBLEMS]
        context = {
            "form": form,
            "problems": shown,
            "hidden_problems": len(problems or []) - len(shown),
            "columns": csv_import.COLUMNS,
            "required": csv_import.REQUIRED,
            "max_rows": csv_import.MAX_ROWS,
            **orders_nav("orders"),
        }
        return render(self.request, self.template_name, context, status=status)


def _orders_csv_template() -> HttpResponse:
    example = {
        "external_id": "1001",
        "placed_at": "2026-11-02T15:04:05-05:00",
        "currency": "USD",
        "order_type": "dtc",
        "service_level": "standard",
        "customer_name": "Ada Buyer",
        "customer_email": "ada@example.com",
        "ship_name": "Ada Buyer",
        "ship_line1": "1 Main St",
        "ship_city": "Austin",
        "ship_state": "TX",
        "ship_postal_code": "73301",
        "ship_country": "US",
        "line_id": "1",
        "sku": "TEE-BLK-M",
        "quantity": "2",
        "unit_price": "19.50",
    }
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(csv_import.COLUMNS)
    writer.writerow([example.get(name, "") for name in csv_import.COLUMNS])
    response = HttpResponse(out.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="orders-template.csv"'
    return response


def _ingest_error(form: ManualOrderForm, lines: PricedLines, exc: ValidationError) -> None:
    if not hasattr(exc, "error_dict"):
        form.add_error(None, exc)
        return
    for name, errors in exc.error_dict.items():
        if name == "lines":
            for error in errors:
                lines.add_error(None, " ".join(error.messages))
        else:
            form.add_error(name if name in form.fields else None, errors)


# --- Routing rules --------------------------------------------------------------------------


class RuleSetListView(RoleRequiredMixin, View):
    permission = "orders.view"
    template_name = "orders/rules.html"

    def get(self, request: HttpRequest) -> HttpResponse:
        rule_sets = RuleSet.objects.select_related("created_by").annotate(rule_count=Count("rules"))
        page = Paginator(rule_sets, PAGE_SIZE).get_page(request.GET.get("page"))
        context = {
            "page": page,
            "published": RuleSet.objects.filter(status=RuleSetStatus.PUBLISHED).first(),
            "querystring": _querystring(request),
            **orders_nav("rules"),
        }
        return render(request, self.template_name, context)


def _outcome(summary: str) -> tuple[str, str]:
    """ "scoring: TX + PA" → ("scoring", "TX + PA"); "hold: insufficient_stock" → a label."""
    layer, _, detail = summary.partition(": ")
    if layer == "hold":
        return layer, HoldReason(detail).label if detail in HoldReason.values else detail
    return layer, detail


def _simulation(rule_set: RuleSet, last: int) -> dict:
    started = clock.monotonic()
    rows = simulate(rule_set, last=last)
    elapsed = clock.monotonic() - started
    changed = [row for row in rows if row.changed]
    return {
        "last": last,
        "compared": len(rows),
        "changed_count": len(changed),
        "rows": [
            {
                "row": row,
                "current": _outcome(row.current),
                "proposed": _outcome(row.proposed),
                # Only the layer differs (e.g. scoring → rules): same warehouses, now by rule.
                "same_place": row.current.partition(": ")[2] == row.proposed.partition(": ")[2]
                and "hold" not in (row.current[:4], row.proposed[:4]),
            }
            for row in changed[:SIMULATION_ROWS]
        ],
        "hidden": max(0, len(changed) - SIMULATION_ROWS),
        "seconds": elapsed,
    }


def _rule_set_context(rule_set: RuleSet, *, errors: list[str] | None = None) -> dict:
    return {
        "rule_set": rule_set,
        "rules": rule_rows(rule_set.rules.all()),
        "sizes": SIMULATION_SIZES,
        "last": 500,
        "simulation": None,
        "errors": errors or [],
        **orders_nav("rules"),
    }


class RuleSetDetailView(RoleRequiredMixin, View):
    """One version of the rules; for drafts, the simulator (`?last=N`) and Publish."""

    permission = "orders.view"
    template_name = "orders/rule_set.html"

    def get(self, request: HttpRequest, version: int) -> HttpResponse:
        rule_set = get_object_or_404(RuleSet.objects.select_related("created_by"), version=version)
        context = _rule_set_context(rule_set)
        last = _int(request.GET.get("last"))
        if last:
            self.require("routing.edit")
            last = min(max(last, 1), SIMULATION_SIZES[-1])
            context.update({"last": last, "simulation": _simulation(rule_set, last)})
            if _partial(request):
                return render(request, self.template_name + "#simulation", context)
        return render(request, self.template_name, context)


class PublishView(RoleRequiredMixin, View):
    permission = "routing.edit"

    def post(self, request: HttpRequest, version: int) -> HttpResponse:
        rule_set = get_object_or_404(RuleSet, version=version)
        try:
            publish_rule_set(rule_set)
        except ValidationError as exc:
            context = _rule_set_context(rule_set, errors=exc.messages)
            return render(request, RuleSetDetailView.template_name, context, status=422)
        messages.success(
            request,
            f"Rules v{version} published: new orders route with them. Held orders keep "
            "waiting; route them again from the review queue.",
        )
        return _done(request, reverse("orders:rules"))


def _suggested_row(params) -> dict | None:
    name, ship_from = params.get("name", "").strip(), params.get("ship_from", "").strip()
    if not name or not ship_from:
        return None
    conditions = {}
    if params.get("country", "").strip():
        conditions["country_in"] = [params["country"].strip()]
    if params.get("state", "").strip():
        conditions["state_in"] = [params["state"].strip()]
    return rule_initial(name, conditions, {"ship_from": ship_from})


class RuleEditorView(RoleRequiredMixin, View):
    """Draft a new version, or (at rules/<version>/edit/) change a draft in place: rules as
    rows that can be added, edited, moved and removed, then saved through draft_rule_set
    or update_draft_rule_set (whose per-rule errors show on their rows)."""

    permission = "routing.edit"
    template_name = "orders/rule_editor.html"
    draft: RuleSet | None = None

    def _load_draft(self, version: int | None) -> HttpResponse | None:
        """Set self.draft for an edit; a version that is no longer a draft is copied."""
        if version is None:
            return None
        self.draft = get_object_or_404(RuleSet, version=version)
        if self.draft.status != RuleSetStatus.DRAFT and self.request.method == "GET":
            messages.info(
                self.request,
                f"Rules v{version} is {self.draft.get_status_display().lower()} and does not "
                "change; this is a new draft copied from it.",
            )
            return redirect(f"{reverse('orders:rule_editor')}?from={version}")
        return None

    def form_kwargs(self) -> dict:
        return {
            "warehouse_codes": list(
                Warehouse.objects.order_by("code").values_list("code", flat=True)
            )
        }

    def get(self, request: HttpRequest, version: int | None = None) -> HttpResponse:
        moved = self._load_draft(version)
        if moved is not None:
            return moved
        if self.draft is not None:
            rows = [
                rule_initial(r.name, r.conditions, r.actions, r.is_active)
                for r in self.draft.rules.all()
            ]
            return self.render(
                self.unbound(rows or [blank_rule()]), note=self.draft.note, base=None
            )
        base_version = _int(request.GET.get("from"))
        if base_version is not None:
            base = get_object_or_404(RuleSet, version=base_version)
        else:
            base = RuleSet.objects.filter(status=RuleSetStatus.PUBLISHED).first()
        rows = [
            rule_initial(r.name, r.conditions, r.actions, r.is_active)
            for r in (base.rules.all() if base else [])
        ]
        note = f"Based on v{base.version}" if base else ""
        added = None
        suggestion = _suggested_row(request.GET) if request.GET.get("suggest") else None
        if suggestion is not None:
            rows.append(suggestion)
            added = len(rows) - 1
            note = f"Adds “{suggestion['name']}”" + (f" to v{base.version}" if base else "")
        if not rows:
            rows.append(blank_rule())
        return self.render(self.unbound(rows), note=note, base=base, added=added)

    def post(self, request: HttpRequest, version: int | None = None) -> HttpResponse:
        self._load_draft(version)
        posted = RuleFormSet(request.POST, prefix=RULE_PREFIX, form_kwargs=self.form_kwargs())
        if not posted.management_form.is_valid():
            # Never read a truncated form as "no rules": that would draft an empty version.
            return self.render(
                self.unbound([]),
                note="",
                base=None,
                errors=["The form arrived incomplete; reload the page and try again."],
                status=400,
            )
        rows = raw_rows(posted)
        note = request.POST.get("note", "").strip()[:500]
        base = RuleSet.objects.filter(version=_int(request.POST.get("from"))).first()
        op, _, index_text = request.POST.get("op", "save").partition("-")
        index = _int(index_text)
        if op != "save":
            focus = None
            if op == "add":
                rows.append(blank_rule())
                focus = len(rows) - 1
            elif index is not None and 0 <= index < len(rows):
                if op == "remove":
                    rows.pop(index)
                elif op == "up" and index > 0:
                    rows[index - 1], rows[index] = rows[index], rows[index - 1]
                    focus = index - 1
                elif op == "down" and index < len(rows) - 1:
                    rows[index + 1], rows[index] = rows[index], rows[index + 1]
                    focus = index + 1
            return self.render(self.unbound(rows), note=note, base=base, added=focus)

        kept = [row for row in rows if not is_blank(row)]
        formset = RuleFormSet(
            formset_data(kept), prefix=RULE_PREFIX, form_kwargs=self.form_kwargs()
        )
        errors: list[str] = []
        if formset.is_valid():
            rules = [form.to_rule() for form in formset]
            try:
                if self.draft is not None:
                    rule_set = update_draft_rule_set(
                        self.draft, actor=request.user, rules=rules, note=note
                    )
                else:
                    rule_set = draft_rule_set(actor=request.user, rules=rules, note=note)
            except ValidationError as exc:
                errors = _rule_errors(formset, exc)
            else:
                messages.success(
                    request,
                    f"Draft v{rule_set.version} saved with {len(kept)} rule"
                    f"{'s' if len(kept) != 1 else ''}. Simulate it, then publish.",
                )
                return _done(request, reverse("orders:rule_set", args=[rule_set.version]))
        return self.render(
            formset, note=note, base=base, errors=errors, status=_error_status(request)
        )

    def unbound(self, rows: list[dict]):
        return RuleFormSet(initial=rows, prefix=RULE_PREFIX, form_kwargs=self.form_kwargs())

    def render(
        self,
        formset,
        *,
        note: str,
        base: RuleSet | None,
        added: int | None = None,
        errors: list[str] | None = None,
        status: int = 200,
    ) -> HttpResponse:
        for index, form in enumerate(formset.forms):
            row = {name: form[name].value() for name in form.fields}
            form.when, form.then = describe_row(row)
            # Collapsed to a one-line summary unless the person has work to do in it.
            form.open = index == added or not row["name"] or (form.is_bound and bool(form.errors))
        template = self.template_name + ("#rule-editor" if self.request.htmx else "")
        channels = Order.objects.order_by("channel").values_list("channel", flat=True).distinct()
        action = (
            reverse("orders:rule_draft_edit", args=[self.draft.version])
            if self.draft is not None
            else reverse("orders:rule_editor")
        )
        context = {
            "formset": formset,
            "note": note,
            "base": base,
            "draft": self.draft,
            "action": action,
            "added": added,
            "errors": errors or [],
            "channels": channels,
            **orders_nav("rules"),
        }
        return render(self.request, template, context, status=status)


def _rule_errors(formset, exc: ValidationError) -> list[str]:
    """Put draft_rule_set's "rule N" errors on row N; return the rest."""
    if not hasattr(exc, "error_dict"):
        return exc.messages
    rest: list[str] = []
    forms = formset.forms
    for key, errors in exc.error_dict.items():
        number = _int(key.removeprefix("rule ").strip()) if key.startswith("rule ") else None
        if number is not None and 1 <= number <= len(forms):
            forms[number - 1].add_error(None, errors)
        else:
            rest.extend(m for e in errors for m in e.messages)
    return rest
