"""The purchase order as a PDF (reportlab): what the supplier receives by email and what
the PO page downloads."""

from __future__ import annotations

import io
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from purchasing.models import PurchaseOrder


def _address(warehouse) -> list[str]:
    parts = [
        warehouse.name,
        warehouse.address_line1,
        warehouse.address_line2,
        " ".join(p for p in (warehouse.city, warehouse.state, warehouse.postal_code) if p),
        warehouse.country,
    ]
    return [p for p in parts if p]


def _para(lines: list[str], style) -> Paragraph:
    return Paragraph("<br/>".join(escape(line) for line in lines), style)


def po_pdf(po: PurchaseOrder) -> bytes:
    from approvals.services import current_brand
    from purchasing.services import po_total

    brand = current_brand()
    supplier, warehouse = po.supplier, po.warehouse
    styles = getSampleStyleSheet()
    normal, heading = styles["Normal"], styles["Heading1"]
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        title=f"Purchase order {po.number}",
        author=brand.name,
        leftMargin=18 * mm,
        rightMargin=18 * mm,
        topMargin=18 * mm,
        bottomMargin=18 * mm,
    )
    amended = " (amended)" if po.times_sent > 1 else ""
    story = [
        Paragraph(escape(f"{brand.name} — Purchase order {po.number}{amended}"), heading),
        _para(
            [
                f"Version {po.version}",
                f"Issued {po.sent_at or po.created_at:%d %b %Y}",
                f"Expected delivery: {po.expected_on:%d %b %Y}",
                f"Payment terms: {supplier.payment_terms or 'as agreed'}",
                f"Currency: {po.currency}",
            ],
            normal,
        ),
        Spacer(1, 6 * mm),
    ]
    parties = Table(
        [
            [Paragraph("<b>Supplier</b>", normal), Paragraph("<b>Ship to</b>", normal)],
            [
                _para(
                    [
                        f"{supplier.name} ({supplier.code})",
                        *supplier.address.splitlines(),
                        *([f"Attn: {supplier.contact_name}"] if supplier.contact_name else []),
                        *([supplier.email] if supplier.email else []),
                        *([supplier.phone] if supplier.phone else []),
                    ],
                    normal,
                ),
                _para(_address(warehouse), normal),
            ],
        ],
        colWidths=[87 * mm, 87 * mm],
    )
    parties.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP")]))
    story += [parties, Spacer(1, 6 * mm)]

    rows = [["SKU", "Supplier code", "Description", "Qty", "Unit cost", "Line total"]]
    codes = dict(supplier.skus.values_list("sku_id", "supplier_code"))
    for line in po.lines.select_related("sku"):
        rows.append(
            [
                line.sku.code,
                codes.get(line.sku_id) or "",
                Paragraph(escape(line.sku.title or ""), normal),
                f"{line.quantity:,}",
                f"{line.unit_cost:,.2f}",
                f"{line.line_total:,.2f}",
            ]
        )
    rows.append(["", "", "", "", "Total", f"{po_total(po):,.2f} {po.currency}"])
    table = Table(rows, colWidths=[28 * mm, 26 * mm, 52 * mm, 16 * mm, 24 * mm, 28 * mm])
    table.setStyle(
        TableStyle(
            [
                ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eeeeee")),
                ("FONTNAME", (0, 0), (-1, 0), "Helvetica-Bold"),
                ("FONTNAME", (4, -1), (-1, -1), "Helvetica-Bold"),
                ("ALIGN", (3, 0), (-1, -1), "RIGHT"),
                ("LINEBELOW", (0, 0), (-1, 0), 0.5, colors.grey),
                ("LINEABOVE", (0, -1), (-1, -1), 0.5, colors.grey),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ]
        )
    )
    story += [table, Spacer(1, 6 * mm)]
    terms = [
        "Terms: deliver the quantities above to the ship-to address by the expected date.",
        "Quote the PO number on every delivery note and invoice.",
        "Partial or substitute shipments only with our written agreement.",
    ]
    if po.note:
        terms.insert(0, f"Note: {po.note}")
    story.append(_para(terms, normal))
    doc.build(story)
    return buffer.getvalue()
