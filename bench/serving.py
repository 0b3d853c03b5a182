"""Serving engines side by side: each engine alone, then the same load through the platform.

    python -m bench.serving [--levels 1,16,64] [--tokens 64] [--backends inprocess,llamacpp,vllm]
    python -m bench.serving --backend vllm --base-url http://gpu:8000/v1 --model NAME   # a running server

Same prompts, same bundled model, same run. For each backend and concurrency level N:

- ``engine``: the engine driven directly, N requests at once: the in-process engine through its own
  ``submit`` (no queue, no database), an OpenAI-compatible server (llama.cpp, vLLM) through a plain
  concurrent ``openai`` client streaming each request;
- ``platform``: N jobs submitted at once to the API (gunicorn as deployed), run by a real generation
  worker on that backend (a ``ServingModel`` row names it), followed by one SSE client per job on
  ``/api/v1/jobs/{id}/stream``: time to first token is measured at that client, from the submission.

tokens/s is generated tokens over wall time from the first request to the last completion. Each
backend's servers are started here (llama.cpp: ``python -m llama_cpp.server``; vLLM-CPU: the
``.venv-vllm`` from ``bin/install-vllm-cpu``); a backend whose engine is not installed is skipped
with the reason. The last lines are::

    platform_vs_engine_vllm_16: <platform tokens/s / vLLM alone tokens/s, 16 concurrent>
    ttft_p50_ms_16: <first streamed token through the platform, 16 concurrent, best backend>
    constraint_pass_rate: <share of variants passing hard constraints over the constrained templates>
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import srcroot  # noqa: F401

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
# Queues of its own: a platform running on the same Redis must not take the benchmark's jobs.
os.environ.setdefault("CELERY_KEY_PREFIX", f"loom-bench-serving-{os.getpid()}:")

import django
import httpx
import openai
import requests
import requests.adapters

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402

from accounts.models import User  # noqa: E402
from apikeys.services import create_api_key  # noqa: E402
from bench import harness  # noqa: E402
from bench.constraints import pass_rate  # noqa: E402
from bench.vllm import VllmServer, bundled_model_dir  # noqa: E402
from billing.services import assign_plan  # noqa: E402
from generation.models import ServingModel  # noqa: E402
from generation.prompts import build_messages  # noqa: E402
from generation.services import resolve_version  # noqa: E402
from organizations.models import Membership, Organization, Role  # noqa: E402
from projects.models import Project  # noqa: E402
from workers.contract import GenerationRequest  # noqa: E402
from workers.engines import engine_for  # noqa: E402

PRODUCTS = [
    "linen tea towel", "ceramic mug", "scented candle", "wool blanket",
    "oak cutting board", "glass vase", "cotton tote bag", "brass lamp",
]
TEMPLATE = "product-description"


def prompt_inputs(i: int) -> dict[str, str]:
    return {"product": PRODUCTS[i % len(PRODUCTS)], "features": "handmade", "audience": "gift shoppers"}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


@dataclass
class Run:
    backend: str
    mode: str  # "engine" or "platform"
    concurrency: int
    tokens: int = 0
    seconds: float = 0.0
    ttft_s: list[float] = field(default_factory=list)
    failures: int = 0

    @property
    def rate(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    def row(self) -> str:
        p50 = percentile(self.ttft_s, 0.5) * 1000
        p95 = percentile(self.ttft_s, 0.95) * 1000
        return (
            f"{self.backend:<10}{self.mode:<10}{self.concurrency:>5}{self.tokens:>9}{self.seconds:>9.1f}"
            f"{self.rate:>10.1f}{p50:>10.0f}{p95:>10.0f}{self.failures:>6}"
        )


# --- the messages every request sends --------------------------------------------------------------


def chat_messages(count: int) -> list[list[dict[str, str]]]:
    """The prompts the platform builds for the benchmark's jobs, so engine-alone requests are the same."""
    version = resolve_version(Organization(name="x", slug="x"), TEMPLATE)
    return [build_messages(version, prompt_inputs(i), None, []) for i in range(count)]


