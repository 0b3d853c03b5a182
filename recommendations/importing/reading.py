"""Reading a CSV file of events: the column mapping (given, or recognised for the Online Retail export
and plain files), size and shape checks that refuse the whole file, and one ``ParsedRow`` per line
with its values checked (see ``recommendations.importing`` for the outcomes rows get later)."""

from __future__ import annotations

import csv
import hashlib
import io
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext, gettext_lazy, ngettext

from core.csvfiles import decode_csv, file_error
from core.errors import DomainError, InvalidInput
from core.text import shown, storable_text
from recommendations import limits
from recommendations.models import EventType

#: A timestamp later than now plus this is refused as "in the future" (clock skew and time zones aside).
FUTURE_TOLERANCE = timedelta(days=1)

ONLINE_RETAIL_MAPPING = {
    "invoice": "InvoiceNo",
    "sku": "StockCode",
    "title": "Description",
    "value": "Quantity",
    "timestamp": "InvoiceDate",
    "price": "UnitPrice",
    "customer": "CustomerID",
    "customer.country": "Country",
}
#: Stock codes of the Online Retail data that are no products: postage, fees, discounts, manual lines.
ONLINE_RETAIL_NON_PRODUCTS = ["POST", "DOT", "M", "m", "D", "C2", "S", "B", "BANK CHARGES", "AMAZONFEE", "CRUK", "PADS"]

#: Fields a mapping may name; ``customer.<name>`` / ``item.<name>`` store any other column as an attribute.
FIELDS = {
    "customer": gettext_lazy("the customer's id (required)"),
    "sku": gettext_lazy("the item's SKU (required)"),
    "timestamp": gettext_lazy("when it happened: ISO 8601 or Unix seconds (required)"),
    "type": gettext_lazy("view, cart, purchase, rating or return (default purchase)"),
    "value": gettext_lazy("quantity, or the rating (default 1)"),
    "event_id": gettext_lazy("a unique id per event (default: derived from the row)"),
    "invoice": gettext_lazy("invoice number; one starting with C is a cancellation"),
    "title": gettext_lazy("the item's title"),
    "description": gettext_lazy("the item's description"),
    "price": gettext_lazy("the item's unit price"),
}
REQUIRED_FIELDS = ("customer", "sku", "timestamp")
#: Column names of a plain file, recognised without a mapping.
GENERIC_COLUMNS = {
    "customer": ("customer_id", "customer", "user", "user_id"),
    "sku": ("sku", "item_id", "item"),
    "timestamp": ("timestamp", "occurred_at", "date"),
    "type": ("type", "event_type"),
    "value": ("value", "quantity", "weight"),
    "event_id": ("event_id",),
    "invoice": ("invoice",),
    "title": ("title", "name"),
    "description": ("description",),
    "price": ("price", "unit_price"),
    "customer.country": ("country",),
}
_OTHER_DELIMITERS = {";": gettext_lazy("semicolons (;)"), "\t": gettext_lazy("tabs"), "|": gettext_lazy("pipes (|)")}
_MAX_PRICE = Decimal("9999999999")


class FileTooLarge(DomainError):
    status_code = 413
    code = "file_too_large"


def max_bytes() -> int:
    return int(settings.RECOMMENDATION_IMPORT_MAX_BYTES)


def too_large(size: int) -> FileTooLarge:
    limit = max_bytes()
    message = gettext("The file is %(size)s MB; imports take at most %(limit)s MB.") % {
        "size": f"{size / 1024 / 1024:.1f}", "limit": f"{limit / 1024 / 1024:.0f}",
    }
    return FileTooLarge(message, fields={"file": [message]})


@dataclass
class ParsedRow:
    line: int
    customer: str = ""
    sku: str = ""
    occurred_at: datetime | None = None
    type: str = EventType.PURCHASE
    value: float = 1.0
    event_id: str = ""
    invoice: str = ""
    title: str = ""
    description: str = ""
    price: Decimal | None = None
    customer_attributes: dict[str, str] = field(default_factory=dict)
    item_attributes: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    outcome: str = ""

    @property
    def is_cancellation(self) -> bool:
        return self.invoice.upper().startswith("C") or self.type == EventType.RETURN


@dataclass
class ParsedFile:
    mapping: dict[str, str]
    rows: list[ParsedRow]
    blank_lines: int = 0


