"""Orders from a CSV file, through the same ingestion service as connectors and the API.

One row per order line; the rows of an order share its external id (and channel) and must
agree on the order's own columns. The whole file is checked before anything is written:
any problem and every problem comes back with its line number, and nothing is ingested.
A clean file goes through orders.services.ingest_orders in one transaction, so it is
all-or-nothing, each order is routed exactly as a connector's would be, and uploading the
same file again changes nothing (same channel update time → "repeated update ignored").

Channel SKUs map to Keel SKUs through the channel's listing mappings, as for any channel:
an unmapped SKU holds its order "unmapped SKU" and waits in the unmapped-listings queue.
Times without an offset are read in the brand's timezone.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from approvals.services import current_brand
from orders.models import Order, OrderLine, OrderStatus, OrderType, ServiceLevel
from orders.services import HEADER_FIELDS, LineInput, OrderInput, ingest_orders

MAX_ROWS = 5_000
MAX_FILE_BYTES = 5 * 1024 * 1024
DEFAULT_CHANNEL = "csv"
# Problems listed before the rest are summarised: a wrong file fails on every row.
MAX_PROBLEMS = 200

REQUIRED = ("external_id", "placed_at", "sku", "quantity", "unit_price")
# The order's own columns: every row of one order must carry the same values. Past the
# channel, times and status they are the order header fields ingestion copies.
ORDER_COLUMNS = ("channel", "placed_at", "updated_at", "status", *HEADER_FIELDS)
LINE_COLUMNS = ("line_id", "sku", "title", "quantity", "unit_price")
COLUMNS = ("external_id", *ORDER_COLUMNS, *LINE_COLUMNS)
TEXT_LIMITS = {
    name: Order._meta.get_field(name).max_length
    for name in (
        "channel",
        "external_id",
        "customer_name",
        "customer_email",
        "ship_name",
        "ship_company",
        "ship_line1",
        "ship_line2",
        "ship_city",
        "ship_state",
        "ship_postal_code",
        "ship_phone",
        "note",
    )
} | {
    "line_id": OrderLine._meta.get_field("external_line_id").max_length,
    "sku": OrderLine._meta.get_field("external_sku").max_length,
    "title": OrderLine._meta.get_field("title").max_length,
}
TRUE, FALSE = {"1", "y", "yes", "true", "x"}, {"", "0", "n", "no", "false"}
MONEY = re.compile(r"[0-9]{1,12}(\.[0-9]{1,2})?")
QUANTITY = re.compile(r"[0-9]{1,7}")


@dataclass(frozen=True)
class Problem:
    line: int  # line of the file, the header being line 1
    column: str
    message: str


class OrderCsvError(ValidationError):
    """The file cannot be imported; `problems` says where and why, line by line."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        shown = problems[:MAX_PROBLEMS]
        messages = [
            f"Line {p.line}{f', {p.column}' if p.column else ''}: {p.message}" for p in shown
        ]
        if len(problems) > len(shown):
            messages.append(f"…and {len(problems) - len(shown)} more problems.")
        super().__init__(messages, code="invalid_csv")


@dataclass
class CsvImportResult:
    orders: list[Order]
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    statuses: Counter = field(default_factory=Counter)

    @property
    def summary(self) -> str:
        parts = [f"{len(self.orders)} order{'s' if len(self.orders) != 1 else ''} in the file"]
        parts.append(f"{self.created} new, {self.updated} updated, {self.unchanged} unchanged")
        now = ", ".join(
            f"{n} {OrderStatus(status).label.lower()}"
            for status, n in sorted(self.statuses.items())
        )
        return "; ".join(parts) + (f". Now: {now}." if now else ".")


def template_header() -> list[str]:
    return list(COLUMNS)


def _decode(data: bytes) -> str:
    if len(data) > MAX_FILE_BYTES:
        raise OrderCsvError([Problem(1, "", "Files can be at most 5 MB; split this one.")])
    try:
        text = data.decode("utf-8-sig")  # Excel's "CSV UTF-8" starts with a BOM
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise OrderCsvError(
            [Problem(line, "", "This line is not UTF-8 text; save the file as CSV UTF-8.")]
        ) from None
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise OrderCsvError([Problem(line, "", "This line holds a NUL byte: not CSV text.")])
    return text


