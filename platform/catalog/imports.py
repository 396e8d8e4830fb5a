"""CSV import and export of the item master and of opening stock (sales history is a third
kind of import run through the same jobs; its rules are in forecasting.history_import).

Flow (views and tasks only call these functions):

1. `create_job` stores the upload on an ImportJob and queues validation.
2. `validate_job` (worker) reads the whole file and checks every row against the file
   itself and the database. It never stops at the first problem: the report names every
   one as {line, column, value, code, message}, lines numbered as the file shows them
   (header = line 1, a quoted field spanning lines counts from its first line). A file
   with problems becomes `invalid` and nothing is written; otherwise `ready`, with the
   planned created/updated/unchanged counts.
3. `confirm_job` (a person) queues `apply_job` (worker), which plans again under row locks
   (the database may have moved since validation) and writes everything in ONE
   transaction, or nothing: problems found at that point turn the job `invalid` again.

Upsert by SKU code, case-insensitively. Only the columns in the header are compared and
written, so a file with just `sku,unit_cost` updates costs and nothing else; a blank cell
in a present column clears that value (or sets the default: status active, units g/cm,
hazmat/oversize no). Rows equal to the database are `unchanged`: no write, no activity.

Opening stock quantities are target levels: only the difference from the current balance
is posted (a receipt up, an adjustment down, reason `opening`), so importing the same file
twice posts nothing the second time.

Bulk path. A brand's first item master is tens of thousands of rows and PostgreSQL pays
≈ 3.6 ms per commit, so nothing here is per-row: existing SKUs are read (and locked) in
chunks of 5,000 codes, new products and SKUs are bulk_create'd, changed SKUs
bulk_update'd grouped by the set of fields that changed (an UPDATE only names the columns
that move), and the per-SKU activity entries that catalog.services would write one by
one (same actions, same before/after values) are bulk_create'd, plus one entry that
summarises the import. Stock goes through inventory.services' own `_lock`/`_apply` in
chunks of 1,000 balance rows, keys sorted so locks are always taken in the same order.

Progress: the apply transaction keeps the job row locked until it commits, so live
progress goes to the cache (tenant-scoped by its key function) where the job page reads it.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.core.files.base import File
from django.db import connection, connections, models, transaction
from django.db.models.functions import Lower
from django.utils import timezone

from audit.context import (
    Actor,
    actor_for_user,
    current_actor,
    current_request_id,
    reset_actor,
    reset_request_id,
    set_actor,
    set_request_id,
)
from audit.models import ActivityEntry
from audit.services import record
from catalog.gtin import validate_gtin
from catalog.models import (
    SKU,
    BundleComponent,
    ImportJob,
    ImportKind,
    ImportStatus,
    LengthUnit,
    Lifecycle,
    Product,
    WeightUnit,
)
from catalog.services import SKU_FIELDS, _jsonable

if TYPE_CHECKING:
    from forecasting.history_import import SalesPlan

MAX_FILE_BYTES = 50 * 1024 * 1024
MAX_ROWS = 200_000
# Enough to fix a file in one go; a file with more problems than this is the wrong file.
MAX_REPORTED = 10_000
MAX_QUANTITY = 1_000_000_000
LOOKUP_CHUNK = 5_000  # values per IN (...) list, well under PostgreSQL's 65,535 parameters
WRITE_BATCH = 1_000
STOCK_CHUNK = 1_000
PROGRESS_STEP = 1_000
PROGRESS_TTL = 24 * 3600

ITEM_COLUMNS: tuple[str, ...] = (
    "sku",
    "product",
    "title",
    "option1_name",
    "option1_value",
    "option2_name",
    "option2_value",
    "gtin",
    "tags",
    "status",
    "weight",
    "weight_unit",
    "length",
    "width",
    "height",
    "dimension_unit",
    "unit_cost",
    "cost_currency",
    "hazmat",
    "oversize",
    "bundle_components",
)
OPTION_PAIRS = (("option1_name", "option1_value"), ("option2_name", "option2_value"))
STOCK_COLUMNS: tuple[str, ...] = ("sku", "warehouse", "quantity", "status")
# The stock snapshot export carries these too; accepting them lets a snapshot be imported.
STOCK_IGNORED = frozenset({"reserved", "available"})
STOCK_STATUSES = ("sellable", "damaged", "quarantined")
STOCK_EXPORT_COLUMNS = ("sku", "warehouse", "status", "quantity", "reserved", "available")

# Column → SKU attribute for the columns that map one to one.
_DECIMAL_COLUMNS = ("weight", "length", "width", "height", "unit_cost")
# (whole digits, decimal places) each decimal column allows; looked up once, not per cell.
_DECIMAL_LIMITS = {
    name: (f.max_digits - f.decimal_places, f.decimal_places)
    for name in _DECIMAL_COLUMNS
    for f in [SKU._meta.get_field(name)]
}
_LIFECYCLES = tuple(Lifecycle.values)
_WEIGHT_UNITS = tuple(WeightUnit.values)
_LENGTH_UNITS = tuple(LengthUnit.values)
_BOOLEAN_COLUMNS = {"hazmat": "is_hazmat", "oversize": "is_oversize"}
_TRUE = {"yes", "y", "true", "1", "x"}
_FALSE = {"no", "n", "false", "0", ""}
_DECIMAL_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
_INTEGER_RE = re.compile(r"[+-]?\d+")
# Spreadsheets run a cell starting with one of these as a formula: exports prefix it with
# an apostrophe and imports drop that apostrophe again, so a round trip is lossless.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

Progress = Callable[[str, int, int], None]


def _no_progress(phase: str, done: int, total: int) -> None:
    return None


# --- Problems and reading --------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the file. `line` is 1-based as the file shows it."""

    line: int
    column: str
    value: str
    code: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class ImportInvalid(Exception):
    """Planning under lock found problems; the transaction is rolled back."""

    def __init__(self, problems: list[Problem], order: dict[str, int]):
        super().__init__(f"{len(problems)} problems")
        self.problems = problems
        self.order = order


@dataclass(frozen=True)
class _Spec:
    columns: tuple[str, ...]
    required: tuple[str, ...]
    ignored: frozenset[str] = frozenset()
    pairs: tuple[tuple[str, str], ...] = ()


ITEMS_SPEC = _Spec(ITEM_COLUMNS, ("sku",), pairs=OPTION_PAIRS)
STOCK_SPEC = _Spec(STOCK_COLUMNS, ("sku", "warehouse", "quantity"), ignored=STOCK_IGNORED)


@dataclass
class _Table:
    present: frozenset[str]
    order: dict[str, int]  # column → position, to sort problems the way the file reads
    records: list[tuple[int, dict[str, str]]]


