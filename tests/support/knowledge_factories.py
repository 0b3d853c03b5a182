"""Knowledge sources for tests: stored as the services store them, embedded only when a test runs the task."""

from __future__ import annotations

import hashlib

import factory
from factory.django import DjangoModelFactory

from knowledge.models import KnowledgeSource, SourceKind
from tests.support.factories import ProjectFactory


class KnowledgeSourceFactory(DjangoModelFactory[KnowledgeSource]):
    class Meta:
        model = KnowledgeSource

    project = factory.SubFactory(ProjectFactory)
    organization = factory.LazyAttribute(lambda source: source.project.organization)
    kind = SourceKind.DOCUMENT
    title = factory.Sequence(lambda n: f"Fact sheet {n}")
    text = "The Alpine rain jacket weighs 310 g and has a 20,000 mm waterproof membrane."
    mime = "text/plain"
    content_hash = factory.LazyAttribute(lambda source: hashlib.sha256(source.text.encode()).hexdigest())
