"""A Python client generated from ``/api/schema/`` by openapi-python-client works as shipped.

The generator is one no one here wrote, run as a newcomer would (with the shipped
``clients/openapi-python-client.yml``): it must type every operation, skipping none
and warning about nothing, and the client it writes must create a generation job
and read it back from a real HTTP server with an API key.
"""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest import mock

import pytest
import requests

from generation.models import GenerationJob, JobStatus
from srcroot import REPO_ROOT
from tests.support.generation_factories import TemplateVersionFactory, VariantFactory

pytestmark = pytest.mark.django_db(transaction=True)

CONFIG = REPO_ROOT / "clients" / "openapi-python-client.yml"
PACKAGE = "loom_client"
HTTP_METHODS = ("get", "put", "post", "patch", "delete")


@pytest.fixture
def schema(live_server: Any) -> dict[str, Any]:
    response = requests.get(f"{live_server.url}/api/schema/", params={"format": "json"}, timeout=60)
    assert response.status_code == 200, response.text[:300]
    return response.json()  # type: ignore[no-any-return]


def _generate(schema: dict[str, Any], workdir: Path) -> tuple[Path, str]:
    """Generate the client package into ``workdir``; returns its folder and what the generator said."""
    (workdir / "schema.json").write_text(json.dumps(schema))
    # The shipped configuration, without the post-generation hooks (ruff formatting): fast, and offline.
    (workdir / "config.yml").write_text(CONFIG.read_text() + "\npost_hooks: []\n")
    package = workdir / PACKAGE
    result = subprocess.run(
        [sys.executable, "-m", "openapi_python_client", "generate", "--path", "schema.json",
         "--config", "config.yml", "--output-path", str(package), "--meta", "none"],
        cwd=workdir, capture_output=True, text=True, timeout=120, check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return package, output


@pytest.fixture
def client_package(schema: dict[str, Any], tmp_path: Path) -> Iterator[ModuleType]:
    """The generated package, imported from a temporary folder (and forgotten afterwards)."""
    _generate(schema, tmp_path)
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


def _operations(schema: dict[str, Any]) -> dict[str, list[str]]:
    """Each operation's module name (its snake_cased operationId), with its successful answers that have a body."""
    return {
        re.sub(r"\W+", "_", operation["operationId"]).lower(): [
            code for code, response in operation["responses"].items() if code.startswith("2") and "content" in response
        ]
        for item in schema["paths"].values()
        for method, operation in item.items()
        if method in HTTP_METHODS
    }


def test_the_generator_types_every_operation_without_a_warning(schema, tmp_path):
    # when
    package, output = _generate(schema, tmp_path)
    # then: it said nothing but what it generated (a skipped operation or response is a warning)
    remarks = [line for line in output.splitlines() if line.strip() and not line.startswith("Generating ")]
    assert not remarks, "openapi-python-client warned:\n" + output
    # and every operation of the schema has its module, which reads each of its successful answers
    modules = {path.stem: path for path in (package / "api").glob("*/*.py") if path.stem != "__init__"}
    operations = _operations(schema)
    assert len(operations) > 60  # a walk that found nothing would compare nothing
    assert set(operations) - set(modules) == set()
    unread = sorted(
        f"{name} {code}"
        for name, codes in operations.items()
        for code in codes
        if f"if response.status_code == {code}:" not in modules[name].read_text()
    )
    assert not unread, f"answers the generated client leaves out: {unread}"


def test_the_generated_client_creates_a_job_and_reads_it_back(cast, key_for, live_server, client_package):
    # given: a template of Acme's, and a write key (the job is queued, no worker runs)
    template = TemplateVersionFactory(template__organization=cast.org, template__slug="spring-tagline").template
    _, _, secret = key_for("write")
    client = client_package.AuthenticatedClient(base_url=live_server.url, token=secret, raise_on_unexpected_status=True)
    jobs_create = importlib.import_module(f"{PACKAGE}.api.jobs.jobs_create")
    jobs_retrieve = importlib.import_module(f"{PACKAGE}.api.jobs.jobs_retrieve")
    templates_retrieve = importlib.import_module(f"{PACKAGE}.api.templates.templates_retrieve")
    variants_list = importlib.import_module(f"{PACKAGE}.api.variants.variants_list")
    models = importlib.import_module(f"{PACKAGE}.models")
    inputs = {"product": "Trail runner", "audience": "hikers", "tone": "fun"}
    body = models.JobCreateRequest(
        project=cast.project.pk,
        template="spring-tagline",
        inputs=models.JobCreateRequestInputs.from_dict(inputs),
        num_variants=2,
        seed=7,
    )
    # when
    with mock.patch("generation.dispatch.enqueue") as enqueue:
        created = jobs_create.sync_detailed(client=client, body=body)
    # then: a typed answer, and the job stored in Acme as asked
    assert created.status_code == 201, created.content
    job = created.parsed
    assert isinstance(job, models.Job)
    stored = GenerationJob.objects.get(pk=job.id)
    assert (stored.organization_id, stored.project_id, stored.template_version.template_id) == (
        cast.org.pk, cast.project.pk, template.pk
    )
    assert (stored.inputs, stored.num_variants, stored.seed, stored.status) == (inputs, 2, 7, JobStatus.QUEUED)
    enqueue.assert_called_once()
    # when: read back, with a variant the worker would have written
    VariantFactory(job=stored, index=0, text="Run the trail, warmly.")
    read = jobs_retrieve.sync(client=client, id=job.id)
    # then
    assert isinstance(read, models.Job)
    assert (read.id, read.status, read.template, read.template_id) == (
        stored.pk, models.JobStatusEnum.QUEUED, "spring-tagline", template.pk
    )
    assert read.inputs.to_dict() == inputs
    assert [v.text for v in read.variants] == ["Run the trail, warmly."]
    # and the template by its slug, the job's variants on their own
    assert templates_retrieve.sync(client=client, id="spring-tagline").id == template.pk
    variants = variants_list.sync(client=client, job=job.id)
    assert [(v.job, v.index) for v in variants.results] == [(stored.pk, 0)]