def _rows(text: str) -> tuple[list[tuple[int, dict[str, str]]], list[Problem]]:
    """The file's rows by line number, and rows too malformed to read (the file-level
    problems, a bad header or no rows, are raised at once: nothing else can be checked)."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    rows: list[tuple[int, dict[str, str]]] = []
    problems: list[Problem] = []
    line = 1
    try:
        for cells in reader:
            line = reader.line_num
            if not any(c.strip() for c in cells):
                continue
            if header is None:
                header = [c.strip().lower().replace(" ", "_") for c in cells]
                unknown = [c for c in header if c not in COLUMNS]
                missing = [c for c in REQUIRED if c not in header]
                repeated = sorted(c for c, n in Counter(header).items() if n > 1)
                if unknown:
                    problems.append(Problem(line, "", f"Unknown columns: {', '.join(unknown)}."))
                if missing:
                    problems.append(Problem(line, "", f"Missing columns: {', '.join(missing)}."))
                if repeated:
                    problems.append(Problem(line, "", f"Repeated columns: {', '.join(repeated)}."))
                if problems:
                    raise OrderCsvError(problems)
                continue
            if len(rows) >= MAX_ROWS:
                raise OrderCsvError(
                    [Problem(line, "", f"Files hold at most {MAX_ROWS:,} lines; split this one.")]
                )
            if len(cells) > len(header) and not any(c.strip() for c in cells[len(header) :]):
                cells = cells[: len(header)]  # trailing empty cells some spreadsheets add
            if len(cells) != len(header):
                problems.append(
                    Problem(
                        line,
                        "",
                        f"This row has {len(cells)} fields but the header has {len(header)}.",
                    )
                )
                continue
            rows.append(
                (line, {name: value.strip() for name, value in zip(header, cells, strict=True)})
            )
    except csv.Error as exc:
        raise OrderCsvError(
            [*problems, Problem(reader.line_num or line, "", f"Not valid CSV: {exc}.")]
        ) from None
    if header is None:
        raise OrderCsvError([Problem(1, "", "The file is empty: it needs a header row and lines.")])
    if not rows and not problems:
        raise OrderCsvError([Problem(2, "", "The file has a header but no order lines.")])
    return rows, problems


class _Row:
    """One CSV row's values, parsed; problems are collected, never raised one by one."""

    def __init__(self, line: int, values: dict[str, str], problems: list[Problem], tz) -> None:
        self.line, self.values, self.problems, self.tz = line, values, problems, tz

    def fail(self, column: str, message: str) -> None:
        self.problems.append(Problem(self.line, column, message))

    def text(self, name: str) -> str:
        value = self.values.get(name, "")
        limit = TEXT_LIMITS.get(name)
        if limit and len(value) > limit:
            self.fail(name, f"At most {limit} characters.")
        return value

    def time(self, name: str, *, required: bool = False) -> datetime | None:
        value = self.values.get(name, "")
        if not value:
            if required:
                self.fail(name, "Required: when the order was placed.")
            return None
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            self.fail(name, f"“{value}” is not a date and time, e.g. 2026-11-02T15:04:05Z.")
            return None
        return moment if moment.tzinfo else moment.replace(tzinfo=self.tz)

    def choice(self, name: str, choices: type, default: str) -> str:
        value = self.values.get(name, "")
        if not value:
            return default
        for choice_value, label in choices.choices:
            if value.lower() in (choice_value, label.lower()):
                return choice_value
        allowed = ", ".join(choices.values)
        self.fail(name, f"“{value}” is not one of {allowed}.")
        return default

    def flag(self, name: str) -> bool:
        value = self.values.get(name, "").lower()
        if value in TRUE:
            return True
        if value not in FALSE:
            self.fail(name, f"“{value}” is not yes or no.")
        return False


