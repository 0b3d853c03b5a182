"""Bulk CSV: good rows become jobs, bad rows are reported by line, a bad file writes nothing."""

from __future__ import annotations

import csv
import io
from unittest import mock

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from core.errors import InvalidInput
from generation.bulk import BULK_MAX_BYTES, batch_results_csv, parse_bulk_csv
from generation.models import BulkBatch, GenerationJob, JobStatus
from tests.api_routes import assert_error_shape
from tests.support.generation_factories import BulkBatchFactory, TemplateVersionFactory, VariantFactory

pytestmark = pytest.mark.django_db

BULK = "/api/v1/bulk/"
GOOD_AND_BAD = (
    "product,audience,tone\n"
    "Tulip bulbs,gardeners,fun\n"  # line 2: good
    ",florists,\n"  # line 3: product missing
    "\n"  # line 4: blank, skipped
    '"Rose ""Red"" seeds",,formal\n'  # line 5: good, quoted
    "Daisies,,grumpy\n"  # line 6: not a choice
    f"{'x' * 81},,\n"  # line 7: too long
)


@pytest.fixture
def enqueue():
    with mock.patch("generation.dispatch.enqueue") as patched:
        yield patched


@pytest.fixture
def version(cast):
    """An Acme template: product (required, at most 80), audience (optional), tone (fun | formal)."""
    return TemplateVersionFactory(template__organization=cast.org, template__slug="tagline")


def _upload(client, cast, content: bytes | str, *, name="rows.csv", **fields):
    data = content.encode() if isinstance(content, str) else content
    body = {
        "file": SimpleUploadedFile(name, data, content_type="text/csv"),
        "project": str(cast.project.pk),
        "template": "tagline",
        **fields,
    }
    return client.post(BULK, body, format="multipart")


def _batches(cast):
    """Batches of the cast's organizations only: the test database may hold rows other sessions committed."""
    return BulkBatch.objects.filter(organization__in=[cast.org, cast.outsider_org])


def _nothing_written(cast):
    jobs = GenerationJob.objects.filter(organization__in=[cast.org, cast.outsider_org])
    return not _batches(cast).exists() and not jobs.exists()


# --- parsing -----------------------------------------------------------------------------------


def test_parse_reports_bad_rows_by_line_and_keeps_good_ones(version):
    rows, errors = parse_bulk_csv(version, GOOD_AND_BAD.encode())

    assert rows == [
        (2, {"product": "Tulip bulbs", "audience": "gardeners", "tone": "fun"}),
        (5, {"product": 'Rose "Red" seeds', "tone": "formal"}),
    ]
    assert [e["line"] for e in errors] == [3, 6, 7]
    assert errors[0]["errors"] == ["product: this variable is required"]
    assert "must be one of: fun, formal" in errors[1]["errors"][0]
    assert "at most 80 characters" in errors[2]["errors"][0]


def test_parse_accepts_a_byte_order_mark_crlf_and_any_header_case(version):
    data = "\ufeffProduct , TONE\r\nBulbs,fun\r\n".encode()

    rows, errors = parse_bulk_csv(version, data)

    assert (rows, errors) == ([(2, {"product": "Bulbs", "tone": "fun"})], [])


def test_parse_reads_number_variables_as_numbers(cast):
    version = TemplateVersionFactory(
        template__organization=cast.org,
        variables=[{"name": "product"}, {"name": "count", "type": "number", "required": False}],
        prompt="{product} x{count}",
    )

    rows, errors = parse_bulk_csv(version, b"product,count\nBulbs,3\nSeeds,2.5\nMore,many\n")

    assert rows == [(2, {"product": "Bulbs", "count": 3}), (3, {"product": "Seeds", "count": 2.5})]
    assert errors == [{"line": 4, "errors": ["count: must be a number"]}]


def test_parse_reports_a_row_with_more_cells_than_the_header(version):
    rows, errors = parse_bulk_csv(version, b"product\nBulbs\nSeeds,extra\n")

    assert rows == [(2, {"product": "Bulbs"})]
    assert errors[0]["line"] == 3 and "header has 1 columns" in errors[0]["errors"][0]


def test_parse_counts_lines_of_multiline_cells(version):
    rows, errors = parse_bulk_csv(version, b'product,audience\n"Bulbs","two\nlines"\n,x\n')

    assert rows == [(2, {"product": "Bulbs", "audience": "two\nlines"})]
    assert errors[0]["line"] == 4


