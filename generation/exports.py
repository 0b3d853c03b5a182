"""A project's generated copy as CSV (for people) and as chat JSONL (for fine-tuning a model).

Both hold the current revision of every variant of the project's jobs. The JSONL
keeps, by default, only what a marketer vouched for (approved, or rated 4 or 5),
each line one training conversation: the system and user prompts the model saw
(without the few-shot examples, which were other variants) and the final text as
the assistant's answer, labelled with its rating, approval and measured outcome.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from django.db.models import Q, QuerySet

from core.csvfiles import spreadsheet_safe
from generation.models import BrandVoice, Variant
from generation.prompts import build_messages

if TYPE_CHECKING:
    from projects.models import Project

#: Ratings from this up count as good examples for fine-tuning.
GOOD_RATING = 4
#: Rows read from the database at a time.
_CHUNK = 500

CSV_COLUMNS = [
    "job_id",
    "variant_id",
    "created_at",
    "template",
    "template_version",
    "inputs",
    "index",
    "revision",
    "text",
    "edited_text",
    "final_text",
    "finish_reason",
    "rating",
    "approved",
    "brand_fit",
    "constraints_passed",
    # The fact check of the model's text (generation.factcheck).
    "facts_supported",
    "facts_unsupported",
    "facts_flagged",
]


def current_variants(project: Project) -> QuerySet[Variant]:
    return (
        Variant.objects.filter(job__project=project, is_current=True)
        .select_related("job__template_version__template")
        .order_by("job__created_at", "job_id", "index")
    )


def export_csv(project: Project) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for variant in current_variants(project).iterator(chunk_size=_CHUNK):
        job, version = variant.job, variant.job.template_version
        row = [
            job.pk,
            variant.pk,
            variant.created_at.isoformat(),
            version.template.slug,
            version.version,
            json.dumps(job.inputs, ensure_ascii=False, sort_keys=True),
            variant.index,
            variant.revision,
            variant.text,
            variant.edited_text,
            variant.final_text,
            variant.finish_reason,
            variant.rating,
            variant.approved,
            variant.brand_fit,
            variant.constraints_passed,
            *((variant.fact_check or {}).get(key, "") for key in ("supported", "unsupported_hard", "unsupported_soft")),
        ]
        writer.writerow([spreadsheet_safe(cell) for cell in row])
    return out.getvalue()


def finetune_examples(project: Project, *, include_all: bool = False) -> Iterator[dict[str, Any]]:
    """One chat conversation per variant with text: approved or well rated ones unless ``include_all``."""
    variants = current_variants(project).exclude(text="", edited_text="")
    if not include_all:
        variants = variants.filter(Q(approved=True) | Q(rating__gte=GOOD_RATING))
    voice = BrandVoice.objects.filter(project=project).first()
    for variant in variants.iterator(chunk_size=_CHUNK):
        messages = build_messages(
            variant.job.template_version, variant.job.inputs, voice, examples=[], language=variant.job.language
        )
        messages.append({"role": "assistant", "content": variant.final_text})
        # The outcome label: what the text measured as an experiment's winner (lift, conversions), else null.
        yield {
            "messages": messages, "rating": variant.rating, "approved": variant.approved,
            "outcome": variant.outcome or None,
        }


def export_jsonl(project: Project, *, include_all: bool = False) -> str:
    return "".join(
        json.dumps(example, ensure_ascii=False) + "\n"
        for example in finetune_examples(project, include_all=include_all)
    )
