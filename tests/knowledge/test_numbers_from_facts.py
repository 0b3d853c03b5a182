"""A job written from the project's knowledge may state only the numbers its sources give: the constraint
its requests carry, and the template setting that turns it off or on."""

from __future__ import annotations

from unittest import mock

import pytest

from generation import services as generation
from generation.execution import run_job
from workers.stub import StubEngine

pytestmark = pytest.mark.django_db

JACKET = "The Alpine rain jacket has a 20,000 mm waterproof membrane, taped seams and weighs 310 g."


class RecordingEngine(StubEngine):
    def __init__(self):
        super().__init__(token_s=0.0)
        self.requests = []

    def submit(self, request):
        self.requests.append(request)
        return super().submit(request)


def _run(project, version, inputs):
    with mock.patch("generation.dispatch.enqueue"):
        job, _ = generation.submit_generation(
            organization=project.organization,
            project=project,
            version=version,
            inputs=inputs,
            params={"num_variants": 2, "max_new_tokens": 8, "seed": 1},
        )
    engine = RecordingEngine()
    run_job(job.pk, engine=engine)
    return engine.requests


def _template(cast, slug, constraints=None):
    return generation.create_template(
        actor=cast.editor,
        organization=cast.org,
        name=slug,
        slug=slug,
        variables=[{"name": "product"}],
        system_prompt="You write ads.",
        prompt="Write an ad for {product}, from 49 USD.",
        constraints=constraints,
    )


def test_a_job_with_knowledge_may_state_only_its_sources_numbers(cast, add_text):
    add_text(cast.project, JACKET, title="Jacket")
    version = generation.resolve_version(cast.org, "product-description")

    requests = _run(cast.project, version, {"product": "Alpine rain jacket", "features": "2 pockets"})

    assert [r.constraint.numbers for r in requests] == [("2", "20,000", "310")] * 2


def test_a_job_without_knowledge_leaves_numbers_to_the_fact_check(cast):
    version = generation.resolve_version(cast.org, "product-description")

    requests = _run(cast.project, version, {"product": "Linen towel", "features": "2 sizes"})

    assert all(r.constraint is None or r.constraint.numbers is None for r in requests)


def test_an_own_templates_prompt_is_a_source_and_its_setting_decides(cast, add_text):
    add_text(cast.project, JACKET, title="Jacket")
    default, off = _template(cast, "default-numbers"), _template(cast, "free-numbers", {"numbers_from_facts": False})
    always = _template(cast, "own-numbers", {"numbers_from_facts": True})

    # the brief (its inputs, then the template's prompts) first, then the retrieved knowledge
    assert _run(cast.project, default, {"product": "Alpine rain jacket"})[0].constraint.numbers == (
        "49",
        "20,000",
        "310",
    )
    assert _run(cast.project, off, {"product": "Alpine rain jacket"})[0].constraint is None
    # on without knowledge: the brief and the template's own prompt are the only sources
    assert _run(cast.project, always, {"product": "Linen towel"})[0].constraint.numbers == ("49",)


def test_the_setting_must_be_a_yes_or_no(cast):
    with pytest.raises(generation.InvalidInput, match="numbers_from_facts"):
        _template(cast, "bad-numbers", {"numbers_from_facts": "sometimes"})