# --- each engine alone -----------------------------------------------------------------------------


def engine_inprocess(n: int, tokens: int) -> Run:
    engine = engine_for(None)
    run = Run("inprocess", "engine", n)
    requests = [
        GenerationRequest(messages=m, max_new_tokens=tokens, temperature=0.8, seed=1000 + i)
        for i, m in enumerate(chat_messages(n))
    ]
    started = time.perf_counter()
    results = [f.result() for f in [engine.submit(r) for r in requests]]
    run.seconds = time.perf_counter() - started
    run.tokens = sum(r.completion_tokens for r in results)
    run.ttft_s = [r.first_token_s for r in results if r.first_token_s is not None]
    return run


def engine_openai(name: str, base_url: str, model: str, n: int, tokens: int) -> Run:
    """N streamed chat completions at once through the official client: the engine's own throughput."""
    client = openai.OpenAI(
        base_url=base_url, api_key="bench", max_retries=0,
        http_client=httpx.Client(limits=httpx.Limits(max_connections=n + 4), timeout=600),
    )
    run = Run(name, "engine", n)

    def one(i: int, messages: list[dict[str, str]], started: float) -> tuple[int, float | None]:
        stream = client.chat.completions.create(
            model=model, messages=messages, max_tokens=tokens, temperature=0.8, seed=1000 + i, stream=True,
            stream_options={"include_usage": True},
        )
        first, used, pieces = None, 0, 0
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                pieces += 1
                if first is None:
                    first = time.perf_counter() - started
            if chunk.usage:
                used = chunk.usage.completion_tokens
        return used or pieces, first

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=n) as pool:
        futures = [pool.submit(one, i, m, started) for i, m in enumerate(chat_messages(n))]
        for future in futures:
            try:
                used, first = future.result()
            except Exception as exc:  # a failed request is counted, not fatal to the benchmark
                print(f"  {name}: request failed: {exc}", file=sys.stderr)
                run.failures += 1
                continue
            run.tokens += used
            if first is not None:
                run.ttft_s.append(first)
    run.seconds = time.perf_counter() - started
    client.close()
    return run


# --- the same load through the platform -----------------------------------------------------------


