"""Brand model versions: activate (only one that beat the base, unless insisted), one active per project,
roll back, export, delete, files gone with the project; another organization's never reachable."""

from __future__ import annotations

import io
import threading
import zipfile

import pytest
from django.db import connection
from django.test import Client

from core.errors import Conflict
from finetune import services, storage
from generation.models import BrandAdapter
from projects.services import delete_project
from tests.support.finetune_factories import BrandAdapterFactory, TrainingRunFactory


@pytest.fixture(autouse=True)
def adapter_root(settings, tmp_path):
    settings.BRAND_ADAPTER_ROOT = tmp_path / "adapters"
    return settings.BRAND_ADAPTER_ROOT


def _signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_activate_refuses_an_adapter_that_did_not_beat_base_unless_insisted(cast, client_for):
    worse = BrandAdapterFactory(project=cast.project, version=1, beats_base=False)
    client = client_for(cast.editor)

    refused = client.post(f"/api/v1/brand-models/{worse.pk}/activate/", {}, format="json")
    worse.refresh_from_db()
    assert refused.status_code == 409 and refused.json()["code"] == "adapter_not_better"
    assert not worse.is_active

    insisted = client.post(f"/api/v1/brand-models/{worse.pk}/activate/", {"insist": True}, format="json")
    worse.refresh_from_db()
    assert insisted.status_code == 200 and insisted.json()["is_active"] is True and worse.is_active


def test_activating_another_version_deactivates_the_first_and_rollback_returns(cast, client_for):
    first = BrandAdapterFactory(project=cast.project, version=1, is_active=True)
    second = BrandAdapterFactory(project=cast.project, version=2)
    client = client_for(cast.editor)

    client.post(f"/api/v1/brand-models/{second.pk}/activate/", {}, format="json")
    active = list(BrandAdapter.objects.filter(project=cast.project, is_active=True).values_list("version", flat=True))
    assert active == [2]

    back = client.post(f"/api/v1/projects/{cast.project.pk}/brand-models/rollback/", {}, format="json")
    assert back.status_code == 200 and back.json()["version"] == 1
    first.refresh_from_db()
    assert first.is_active and not BrandAdapter.objects.get(pk=second.pk).is_active

    off = client.post(f"/api/v1/projects/{cast.project.pk}/brand-models/deactivate/")
    assert off.status_code == 204 and not BrandAdapter.objects.filter(project=cast.project, is_active=True).exists()


@pytest.mark.django_db(transaction=True)
def test_one_active_adapter_per_project_under_concurrent_activations(cast):
    adapters = [BrandAdapterFactory(project=cast.project, version=v) for v in range(1, 7)]
    barrier = threading.Barrier(len(adapters))
    errors: list[BaseException] = []

    def activate(adapter):
        try:
            barrier.wait()
            services.activate_adapter(organization=cast.org, adapter=adapter)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=activate, args=(a,)) for a in adapters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert BrandAdapter.objects.filter(project=cast.project, is_active=True).count() == 1


def test_another_organizations_adapter_is_404_everywhere(cast, client_for):
    # given: a Globex adapter, and an Acme editor
    theirs = BrandAdapterFactory(project=cast.outsider_project, version=1, beats_base=True)
    client = client_for(cast.editor)
    # when / then: API
    for method, url in [
        ("get", f"/api/v1/brand-models/{theirs.pk}/"),
        ("post", f"/api/v1/brand-models/{theirs.pk}/activate/"),
        ("get", f"/api/v1/brand-models/{theirs.pk}/export/"),
        ("delete", f"/api/v1/brand-models/{theirs.pk}/"),
        ("get", f"/api/v1/projects/{cast.outsider_project.pk}/brand-models/"),
        ("post", f"/api/v1/projects/{cast.outsider_project.pk}/training-runs/"),
    ]:
        assert getattr(client, method)(url).status_code == 404, url
    assert str(theirs.pk) not in client.get("/api/v1/brand-models/").content.decode()
    # and the dashboard
    web = _signed_in(cast.owner)
    assert web.post(f"/brand-model/adapters/{theirs.pk}/activate/", {"insist": "1"}).status_code == 404
    assert web.get(f"/brand-model/adapters/{theirs.pk}/export/").status_code == 404
    # and the services, however called
    with pytest.raises(services.NotFound):
        services.activate_adapter(organization=cast.org, adapter=theirs, insist=True)
    with pytest.raises(services.NotFound):
        services.export_adapter(organization=cast.org, adapter=theirs)
    theirs.refresh_from_db()
    assert not theirs.is_active and storage.adapter_folder(theirs).is_dir()


