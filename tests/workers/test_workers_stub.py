"""The stub model (LOOM_MODEL=stub): echo, token counts, stop conditions, concurrency and fault hooks."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from srcroot import REPO_ROOT
from workers import engine as engine_module
from workers.engine import FinishReason, GenerationRequest
from workers.runtime import STUB_MODEL, ModelSpec, load
from workers.stub import HANG_MARKER, KILL_WORKER_MARKER, StubEngine, generate

MESSAGES = [
    {"role": "system", "content": "You are a copywriter. Secret canary CANARY-7."},
    {"role": "user", "content": "An earlier request"},
    {"role": "assistant", "content": "An earlier answer"},
    {"role": "user", "content": "Write about a white ceramic mug"},
]


def _request(messages=MESSAGES, **kwargs):
    return GenerationRequest(**{"messages": messages, "max_new_tokens": 50, **kwargs})


def test_echoes_the_last_user_message_and_counts_whitespace_tokens():
    result = generate(_request(), token_s=0)
    assert result.text == "Write about a white ceramic mug"
    assert result.completion_tokens == 6
    assert result.prompt_tokens == 7 + 3 + 3 + 6  # the words of every message
    assert result.finish_reason == FinishReason.EOS
    assert "CANARY" not in result.text


def test_stops_at_max_new_tokens():
    result = generate(_request(max_new_tokens=3), token_s=0)
    assert (result.text, result.completion_tokens, result.finish_reason) == ("Write about a", 3, FinishReason.LENGTH)


@pytest.mark.parametrize("reason", [FinishReason.CANCELED, FinishReason.DEADLINE])
def test_should_stop_ends_the_echo_with_its_reason(reason):
    polls = []

    def should_stop():
        polls.append(1)
        return reason if len(polls) >= 2 else None

    result = generate(_request(should_stop=should_stop), token_s=0)
    assert (result.completion_tokens, result.finish_reason) == (2, reason)


def test_tokens_are_paced_at_the_configured_rate():
    started = time.perf_counter()
    result = generate(_request(), token_s=0.02)
    elapsed = time.perf_counter() - started
    assert 6 * 0.02 <= elapsed < 1.0
    assert result.seconds == pytest.approx(elapsed, abs=0.05)


def test_many_concurrent_requests_are_served_concurrently():
    engine = StubEngine(token_s=0.01)
    words = " ".join(["word"] * 40)
    started = time.perf_counter()
    results = engine.generate([_request([{"role": "user", "content": words}]) for _ in range(100)])
    elapsed = time.perf_counter() - started
    # one after another this would take 100 x 40 x 0.01 = 40 s
    assert elapsed < 5, elapsed
    assert all(r.completion_tokens == 40 and r.finish_reason == FinishReason.EOS for r in results)


def test_fault_markers_are_plain_text_unless_the_faults_are_armed():
    for marker in (HANG_MARKER, KILL_WORKER_MARKER):
        result = generate(_request([{"role": "user", "content": f"hello {marker}"}]), token_s=0)
        assert result.text == f"hello {marker}"
        assert result.finish_reason == FinishReason.EOS


def test_hang_marker_never_finishes_on_its_own_only_should_stop_ends_it():
    stop = threading.Event()
    engine = StubEngine(token_s=0, faults=True)
    request = _request(
        [{"role": "user", "content": f"hello {HANG_MARKER}"}],
        should_stop=lambda: FinishReason.DEADLINE if stop.is_set() else None,
    )
    future = engine.submit(request)
    time.sleep(0.5)
    assert not future.done()
    stop.set()
    result = future.result(timeout=5)
    assert (result.text, result.completion_tokens, result.finish_reason) == ("", 0, FinishReason.DEADLINE)


def _run_stub_in_a_subprocess(content: str, faults: bool) -> subprocess.CompletedProcess[str]:
    script = (
        "import srcroot, sys\n"
        "from workers.engine import GenerationRequest\n"
        "from workers.stub import StubEngine\n"
        f"engine = StubEngine(token_s=0, faults={faults!r})\n"
        f"result = engine.submit(GenerationRequest(messages=[{{'role': 'user', 'content': {content!r}}}],"
        " max_new_tokens=20)).result()\n"
        "print(result.text)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False
    )


def test_kill_marker_sigkills_the_process_when_faults_are_armed():
    killed = _run_stub_in_a_subprocess(f"hello {KILL_WORKER_MARKER}", faults=True)
    assert killed.returncode == -9, killed.stderr
    assert killed.stdout == ""
    unarmed = _run_stub_in_a_subprocess(f"hello {KILL_WORKER_MARKER}", faults=False)
    assert unarmed.returncode == 0, unarmed.stderr
    assert unarmed.stdout.strip() == f"hello {KILL_WORKER_MARKER}"


def test_faults_are_armed_only_by_the_environment(monkeypatch, settings):
    settings.LOOM_STUB_TOKEN_S = 0.001
    monkeypatch.delenv("LOOM_STUB_FAULTS", raising=False)
    assert StubEngine.from_settings().faults is False
    monkeypatch.setenv("LOOM_STUB_FAULTS", "1")
    engine = StubEngine.from_settings()
    assert (engine.faults, engine.token_s) == (True, 0.001)


def test_loom_model_stub_gives_the_stub_engine_and_loads_no_weights(monkeypatch, settings):
    settings.LOOM_MODEL = STUB_MODEL
    monkeypatch.setattr(engine_module, "_engine", None)
    engine = engine_module.get_engine()
    assert isinstance(engine, StubEngine)
    assert engine_module.get_engine() is engine  # one per process
    with pytest.raises(RuntimeError, match="no weights"):
        load(ModelSpec(model=STUB_MODEL, gguf_file=None, device="cpu", dtype="float32"))
