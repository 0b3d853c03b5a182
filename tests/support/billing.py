"""Plans, subscriptions and jobs for the billing tests.

Plans come from the seed migration's own function, not from the migrated
database: transactional tests flush the tables, seeded rows included.
"""

from __future__ import annotations

import importlib
from datetime import timedelta
from typing import Any

from django.apps import apps
from django.utils import timezone

from billing.models import Plan, Subscription
from generation.models import GenerationJob
from organizations.models import Organization
from projects.models import Project
from tests.support.generation_factories import GenerationJobFactory, TemplateVersionFactory

_seed = importlib.import_module("billing.migrations.0002_seed_plans")
_seed_org_limits = importlib.import_module("billing.migrations.0003_ledger_reference_org_rate_limit")
_seed_experiment_limits = importlib.import_module("billing.migrations.0006_plan_max_running_experiments")


def seed_plans() -> dict[str, Plan]:
    """The four seeded plans, created again if a flush removed them (idempotent)."""
    _seed.seed_plans(apps, None)
    _seed_org_limits.seed_org_rate_limits(apps, None)
    _seed_experiment_limits.seed_running_experiments(apps, None)
    return {plan.code: plan for plan in Plan.objects.filter(code__in=[p["code"] for p in _seed.PLANS])}


def make_plan(code: str = "capped", **fields: Any) -> Plan:
    """A custom plan: hard-capped with generous limits unless told otherwise."""
    defaults: dict[str, Any] = {
        "name": code.title(),
        "included_tokens": 10_000,
        "max_concurrent_jobs": 100,
        "max_variants_per_job": 8,
        "max_members": 10,
        "overage_allowed": False,
    }
    return Plan.objects.create(code=code, **{**defaults, **fields})


def subscribe(organization: Organization, plan: Plan, **fields: Any) -> Subscription:
    now = timezone.now()
    defaults: dict[str, Any] = {
        "current_period_start": now - timedelta(days=3),
        "current_period_end": now + timedelta(days=27),
    }
    return Subscription.objects.create(organization=organization, plan=plan, **{**defaults, **fields})


def make_jobs(project: Project, count: int, **fields: Any) -> list[GenerationJob]:
    """``count`` queued jobs of one project sharing one template version (few inserts)."""
    version = TemplateVersionFactory(template__organization=project.organization)
    return [GenerationJobFactory(project=project, template_version=version, **fields) for _ in range(count)]


def set_usage(job: GenerationJob, *, prompt: int, completion: int, seconds: float = 0.5) -> GenerationJob:
    """Store a finished job's usage, as the worker does before settlement."""
    job.prompt_tokens, job.completion_tokens, job.compute_seconds = prompt, completion, seconds
    job.status = "succeeded"
    job.save(update_fields=["prompt_tokens", "completion_tokens", "compute_seconds", "status"])
    return job