def _header_of(row: _Row, channel: str, currency: str) -> dict:
    status = row.values.get("status", "").lower() or "open"
    if status not in ("open", "cancelled", "canceled"):
        row.fail("status", f"“{row.values['status']}” is not open or cancelled.")
    code = (row.values.get("currency", "") or currency).upper()
    if not re.fullmatch(r"[A-Z]{3}", code):
        row.fail("currency", f"“{code}” is not a three-letter currency code.")
    email = row.text("customer_email")
    if email:
        try:
            validate_email(email)
        except ValidationError:
            row.fail("customer_email", f"“{email}” is not an email address.")
    placed = row.time("placed_at", required=True)
    header = {
        "channel": row.text("channel") or channel,
        "placed_at": placed,
        "updated_at": row.time("updated_at") or placed,
        "status": "cancelled" if status.startswith("cancel") else "open",
        "currency": code,
        "order_type": row.choice("order_type", OrderType, OrderType.DTC),
        "service_level": row.choice("service_level", ServiceLevel, ServiceLevel.STANDARD),
        "customer_email": email,
        "ship_state": row.text("ship_state").upper(),
        "ship_country": row.text("ship_country").upper(),
        **{flag: row.flag(flag) for flag in ("is_gift", "is_vip", "is_repeat_customer")},
        "fraud_flag": row.flag("fraud_flag"),
    }
    for name in ORDER_COLUMNS:
        if name not in header:
            header[name] = row.text(name)
    if header["ship_country"] and len(header["ship_country"]) != 2:
        row.fail("ship_country", "Use the two-letter country code, e.g. US.")
    if header["updated_at"] and placed and header["updated_at"] < placed:
        row.fail("updated_at", "The update is older than the order.")
    return header


def _line_of(row: _Row, position: int) -> LineInput | None:
    quantity_text, price_text = row.values.get("quantity", ""), row.values.get("unit_price", "")
    sku = row.text("sku")
    ok = True
    if not sku:
        row.fail("sku", "The channel's SKU is required.")
        ok = False
    if not QUANTITY.fullmatch(quantity_text) or int(quantity_text) < 1:
        row.fail("quantity", f"“{quantity_text}” is not a whole number from 1 to 9999999.")
        ok = False
    if not MONEY.fullmatch(price_text):
        row.fail("unit_price", f"“{price_text}” is not a price, e.g. 12.50.")
        ok = False
    title = row.text("title")
    line_id = row.text("line_id") or str(position)
    if not ok:
        return None
    return LineInput(line_id, sku, int(quantity_text), Decimal(price_text), title=title)


def parse_orders_csv(data: bytes, *, channel: str = DEFAULT_CHANNEL) -> list[OrderInput]:
    """The orders a CSV file holds, in file order; OrderCsvError lists every problem."""
    channel = channel.strip() or DEFAULT_CHANNEL
    brand = current_brand()
    tz, currency = ZoneInfo(brand.timezone), brand.currency
    rows, problems = _rows(_decode(data))
    orders: dict[tuple[str, str], dict] = {}
    for line, values in rows:
        row = _Row(line, values, problems, tz)
        external_id = row.text("external_id")
        if not external_id:
            row.fail("external_id", "The order's id on its channel is required.")
            continue
        header = _header_of(row, channel, currency)
        key = (header["channel"], external_id)
        order = orders.get(key)
        if order is None:
            order = orders[key] = {"header": header, "first": line, "lines": [], "ids": {}}
        else:
            for name in ORDER_COLUMNS:
                if header[name] != order["header"][name]:
                    row.fail(
                        name,
                        f"Order {external_id} has a different {name} on line {order['first']}; "
                        "an order's rows must agree on its own columns.",
                    )
        item = _line_of(row, len(order["lines"]) + 1)
        if item is None:
            continue
        if item.external_line_id in order["ids"]:
            row.fail(
                "line_id",
                f"Line {item.external_line_id} of order {external_id} is already on line "
                f"{order['ids'][item.external_line_id]}.",
            )
            continue
        order["ids"][item.external_line_id] = line
        order["lines"].append(item)
    if problems:
        raise OrderCsvError(sorted(problems, key=lambda p: p.line))
    return [
        OrderInput(external_id=external_id, lines=order["lines"], **order["header"])
        for (_, external_id), order in orders.items()
    ]


def import_orders_csv(data: bytes, *, channel: str = DEFAULT_CHANNEL) -> CsvImportResult:
    """Ingest every order of the file in one transaction, or none (see the module doc)."""
    inputs = parse_orders_csv(data, channel=channel)
    results = ingest_orders(inputs)
    outcome = CsvImportResult(orders=[r.order for r in results])
    for result in results:
        if result.created:
            outcome.created += 1
        elif result.applied:
            outcome.updated += 1
        else:
            outcome.unchanged += 1
        outcome.statuses[result.order.status] += 1
    return outcome