def test_outsider_sees_no_runs_or_adapters(cast, client_for):
    BrandAdapterFactory(project=cast.project, version=1)
    run = TrainingRunFactory(project=cast.project)
    outsider = client_for(cast.outsider)

    assert outsider.get("/api/v1/brand-models/").json()["results"] == []
    assert outsider.get("/api/v1/training-runs/").json()["results"] == []
    assert outsider.get(f"/api/v1/training-runs/{run.pk}/").status_code == 404
    assert outsider.get(f"/api/v1/projects/{cast.project.pk}/training-data/").status_code == 404


def test_export_is_a_zip_of_safetensors_config_and_model_card(cast, client_for):
    adapter = BrandAdapterFactory(project=cast.project, version=3)

    response = client_for(cast.editor).get(f"/api/v1/brand-models/{adapter.pk}/export/")

    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    assert "brand-model-v3.zip" in response["Content-Disposition"]
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert sorted(archive.namelist()) == [
        "brand-model-v3/README.md",
        "brand-model-v3/adapter_config.json",
        "brand-model-v3/adapter_model.safetensors",
    ]
    readme = archive.read("brand-model-v3/README.md").decode()
    assert "v3" in readme and "PeftModel" in readme and "perplexity" in readme


def test_export_of_an_adapter_whose_files_are_gone_is_a_clear_409(cast, client_for):
    adapter = BrandAdapterFactory(project=cast.project, version=1, files=False)

    response = client_for(cast.editor).get(f"/api/v1/brand-models/{adapter.pk}/export/")

    assert response.status_code == 409 and response.json()["code"] == "adapter_files_missing"


def test_deleting_an_adapter_removes_its_files(cast, client_for, django_capture_on_commit_callbacks):
    adapter = BrandAdapterFactory(project=cast.project, version=1)
    folder = storage.adapter_folder(adapter)
    assert folder.is_dir()

    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(cast.admin).delete(f"/api/v1/brand-models/{adapter.pk}/")

    assert response.status_code == 204 and not BrandAdapter.objects.filter(pk=adapter.pk).exists()
    assert not folder.exists()


def test_deleting_the_project_deletes_its_adapters_and_checkpoints(cast, django_capture_on_commit_callbacks):
    adapter = BrandAdapterFactory(project=cast.project, version=1)
    run = TrainingRunFactory(project=cast.project, status="running")
    storage.checkpoint_folder(run).mkdir(parents=True)
    other = BrandAdapterFactory(project=cast.sibling_project, version=1)

    with django_capture_on_commit_callbacks(execute=True):
        delete_project(actor=cast.owner, project=cast.project)

    assert not storage.adapter_folder(adapter).exists() and not storage.run_folder(run).exists()
    assert not storage.project_folder(cast.project.pk).exists()
    assert storage.adapter_folder(other).is_dir()


def test_brand_model_page_shows_data_runs_curve_and_evaluation(cast):
    adapter = BrandAdapterFactory(
        project=cast.project,
        version=1,
        beats_base=False,
        evaluation={
            "base": {"perplexity": 20.0, "brand_fit": 0.4},
            "adapter": {"perplexity": 25.0, "brand_fit": 0.5},
            "samples": [{"brief": "Socks", "base": "Generic socks.", "adapter": "Fernhollow socks."}],
        },
    )
    TrainingRunFactory(project=cast.project, status="running", adapter=None)

    response = _signed_in(cast.editor).get(f"/brand-model/projects/{cast.project.pk}/")

    page = response.content.decode()
    assert response.status_code == 200
    assert "<polyline" in page and "Fernhollow socks." in page and "Held-out perplexity" in page
    assert f"/brand-model/adapters/{adapter.pk}/activate/" in page and 'name="insist"' in page
    assert "more distinct examples are needed" in page


def test_viewer_cannot_start_or_activate(cast, client_for):
    adapter = BrandAdapterFactory(project=cast.project, version=1)
    viewer = client_for(cast.viewer)

    assert viewer.post(f"/api/v1/brand-models/{adapter.pk}/activate/", {}, format="json").status_code == 403
    assert viewer.post(f"/api/v1/projects/{cast.project.pk}/training-runs/", {}, format="json").status_code == 403
    with pytest.raises(Conflict):
        services.rollback_adapter(organization=cast.org, project=cast.project)
