"""Which precision the in-process model runs in: ``LOOM_DTYPE=auto`` picks bfloat16 where the CPU multiplies it
natively, training stays in float32, and the GGUF conversion is kept in float32 whatever a process serves in."""

from __future__ import annotations

import json
import struct

import pytest
import torch

from finetune import training
from workers import runtime
from workers.contract import GenerationRequest, OutputConstraint
from workers.engine import generate_batch
from workers.runtime import BUNDLED_MODEL, ModelSpec

CPU = torch.device("cpu")
MESSAGES = [{"role": "user", "content": "Write one line about a ceramic mug."}]


def test_auto_is_bfloat16_on_a_cpu_with_bf16_instructions_and_float32_on_others(monkeypatch):
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: True)
    assert runtime.resolve_dtype("auto", CPU) == torch.bfloat16
    assert runtime.resolve_dtype("float32", CPU) == torch.float32  # an explicit choice wins
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: False)
    assert runtime.resolve_dtype("auto", CPU) == torch.float32


def test_the_cpu_probe_answers_and_a_failing_probe_means_float32(monkeypatch):
    assert isinstance(runtime.cpu_has_native_bf16(), bool)

    def broken() -> bool:
        raise RuntimeError("no cpuinfo here")

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", broken, raising=False)
    assert runtime.cpu_has_native_bf16() is False


def test_the_bundled_model_in_bfloat16_repeats_a_seeded_text_and_keeps_hard_constraints():
    loaded = runtime.get_model(ModelSpec(model=BUNDLED_MODEL, gguf_file=None, device="cpu", dtype="bfloat16"))
    assert loaded.model.dtype == torch.bfloat16

    def request(**kwargs) -> GenerationRequest:
        return GenerationRequest(messages=MESSAGES, max_new_tokens=24, temperature=0.8, top_p=0.9, seed=4, **kwargs)

    first, again = (generate_batch(loaded, [request()])[0] for _ in range(2))
    assert first.text == again.text and first.completion_tokens > 5
    headline = generate_batch(loaded, [request(constraint=OutputConstraint(lines=(30,), prefixes=("Headline: ",)))])[0]
    assert headline.text.startswith("Headline: ") and "\n" not in headline.text
    assert len(headline.text.removeprefix("Headline: ")) <= 30


def test_training_loads_float32_where_serving_would_pick_bfloat16(monkeypatch, settings):
    settings.LOOM_DTYPE = "auto"
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: True)
    spec = ModelSpec(model=BUNDLED_MODEL, gguf_file=None, device="cpu", dtype="auto")
    assert training.load_base(spec).model.dtype == torch.float32


@pytest.mark.timeout(240)
def test_the_gguf_conversion_is_kept_in_float32_by_a_process_serving_bfloat16(settings, tmp_path):
    settings.VAR_DIR = tmp_path  # no conversion yet: this load converts the bundled GGUF (~20 s)
    spec = ModelSpec(model=BUNDLED_MODEL, gguf_file=None, device="cpu", dtype="bfloat16")
    loaded = runtime.load(spec)

    assert loaded.model.dtype == torch.bfloat16
    (weights,) = runtime.converted_model_dir(spec).glob("*.safetensors")
    with weights.open("rb") as file:
        (length,) = struct.unpack("<Q", file.read(8))
        header = json.loads(file.read(length))
    assert {tensor["dtype"] for name, tensor in header.items() if name != "__metadata__"} == {"F32"}
