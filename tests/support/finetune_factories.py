"""Factories for brand models: training runs and adapters (``generation.BrandAdapter``) with files."""

from __future__ import annotations

import json
from pathlib import Path

import factory
from django.conf import settings
from factory.django import DjangoModelFactory

from finetune.models import TrainingRun
from generation import registry
from generation.models import BrandAdapter, JobStatus
from tests.support.factories import ProjectFactory


def write_adapter_files(folder: Path) -> None:
    """What ``peft``'s ``save_pretrained`` leaves (contents are placeholders, the names are what count)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 16}))


class TrainingRunFactory(DjangoModelFactory[TrainingRun]):
    class Meta:
        model = TrainingRun

    project = factory.SubFactory(ProjectFactory)
    organization = factory.LazyAttribute(lambda run: run.project.organization)
    serving_model = factory.LazyFunction(registry.default_model)
    status = JobStatus.SUCCEEDED
    config = factory.LazyFunction(lambda: {"rank": 16, "epochs": 3})
    progress = factory.LazyFunction(lambda: {"step": 2, "total_steps": 2, "points": [[1, 2.5], [2, 1.9]]})


class BrandAdapterFactory(DjangoModelFactory[BrandAdapter]):
    """An adapter whose files exist under ``BRAND_ADAPTER_ROOT`` (``files=False``: a row only)."""

    class Meta:
        model = BrandAdapter
        skip_postgeneration_save = True

    project = factory.SubFactory(ProjectFactory)
    organization = factory.LazyAttribute(lambda adapter: adapter.project.organization)
    version = factory.Sequence(lambda n: n + 1)
    serving_model = factory.LazyFunction(registry.default_model)
    path = factory.LazyAttribute(lambda adapter: f"{adapter.project.pk}/v{adapter.version}")
    evaluation = factory.LazyFunction(
        lambda: {"base": {"perplexity": 20.0}, "adapter": {"perplexity": 12.0}, "beats_base": True}
    )
    beats_base = True

    @factory.post_generation
    def files(obj, create, extracted, **kwargs):
        if extracted is not False:
            write_adapter_files(Path(settings.BRAND_ADAPTER_ROOT) / obj.path)