def _column_name(raw: str) -> str:
    return re.sub(r"[\s\-]+", "_", raw.strip().lower())


def _unescape(cell: str) -> str:
    cell = cell.strip()
    if cell.startswith("'") and cell[1:2] in _FORMULA_START and len(cell) > 1:
        return cell[1:]
    return cell


def _check_header(line: int, raw: list[str], spec: _Spec) -> Problem | None:
    names = [_column_name(c) for c in raw]
    parts = []
    if len(raw) == 1 and ";" in raw[0]:
        parts.append("The columns are separated by semicolons; save the file with commas.")
    else:
        unknown = [n for n in names if n and n not in spec.columns and n not in spec.ignored]
        if unknown:
            parts.append(f"Unknown columns: {', '.join(unknown)}.")
        duplicated = sorted({n for n in names if n and names.count(n) > 1})
        if duplicated:
            parts.append(f"Columns named twice: {', '.join(duplicated)}.")
        missing = [c for c in spec.required if c not in names]
        if missing:
            parts.append(f"Missing required columns: {', '.join(missing)}.")
        for first, second in spec.pairs:
            if (first in names) != (second in names):
                parts.append(f"{first} and {second} go together.")
    if not parts:
        return None
    parts.append(f"Expected a header with some of: {', '.join(spec.columns)}.")
    return Problem(line, "", ",".join(raw)[:200], "bad_header", " ".join(parts))


