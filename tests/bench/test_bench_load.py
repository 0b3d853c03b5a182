"""The load script runs end to end: its own web server and stub worker, ~10 s of traffic, the report.

Performance itself is measured by ``python -m bench.load`` (README), not asserted here:
this proves the script works and that its table and job accounting are true.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from django.conf import settings

from bench.harness import current_database_url
from generation.models import GenerationJob, JobStatus
from srcroot import REPO_ROOT

pytestmark = [pytest.mark.reliability, pytest.mark.django_db(transaction=True)]


def test_load_script_runs_and_reports(tmp_path):
    # given: the script on the test database and Redis, with the base settings (its own key prefixes)
    report_path = tmp_path / "report.json"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.base",
        "DATABASE_URL": current_database_url(),
        "REDIS_URL": settings.REDIS_URL,
    }
    env.pop("CELERY_BROKER_URL", None)
    # when
    finished = subprocess.run(
        [sys.executable, "-m", "bench.load", "--duration", "10s", "--rps", "4", "--users", "2",
         "--web-workers", "1", "--web-threads", "2", "--generation-concurrency", "4", "--json", str(report_path)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=280,
    )
    # then: it succeeded and printed its table
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    out = finished.stdout
    assert "endpoint" in out and "p50 ms" in out and "p99 ms" in out
    assert any(line.startswith("ALL ") for line in out.splitlines())
    assert "non-429 error rate:" in out and "billing audit: OK" in out
    # and the report is what the server saw
    report = json.loads(report_path.read_text())
    assert 20 <= report["requests"] <= 80  # 4 req/s for 10 s, within the closed model's slack
    assert set(report["statuses"]) <= {"200", "201", "429"}, report["statuses"]
    assert report["error_rate"] == 0
    endpoints = {row["endpoint"] for row in report["latency"]}
    assert {"POST /jobs/", "ALL"} <= endpoints and endpoints & {"GET /jobs/", "GET /jobs/{id}/"}
    all_row = next(row for row in report["latency"] if row["endpoint"] == "ALL")
    assert 0 < all_row["p50"] <= all_row["p95"] <= all_row["p99"] <= all_row["max"]
    jobs = report["jobs"]
    assert jobs["accepted"] >= 1 and jobs["lost"] == 0 and jobs["missing"] == 0
    assert jobs["succeeded"] == jobs["accepted"]
    assert report["audit"]["ok"] is True
    # and every accepted job really ran on the stub, which echoed its prompt
    accepted = GenerationJob.objects.filter(
        organization__name__startswith="Load test", inputs__audience="home gardeners"
    )
    assert accepted.count() == jobs["accepted"]
    for job in accepted:
        assert job.status == JobStatus.SUCCEEDED
        assert job.inputs["product"] in job.variants.get().text


@pytest.mark.parametrize("module", ["bench.load", "bench.chaos"])
def test_benchmark_help_prints(module):
    # argparse formats help texts with %, so a literal percent sign in one made --help crash
    done = subprocess.run(
        [sys.executable, "-m", module, "--help"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.base", "DATABASE_URL": current_database_url()},
    )

    assert done.returncode == 0, done.stderr
    assert "--check-targets" in done.stdout and "0.1%" in done.stdout
