"""Jobs and brand adapters: pinned at submission, chosen only within the project, failing clearly without files."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import pytest
from django.conf import settings
from django.utils import timezone

from billing.models import LedgerEntry, LedgerKind
from core.errors import InvalidInput
from generation import registry, services
from generation.execution import run_job
from generation.models import BrandAdapter, GenerationJob, JobStatus
from tests.support.generation_factories import ServingModelFactory
from workers.stub import StubEngine

pytestmark = pytest.mark.django_db

JOBS = "/api/v1/jobs/"
INPUTS = {"product": "Linen tea towel", "features": "100% linen", "audience": "home cooks"}


@pytest.fixture(autouse=True)
def adapter_root(tmp_path, settings):
    settings.BRAND_ADAPTER_ROOT = tmp_path
    return tmp_path


class RecordingEngine(StubEngine):
    """The echo stub, remembering what each request asked for."""

    def __init__(self) -> None:
        super().__init__(token_s=0)
        self.requests: list = []

    def submit(self, request):
        self.requests.append(request)
        return super().submit(request)


def _adapter(project, version, *, active=False, model=None, files=True) -> BrandAdapter:
    path = f"{project.pk}/v{version}"
    if files:
        folder = Path(settings.BRAND_ADAPTER_ROOT) / path
        folder.mkdir(parents=True)
        (folder / "adapter_config.json").write_text("{}")
        (folder / "adapter_model.safetensors").write_bytes(b"weights")
    adapter = BrandAdapter.objects.create(
        organization=project.organization,
        project=project,
        version=version,
        path=path,
        serving_model=model or registry.default_model(),
    )
    if active:
        _activate(adapter)
    return adapter


def _activate(adapter: BrandAdapter) -> None:
    BrandAdapter.objects.filter(project=adapter.project, is_active=True).update(is_active=False)
    BrandAdapter.objects.filter(pk=adapter.pk).update(is_active=True, activated_at=timezone.now())


def _submit(project, **params):
    version = services.resolve_version(project.organization, "product-description")
    with mock.patch("generation.dispatch.enqueue"):
        job, _ = services.submit_generation(
            organization=project.organization,
            project=project,
            version=version,
            inputs=INPUTS,
            params={"num_variants": 2, "max_new_tokens": 8, "seed": 3, **params},
        )
    return job


def test_a_job_keeps_its_adapter_version_after_a_newer_one_is_activated(cast):
    # given: a job submitted while v1 is active
    first = _adapter(cast.project, 1, active=True)
    job = _submit(cast.project)
    assert job.adapter == first
    # when: v2 is activated before the job runs
    second = _adapter(cast.project, 2)
    _activate(second)
    engine = RecordingEngine()
    job = run_job(job.pk, engine=engine)
    # then: the job ran with v1, and a new job gets v2
    assert job.status == JobStatus.SUCCEEDED and job.adapter_id == first.pk
    assert {r.adapter.name for r in engine.requests} == {first.name}
    assert engine.requests[0].adapter.path == str(Path(settings.BRAND_ADAPTER_ROOT) / first.path)
    assert _submit(cast.project).adapter == second


def test_a_job_may_run_on_the_base_model_or_another_version_of_its_project(cast):
    first = _adapter(cast.project, 1)
    _adapter(cast.project, 2, active=True)
    assert _submit(cast.project, adapter=None).adapter is None
    assert _submit(cast.project, adapter="base").adapter is None
    assert _submit(cast.project, adapter=1).adapter == first
    assert _submit(cast.project, adapter="v1").adapter == first
    job = _submit(cast.project, adapter=None)
    engine = RecordingEngine()
    run_job(job.pk, engine=engine)
    assert [r.adapter for r in engine.requests] == [None, None]


def test_an_active_adapter_of_another_model_is_not_used(cast):
    other = ServingModelFactory()
    _adapter(cast.project, 1, active=True, model=other)
    assert _submit(cast.project).adapter is None
    with pytest.raises(InvalidInput, match="trained on"):
        _submit(cast.project, adapter=1)


def test_another_projects_or_organizations_adapter_can_never_be_selected(cast, client_for):
    theirs = _adapter(cast.outsider_project, 5, active=True)
    sibling = _adapter(cast.sibling_project, 6, active=True)
    client = client_for(cast.editor)
    body = {"project": str(cast.project.pk), "template": "product-description", "inputs": INPUTS, "seed": 1}
    with mock.patch("generation.dispatch.enqueue"):
        for version in (theirs.version, sibling.version, str(theirs.pk), "latest"):
            response = client.post(JOBS, {**body, "adapter": version}, format="json")
            assert response.status_code == 400, (version, response.json())
            assert response.json()["code"] == "invalid_adapter", (version, response.json())
        # the project has no adapter of its own: its jobs run on the base model
        created = client.post(JOBS, body, format="json")
    assert created.status_code == 201 and created.json()["adapter"] is None
    assert not GenerationJob.objects.filter(project=cast.project).exclude(adapter=None).exists()


def test_the_api_and_the_job_page_show_the_pinned_version(cast, client_for):
    adapter = _adapter(cast.project, 3, active=True)
    job = _submit(cast.project)
    shown = client_for(cast.viewer).get(f"{JOBS}{job.pk}/").json()
    assert shown["adapter"] == {"id": str(adapter.pk), "version": 3}
    page = client_for(cast.viewer).get(f"/jobs/{job.pk}/").content.decode()
    assert "Brand model v3" in page
    # the outsider sees neither
    assert client_for(cast.outsider).get(f"{JOBS}{job.pk}/").status_code == 404


def test_an_adapter_whose_files_are_gone_fails_the_job_and_charges_nothing(cast):
    _adapter(cast.project, 1, active=True, files=False)
    job = _submit(cast.project)
    engine = RecordingEngine()
    job = run_job(job.pk, engine=engine)
    assert job.status == JobStatus.FAILED
    assert "Brand model v1 cannot be served" in job.failure_reason and "missing" in job.failure_reason
    assert engine.requests == []  # nothing was generated, on the base model or otherwise
    kinds = set(LedgerEntry.objects.filter(job=job).values_list("kind", flat=True))
    assert LedgerKind.CHARGE not in kinds and kinds <= {LedgerKind.RESERVATION, LedgerKind.RELEASE}


def test_a_job_whose_adapter_was_deleted_after_submission_fails_instead_of_running_on_the_base_model(cast):
    adapter = _adapter(cast.project, 2, active=True)
    job = _submit(cast.project)
    adapter.delete()  # the job's link is cleared; its pinned version is kept
    engine = RecordingEngine()
    job = run_job(job.pk, engine=engine)
    assert job.status == JobStatus.FAILED
    assert job.adapter_version == 2 and "Brand model v2 was deleted" in job.failure_reason
    assert engine.requests == []
    kinds = set(LedgerEntry.objects.filter(job=job).values_list("kind", flat=True))
    assert LedgerKind.CHARGE not in kinds
