"""CSV builders and fixtures shared by the import tests (service and page level)."""

from __future__ import annotations

import csv
import io

import pytest
from django.core.files.storage import storages

from catalog.gtin import gtin_check_digit
from catalog.imports import ITEM_COLUMNS, STOCK_COLUMNS

EXISTING_GTIN = "4006381333931"


def gtin13(n: int, *, wrong: bool = False) -> str:
    body = f"400638{n:06d}"
    check = gtin_check_digit(body)
    return body + str((check + 1) % 10 if wrong else check)


def to_csv(
    header: list[str] | tuple[str, ...], rows: list[list[str]], *, bom: bool = False
) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    return (("\ufeff" if bom else "") + out.getvalue()).encode()


def item(sku: str, **columns: str) -> dict[str, str]:
    """A full items row: defaults for every column, overridden by `columns`."""
    row = {
        "sku": sku,
        "product": "Tee",
        "title": f"{sku} title",
        "option1_name": "",
        "option1_value": "",
        "option2_name": "",
        "option2_value": "",
        "gtin": "",
        "tags": "",
        "status": "active",
        "weight": "",
        "weight_unit": "g",
        "length": "",
        "width": "",
        "height": "",
        "dimension_unit": "cm",
        "unit_cost": "",
        "cost_currency": "",
        "hazmat": "no",
        "oversize": "no",
        "bundle_components": "",
    }
    row.update(columns)
    return row


def items_csv(rows: list[dict[str, str]], **kwargs) -> bytes:
    return to_csv(ITEM_COLUMNS, [[r[c] for c in ITEM_COLUMNS] for r in rows], **kwargs)


def stock_csv(rows: list[list[str]]) -> bytes:
    return to_csv(STOCK_COLUMNS, rows)


def good_items() -> list[dict[str, str]]:
    """30 variants of six products, then two bundles (one uses a SKU only in the DB)."""
    rows = []
    for i in range(1, 31):
        rows.append(
            item(
                f"TEE-{i:03d}",
                product=f"Tee {(i - 1) // 5 + 1}",
                title=f"Tee number {i}",
                option1_name="Colour",
                option1_value=("Navy", "Red", "Green")[i % 3],
                option2_name="Size",
                option2_value=f"S{i}",
                gtin=gtin13(i) if i % 2 == 0 else "",
                tags="summer;cotton",
                weight="180.5",
                length="30",
                width="25",
                height="2.25",
                unit_cost="4.20",
                cost_currency="USD",
                oversize="yes" if i % 10 == 0 else "no",
            )
        )
    rows.append(item("PACK-1", product="Tee pack", bundle_components="TEE-001*2;TEE-002*1"))
    rows.append(item("PACK-2", product="Tee pack", bundle_components="TEE-003*1;EXIST-1*1"))
    return rows


def twenty_bad_items() -> tuple[bytes, set[tuple[int, str, str]]]:
    """The good file with 20 rows broken, one problem each; returns (csv, expected)."""
    rows = good_items()
    expected: set[tuple[int, str, str]] = set()

    def breaks(index: int, column: str, value: str, code: str) -> None:
        rows[index - 1][column] = value
        expected.add((index + 1, column, code))  # data row i is on line i + 1

    breaks(6, "sku", "tee-005", "duplicate_sku")
    breaks(7, "sku", "", "required")
    breaks(8, "product", "", "required")
    breaks(9, "gtin", gtin13(9, wrong=True), "bad_check_digit")
    breaks(11, "gtin", "12345", "invalid_gtin")
    breaks(13, "gtin", gtin13(2), "duplicate_gtin")
    breaks(15, "gtin", EXISTING_GTIN, "gtin_in_use")
    breaks(16, "weight", "1,5", "malformed_number")
    breaks(17, "length", "-3", "negative_number")
    breaks(18, "unit_cost", "1.23456", "out_of_range")
    breaks(19, "weight_unit", "stone", "unknown_unit")
    breaks(20, "status", "archived", "unknown_status")
    breaks(21, "hazmat", "maybe", "invalid_boolean")
    breaks(22, "cost_currency", "US", "invalid_currency")
    breaks(23, "cost_currency", "", "currency_required")
    breaks(24, "option2_value", "", "incomplete_option")
    breaks(25, "title", "x" * 256, "too_long")
    breaks(31, "bundle_components", "TEE-001*2;NOPE-9*1", "unknown_component")
    breaks(32, "bundle_components", "TEE-003*1;PACK-1*1", "nested_bundle")
    data = items_csv(rows)
    # Row 26 loses its last field: one structural problem for the whole row.
    lines = data.split(b"\r\n")
    lines[26] = lines[26].rsplit(b",", 1)[0]
    expected.add((27, "", "wrong_field_count"))
    return b"\r\n".join(lines), expected


@pytest.fixture
def media(settings, tmp_path):
    """Uploads go to a temporary MEDIA_ROOT.

    django-tenants' storage caches its root and does not reset it when MEDIA_ROOT
    changes, so the cached value is dropped here (and again afterwards).
    """
    settings.MEDIA_ROOT = str(tmp_path)
    storage = storages["default"]
    storage.__dict__.pop("relative_media_root", None)
    yield tmp_path
    storage.__dict__.pop("relative_media_root", None)


@pytest.fixture
def eager_celery():
    """Tasks run in-process when published (still through BrandTask's brand check)."""
    from config.celery import app

    before = (app.conf.task_always_eager, app.conf.task_eager_propagates)
    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    yield app
    app.conf.task_always_eager, app.conf.task_eager_propagates = before
