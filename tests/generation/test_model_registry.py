"""The model registry: the default model, which models an organization may use, jobs naming one,
billing by the model used, the API, the admin, and reachability in /readyz.

No worker runs (``generation.dispatch.enqueue`` is patched). Reachability is probed for real: an
OpenAI-compatible model that is up is a real HTTP server on a local port, one that is down a closed port.
"""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from unittest import mock

import pytest
from rest_framework.test import APIClient

from billing.models import LedgerEntry, LedgerKind
from generation import metering, registry
from generation.models import GenerationJob, ServingModel, Template
from tests.api_routes import assert_error_shape
from tests.support.billing import make_plan, set_usage, subscribe
from tests.support.factories import UserFactory
from tests.support.generation_factories import ServingModelFactory
from tests.support.web_generation import builtin_version
from workers import engines

pytestmark = pytest.mark.django_db

MODELS = "/api/v1/models/"
JOBS = "/api/v1/jobs/"
SECRET = "sk-live-never-shown-4f1c9e"


@pytest.fixture(autouse=True)
def enqueue():
    with mock.patch("generation.dispatch.enqueue") as patched:
        yield patched


def _job_body(cast, **overrides):
    body = {
        "project": str(cast.project.pk),
        "template": "product-description",
        "inputs": {"product": "Trail runner 2", "features": "Light, grippy sole"},
        "max_new_tokens": 40,
        "seed": 7,
    }
    body.update(overrides)
    return body


class _ModelsServer(BaseHTTPRequestHandler):
    """A minimal OpenAI-compatible server: enough for a probe (``/v1/models`` and ``/health``)."""

    served = "tiny-chat"

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            body = {"object": "list", "data": [{"id": self.served, "object": "model", "owned_by": "test"}]}
        elif self.path.rstrip("/").endswith("/health"):
            body = {"status": "ok"}
        else:
            self.send_error(404)
            return
        payload = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


