"""The process-wide engine for each serving backend, and whether a backend can be reached.

``engine_for(None)`` is the worker's configured model (``LOOM_MODEL``, the echo stub for
``LOOM_MODEL=stub``), as before backends existed. A ``Backend`` (from a registry entry,
``generation.models.ServingModel``) gets its own engine, made on first use and kept for the process:
``inprocess`` a ``BatchEngine`` over the runtime's loader (one per model source; the configured
model's is the same engine as ``engine_for(None)``), ``openai`` an ``OpenAIEngine``, ``stub`` the stub.

Nothing here loads torch: ``workers.engine`` and ``workers.runtime`` import it only when a model is
loaded, so a worker that serves only ``openai`` backends needs neither torch nor a GPU
(tests/workers/test_openai_engine.py imports this module and runs a job with torch made unimportable).
"""

from __future__ import annotations

import threading
from typing import Any

import openai
from django.conf import settings

from workers import engine as batch_engine
from workers.contract import Backend
from workers.openai_engine import OpenAIEngine
from workers.runtime import ModelSpec, get_model
from workers.stub import StubEngine

KINDS = ("inprocess", "openai", "stub")
#: How long ``probe`` waits for a server's model list.
PROBE_TIMEOUT_S = 2.0

_engines: dict[Backend | None, Any] = {}
_engines_lock = threading.Lock()
#: One lock per backend, so loading an in-process model (~20 s) holds up only that backend's callers.
_building: dict[Backend | None, threading.Lock] = {}


def engine_for(backend: Backend | None) -> Any:
    """The engine serving ``backend`` in this process (made once; safe to call from any thread)."""
    with _engines_lock:
        if backend in _engines:
            return _engines[backend]
        building = _building.setdefault(backend, threading.Lock())
    with building:
        with _engines_lock:
            if backend in _engines:
                return _engines[backend]
        engine = _make(backend)  # may raise (a model that fails to load): the next call tries again
        with _engines_lock:
            _engines[backend] = engine
        return engine


def occupancy() -> list[dict[str, Any]]:
    """How full each engine this process made is: ``kind``, ``model``, ``running``, ``waiting``, ``capacity``.

    The worker's heartbeat sends it (``workers.celery.Heartbeat``) and /metrics reads it from there. Only
    this process's engines: a prefork worker's children keep theirs (generation workers run threads).
    """
    with _engines_lock:
        made = list(_engines.values())
    if (configured := batch_engine.loaded_engine()) is not None:
        made.append(configured)  # loaded by the heartbeat's warm-up, before any job asked engine_for
    unique = {id(engine): engine for engine in made}
    return [engine.occupancy() for engine in unique.values() if hasattr(engine, "occupancy")]


def _make(backend: Backend | None) -> Any:
    if backend is None:
        return batch_engine.get_engine()
    if backend.kind == "openai":
        return OpenAIEngine(backend)
    if backend.kind == "stub":
        return StubEngine.from_settings()
    if backend.kind == "inprocess":
        spec = _inprocess_spec(backend)
        if spec == ModelSpec.from_settings():
            return batch_engine.get_engine()  # one engine thread per model, shared with engine_for(None)
        return batch_engine.BatchEngine(get_model(spec))
    raise ValueError(f"unknown backend kind {backend.kind!r} (one of {', '.join(KINDS)})")


def _inprocess_spec(backend: Backend) -> ModelSpec:
    configured = ModelSpec.from_settings()
    if not backend.model or backend.model == configured.model:
        return configured
    return ModelSpec(model=backend.model, gguf_file=None, device=settings.LOOM_DEVICE, dtype=settings.LOOM_DTYPE)


def probe(backend: Backend | None) -> tuple[bool, str]:
    """Whether ``backend`` can serve now, and a line saying why, for readiness displays.

    ``openai``: the server's ``GET {base_url}/models`` answers within ``PROBE_TIMEOUT_S`` and lists the
    served model. In-process and stub models are served by the worker that loads them: True.
    """
    if backend is None or backend.kind in {"inprocess", "stub"}:
        return True, "served in the worker process"
    if backend.kind != "openai":
        return False, f"unknown backend kind {backend.kind!r}"
    client = openai.OpenAI(base_url=backend.base_url, api_key=backend.api_key or "none", max_retries=0)
    try:
        served = [m.id for m in client.models.list(timeout=PROBE_TIMEOUT_S).data]
    except openai.APIStatusError as exc:
        return False, f"{backend.base_url}/models answered {exc.status_code}"
    except openai.OpenAIError as exc:
        return False, f"{backend.base_url} unreachable: {exc}"
    finally:
        client.close()
    names = ", ".join(served) or "nothing"
    if backend.model and backend.model not in served:
        return False, f"{backend.model} is not served there (serves: {names})"
    return True, f"serves: {names}"
