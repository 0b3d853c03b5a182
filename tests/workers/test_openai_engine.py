"""The ``openai`` backend against a real server: llama-cpp-python's ``python -m llama_cpp.server``
serving the bundled SmolLM2 GGUF (started once per session), no mocks.

Seeds, streamed deltas, cancellation and the deadline (the stream is closed and the server aborts),
token counts against the server's own, retries while the server is down, a server killed mid-stream,
a job end to end through ``generation.execution.run_job``, and a worker without torch.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import threading
from unittest import mock

import openai
import pytest

from bench.harness import VAR_DIR, LlamaCppServer, current_database_url, free_port, wait_for
from generation import services
from generation.execution import run_job, score_variants
from generation.models import GenerationJob, JobStatus, Variant
from srcroot import REPO_ROOT
from tests.support.billing import seed_plans
from workers.contract import Backend, FinishReason, GenerationRequest
from workers.engines import engine_for, probe
from workers.openai_engine import OpenAIEngine, detect_flavor
from workers.stub import StubEngine

MESSAGES = [
    {"role": "system", "content": "You are a copywriter for a small shop."},
    {"role": "user", "content": "Write a short, warm product description of a linen tea towel."},
]
#: Short outputs keep the file fast: llama.cpp decodes ~50-100 tokens/s of this model on 2 cores.
TOKENS = 24


@pytest.fixture(scope="session")
def llama_server():
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed (bin/setup --dev installs llama-cpp-python[server])")
    server = LlamaCppServer(log_path=VAR_DIR / "test-llamacpp.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def backend(llama_server):
    return Backend(kind="openai", model=llama_server.model_name, base_url=llama_server.base_url)


@pytest.fixture(scope="session")
def engine(backend):
    engine = OpenAIEngine(backend)
    yield engine
    engine.close()


@pytest.fixture
def spare_server(llama_server):
    """A second server the test may stop, start and kill; the session's server stays up."""
    server = LlamaCppServer(log_path=VAR_DIR / "test-llamacpp-spare.log")
    yield server
    server.kill()


def _request(**kwargs):
    return GenerationRequest(**{"messages": MESSAGES, "max_new_tokens": TOKENS, "temperature": 0.9, **kwargs})


def _stop_after(pieces: list[str], count: int, reason: str):
    return lambda: reason if len(pieces) >= count else None


def test_engine_for_keeps_one_engine_per_backend_and_refuses_unknown_kinds():
    stub = Backend(kind="stub")
    assert isinstance(engine_for(stub), StubEngine)
    assert engine_for(stub) is engine_for(Backend(kind="stub"))
    with pytest.raises(ValueError, match="unknown backend kind"):
        engine_for(Backend(kind="tgi-native"))
    assert probe(Backend(kind="inprocess"))[0] and probe(None)[0]


def test_an_unreachable_server_is_probed_unreachable():
    reachable, detail = probe(Backend(kind="openai", model="m", base_url=f"http://127.0.0.1:{free_port()}/v1"))
    assert not reachable and "unreachable" in detail


def test_the_server_is_detected_as_llamacpp_and_probed_reachable(engine, backend):
    assert engine.flavor == "llamacpp"
    assert detect_flavor({"data": [{"id": "m", "owned_by": "vllm"}]}) == "vllm"
    assert detect_flavor({"data": []}) == "generic"
    reachable, detail = probe(backend)
    assert reachable, detail
    assert backend.model in detail
    assert probe(Backend(kind="openai", model="other-model", base_url=backend.base_url))[0] is False


def test_same_seed_gives_the_same_text_and_another_seed_another(engine):
    first, again, other = engine.generate([_request(seed=7), _request(seed=7), _request(seed=8)])
    assert first.text and first.text == again.text
    assert other.text != first.text