@pytest.mark.parametrize(
    ("data", "code", "words"),
    [
        ("product,audience\nCafé,Ärzte\n".encode("cp1252"), "invalid_encoding", "not UTF-8"),
        (b"product;audience\nBulbs;gardeners\n", "wrong_delimiter", "semicolons"),
        (b"product\taudience\nBulbs\tgardeners\n", "wrong_delimiter", "tabs"),
        (b"audience,tone\ngardeners,fun\n", "missing_columns", "product"),
        (b"product,colour\nBulbs,red\n", "unknown_columns", "'colour'"),
        (b"product,Product\nBulbs,Bulbs\n", "duplicate_columns", "product"),
        (b"product,audience\n", "no_rows", "no rows"),
        (b"", "empty_file", "empty"),
    ],
    ids=["cp1252", "semicolon", "tab", "missing-column", "unknown-column", "duplicate-column", "no-rows", "empty"],
)
def test_parse_refuses_a_bad_file(version, data, code, words):
    with pytest.raises(InvalidInput) as refused:
        parse_bulk_csv(version, data)

    assert refused.value.code == code
    assert words in refused.value.detail


def test_parse_refuses_more_rows_than_the_limit(version, settings):
    settings.BULK_MAX_ROWS = 3
    assert len(parse_bulk_csv(version, b"product\na\nb\nc\n")[0]) == 3

    with pytest.raises(InvalidInput) as refused:
        parse_bulk_csv(version, b"product\na\nb\nc\nd\n")

    assert refused.value.code == "too_many_rows" and "more than 3 rows" in refused.value.detail


# --- the API -----------------------------------------------------------------------------------


