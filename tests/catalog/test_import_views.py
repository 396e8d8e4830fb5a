"""Import/export pages: upload → validation report → confirm → applied, and who may."""

from __future__ import annotations

import csv
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.http import StreamingHttpResponse
from django.urls import reverse
from django_tenants.utils import schema_context

from accounts.roles import Role
from catalog.models import SKU, ImportJob, ImportStatus
from catalog.services import create_product, create_sku
from inventory import services as stock
from tests.catalog.imports_support import (
    EXISTING_GTIN,
    eager_celery,  # noqa: F401 - fixture
    good_items,
    items_csv,
    media,  # noqa: F401 - fixture
    twenty_bad_items,
)
from tests.conftest import brand_client, make_user
from tests.factories import WarehouseFactory

pytestmark = pytest.mark.usefixtures("media", "eager_celery")


@pytest.fixture
def existing(brand_a):
    with schema_context(brand_a.schema_name):
        product = create_product(title="Existing", status="active")
        return create_sku(product=product, code="EXIST-1", gtin=EXISTING_GTIN)


@pytest.fixture
def owner(brand_a, owner_a):
    return brand_client(brand_a, owner_a)


def post_file(client, data: bytes, kind: str = "items", capture=None):
    upload = SimpleUploadedFile(f"{kind}.csv", data, content_type="text/csv")
    with capture(execute=True):
        return client.post(reverse("imports:upload"), {"kind": kind, "file": upload})


def job_of(response, brand) -> ImportJob:
    pk = int(response["Location"].rstrip("/").rsplit("/", 1)[-1])
    with schema_context(brand.schema_name):
        return ImportJob.objects.get(pk=pk)


def streamed(response) -> list[list[str]]:
    assert isinstance(response, StreamingHttpResponse)
    text = b"".join(response.streaming_content).decode()
    assert text.startswith("\ufeff")
    return list(csv.reader(io.StringIO(text[1:], newline="")))


def test_upload_report_confirm_applied(
    brand_a, owner, existing, django_capture_on_commit_callbacks
):
    # given: the upload page with its formats and templates
    page = owner.get(reverse("imports:upload"))
    assert page.status_code == 200
    for name in ("sku", "bundle_components", "warehouse"):
        assert f'<td class="mono">{name}</td>'.encode() in page.content
    assert reverse("imports:template", args=["items"]).encode() in page.content
    assert reverse("imports:export_stock").encode() in page.content

    # when: a file with 20 bad rows
    bad, expected = twenty_bad_items()
    response = post_file(owner, bad, capture=django_capture_on_commit_callbacks)

    # then: the job page lists every problem with line, column and reason
    assert response.status_code == 302
    job = job_of(response, brand_a)
    assert job.status == ImportStatus.INVALID
    body = owner.get(response["Location"]).content.decode()
    assert "Fix the 20 problems" in body
    for line, column, code in expected:
        assert f'<td>{line}</td><td class="mono">{column or "(file)"}</td>' in body
        assert f'<td class="mono">{code}</td>' in body
    assert "SKU tee-005 is already on line 6." in body
    assert "Confirm and import" not in body
    report = streamed(owner.get(reverse("imports:report", args=[job.pk])))
    assert report[0] == ["line", "column", "value", "code", "message"]
    assert {(int(r[0]), r[1], r[3]) for r in report[1:]} == expected
    with schema_context(brand_a.schema_name):
        assert SKU.objects.count() == 1

    # when: the corrected file
    response = post_file(owner, items_csv(good_items()), capture=django_capture_on_commit_callbacks)
    job = job_of(response, brand_a)

    # then: ready, with the plan and a Confirm button
    assert job.status == ImportStatus.READY
    body = owner.get(response["Location"]).content.decode()
    assert "Importing will create <strong>32</strong>" in body
    assert "Confirm and import 32 rows" in body
    assert 'hx-trigger="every 1s"' not in body

    # when: confirmed
    with django_capture_on_commit_callbacks(execute=True):
        confirmed = owner.post(reverse("imports:job", args=[job.pk]))

    # then
    assert confirmed.status_code == 302
    body = owner.get(confirmed["Location"]).content.decode()
    assert "Imported 32 rows: <strong>32</strong> created" in body
    with schema_context(brand_a.schema_name):
        assert ImportJob.objects.get(pk=job.pk).status == ImportStatus.APPLIED
        assert SKU.objects.count() == 33
    # and: confirming twice is refused with a message, not an error page
    again = owner.post(reverse("imports:job", args=[job.pk]), follow=True)
    assert "not ready to import" in again.content.decode()


def test_job_status_fragment_polls_while_a_worker_runs(brand_a, owner_a, owner):
    # given: a job a worker is applying, with progress in the cache
    with schema_context(brand_a.schema_name):
        job = ImportJob.objects.create(
            kind="items", filename="big.csv", status=ImportStatus.APPLYING, total_rows=4000
        )
        from catalog import imports

        imports._reporter(job.pk)("Writing", 1000, 4000)
    url = reverse("imports:job", args=[job.pk])

    # when: htmx polls
    fragment = owner.get(url, HTTP_HX_REQUEST="true").content.decode()

    # then: only the fragment, still polling, with the progress bar
    assert fragment.lstrip().startswith('<div id="job-status"')
    assert "<html" not in fragment
    assert f'hx-get="{url}" hx-trigger="every 1s"' in fragment
    assert '<progress id="import-progress" max="4000" value="1000">25%</progress>' in fragment
    assert "Writing: 1000 of 4000 rows" in fragment

    # when: the job is done
    with schema_context(brand_a.schema_name):
        ImportJob.objects.filter(pk=job.pk).update(
            status=ImportStatus.APPLIED, processed_rows=4000, counts={"created": 4000}
        )
    fragment = owner.get(url, HTTP_HX_REQUEST="true").content.decode()

    # then: the fragment stops polling
    assert "hx-trigger" not in fragment
    assert "Imported 4000 rows" in fragment


