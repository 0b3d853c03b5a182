"""A project's training data for its brand model, as chat examples with the time each was written.

Three sources, each turned into what serving sends (system = the template's system prompt and the brand
voice, user = the brief the job's template renders from its inputs, assistant = the copy):

- approved variants, with the marketer's edit when there is one (the current revision only);
- the brand voice's example texts (no template: a generic copywriter system prompt and brief);
- concluded experiments' winning copy (the arm's variant's brief when it came from a job).

``split`` removes duplicates and holds the newest share out (``finetune.training.split_examples``): the
evaluation measures the adapter on copy written after everything it trained on.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db.models import Q

from experiments.models import Experiment, Status
from finetune import training
from finetune.training import Example
from generation import prompts
from generation.models import BrandVoice, Variant

if TYPE_CHECKING:
    from projects.models import Project

#: The system prompt and brief of an example with no template (a brand voice example text).
GENERIC_SYSTEM = "You are the brand's copywriter. Write marketing copy in the brand's voice."
GENERIC_BRIEF = "Write a short piece of marketing copy in the brand's voice."
#: Examples shown in a preview (each is a few hundred characters).
PREVIEW_EXAMPLES = 3
#: Share of the examples held out for the evaluation, the newest ones.
HELDOUT_SHARE = 0.1


class Source:
    APPROVED = "approved_variants"
    BRAND_EXAMPLES = "brand_examples"
    EXPERIMENT_WINNERS = "experiment_winners"


@dataclass
class Dataset:
    train: list[Example]
    heldout: list[Example]
    by_source: dict[str, int]
    duplicates: int
    #: The hard constraints of each held-out example's template (aligned with ``heldout``; {} without one):
    #: what the evaluation checks generated copy for that brief against.
    heldout_constraints: list[dict[str, Any]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.by_source.values())

    @property
    def enough(self) -> bool:
        return len(self.train) >= training.minimum_examples()

    @property
    def needed(self) -> int:
        """How many more distinct examples the project needs before a run is accepted (0: enough)."""
        return needed_more(len(self.train) + len(self.heldout))

    def summary(self) -> dict[str, Any]:
        return {
            "by_source": dict(self.by_source),
            "total": self.total,
            "duplicates": self.duplicates,
            "train": len(self.train),
            "heldout": len(self.heldout),
            "minimum_train": training.minimum_examples(),
            "enough": self.enough,
            "needed": self.needed,
        }

    def preview(self) -> dict[str, Any]:
        return {**self.summary(), "examples": [asdict(e) for e in self.train[:PREVIEW_EXAMPLES]]}


def needed_more(unique: int) -> int:
    """Distinct examples still missing: the held-out split (>= 10%, >= MIN_HELDOUT) comes out of them too."""
    total = unique
    while total - _heldout_size(total) < training.minimum_examples():
        total += 1
    return total - unique


def _heldout_size(unique: int) -> int:
    return min(max(math.ceil(unique * HELDOUT_SHARE), training.MIN_HELDOUT), unique) if unique else 0


def _system(version: Any, inputs: dict[str, Any], voice: BrandVoice | None, language: str) -> tuple[str, str]:
    messages = prompts.build_messages(version, inputs, voice, [], language=language)
    return messages[0]["content"], messages[-1]["content"]


def _voice(project: Project) -> BrandVoice | None:
    return BrandVoice.objects.filter(project=project).first()


def _key(example: Example) -> tuple[str, str, str]:
    return (example.system, example.user, example.assistant)


def approved_variants(project: Project, voice: BrandVoice | None) -> list[tuple[datetime, Example]]:
    variants = (
        Variant.objects.filter(job__project=project, approved=True, is_current=True)
        .exclude(finish_reason="blocked")
        .select_related("job", "job__template_version")
        .order_by("approved_at", "created_at")
    )
    rows = []
    for variant in variants:
        job = variant.job
        system, brief = _system(job.template_version, job.inputs or {}, voice, job.language)
        rows.append((variant.approved_at or variant.created_at, Example(system, brief, variant.final_text)))
    return rows


def brand_examples(voice: BrandVoice | None) -> list[tuple[float, Example]]:
    if voice is None:
        return []
    voice_text = prompts.brand_voice_instructions(voice)
    system = GENERIC_SYSTEM + ("\n\nBrand voice:\n" + voice_text if voice_text else "")
    texts = [str(t) for t in voice.example_texts or [] if str(t).strip()]
    # One time for all of them (the voice's last change), in the order they were written: the last
    # ones listed are the newest and are the ones held out.
    base = voice.updated_at.timestamp()
    return [(base + index * 1e-6, Example(system, GENERIC_BRIEF, text)) for index, text in enumerate(texts)]


def experiment_winners(project: Project, voice: BrandVoice | None) -> list[tuple[datetime, Example]]:
    experiments = (
        Experiment.objects.filter(project=project, status=Status.CONCLUDED, winner__isnull=False)
        .select_related("winner", "winner__variant", "winner__variant__job", "winner__variant__job__template_version")
        .filter(Q(winner__variant__isnull=True) | Q(winner__variant__job__project=project))
    )
    rows = []
    for experiment in experiments:
        arm = experiment.winner
        variant = arm.variant
        if variant is not None:
            job = variant.job
            system, brief = _system(job.template_version, job.inputs or {}, voice, job.language)
        else:
            voice_text = prompts.brand_voice_instructions(voice)
            system = GENERIC_SYSTEM + ("\n\nBrand voice:\n" + voice_text if voice_text else "")
            brief = GENERIC_BRIEF
        when = experiment.ended_at or experiment.updated_at
        rows.append((when, Example(system, brief, arm.text)))
    return rows


def build(project: Project) -> Dataset:
    voice = _voice(project)
    sources: dict[str, list[tuple[Any, Example]]] = {
        Source.APPROVED: approved_variants(project, voice),
        Source.BRAND_EXAMPLES: brand_examples(voice),
        Source.EXPERIMENT_WINNERS: experiment_winners(project, voice),
    }
    rows = [row for found in sources.values() for row in found]
    train, heldout = training.split_examples(rows, heldout_share=HELDOUT_SHARE)
    constraints = _constraints(project)
    return Dataset(
        train=train,
        heldout=heldout,
        by_source={name: len(found) for name, found in sources.items()},
        duplicates=len(rows) - len(train) - len(heldout),
        heldout_constraints=[constraints.get(_key(example), {}) for example in heldout],
    )


def _constraints(project: Project) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Each approved variant's example -> its template version's constraints."""
    voice = _voice(project)
    found: dict[tuple[str, str, str], dict[str, Any]] = {}
    variants = Variant.objects.filter(job__project=project, approved=True, is_current=True).select_related(
        "job", "job__template_version"
    )
    for variant in variants:
        job = variant.job
        system, brief = _system(job.template_version, job.inputs or {}, voice, job.language)
        found.setdefault(_key(Example(system, brief, variant.final_text)), dict(job.template_version.constraints or {}))
    return found