def _serve() -> tuple[str, ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ModelsServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/v1", server


def _stop(server: ThreadingHTTPServer) -> None:
    server.shutdown()
    server.server_close()


@pytest.fixture
def server_up() -> Iterator[str]:
    """The base URL (up to /v1) of a real HTTP server answering like an OpenAI-compatible one."""
    url, server = _serve()
    yield url
    _stop(server)


@pytest.fixture
def server_down() -> str:
    """The base URL of a port nothing listens on (bound, then closed: connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def _openai_model(base_url: str, **fields):
    return ServingModelFactory(backend_kind="openai", model=_ModelsServer.served, base_url=base_url, **fields)


# --- the default model -------------------------------------------------------------------------


def test_a_fresh_install_has_a_default_model_without_configuration(cast, client_for):
    # given a registry emptied as a flushed database is
    GenerationJob.objects.update(serving_model=None)
    ServingModel.objects.all().delete()
    # when a member lists the models
    response = client_for(cast.editor).get(MODELS)
    # then the default is there, in process
    assert response.status_code == 200, response.content
    (entry,) = response.json()["results"]
    assert (entry["slug"], entry["backend"], entry["is_default"]) == ("default", "inprocess", True)
    assert ServingModel.objects.get(is_default=True).slug == "default"


def test_the_default_model_follows_each_workers_settings(settings):
    default = registry.default_model()

    settings.LOOM_MODEL = "/models/llama-3-8b-instruct"
    assert (default.backend().kind, default.backend().model) == ("inprocess", "/models/llama-3-8b-instruct")
    settings.LOOM_MODEL = "stub"
    assert (default.backend().kind, default.backend().model) == ("inprocess", "stub")
    # and a worker runs it on the engine it loaded at start, not on a second copy
    assert engines.engine_for(default.backend()) is engines.engine_for(None)


def test_a_job_without_a_model_runs_on_the_default(cast, client_for):
    response = client_for(cast.editor).post(JOBS, _job_body(cast), format="json")

    assert response.status_code == 201, response.content
    job = GenerationJob.objects.get(pk=response.json()["id"])
    assert job.serving_model == registry.default_model()
    assert response.json()["model"] == registry.default_model().slug


def test_making_another_model_the_default_moves_it(cast):
    operator = UserFactory(email="operator@loom.test", is_staff=True, is_superuser=True)
    before = registry.default_model()
    other = ServingModelFactory()

    registry.make_default(actor=operator, model=other)

    assert list(ServingModel.objects.filter(is_default=True)) == [other]
    before.refresh_from_db()
    assert before.is_default is False


# --- the API -----------------------------------------------------------------------------------


def test_members_see_global_and_own_models_never_anothers_private_or_inactive(cast, client_for):
    shared = ServingModelFactory(slug="shared-llama", price_per_1k_tokens=Decimal("0.25"), temperature=0.3)
    own = ServingModelFactory(slug="acme-finetune", organization=cast.org)
    ServingModelFactory(slug="globex-finetune", organization=cast.outsider_org)
    ServingModelFactory(slug="retired", is_active=False)

    body = client_for(cast.viewer).get(MODELS).json()

    slugs = {entry["slug"] for entry in body["results"]}
    assert {shared.slug, own.slug} <= slugs
    assert not {"globex-finetune", "retired"} & slugs
    entry = next(e for e in body["results"] if e["slug"] == "shared-llama")
    assert entry["price_per_1k_tokens"] == "0.250000"
    assert entry["defaults"] == {"temperature": 0.3, "top_p": None, "max_new_tokens": None}
    assert entry["private"] is False and entry["reachable"] is True  # a stub is always there


def test_model_detail_by_slug_and_outsider_gets_404(cast, client_for, outsider_key):
    own = ServingModelFactory(slug="acme-finetune", organization=cast.org, context_length=4096)

    mine = client_for(cast.viewer).get(f"{MODELS}acme-finetune/")
    theirs = outsider_key.get(f"{MODELS}acme-finetune/")
    by_id = outsider_key.get(f"{MODELS}{own.pk}/")

    assert mine.status_code == 200
    assert (mine.json()["slug"], mine.json()["context_length"], mine.json()["private"]) == ("acme-finetune", 4096, True)
    assert theirs.status_code == 404 and assert_error_shape(theirs)["code"] == "not_found"
    assert by_id.status_code == 404


def test_anonymous_cannot_list_models():
    ServingModelFactory(slug="shared-llama")

    response = APIClient().get(MODELS)

    assert response.status_code in (401, 403)
    assert "shared-llama" not in response.content.decode()


def test_a_model_limited_to_plans_is_listed_only_on_them(cast, client_for, outsider_key):
    pro = make_plan("pro-models", overage_allowed=True)
    subscribe(cast.org, pro)
    limited = ServingModelFactory(slug="big-model")
    limited.plans.add(pro)

    acme = {e["slug"] for e in client_for(cast.viewer).get(MODELS).json()["results"]}
    globex = {e["slug"] for e in outsider_key.get(MODELS).json()["results"]}

    assert "big-model" in acme
    assert "big-model" not in globex


def test_the_api_key_never_leaks_from_the_api(cast, client_for, server_down):
    model = _openai_model(server_down, slug="keyed")
    model.set_api_key(SECRET)
    model.save()

    listed = client_for(cast.owner).get(MODELS).content.decode()
    shown = client_for(cast.owner).get(f"{MODELS}keyed/").content.decode()

    for text in (listed, shown):
        assert SECRET not in text and model.encrypted_api_key not in text
        assert server_down not in text  # nor where it is served
    assert SECRET not in ServingModel.objects.filter(pk=model.pk).values_list("encrypted_api_key", flat=True)[0]
    assert ServingModel.objects.get(pk=model.pk).backend().api_key == SECRET


# --- jobs naming a model -----------------------------------------------------------------------


def test_a_job_naming_a_model_runs_on_it_with_its_defaults(cast, client_for):
    ServingModelFactory(slug="precise", temperature=0.2, top_p=0.5)

    response = client_for(cast.editor).post(JOBS, _job_body(cast, model="precise"), format="json")

    assert response.status_code == 201, response.content
    job = GenerationJob.objects.get(pk=response.json()["id"])
    assert (job.serving_model.slug, job.temperature, job.top_p) == ("precise", 0.2, 0.5)
    assert response.json()["model"] == "precise"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda cast: None, "Unknown model 'ghost'"),
        (lambda cast: ServingModelFactory(slug="ghost", is_active=False), "switched off"),
        (lambda cast: ServingModelFactory(slug="ghost", organization=cast.outsider_org), "Unknown model 'ghost'"),
        (lambda cast: ServingModelFactory(slug="ghost").plans.add(make_plan("elite")), "not available on the"),
    ],
    ids=["unknown", "inactive", "anothers-private", "other-plan"],
)
def test_a_job_naming_a_model_it_may_not_use_is_a_400(cast, client_for, make, message):
    make(cast)
    before = GenerationJob.objects.filter(organization=cast.org).count()

    response = client_for(cast.editor).post(JOBS, _job_body(cast, model="ghost"), format="json")

    assert response.status_code == 400, response.content
    body = assert_error_shape(response)
    assert body["code"] == "invalid_model" and message in body["detail"]
    assert "model" in body["fields"]
    assert GenerationJob.objects.filter(organization=cast.org).count() == before
    assert not LedgerEntry.objects.filter(organization=cast.org).exists()


def test_a_models_context_length_bounds_max_new_tokens(cast, client_for):
    ServingModelFactory(slug="small-window", context_length=64)

    body = _job_body(cast, model="small-window", max_new_tokens=200)

    refused = client_for(cast.editor).post(JOBS, body, format="json")

    assert refused.status_code == 400
    assert assert_error_shape(refused)["code"] == "invalid_parameters"


def test_template_default_then_project_default_then_global(cast, client_for):
    editor = client_for(cast.editor)
    project_model = ServingModelFactory(slug="project-pick")
    template_model = ServingModelFactory(slug="template-pick")
    # the project's choice, through the API
    url = f"/api/v1/projects/{cast.project.pk}/generation-settings/"
    saved = editor.put(url, {"default_model": "project-pick"}, format="json")
    assert saved.status_code == 200 and saved.json() == {"default_model": "project-pick"}
    assert editor.get(url).json() == {"default_model": "project-pick"}

    on_project = editor.post(JOBS, _job_body(cast), format="json").json()
    Template.objects.filter(organization=None, slug="product-description").update(default_model=template_model)
    on_template = editor.post(JOBS, _job_body(cast, seed=8), format="json").json()
    named = editor.post(JOBS, _job_body(cast, seed=9, model=project_model.slug), format="json").json()

    assert on_project["model"] == "project-pick"
    assert on_template["model"] == "template-pick"  # the template's choice before the project's
    assert named["model"] == "project-pick"  # the job's own before both


def test_a_project_cannot_default_to_a_model_it_may_not_use(cast, client_for):
    ServingModelFactory(slug="globex-only", organization=cast.outsider_org)

    response = client_for(cast.editor).patch(
        f"/api/v1/projects/{cast.project.pk}/generation-settings/", {"default_model": "globex-only"}, format="json"
    )

    assert response.status_code == 400
    assert assert_error_shape(response)["code"] == "invalid_model"
    assert registry.settings_for(cast.project).default_model_id is None


# --- billing by the model used -----------------------------------------------------------------


def _metered(cast, included_tokens=0):
    """Acme on a plan billing every token beyond ``included_tokens`` at 0.02 per 1,000."""
    plan = make_plan(
        "metered", included_tokens=included_tokens, overage_allowed=True, price_per_1k_tokens=Decimal("0.02")
    )
    subscribe(cast.org, plan)


def _billed_job(cast, client_for, **body):
    response = client_for(cast.editor).post(JOBS, _job_body(cast, **body), format="json")
    assert response.status_code == 201, response.content
    job = GenerationJob.objects.get(pk=response.json()["id"])
    return set_usage(job, prompt=600, completion=900)


def test_a_model_with_its_own_price_is_charged_at_it(cast, client_for):
    # given a plan billing every token at 0.02 per 1,000, and a model priced at 0.5 per 1,000
    _metered(cast)
    ServingModelFactory(slug="premium", price_per_1k_tokens=Decimal("0.5"))
    job = _billed_job(cast, client_for, model="premium")
    # when the job is settled
    charge = metering.settle_job(job=job)
    # then 1,500 tokens at the model's price
    assert charge.amount == Decimal("0.750000")
    assert charge.tokens == 1_500
    assert "0.5 per 1,000" in charge.reason


def test_a_model_without_a_price_is_charged_at_the_plans(cast, client_for):
    _metered(cast)
    ServingModelFactory(slug="plain")
    job = _billed_job(cast, client_for, model="plain")

    charge = metering.settle_job(job=job)

    assert charge.amount == Decimal("0.030000")
    assert charge.reason == "1500 tokens used"


def test_a_models_price_applies_only_beyond_the_included_tokens(cast, client_for):
    _metered(cast, included_tokens=1_000)
    ServingModelFactory(slug="premium", price_per_1k_tokens=Decimal("0.5"))
    job = _billed_job(cast, client_for, model="premium")

    charge = metering.settle_job(job=job)

    assert charge.amount == Decimal("0.250000")  # 500 tokens beyond the 1,000 included


def test_a_regenerated_variant_is_charged_at_its_jobs_model_price(cast, client_for):
    _metered(cast)
    ServingModelFactory(slug="premium", price_per_1k_tokens=Decimal("0.5"))
    job = _billed_job(cast, client_for, model="premium")

    charge = metering.charge_regeneration(job=job, index=0, revision=1, prompt_tokens=100, completion_tokens=100)

    assert charge.kind == LedgerKind.CHARGE and charge.amount == Decimal("0.100000")


# --- the admin ---------------------------------------------------------------------------------


@pytest.fixture
def operator_client():
    client = APIClient()
    client.force_login(UserFactory(email="operator@loom.test", is_staff=True, is_superuser=True))
    return client


def test_the_api_key_never_leaks_from_the_admin(operator_client, server_down):
    model = _openai_model(server_down, slug="keyed")
    model.set_api_key(SECRET)
    model.save()

    listing = operator_client.get("/admin/generation/servingmodel/")
    page = operator_client.get(f"/admin/generation/servingmodel/{model.pk}/change/")

    assert listing.status_code == 200 and page.status_code == 200
    for text in (listing.content.decode(), page.content.decode()):
        assert SECRET not in text and model.encrypted_api_key not in text
    assert '<div class="readonly">set</div>' in page.content.decode()


def test_an_operator_sets_a_models_key_write_only(operator_client, server_up):
    response = operator_client.post(
        "/admin/generation/servingmodel/add/",
        {
            "name": "Llama on vLLM",
            "slug": "llama-vllm",
            "is_active": "on",
            "backend_kind": "openai",
            "model": "meta-llama/Llama-3.1-8B-Instruct",
            "base_url": server_up,
            "api_key": SECRET,
            "context_length": "8192",
            "price_per_1k_tokens": "0.4",
        },
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    model = ServingModel.objects.get(slug="llama-vllm")
    assert model.backend().api_key == SECRET and SECRET not in model.encrypted_api_key
    assert model.price_per_1k_tokens == Decimal("0.4")
    # saving again without typing a key keeps it
    page = operator_client.get(f"/admin/generation/servingmodel/{model.pk}/change/").content.decode()
    assert SECRET not in page


# --- reachability ------------------------------------------------------------------------------


def test_readyz_shows_which_models_are_reachable(client, server_up, server_down):
    _openai_model(server_up, slug="up-model")
    _openai_model(server_down, slug="down-model")

    body = client.get("/readyz").json()

    assert body["models"]["up-model"]["reachable"] is True
    assert body["models"]["down-model"]["reachable"] is False
    assert body["models"]["down-model"]["detail"]


def test_the_api_says_which_models_are_reachable(cast, client_for, server_up, server_down):
    _openai_model(server_up, slug="up-model")
    _openai_model(server_down, slug="down-model")

    results = client_for(cast.viewer).get(MODELS).json()["results"]

    reachable = {entry["slug"]: entry["reachable"] for entry in results}
    assert (reachable["up-model"], reachable["down-model"]) == (True, False)


def test_reachability_is_cached_for_the_interval_then_probed_again():
    # given a model probed while its server was up
    url, server = _serve()
    model = _openai_model(url, slug="flaky")
    first = registry.reachability([model])["flaky"]
    # when the server goes away within the interval
    _stop(server)
    again = registry.reachability([model])["flaky"]
    # then the page is answered from the cache, without waiting on the dead server
    assert first.reachable is True and again == first
    # and an edited model (its settings are in the cache key) is probed afresh
    model.save()
    assert registry.reachability([model])["flaky"].reachable is False


# --- the dashboard -----------------------------------------------------------------------------


def _generate_form(cast, **overrides):
    data = {
        "version": "1",
        "var_product": "Trail runner 2",
        "var_features": "Light, grippy sole",
        "project": str(cast.project.pk),
        "num_variants": "1",
        "max_new_tokens": "40",
        "temperature": "0.7",
        "request_id": str(uuid.uuid4()),
    }
    data.update(overrides)
    return data


def test_the_generate_form_offers_the_usable_models_and_says_which_are_down(cast, client_for, server_down):
    version = builtin_version("product-description")
    ServingModelFactory(slug="premium", name="Premium writer")
    _openai_model(server_down, slug="offline", name="Offline writer")
    ServingModelFactory(slug="globex-only", name="Globex writer", organization=cast.outsider_org)
    editor = client_for(cast.editor)

    page = editor.get(f"/templates/{version.template_id}/generate/").content.decode()
    submitted = editor.post(f"/templates/{version.template_id}/generate/", _generate_form(cast, model="premium"))
    refused = editor.post(f"/templates/{version.template_id}/generate/", _generate_form(cast, model="globex-only"))

    assert 'value="premium"' in page and "Offline writer (not reachable)" in page
    assert "Globex writer" not in page
    assert submitted.status_code == 302
    assert GenerationJob.objects.get(organization=cast.org).serving_model.slug == "premium"
    assert refused.status_code == 400  # the form again, with the refusal
    assert "Globex writer" not in refused.content.decode()
    assert GenerationJob.objects.filter(organization=cast.org).count() == 1


def test_the_models_page_lists_usable_models_with_reachability_and_saves_the_project_default(
    cast, client_for, server_up, server_down
):
    ServingModelFactory(slug="premium", name="Premium writer")
    _openai_model(server_up, slug="online", name="Online writer")
    _openai_model(server_down, slug="offline", name="Offline writer")
    ServingModelFactory(slug="globex-only", name="Globex writer", organization=cast.outsider_org)
    url = f"/projects/{cast.project.pk}/models/"
    registry.reachability(ServingModel.objects.filter(slug__in=["online", "offline"]))  # probed, then cached

    page = client_for(cast.viewer).get(url).content.decode()
    saved = client_for(cast.editor).post(url, {"default_model": "premium"})
    after = client_for(cast.viewer).get(url).content.decode()

    assert "Premium writer" in page and "Online writer" in page and "Offline writer" in page
    assert "Globex writer" not in page
    assert "unreachable" in page.split("Offline writer")[1].split("</tr>")[0]
    assert ">reachable<" in page.split("Online writer")[1].split("</tr>")[0]
    assert saved.status_code == 302
    assert registry.settings_for(cast.project).default_model.slug == "premium"
    assert "used by default" in after.split("Premium writer")[1].split("</tr>")[0]


def test_the_models_page_refuses_what_the_project_may_not_use_and_readers_cannot_change_it(cast, client_for):
    ServingModelFactory(slug="globex-only", organization=cast.outsider_org)
    url = f"/projects/{cast.project.pk}/models/"

    refused = client_for(cast.editor).post(url, {"default_model": "globex-only"})
    by_viewer = client_for(cast.viewer).post(url, {"default_model": ""})
    outsider = client_for(cast.outsider).get(url)

    assert refused.status_code == 400
    assert "globex-only" in refused.content.decode()  # the field says the choice is not available
    assert by_viewer.status_code == 403
    assert outsider.status_code == 404
    assert registry.settings_for(cast.project).default_model_id is None


def test_the_default_row_follows_an_openai_server_named_in_the_settings(cast, settings):
    settings.LOOM_OPENAI_BASE_URL, settings.LOOM_OPENAI_MODEL = "http://vllm:8000/v1/", "gpu-default"
    settings.LOOM_OPENAI_API_KEY = "server-key"

    backend = registry.default_model().backend()

    assert (backend.kind, backend.base_url, backend.model, backend.api_key) == (
        "openai", "http://vllm:8000/v1", "gpu-default", "server-key"
    )
    # the API says what jobs are served by, not the row's stored kind, and never where or with what key
    client = APIClient()
    client.force_authenticate(cast.owner)
    listed = {m["slug"]: m for m in client.get("/api/v1/models/").json()["results"]}
    assert listed["default"]["backend"] == "openai"
    assert "vllm" not in json.dumps(listed) and "server-key" not in json.dumps(listed)


def test_an_openai_server_without_a_model_name_is_refused_at_start():
    import subprocess
    import sys

    env = {"DJANGO_SETTINGS_MODULE": "config.settings.base", "LOOM_OPENAI_BASE_URL": "http://vllm:8000/v1",
           "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", "import srcroot, django; django.setup()"], env=env, capture_output=True, text=True,
        cwd=str(__import__("srcroot").REPO_ROOT),
    )
    assert done.returncode != 0 and "LOOM_OPENAI_BASE_URL needs LOOM_OPENAI_MODEL" in done.stderr
