"""An invoice as a PDF, drawn with fpdf2 (pure Python, no system libraries or fonts).

The PDF uses the standard Helvetica font in the Windows-1252 encoding, which
covers Western European text; other characters are written as their closest
ASCII letters ("Łódź" reads "Lódz") or "?". The HTML invoice shows every name
as entered.
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime
from decimal import Decimal

from fpdf import FPDF
from fpdf.fonts import FontFace

from billing.models import Invoice, InvoiceStatus

FONT = "Helvetica"
#: What the core fonts can draw: Latin-1 plus typographic quotes, dashes and the euro sign.
FONT_ENCODING = "windows-1252"
ISSUER = "Loom"
#: Letters without a Unicode decomposition to a base letter.
_TRANSLITERATE = str.maketrans({"Ł": "L", "ł": "l", "Đ": "D", "đ": "d", "Ħ": "H", "ħ": "h", "\u0131": "i", "ŀ": "l"})


def _text(value: object) -> str:
    """``value`` in characters the core font can draw."""
    out = []
    for char in str(value).translate(_TRANSLITERATE):
        try:
            char.encode(FONT_ENCODING)
            out.append(char)
        except UnicodeEncodeError:
            ascii_form = unicodedata.normalize("NFKD", char).encode("ascii", "ignore").decode()
            out.append(ascii_form or "?")
    return "".join(out)


def money(amount: Decimal, currency: str) -> str:
    return f"{amount:,.2f} {currency}"


def _day(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%-d %b %Y}"


def render_invoice_pdf(invoice: Invoice) -> bytes:
    """The invoice as PDF bytes: header, number, dates, organization, lines and total."""
    pdf = FPDF(format="A4")
    pdf.core_fonts_encoding = FONT_ENCODING
    pdf.set_title(f"Invoice {invoice.number}")
    pdf.set_author(ISSUER)
    pdf.set_subject(_text(f"{invoice.organization_name}, {invoice.plan_name}"))
    pdf.set_creation_date(invoice.issued_at)  # the same invoice renders to the same bytes
    pdf.set_auto_page_break(auto=True, margin=20)
    pdf.add_page()

    pdf.set_font(FONT, "B", 22)
    pdf.cell(0, 12, ISSUER, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(FONT, "", 10)
    pdf.set_text_color(90, 90, 90)
    pdf.cell(0, 5, "Generated copy on your own GPUs", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(8)

    pdf.set_text_color(0, 0, 0)
    pdf.set_font(FONT, "B", 16)
    title = f"Invoice {invoice.number}"
    if invoice.status == InvoiceStatus.VOID:
        title += "  (VOID)"
    pdf.cell(0, 9, title, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)

    facts = [
        ("Billed to", invoice.organization_name),
        ("Issued", _day(invoice.issued_at)),
        ("Due", _day(invoice.due_at)),
        ("Period", f"{_day(invoice.period_start)} to {invoice.period_last_day:%-d %b %Y}"),
        ("Plan", invoice.plan_name or "-"),
        ("Status", invoice.get_status_display()),
    ]
    if invoice.paid_at:
        facts.append(("Paid", _day(invoice.paid_at)))
    pdf.set_font(FONT, "", 10)
    for label, value in facts:
        pdf.set_font(FONT, "B", 10)
        pdf.cell(30, 6, label)
        pdf.set_font(FONT, "", 10)
        pdf.cell(0, 6, _text(value), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(6)

    with pdf.table(
        col_widths=(110, 40, 40),
        text_align=("LEFT", "RIGHT", "RIGHT"),
        headings_style=FontFace(emphasis="BOLD", fill_color=(235, 235, 235)),
        line_height=6,
    ) as table:
        table.row(["Description", "Quantity", f"Amount ({invoice.currency})"])
        for line in invoice.lines.order_by("position"):
            table.row([_text(line.description), line.quantity_display, f"{line.amount:,.2f}"])

    pdf.ln(4)
    pdf.set_font(FONT, "B", 12)
    pdf.cell(150, 8, "Total", align="R")
    pdf.cell(0, 8, money(invoice.total, invoice.currency), align="R", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(10)
    pdf.set_font(FONT, "", 9)
    pdf.set_text_color(90, 90, 90)
    note = (
        "This invoice is paid. Thank you."
        if invoice.status == InvoiceStatus.PAID
        else "This invoice is void and is not to be paid."
        if invoice.status == InvoiceStatus.VOID
        else f"Please pay by {_day(invoice.due_at)}, quoting {invoice.number}."
    )
    pdf.multi_cell(0, 5, note)
    return bytes(pdf.output())
