"""The two ways data comes in: a CSV file (``import_events``: read, store, report) and a JSON batch of
items, customers and events (``ingest``), each record checked and reported by its index."""

from __future__ import annotations

import math
import time
from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext, ngettext

from core.errors import InvalidInput, NotFound
from core.text import clean_filename, shown, storable_text
from experiments.services import UnitEvent, record_events
from recommendations import limits
from recommendations.importing.reading import (
    ONLINE_RETAIL_NON_PRODUCTS,
    ParsedFile,
    ParsedRow,
    _price,
    _timestamp,
    is_online_retail,
    parse_file,
)
from recommendations.importing.storing import (
    OUTCOMES,
    lock_project_data,
    store_rows,
    upsert_customers,
    upsert_items,
)
from recommendations.models import DataImport, EventType

if TYPE_CHECKING:
    from apikeys.models import ApiKey
    from organizations.models import Organization
    from projects.models import Project

#: Row errors and example lines kept in the stored report; the counts are always complete.
MAX_REPORTED_ERRORS = 500
MAX_EXAMPLE_LINES = 50


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
        raise NotFound(gettext("Project not found."), code="project_not_found")
    started = time.monotonic()
    parsed = parse_file(data, mapping)
    if exclude_skus is None:
        exclude_skus = ONLINE_RETAIL_NON_PRODUCTS if is_online_retail(parsed.mapping) else []
    with transaction.atomic():
        lock_project_data(project)
        data_import = DataImport.objects.create(
            organization=organization,
            project=project,
            filename=clean_filename(filename),
            size_bytes=len(data),
            mapping=parsed.mapping,
            total_rows=len(parsed.rows),
            created_by=actor if getattr(actor, "pk", None) else None,
            api_key=api_key,
        )
        counts, stats = store_rows(
            organization, project, parsed.rows, exclude=set(exclude_skus), source=data_import
        )
        record_events(project=project, events=_unit_events(parsed.rows))
        data_import.report = _report(parsed, counts, stats, exclude_skus)
        data_import.events_created = counts["imported"] + counts["returns_imported"]
        data_import.duration_s = round(time.monotonic() - started, 3)
        data_import.save(update_fields=["report", "events_created", "duration_s"])
    return data_import



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
            errors.append(f"{name}: " + gettext("missing"))
        return ""
    if isinstance(value, int | float) and not isinstance(value, bool) and name in {"customer", "sku", "external_id"}:
        value = str(value)  # numeric ids, as spreadsheets and JSON exports write them
    if not isinstance(value, str):
        errors.append(f"{name}: " + gettext("must be text"))
        return ""
    value = value.strip()
    if not storable_text(value):
        errors.append(f"{name}: " + gettext("contains a NUL or an unpaired surrogate character"))
        return ""
    if len(value) > limit:
        errors.append(
            f"{name}: "
            + gettext("at most %(limit)s characters (got %(length)s)") % {"limit": limit, "length": len(value)}
        )
        return ""
    if required and not value:
        errors.append(f"{name}: " + gettext("missing"))
    return value


def _attributes(value: Any, errors: list[str]) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > limits.MAX_SENT_ATTRIBUTES:
        errors.append(
            "attributes: "
            + gettext("must be an object of at most %(count)s names to values") % {"count": limits.MAX_SENT_ATTRIBUTES}
        )
        return {}
    cleaned = {}
    for key, item in value.items():
        if not isinstance(item, str | int | float | bool):
            errors.append(f"attributes.{shown(str(key))[1:-1]}: " + gettext("must be text or a number"))
            continue
        text, name = str(item).strip(), str(key).strip()
        if not (name and storable_text(name) and storable_text(text) and len(name) <= limits.MAX_ATTRIBUTE_NAME_LENGTH):
            errors.append("attributes: " + gettext("%(name)s is not a usable name or value") % {"name": shown(name)})
            continue
        cleaned[name] = text[: limits.MAX_ATTRIBUTE_VALUE_LENGTH]
    return cleaned


def _unknown_keys(record: dict[str, Any], allowed: set[str], errors: list[str]) -> None:
    unknown = sorted(shown(str(k)) for k in record if k not in allowed)
    if unknown:
        errors.append(
            ngettext("unknown field %(names)s; fields: %(fields)s", "unknown fields %(names)s; fields: %(fields)s",
                     len(unknown))
            % {"names": ", ".join(unknown), "fields": ", ".join(sorted(allowed))}
        )


