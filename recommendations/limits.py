"""The limits of what a recommendations request may ask, each stated once.

The services and the importers enforce them; the API serializers and the page forms declare the same
values, so the schema and the form fields state what is accepted. Limits a deployment sets are read
from settings each time (tests change them).
"""

from __future__ import annotations

from django.conf import settings

# --- training jobs -----------------------------------------------------------------------------

#: Recommendations stored per customer: one row each, for every customer of the project.
MAX_K = 100
#: Days held out for the evaluation: a year covers any seasonality the evaluation could show.
MAX_HOLDOUT_DAYS = 365

# --- records (ingest and CSV import) -----------------------------------------------------------
# The columns of recommendations.models: a longer value is refused with its length, never cut.

MAX_EXTERNAL_ID_LENGTH, MAX_SKU_LENGTH, MAX_EVENT_ID_LENGTH = 100, 100, 200
MAX_TITLE_LENGTH, MAX_DESCRIPTION_LENGTH = 300, 5000
#: Attributes of one customer or item sent through the API, and the length of one attribute's name.
MAX_SENT_ATTRIBUTES, MAX_ATTRIBUTE_NAME_LENGTH = 50, 60
#: An attribute's value is kept up to this length (a segment matches it exactly).
MAX_ATTRIBUTE_VALUE_LENGTH = 200
#: Free text of the import and campaign forms (a JSON mapping, SKUs, shared inputs).
MAX_FORM_TEXT_LENGTH = 5000

# --- campaigns ---------------------------------------------------------------------------------

MAX_CAMPAIGN_NAME_LENGTH = 120
#: Items named per customer: each one is prompt text of every job of the campaign.
MAX_ITEMS_PER_CUSTOMER = 5
#: Names a segment lists (countries, customers), and the attributes it matches.
MAX_SEGMENT_NAMES, MAX_SEGMENT_ATTRIBUTES = 1000, 20
#: One name of a segment: a country or a customer's external id.
MAX_SEGMENT_NAME_LENGTH = MAX_EXTERNAL_ID_LENGTH
#: Segment filters: a window of ten years, and counts that no shop of this size reaches.
MAX_PURCHASED_WITHIN_DAYS, MAX_MIN_PURCHASES, MAX_SEGMENT_LIMIT = 3650, 100_000, 100_000


def max_campaign_customers() -> int:
    """Customers per campaign (CAMPAIGN_MAX_CUSTOMERS): each one is a generation job, admitted at once."""
    return int(settings.CAMPAIGN_MAX_CUSTOMERS)
