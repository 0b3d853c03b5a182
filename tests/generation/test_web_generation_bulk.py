"""Bulk generation pages: upload a CSV, follow the batch row by row, download the results."""

from __future__ import annotations

import csv
import io
import re
from unittest import mock

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from generation.models import BulkBatch, GenerationJob, JobStatus
from tests.support.generation_factories import VariantFactory
from tests.support.web_generation import builtin_version

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}
GOOD_CSV = (
    b"product,features,audience\n"
    b'Trail runner 2,"light, grippy",weekend hikers\n'
    b",no product here,\n"
    b"Rain shell,packable,commuters\n"
)


@pytest.fixture
def enqueue():
    with mock.patch("generation.dispatch.enqueue") as patched:
        yield patched


def _upload(cast, content=GOOD_CSV, name="rows.csv", **overrides):
    data = {
        "project": str(cast.project.pk),
        "template": str(builtin_version().template_id),
        "num_variants": "1",
        "file": SimpleUploadedFile(name, content, content_type="text/csv"),
    }
    data.update(overrides)
    return data


def _batch_with_jobs(cast, client_for):
    with mock.patch("generation.dispatch.enqueue"):
        client_for(cast.editor).post("/bulk/", _upload(cast))
    return BulkBatch.objects.get()


@pytest.mark.parametrize("role", ["owner", "admin", "editor", "viewer"])
def test_every_member_sees_the_bulk_page(cast, client_for, role):
    response = client_for(getattr(cast, role)).get("/bulk/")
    body = response.content.decode()
    assert response.status_code == 200
    assert ('type="file"' in body) == (role != "viewer")


def test_editor_uploads_a_csv_and_each_good_row_becomes_a_job(
    cast, client_for, enqueue, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(cast.editor).post("/bulk/", _upload(cast, max_new_tokens="24"))
    batch = BulkBatch.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/bulk/{batch.pk}/"
    assert (batch.organization, batch.project, batch.created_by, batch.filename) == (
        cast.org,
        cast.project,
        cast.editor,
        "rows.csv",
    )
    jobs = GenerationJob.objects.filter(batch=batch).order_by("batch_line")
    assert [(j.batch_line, j.inputs["product"]) for j in jobs] == [(2, "Trail runner 2"), (4, "Rain shell")]
    assert {(j.num_variants, j.max_new_tokens) for j in jobs} == {(1, 24)}
    assert batch.row_errors == [{"line": 3, "errors": ["product: this variable is required"]}]
    assert enqueue.call_count == 2


def test_empty_max_new_tokens_means_the_template_default(cast, client_for, enqueue):
    client_for(cast.editor).post("/bulk/", _upload(cast, max_new_tokens=""))
    assert {job.max_new_tokens for job in GenerationJob.objects.all()} == {220}


def test_batch_page_lists_rows_bad_lines_and_polls_while_running(cast, client_for):
    batch = _batch_with_jobs(cast, client_for)
    body = client_for(cast.viewer).get(f"/bulk/{batch.pk}/").content.decode()
    assert "1 row skipped" in body and "Line 3" in body and "product: this variable is required" in body
    assert 'id="batch-line-2"' in body and 'id="batch-line-4"' in body
    assert f'hx-get="/bulk/{batch.pk}/progress/" hx-trigger="every 1s"' in body
    assert f'href="/bulk/{batch.pk}/results.csv"' in body
    assert "<strong>0</strong> of 2 jobs finished" in body


def test_progress_fragment_counts_and_stops_polling_when_done(cast, client_for):
    batch = _batch_with_jobs(cast, client_for)
    client = client_for(cast.viewer)
    first, second = batch.jobs.order_by("batch_line")
    first.status = JobStatus.SUCCEEDED
    first.save(update_fields=["status"])
    running = client.get(f"/bulk/{batch.pk}/progress/", headers=HTMX).content.decode()
    assert "<strong>1</strong> of 2 jobs finished" in running and "1 succeeded" in running
    assert 'aria-valuenow="50"' in running and "hx-trigger" in running

    second.status = JobStatus.FAILED
    second.save(update_fields=["status"])
    done = client.get(f"/bulk/{batch.pk}/progress/", headers=HTMX).content.decode()
    assert "<strong>2</strong> of 2 jobs finished" in done and "1 failed" in done
    assert "hx-trigger" not in done and ">Done<" in done


def test_results_csv_download(cast, client_for):
    batch = _batch_with_jobs(cast, client_for)
    job = batch.jobs.get(batch_line=2)
    job.status = JobStatus.SUCCEEDED
    job.save(update_fields=["status"])
    VariantFactory(job=job, index=0, text="Grip the trail.")
    response = client_for(cast.viewer).get(f"/bulk/{batch.pk}/results.csv")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert f'filename="loom-batch-{batch.pk}.csv"' in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [(r["line"], r["status"]) for r in rows] == [("2", "succeeded"), ("3", "rejected"), ("4", "queued")]
    assert rows[0]["variant_1"] == "Grip the trail."


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"name,colour\nBoots,red\n", "Unknown columns: &#x27;name&#x27;, &#x27;colour&#x27;"),
        (b"product;features\nBoots;red\n", "delimiter"),
        (b"", "The submitted file is empty."),
        (b"product\n\xff\xfe\n", "not UTF-8"),
    ],
)
def test_a_bad_file_is_400_and_creates_nothing(cast, client_for, enqueue, content, message):
    response = client_for(cast.editor).post("/bulk/", _upload(cast, content=content))
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not BulkBatch.objects.exists() and not GenerationJob.objects.exists()
    enqueue.assert_not_called()