def test_exports_stream_csv_that_imports_back_unchanged(
    brand_a, owner, existing, django_capture_on_commit_callbacks
):
    # given
    response = post_file(owner, items_csv(good_items()), capture=django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        owner.post(reverse("imports:job", args=[job_of(response, brand_a).pk]))
    with schema_context(brand_a.schema_name):
        warehouse = WarehouseFactory(code="MAIN")
        stock.receive(sku=SKU.objects.get(code="TEE-001"), warehouse=warehouse, quantity=7)

    # when
    items = owner.get(reverse("imports:export_items"))
    snapshot = owner.get(reverse("imports:export_stock"))

    # then
    assert items["Content-Type"] == "text/csv; charset=utf-8"
    assert items["Content-Disposition"].startswith('attachment; filename="items-alpha-')
    rows = streamed(items)
    assert len(rows) == 34 and rows[0][0] == "sku"
    assert streamed(snapshot) == [
        ["sku", "warehouse", "status", "quantity", "reserved", "available"],
        ["TEE-001", "MAIN", "sellable", "7", "0", "7"],
    ]
    export = "".join(",".join(f'"{c}"' for c in r) + "\r\n" for r in rows).encode()
    job = job_of(post_file(owner, export, capture=django_capture_on_commit_callbacks), brand_a)
    assert job.counts == {"created": 0, "updated": 0, "unchanged": 33}


def test_templates_download_and_import_cleanly(brand_a, owner, django_capture_on_commit_callbacks):
    # given
    items = streamed(owner.get(reverse("imports:template", args=["items"])))
    opening = streamed(owner.get(reverse("imports:template", args=["opening_stock"])))
    assert owner.get(reverse("imports:template", args=["nope"])).status_code == 404

    def as_bytes(rows: list[list[str]]) -> bytes:
        out = io.StringIO()
        csv.writer(out).writerows(rows)
        return out.getvalue().encode()

    # when / then: the item template imports as it is
    job = job_of(
        post_file(owner, as_bytes(items), capture=django_capture_on_commit_callbacks), brand_a
    )
    assert (job.status, job.counts["created"]) == (ImportStatus.READY, 3)
    with django_capture_on_commit_callbacks(execute=True):
        owner.post(reverse("imports:job", args=[job.pk]))
    with schema_context(brand_a.schema_name):
        WarehouseFactory(code="MAIN")

    # and: so does the opening-stock one, once its SKUs and warehouse exist
    job = job_of(
        post_file(owner, as_bytes(opening), "opening_stock", django_capture_on_commit_callbacks),
        brand_a,
    )
    assert job.status == ImportStatus.READY, job.report


def test_upload_form_errors_are_shown_inline(brand_a, owner):
    response = owner.post(reverse("imports:upload"), {"kind": "items"})

    assert response.status_code == 422
    assert 'id="id_file-errors"' in response.content.decode()
    with schema_context(brand_a.schema_name):
        assert not ImportJob.objects.exists()


def test_viewer_is_refused_every_import_page_and_nothing_changes(brand_a, owner_a):
    # given
    with schema_context(brand_a.schema_name):
        job = ImportJob.objects.create(kind="items", filename="x.csv", status=ImportStatus.READY)
    viewer = brand_client(brand_a, make_user(brand_a, role=Role.VIEWER))
    upload = SimpleUploadedFile("items.csv", items_csv(good_items()), content_type="text/csv")
    requests = [
        ("get", reverse("imports:upload"), {}),
        ("post", reverse("imports:upload"), {"kind": "items", "file": upload}),
        ("get", reverse("imports:job", args=[job.pk]), {}),
        ("post", reverse("imports:job", args=[job.pk]), {}),
        ("get", reverse("imports:report", args=[job.pk]), {}),
        ("get", reverse("imports:template", args=["items"]), {}),
        ("get", reverse("imports:export_items"), {}),
        ("get", reverse("imports:export_stock"), {}),
    ]

    # when / then
    for method, url, data in requests:
        assert getattr(viewer, method)(url, data).status_code == 403, (method, url)
    with schema_context(brand_a.schema_name):
        assert list(ImportJob.objects.values_list("pk", "status")) == [(job.pk, "ready")]
    # and: the section is not in a viewer's navigation, but is in a buyer's
    assert b">Imports</a>" not in viewer.get(reverse("dashboard")).content
    buyer = brand_client(brand_a, make_user(brand_a, role=Role.BUYER))
    assert b">Imports</a>" in buyer.get(reverse("dashboard")).content
    assert buyer.get(reverse("imports:upload")).status_code == 200


def test_another_brands_job_is_not_found(brand_a, brand_b, owner_b):
    with schema_context(brand_a.schema_name):
        job = ImportJob.objects.create(kind="items", filename="x.csv", status=ImportStatus.READY)
    other = brand_client(brand_b, owner_b)

    for name in ("imports:job", "imports:report"):
        assert other.get(reverse(name, args=[job.pk])).status_code == 404
    assert other.post(reverse("imports:job", args=[job.pk])).status_code == 404