def test_deltas_concatenate_to_the_text_and_tokens_match_the_servers_count(engine, backend):
    pieces: list[str] = []
    result = engine.submit(_request(seed=11, on_text=pieces.append)).result()

    assert pieces and "".join(pieces) == result.text
    assert result.text == result.text.strip()
    assert result.finish_reason in {FinishReason.EOS, FinishReason.LENGTH}
    assert result.first_token_s is not None and 0 < result.first_token_s <= result.seconds
    # The same request unstreamed: llama.cpp's own usage (its streams carry none).
    client = openai.OpenAI(base_url=backend.base_url, api_key="none")
    plain = client.chat.completions.create(
        model=backend.model, messages=MESSAGES, seed=11, temperature=0.9, top_p=0.95, max_tokens=TOKENS
    )
    assert plain.choices[0].message.content.strip() == result.text
    assert (result.prompt_tokens, result.completion_tokens) == (
        plain.usage.prompt_tokens, plain.usage.completion_tokens,
    )


def test_a_raising_on_text_does_not_end_the_request(engine):
    def explode(piece: str) -> None:
        raise ValueError("viewer went away")

    expected = engine.submit(_request(seed=5)).result()
    result = engine.submit(_request(seed=5, on_text=explode)).result()
    assert (result.text, result.finish_reason) == (expected.text, expected.finish_reason)


@pytest.mark.parametrize("reason", [FinishReason.CANCELED, FinishReason.DEADLINE])
def test_a_stop_closes_the_stream_keeps_the_text_so_far_and_counts_received_tokens(engine, llama_server, reason):
    log_before = llama_server.log_path.read_text().count("Disconnected from client")
    pieces: list[str] = []
    request = _request(seed=3, max_new_tokens=400, on_text=pieces.append)
    request.should_stop = _stop_after(pieces, 3, reason)

    result = engine.submit(request).result()

    assert result.finish_reason == reason
    assert result.text == "".join(pieces) and len(pieces) == 3
    # Every content chunk is one token: the three sent plus any whitespace held back between them.
    assert 3 <= result.completion_tokens < 10
    assert result.prompt_tokens > 0
    # The server saw the disconnect and stopped generating (llama_cpp.server logs it).
    wait_for(
        lambda: llama_server.log_path.read_text().count("Disconnected from client") > log_before,
        30, "the server to abort the request",
    )


def test_a_request_stopped_while_queued_behind_another_ends_without_tokens(engine):
    # llama_cpp.server decodes one request at a time: the second waits for the first.
    running = engine.submit(_request(seed=1, max_new_tokens=60))
    queued = engine.submit(_request(seed=2, should_stop=lambda: FinishReason.CANCELED))

    stopped = queued.result()
    assert (stopped.finish_reason, stopped.text, stopped.completion_tokens) == (FinishReason.CANCELED, "", 0)
    assert stopped.first_token_s is None
    # ... and the running request was not interrupted by the other one arriving.
    assert running.result().finish_reason in {FinishReason.EOS, FinishReason.LENGTH}


def test_a_server_down_at_the_start_is_waited_for_within_the_retry_window(spare_server):
    engine = OpenAIEngine(
        Backend(kind="openai", model=spare_server.model_name, base_url=spare_server.base_url), retry_s=120
    )
    try:
        future = engine.submit(_request(seed=9))
        spare_server.start()  # after the first attempts were refused
        result = future.result(timeout=300)
    finally:
        engine.close()
    assert result.text and result.finish_reason in {FinishReason.EOS, FinishReason.LENGTH}


def test_a_server_that_stays_down_fails_the_request_after_the_retry_window():
    engine = OpenAIEngine(
        Backend(kind="openai", model="m", base_url=f"http://127.0.0.1:{free_port()}/v1"), retry_s=1
    )
    try:
        with pytest.raises(openai.APIConnectionError):
            engine.submit(_request()).result(timeout=60)
    finally:
        engine.close()


def test_a_server_killed_mid_stream_fails_the_request(spare_server):
    spare_server.start()
    engine = OpenAIEngine(Backend(kind="openai", model=spare_server.model_name, base_url=spare_server.base_url))
    pieces: list[str] = []
    killed = threading.Event()

    def on_text(piece: str) -> None:
        pieces.append(piece)
        if len(pieces) == 3 and not killed.is_set():
            killed.set()
            spare_server.kill()

    try:
        future = engine.submit(_request(seed=4, max_new_tokens=400, on_text=on_text))
        with pytest.raises(openai.APIConnectionError):
            future.result(timeout=120)  # a safety net: the cut connection raises at once
    finally:
        engine.close()
    assert killed.is_set()


