"""The limits of what a generation request may ask, each stated once.

The services enforce them; the API serializers and the page forms declare the same values, so the
schema and the form fields state what the services accept. Limits a deployment sets are read from
settings each time (tests change them); the functions below are what every module calls.
"""

from __future__ import annotations

from django.conf import settings

# --- jobs --------------------------------------------------------------------------------------


def max_variants() -> int:
    """Variants per job (GENERATION_MAX_VARIANTS): each one is one more sequence generated, and charged."""
    return int(settings.GENERATION_MAX_VARIANTS)


def max_new_tokens() -> int:
    """Tokens per variant (GENERATION_MAX_NEW_TOKENS): bounds a job's cost and its time on the model."""
    return int(settings.GENERATION_MAX_NEW_TOKENS)


#: Sampling temperature range and default: above 2 the text is noise.
MIN_TEMPERATURE, MAX_TEMPERATURE, DEFAULT_TEMPERATURE = 0.0, 2.0, 0.7
#: Nucleus sampling range and default: 0 would keep no token at all.
MIN_TOP_P, MAX_TOP_P, DEFAULT_TOP_P = 0.01, 1.0, 0.95
#: Largest seed: the job's seed column is a signed 64-bit bigint.
MAX_SEED = 2**63 - 1
#: Idempotency-Key length: the size of the job's idempotency_key column.
MAX_IDEMPOTENCY_KEY_LENGTH = 200

# --- templates ---------------------------------------------------------------------------------

#: Variable names: Python identifiers short enough to read as a form field's name.
MAX_VARIABLE_NAME_LENGTH = 40
#: A variable's own max_length: its default, and the most one may declare (all of it goes into the prompt).
DEFAULT_VARIABLE_MAX_LENGTH, MAX_VARIABLE_MAX_LENGTH = 500, 10_000
#: Tokens per variant a new template version asks for when it says nothing.
DEFAULT_TEMPLATE_MAX_NEW_TOKENS = 200
#: Template text columns (generation.models.Template and TemplateVersion).
MAX_TEMPLATE_NAME_LENGTH, MAX_SLUG_LENGTH, MAX_CATEGORY_LENGTH = 120, 80, 40
MAX_DESCRIPTION_LENGTH, MAX_SYSTEM_PROMPT_LENGTH, MAX_PROMPT_LENGTH, MAX_CHANGELOG_LENGTH = 1000, 4000, 8000, 300
#: A template named by id or slug, and a search text of job inputs.
MAX_TEMPLATE_REF_LENGTH, MAX_SEARCH_LENGTH = 200, 200
#: Tokens of knowledge a template may ask for per prompt (the same bound as KNOWLEDGE_TOKEN_BUDGET).
MAX_KNOWLEDGE_TOKEN_BUDGET = 8000

# --- brand voice -------------------------------------------------------------------------------
# Every part of a voice goes into the prompt of each job of its project: they cost prompt tokens.

MAX_TONE_LENGTH, MAX_AUDIENCE_LENGTH = 200, 300
MAX_WORDS, MAX_WORD_LENGTH = 50, 60
MAX_EXAMPLES, MAX_EXAMPLE_LENGTH = 10, 2000

# --- feedback ----------------------------------------------------------------------------------

MIN_RATING, MAX_RATING = 1, 5
#: An edited variant: longer than any output the token limit allows, with room for a rewrite.
MAX_EDITED_TEXT_LENGTH = 20_000

# --- bulk --------------------------------------------------------------------------------------

#: Largest file accepted: 500 rows of ~4 KB of inputs each fit with room to spare.
BULK_MAX_BYTES = 2 * 1024 * 1024


def bulk_max_rows() -> int:
    """Rows per bulk file (BULK_MAX_ROWS): each row is a job admitted in one transaction."""
    return int(settings.BULK_MAX_ROWS)
