"""Importing catalog items, customers and events from a CSV file, with a row-level report.

A column mapping names, for each field we store, the file's column that holds it
(``{"customer": "CustomerID", "sku": "StockCode", ...}``); the Online Retail export
and a plain ``customer_id,sku,timestamp,...`` file are recognised without one.

A problem with the file itself (size, encoding, delimiter, columns) refuses the
whole file and writes nothing. Otherwise every row gets exactly one outcome, so
the report's counts add up to the file's rows; the first that applies wins:

``rejected``           a value is unusable (bad number or date, a date in the future ...): listed with its line
``duplicate_in_file``  the same row (same event id) appeared earlier in this file
``missing_customer``   no customer id: the event cannot be attributed (the item still enters the catalog)
``non_product``        a SKU listed in ``exclude_skus`` (postage, fees, discounts in the Online Retail data)
``unknown_item``       a SKU neither in the catalog nor named with a title anywhere in the file
``negative_quantity``  a purchase with a negative quantity that is not a cancellation
``returns_imported``   a cancellation (invoice starting with ``C``): stored as a ``return`` event
``imported``           stored as a new event
``already_imported``   its event id is already stored (the file, or part of it, was imported before)

Events are idempotent by ``event_id``: the file's own column when mapped, else one
derived from the row's content, so importing the same file twice stores nothing
the second time. Items and customers are upserted: a changed title, price or
country updates the row, an unchanged one is left alone.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from core.csvfiles import decode_csv, file_error
from core.errors import DomainError, InvalidInput, NotFound
from generation.services import storable_text
from recommendations.models import CatalogItem, Customer, DataImport, Event, EventType

if TYPE_CHECKING:
    from apikeys.models import ApiKey
    from organizations.models import Organization
    from projects.models import Project

#: Rows per INSERT / lookup round trip; 5,000 events are ~1 MB of parameters.
BATCH_SIZE = 5000
#: Row errors and example lines kept in the stored report; the counts are always complete.
MAX_REPORTED_ERRORS = 500
MAX_EXAMPLE_LINES = 50
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
    "customer": "the customer's id (required)",
    "sku": "the item's SKU (required)",
    "timestamp": "when it happened: ISO 8601 or Unix seconds (required)",
    "type": "view, cart, purchase, rating or return (default purchase)",
    "value": "quantity, or the rating (default 1)",
    "event_id": "a unique id per event (default: derived from the row)",
    "invoice": "invoice number; one starting with C is a cancellation",
    "title": "the item's title",
    "description": "the item's description",
    "price": "the item's unit price",
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
_OTHER_DELIMITERS = {";": "semicolons (;)", "\t": "tabs", "|": "pipes (|)"}
_MAX_ATTRIBUTE_LENGTH = 200
_MAX_PRICE = Decimal("9999999999")

OUTCOMES = (
    "imported",
    "returns_imported",
    "already_imported",
    "duplicate_in_file",
    "missing_customer",
    "non_product",
    "unknown_item",
    "negative_quantity",
    "rejected",
)


class FileTooLarge(DomainError):
    status_code = 413
    code = "file_too_large"


def max_bytes() -> int:
    return int(settings.RECOMMENDATION_IMPORT_MAX_BYTES)


def too_large(size: int) -> FileTooLarge:
    limit = max_bytes()
    message = f"The file is {size / 1024 / 1024:.1f} MB; imports take at most {limit / 1024 / 1024:.0f} MB."
    return FileTooLarge(message, fields={"file": [message]})


# --- parsing -------------------------------------------------------------------------------------


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


def _shown(name: str) -> str:
    return repr(name[:40].encode("utf-8", "backslashreplace").decode("utf-8"))


def validate_mapping(mapping: Any) -> dict[str, str]:
    """A mapping a caller wrote: known fields to column names. Raises ``InvalidInput``."""
    if not isinstance(mapping, dict):
        raise InvalidInput("mapping must be an object of field names to column names.", code="invalid_mapping")
    errors: list[str] = []
    cleaned: dict[str, str] = {}
    for key, column in mapping.items():
        name = str(key)
        if not (name in FIELDS or (name.startswith(("customer.", "item.")) and name.split(".", 1)[1].isidentifier())):
            errors.append(
                f"unknown field {_shown(name)}; fields: {', '.join(FIELDS)}, customer.<attribute>, item.<attribute>"
            )
        elif not isinstance(column, str) or not column.strip() or len(column) > 200 or not storable_text(column):
            errors.append(f"{name}: the column name must be text of at most 200 characters")
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
                        f"The file seems to use {label} as its delimiter; imports need commas (,). "
                        "Save it comma-separated and upload it again.",
                        "wrong_delimiter",
                    )
            raise file_error(
                "The columns are not recognised: give a column mapping, or use the Online Retail columns ("
                + ", ".join(ONLINE_RETAIL_MAPPING.values())
                + ") or customer_id, sku, timestamp (and optionally type, value, event_id, title, price).",
                "unknown_format",
            )
    index_of = {name.casefold(): i for i, name in reversed(list(enumerate(names)))}
    missing_required = [f for f in REQUIRED_FIELDS if f not in mapping]
    if missing_required:
        raise file_error(
            f"The mapping needs the field{'s' if len(missing_required) > 1 else ''} {', '.join(missing_required)}.",
            "missing_columns",
        )
    absent = [column for column in mapping.values() if column.casefold() not in index_of]
    if absent:
        hint = ""
        if len(names) == 1 and any(d in first_line for d in _OTHER_DELIMITERS):
            hint = " The file does not seem to be comma-separated; imports need commas (,)."
        raise file_error(
            f"Missing column{'s' if len(absent) > 1 else ''}: {', '.join(_shown(c) for c in absent)}. "
            f"The file's columns are: {', '.join(_shown(n) for n in names if n) or 'none'}.{hint}",
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
            raise file_error("The file is empty; its first line must name the columns.", "empty_file")
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
        raise file_error(f"Line {reader.line_num}: the CSV cannot be read ({exc}).", "invalid_csv") from None
    if not rows:
        raise file_error("The file has a header but no rows.", "no_rows")
    return ParsedFile(mapping=mapping, rows=rows, blank_lines=blank)


def _parse_row(line: int, cells: list[str], width: int, columns: dict[str, int], now: datetime) -> ParsedRow:
    row = ParsedRow(line=line)
    if len(cells) > width and any(cell.strip() for cell in cells[width:]):
        row.errors.append(f"the row has {len(cells)} cells but the header has {width} columns (a stray comma?)")
        return row

    def cell(name: str) -> str:
        index = columns.get(name)
        return cells[index].strip() if index is not None and index < len(cells) else ""

    for name in columns:
        value = cell(name)
        if not storable_text(value):
            row.errors.append(f"{name}: contains a NUL or an unpaired surrogate character")
    if row.errors:
        return row
    row.customer = cell("customer")
    row.sku = cell("sku")
    row.invoice = cell("invoice")
    row.event_id = cell("event_id")
    row.title = cell("title")
    row.description = cell("description")
    for name, limit in (("customer", 100), ("sku", 100), ("event_id", 200), ("title", 300), ("description", 5000)):
        if len(cell(name)) > limit:
            row.errors.append(f"{name}: at most {limit} characters (got {len(cell(name))})")
    if not row.sku:
        row.errors.append("sku: missing")
    row.occurred_at = _timestamp(cell("timestamp"), now, row.errors)
    if "type" in columns:
        kind = cell("type").lower() or EventType.PURCHASE
        if kind not in EventType.values:
            row.errors.append(f"type: {_shown(kind)} is not one of {', '.join(EventType.values)}")
        row.type = kind
    if "value" in columns and cell("value"):
        row.value = _number(cell("value"), "value", row.errors)
    if "price" in columns and cell("price"):
        row.price = _price(cell("price"), row.errors)
    for name in columns:
        if name.startswith(("customer.", "item.")):
            value = cell(name)[:_MAX_ATTRIBUTE_LENGTH]
            target = row.customer_attributes if name.startswith("customer.") else row.item_attributes
            if value:
                target[name.split(".", 1)[1]] = value
    return row


def _timestamp(raw: str, now: datetime, errors: list[str]) -> datetime | None:
    if not raw:
        errors.append("timestamp: missing")
        return None
    try:
        if raw.replace(".", "", 1).isdigit():
            value = datetime.fromtimestamp(float(raw), tz=UTC)
        else:
            value = datetime.fromisoformat(raw)
            if value.tzinfo is None:
                value = value.replace(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        errors.append(f"timestamp: {_shown(raw)} is not an ISO 8601 date nor Unix seconds")
        return None
    if value > now + FUTURE_TOLERANCE:
        errors.append(f"timestamp: {raw} is in the future")
        return None
    return value


def _number(raw: str, name: str, errors: list[str]) -> float:
    try:
        value = float(raw)
    except ValueError:
        errors.append(f"{name}: {_shown(raw)} is not a number")
        return 0.0
    if not math.isfinite(value) or abs(value) > 1e9:
        errors.append(f"{name}: {_shown(raw)} is out of range")
        return 0.0
    return value


def _price(raw: str, errors: list[str]) -> Decimal | None:
    try:
        value = Decimal(raw)
    except InvalidOperation:
        errors.append(f"price: {_shown(raw)} is not a number")
        return None
    if not value.is_finite() or abs(value) > _MAX_PRICE:
        errors.append(f"price: {_shown(raw)} is out of range")
    elif value < 0:
        errors.append(f"price: {raw} is negative")
    elif value != value.quantize(Decimal("0.0001")):
        errors.append(f"price: {raw} has more than 4 decimal places")
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


# --- classifying and storing ---------------------------------------------------------------------


def import_events(
    *,
    organization: Organization,
    project: Project,
    data: bytes,
    filename: str = "",
    mapping: dict[str, str] | None = None,
    exclude_skus: list[str] | None = None,
    actor: Any = None,
    api_key: ApiKey | None = None,
) -> DataImport:
    """Parse, classify and store a file; returns the import with its report. A file-level problem writes nothing."""
    if project.organization_id != organization.pk:
        raise NotFound("Project not found.", code="project_not_found")
    started = time.monotonic()
    parsed = parse_file(data, mapping)
    if exclude_skus is None:
        exclude_skus = ONLINE_RETAIL_NON_PRODUCTS if is_online_retail(parsed.mapping) else []
    with transaction.atomic():
        lock_project_data(project)
        data_import = DataImport.objects.create(
            organization=organization,
            project=project,
            filename=_clean_filename(filename),
            size_bytes=len(data),
            mapping=parsed.mapping,
            total_rows=len(parsed.rows),
            created_by=actor if getattr(actor, "pk", None) else None,
            api_key=api_key,
        )
        counts, stats = store_rows(
            organization, project, parsed.rows, exclude=set(exclude_skus), source=data_import
        )
        data_import.report = _report(parsed, counts, stats, exclude_skus)
        data_import.events_created = counts["imported"] + counts["returns_imported"]
        data_import.duration_s = round(time.monotonic() - started, 3)
        data_import.save(update_fields=["report", "events_created", "duration_s"])
    return data_import


def lock_project_data(project: Project) -> None:
    """Serialize writers of one project's catalog and events (imports, ingest) until the transaction ends.

    Two imports of the same file at once would otherwise both count its rows as new.
    """
    key = int.from_bytes(project.pk.bytes[:8], "big", signed=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])


def _classify(rows: list[ParsedRow], exclude: set[str], known_skus: set[str]) -> None:
    titled = {row.sku for row in rows if not row.errors and row.title and row.sku not in exclude}
    seen_ids: set[str] = set()
    for row in rows:
        if row.errors:
            row.outcome = "rejected"
            continue
        row.event_id = row.event_id or derived_event_id(row)
        if row.event_id in seen_ids:
            row.outcome = "duplicate_in_file"
            continue
        seen_ids.add(row.event_id)
        if not row.customer:
            row.outcome = "missing_customer"
        elif row.sku in exclude:
            row.outcome = "non_product"
        elif row.sku not in titled and row.sku not in known_skus:
            row.outcome = "unknown_item"
        elif row.value < 0 and not row.is_cancellation:
            row.outcome = "negative_quantity"
        else:
            row.outcome = "store"


def store_rows(
    organization: Organization,
    project: Project,
    rows: list[ParsedRow],
    *,
    exclude: set[str] = frozenset(),  # type: ignore[assignment]
    source: DataImport | None = None,
) -> tuple[Counter[str], dict[str, Any]]:
    """Classify parsed rows (setting each one's ``outcome``), upsert their items and customers, store new events.

    The caller holds ``lock_project_data`` and the transaction.
    """
    skus = {row.sku for row in rows if not row.errors}
    known_skus = set(_chunked_values(CatalogItem.objects.filter(project=project), "sku", skus))
    _classify(rows, exclude, known_skus)
    items_created, items_updated = upsert_items(
        organization, project, [r for r in rows if r.outcome != "rejected" and r.title and r.sku not in exclude]
    )
    to_store = [row for row in rows if row.outcome == "store"]
    customers_created, customers_updated = upsert_customers(organization, project, to_store)
    existing = set(
        _chunked_values(Event.objects.filter(project=project), "event_id", {row.event_id for row in to_store})
    )
    item_ids = _pk_map(CatalogItem.objects.filter(project=project), "sku", {row.sku for row in to_store})
    customer_ids = _pk_map(Customer.objects.filter(project=project), "external_id", {row.customer for row in to_store})
    now = timezone.now()
    new_events = []
    for row in to_store:
        if row.event_id in existing:
            row.outcome = "already_imported"
            continue
        row.outcome = "returns_imported" if row.is_cancellation else "imported"
        new_events.append(
            (
                organization.pk,
                project.pk,
                customer_ids[row.customer],
                item_ids[row.sku],
                EventType.RETURN.value if row.is_cancellation else row.type,
                abs(row.value) if row.is_cancellation else row.value,
                row.occurred_at,
                row.event_id,
                source.pk if source is not None else None,
                now,
            )
        )
    _copy_events(new_events)
    counts = Counter(row.outcome for row in rows)
    stats = {
        "items_created": items_created,
        "items_updated": items_updated,
        "customers_created": customers_created,
        "customers_updated": customers_updated,
    }
    return counts, stats


_EVENT_COLUMNS = (
    "organization_id", "project_id", "customer_id", "item_id", "type", "value", "occurred_at", "event_id", "source_id",
    "created_at",
)


def _copy_events(rows: list[tuple[Any, ...]]) -> None:
    """Insert events with COPY: 30,000 events take ~0.4 s, against ~3 s through bulk_create.

    Safe without ON CONFLICT: the caller holds the project's lock and has left out every
    event id already stored or repeated in the batch.
    """
    if not rows:
        return
    table = Event._meta.db_table
    with connection.cursor() as cursor, cursor.copy(  # type: ignore[attr-defined]
        f'COPY "{table}" ({", ".join(_EVENT_COLUMNS)}) FROM STDIN'
    ) as copy:
        for row in rows:
            copy.write_row(row)


def _chunked_values(queryset: Any, field_name: str, values: set[str]) -> list[Any]:
    found: list[Any] = []
    ordered = sorted(values)
    for start in range(0, len(ordered), BATCH_SIZE):
        chunk = ordered[start : start + BATCH_SIZE]
        found.extend(queryset.filter(**{f"{field_name}__in": chunk}).values_list(field_name, flat=True))
    return found


def _pk_map(queryset: Any, field_name: str, values: set[str]) -> dict[str, Any]:
    ids: dict[str, Any] = {}
    ordered = sorted(values)
    for start in range(0, len(ordered), BATCH_SIZE):
        chunk = ordered[start : start + BATCH_SIZE]
        ids.update(queryset.filter(**{f"{field_name}__in": chunk}).values_list(field_name, "pk"))
    return ids


def _latest_by(rows: list[ParsedRow], key: str) -> dict[str, ParsedRow]:
    """Per key, the row with the latest timestamp (the file's later line on a tie): the current values."""
    latest: dict[str, ParsedRow] = {}
    for row in rows:
        name = getattr(row, key)
        current = latest.get(name)
        if current is None or (row.occurred_at or datetime.min.replace(tzinfo=UTC)) >= (
            current.occurred_at or datetime.min.replace(tzinfo=UTC)
        ):
            latest[name] = row
    return latest


def upsert_items(organization: Organization, project: Project, rows: list[ParsedRow]) -> tuple[int, int]:
    """Items named with a title in any valid row enter the catalog, whoever bought them: (created, updated)."""
    latest = _latest_by(rows, "sku")
    existing = {item.sku: item for item in _items(project, set(latest))}
    now = timezone.now()
    new, changed = [], []
    for sku, row in latest.items():
        item = existing.get(sku)
        if item is None:
            new.append(
                CatalogItem(
                    organization=organization,
                    project=project,
                    sku=sku,
                    title=row.title,
                    description=row.description,
                    price=row.price,
                    attributes=row.item_attributes,
                    created_at=now,
                    updated_at=now,
                )
            )
            continue
        wanted = {
            "title": row.title or item.title,
            "description": row.description or item.description,
            "price": row.price if row.price is not None else item.price,
            "attributes": {**item.attributes, **row.item_attributes},
        }
        if any(getattr(item, name) != value for name, value in wanted.items()):
            for name, value in wanted.items():
                setattr(item, name, value)
            item.updated_at = now
            changed.append(item)
    CatalogItem.objects.bulk_create(new, batch_size=BATCH_SIZE)
    CatalogItem.objects.bulk_update(
        changed, ["title", "description", "price", "attributes", "updated_at"], batch_size=BATCH_SIZE
    )
    return len(new), len(changed)


def _items(project: Project, skus: set[str]) -> list[CatalogItem]:
    items: list[CatalogItem] = []
    ordered = sorted(skus)
    for start in range(0, len(ordered), BATCH_SIZE):
        items.extend(CatalogItem.objects.filter(project=project, sku__in=ordered[start : start + BATCH_SIZE]))
    return items


def upsert_customers(organization: Organization, project: Project, rows: list[ParsedRow]) -> tuple[int, int]:
    latest = _latest_by(rows, "customer")
    ordered = sorted(latest)
    existing: dict[str, Customer] = {}
    for start in range(0, len(ordered), BATCH_SIZE):
        chunk = ordered[start : start + BATCH_SIZE]
        existing.update((c.external_id, c) for c in Customer.objects.filter(project=project, external_id__in=chunk))
    now = timezone.now()
    new, changed = [], []
    for external_id, row in latest.items():
        customer = existing.get(external_id)
        if customer is None:
            new.append(
                Customer(
                    organization=organization,
                    project=project,
                    external_id=external_id,
                    attributes=row.customer_attributes,
                    created_at=now,
                    updated_at=now,
                )
            )
        elif {**customer.attributes, **row.customer_attributes} != customer.attributes:
            customer.attributes = {**customer.attributes, **row.customer_attributes}
            customer.updated_at = now
            changed.append(customer)
    Customer.objects.bulk_create(new, batch_size=BATCH_SIZE)
    Customer.objects.bulk_update(changed, ["attributes", "updated_at"], batch_size=BATCH_SIZE)
    return len(new), len(changed)


# --- JSON ingest ---------------------------------------------------------------------------------

#: Most events, items or customers in one ingest request; the 5 MB request body limit
#: (DATA_UPLOAD_MAX_MEMORY_SIZE) holds about 25,000 small events, so this is the tighter cap.
INGEST_MAX_ROWS = 10_000
_EVENT_KEYS = {"event_id", "customer", "sku", "type", "value", "timestamp"}
_ITEM_KEYS = {"sku", "title", "description", "price", "attributes"}
_CUSTOMER_KEYS = {"external_id", "attributes"}


def _text_field(record: dict[str, Any], name: str, limit: int, errors: list[str], *, required: bool = False) -> str:
    value = record.get(name)
    if value is None or value == "":
        if required:
            errors.append(f"{name}: missing")
        return ""
    if isinstance(value, int | float) and not isinstance(value, bool) and name in {"customer", "sku", "external_id"}:
        value = str(value)  # numeric ids, as spreadsheets and JSON exports write them
    if not isinstance(value, str):
        errors.append(f"{name}: must be text")
        return ""
    value = value.strip()
    if not storable_text(value):
        errors.append(f"{name}: contains a NUL or an unpaired surrogate character")
        return ""
    if len(value) > limit:
        errors.append(f"{name}: at most {limit} characters (got {len(value)})")
        return ""
    if required and not value:
        errors.append(f"{name}: missing")
    return value


def _attributes(value: Any, errors: list[str]) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > 50:
        errors.append("attributes: must be an object of at most 50 names to values")
        return {}
    cleaned = {}
    for key, item in value.items():
        if not isinstance(item, str | int | float | bool):
            errors.append(f"attributes.{_shown(str(key))[1:-1]}: must be text or a number")
            continue
        text, name = str(item).strip(), str(key).strip()
        if not (name and storable_text(name) and storable_text(text) and len(name) <= 60):
            errors.append(f"attributes: {_shown(name)} is not a usable name or value")
            continue
        cleaned[name] = text[:_MAX_ATTRIBUTE_LENGTH]
    return cleaned


def _unknown_keys(record: dict[str, Any], allowed: set[str], errors: list[str]) -> None:
    unknown = sorted(_shown(str(k)) for k in record if k not in allowed)
    if unknown:
        errors.append(f"unknown field{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; fields: "
                      + ", ".join(sorted(allowed)))


def _event_row(index: int, record: Any, now: datetime) -> ParsedRow:
    row = ParsedRow(line=index)
    if not isinstance(record, dict):
        row.errors.append("an event must be an object")
        return row
    _unknown_keys(record, _EVENT_KEYS, row.errors)
    row.event_id = _text_field(record, "event_id", 200, row.errors)
    row.customer = _text_field(record, "customer", 100, row.errors, required=True)
    row.sku = _text_field(record, "sku", 100, row.errors, required=True)
    kind = record.get("type", EventType.PURCHASE)
    if kind not in EventType.values:
        row.errors.append(f"type: must be one of {', '.join(EventType.values)}")
    else:
        row.type = kind
    value = record.get("value", 1)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or abs(value) > 1e9:
        row.errors.append("value: must be a number")
    else:
        row.value = float(value)
    stamp = record.get("timestamp")
    if isinstance(stamp, int | float) and not isinstance(stamp, bool):
        if stamp < 0 or not math.isfinite(stamp):
            row.errors.append("timestamp: Unix seconds must be a positive number")
        else:
            row.occurred_at = _timestamp(repr(stamp), now, row.errors)
    elif isinstance(stamp, str):
        row.occurred_at = _timestamp(stamp.strip(), now, row.errors)
    else:
        row.errors.append("timestamp: missing (ISO 8601 text or Unix seconds)")
    return row


def _item_row(index: int, record: Any) -> ParsedRow:
    row = ParsedRow(line=index)
    if not isinstance(record, dict):
        row.errors.append("an item must be an object")
        return row
    _unknown_keys(record, _ITEM_KEYS, row.errors)
    row.sku = _text_field(record, "sku", 100, row.errors, required=True)
    row.title = _text_field(record, "title", 300, row.errors)
    row.description = _text_field(record, "description", 5000, row.errors)
    price = record.get("price")
    if price is not None:
        if isinstance(price, bool) or not isinstance(price, str | int | float):
            row.errors.append("price: must be a number or a decimal string")
        else:
            row.price = _price(str(price), row.errors)
    row.item_attributes = _attributes(record.get("attributes"), row.errors)
    return row


def _customer_row(index: int, record: Any) -> ParsedRow:
    row = ParsedRow(line=index)
    if not isinstance(record, dict):
        row.errors.append("a customer must be an object")
        return row
    _unknown_keys(record, _CUSTOMER_KEYS, row.errors)
    row.customer = _text_field(record, "external_id", 100, row.errors, required=True)
    row.customer_attributes = _attributes(record.get("attributes"), row.errors)
    return row


def ingest(
    *,
    organization: Organization,
    project: Project,
    events: Any,
    items: Any = None,
    customers: Any = None,
) -> dict[str, Any]:
    """Store a batch of items, customers and events sent as JSON; idempotent by ``event_id``.

    Items and customers are upserted first, so events may name items sent in the same
    request. Every bad record is reported by its index and never stops the good ones.
    An event without ``event_id`` gets one derived from its content, so a retried
    request stores nothing twice.
    """
    if project.organization_id != organization.pk:
        raise NotFound("Project not found.", code="project_not_found")
    lists = {"events": events, "items": items or [], "customers": customers or []}
    for name, value in lists.items():
        if not isinstance(value, list):
            raise InvalidInput(f"{name} must be a list.", code="invalid", fields={name: ["must be a list"]})
        if len(value) > INGEST_MAX_ROWS:
            raise InvalidInput(
                f"{name}: at most {INGEST_MAX_ROWS:,} per request (got {len(value):,}); send several requests.",
                code="too_many_rows",
                fields={name: [f"at most {INGEST_MAX_ROWS}"]},
            )
    if not any(lists.values()):
        raise InvalidInput("Send at least one event, item or customer.", code="empty_batch")
    now = timezone.now()
    item_rows = [_item_row(i, r) for i, r in enumerate(lists["items"])]
    customer_rows = [_customer_row(i, r) for i, r in enumerate(lists["customers"])]
    event_rows = [_event_row(i, r, now) for i, r in enumerate(lists["events"])]
    with transaction.atomic():
        lock_project_data(project)
        items_created, items_updated = upsert_items(organization, project, [r for r in item_rows if not r.errors])
        customers_created, customers_updated = upsert_customers(
            organization, project, [r for r in customer_rows if not r.errors]
        )
        counts, stats = store_rows(organization, project, event_rows)
    outcomes = {name: counts.get(name, 0) for name in OUTCOMES if name not in {"non_product"}}
    outcomes["duplicate_in_request"] = outcomes.pop("duplicate_in_file")
    return {
        "events": len(event_rows),
        "outcomes": outcomes,
        "items_created": items_created,
        "items_updated": items_updated,
        "customers_created": customers_created + stats["customers_created"],
        "customers_updated": customers_updated + stats["customers_updated"],
        "errors": [
            {"list": name, "index": row.line, "errors": row.errors}
            for name, rows in (("items", item_rows), ("customers", customer_rows), ("events", event_rows))
            for row in rows
            if row.errors
        ][:MAX_REPORTED_ERRORS],
        "unknown_items": sorted({row.sku for row in event_rows if row.outcome == "unknown_item"})[:100],
    }


def _report(parsed: ParsedFile, counts: Counter[str], stats: dict[str, Any], exclude: list[str]) -> dict[str, Any]:
    outcomes = {name: counts.get(name, 0) for name in OUTCOMES}
    errors = [{"line": row.line, "errors": row.errors} for row in parsed.rows if row.errors]
    examples: dict[str, list[int]] = {}
    for row in parsed.rows:
        if row.outcome not in ("imported", "returns_imported", "already_imported", "rejected"):
            lines = examples.setdefault(row.outcome, [])
            if len(lines) < MAX_EXAMPLE_LINES:
                lines.append(row.line)
    return {
        "rows": len(parsed.rows),
        "blank_lines": parsed.blank_lines,
        "outcomes": outcomes,
        "cancellation_rows": sum(1 for row in parsed.rows if not row.errors and row.is_cancellation),
        "items_created": stats["items_created"],
        "items_updated": stats["items_updated"],
        "customers_created": stats["customers_created"],
        "customers_updated": stats["customers_updated"],
        "exclude_skus": list(exclude),
        "errors": errors[:MAX_REPORTED_ERRORS],
        "errors_truncated": max(len(errors) - MAX_REPORTED_ERRORS, 0),
        "example_lines": examples,
    }


def _clean_filename(filename: str) -> str:
    return "".join(ch for ch in filename if ch.isprintable() and storable_text(ch))[:255]
