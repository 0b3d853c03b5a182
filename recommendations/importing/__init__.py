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

from recommendations.importing.ingest import (
    INGEST_MAX_ROWS,
    MAX_EXAMPLE_LINES,
    MAX_REPORTED_ERRORS,
    import_events,
    ingest,
)
from recommendations.importing.reading import (
    FIELDS,
    FUTURE_TOLERANCE,
    GENERIC_COLUMNS,
    ONLINE_RETAIL_MAPPING,
    ONLINE_RETAIL_NON_PRODUCTS,
    REQUIRED_FIELDS,
    FileTooLarge,
    ParsedFile,
    ParsedRow,
    derived_event_id,
    is_online_retail,
    max_bytes,
    parse_file,
    too_large,
    validate_mapping,
)
from recommendations.importing.storing import (
    BATCH_SIZE,
    OUTCOMES,
    lock_project_data,
    store_rows,
    upsert_customers,
    upsert_items,
)

__all__ = [
    "BATCH_SIZE",
    "FIELDS",
    "FUTURE_TOLERANCE",
    "GENERIC_COLUMNS",
    "INGEST_MAX_ROWS",
    "MAX_EXAMPLE_LINES",
    "MAX_REPORTED_ERRORS",
    "ONLINE_RETAIL_MAPPING",
    "ONLINE_RETAIL_NON_PRODUCTS",
    "OUTCOMES",
    "REQUIRED_FIELDS",
    "FileTooLarge",
    "ParsedFile",
    "ParsedRow",
    "derived_event_id",
    "import_events",
    "ingest",
    "is_online_retail",
    "lock_project_data",
    "max_bytes",
    "parse_file",
    "store_rows",
    "too_large",
    "upsert_customers",
    "upsert_items",
    "validate_mapping",
]