def test_a_file_where_every_row_is_bad_lists_the_lines(cast, client_for, enqueue):
    content = b"product,features\n,one\n,two\n"
    response = client_for(cast.editor).post("/bulk/", _upload(cast, content=content))
    body = response.content.decode()
    assert response.status_code == 400
    assert "Line 2: product: this variable is required" in body and "Line 3:" in body
    assert not BulkBatch.objects.exists()


def test_a_bad_variant_count_is_400(cast, client_for, enqueue):
    response = client_for(cast.editor).post("/bulk/", _upload(cast, num_variants="0"))
    assert response.status_code == 400
    assert not BulkBatch.objects.exists()


def test_another_organizations_project_is_a_form_error(cast, client_for, enqueue):
    response = client_for(cast.editor).post("/bulk/", _upload(cast, project=str(cast.outsider_project.pk)))
    assert response.status_code == 400
    assert "Select a valid choice" in response.content.decode()
    assert not BulkBatch.objects.exists()


def test_viewer_cannot_upload(cast, client_for, enqueue):
    response = client_for(cast.viewer).post("/bulk/", _upload(cast))
    assert response.status_code == 403
    assert not BulkBatch.objects.exists() and not GenerationJob.objects.exists()


@pytest.mark.parametrize("suffix", ["", "progress/", "results.csv"])
def test_outsider_gets_404_on_batch_pages(cast, client_for, suffix):
    batch = _batch_with_jobs(cast, client_for)
    response = client_for(cast.outsider).get(f"/bulk/{batch.pk}/{suffix}")
    assert response.status_code == 404
    assert "Trail runner" not in response.content.decode()


def test_bulk_page_lists_only_own_batches(cast, client_for):
    batch = _batch_with_jobs(cast, client_for)
    assert f"/bulk/{batch.pk}/" in client_for(cast.viewer).get("/bulk/").content.decode()
    assert f"/bulk/{batch.pk}/" not in client_for(cast.outsider).get("/bulk/").content.decode()


def test_job_of_a_batch_links_back_to_it(cast, client_for):
    batch = _batch_with_jobs(cast, client_for)
    job = batch.jobs.get(batch_line=2)
    body = client_for(cast.viewer).get(f"/jobs/{job.pk}/").content.decode()
    assert re.search(rf'href="/bulk/{batch.pk}/">Batch rows.csv</a>.*Line 2', body, re.S)