def validate_mapping(mapping: Any) -> dict[str, str]:
    """A mapping a caller wrote: known fields to column names. Raises ``InvalidInput``."""
    if not isinstance(mapping, dict):
        raise InvalidInput(
            gettext("%(name)s must be an object of field names to column names.") % {"name": "mapping"},
            code="invalid_mapping",
        )
    errors: list[str] = []
    cleaned: dict[str, str] = {}
    for key, column in mapping.items():
        name = str(key)
        if not (name in FIELDS or (name.startswith(("customer.", "item.")) and name.split(".", 1)[1].isidentifier())):
            errors.append(
                gettext("unknown field %(name)s; fields: %(fields)s")
                % {"name": shown(name), "fields": ", ".join([*FIELDS, "customer.<attribute>", "item.<attribute>"])}
            )
        elif not isinstance(column, str) or not column.strip() or len(column) > 200 or not storable_text(column):
            errors.append(f"{name}: " + gettext("the column name must be text of at most %(limit)s characters") % {
                "limit": 200
            })
        else:
            cleaned[name] = column.strip()
    if errors:
        raise InvalidInput(f"mapping: {errors[0]}", code="invalid_mapping", fields={"mapping": errors})
    return cleaned


def _auto_mapping(header: list[str]) -> dict[str, str] | None:
    names = {name.strip().casefold(): name.strip() for name in header}
    if all(column.casefold() in names for column in ONLINE_RETAIL_MAPPING.values()):
        return dict(ONLINE_RETAIL_MAPPING)
    mapping = {}
    for target, candidates in GENERIC_COLUMNS.items():
        found = next((names[c] for c in candidates if c in names), None)
        if found is not None:
            mapping[target] = found
    if all(f in mapping for f in REQUIRED_FIELDS):
        return mapping
    return None


def is_online_retail(mapping: dict[str, str]) -> bool:
    return mapping == ONLINE_RETAIL_MAPPING


def _columns(
    header: list[str], mapping: dict[str, str] | None, first_line: str
) -> tuple[dict[str, str], dict[str, int]]:
    """The mapping in force and, per field, its column index."""
    names = [cell.strip() for cell in header]
    if mapping is None:
        mapping = _auto_mapping(names)
        if mapping is None:
            for delimiter, label in _OTHER_DELIMITERS.items():
                if delimiter in first_line:
                    raise file_error(
                        gettext(
                            "The file seems to use %(delimiter)s as its delimiter; imports need commas (,). "
                            "Save it comma-separated and upload it again."
                        ) % {"delimiter": label},
                        "wrong_delimiter",
                    )
            raise file_error(
                gettext(
                    "The columns are not recognised: give a column mapping, or use the Online Retail columns "
                    "(%(online_retail)s) or %(required)s (and optionally %(optional)s)."
                ) % {
                    "online_retail": ", ".join(ONLINE_RETAIL_MAPPING.values()),
                    "required": "customer_id, sku, timestamp",
                    "optional": "type, value, event_id, title, price",
                },
                "unknown_format",
            )
    index_of = {name.casefold(): i for i, name in reversed(list(enumerate(names)))}
    missing_required = [f for f in REQUIRED_FIELDS if f not in mapping]
    if missing_required:
        raise file_error(
            ngettext("The mapping needs the field %(names)s.", "The mapping needs the fields %(names)s.",
                     len(missing_required)) % {"names": ", ".join(missing_required)},
            "missing_columns",
        )
    absent = [column for column in mapping.values() if column.casefold() not in index_of]
    if absent:
        hint = ""
        if len(names) == 1 and any(d in first_line for d in _OTHER_DELIMITERS):
            hint = " " + gettext("The file does not seem to be comma-separated; imports need commas (,).")
        raise file_error(
            ngettext(
                "Missing column: %(absent)s. The file's columns are: %(columns)s.",
                "Missing columns: %(absent)s. The file's columns are: %(columns)s.",
                len(absent),
            ) % {
                "absent": ", ".join(shown(c) for c in absent),
                "columns": ", ".join(shown(n) for n in names if n) or gettext("none"),
            } + hint,
            "missing_columns",
        )
    return mapping, {target: index_of[column.casefold()] for target, column in mapping.items()}


def parse_file(data: bytes, mapping: dict[str, str] | None = None, *, now: datetime | None = None) -> ParsedFile:
    """Every data row of the file, parsed, with its own errors. Raises for problems with the whole file."""
    if len(data) > max_bytes():
        raise too_large(len(data))
    text = decode_csv(data)
    now = now or timezone.now()
    # strict: a stray quote is an error with its line number, not a cell that swallows the rest of the file
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
        if header is None or not any(cell.strip() for cell in header):
            raise file_error(gettext("The file is empty; its first line must name the columns."), "empty_file")
        first_line = text.split("\n", 1)[0]
        mapping, columns = _columns(header, mapping, first_line)
        rows: list[ParsedRow] = []
        blank = 0
        line = reader.line_num
        for cells in reader:
            start, line = line + 1, reader.line_num
            if not any(cell.strip() for cell in cells):
                blank += 1
                continue
            rows.append(_parse_row(start, cells, len(header), columns, now))
    except csv.Error as exc:
        raise file_error(
            gettext("Line %(line)s: the CSV cannot be read (%(error)s).") % {"line": reader.line_num, "error": exc},
            "invalid_csv",
        ) from None
    if not rows:
        raise file_error(gettext("The file has a header but no rows."), "no_rows")
    return ParsedFile(mapping=mapping, rows=rows, blank_lines=blank)