class Platform:
    """gunicorn and a generation worker on this benchmark's database and Redis, and an API key."""

    def __init__(self, *, concurrency: int) -> None:
        self.organization = Organization.objects.create(name="Serving bench", slug=f"bench-{uuid.uuid4().hex[:8]}")
        # Enterprise: the plan never refuses the 64-job level.
        assign_plan(organization=self.organization, plan_code="enterprise", reason="serving benchmark")
        self.project = Project.objects.create(organization=self.organization, name="Bench", slug="bench")
        owner = User.objects.create_user(email=f"{self.organization.slug}@bench.invalid", password=uuid.uuid4().hex)
        Membership.objects.create(organization=self.organization, user=owner, role=Role.OWNER)
        self.key = create_api_key(actor=owner, organization=self.organization, name="bench").secret
        env = {"DJANGO_SETTINGS_MODULE": os.environ["DJANGO_SETTINGS_MODULE"],
               "DATABASE_URL": harness.current_database_url(), "REDIS_URL": settings.REDIS_URL,
               # A connection per running job, not one kept per worker thread: 64 job threads holding
               # theirs beside the web's would pass a default Postgres's 100 connections.
               "DB_CONN_MAX_AGE": "0"}
        # Streams have threads of their own (WEB_STREAMS, platform/config/gunicorn.py) that hold no database
        # connection; the request threads do, and Postgres allows 100 connections in all.
        self.web = harness.WebServer(
            {**env, "WEB_STREAMS": str(max(concurrency, 1))}, workers=2, threads=8, name="bench-serving-web",
            log_path=harness.VAR_DIR / "bench-serving-web.log",
        )
        self.web.start()
        self.worker = harness.Worker(
            "serving-generation", "generation", "--pool", "threads", "--concurrency", str(max(concurrency, 1)),
            env=env, hostname=f"bench-serving-{os.getpid()}@localhost",
            log_path=harness.VAR_DIR / "bench-serving-worker.log", loglevel="WARNING", timeout=180,
        )
        self.default_worker = harness.Worker(
            "serving-default", "default", "--concurrency", "2", env=env,
            hostname=f"bench-serving-default-{os.getpid()}@localhost",
            log_path=harness.VAR_DIR / "bench-serving-default.log", loglevel="WARNING",
        )

    def stop(self) -> None:
        self.worker.stop()
        self.default_worker.stop()
        self.web.stop()
        self.organization.delete()

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def run(self, backend: str, model_slug: str, n: int, tokens: int) -> Run:
        run = Run(backend, "platform", n)
        session = requests.Session()
        session.headers.update(self.headers())
        # One pooled connection per concurrent job (its submission, then its stream).
        adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=n + 4)
        session.mount("http://", adapter)
        lock = threading.Lock()

        def one(i: int, started: float) -> tuple[int, float | None]:
            body = {
                "project": str(self.project.pk), "template": TEMPLATE, "inputs": prompt_inputs(i),
                "num_variants": 1, "max_new_tokens": tokens, "temperature": 0.8, "seed": 1000 + i,
                "model": model_slug,
            }
            while True:
                response = session.post(self.web.base_url + "/api/v1/jobs/", json=body, timeout=60)
                if response.status_code != 429:
                    break
                time.sleep(float(response.headers.get("Retry-After", "1")))
            response.raise_for_status()
            job_id = response.json()["id"]
            first = stream_until_end(session, f"{self.web.base_url}/api/v1/jobs/{job_id}/stream", started)
            job = session.get(f"{self.web.base_url}/api/v1/jobs/{job_id}/", timeout=60).json()
            if job["status"] != "succeeded":
                with lock:
                    print(f"  {backend}: job {job_id} {job['status']}: {job.get('failure_reason')}", file=sys.stderr)
                return -1, first
            return int(job["completion_tokens"]), first

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=n) as pool:
            for future in [pool.submit(one, i, started) for i in range(n)]:
                used, first = future.result()
                if used < 0:
                    run.failures += 1
                else:
                    run.tokens += used
                if first is not None:
                    run.ttft_s.append(first)
        run.seconds = time.perf_counter() - started
        return run


def stream_until_end(session: Any, url: str, started: float) -> float | None:
    """Follow a job's SSE stream to its ``end`` event; seconds from ``started`` to the first delta."""
    first = None
    with session.get(url, stream=True, timeout=600, headers={"Accept": "text/event-stream"}) as response:
        response.raise_for_status()
        event = ""
        for raw in response.iter_lines(decode_unicode=True):
            if raw is None:
                continue
            if raw.startswith("event:"):
                event = raw.removeprefix("event:").strip()
            elif raw.startswith("data:") and event == "delta" and first is None:
                first = time.perf_counter() - started
            elif raw == "" and event == "end":
                break
    return first


def serving_model(slug: str, kind: str, *, model: str = "", base_url: str = "") -> str:
    ServingModel.objects.update_or_create(
        slug=slug,
        defaults={"name": slug, "backend_kind": kind, "model": model, "base_url": base_url, "is_active": True},
    )
    return slug


# --- servers ---------------------------------------------------------------------------------------


def start_servers(backends: list[str]) -> dict[str, tuple[Any, str, str]]:
    """Each requested OpenAI-compatible backend as (server, base URL, served model name); skipped ones say why."""
    servers: dict[str, tuple[Any, str, str]] = {}
    if "llamacpp" in backends:
        try:
            server = harness.LlamaCppServer(log_path=harness.VAR_DIR / "bench-serving-llamacpp.log")
            server.start()
            servers["llamacpp"] = (server, server.base_url, server.model_name)
        except Exception as exc:
            print(f"llamacpp: skipped ({exc})")
    if "vllm" in backends:
        try:
            server = VllmServer(bundled_model_dir(), log_path=harness.VAR_DIR / "bench-serving-vllm.log")
            server.start()
            servers["vllm"] = (server, server.base_url, server.served_model_name)
        except Exception as exc:
            print(f"vllm: skipped ({exc})")
    return servers


