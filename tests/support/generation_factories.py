"""Factories for the generation app: templates, jobs, variants, batches and webhooks.

Rows are made directly: no test here loads a language model or needs a worker.
"""

from __future__ import annotations

from typing import Any

import factory
from factory.django import DjangoModelFactory

from generation.models import (
    BulkBatch,
    GenerationJob,
    JobStatus,
    ServingModel,
    Template,
    TemplateVersion,
    Variant,
    Webhook,
    WebhookDelivery,
)
from generation.webhooks import encrypt_secret
from tests.support.factories import OrganizationFactory, ProjectFactory

#: The variables of a factory template: one required, one optional, one choice.
VARIABLES: list[dict[str, Any]] = [
    {"name": "product", "label": "Product", "type": "text", "required": True, "max_length": 80},
    {"name": "audience", "label": "Audience", "type": "text", "required": False, "max_length": 120},
    {"name": "tone", "label": "Tone", "type": "choice", "required": False, "choices": ["fun", "formal"]},
]
WEBHOOK_SECRET = "whsec_factory-secret"


class ServingModelFactory(DjangoModelFactory[ServingModel]):
    """A global stub model (no server, no weights); ``organization=`` makes it private."""

    class Meta:
        model = ServingModel

    slug = factory.Sequence(lambda n: f"private-model-{n}")
    name = factory.Sequence(lambda n: f"Model {n}")
    backend_kind = "stub"


class TemplateFactory(DjangoModelFactory[Template]):
    class Meta:
        model = Template

    organization = factory.SubFactory(OrganizationFactory)
    slug = factory.Sequence(lambda n: f"custom-{n}")
    name = factory.Sequence(lambda n: f"Custom template {n}")
    category = "custom"


class TemplateVersionFactory(DjangoModelFactory[TemplateVersion]):
    class Meta:
        model = TemplateVersion

    template = factory.SubFactory(TemplateFactory)
    version = 1
    variables = factory.LazyFunction(lambda: [dict(v) for v in VARIABLES])
    system_prompt = "You are a copywriter."
    prompt = "Write a tagline for {product} aimed at {audience}, {tone}."
    constraints = factory.LazyFunction(lambda: {"max_chars": 200})
    default_max_new_tokens = 60


class GenerationJobFactory(DjangoModelFactory[GenerationJob]):
    class Meta:
        model = GenerationJob

    project = factory.SubFactory(ProjectFactory)
    organization = factory.LazyAttribute(lambda job: job.project.organization)
    template_version = factory.SubFactory(
        TemplateVersionFactory, template__organization=factory.SelfAttribute("...organization")
    )
    inputs = factory.LazyFunction(lambda: {"product": "Tulip bulbs", "audience": "gardeners"})
    num_variants = 2
    max_new_tokens = 60
    seed = 42
    status = JobStatus.QUEUED


class VariantFactory(DjangoModelFactory[Variant]):
    class Meta:
        model = Variant

    job = factory.SubFactory(GenerationJobFactory, status=JobStatus.SUCCEEDED)
    index = factory.Sequence(lambda n: n % 100)
    text = "Bloom brighter with tulip bulbs."
    tokens = 9
    prompt_tokens = 40
    finish_reason = "stop"
    seed = 42
    constraint_report = factory.LazyFunction(
        lambda: [{"constraint": "max_chars", "expected": 200, "actual": 31, "passed": True}]
    )
    # As a worker stores it: the model's output's report, the same as the shown text's until an edit.
    original_constraint_report = factory.LazyAttribute(lambda variant: variant.constraint_report)
    brand_fit = 0.8


class BulkBatchFactory(DjangoModelFactory[BulkBatch]):
    class Meta:
        model = BulkBatch

    project = factory.SubFactory(ProjectFactory)
    organization = factory.LazyAttribute(lambda batch: batch.project.organization)
    template_version = factory.SubFactory(
        TemplateVersionFactory, template__organization=factory.SelfAttribute("...organization")
    )
    filename = "rows.csv"
    total_rows = 1
    row_errors = factory.LazyFunction(lambda: [{"line": 3, "errors": ["product: this variable is required"]}])


class WebhookFactory(DjangoModelFactory[Webhook]):
    """A webhook whose signing secret is ``WEBHOOK_SECRET``."""

    class Meta:
        model = Webhook

    organization = factory.SubFactory(OrganizationFactory)
    url = "https://hooks.example.com/loom"
    encrypted_secret = factory.LazyFunction(lambda: encrypt_secret(WEBHOOK_SECRET))


class WebhookDeliveryFactory(DjangoModelFactory[WebhookDelivery]):
    class Meta:
        model = WebhookDelivery

    webhook = factory.SubFactory(WebhookFactory)
    job = factory.SubFactory(
        GenerationJobFactory,
        status=JobStatus.SUCCEEDED,
        project__organization=factory.SelfAttribute("...webhook.organization"),
    )
    event = "job.succeeded"
    payload = factory.LazyFunction(lambda: {"event": "job.succeeded"})