def _submit(project, **params):
    version = services.resolve_version(project.organization, "product-description")
    with mock.patch("generation.dispatch.enqueue"):
        job, _ = services.submit_generation(
            organization=project.organization, project=project, version=version,
            inputs={"product": "Linen tea towel", "features": "100% linen", "audience": "home cooks"},
            params={"num_variants": 2, "max_new_tokens": TOKENS, "seed": 21, **params},
        )
    return job


@pytest.mark.django_db
def test_a_job_runs_end_to_end_on_the_openai_backend_and_bills_its_usage(cast, backend):
    from billing.models import LedgerEntry

    seed_plans()
    job = _submit(cast.project)

    job = run_job(job.pk, engine=engine_for(backend))

    assert job.status == JobStatus.SUCCEEDED, job.failure_reason
    variants = list(Variant.objects.filter(job=job).order_by("index"))
    assert [v.index for v in variants] == [0, 1]
    assert all(v.text and v.tokens > 0 and v.prompt_tokens > 0 for v in variants)
    assert variants[0].text != variants[1].text  # seeds 21 and 22
    assert job.completion_tokens == sum(v.tokens for v in variants)
    assert job.prompt_tokens == sum(v.prompt_tokens for v in variants)
    charge = LedgerEntry.objects.get(job=job, kind="charge")
    assert (charge.tokens_in, charge.tokens_out) == (job.prompt_tokens, job.completion_tokens)
    assert engine_for(backend) is engine_for(backend)  # one engine per backend and process


#: A generation worker with torch made unimportable: imports the engines and execution, then either
#: generates through the engine alone or runs a whole job.
_TORCHLESS_WORKER = """
import importlib.abc, sys
class NoTorch(importlib.abc.MetaPathFinder):
    # As on a machine without torch: any import of it (or of transformers, which needs it) fails, and
    # sys.modules never holds it (libraries such as scipy look there to see whether torch is in use).
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, NoTorch())
import django, srcroot
django.setup()
import generation.execution, workers.celery, workers.engines
from workers.contract import Backend, GenerationRequest
mode, model, base_url = sys.argv[1:4]
engine = workers.engines.engine_for(Backend(kind="openai", model=model, base_url=base_url))
if mode == "generate":
    request = GenerationRequest(messages=[{"role": "user", "content": "Say hello."}], max_new_tokens=8)
    print("generated", repr(engine.generate([request])[0].text))
else:
    job = generation.execution.run_job(sys.argv[4], engine=engine)
    print("job", job.status, job.failure_reason)
"""


def _torchless_worker(backend, settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "DJANGO_SETTINGS_MODULE": "config.settings.test", "DATABASE_URL": current_database_url(),
        "REDIS_URL": settings.REDIS_URL, "PATH": "/usr/bin:/bin", "HOME": str(REPO_ROOT),
    }
    return subprocess.run(
        [sys.executable, "-c", _TORCHLESS_WORKER, *args[:1], backend.model, backend.base_url, *args[1:]],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=240,
    )


@pytest.mark.django_db
def test_a_worker_without_torch_imports_the_engines_and_generates(backend, settings):
    done = _torchless_worker(backend, settings, "generate")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("generated '") and done.stdout.strip() != "generated ''"


@pytest.mark.django_db(transaction=True)
def test_a_worker_without_torch_runs_an_openai_job_and_brand_fit_is_scored_where_the_model_is(cast, backend, settings):
    seed_plans()
    job = _submit(cast.project)
    done = _torchless_worker(backend, settings, "job", str(job.pk))
    assert done.returncode == 0, done.stderr[-3000:]
    job = GenerationJob.objects.get(pk=job.pk)
    assert job.status == JobStatus.SUCCEEDED, job.failure_reason
    # Succeeded: scoring in that process would have imported torch and failed the job with the reason.
    variants = Variant.objects.filter(job=job)
    assert variants.count() == 2

    # What the default queue's generation.score_variants runs, in a process that has the embedding model;
    # a default-queue worker of the session may have taken the task already (then nothing is left).
    assert score_variants(job.pk) in (0, 2)
    assert all(0 <= v.brand_fit <= 1 for v in variants.all())
    assert score_variants(job.pk) == 0
