"""Sources through the queue: embedded by the task, re-embedded when their text changes, deleted with their
chunks at once; the catalog's products and the brand voice's examples become sources by themselves."""

from __future__ import annotations

import numpy as np
import pytest
from django.db import connection

from generation import services as generation
from knowledge import dispatch, embedding, services, tasks
from knowledge.models import Chunk, KnowledgeSource, SourceKind, SourceStatus
from recommendations import importing
from tests.knowledge.conftest import require_pgvector, run_sent

pytestmark = pytest.mark.django_db


def test_a_new_source_is_pending_until_the_task_embeds_it(cast, django_capture_on_commit_callbacks, sent_tasks):
    with django_capture_on_commit_callbacks(execute=True):
        source = services.create_source(
            organization=cast.org, project=cast.project, title="Jacket", text="The jacket weighs 310 g.", sku="J-1"
        )
    assert source.status == SourceStatus.PENDING and not Chunk.objects.filter(source=source).exists()
    assert sent_tasks == [("knowledge.embed_sources", [[str(source.pk)]], "default")]
    assert run_sent(sent_tasks) == 1
    source.refresh_from_db()
    chunk = Chunk.objects.get(source=source)
    assert source.status == SourceStatus.EMBEDDED and source.embedded_hash == source.content_hash
    assert chunk.text == "The jacket weighs 310 g." and chunk.sku == "J-1" and chunk.organization_id == cast.org.pk
    vector = np.frombuffer(bytes(chunk.embedding), dtype=np.float32)
    assert vector.shape == (384,) and abs(float(np.linalg.norm(vector)) - 1) < 1e-4
    # A redelivered task finds nothing to do and keeps the chunks it made.
    assert embedding.embed_source(source.pk) is None
    assert list(Chunk.objects.filter(source=source).values_list("pk", flat=True)) == [chunk.pk]


def test_changed_text_drops_the_old_chunks_at_once_and_the_task_embeds_the_new(cast, add_text, sent_tasks,
                                                                              django_capture_on_commit_callbacks):
    source = add_text(cast.project, "The stove costs 40 dollars.")
    with django_capture_on_commit_callbacks(execute=True):
        services.update_source(source=source, text="The stove costs 45 dollars.")
    source.refresh_from_db()
    assert source.status == SourceStatus.PENDING
    assert not Chunk.objects.filter(source=source).exists()  # the old price can no longer be retrieved
    assert run_sent(sent_tasks) == 1
    assert list(Chunk.objects.filter(source=source).values_list("text", flat=True)) == ["The stove costs 45 dollars."]


def test_changed_metadata_reaches_the_chunks_without_re_embedding(cast, add_text, sent_tasks,
                                                                  django_capture_on_commit_callbacks):
    source = add_text(cast.project, "Summer sale facts.")
    before = Chunk.objects.get(source=source)
    with django_capture_on_commit_callbacks(execute=True):
        services.update_source(source=source, tags=["Summer", "sale"], language="EN")
    assert sent_tasks == []
    after = Chunk.objects.get(source=source)
    assert after.pk == before.pk and after.tags == ["sale", "summer"] and after.language == "en"


def test_deleting_a_source_deletes_its_chunks_at_once(cast, add_text):
    source = add_text(cast.project, "Secret launch date: 2030-01-01.")
    other = add_text(cast.project, "Another fact.")
    services.delete_source(source=source)
    assert not KnowledgeSource.objects.filter(pk=source.pk).exists()
    assert not Chunk.objects.filter(source_id=source.pk).exists()
    assert Chunk.objects.filter(source=other).count() == 1


def test_a_late_task_for_a_deleted_source_does_nothing(cast, django_capture_on_commit_callbacks, sent_tasks):
    with django_capture_on_commit_callbacks(execute=True):
        source = services.create_source(organization=cast.org, project=cast.project, title="x", text="Gone soon.")
    services.delete_source(source=source)
    assert run_sent(sent_tasks) == 0
    assert not Chunk.objects.exists()


def test_a_source_that_fails_to_embed_says_why(cast, django_capture_on_commit_callbacks, sent_tasks, monkeypatch):
    with django_capture_on_commit_callbacks(execute=True):
        source = services.create_source(organization=cast.org, project=cast.project, title="x", text="Some text.")

    def broken(texts):
        raise RuntimeError("model on fire")

    monkeypatch.setattr(embedding, "embed_texts", broken)
    run_sent(sent_tasks)
    source.refresh_from_db()
    assert source.status == SourceStatus.FAILED and "model on fire" in source.failure_reason


def test_catalog_import_makes_product_sources_and_re_embeds_only_changed_items(cast, sent_tasks,
                                                                               django_capture_on_commit_callbacks):
    items = [
        {"sku": "TENT-2", "title": "Ridge tent", "description": "Sleeps two.", "price": "199.00",
         "attributes": {"weight": "1.2 kg"}},
        {"sku": "STOVE-1", "title": "Pocket stove", "description": "Boils a litre in 3 minutes.", "price": "45"},
    ]
    with django_capture_on_commit_callbacks(execute=True):
        importing.ingest(organization=cast.org, project=cast.project, events=[], items=items, customers=[])
    assert run_sent(sent_tasks) == 2
    tent = KnowledgeSource.objects.get(project=cast.project, sku="TENT-2")
    assert tent.kind == SourceKind.PRODUCT and tent.status == SourceStatus.EMBEDDED
    assert "Price: 199" in tent.text and "Weight: 1.2 kg" in tent.text and "Sleeps two." in tent.text
    # Importing again with one price changed re-embeds that item only.
    items[1]["price"] = "49"
    with django_capture_on_commit_callbacks(execute=True):
        importing.ingest(organization=cast.org, project=cast.project, events=[], items=items, customers=[])
    assert [args for _, args, _ in sent_tasks] == [[[str(KnowledgeSource.objects.get(sku="STOVE-1").pk)]]]
    run_sent(sent_tasks)
    assert "Price: 49" in Chunk.objects.get(sku="STOVE-1").text


def test_brand_voice_examples_are_synced_as_sources(cast, sent_tasks, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        generation.save_brand_voice(actor=cast.owner, project=cast.project, example_texts=["Go further.", "Stay dry."])
    run_sent(sent_tasks)
    examples = KnowledgeSource.objects.filter(project=cast.project, kind=SourceKind.BRAND_EXAMPLE)
    assert sorted(examples.values_list("text", flat=True)) == ["Go further.", "Stay dry."]
    with django_capture_on_commit_callbacks(execute=True):
        generation.save_brand_voice(actor=cast.owner, project=cast.project, example_texts=["Stay dry."])
    assert list(examples.values_list("text", flat=True)) == ["Stay dry."]
    assert sent_tasks == []  # the example that stayed is not embedded again


@pytest.mark.pgvector
def test_pgvector_rows_follow_their_chunks(cast, add_text, settings):
    require_pgvector()
    settings.KNOWLEDGE_VECTOR_SEARCH = "auto"
    source = add_text(cast.project, "Vector facts.")

    def rows():
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM knowledge_chunk_vector WHERE project_id = %s", [str(cast.project.pk)])
            return cursor.fetchone()[0]

    assert rows() == 1
    services.delete_source(source=source)
    assert rows() == 0


def test_dispatch_sends_the_task_by_its_declared_name_and_queue():
    assert tasks.embed_sources.name == dispatch.EMBED_SOURCES
    assert tasks.embed_sources.queue == dispatch.QUEUES[dispatch.EMBED_SOURCES] == "default"
