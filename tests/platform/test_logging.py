"""Logs (config/logs.py): a request id on every line, answered in X-Request-ID, carried into the worker that runs
the request's job; JSON lines in production."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import pytest

from config.logs import FORMATS, logging_config
from generation.models import GenerationJob
from srcroot import REPO_ROOT


def _run_django(code: str, settings_module: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``code`` in a new interpreter with Django set up under ``settings_module``: its own logging configuration."""
    program = (
        "import os, srcroot, django\n"
        f"os.environ['DJANGO_SETTINGS_MODULE'] = {settings_module!r}\n"
        "django.setup()\n" + code
    )
    full_env = {k: v for k, v in os.environ.items() if k not in {"DJANGO_SETTINGS_MODULE", "LOG_FORMAT"}}
    full_env.update(env)
    return subprocess.run([sys.executable, "-c", program], cwd=REPO_ROOT, env=full_env, capture_output=True,
                          text=True, timeout=120, check=False)


LOG_A_LINE = """
import logging
from django_guid import set_guid
logging.getLogger("loom.test").info("outside a request")
set_guid("0f8fad5bd9cb469fa16570867728950e")
logging.getLogger("loom.test").warning("inside %s", "a request", extra={"job": "j-1"})
from django.conf import settings
print("LOG_FORMAT=" + settings.LOG_FORMAT)
"""


def test_production_logs_one_json_object_per_line_with_the_request_id():
    result = _run_django(LOG_A_LINE, "config.settings.production", SECRET_KEY="x" * 50)
    assert result.returncode == 0, result.stderr
    assert "LOG_FORMAT=json" in result.stdout
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    outside, inside = [line for line in lines if line.get("logger") == "loom.test"]
    assert outside["message"] == "outside a request" and outside["request_id"] is None
    assert inside == {
        "level": "WARNING", "logger": "loom.test", "message": "inside a request",
        "request_id": "0f8fad5bd9cb469fa16570867728950e", "job": "j-1", "timestamp": inside["timestamp"],
    }
    assert inside["timestamp"].endswith("+00:00")


def test_text_logs_are_the_default_elsewhere_and_carry_the_request_id_too():
    result = _run_django(LOG_A_LINE, "config.settings.base")
    assert result.returncode == 0, result.stderr
    assert "LOG_FORMAT=text" in result.stdout
    assert " INFO loom.test [-] outside a request" in result.stderr
    assert " WARNING loom.test [0f8fad5bd9cb469fa16570867728950e] inside a request" in result.stderr


def test_an_unknown_log_format_is_refused_at_start():
    result = _run_django("", "config.settings.base", LOG_FORMAT="xml")
    assert result.returncode != 0 and "LOG_FORMAT" in result.stderr
    with pytest.raises(ValueError, match="LOG_FORMAT"):
        logging_config("xml", "INFO")
    assert set(FORMATS) == {"json", "text"}


@pytest.mark.django_db
def test_every_answer_carries_a_request_id_and_a_sane_one_from_the_caller_is_kept(client):
    made = client.get("/healthz")["X-Request-ID"]
    assert uuid.UUID(made).hex == made
    assert client.get("/healthz")["X-Request-ID"] != made
    given = uuid.uuid4().hex
    assert client.get("/healthz", HTTP_X_REQUEST_ID=given)["X-Request-ID"] == given
    # with dashes, as most proxies write them
    dashed = str(uuid.uuid4())
    assert client.get("/healthz", HTTP_X_REQUEST_ID=dashed)["X-Request-ID"] == dashed
    # anything else (log injection, an overlong header) is replaced
    for hostile in ("abc\ndef", "x" * 500, "<script>", "1234"):
        answered = client.get("/api/v1/me", HTTP_X_REQUEST_ID=hostile)["X-Request-ID"]
        assert answered != hostile and uuid.UUID(answered).hex == answered


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := predicate():
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_request_id_of_an_api_call_reaches_the_worker_that_runs_its_job(cast, key_for, generation_worker):
    # given: Acme's key, and a request id of the caller's
    client, _, _ = key_for("write")
    request_id = uuid.uuid4().hex
    body = {"project": str(cast.project.pk), "template": "email-subject-lines", "inputs": {"topic": "linen"},
            "num_variants": 1, "max_new_tokens": 12, "seed": 3}
    # when: a job is submitted with it and runs on a real worker
    response = client.post("/api/v1/jobs/", body, format="json", HTTP_X_REQUEST_ID=request_id)
    assert response.status_code == 201, response.json()
    assert response["X-Request-ID"] == request_id
    job_id = response.json()["id"]
    _wait_for(lambda: GenerationJob.objects.filter(pk=job_id, finished_at__isnull=False).exists(), 180, "the job")

    # then: the worker's log says, under that id, that it started and ended the job's task
    def lines() -> list[str]:
        tagged = [line for line in generation_worker.log_path.read_text(errors="replace").splitlines()
                  if f"[{request_id}]" in line and job_id in line]
        return tagged if any(" ended " in line for line in tagged) else []

    tagged = _wait_for(lines, 30, f"log lines with request id {request_id}")
    assert any("task generation.run_job started" in line for line in tagged), tagged
    assert any("task generation.run_job ended" in line and "SUCCESS" in line for line in tagged), tagged
    # and another request's id is not on them
    other = client.get(f"/api/v1/jobs/{job_id}/")["X-Request-ID"]
    assert other != request_id and other not in generation_worker.log_path.read_text(errors="replace")