def _parse_row(line: int, cells: list[str], width: int, columns: dict[str, int], now: datetime) -> ParsedRow:
    row = ParsedRow(line=line)
    if len(cells) > width and any(cell.strip() for cell in cells[width:]):
        row.errors.append(
            gettext("the row has %(cells)s cells but the header has %(columns)s columns (a stray comma?)")
            % {"cells": len(cells), "columns": width}
        )
        return row

    def cell(name: str) -> str:
        index = columns.get(name)
        return cells[index].strip() if index is not None and index < len(cells) else ""

    for name in columns:
        value = cell(name)
        if not storable_text(value):
            row.errors.append(f"{name}: " + gettext("contains a NUL or an unpaired surrogate character"))
    if row.errors:
        return row
    row.customer = cell("customer")
    row.sku = cell("sku")
    row.invoice = cell("invoice")
    row.event_id = cell("event_id")
    row.title = cell("title")
    row.description = cell("description")
    for name, limit in (
        ("customer", limits.MAX_EXTERNAL_ID_LENGTH),
        ("sku", limits.MAX_SKU_LENGTH),
        ("event_id", limits.MAX_EVENT_ID_LENGTH),
        ("title", limits.MAX_TITLE_LENGTH),
        ("description", limits.MAX_DESCRIPTION_LENGTH),
    ):
        if len(cell(name)) > limit:
            row.errors.append(
                f"{name}: "
                + gettext("at most %(limit)s characters (got %(length)s)") % {"limit": limit, "length": len(cell(name))}
            )
    if not row.sku:
        row.errors.append("sku: " + gettext("missing"))
    row.occurred_at = _timestamp(cell("timestamp"), now, row.errors)
    if "type" in columns:
        kind = cell("type").lower() or EventType.PURCHASE
        if kind not in EventType.values:
            row.errors.append(
                "type: " + gettext("%(value)s is not one of %(choices)s")
                % {"value": shown(kind), "choices": ", ".join(EventType.values)}
            )
        row.type = kind
    if "value" in columns and cell("value"):
        row.value = _number(cell("value"), "value", row.errors)
    if "price" in columns and cell("price"):
        row.price = _price(cell("price"), row.errors)
    for name in columns:
        if name.startswith(("customer.", "item.")):
            value = cell(name)[: limits.MAX_ATTRIBUTE_VALUE_LENGTH]
            target = row.customer_attributes if name.startswith("customer.") else row.item_attributes
            if value:
                target[name.split(".", 1)[1]] = value
    return row


def _timestamp(raw: str, now: datetime, errors: list[str]) -> datetime | None:
    if not raw:
        errors.append("timestamp: " + gettext("missing"))
        return None
    try:
        if raw.replace(".", "", 1).isdigit():
            value = datetime.fromtimestamp(float(raw), tz=UTC)
        else:
            value = datetime.fromisoformat(raw)
            if value.tzinfo is None:
                value = value.replace(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        message = gettext("%(value)s is not an ISO 8601 date nor Unix seconds") % {"value": shown(raw)}
        errors.append("timestamp: " + message)
        return None
    if value > now + FUTURE_TOLERANCE:
        errors.append("timestamp: " + gettext("%(value)s is in the future") % {"value": raw})
        return None
    return value


def _number(raw: str, name: str, errors: list[str]) -> float:
    try:
        value = float(raw)
    except ValueError:
        errors.append(f"{name}: " + gettext("%(value)s is not a number") % {"value": shown(raw)})
        return 0.0
    if not math.isfinite(value) or abs(value) > 1e9:
        errors.append(f"{name}: " + gettext("%(value)s is out of range") % {"value": shown(raw)})
        return 0.0
    return value


def _price(raw: str, errors: list[str]) -> Decimal | None:
    try:
        value = Decimal(raw)
    except InvalidOperation:
        errors.append("price: " + gettext("%(value)s is not a number") % {"value": shown(raw)})
        return None
    if not value.is_finite() or abs(value) > _MAX_PRICE:
        errors.append("price: " + gettext("%(value)s is out of range") % {"value": shown(raw)})
    elif value < 0:
        errors.append("price: " + gettext("%(value)s is negative") % {"value": raw})
    elif value != value.quantize(Decimal("0.0001")):
        errors.append("price: " + gettext("%(value)s has more than 4 decimal places") % {"value": raw})
    else:
        return value
    return None


def derived_event_id(row: ParsedRow) -> str:
    """A stable id for a row without one: the same row always gets the same id, in any file."""
    content = "\x1f".join(
        [
            row.invoice,
            row.sku,
            row.customer,
            row.occurred_at.isoformat() if row.occurred_at else "",
            row.type,
            repr(row.value),
            str(row.price or ""),
        ]
    )
    digest = hashlib.sha256(content.encode()).hexdigest()[:24]
    prefix = f"{row.invoice}/{row.sku}/"[:150] if row.invoice else "row/"
    return prefix + digest