def _event_row(index: int, record: Any, now: datetime) -> ParsedRow:
    row = ParsedRow(line=index)
    if not isinstance(record, dict):
        row.errors.append(gettext("an event must be an object"))
        return row
    _unknown_keys(record, _EVENT_KEYS, row.errors)
    row.event_id = _text_field(record, "event_id", limits.MAX_EVENT_ID_LENGTH, row.errors)
    row.customer = _text_field(record, "customer", limits.MAX_EXTERNAL_ID_LENGTH, row.errors, required=True)
    row.sku = _text_field(record, "sku", limits.MAX_SKU_LENGTH, row.errors, required=True)
    kind = record.get("type", EventType.PURCHASE)
    if kind not in EventType.values:
        row.errors.append("type: " + gettext("must be one of %(choices)s") % {"choices": ", ".join(EventType.values)})
    else:
        row.type = kind
    value = record.get("value", 1)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or abs(value) > 1e9:
        row.errors.append("value: " + gettext("must be a number"))
    else:
        row.value = float(value)
    stamp = record.get("timestamp")
    if isinstance(stamp, int | float) and not isinstance(stamp, bool):
        if stamp < 0 or not math.isfinite(stamp):
            row.errors.append("timestamp: " + gettext("Unix seconds must be a positive number"))
        else:
            row.occurred_at = _timestamp(repr(stamp), now, row.errors)
    elif isinstance(stamp, str):
        row.occurred_at = _timestamp(stamp.strip(), now, row.errors)
    else:
        row.errors.append("timestamp: " + gettext("missing (ISO 8601 text or Unix seconds)"))
    return row


def _item_row(index: int, record: Any) -> ParsedRow:
    row = ParsedRow(line=index)
    if not isinstance(record, dict):
        row.errors.append(gettext("an item must be an object"))
        return row
    _unknown_keys(record, _ITEM_KEYS, row.errors)
    row.sku = _text_field(record, "sku", limits.MAX_SKU_LENGTH, row.errors, required=True)
    row.title = _text_field(record, "title", limits.MAX_TITLE_LENGTH, row.errors)
    row.description = _text_field(record, "description", limits.MAX_DESCRIPTION_LENGTH, row.errors)
    price = record.get("price")
    if price is not None:
        if isinstance(price, bool) or not isinstance(price, str | int | float):
            row.errors.append("price: " + gettext("must be a number or a decimal string"))
        else:
            row.price = _price(str(price), row.errors)
    row.item_attributes = _attributes(record.get("attributes"), row.errors)
    return row


def _customer_row(index: int, record: Any) -> ParsedRow:
    row = ParsedRow(line=index)
    if not isinstance(record, dict):
        row.errors.append(gettext("a customer must be an object"))
        return row
    _unknown_keys(record, _CUSTOMER_KEYS, row.errors)
    row.customer = _text_field(record, "external_id", limits.MAX_EXTERNAL_ID_LENGTH, row.errors, required=True)
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
        raise NotFound(gettext("Project not found."), code="project_not_found")
    lists = {"events": events, "items": items or [], "customers": customers or []}
    for name, value in lists.items():
        if not isinstance(value, list):
            raise InvalidInput(
                gettext("%(name)s must be a list.") % {"name": name}, code="invalid",
                fields={name: [gettext("must be a list")]},
            )
        if len(value) > INGEST_MAX_ROWS:
            raise InvalidInput(
                f"{name}: "
                + gettext("at most %(limit)s per request (got %(count)s); send several requests.")
                % {"limit": f"{INGEST_MAX_ROWS:,}", "count": f"{len(value):,}"},
                code="too_many_rows",
                fields={name: [gettext("at most %(limit)s") % {"limit": INGEST_MAX_ROWS}]},
            )
    if not any(lists.values()):
        raise InvalidInput(gettext("Send at least one event, item or customer."), code="empty_batch")
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
        # A customer's external id is a unit of the project's experiments: a new event of a running
        # experiment's goal, within its attribution window, is a conversion of the arm the customer saw.
        record_events(project=project, events=_unit_events(event_rows))
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


def _unit_events(rows: list[ParsedRow]) -> list[UnitEvent]:
    """The events stored now (not those stored before: a retry attributes nothing twice) as experiment outcomes."""
    return [
        UnitEvent(row.customer, row.type, f"event:{row.event_id}", row.occurred_at, row.value)
        for row in rows
        if row.outcome == "imported" and row.occurred_at is not None
    ]


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
