"""The knowledge API and dashboard: upload (file or text), list, read, change, delete, preview retrieval;
bad files get a clear 4xx and store nothing; an outsider sees nothing."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from knowledge.models import Chunk, KnowledgeSource, SourceStatus
from tests.knowledge.conftest import run_sent
from tests.knowledge.test_ingest import pdf_bytes

pytestmark = pytest.mark.django_db


def _url(project):
    return f"/api/v1/projects/{project.pk}/knowledge/"


def _upload(client, project, name, data, **fields):
    # What a browser declares for a file it does not know: the name and the content decide.
    upload = SimpleUploadedFile(name, data, content_type="application/octet-stream")
    return client.post(_url(project), {"file": upload, **fields}, format="multipart")


def test_an_uploaded_pdf_is_stored_pending_and_embedded_by_the_queue(cast, key_for, sent_tasks,
                                                                     django_capture_on_commit_callbacks):
    client, _, _ = key_for("write")
    with django_capture_on_commit_callbacks(execute=True):
        response = _upload(client, cast.project, "tent.pdf", pdf_bytes("The Ridge tent sleeps two."),
                           sku="TENT-2", tags=["summer", "tents"], language="en")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["title"], body["mime"], body["status"]) == ("tent.pdf", "application/pdf", "pending")
    assert body["chunks"] == 0
    assert body["sku"] == "TENT-2" and body["tags"] == ["summer", "tents"]
    run_sent(sent_tasks)
    detail = client.get(f"/api/v1/knowledge/{body['id']}/").json()
    assert detail["status"] == SourceStatus.EMBEDDED and detail["chunks"] == 1
    assert "The Ridge tent sleeps two." in detail["text"]


def test_text_is_accepted_as_json_and_listed(cast, key_for):
    client, _, _ = key_for("write")
    response = client.post(_url(cast.project), {"title": "Returns", "text": "Returns within 30 days."}, format="json")
    assert response.status_code == 201
    listed = client.get(_url(cast.project)).json()
    assert [row["title"] for row in listed] == ["Returns"]
    listed = client.get("/api/v1/knowledge/", {"project": str(cast.project.pk)}).json()["results"]
    assert [row["id"] for row in listed] == [response.json()["id"]]


@pytest.mark.parametrize(
    ("name", "data", "status", "code"),
    [
        ("locked.pdf", pdf_bytes("secret", password="pw"), 400, "encrypted_pdf"),
        ("junk.txt", bytes(range(256)) * 40, 400, "not_text"),
        ("junk.bin", b"\x7fELF\x02\x01\x01" + bytes(500), 415, "unsupported_file"),
        ("broken.pdf", b"%PDF-1.7\n garbage", 400, "invalid_pdf"),
    ],
)
def test_bad_files_get_a_clear_4xx_and_store_nothing(cast, key_for, name, data, status, code):
    client, _, _ = key_for("write")
    response = _upload(client, cast.project, name, data)
    assert response.status_code == status and response.json()["code"] == code, response.json()
    assert response.json()["detail"]
    assert not KnowledgeSource.objects.exists()


def test_a_50_mb_file_is_refused_before_it_is_read(cast, key_for):
    client, _, _ = key_for("write")
    response = _upload(client, cast.project, "huge.txt", b"a" * (50 * 1024 * 1024))
    assert response.status_code == 413 and response.json()["code"] == "file_too_large"
    assert not KnowledgeSource.objects.exists()


def test_neither_or_both_a_file_and_a_text_is_a_400(cast, key_for):
    client, _, _ = key_for("write")
    assert client.post(_url(cast.project), {"title": "x"}, format="json").status_code == 400
    both = _upload(client, cast.project, "a.txt", b"text", text="also text")
    assert both.status_code == 400
    assert not KnowledgeSource.objects.exists()


def test_patching_the_text_re_embeds_and_delete_removes_the_chunks(cast, key_for, add_text, sent_tasks,
                                                                  django_capture_on_commit_callbacks):
    client, _, _ = key_for("write")
    source = add_text(cast.project, "The stove costs 40 dollars.")
    with django_capture_on_commit_callbacks(execute=True):
        patched = client.patch(
            f"/api/v1/knowledge/{source.pk}/", {"text": "The stove costs 45 dollars."}, format="json"
        )
    assert patched.status_code == 200 and patched.json()["status"] == "pending" and patched.json()["chunks"] == 0
    run_sent(sent_tasks)
    assert Chunk.objects.get(source=source).text == "The stove costs 45 dollars."
    assert client.delete(f"/api/v1/knowledge/{source.pk}/").status_code == 204
    assert not Chunk.objects.exists() and not KnowledgeSource.objects.exists()


def test_search_previews_what_a_brief_retrieves(cast, key_for, add_text):
    client, _, _ = key_for("read")
    add_text(cast.project, "The Ember stove boils a litre in 3 minutes.", title="Stove", sku="STOVE-1")
    add_text(cast.project, "The Ridge tent sleeps two.", title="Tent", sku="TENT-2")
    response = client.get(f"{_url(cast.project)}search/", {"q": "camping stove", "sku": "STOVE-1"})
    assert response.status_code == 200
    assert [row["source"] for row in response.json()] == ["Stove"]
    assert client.get(f"{_url(cast.project)}search/").status_code == 400  # no brief


def test_readers_cannot_write(cast, key_for, client_for):
    read_key, _, _ = key_for("read")
    assert read_key.post(_url(cast.project), {"title": "x", "text": "y"}, format="json").status_code == 403
    viewer = client_for(cast.viewer)
    assert viewer.post(_url(cast.project), {"title": "x", "text": "y"}, format="json").status_code == 403
    assert not KnowledgeSource.objects.exists()


def test_outsider_sees_and_touches_nothing(cast, outsider_key, add_text):
    source = add_text(cast.project, "Acme's secret fact.")
    assert outsider_key.get(_url(cast.project)).status_code == 404
    assert outsider_key.get(f"{_url(cast.project)}search/", {"q": "secret"}).status_code == 404
    assert outsider_key.post(_url(cast.project), {"title": "x", "text": "y"}, format="json").status_code == 404
    assert outsider_key.get(f"/api/v1/knowledge/{source.pk}/").status_code == 404
    assert outsider_key.delete(f"/api/v1/knowledge/{source.pk}/").status_code == 404
    assert outsider_key.get("/api/v1/knowledge/").json()["results"] == []
    assert KnowledgeSource.objects.filter(pk=source.pk).exists()


def test_a_key_restricted_to_another_project_cannot_reach_this_ones_knowledge(cast, key_for, add_text):
    source = add_text(cast.project, "Spring fact.")
    client, _, _ = key_for("write", project=cast.sibling_project)
    assert client.get(_url(cast.project)).status_code == 404
    assert client.get(f"/api/v1/knowledge/{source.pk}/").status_code == 404


# --- dashboard ---------------------------------------------------------------------------------------


def test_the_dashboard_lists_uploads_and_deletes(cast, add_text, sent_tasks, django_capture_on_commit_callbacks):
    client = Client()
    client.force_login(cast.editor)
    page = reverse("knowledge:project", kwargs={"pk": cast.project.pk})
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(page, {"title": "Care", "file": SimpleUploadedFile("care.md", b"# Care\n\nWash cold.")})
    assert response.status_code == 302
    run_sent(sent_tasks)
    source = KnowledgeSource.objects.get(title="Care")
    assert source.status == SourceStatus.EMBEDDED and "Wash cold." in source.text
    listing = client.get(page, {"q": "how to wash"})
    assert listing.status_code == 200 and b"Care" in listing.content and b"[K1] Care" in listing.content
    refused = client.post(page, {"file": SimpleUploadedFile("x.pdf", pdf_bytes("x", password="pw"))})
    assert refused.status_code == 400 and b"encrypted" in refused.content
    deleted = client.post(reverse("knowledge:delete", kwargs={"pk": source.pk}))
    assert deleted.status_code == 302 and not KnowledgeSource.objects.exists() and not Chunk.objects.exists()


def test_a_viewer_reads_the_dashboard_but_cannot_add(cast, add_text):
    add_text(cast.project, "Viewer-visible fact.", title="Visible")
    client = Client()
    client.force_login(cast.viewer)
    page = reverse("knowledge:project", kwargs={"pk": cast.project.pk})
    assert b"Visible" in client.get(page).content
    assert client.post(page, {"title": "x", "text": "y"}).status_code == 403
    assert KnowledgeSource.objects.count() == 1