def read_table(data: bytes, spec: _Spec) -> tuple[_Table | None, list[Problem]]:
    """Decode and split the CSV; file-level problems come back with no table."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return None, [Problem(1, "", "", "not_utf8", "This file is UTF-16; save it as CSV UTF-8.")]
    try:
        text = data.decode("utf-8-sig")  # a leading BOM (Excel's CSV UTF-8) is dropped
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        message = "This line is not UTF-8 text; save the file as CSV UTF-8."
        return None, [Problem(line, "", "", "not_utf8", message)]

    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        message = "This line holds a NUL byte: the file is not CSV text."
        return None, [Problem(line, "", "", "malformed_csv", message)]
    # strict: a stray quote is an error to report, not a value to guess at
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    problems: list[Problem] = []
    table: _Table | None = None
    names: list[str] = []
    previous = 0
    try:
        for cells in reader:
            line, previous = previous + 1, reader.line_num
            if not any(c.strip() for c in cells):
                continue
            if table is None:
                bad = _check_header(line, cells, spec)
                if bad is not None:
                    return None, [bad]
                names = [_column_name(c) for c in cells]
                wanted = [n for n in names if n in spec.columns]
                table = _Table(frozenset(wanted), {n: i for i, n in enumerate(names)}, [])
                continue
            if len(table.records) >= MAX_ROWS:
                message = f"Files hold at most {MAX_ROWS:,} rows; split this one."
                return None, [Problem(line, "", "", "too_many_rows", message)]
            if len(cells) > len(names) and not any(c.strip() for c in cells[len(names) :]):
                cells = cells[: len(names)]  # trailing empty cells some spreadsheets add
            if len(cells) != len(names):
                problems.append(
                    Problem(
                        line,
                        "",
                        "",
                        "wrong_field_count",
                        f"This row has {len(cells)} fields but the header has {len(names)}; "
                        "check for a comma inside an unquoted value.",
                    )
                )
                continue
            table.records.append(
                (
                    line,
                    {n: _unescape(c) for n, c in zip(names, cells, strict=True) if n in wanted},
                )
            )
    except csv.Error as exc:
        message = f"The file cannot be read as CSV from here on ({exc})."
        return None, [*problems, Problem(reader.line_num, "", "", "malformed_csv", message)]
    if table is None:
        return None, [Problem(1, "", "", "empty_file", "The file is empty.")]
    if not table.records and not problems:
        return None, [Problem(1, "", "", "empty_file", "The file has a header but no rows.")]
    return table, problems


class _Bad(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def _decimal(text: str, name: str, limits: tuple[int, int] | None = None) -> Decimal | None:
    if text == "":
        return None
    if not _DECIMAL_RE.fullmatch(text):
        raise _Bad(
            "malformed_number",
            "Not a number: write it like 12.5 (a dot for decimals, no units or separators).",
        )
    value = Decimal(text)
    if value < 0:
        raise _Bad("negative_number", "This cannot be negative.")
    max_whole, max_places = limits or _DECIMAL_LIMITS[name]
    places = max(-value.as_tuple().exponent, 0)
    whole_digits = len(str(int(value))) if int(value) else 0
    if places > max_places:
        raise _Bad("out_of_range", f"At most {max_places} decimal places.")
    if whole_digits > max_whole:
        raise _Bad("out_of_range", "This number is too large.")
    return value


def _choice(text: str, allowed: Sequence[str], default: str, code: str, what: str) -> str:
    value = text.lower()
    if value == "":
        return default
    if value not in allowed:
        raise _Bad(code, f"Unknown {what}; use one of: {', '.join(allowed)}.")
    return value


def _boolean(text: str) -> bool:
    value = text.lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise _Bad("invalid_boolean", "Write yes or no (blank means no).")


def _quantity(text: str) -> int:
    if not _INTEGER_RE.fullmatch(text):
        raise _Bad("malformed_number", "The quantity must be a whole number of units, like 12.")
    value = int(text)
    if value < 0:
        raise _Bad("negative_quantity", "The quantity cannot be negative.")
    if value > MAX_QUANTITY:
        raise _Bad("out_of_range", "This quantity is too large.")
    return value


def _cap(problems: list[Problem], order: dict[str, int]) -> list[dict[str, Any]]:
    problems = sorted(problems, key=lambda p: (p.line, order.get(p.column, -1), p.code))
    return [p.as_dict() for p in problems[:MAX_REPORTED]]


def _chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- Item master -----------------------------------------------------------------------


@dataclass
class ItemRow:
    line: int
    code: str = ""
    key: str = ""  # lower-cased code, the upsert key (the database compares Lower(code))
    values: dict[str, Any] = field(default_factory=dict)  # SKU attribute → value
    product: str | None = None  # product title; None when the column is absent
    components: list[tuple[str, int]] | None = None  # (component key, quantity)
    written: dict[str, str] = field(default_factory=dict)  # component key → code as written
    ok: bool = True


@dataclass
class ItemUpdate:
    row: ItemRow
    sku: SKU
    changes: dict[str, tuple[Any, Any]]  # SKU attribute → (before, after)
    product: tuple[str, str] | None = None  # (old title, new title) when the SKU moves
    recipe: tuple[list, list] | None = None  # ([[code, qty]…] before, after)


@dataclass
class ItemPlan:
    problems: list[Problem]
    order: dict[str, int] = field(default_factory=dict)
    total: int = 0
    present: frozenset[str] = frozenset()
    creates: list[ItemRow] = field(default_factory=list)
    updates: list[ItemUpdate] = field(default_factory=list)
    unchanged: int = 0
    product_ids: dict[str, int] = field(default_factory=dict)  # lower title → id
    # Every SKU the file's recipes may name that exists already: key → id, key → code.
    known_ids: dict[str, int] = field(default_factory=dict)
    known_codes: dict[str, str] = field(default_factory=dict)
    # Every bundle line in the database: (bundle_id, bundle key, component key, code, qty).
    db_recipes: list[tuple[int, str, str, str, int]] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        return {
            "created": len(self.creates),
            "updated": len(self.updates),
            "unchanged": self.unchanged,
        }


def _parse_item(line: int, cells: dict[str, str], problems: list[Problem]) -> ItemRow:
    row = ItemRow(line=line)

    def bad(column: str, code: str, message: str, value: str | None = None) -> None:
        text = cells.get(column, "") if value is None else value
        problems.append(Problem(line, column, text[:200], code, message))
        row.ok = False

    def parse(column: str, attribute: str, fn: Callable[[str], Any]) -> None:
        if column not in cells:
            return
        try:
            row.values[attribute] = fn(cells[column])
        except _Bad as exc:
            bad(column, exc.code, exc.message)

    code = cells["sku"]
    if not code:
        bad("sku", "required", "Every row needs a SKU code.")
    elif len(code) > SKU._meta.get_field("code").max_length:
        bad("sku", "too_long", "SKU codes have at most 64 characters.")
    row.code, row.key = code, code.lower()
    row.values["code"] = code

    if "product" in cells:
        title = cells["product"]
        if not title:
            bad("product", "required", "Name the product this SKU belongs to.")
        elif len(title) > 255:
            bad("product", "too_long", "Product names have at most 255 characters.")
        else:
            row.product = title
    if "title" in cells:
        if len(cells["title"]) > 255:
            bad("title", "too_long", "Titles have at most 255 characters.")
        else:
            row.values["title"] = cells["title"]

    if any(name in cells for name, _ in OPTION_PAIRS):
        options: dict[str, str] = {}
        for name_column, value_column in OPTION_PAIRS:
            if name_column not in cells:
                continue
            name, value = cells[name_column], cells[value_column]
            if bool(name) != bool(value):
                missing = name_column if not name else value_column
                bad(missing, "incomplete_option", "An option needs both a name and a value.")
            elif name.lower() in {n.lower() for n in options}:
                bad(name_column, "duplicate_option", f"The option {name!r} is named twice.")
            elif name:
                options[name] = value
        row.values["option_values"] = options

    if "gtin" in cells:
        gtin = cells["gtin"]
        if gtin:
            try:
                validate_gtin(gtin)
            except ValidationError as exc:
                bad("gtin", exc.code or "invalid_gtin", exc.messages[0])
            else:
                row.values["gtin"] = gtin
        else:
            row.values["gtin"] = None

    if "tags" in cells:
        tags: list[str] = []
        for tag in (t.strip() for t in cells["tags"].split(";")):
            if len(tag) > 50:
                bad("tags", "too_long", "Tags have at most 50 characters.", tag)
            elif tag and tag not in tags:
                tags.append(tag)
        row.values["tags"] = tags

    parse(
        "status",
        "status",
        lambda t: _choice(t, _LIFECYCLES, Lifecycle.ACTIVE, "unknown_status", "status"),
    )
    for column in _DECIMAL_COLUMNS:
        parse(column, column, lambda t, c=column: _decimal(t, c))
    parse(
        "weight_unit",
        "weight_unit",
        lambda t: _choice(t, _WEIGHT_UNITS, WeightUnit.GRAM, "unknown_unit", "weight unit"),
    )
    parse(
        "dimension_unit",
        "dimension_unit",
        lambda t: _choice(
            t, _LENGTH_UNITS, LengthUnit.CENTIMETRE, "unknown_unit", "dimension unit"
        ),
    )
    if "cost_currency" in cells:
        currency = cells["cost_currency"].upper()
        if currency and not (len(currency) == 3 and currency.isascii() and currency.isalpha()):
            bad("cost_currency", "invalid_currency", "Use a three-letter ISO 4217 code, e.g. USD.")
        else:
            row.values["cost_currency"] = currency
    for column, attribute in _BOOLEAN_COLUMNS.items():
        parse(column, attribute, _boolean)

    if "bundle_components" in cells:
        row.components = []
        seen: set[str] = set()
        for part in (p.strip() for p in cells["bundle_components"].split(";")):
            if not part:
                continue
            code_part, star, quantity_text = part.rpartition("*")
            if not star:
                code_part, quantity_text = part, "1"
            component, quantity_text = code_part.strip(), quantity_text.strip()
            key = component.lower()
            if not component:
                message = f"{part!r} names no SKU; write CODE*QUANTITY."
                bad("bundle_components", "invalid_component", message, part)
            elif not _INTEGER_RE.fullmatch(quantity_text) or int(quantity_text) < 1:
                message = f"{part!r}: the quantity must be a whole number above zero."
                bad("bundle_components", "invalid_component", message, part)
            elif key == row.key:
                message = "A bundle cannot contain itself."
                bad("bundle_components", "invalid_component", message, part)
            elif key in seen:
                message = f"{component} is listed twice."
                bad("bundle_components", "invalid_component", message, part)
            else:
                seen.add(key)
                row.components.append((key, int(quantity_text)))
                row.written[key] = component
    return row


def _existing_skus(keys: Iterable[str], *, lock: bool) -> dict[str, SKU]:
    query = SKU.objects.annotate(code_lower=Lower("code")).select_related("product")
    if lock:
        # Only the SKU rows: products are referenced, never changed here.
        query = query.select_for_update(of=("self",)).order_by("pk")
    found: dict[str, SKU] = {}
    for chunk in _chunks(sorted(set(keys)), LOOKUP_CHUNK):
        for sku in query.filter(code_lower__in=chunk):
            found[sku.code_lower] = sku
    return found


def _recipe_rows() -> list[tuple[int, str, str, str, int]]:
    """Every bundle line as (bundle_id, bundle key, component key, component code, qty)."""
    return [
        (b_id, b_code.lower(), c_code.lower(), c_code, quantity)
        for b_id, b_code, c_code, quantity in BundleComponent.objects.values_list(
            "bundle_id", "bundle__code", "component__code", "quantity"
        )
    ]


def plan_items(data: bytes, *, lock: bool = False, progress: Progress = _no_progress) -> ItemPlan:
    """Parse and check an items CSV against the database; with `lock`, lock what it updates."""
    table, problems = read_table(data, ITEMS_SPEC)
    if table is None:
        return ItemPlan(problems=problems)
    plan = ItemPlan(problems=problems, order=table.order, present=table.present)
    plan.total = len(table.records) + sum(p.code == "wrong_field_count" for p in problems)

    rows: list[ItemRow] = []
    for done, (line, cells) in enumerate(table.records, 1):
        rows.append(_parse_item(line, cells, problems))
        if done % PROGRESS_STEP == 0:
            progress("Checking rows", done, plan.total)
    progress("Checking rows", plan.total, plan.total)

    def bad(row: ItemRow, column: str, value: str, code: str, message: str) -> None:
        problems.append(Problem(row.line, column, value[:200], code, message))
        row.ok = False

    # Duplicates within the file: the first row wins, every later one is reported.
    first: dict[str, ItemRow] = {}
    gtin_first: dict[str, ItemRow] = {}
    unique: list[ItemRow] = []
    for row in rows:
        if not row.key:
            continue
        if row.key in first:
            message = f"SKU {row.code} is already on line {first[row.key].line}."
            bad(row, "sku", row.code, "duplicate_sku", message)
            continue
        first[row.key] = row
        unique.append(row)
        gtin = row.values.get("gtin")
        if gtin:
            if gtin in gtin_first:
                message = f"GTIN {gtin} is already on line {gtin_first[gtin].line}."
                bad(row, "gtin", gtin, "duplicate_gtin", message)
            else:
                gtin_first[gtin] = row

    progress("Comparing with the catalog", 0, plan.total)
    existing = _existing_skus(first, lock=lock)
    plan.known_ids.update({key: sku.pk for key, sku in existing.items()})
    plan.known_codes.update({key: sku.code for key, sku in existing.items()})

    # A GTIN may move between SKUs of this file (the writer clears before it sets), but
    # not away from a SKU the file does not change.
    for chunk in _chunks(sorted(gtin_first), LOOKUP_CHUNK):
        owners = SKU.objects.filter(gtin__in=chunk).values_list("gtin", "code")
        for gtin, owner_code in owners:
            row, owner = gtin_first[gtin], first.get(owner_code.lower())
            if owner is row:
                continue
            if owner is not None and owner.values.get("gtin") != gtin:
                continue
            bad(row, "gtin", gtin, "gtin_in_use", f"GTIN {gtin} belongs to SKU {owner_code}.")

    # Products by title, case-insensitively; the oldest wins when titles repeat.
    titles = sorted({row.product.lower() for row in unique if row.product})
    for chunk in _chunks(titles, LOOKUP_CHUNK):
        products = (
            Product.objects.annotate(title_lower=Lower("title"))
            .filter(title_lower__in=chunk)
            .order_by("-pk")
            .values_list("title_lower", "pk")
        )
        plan.product_ids.update(products)

    _check_bundles(unique, existing, plan, bad)

    for row in unique:
        sku = existing.get(row.key)
        if sku is None and row.product is None and "product" not in table.present:
            bad(row, "product", "", "required", "New SKUs need a product column.")
        failed = {c for c in ("unit_cost", "cost_currency") if c in table.present} - set(row.values)
        if failed:
            continue  # that cell is reported already; one problem per mistake
        cost = row.values.get("unit_cost", sku.unit_cost if sku else None)
        currency = row.values.get("cost_currency", sku.cost_currency if sku else "")
        if cost is not None and not currency:
            column = "cost_currency" if "cost_currency" in table.present else "unit_cost"
            message = "A unit cost needs its currency (cost_currency, e.g. USD)."
            bad(row, column, str(row.values.get(column) or ""), "currency_required", message)

    if problems:
        return plan

    recipes: dict[int, list[list]] = defaultdict(list)
    for bundle_id, _, component_key, _, quantity in plan.db_recipes:
        recipes[bundle_id].append([component_key, quantity])
    for row in unique:
        sku = existing.get(row.key)
        if sku is None:
            plan.creates.append(row)
            continue
        update = _diff(row, sku, recipes.get(sku.pk, []))
        if update is None:
            plan.unchanged += 1
        else:
            plan.updates.append(update)
    return plan


def _check_bundles(
    rows: list[ItemRow],
    existing: dict[str, SKU],
    plan: ItemPlan,
    bad: Callable[[ItemRow, str, str, str, str], None],
) -> None:
    """Components must exist; after the import no bundle may contain a bundle."""
    in_file = {row.key: row for row in rows}
    plan.db_recipes = recipes = _recipe_rows()

    referenced = {key for row in rows for key, _ in row.components or ()}
    outside = sorted(referenced - set(in_file))
    outside_bundle: dict[str, bool] = {}
    for chunk in _chunks(outside, LOOKUP_CHUNK):
        found = (
            SKU.objects.annotate(code_lower=Lower("code"))
            .filter(code_lower__in=chunk)
            .values_list("code_lower", "pk", "code", "is_bundle")
        )
        for key, pk, code, is_bundle in found:
            plan.known_ids[key] = pk
            plan.known_codes[key] = code
            outside_bundle[key] = is_bundle

    # The catalogue as it will be: recipes from the file replace the database's.
    redefined = {row.key for row in rows if row.components is not None}
    final: dict[str, set[str]] = defaultdict(set)
    db_parent: dict[str, str] = {}  # component key → a bundle (kept from the database)
    codes: dict[str, str] = {}
    for _, bundle_key, component_key, _, _ in recipes:
        if bundle_key not in redefined:
            final[bundle_key].add(component_key)
            db_parent.setdefault(component_key, bundle_key)
    for row in rows:
        codes[row.key] = row.code
        if row.components:
            final[row.key] = {key for key, _ in row.components}
    for row in rows:
        sku = existing.get(row.key)
        if row.components is None and sku is not None and sku.is_bundle:
            final.setdefault(row.key, set())  # a bundle the file leaves as it is

    becoming = [
        existing[row.key].pk
        for row in rows
        if row.components and row.key in existing and not existing[row.key].is_bundle
    ]
    stocked = _stocked(becoming)

    for row in rows:
        if not row.components:
            continue
        for key, _ in row.components:
            if key not in in_file and key not in plan.known_ids:
                code = row.written[key]
                message = f"No SKU {code} in this file or the catalog."
                bad(row, "bundle_components", code, "unknown_component", message)
            elif key in final or outside_bundle.get(key):
                name = codes.get(key) or plan.known_codes.get(key, key)
                message = f"{name} is itself a bundle; list its components directly."
                bad(row, "bundle_components", name, "nested_bundle", message)
        if row.key in db_parent:
            parent = db_parent[row.key]
            message = f"{row.code} is a component of bundle {parent}; it cannot be a bundle."
            bad(row, "bundle_components", "", "nested_bundle", message)
        sku = existing.get(row.key)
        if sku is not None and sku.pk in stocked:
            message = f"{row.code} holds stock of its own; move it out before making it a bundle."
            bad(row, "bundle_components", "", "bundle_has_stock", message)


def _stocked(sku_ids: list[int]) -> set[int]:
    from inventory.models import StockBalance

    found: set[int] = set()
    for chunk in _chunks(sku_ids, LOOKUP_CHUNK):
        found.update(
            StockBalance.objects.filter(sku_id__in=chunk)
            .exclude(quantity=0)
            .values_list("sku_id", flat=True)
        )
    return found


def _diff(row: ItemRow, sku: SKU, recipe: list[list]) -> ItemUpdate | None:
    # The code only matches (case-insensitively): an existing SKU keeps its spelling,
    # since channels and listing mappings know it by that.
    changes = {
        attribute: (getattr(sku, attribute), value)
        for attribute, value in row.values.items()
        if attribute != "code" and getattr(sku, attribute) != value
    }
    product = None
    if row.product is not None and row.product.lower() != sku.product.title.lower():
        product = (sku.product.title, row.product)
    new_recipe = None
    if row.components is not None:
        before = sorted(recipe)
        after = sorted([key, quantity] for key, quantity in row.components)
        if before != after:
            new_recipe = (before, after)
    if not changes and product is None and new_recipe is None:
        return None
    return ItemUpdate(row, sku, changes, product, new_recipe)


def _entry(action: str, obj: Any, changes: dict, who: Actor, request_id: str) -> ActivityEntry:
    # The same row audit.services.record writes, built for bulk_create.
    return ActivityEntry(
        actor_type=who.type,
        actor_id=who.id,
        actor_label=who.label[:200],
        action=action,
        changes=changes,
        request_id=request_id,
        object_type=obj._meta.label_lower,
        object_id=str(obj.pk),
        object_repr=str(obj)[:200],
    )


def copy_create(
    objs: Sequence[models.Model], progress: Callable[[int], None] | None = None
) -> None:
    """bulk_create through PostgreSQL COPY, for tens of thousands of rows.

    Django's bulk_create builds and binds one INSERT of ~24,000 parameters per thousand
    SKUs, ≈ 0.7 ms a row in Python; COPY streams the same values for a fraction of that.
    Values go through the fields' own pre_save/get_db_prep_save, as an INSERT would, and
    ids are drawn from the table's sequence first so the objects know their pk.
    """
    if not objs:
        return
    db = connections[connection.alias]  # the wrapper itself, not the per-call proxy
    meta = type(objs[0])._meta
    fields = list(meta.concrete_fields)
    prepare = [(f.pre_save, f.get_db_prep_save) for f in fields]
    quote = db.ops.quote_name
    with db.cursor() as cursor, db.wrap_database_errors:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
            [meta.db_table, meta.pk.column, len(objs)],
        )
        for obj, (pk,) in zip(objs, cursor.fetchall(), strict=True):
            obj.pk = pk
        columns = ", ".join(quote(f.column) for f in fields)
        statement = f"COPY {quote(meta.db_table)} ({columns}) FROM STDIN"
        with cursor.cursor.copy(statement) as copy:
            for done, obj in enumerate(objs, 1):
                copy.write_row([dump(pre_save(obj, True), db) for pre_save, dump in prepare])
                if progress is not None and done % WRITE_BATCH == 0:
                    progress(done)
    for obj in objs:
        obj._state.adding = False
        obj._state.db = db.alias


def _write_items(plan: ItemPlan, progress: Progress) -> list[ActivityEntry]:
    """Write the plan with set-based statements; returns the activity entries to add."""
    who, request_id = current_actor(), current_request_id()
    entries: list[ActivityEntry] = []
    total = plan.total
    done = plan.unchanged
    progress("Writing", done, total)

    # 1. Products the file names that do not exist yet.
    wanted: dict[str, str] = {}
    for title in [r.product for r in plan.creates] + [
        u.product[1] for u in plan.updates if u.product
    ]:
        wanted.setdefault(title.lower(), title)  # the first spelling in the file names it
    missing = [title for key, title in wanted.items() if key not in plan.product_ids]
    created_products = [Product(title=title, status=Lifecycle.ACTIVE) for title in missing]
    copy_create(created_products)
    for product in created_products:
        plan.product_ids[product.title.lower()] = product.pk
        changes = {"title": product.title}  # what catalog.services.create_product records
        entries.append(_entry("product.created", product, changes, who, request_id))

    # 2. Updates. GTINs that move are cleared first so a swap between two SKUs never
    # trips the unique constraint halfway through.
    now = timezone.now()
    moving = [u.sku for u in plan.updates if "gtin" in u.changes and u.sku.gtin is not None]
    for sku in moving:
        sku.gtin = None
    SKU.objects.bulk_update(moving, ["gtin"], batch_size=WRITE_BATCH)
    groups: dict[tuple[str, ...], list[SKU]] = defaultdict(list)
    for update in plan.updates:
        sku = update.sku
        for attribute, (_, after) in update.changes.items():
            setattr(sku, attribute, after)
        fields = set(update.changes)
        if update.product:
            sku.product_id = plan.product_ids[update.product[1].lower()]
            fields.add("product")
        if update.recipe is not None and sku.is_bundle != bool(update.recipe[1]):
            sku.is_bundle = bool(update.recipe[1])
            fields.add("is_bundle")
        sku.updated_at = now
        groups[tuple(sorted(fields))].append(sku)
        changes = {
            f: [_jsonable(update.changes[f][0]), _jsonable(update.changes[f][1])]
            for f in SKU_FIELDS
            if f in update.changes
        }
        if update.product:
            changes["product"] = list(update.product)
        if changes:
            entries.append(_entry("sku.updated", sku, changes, who, request_id))
    for fields, skus in groups.items():
        for batch in _chunks(skus, WRITE_BATCH):
            SKU.objects.bulk_update(batch, [*fields, "updated_at"])
            done += len(batch)
            progress("Writing", done, total)

    # 3. New SKUs, after the updates so GTINs freed above can be taken.
    new_skus: list[SKU] = []
    for row in plan.creates:
        sku = SKU(product_id=plan.product_ids[row.product.lower()], **row.values)
        sku.is_bundle = bool(row.components)
        new_skus.append(sku)
    copy_create(new_skus, lambda n: progress("Writing", done + n, total))
    done += len(new_skus)
    progress("Writing", done, total)
    for sku in new_skus:
        changes = {
            f: [None, _jsonable(getattr(sku, f))]
            for f in SKU_FIELDS
            if getattr(sku, f) not in (None, "", [], {}, False)
        }
        entries.append(_entry("sku.created", sku, changes, who, request_id))

    # 4. Bundle recipes that changed (or are new), replaced wholesale like
    # catalog.services.set_bundle_components does.
    ids = {**plan.known_ids, **{sku.code.lower(): sku.pk for sku in new_skus}}
    codes = {key: code for _, _, key, code, _ in plan.db_recipes}
    codes.update(plan.known_codes)
    codes.update(
        {sku.code.lower(): sku.code for sku in [*new_skus, *(u.sku for u in plan.updates)]}
    )
    recipes: list[tuple[SKU, list, list]] = [
        (u.sku, u.recipe[0], u.recipe[1]) for u in plan.updates if u.recipe is not None
    ]
    recipes += [
        (sku, [], sorted([k, q] for k, q in row.components))
        for sku, row in zip(new_skus, plan.creates, strict=True)
        if row.components
    ]
    BundleComponent.objects.filter(
        bundle_id__in=[sku.pk for sku, before, _ in recipes if before]
    ).delete()
    BundleComponent.objects.bulk_create(
        [
            BundleComponent(bundle_id=sku.pk, component_id=ids[key], quantity=quantity)
            for sku, _, after in recipes
            for key, quantity in after
        ],
        batch_size=WRITE_BATCH,
    )
    for sku, before, after in recipes:
        shown = [[[codes.get(k, k), q] for k, q in side] for side in (before, after)]
        entries.append(_entry("sku.bundle_set", sku, {"components": shown}, who, request_id))
    return entries


# --- Opening stock ---------------------------------------------------------------------


@dataclass
class StockRow:
    line: int
    sku_code: str
    sku_id: int = 0
    warehouse_id: int = 0
    status: str = "sellable"
    quantity: int = 0  # the target level


@dataclass
class StockPlan:
    problems: list[Problem]
    order: dict[str, int] = field(default_factory=dict)
    total: int = 0
    rows: list[StockRow] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


def _parse_stock(
    line: int,
    cells: dict[str, str],
    skus: dict[str, tuple[int, bool]],
    warehouses: dict[str, int],
    problems: list[Problem],
) -> StockRow | None:
    row, ok = StockRow(line, cells["sku"]), True

    def bad(column: str, code: str, message: str) -> None:
        nonlocal ok
        problems.append(Problem(line, column, cells.get(column, "")[:200], code, message))
        ok = False

    if not row.sku_code:
        bad("sku", "required", "Every row needs a SKU code.")
    elif row.sku_code.lower() not in skus:
        bad("sku", "unknown_sku", f"No SKU {row.sku_code} in the catalog; import it first.")
    else:
        row.sku_id, is_bundle = skus[row.sku_code.lower()]
        if is_bundle:
            bad("sku", "bundle_has_no_stock", "A bundle's stock is its components'.")
    warehouse = cells["warehouse"]
    if not warehouse:
        bad("warehouse", "required", "Every row needs a warehouse code.")
    elif warehouse.lower() not in warehouses:
        bad("warehouse", "unknown_warehouse", f"No warehouse with the code {warehouse}.")
    else:
        row.warehouse_id = warehouses[warehouse.lower()]
    status = cells.get("status", "").lower()
    if status == "in_transit":
        bad("status", "invalid_status", "In-transit stock comes only from transfers.")
    elif status and status not in STOCK_STATUSES:
        bad("status", "unknown_status", f"Use one of: {', '.join(STOCK_STATUSES)}.")
    else:
        row.status = status or "sellable"
    if not cells["quantity"]:
        bad("quantity", "required", "Every row needs a quantity (0 or more).")
    else:
        try:
            row.quantity = _quantity(cells["quantity"])
        except _Bad as exc:
            bad("quantity", exc.code, exc.message)
    return row if ok else None


def plan_stock(data: bytes, *, progress: Progress = _no_progress) -> StockPlan:
    """Parse and check an opening-stock CSV; counts compare with current balances."""
    from inventory.models import StockBalance, Warehouse

    table, problems = read_table(data, STOCK_SPEC)
    if table is None:
        return StockPlan(problems=problems)
    plan = StockPlan(problems=problems, order=table.order)
    plan.total = len(table.records) + sum(p.code == "wrong_field_count" for p in problems)

    warehouses = {code.lower(): pk for code, pk in Warehouse.objects.values_list("code", "pk")}
    sku_keys = sorted({cells["sku"].lower() for _, cells in table.records if cells["sku"]})
    skus: dict[str, tuple[int, bool]] = {}
    for chunk in _chunks(sku_keys, LOOKUP_CHUNK):
        found = (
            SKU.objects.annotate(code_lower=Lower("code"))
            .filter(code_lower__in=chunk)
            .values_list("code_lower", "pk", "is_bundle")
        )
        skus.update({key: (pk, is_bundle) for key, pk, is_bundle in found})

    seen: dict[tuple[int, int, str], int] = {}
    for done, (line, cells) in enumerate(table.records, 1):
        row = _parse_stock(line, cells, skus, warehouses, problems)
        if row is not None:
            key = (row.sku_id, row.warehouse_id, row.status)
            if key in seen:
                message = f"This SKU, warehouse and status are already on line {seen[key]}."
                problems.append(Problem(line, "sku", row.sku_code, "duplicate_row", message))
            else:
                seen[key] = line
                plan.rows.append(row)
        if done % PROGRESS_STEP == 0:
            progress("Checking rows", done, plan.total)

    current: dict[tuple[int, int, str], tuple[int, int]] = {}
    for chunk in _chunks(sorted({row.sku_id for row in plan.rows}), LOOKUP_CHUNK):
        balances = StockBalance.objects.filter(sku_id__in=chunk).values_list(
            "sku_id", "warehouse_id", "status", "quantity", "reserved"
        )
        current.update({(s, w, st): (q, r) for s, w, st, q, r in balances})
    plan.counts = {"created": 0, "updated": 0, "unchanged": 0}
    for row in plan.rows:
        quantity, reserved = current.get((row.sku_id, row.warehouse_id, row.status), (0, 0))
        problem = _below_reserved(row, reserved)
        if problem is not None:
            problems.append(problem)
        plan.counts[_stock_outcome(quantity, row.quantity)] += 1
    return plan


def _below_reserved(row: StockRow, reserved: int) -> Problem | None:
    if row.quantity >= reserved:
        return None
    message = f"{reserved} units are reserved here; the quantity cannot go below that."
    return Problem(row.line, "quantity", str(row.quantity), "below_reserved", message)


def _stock_outcome(current: int, target: int) -> str:
    if current == target:
        return "unchanged"
    return "created" if current == 0 else "updated"


def _write_stock(plan: StockPlan, job: ImportJob, progress: Progress) -> dict[str, Any]:
    from inventory.models import MovementKind, ReasonCode
    from inventory.services import Change, Reference, _apply, _lock

    counts = {"created": 0, "updated": 0, "unchanged": 0}
    units_in = units_out = 0
    operations: list[str] = []
    problems: list[Problem] = []
    # Keys sorted, then locked chunk after chunk: the order every stock transaction
    # locks in, so a concurrent movement queues behind the import. (_lock's superset
    # filter can reach past a chunk's edge; if that ever closes a cycle, PostgreSQL
    # cancels one side and the import fails without writing anything.)
    rows = sorted(plan.rows, key=lambda r: (r.sku_id, r.warehouse_id, r.status))
    done = 0
    for chunk in _chunks(rows, STOCK_CHUNK):
        balances = _lock((r.sku_id, r.warehouse_id, r.status) for r in chunk)
        changes = []
        for row in chunk:
            balance = balances[(row.sku_id, row.warehouse_id, row.status)]
            problem = _below_reserved(row, balance.reserved)
            if problem is not None:
                problems.append(problem)
                continue
            counts[_stock_outcome(balance.quantity, row.quantity)] += 1
            delta = row.quantity - balance.quantity
            if delta:
                kind = MovementKind.RECEIPT if delta > 0 else MovementKind.ADJUSTMENT
                changes.append(Change(row.sku_id, row.warehouse_id, row.status, delta, kind=kind))
                units_in += max(delta, 0)
                units_out += max(-delta, 0)
        if changes and not problems:
            operation = _apply(
                changes,
                action="stock.opening_imported",
                reason_code=ReasonCode.OPENING,
                reference=Reference("import", str(job.pk)),
                note=f"Opening stock import #{job.pk}",
                log=False,  # one summary entry for the whole import instead
            )
            operations.append(str(operation.operation_id))
        done += len(chunk)
        progress("Writing", done, plan.total)
    if problems:
        raise ImportInvalid(problems, plan.order)
    return {**counts, "units_in": units_in, "units_out": units_out, "operations": operations}


# --- Jobs ------------------------------------------------------------------------------


def _progress_key(job_id: int) -> str:
    return f"catalog:import:{job_id}:progress"


def _reporter(job_id: int) -> Progress:
    def report(phase: str, done: int, total: int) -> None:
        cache.set(
            _progress_key(job_id),
            {"phase": phase, "done": min(done, total), "total": total},
            PROGRESS_TTL,
        )

    return report


def job_progress(job: ImportJob) -> dict[str, Any]:
    """What the progress bar shows: {phase, done, total, percent}."""
    if job.is_running:
        live = cache.get(_progress_key(job.pk)) or {
            "phase": "Waiting for a worker",
            "done": 0,
            "total": job.total_rows,
        }
    else:
        live = {"phase": job.get_status_display(), "done": job.total_rows, "total": job.total_rows}
    total = live["total"] or 0
    return {**live, "percent": int(live["done"] * 100 / total) if total else 0}


def create_job(*, kind: str, upload: File, user: Any) -> ImportJob:
    """Store an uploaded CSV and queue its validation."""
    from catalog import tasks

    if kind not in ImportKind.values:
        raise ValidationError("Choose what the file holds.", code="invalid_kind")
    if upload.size is not None and upload.size > MAX_FILE_BYTES:
        raise ValidationError("Files can be at most 50 MB; split this one.", code="too_large")
    name = (getattr(upload, "name", "") or "import.csv").rsplit("/", 1)[-1][:255]
    with transaction.atomic():
        job = ImportJob(kind=kind, filename=name, created_by=user)
        job.file.save(name, upload, save=False)
        job.save()
        record("import.uploaded", obj=job, changes={"kind": kind, "file": name})
        transaction.on_commit(lambda: tasks.validate_import.delay(job.pk))
    return job


def _read(job: ImportJob) -> bytes:
    with job.file.open("rb") as handle:
        return handle.read()


def _plan(job: ImportJob, *, lock: bool, progress: Progress) -> ItemPlan | StockPlan | SalesPlan:
    data = _read(job)
    if job.kind == ImportKind.ITEMS:
        return plan_items(data, lock=lock, progress=progress)
    if job.kind == ImportKind.SALES_HISTORY:
        # forecasting builds on this module, so it is imported here, not at the top
        from forecasting.history_import import plan_sales

        return plan_sales(data, progress=progress)
    return plan_stock(data, progress=progress)


def validate_job(job_id: int) -> ImportJob:
    """Check the whole file; the job ends `invalid` (with its report) or `ready`."""
    claimed = ImportJob.objects.filter(
        pk=job_id, status__in=[ImportStatus.UPLOADED, ImportStatus.VALIDATING]
    ).update(status=ImportStatus.VALIDATING, started_at=timezone.now())
    job = ImportJob.objects.get(pk=job_id)
    if not claimed:
        return job  # validated already: a redelivered message
    plan = _plan(job, lock=False, progress=_reporter(job.pk))
    job.total_rows = plan.total
    job.error_count = len(plan.problems)
    job.report = _cap(plan.problems, plan.order)
    job.counts = {} if plan.problems else plan.counts
    job.status = ImportStatus.INVALID if plan.problems else ImportStatus.READY
    if plan.problems:
        job.finished_at = timezone.now()
    job.save(
        update_fields=[
            "total_rows",
            "error_count",
            "report",
            "counts",
            "status",
            "finished_at",
        ]
    )
    cache.delete(_progress_key(job.pk))
    return job


def confirm_job(job: ImportJob, *, user: Any) -> ImportJob:
    """A person confirms a validated job; a worker applies it."""
    from catalog import tasks

    with transaction.atomic():
        job = ImportJob.objects.select_for_update().get(pk=job.pk)
        if job.status != ImportStatus.READY:
            raise ValidationError(
                f"This import is {job.get_status_display().lower()}, not ready to import.",
                code="not_ready",
            )
        job.status = ImportStatus.APPLYING
        job.confirmed_by = user
        job.confirmed_at = timezone.now()
        job.save(update_fields=["status", "confirmed_by", "confirmed_at"])
        record("import.confirmed", obj=job, changes={"kind": job.kind, "file": job.filename})
        transaction.on_commit(lambda: tasks.apply_import.delay(job.pk))
    return job


def apply_job(job_id: int) -> ImportJob:
    """Apply a confirmed job all-or-nothing, acting as the person who confirmed it."""
    try:
        with transaction.atomic():
            # Held until commit: a second delivery of this task waits here, then finds
            # the job applied and leaves.
            job = ImportJob.objects.select_for_update().get(pk=job_id)
            if job.status != ImportStatus.APPLYING:
                return job
            who = actor_for_user(job.confirmed_by) if job.confirmed_by else current_actor()
            actor_token = set_actor(who)
            request_token = set_request_id(f"import-{job.pk}")
            try:
                progress = _reporter(job.pk)
                job.started_at = timezone.now()
                if job.kind == ImportKind.ITEMS:
                    plan = _plan(job, lock=True, progress=progress)
                    if plan.problems:
                        raise ImportInvalid(plan.problems, plan.order)
                    copy_create(_write_items(plan, progress))
                    counts: dict[str, Any] = plan.counts
                elif job.kind == ImportKind.SALES_HISTORY:
                    from forecasting.history_import import write_sales

                    plan = _plan(job, lock=False, progress=progress)
                    if plan.problems:
                        raise ImportInvalid(plan.problems, plan.order)
                    counts = write_sales(plan.rows, job_id=job.pk, progress=progress)
                else:
                    plan = _plan(job, lock=False, progress=progress)
                    if plan.problems:
                        raise ImportInvalid(plan.problems, plan.order)
                    counts = _write_stock(plan, job, progress)
                job.status = ImportStatus.APPLIED
                job.counts = counts
                job.total_rows = job.processed_rows = plan.total
                job.report, job.error_count = [], 0
                job.finished_at = timezone.now()
                job.save()
                summary = {"kind": job.kind, "file": job.filename, "rows": plan.total}
                summary.update({k: v for k, v in counts.items() if k != "operations"})
                if "operations" in counts:
                    summary["operations"] = counts["operations"][:50]
                record("import.applied", obj=job, changes=summary)
            finally:
                reset_request_id(request_token)
                reset_actor(actor_token)
    except ImportInvalid as exc:
        ImportJob.objects.filter(pk=job_id).update(
            status=ImportStatus.INVALID,
            report=_cap(exc.problems, exc.order),
            error_count=len(exc.problems),
            message="The catalog or stock changed since validation; nothing was imported.",
            finished_at=timezone.now(),
        )
        job.refresh_from_db()
    cache.delete(_progress_key(job_id))
    return job


def fail_job(job_id: int, exc: BaseException) -> None:
    """Record an unexpected failure; nothing of the import was written."""
    message = f"{type(exc).__name__}: {exc}"[:500]
    with transaction.atomic():
        job = ImportJob.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.status in (ImportStatus.APPLIED, ImportStatus.INVALID):
            return
        job.status = ImportStatus.FAILED
        job.message = message
        job.finished_at = timezone.now()
        job.save(update_fields=["status", "message", "finished_at"])
        record("import.failed", obj=job, changes={"error": message})
    cache.delete(_progress_key(job_id))


# --- Export ----------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def iter_items_csv() -> Iterator[list[str]]:
    """The item master in the import format, one SKU per row; re-importing it is a no-op."""
    yield list(ITEM_COLUMNS)
    components: dict[int, list[str]] = defaultdict(list)
    for bundle_id, code, quantity in BundleComponent.objects.order_by(
        "bundle_id", "component__code"
    ).values_list("bundle_id", "component__code", "quantity"):
        components[bundle_id].append(f"{code}*{quantity}")
    rows = SKU.objects.order_by("code").values_list(
        "pk",
        "code",
        "product__title",
        "title",
        "option_values",
        "gtin",
        "tags",
        "status",
        "weight",
        "weight_unit",
        "length",
        "width",
        "height",
        "dimension_unit",
        "unit_cost",
        "cost_currency",
        "is_hazmat",
        "is_oversize",
    )
    for pk, code, product, title, options, gtin, tags, *rest in rows.iterator(chunk_size=2000):
        pairs = list((options or {}).items())[:2]
        pairs += [("", "")] * (2 - len(pairs))
        yield [
            _cell(v)
            for v in (
                code,
                product,
                title,
                pairs[0][0],
                pairs[0][1],
                pairs[1][0],
                pairs[1][1],
                gtin,
                ";".join(tags),
                *rest,
            )
        ] + [";".join(components.get(pk, []))]


def iter_stock_csv() -> Iterator[list[str]]:
    """Every non-empty balance row; `available` is available-to-promise (sellable only)."""
    from inventory.models import StockBalance, StockStatus
    from inventory.services import atp

    yield list(STOCK_EXPORT_COLUMNS)
    rows = (
        StockBalance.objects.exclude(quantity=0, reserved=0)
        .order_by("sku__code", "warehouse__code", "status")
        .values_list(
            "sku__code",
            "warehouse__code",
            "status",
            "quantity",
            "reserved",
            "warehouse__safety_buffer",
            "warehouse__is_active",
        )
    )
    for code, warehouse, status, quantity, reserved, buffer, active in rows.iterator(
        chunk_size=5000
    ):
        promisable = status == StockStatus.SELLABLE and active
        available = atp(quantity, reserved, buffer) if promisable else 0
        yield [_cell(code), _cell(warehouse), status, str(quantity), str(reserved), str(available)]


def template(kind: str) -> list[list[str]] | None:
    """The example file offered for download for each kind of import."""
    if kind == ImportKind.SALES_HISTORY:
        from forecasting.history_import import TEMPLATE

        return TEMPLATE
    return TEMPLATES.get(kind)


TEMPLATES: dict[str, list[list[str]]] = {
    ImportKind.ITEMS: [
        list(ITEM_COLUMNS),
        [
            "TEE-NVY-M",
            "Classic Tee",
            "Classic Tee, navy, M",
            "Colour",
            "Navy",
            "Size",
            "M",
            "4006381333931",
            "summer;cotton",
            "active",
            "180",
            "g",
            "30",
            "25",
            "2",
            "cm",
            "4.20",
            "USD",
            "no",
            "no",
            "",
        ],
        [
            "TEE-NVY-L",
            "Classic Tee",
            "Classic Tee, navy, L",
            "Colour",
            "Navy",
            "Size",
            "L",
            "",
            "summer;cotton",
            "active",
            "195",
            "g",
            "32",
            "26",
            "2",
            "cm",
            "4.35",
            "USD",
            "no",
            "no",
            "",
        ],
        [
            "TEE-PACK",
            "Classic Tee two-pack",
            "Two tees, navy M and L",
            "",
            "",
            "",
            "",
            "",
            "bundle",
            "active",
            "",
            "g",
            "",
            "",
            "",
            "cm",
            "",
            "",
            "no",
            "no",
            "TEE-NVY-M*1;TEE-NVY-L*1",
        ],
    ],
    ImportKind.OPENING_STOCK: [
        list(STOCK_COLUMNS),
        ["TEE-NVY-M", "MAIN", "120", "sellable"],
        ["TEE-NVY-M", "MAIN", "3", "damaged"],
        ["TEE-NVY-L", "MAIN", "80", ""],
    ],
}
