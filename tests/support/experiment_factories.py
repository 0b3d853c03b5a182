"""Factories for the experiments app: an experiment with its arms (control texts by default)."""

from __future__ import annotations

import factory
from factory.django import DjangoModelFactory

from experiments.models import Arm, Assignment, Experiment
from tests.support.factories import ProjectFactory


class ExperimentFactory(DjangoModelFactory[Experiment]):
    """A draft with two control-text arms A and B (``arms=0`` for none)."""

    class Meta:
        model = Experiment
        skip_postgeneration_save = True

    project = factory.SubFactory(ProjectFactory)
    organization = factory.LazyAttribute(lambda experiment: experiment.project.organization)
    name = factory.Sequence(lambda n: f"Subject line test {n}")
    goal_event = "click"
    target_url = "https://shop.example.com/spring"

    @factory.post_generation
    def arms(self, create: bool, extracted: int | None, **kwargs: object) -> None:
        count = 2 if extracted is None else extracted
        for position in range(count):
            ArmFactory(experiment=self, position=position, label="ABCDEFGHIJ"[position], weight=1 / count)


class ArmFactory(DjangoModelFactory[Arm]):
    class Meta:
        model = Arm

    experiment = factory.SubFactory(ExperimentFactory, arms=0)
    label = factory.Sequence(lambda n: f"Arm {n}")
    text = factory.LazyAttribute(lambda arm: f"Copy {arm.label}: bloom brighter with tulip bulbs.")


class AssignmentFactory(DjangoModelFactory[Assignment]):
    class Meta:
        model = Assignment

    experiment = factory.SubFactory(ExperimentFactory)
    arm = factory.LazyAttribute(lambda assignment: assignment.experiment.arms.order_by("position").first())
    unit = factory.Sequence(lambda n: f"visitor-{n}")
