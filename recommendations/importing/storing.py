"""Classifying parsed rows (one outcome each) and storing them: events by COPY, catalog items and
customers upserted, all under the project's data lock."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from django.db import connection
from django.utils import timezone

from knowledge import services as knowledge
from recommendations.importing.reading import ParsedRow, derived_event_id
from recommendations.models import CatalogItem, Customer, DataImport, Event, EventType

if TYPE_CHECKING:
    from organizations.models import Organization
    from projects.models import Project

#: Rows per INSERT / lookup round trip; 5,000 events are ~1 MB of parameters.
BATCH_SIZE = 5000

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
    # Their fact sheets become the project's product knowledge, which copy about them is grounded in.
    knowledge.sync_products(organization_id=organization.pk, project_id=project.pk, items=new + changed)
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
