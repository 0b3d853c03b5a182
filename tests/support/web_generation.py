"""Helpers for the generation page tests: jobs in a given state, stored as a worker would store them."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from generation.models import GenerationJob, JobStatus, TemplateVersion
from projects.models import Project
from tests.support.generation_factories import GenerationJobFactory, VariantFactory

#: A report with one failed and one passed constraint, as generation.constraints.check writes it.
REPORT = [
    {"constraint": "min_words", "expected": 25, "actual": 14, "passed": False},
    {"constraint": "max_words", "expected": 180, "actual": 14, "passed": True},
]


def builtin_version(slug: str = "product-description") -> TemplateVersion:
    return TemplateVersion.objects.filter(template__organization=None, template__slug=slug).order_by("-version")[0]


def job_for(project: Project, **fields: Any) -> GenerationJob:
    """A job of the project (of the built-in product description template unless told)."""
    fields.setdefault("inputs", {"product": "Trail runner 2", "features": "light, grippy"})
    fields.setdefault("template_version", builtin_version())
    return GenerationJobFactory(project=project, **fields)


def succeeded_job(project: Project, variants: int = 2, **fields: Any) -> GenerationJob:
    """A finished job with ``variants`` current variants."""
    now = timezone.now()
    job = job_for(
        project,
        status=JobStatus.SUCCEEDED,
        num_variants=variants,
        started_at=now,
        finished_at=now,
        prompt_tokens=180,
        completion_tokens=36,
        **fields,
    )
    for index in range(variants):
        VariantFactory(
            job=job,
            index=index,
            text=f"Variant {index} copy: light, grippy, ready for the trail.",
            tokens=18,
            brand_fit=0.72,
            constraint_report=REPORT,
            constraints_passed=False,
        )
    return job