def measure_constraints(variants: int) -> float | None:
    return float(pass_rate(variants=variants))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=64, help="max new tokens per request")
    parser.add_argument("--levels", default="1,16,64", help="concurrency levels")
    parser.add_argument("--backends", default="inprocess,llamacpp,vllm", help="which engines to compare")
    parser.add_argument("--backend", help="one engine already running elsewhere (with --base-url, --model)")
    parser.add_argument("--base-url", help="its OpenAI-compatible base URL, up to /v1")
    parser.add_argument("--model", help="its served model name")
    parser.add_argument("--constraint-variants", type=int, default=40, help="variants for the pass rate (0: skip)")
    parser.add_argument("--json", help="also write the runs to this file")
    args = parser.parse_args(argv)
    levels = [int(x) for x in args.levels.split(",")]

    call_command("migrate", verbosity=0)  # an empty database is fine
    servers: dict[str, tuple[Any, str, str]] = {}
    if args.backend:
        if not (args.base_url and args.model):
            parser.error("--backend needs --base-url and --model")
        backends = [args.backend]
        servers[args.backend] = (None, args.base_url, args.model)
    else:
        backends = [b.strip() for b in args.backends.split(",") if b.strip()]
        servers = start_servers(backends)
    runs: list[Run] = []
    platform = Platform(concurrency=max(levels))
    try:
        for backend in backends:
            if backend == "inprocess":
                slug = serving_model("bench-inprocess", "inprocess")
                alone: Callable[[int], Run] = lambda n: engine_inprocess(n, args.tokens)  # noqa: E731
            elif backend in servers:
                _, base_url, model = servers[backend]
                slug = serving_model(f"bench-{backend}", "openai", model=model, base_url=base_url)
                alone = lambda n, b=backend, u=base_url, m=model: engine_openai(b, u, m, n, args.tokens)  # noqa: E731
            else:
                continue
            # Warm both sides alike: the worker loads or connects, and the engine alone runs its first
            # forward passes (allocations, a prefix cache entry), outside any timed run.
            platform.run(backend, slug, 1, 4)
            alone(1)
            for n in levels:
                runs.append(alone(n))
                print(runs[-1].row(), flush=True)
                runs.append(platform.run(backend, slug, n, args.tokens))
                print(runs[-1].row(), flush=True)
    finally:
        platform.stop()
        for server, _, _ in servers.values():
            if server is not None:
                server.stop()
    pass_rate = measure_constraints(args.constraint_variants) if args.constraint_variants else None

    print(f"\nmodel: bundled SmolLM2-135M-Instruct unless --model; max new tokens per request: {args.tokens}")
    print(f"{'backend':<10}{'mode':<10}{'N':>5}{'tokens':>9}{'seconds':>9}{'tok/s':>10}{'ttft p50':>10}"
          f"{'p95 ms':>10}{'fail':>6}")
    for run in runs:
        print(run.row())
    if args.json:
        with open(args.json, "w") as out:
            json.dump([run.__dict__ for run in runs], out, indent=2)
    by_key = {(r.backend, r.mode, r.concurrency): r for r in runs}
    vllm_engine, vllm_platform = by_key.get(("vllm", "engine", 16)), by_key.get(("vllm", "platform", 16))
    if vllm_engine and vllm_platform and vllm_engine.rate:
        print(f"platform_vs_engine_vllm_16: {vllm_platform.rate / vllm_engine.rate:.2f}")
    platform_16 = [r for r in runs if r.mode == "platform" and r.concurrency == 16 and r.ttft_s]
    if platform_16:
        best = min(statistics.median(r.ttft_s) for r in platform_16)
        print(f"ttft_p50_ms_16: {best * 1000:.0f}")
    if pass_rate is not None:
        print(f"constraint_pass_rate: {pass_rate:.3f}")


if __name__ == "__main__":
    main()
