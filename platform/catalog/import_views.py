"""Pages for CSV import and export of the item master and opening stock.

Upload → the job page polls while a worker validates → the report, or a Confirm button →
the job page polls while a worker applies. The rules live in catalog.imports.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views import View

from accounts.views import RoleRequiredMixin
from catalog import imports
from catalog.models import ImportJob, ImportKind

# The page shows this many problems; the downloadable report has all that were kept.
REPORT_ON_PAGE = 500


class ImportForm(forms.Form):
    kind = forms.ChoiceField(
        label="The file holds",
        choices=ImportKind.choices,
        initial=ImportKind.ITEMS,
        widget=forms.RadioSelect,
    )
    file = forms.FileField(
        label="CSV file",
        help_text="UTF-8 CSV with a header row, at most 50 MB. See the formats below.",
    )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > imports.MAX_FILE_BYTES:
            raise forms.ValidationError("Files can be at most 50 MB; split this one.")
        return upload


class _Echo:
    """A file-like sink for csv.writer: each row comes back as text to stream."""

    def write(self, value: str) -> str:
        return value


def _csv_response(rows: Iterable[list[str]], filename: str) -> StreamingHttpResponse:
    writer = csv.writer(_Echo())

    def stream() -> Iterator[str]:
        # The BOM makes spreadsheet apps read UTF-8; the importer skips it.
        yield "\ufeff"
        for row in rows:
            yield writer.writerow(row)

    response = StreamingHttpResponse(stream(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def _stamp(request: HttpRequest) -> str:
    return f"{request.tenant.slug}-{timezone.localdate():%Y%m%d}"


class ImportView(RoleRequiredMixin, View):
    permission = "catalog.import"
    template_name = "catalog/import.html"

    def context(self, form: ImportForm) -> dict:
        jobs = ImportJob.objects.select_related("created_by")
        return {
            "form": form,
            "page": Paginator(jobs, 20).get_page(self.request.GET.get("page")),
            "max_rows": imports.MAX_ROWS,
        }

    def get(self, request: HttpRequest) -> HttpResponse:
        return render(request, self.template_name, self.context(ImportForm()))

    def post(self, request: HttpRequest) -> HttpResponse:
        form = ImportForm(request.POST, request.FILES)
        if form.is_valid():
            try:
                job = imports.create_job(
                    kind=form.cleaned_data["kind"],
                    upload=form.cleaned_data["file"],
                    user=request.user,
                )
            except ValidationError as exc:
                form.add_error("file", exc)
            else:
                return redirect("imports:job", pk=job.pk)
        return render(request, self.template_name, self.context(form), status=422)


class ImportJobView(RoleRequiredMixin, View):
    """The job page; htmx polls it for the status fragment while a worker runs."""

    permission = "catalog.import"
    template_name = "catalog/import_job.html"

    def get(self, request: HttpRequest, pk: int) -> HttpResponse:
        job = get_object_or_404(
            ImportJob.objects.select_related("created_by", "confirmed_by"), pk=pk
        )
        problems = job.report[:REPORT_ON_PAGE]
        context = {
            "job": job,
            "progress": imports.job_progress(job),
            "problems": problems,
            "hidden_problems": job.error_count - len(problems),
        }
        template = f"{self.template_name}#job-status" if request.htmx else self.template_name
        return render(request, template, context)

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        job = get_object_or_404(ImportJob, pk=pk)
        try:
            imports.confirm_job(job, user=request.user)
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        else:
            messages.success(
                request, "Import confirmed. It runs in the background; follow it here."
            )
        return redirect("imports:job", pk=job.pk)


class ReportView(RoleRequiredMixin, View):
    permission = "catalog.import"

    def get(self, request: HttpRequest, pk: int) -> StreamingHttpResponse:
        job = get_object_or_404(ImportJob, pk=pk)
        columns = ["line", "column", "value", "code", "message"]
        rows = ([str(p[c]) for c in columns] for p in job.report)
        return _csv_response([columns, *rows], f"import-{job.pk}-problems.csv")


class TemplateView(RoleRequiredMixin, View):
    permission = "catalog.import"

    def get(self, request: HttpRequest, kind: str) -> StreamingHttpResponse:
        rows = imports.template(kind)
        if rows is None:
            raise Http404("No template of that kind.")
        return _csv_response(rows, f"{kind}-template.csv")


class ExportItemsView(RoleRequiredMixin, View):
    permission = "catalog.import"

    def get(self, request: HttpRequest) -> StreamingHttpResponse:
        return _csv_response(imports.iter_items_csv(), f"items-{_stamp(request)}.csv")


class ExportStockView(RoleRequiredMixin, View):
    permission = "catalog.import"

    def get(self, request: HttpRequest) -> StreamingHttpResponse:
        return _csv_response(imports.iter_stock_csv(), f"stock-{_stamp(request)}.csv")