def test_upload_turns_good_rows_into_jobs_and_reports_bad_ones(
    cast, client_for, version, enqueue, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = _upload(client_for(cast.editor), cast, GOOD_AND_BAD, num_variants=2, seed=5)

    assert response.status_code == 201, response.json()
    body = response.json()
    batch = _batches(cast).get()
    assert body["id"] == str(batch.pk)
    assert (body["total_rows"], body["accepted"], body["rejected"]) == (5, 2, 3)
    assert [e["line"] for e in body["row_errors"]] == [3, 6, 7]
    assert body["status_counts"]["queued"] == 2 and body["done"] is False
    jobs = list(batch.jobs.order_by("batch_line"))
    assert [(j.batch_line, j.inputs["product"]) for j in jobs] == [(2, "Tulip bulbs"), (5, 'Rose "Red" seeds')]
    assert all(
        (j.project, j.template_version, j.num_variants, j.seed, j.requested_by)
        == (cast.project, version, 2, 5, cast.editor)
        for j in jobs
    )
    assert (batch.filename, batch.total_rows, batch.created_by) == ("rows.csv", 5, cast.editor)
    assert sorted(call.args[0] for call in enqueue.call_args_list) == sorted(j.pk for j in jobs)


def test_upload_with_a_key_of_a_builtin_template(cast, key_for, enqueue):
    client, key, _ = key_for("write", project=cast.project)

    response = _upload(client, cast, "product\nBulbs\nSeeds\n", template="product-description")

    assert response.status_code == 201, response.json()
    batch = _batches(cast).get()
    assert (batch.api_key, batch.created_by, batch.template_version.template.slug) == (key, None, "product-description")
    assert batch.jobs.count() == 2


@pytest.mark.parametrize(
    ("content", "code", "words"),
    [
        ("product,audience\nCafé,Ärzte\n".encode("cp1252"), "invalid_encoding", "UTF-8"),
        ("product;audience\nBulbs;gardeners\n", "wrong_delimiter", "delimiter"),
        ("audience\ngardeners\n", "missing_columns", "product"),
        ("product\n" + "Bulbs\n" * 501, "too_many_rows", "more than 500 rows"),
        ("product\n", "no_rows", "no rows"),
        ("product,tone\n,fun\n,formal\n", "no_valid_rows", "line 2"),
    ],
    ids=["cp1252", "semicolon", "missing-column", "501-rows", "no-rows", "no-good-row"],
)
def test_a_bad_file_is_a_400_and_writes_nothing(cast, client_for, version, enqueue, content, code, words):
    response = _upload(client_for(cast.editor), cast, content)

    assert response.status_code == 400, response.json()
    body = assert_error_shape(response)
    assert body["code"] == code
    assert words in body["detail"]
    assert _nothing_written(cast)
    enqueue.assert_not_called()


def test_a_file_over_2_mb_is_refused(cast, client_for, version, enqueue):
    content = b"product\n" + b"Bulbs\n" * (BULK_MAX_BYTES // 6 + 1)

    response = _upload(client_for(cast.editor), cast, content)

    assert (response.status_code, response.json()["code"]) == (400, "file_too_large")
    assert _nothing_written(cast)


def test_bad_parameters_refuse_the_whole_file(cast, client_for, version, enqueue):
    response = _upload(client_for(cast.editor), cast, "product\nBulbs\n", num_variants=99)

    assert (response.status_code, response.json()["code"]) == (400, "invalid_parameters")
    assert "num_variants" in response.json()["fields"]
    assert _nothing_written(cast)


def test_missing_file_is_a_400(cast, client_for, version):
    response = client_for(cast.editor).post(BULK, {"project": str(cast.project.pk), "template": "tagline"})

    assert response.status_code == 400
    assert "file" in assert_error_shape(response)["fields"]
    assert _nothing_written(cast)


def test_viewer_and_read_key_cannot_upload(cast, client_for, key_for, version, enqueue):
    read_key, _, _ = key_for("read")

    for client in (client_for(cast.viewer), read_key):
        response = _upload(client, cast, "product\nBulbs\n")
        assert (response.status_code, response.json()["code"]) == (403, "permission_denied")
    assert _nothing_written(cast)


def test_project_key_cannot_upload_to_another_project(cast, key_for, version, enqueue):
    client, _, _ = key_for("write", project=cast.sibling_project)

    response = _upload(client, cast, "product\nBulbs\n")

    assert (response.status_code, response.json()["code"]) == (404, "project_not_found")
    assert _nothing_written(cast)


def test_outsider_cannot_upload_into_acme_or_use_its_template(cast, client_for, version, enqueue):
    client = client_for(cast.outsider)

    into_acme = _upload(client, cast, "product\nBulbs\n")
    body = {
        "file": SimpleUploadedFile("rows.csv", b"product\nBulbs\n"),
        "project": str(cast.outsider_project.pk),
        "template": "tagline",
    }
    acme_template = client.post(BULK, body, format="multipart")

    assert (into_acme.status_code, into_acme.json()["code"]) == (404, "project_not_found")
    assert (acme_template.status_code, acme_template.json()["code"]) == (404, "template_not_found")
    assert _nothing_written(cast)


def test_progress_counts_jobs_per_status(cast, client_for, version, enqueue):
    _upload(client_for(cast.editor), cast, "product\na\nb\nc\n")
    batch = _batches(cast).get()
    first, second, _ = batch.jobs.order_by("batch_line")
    GenerationJob.objects.filter(pk=first.pk).update(status=JobStatus.SUCCEEDED)
    GenerationJob.objects.filter(pk=second.pk).update(status=JobStatus.RUNNING)

    response = client_for(cast.viewer).get(f"{BULK}{batch.pk}/")

    assert response.status_code == 200
    assert response.json()["status_counts"] == {"queued": 1, "running": 1, "succeeded": 1, "failed": 0, "canceled": 0}
    assert (response.json()["accepted"], response.json()["done"]) == (3, False)


def test_results_csv_has_a_line_per_row_with_status_error_and_texts(cast, client_for, version, enqueue):
    _upload(client_for(cast.editor), cast, "product,tone\nBulbs,fun\n,fun\nSeeds,formal\n", num_variants=2)
    batch = _batches(cast).get()
    bulbs, seeds = batch.jobs.order_by("batch_line")
    GenerationJob.objects.filter(pk=bulbs.pk).update(status=JobStatus.SUCCEEDED)
    VariantFactory(job=bulbs, index=1, text="Second take")
    VariantFactory(job=bulbs, index=0, text="=cmd|' /C calc'!A0", edited_text="")
    GenerationJob.objects.filter(pk=seeds.pk).update(status=JobStatus.FAILED, failure_reason="Input blocked.")

    response = client_for(cast.viewer).get(f"{BULK}{batch.pk}/results.csv")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0] == [
        "line", "status", "job_id", "product", "audience", "tone", "error", "variant_1", "variant_2",
        "facts_supported", "facts_unsupported", "facts_flagged",
    ]
    assert rows[1] == [
        "2", "succeeded", str(bulbs.pk), "Bulbs", "", "fun", "", "'=cmd|' /C calc'!A0", "Second take", "0", "0", "0"
    ]
    assert rows[2] == ["3", "rejected", "", "", "", "", "product: this variable is required"]
    assert rows[3] == ["4", "failed", str(seeds.pk), "Seeds", "", "formal", "Input blocked."]
    assert response.content.decode() == batch_results_csv(batch)


def test_project_key_sees_only_its_projects_batches(cast, key_for):
    own = BulkBatchFactory(project=cast.project)
    sibling = BulkBatchFactory(project=cast.sibling_project)
    client, _, _ = key_for("read", project=cast.project)

    listing = client.get(BULK)

    assert [b["id"] for b in listing.json()["results"]] == [str(own.pk)]
    assert client.get(f"{BULK}{sibling.pk}/").status_code == 404
    assert client.get(f"{BULK}{sibling.pk}/results.csv").status_code == 404
