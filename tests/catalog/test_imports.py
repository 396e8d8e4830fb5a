"""CSV import/export services: validation report, all-or-nothing apply, idempotent upsert."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.files.base import ContentFile
from django.db.models import Sum
from django_tenants.utils import schema_context

from audit.models import ActivityEntry
from catalog import imports, tasks
from catalog.models import SKU, BundleComponent, ImportJob, ImportStatus, Product
from catalog.services import create_product, create_sku, set_bundle_components
from inventory import services as stock
from inventory.models import StockBalance, StockMovement
from inventory.services import Reference, ReserveLine
from tests.catalog.imports_support import (
    EXISTING_GTIN,
    eager_celery,  # noqa: F401 - fixture
    good_items,
    gtin13,
    item,
    items_csv,
    media,  # noqa: F401 - fixture
    stock_csv,
    to_csv,
    twenty_bad_items,
)
from tests.factories import SKUFactory, WarehouseFactory
from workers.base import TenantContextMissing

pytestmark = pytest.mark.usefixtures("media")


@pytest.fixture
def alpha(brand_a, owner_a):
    with schema_context(brand_a.schema_name):
        yield owner_a


@pytest.fixture
def existing(alpha):
    """A SKU only in the database, used as a component by the test files."""
    product = create_product(title="Existing", status="active")
    return create_sku(product=product, code="EXIST-1", gtin=EXISTING_GTIN)


def upload(data: bytes, user, kind: str = "items") -> ImportJob:
    return imports.create_job(kind=kind, upload=ContentFile(data, name=f"{kind}.csv"), user=user)


def run(data: bytes, user, kind: str = "items") -> ImportJob:
    """Upload, validate, confirm and apply through the services the tasks call."""
    job = imports.validate_job(upload(data, user, kind).pk)
    assert job.status == ImportStatus.READY, job.report[:5]
    imports.confirm_job(job, user=user)
    return imports.apply_job(job.pk)


def catalog_state() -> list:
    return [
        list(
            SKU.objects.order_by("code").values_list(
                "code", "product__title", "gtin", "weight", "unit_cost", "is_bundle", "updated_at"
            )
        ),
        list(BundleComponent.objects.order_by("pk").values_list("bundle__code", "component__code")),
        Product.objects.count(),
    ]


def problems(job: ImportJob) -> set[tuple[int, str, str]]:
    return {(p["line"], p["column"], p["code"]) for p in job.report}


# --- Validation --------------------------------------------------------------------------


def test_twenty_bad_rows_are_all_reported_and_nothing_is_written(alpha, existing):
    # given
    data, expected = twenty_bad_items()
    assert len(expected) == 20
    before, activity = catalog_state(), ActivityEntry.objects.exclude(action__startswith="import.")
    activity_before = activity.count()

    # when
    job = imports.validate_job(upload(data, alpha).pk)

    # then: exactly those 20, each with line, column, code and a message
    assert job.status == ImportStatus.INVALID
    assert problems(job) == expected
    assert job.error_count == 20
    assert all(p["message"] for p in job.report)
    assert [p["line"] for p in job.report] == sorted(p["line"] for p in job.report)
    assert job.total_rows == 32
    # and: nothing was written, and confirming is refused
    assert catalog_state() == before
    assert activity.count() == activity_before
    with pytest.raises(imports.ValidationError):
        imports.confirm_job(job, user=alpha)


def test_corrected_file_imports_fully_and_a_second_import_changes_nothing(alpha, existing):
    # given
    data = items_csv(good_items())

    # when
    job = run(data, alpha)

    # then: 32 SKUs, 7 products, two bundles with their recipes
    assert job.status == ImportStatus.APPLIED
    assert job.counts == {"created": 32, "updated": 0, "unchanged": 0}
    assert job.processed_rows == job.total_rows == 32
    assert SKU.objects.count() == 33
    assert set(Product.objects.values_list("title", flat=True)) == {
        "Existing",
        *(f"Tee {n}" for n in range(1, 7)),
        "Tee pack",
    }
    tee = SKU.objects.get(code="TEE-002")
    assert (tee.product.title, tee.gtin, tee.weight, tee.unit_cost, tee.cost_currency) == (
        "Tee 1",
        gtin13(2),
        Decimal("180.500"),
        Decimal("4.2000"),
        "USD",
    )
    assert tee.option_values == {"Colour": "Green", "Size": "S2"}
    assert tee.tags == ["summer", "cotton"]
    assert SKU.objects.get(code="TEE-010").is_oversize is True
    recipes = {
        b: sorted(
            BundleComponent.objects.filter(bundle__code=b).values_list(
                "component__code", "quantity"
            )
        )
        for b in ("PACK-1", "PACK-2")
    }
    assert recipes == {
        "PACK-1": [("TEE-001", 2), ("TEE-002", 1)],
        "PACK-2": [("EXIST-1", 1), ("TEE-003", 1)],
    }
    assert set(SKU.objects.filter(is_bundle=True).values_list("code", flat=True)) == {
        "PACK-1",
        "PACK-2",
    }
    # and: the activity the services would write, per SKU, plus one summary
    actions = list(
        ActivityEntry.objects.filter(request_id=f"import-{job.pk}").values_list("action", flat=True)
    )
    assert sorted(set(actions)) == [
        "import.applied",
        "product.created",
        "sku.bundle_set",
        "sku.created",
    ]
    assert [actions.count(a) for a in ("product.created", "sku.created", "sku.bundle_set")] == [
        7,
        32,
        2,
    ]
    created = ActivityEntry.objects.get(action="sku.created", object_repr="TEE-002")
    assert created.changes["gtin"] == [None, gtin13(2)]
    assert created.changes["unit_cost"] == [None, "4.20"]
    assert created.actor_id == str(alpha.pk)
    summary = ActivityEntry.objects.get(action="import.applied")
    assert summary.changes == {
        "kind": "items",
        "file": job.filename,
        "rows": 32,
        "created": 32,
        "updated": 0,
        "unchanged": 0,
    }

    # when: the same file again
    state, entries = catalog_state(), ActivityEntry.objects.count()
    again = run(data, alpha)

    # then: every row unchanged, not one write beyond the job's own three entries
    assert again.counts == {"created": 0, "updated": 0, "unchanged": 32}
    assert catalog_state() == state
    assert list(ActivityEntry.objects.order_by("id").values_list("action", flat=True))[
        entries:
    ] == [
        "import.uploaded",
        "import.confirmed",
        "import.applied",
    ]


def test_changed_rows_update_with_per_field_history_like_update_sku(alpha, existing):
    # given: an imported catalogue
    run(items_csv(good_items()), alpha)
    rows = good_items()
    rows[0].update(unit_cost="4.50", tags="summer", title="Renamed")
    rows[1].update(gtin="", product="Tee 2")  # moves to another product, drops its GTIN
    rows[2].update(gtin=gtin13(2))  # …and TEE-003 takes that GTIN in the same file
    rows[30].update(bundle_components="TEE-001*3")
    rows[31].update(bundle_components="")  # PACK-2 is an ordinary SKU again
    entries = ActivityEntry.objects.count()

    # when
    job = run(items_csv(rows), alpha)

    # then
    assert job.counts == {"created": 0, "updated": 5, "unchanged": 27}
    first = SKU.objects.get(code="TEE-001")
    assert (first.unit_cost, first.tags, first.title) == (Decimal("4.5"), ["summer"], "Renamed")
    assert SKU.objects.get(code="TEE-002").gtin is None
    assert SKU.objects.get(code="TEE-002").product.title == "Tee 2"
    assert SKU.objects.get(code="TEE-003").gtin == gtin13(2)
    assert list(
        BundleComponent.objects.filter(bundle__code="PACK-1").values_list(
            "component__code", "quantity"
        )
    ) == [("TEE-001", 3)]
    assert not SKU.objects.get(code="PACK-2").is_bundle
    assert not BundleComponent.objects.filter(bundle__code="PACK-2").exists()
    new = {
        (e.action, e.object_repr): e.changes
        for e in ActivityEntry.objects.order_by("id")[entries:]
        if not e.action.startswith("import.")
    }
    assert new == {
        ("sku.updated", "TEE-001"): {
            "title": ["Tee number 1", "Renamed"],
            "tags": [["summer", "cotton"], ["summer"]],
            "unit_cost": ["4.2000", "4.50"],
        },
        ("sku.updated", "TEE-002"): {"gtin": [gtin13(2), None], "product": ["Tee 1", "Tee 2"]},
        ("sku.updated", "TEE-003"): {"gtin": [None, gtin13(2)]},
        ("sku.bundle_set", "PACK-1"): {
            "components": [[["TEE-001", 2], ["TEE-002", 1]], [["TEE-001", 3]]]
        },
        ("sku.bundle_set", "PACK-2"): {"components": [[["EXIST-1", 1], ["TEE-003", 1]], []]},
    }


def test_only_the_columns_in_the_header_are_compared_and_written(alpha, existing):
    # given
    run(items_csv(good_items()), alpha)
    partial = to_csv(["SKU", "Unit Cost"], [["tee-001", "5"], ["TEE-002", "4.2"]])

    # when: a file with just sku and unit_cost (header spelled loosely, codes in any case)
    job = run(partial, alpha)

    # then: one cost changed; currency, title, recipes and everything else kept
    assert job.counts == {"created": 0, "updated": 1, "unchanged": 1}
    tee = SKU.objects.get(code="TEE-001")
    assert (tee.unit_cost, tee.cost_currency, tee.title) == (Decimal("5"), "USD", "Tee number 1")
    assert SKU.objects.get(code="PACK-1").is_bundle


def test_bundles_resolve_components_defined_later_in_the_same_file(alpha):
    # given: the bundle comes before its components
    rows = [
        item("KIT", product="Kit", bundle_components="part-a*2; PART-B"),
        item("PART-A", product="Part"),
        item("PART-B", product="Part"),
    ]

    # when
    run(items_csv(rows), alpha)

    # then
    kit = SKU.objects.get(code="KIT")
    assert kit.is_bundle
    assert sorted(kit.components.values_list("component__code", "quantity")) == [
        ("PART-A", 2),
        ("PART-B", 1),
    ]


def test_bundle_rules_against_the_database(alpha, existing):
    # given: a database bundle using EXIST-1, and a stocked SKU
    box = create_sku(product=existing.product, code="BOX")
    set_bundle_components(box, [(existing, 1)])
    stocked = create_sku(product=existing.product, code="STOCKED")
    stock.receive(sku=stocked, warehouse=WarehouseFactory(), quantity=5)
    rows = [
        item("EXIST-1", product="Existing", gtin=EXISTING_GTIN, bundle_components="NEW-1"),
        item("NEW-1", product="New"),
        item("NEW-2", product="New", bundle_components="BOX*1;NEW-2*1;NEW-1*1;NEW-1;X*0"),
        item("STOCKED", product="Existing", bundle_components="NEW-1"),
    ]

    # when
    job = imports.validate_job(upload(items_csv(rows), alpha).pk)

    # then
    assert problems(job) == {
        (2, "bundle_components", "nested_bundle"),  # EXIST-1 is a component of BOX
        (4, "bundle_components", "invalid_component"),  # NEW-2 contains itself
        (4, "bundle_components", "invalid_component"),  # NEW-1 twice, X*0
        (4, "bundle_components", "nested_bundle"),  # BOX is a bundle
        (5, "bundle_components", "bundle_has_stock"),
    }
    assert sorted(p["value"] for p in job.report if p["code"] == "invalid_component") == [
        "NEW-1",
        "NEW-2*1",
        "X*0",
    ]


def test_file_level_problems_are_one_clear_entry(alpha):
    cases = {
        b"sku,product,colour,sku\r\nA,B,C,D\r\n": "bad_header",
        b"product,title\r\nA,B\r\n": "bad_header",
        b"sku;product\r\nA;B\r\n": "bad_header",
        b"sku,option1_name\r\nA,B\r\n": "bad_header",
        b"": "empty_file",
        b"sku,product\r\n": "empty_file",
        b"sku,product\r\nA,caf\xe9\r\n": "not_utf8",
        "sku,product\r\nA,B\r\n".encode("utf-16"): "not_utf8",
        b'sku,product\r\nA,"B\x00"\r\n': "malformed_csv",
        b'sku,product\r\nA,"B"x\r\n': "malformed_csv",
        b'sku,product\r\nA,"B\r\n': "malformed_csv",
    }
    for data, code in cases.items():
        job = imports.validate_job(upload(data, alpha).pk)
        assert job.status == ImportStatus.INVALID, data
        assert [(p["column"], p["code"]) for p in job.report] == [("", code)], data
    header = imports.validate_job(upload(b"sku,product,colour,sku\r\nA,B,C,D\r\n", alpha).pk)
    assert header.report[0]["line"] == 1
    assert "Unknown columns: colour." in header.report[0]["message"]
    assert "Columns named twice: sku." in header.report[0]["message"]
    latin = imports.validate_job(upload(b"sku,product\r\nA,B\r\nC,caf\xe9\r\n", alpha).pk)
    assert latin.report[0]["line"] == 3


def test_bom_multiline_fields_and_blank_lines_keep_file_line_numbers(alpha):
    # given: a BOM, a title spanning two lines, a blank line, then a bad weight
    data = (
        '\ufeffsku,product,title,weight\r\nA-1,Tee,"two\r\nlines",1\r\n\r\nA-2,Tee,ok,heavy\r\n'
    ).encode()

    # when
    job = imports.validate_job(upload(data, alpha).pk)

    # then: the bad row is reported on line 5, where an editor shows it
    assert problems(job) == {(5, "weight", "malformed_number")}
    assert job.report[0]["value"] == "heavy"


def test_a_gtin_held_by_a_sku_outside_the_file_is_refused_at_apply_too(alpha, existing):
    # given: a validated file, then someone takes its GTIN before it is confirmed
    job = imports.validate_job(upload(items_csv([item("NEW-1", gtin=gtin13(1))]), alpha).pk)
    assert job.status == ImportStatus.READY
    imports.confirm_job(job, user=alpha)
    create_sku(product=existing.product, code="SNEAKY", gtin=gtin13(1))

    # when
    job = imports.apply_job(job.pk)

    # then: re-checked under lock, nothing imported, the report says why
    assert job.status == ImportStatus.INVALID
    assert problems(job) == {(2, "gtin", "gtin_in_use")}
    assert not SKU.objects.filter(code="NEW-1").exists()


# --- Opening stock -------------------------------------------------------------------------


@pytest.fixture
def stock_world(alpha):
    skus = [SKUFactory(code=f"S-{i}") for i in range(1, 4)]
    kit = SKUFactory(code="KIT-1")
    set_bundle_components(kit, [(skus[0], 1)])
    return skus, WarehouseFactory(code="MAIN"), WarehouseFactory(code="EAST")


def test_opening_stock_imports_target_levels_and_a_second_import_posts_nothing(alpha, stock_world):
    # given
    (s1, s2, s3), main, east = stock_world
    stock.receive(sku=s3, warehouse=main, quantity=4)  # already there: only the difference
    data = stock_csv(
        [
            ["S-1", "MAIN", "10", "sellable"],
            ["s-1", "main", "2", "damaged"],
            ["S-2", "EAST", "7", ""],
            ["S-3", "MAIN", "9", "sellable"],
            ["S-3", "EAST", "0", "sellable"],
        ]
    )

    # when
    job = run(data, alpha, kind="opening_stock")

    # then
    assert job.counts["created"] == 3 and job.counts["updated"] == 1
    assert job.counts["unchanged"] == 1
    assert (job.counts["units_in"], job.counts["units_out"]) == (24, 0)
    levels = set(
        StockBalance.objects.exclude(quantity=0).values_list(
            "sku__code", "warehouse__code", "status", "quantity"
        )
    )
    assert levels == {
        ("S-1", "MAIN", "sellable", 10),
        ("S-1", "MAIN", "damaged", 2),
        ("S-2", "EAST", "sellable", 7),
        ("S-3", "MAIN", "sellable", 9),
    }
    opening = StockMovement.objects.filter(reason_code="opening")
    assert set(opening.values_list("kind", flat=True)) == {"receipt"}
    assert set(opening.values_list("reference_type", "reference_id")) == {("import", str(job.pk))}
    assert opening.aggregate(t=Sum("quantity"))["t"] == 24
    # the ledger still sums to the balances
    for balance in StockBalance.objects.all():
        moved = StockMovement.objects.filter(
            sku=balance.sku, warehouse=balance.warehouse, status=balance.status
        ).aggregate(t=Sum("quantity"))["t"]
        assert (moved or 0) == balance.quantity
    summary = ActivityEntry.objects.get(action="import.applied")
    assert summary.changes["units_in"] == 24 and len(summary.changes["operations"]) == 1

    # when: the same file again
    movements, entries = StockMovement.objects.count(), ActivityEntry.objects.count()
    again = run(data, alpha, kind="opening_stock")

    # then: nothing posted, only the job's own entries
    assert again.counts == {
        "created": 0,
        "updated": 0,
        "unchanged": 5,
        "units_in": 0,
        "units_out": 0,
        "operations": [],
    }
    assert StockMovement.objects.count() == movements
    assert ActivityEntry.objects.count() == entries + 3

    # when: a lower target
    run(stock_csv([["S-1", "MAIN", "6", ""]]), alpha, kind="opening_stock")

    # then: the difference goes out as an adjustment
    last = StockMovement.objects.order_by("-id").first()
    assert (last.kind, last.quantity, last.balance_after, last.reason_code) == (
        "adjustment",
        -4,
        6,
        "opening",
    )


def test_opening_stock_report_names_every_bad_row(alpha, stock_world):
    # given
    (s1, _, _), main, _ = stock_world
    stock.receive(sku=s1, warehouse=main, quantity=5)
    stock.reserve(
        lines=[ReserveLine(s1, main, 3)], kind="manual_hold", reference=Reference("hold", "1")
    )
    data = stock_csv(
        [
            ["S-1", "MAIN", "2", ""],  # below the 3 reserved
            ["S-2", "NOWHERE", "1", ""],
            ["S-2", "MAIN", "-1", ""],
            ["S-2", "EAST", "2.5", ""],
            ["NOPE", "MAIN", "1", ""],
            ["S-3", "MAIN", "1", "lost"],
            ["S-3", "MAIN", "1", "in_transit"],
            ["KIT-1", "MAIN", "1", ""],
            ["S-3", "EAST", "", ""],
            ["S-3", "EAST", "1", ""],
            ["s-3", "east", "2", "sellable"],
        ]
    )
    balances = list(StockBalance.objects.values_list("pk", "quantity", "reserved"))

    # when
    job = imports.validate_job(upload(data, alpha, "opening_stock").pk)

    # then
    assert problems(job) == {
        (2, "quantity", "below_reserved"),
        (3, "warehouse", "unknown_warehouse"),
        (4, "quantity", "negative_quantity"),
        (5, "quantity", "malformed_number"),
        (6, "sku", "unknown_sku"),
        (7, "status", "unknown_status"),
        (8, "status", "invalid_status"),
        (9, "sku", "bundle_has_no_stock"),
        (10, "quantity", "required"),
        (12, "sku", "duplicate_row"),
    }
    assert list(StockBalance.objects.values_list("pk", "quantity", "reserved")) == balances


def test_opening_stock_with_twenty_bad_rows_then_the_fixed_file_imports_once(alpha, stock_world):
    # given: 12 SKUs at MAIN and EAST, 24 rows; OS-05 at MAIN holds 8 with 6 reserved
    _, main, east = stock_world
    skus = [SKUFactory(code=f"OS-{i:02d}") for i in range(1, 13)]
    stock.receive(sku=skus[4], warehouse=main, quantity=8)
    stock.reserve(
        lines=[ReserveLine(skus[4], main, 6)], kind="manual_hold", reference=Reference("h", "1")
    )
    pairs = [(sku, wh) for sku in skus for wh in (main, east)]
    good = [
        [sku.code, wh.code, str(10 + n), "damaged" if n % 5 == 0 else "sellable"]
        for n, (sku, wh) in enumerate(pairs)
    ]
    rows = [list(row) for row in good]
    expected: set[tuple[int, str, str]] = set()

    def breaks(n: int, column: str, value: str, code: str) -> None:
        rows[n][("sku", "warehouse", "quantity", "status").index(column)] = value
        expected.add((n + 2, column, code))  # data row n is on line n + 2

    breaks(4, "quantity", "-4", "negative_quantity")
    breaks(5, "warehouse", "NOWHERE", "unknown_warehouse")
    breaks(6, "quantity", "1,5", "malformed_number")
    breaks(7, "quantity", "2.5", "malformed_number")
    breaks(8, "quantity", "5", "below_reserved")  # OS-05 at MAIN: 6 are reserved
    breaks(9, "sku", "NOPE-1", "unknown_sku")
    breaks(10, "sku", "KIT-1", "bundle_has_no_stock")
    breaks(11, "sku", "", "required")
    breaks(12, "warehouse", "", "required")
    breaks(13, "quantity", "", "required")
    breaks(14, "status", "lost", "unknown_status")
    breaks(15, "status", "in_transit", "invalid_status")
    breaks(16, "quantity", "2000000000", "out_of_range")
    breaks(17, "warehouse", "WEST", "unknown_warehouse")
    breaks(18, "quantity", "ten", "malformed_number")
    rows[19][1:] = ["main", "8", "Damaged"]
    breaks(19, "sku", "os-01", "duplicate_row")  # line 2's SKU, warehouse and status
    breaks(20, "quantity", "-1", "negative_quantity")
    breaks(21, "quantity", "1e3", "malformed_number")
    breaks(22, "status", "sold", "unknown_status")
    lines = stock_csv(rows).split(b"\r\n")
    lines[24] = lines[24].rsplit(b",", 1)[0]  # row 23 loses its status field
    expected.add((25, "", "wrong_field_count"))
    balances = list(StockBalance.objects.order_by("pk").values_list("pk", "quantity", "reserved"))
    movements = StockMovement.objects.count()

    # when
    job = imports.validate_job(upload(b"\r\n".join(lines), alpha, "opening_stock").pk)

    # then: all 20 named, each with line, column, code and message; nothing written
    assert job.status == ImportStatus.INVALID
    assert len(expected) == 20 and job.error_count == 20
    assert problems(job) == expected
    assert all(p["message"] for p in job.report)
    with pytest.raises(imports.ValidationError):
        imports.confirm_job(job, user=alpha)
    assert StockMovement.objects.count() == movements
    assert (
        list(StockBalance.objects.order_by("pk").values_list("pk", "quantity", "reserved"))
        == balances
    )

    # when: the corrected file
    job = run(stock_csv(good), alpha, kind="opening_stock")

    # then: every row is at its level, through ledger movements
    assert (job.counts["created"], job.counts["updated"], job.counts["unchanged"]) == (23, 1, 0)
    levels = {(code, wh, status): int(quantity) for code, wh, quantity, status in good}
    assert {
        (b.sku.code, b.warehouse.code, b.status): b.quantity
        for b in StockBalance.objects.filter(sku__code__startswith="OS-").exclude(quantity=0)
    } == levels
    assert StockMovement.objects.filter(reference_id=str(job.pk)).count() == 24

    # when: the same file again
    movements = StockMovement.objects.count()
    again = run(stock_csv(good), alpha, kind="opening_stock")

    # then
    assert (again.counts["unchanged"], again.counts["operations"]) == (24, [])
    assert StockMovement.objects.count() == movements


def test_stock_snapshot_export_imports_back_as_a_no_op(alpha, stock_world):
    # given
    (s1, s2, _), main, east = stock_world
    run(
        stock_csv([["S-1", "MAIN", "10", ""], ["S-2", "EAST", "3", "damaged"]]),
        alpha,
        "opening_stock",
    )
    stock.reserve(
        lines=[ReserveLine(s1, main, 4)], kind="manual_hold", reference=Reference("hold", "1")
    )

    # when
    rows = list(imports.iter_stock_csv())

    # then
    assert rows == [
        ["sku", "warehouse", "status", "quantity", "reserved", "available"],
        ["S-1", "MAIN", "sellable", "10", "4", "6"],
        ["S-2", "EAST", "damaged", "3", "0", "0"],
    ]
    job = run(to_csv(rows[0], rows[1:]), alpha, "opening_stock")
    assert job.counts["unchanged"] == 2 and job.counts["operations"] == []


def test_items_export_round_trips_without_changes(alpha, existing):
    # given: an imported catalogue with awkward values
    rows = good_items()
    rows[0].update(title="=SUM(A1)", tags="-5;x")
    run(items_csv(rows), alpha)

    # when
    exported = list(imports.iter_items_csv())

    # then: formulas are defused, and re-importing the export changes nothing
    by_code = {r[0]: dict(zip(exported[0], r, strict=True)) for r in exported[1:]}
    assert by_code["TEE-001"]["title"] == "'=SUM(A1)"
    assert by_code["TEE-001"]["tags"] == "'-5;x"
    assert by_code["TEE-002"]["weight"] == "180.5" and by_code["TEE-002"]["unit_cost"] == "4.2"
    assert by_code["PACK-2"]["bundle_components"] == "EXIST-1*1;TEE-003*1"
    assert by_code["TEE-010"]["oversize"] == "yes"
    job = run(to_csv(exported[0], exported[1:]), alpha)
    assert job.counts == {"created": 0, "updated": 0, "unchanged": 33}
    assert SKU.objects.get(code="TEE-001").title == "=SUM(A1)"


# --- Through the Celery tasks --------------------------------------------------------------


def test_tasks_run_eagerly_in_the_brand_schema(alpha, existing, brand_a):
    # given
    job = upload(items_csv(good_items()), alpha)

    # when: validation through the task, with the brand header set explicitly
    result = tasks.validate_import.apply(
        args=(job.pk,), headers={"_schema_name": brand_a.schema_name}
    )

    # then
    assert result.successful(), result.traceback
    assert result.result == "ready"
    imports.confirm_job(ImportJob.objects.get(pk=job.pk), user=alpha)

    # when: the apply task, header taken from the current schema by TenantTask.apply
    result = tasks.apply_import.apply(args=(job.pk,))

    # then
    assert result.successful(), result.traceback
    assert result.result == "applied"
    assert SKU.objects.count() == 33
    # and: a redelivered apply finds the job applied and writes nothing more
    entries = ActivityEntry.objects.count()
    assert tasks.apply_import.apply(args=(job.pk,)).result == "applied"
    assert ActivityEntry.objects.count() == entries


def test_a_task_without_a_brand_refuses_and_the_job_is_untouched(alpha, existing):
    job = upload(items_csv(good_items()), alpha)

    result = tasks.validate_import.apply(args=(job.pk,), headers={"_schema_name": "public"})

    assert result.failed()
    assert isinstance(result.result, TenantContextMissing)
    assert ImportJob.objects.get(pk=job.pk).status == ImportStatus.UPLOADED


def test_an_unexpected_error_fails_the_job_and_writes_nothing(alpha, existing, monkeypatch):
    # given: a confirmed job whose writer breaks halfway
    job = imports.validate_job(upload(items_csv(good_items()), alpha).pk)
    imports.confirm_job(job, user=alpha)
    before = catalog_state()

    def broken(plan, progress):
        SKU.objects.all().update(title="half-written")
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(imports, "_write_items", broken)

    # when
    result = tasks.apply_import.apply(args=(job.pk,))

    # then
    assert result.failed()
    job.refresh_from_db()
    assert (job.status, job.message) == (ImportStatus.FAILED, "RuntimeError: disk on fire")
    assert catalog_state() == before
    assert ActivityEntry.objects.filter(action="import.failed", object_id=str(job.pk)).exists()


@pytest.mark.usefixtures("eager_celery")
def test_uploading_queues_validation_through_the_brand_task(
    alpha, existing, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        job = upload(items_csv(good_items()), alpha)
    job.refresh_from_db()
    assert job.status == ImportStatus.READY
    assert job.counts == {"created": 32, "updated": 0, "unchanged": 0}

    with django_capture_on_commit_callbacks(execute=True):
        imports.confirm_job(job, user=alpha)
    job.refresh_from_db()
    assert job.status == ImportStatus.APPLIED


def test_progress_is_read_from_the_cache_while_running(alpha):
    job = upload(items_csv([item("A")]), alpha)
    assert imports.job_progress(job) == {
        "phase": "Waiting for a worker",
        "done": 0,
        "total": 0,
        "percent": 0,
    }
    imports._reporter(job.pk)("Writing", 250, 1000)
    assert imports.job_progress(job) == {
        "phase": "Writing",
        "done": 250,
        "total": 1000,
        "percent": 25,
    }
    # the key is the brand's: another schema does not see it
    with schema_context("brand_beta"):
        assert imports.cache.get(imports._progress_key(job.pk)) is None
