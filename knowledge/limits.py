"""Sizes of knowledge sources and their metadata, shared by the models, the services and the API."""

from __future__ import annotations

MAX_TITLE_LENGTH = 200
MAX_SKU_LENGTH = 200  # as recommendations' catalog SKUs
MAX_LANGUAGE_LENGTH = 16  # BCP 47 tags such as "en" or "pt-BR"
MAX_TAGS = 20
MAX_TAG_LENGTH = 50
MAX_FILENAME_LENGTH = 255
#: Text of one source once extracted. A 10 MB PDF of prose is ~1 M characters; more than that is a book,
#: whose ~2,500 chunks take a CPU worker minutes to embed: split it into sources.
MAX_TEXT_CHARS = 1_000_000
#: Text pasted into the API's JSON body or the form, which carries no file.
MAX_PASTED_TEXT_CHARS = 200_000
#: Values a job's filter may list per field (SKUs of a campaign's recommended items, tags).
MAX_FILTER_VALUES = 50
