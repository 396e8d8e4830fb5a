"""Item master pages: SKU list and page, SKU and bundle forms, the unmapped-listing queue.

Views parse input and call catalog.services; errors the services raise are shown inline
on the form (422 for a plain POST, 200 with the fragment for htmx, which does not swap
error responses).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import Exists, F, Func, IntegerField, OuterRef, Q, QuerySet, Sum, Value
from django.db.models.functions import Coalesce, Greatest
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import NoReverseMatch, reverse
from django.views import View
from django_htmx.http import HttpResponseClientRedirect

from accounts.views import RoleRequiredMixin
from audit.models import ActivityEntry
from catalog import services
from catalog.forms import (
    Line,
    ResolveUnmappedForm,
    SKUForm,
    SKULines,
    apply_service_error,
    format_decimal,
)
from catalog.models import (
    SKU,
    BundleComponent,
    Lifecycle,
    UnmappedListing,
    UnmappedStatus,
)
from inventory import services as stock
from inventory.models import (
    Reservation,
    ReservationStatus,
    StockBalance,
    StockMovement,
    StockStatus,
    Warehouse,
)

PAGE_SIZE = 25
LEDGER_ROWS = 50
HISTORY_ROWS = 50
IMPORT_URL_NAMES = ("catalog:import", "imports:upload")


def catalog_nav(active: str) -> dict:
    """What the catalog tabs need: the open-queue count and the import page if it exists."""
    import_url = None
    # The CSV import pages ship separately; link them only once their URL is installed.
    for name in IMPORT_URL_NAMES:
        try:
            import_url = reverse(name)
        except NoReverseMatch:
            continue
        break
    return {
        "catalog_tab": active,
        "open_unmapped": UnmappedListing.objects.filter(status=UnmappedStatus.OPEN).count(),
        "import_url": import_url,
    }


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


class SKUListView(RoleRequiredMixin, View):
    permission = "catalog.view"
    template_name = "catalog/sku_list.html"

    def get(self, request: HttpRequest) -> HttpResponse:
        params = request.GET
        filters = {
            "q": params.get("q", "").strip(),
            "status": params.get("status", ""),
            "tag": params.get("tag", "").strip(),
            "bundle": params.get("bundle", ""),
            "warehouse": params.get("warehouse", ""),
        }
        warehouses = list(Warehouse.objects.all())
        warehouse = next((w for w in warehouses if w.pk == _int(filters["warehouse"])), None)

        skus = SKU.objects.select_related("product").search(filters["q"])
        if filters["status"] in Lifecycle.values:
            skus = skus.filter(status=filters["status"])
        if filters["tag"]:
            skus = skus.filter(tags__contains=[filters["tag"]])
        if filters["bundle"] in ("yes", "no"):
            skus = skus.filter(is_bundle=filters["bundle"] == "yes")
        if warehouse is not None:
            # Exists, not a join: a join would multiply the stock sums annotated below.
            skus = skus.filter(
                Exists(
                    StockBalance.objects.filter(
                        sku=OuterRef("pk"), warehouse=warehouse, quantity__gt=0
                    )
                )
            )
        page = Paginator(_with_stock(skus, warehouse), PAGE_SIZE).get_page(params.get("page"))
        _add_bundle_availability(page.object_list, warehouse)

        context = {
            "page": page,
            "filters": filters,
            "warehouse": warehouse,
            "querystring": _querystring(request),
            "any_skus": bool(page.object_list) or SKU.objects.exists(),
            **catalog_nav("skus"),
        }
        if request.htmx:
            return render(request, self.template_name + "#results", context)
        context.update(
            {"statuses": Lifecycle.choices, "warehouses": warehouses, "tags": _all_tags()}
        )
        return render(request, self.template_name, context)


def _with_stock(skus: QuerySet[SKU], warehouse: Warehouse | None) -> QuerySet[SKU]:
    """Annotate sellable on-hand and available to promise, summed over active warehouses.

    One query for the whole page: the sums are per SKU in SQL, and available follows
    inventory.services.atp (quantity − reserved − the warehouse's safety buffer, ≥ 0).
    """
    sellable = Q(balances__status=StockStatus.SELLABLE, balances__warehouse__is_active=True)
    if warehouse is not None:
        sellable &= Q(balances__warehouse=warehouse)
    atp = Greatest(
        F("balances__quantity") - F("balances__reserved") - F("balances__warehouse__safety_buffer"),
        Value(0),
    )
    return skus.annotate(
        on_hand=Coalesce(Sum("balances__quantity", filter=sellable), 0),
        available=Coalesce(Sum(atp, filter=sellable, output_field=IntegerField()), 0),
    ).order_by("code")


def _add_bundle_availability(skus: Iterable[SKU], warehouse: Warehouse | None) -> None:
    """Bundles hold no stock: show how many could be built, for the page in two queries."""
    bundles = [sku for sku in skus if sku.is_bundle]
    if not bundles:
        return
    recipes: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for bundle_id, component_id, quantity in BundleComponent.objects.filter(
        bundle__in=bundles
    ).values_list("bundle_id", "component_id", "quantity"):
        recipes[bundle_id].append((component_id, quantity))
    component_ids = {c for recipe in recipes.values() for c, _ in recipe}
    warehouse_ids = [warehouse.pk] if warehouse is not None else None
    atp = stock.available_to_promise(sku_ids=component_ids, warehouse_ids=warehouse_ids)
    stocked_at = {wh for _, wh in atp}
    for bundle in bundles:
        recipe = recipes.get(bundle.pk, [])
        # Same rule as inventory.services.bundle_availability, evaluated for many bundles.
        bundle.available = sum(
            min(atp.get((component, wh), 0) // per for component, per in recipe)
            for wh in stocked_at
            if recipe
        )


def _all_tags() -> list[str]:
    unnest = Func(F("tags"), function="unnest")
    return sorted(
        SKU.objects.annotate(tag=unnest).order_by().values_list("tag", flat=True).distinct()
    )


class SKULookupView(RoleRequiredMixin, View):
    """Suggestions for SKU code boxes (a <datalist>), matching what was typed so far."""

    permission = "catalog.view"

    def get(self, request: HttpRequest) -> HttpResponse:
        # Each box sends its own value under its own name (q, sku, line_sku…).
        typed = next((v.strip() for v in request.GET.values() if v.strip()), "")
        skus = SKU.objects.search(typed).select_related("product")[:20] if typed else []
        return render(request, "catalog/sku_list.html#sku-options", {"options": skus})


class SKUCreateView(RoleRequiredMixin, View):
    permission = "catalog.edit"
    template_name = "catalog/sku_form.html"

    def get(self, request: HttpRequest) -> HttpResponse:
        form = SKUForm(
            initial={
                "cost_currency": request.tenant.currency,
                "product": _int(request.GET.get("product")),
            }
        )
        return render(request, self.template_name, {"form": form})

    def post(self, request: HttpRequest) -> HttpResponse:
        form = SKUForm(request.POST)
        if form.is_valid():
            sku = _create_sku(form)
            if sku is not None:
                messages.success(request, f"SKU {sku.code} created.")
                return _done(request, reverse("catalog:sku_detail", args=[sku.pk]))
        return render(request, self.template_name, {"form": form}, status=422)


def _create_sku(form: SKUForm) -> SKU | None:
    """Create the product (when new) and the SKU together, or neither."""
    try:
        with transaction.atomic():
            product = form.cleaned_data["product"]
            product_fields = form.new_product()
            if product_fields is not None:
                try:
                    product = services.create_product(**product_fields)
                except ValidationError as exc:
                    form.add_error("new_product_title", exc.messages)
                    raise
            return services.create_sku(product=product, **form.sku_fields())
    except ValidationError as exc:
        if not form.errors:
            apply_service_error(form, exc)
        return None


class SKUEditView(RoleRequiredMixin, View):
    permission = "catalog.edit"
    template_name = "catalog/sku_form.html"

    def get(self, request: HttpRequest, pk: int) -> HttpResponse:
        sku = get_object_or_404(SKU.objects.select_related("product"), pk=pk)
        return render(request, self.template_name, {"form": SKUForm(sku=sku), "sku": sku})

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        sku = get_object_or_404(SKU.objects.select_related("product"), pk=pk)
        form = SKUForm(request.POST, sku=sku)
        if form.is_valid():
            try:
                sku = services.update_sku(sku, **form.sku_fields())
            except ValidationError as exc:
                apply_service_error(form, exc)
            else:
                messages.success(request, f"SKU {sku.code} saved.")
                return _done(request, reverse("catalog:sku_detail", args=[sku.pk]))
        return render(request, self.template_name, {"form": form, "sku": sku}, status=422)


class SKUDetailView(RoleRequiredMixin, View):
    permission = "catalog.view"
    template_name = "catalog/sku_detail.html"

    def get(self, request: HttpRequest, pk: int) -> HttpResponse:
        sku = get_object_or_404(SKU.objects.select_related("product"), pk=pk)
        context = {
            "sku": sku,
            "attributes": _attributes(sku),
            "listings": list(sku.listings.all()),
            "history": _history(sku),
        }
        if sku.is_bundle:
            context.update(_bundle_context(sku))
        else:
            context.update(_stock_context(sku))
        return render(request, self.template_name, context)


def _attributes(sku: SKU) -> list[tuple[str, str]]:
    """Label/value pairs for the attribute list, units spelled out."""
    dims = [sku.length, sku.width, sku.height]
    rows = [
        ("Product", sku.product.title),
        ("GTIN", sku.gtin or "—"),
        ("Options", ", ".join(f"{k}: {v}" for k, v in sku.option_values.items()) or "—"),
        ("Tags", ", ".join(sku.tags) or "—"),
        (
            "Weight",
            f"{format_decimal(sku.weight)} {sku.get_weight_unit_display()}"
            if sku.weight is not None
            else "—",
        ),
        (
            "Dimensions",
            " × ".join(format_decimal(d) if d is not None else "?" for d in dims)
            + f" {sku.get_dimension_unit_display()}"
            if any(d is not None for d in dims)
            else "—",
        ),
        (
            "Unit cost",
            f"{sku.unit_cost:.2f} {sku.cost_currency}" if sku.unit_cost is not None else "—",
        ),
        (
            "Handling",
            ", ".join(
                label
                for flag, label in ((sku.is_hazmat, "Hazmat"), (sku.is_oversize, "Oversize"))
                if flag
            )
            or "Standard",
        ),
    ]
    return rows


def _history(sku: SKU) -> list[ActivityEntry]:
    """The SKU's activity entries, each with `rows` of (field, before, after) for display.

    `before` is None when there is no earlier value to show (creation, or a detail that
    is not a [before, after] pair).
    """
    entries = list(
        ActivityEntry.objects.filter(object_type="catalog.sku", object_id=str(sku.pk))[
            :HISTORY_ROWS
        ]
    )
    for entry in entries:
        entry.rows = []
        for name, value in entry.changes.items():
            if (
                isinstance(value, list)
                and len(value) == 2
                and not entry.action.endswith(".created")
            ):
                entry.rows.append((name, _shown(value[0]), _shown(value[1])))
            elif isinstance(value, list) and len(value) == 2:
                entry.rows.append((name, None, _shown(value[1])))
            else:
                entry.rows.append((name, None, _shown(value)))
    return entries


def _shown(value: object) -> str:
    """A logged value as people read it: lists joined, option dicts as Name: value."""
    if value in (None, "", [], {}):
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items())
    if isinstance(value, list):
        # Bundle recipes are logged as [code, quantity] pairs.
        return ", ".join(
            " × ".join(str(part) for part in item) if isinstance(item, list) else str(item)
            for item in value
        )
    return str(value)


def _bundle_context(sku: SKU) -> dict:
    components = list(BundleComponent.objects.filter(bundle=sku).select_related("component"))
    buildable = stock.bundle_availability(sku)
    names = dict(Warehouse.objects.filter(pk__in=buildable).values_list("pk", "code"))
    return {
        "components": components,
        "buildable": [(names[wh], qty) for wh, qty in buildable.items()],
        "buildable_total": sum(buildable.values()),
        "reservations": Reservation.objects.filter(
            bundle_sku=sku, status=ReservationStatus.ACTIVE
        ).select_related("sku", "warehouse"),
    }


def _stock_context(sku: SKU) -> dict:
    balances = list(
        StockBalance.objects.filter(sku=sku)
        .exclude(quantity=0, reserved=0)
        .select_related("warehouse")
        .order_by("warehouse__priority", "warehouse__code", "status")
    )
    for row in balances:
        row.available = (
            stock.atp(row.quantity, row.reserved, row.warehouse.safety_buffer)
            if row.status == StockStatus.SELLABLE and row.warehouse.is_active
            else None
        )
    return {
        "balances": balances,
        "totals": {
            "quantity": sum(b.quantity for b in balances if b.status == StockStatus.SELLABLE),
            "reserved": sum(b.reserved for b in balances),
            "available": sum(b.available or 0 for b in balances),
        },
        "movements": StockMovement.objects.filter(sku=sku).select_related("warehouse")[
            :LEDGER_ROWS
        ],
        "reservations": Reservation.objects.filter(
            sku=sku, status=ReservationStatus.ACTIVE
        ).select_related("warehouse"),
    }


class BundleEditView(RoleRequiredMixin, View):
    """Set the bundle recipe: component SKUs and how many of each go in one bundle."""

    permission = "catalog.edit"
    template_name = "catalog/bundle_form.html"

    def get(self, request: HttpRequest, pk: int) -> HttpResponse:
        if request.htmx and request.GET.get("row"):
            return render(request, "catalog/_sku_lines.html#line-row", {"line": Line()})
        sku = get_object_or_404(SKU, pk=pk)
        initial = [
            Line(code=c.component.code, quantity=str(c.quantity))
            for c in BundleComponent.objects.filter(bundle=sku).select_related("component")
        ]
        lines = SKULines(
            initial=initial,
            blank_rows=1 if initial else 3,
            allow_bundles=False,
            quantity_label="Per bundle",
        )
        return render(request, self.template_name, {"sku": sku, "lines": lines})

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        sku = get_object_or_404(SKU, pk=pk)
        lines = SKULines(request.POST, allow_bundles=False, quantity_label="Per bundle")
        if lines.is_valid():
            try:
                services.set_bundle_components(sku, lines.cleaned)
            except ValidationError as exc:
                for message in exc.messages:
                    lines.add_error(None, message)
            else:
                messages.success(request, f"Bundle recipe for {sku.code} saved.")
                return _done(request, reverse("catalog:sku_detail", args=[sku.pk]))
        return render(
            request,
            self.template_name,
            {"sku": sku, "lines": lines},
            status=200 if request.htmx else 422,
        )


class UnmappedListView(RoleRequiredMixin, View):
    """External SKUs no mapping covers: map each to a SKU, or ignore it."""

    permission = "catalog.view"
    template_name = "catalog/unmapped.html"

    def context(self, row_errors: dict | None = None) -> dict:
        params = self.request.GET
        status = params.get("status", UnmappedStatus.OPEN)
        if status not in UnmappedStatus.values:
            status = UnmappedStatus.OPEN
        channel = params.get("channel", "")
        items = UnmappedListing.objects.filter(status=status).select_related("resolved_sku")
        if channel:
            items = items.filter(channel=channel)
        page = Paginator(items, PAGE_SIZE).get_page(params.get("page"))
        for item in page.object_list:
            item.form_errors = (row_errors or {}).get(item.pk, [])
        return {
            "page": page,
            "status": status,
            "statuses": UnmappedStatus.choices,
            "channel": channel,
            "channels": UnmappedListing.objects.order_by("channel")
            .values_list("channel", flat=True)
            .distinct(),
            "querystring": _querystring(self.request),
            **catalog_nav("unmapped"),
        }

    def get(self, request: HttpRequest) -> HttpResponse:
        return render(request, self.template_name, self.context())


class UnmappedResolveView(RoleRequiredMixin, View):
    permission = "catalog.edit"

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        item = get_object_or_404(UnmappedListing, pk=pk)
        form = ResolveUnmappedForm(request.POST)
        errors: list[str] = []
        if form.is_valid():
            try:
                services.resolve_unmapped(item, sku=form.cleaned_data["sku"])
            except ValidationError as exc:
                errors = exc.messages
            else:
                item.refresh_from_db()
                messages.success(
                    request, f"{item.channel} {item.external_sku} now maps to {item.resolved_sku}."
                )
        else:
            errors = [e for field_errors in form.errors.values() for e in field_errors]
        return _unmapped_response(request, item, errors)


class UnmappedIgnoreView(RoleRequiredMixin, View):
    permission = "catalog.edit"

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        item = get_object_or_404(UnmappedListing, pk=pk)
        services.ignore_unmapped(item)
        item.refresh_from_db()
        messages.info(request, f"{item.channel} {item.external_sku} ignored.")
        return _unmapped_response(request, item, [])


def _unmapped_response(request: HttpRequest, item: UnmappedListing, errors: list[str]):
    if request.htmx:
        item.form_errors = errors
        return render(request, "catalog/unmapped.html#unmapped-row", {"item": item})
    if not errors:
        return redirect("catalog:unmapped")
    view = UnmappedListView()
    view.request = request
    return render(
        request, UnmappedListView.template_name, view.context({item.pk: errors}), status=422
    )
