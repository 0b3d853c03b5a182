"""Liveness and readiness probes for load balancers and orchestrators."""

from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from workers.heartbeat import live_workers


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """The process is up and serving; touches nothing else."""
    return JsonResponse({"status": "ok"})


def _check_database() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # any driver error means "not ready"
        return f"database unreachable: {type(exc).__name__}"
    return None


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """Ready when the database and Redis answer and at least one worker sent a heartbeat."""
    checks: dict[str, str] = {}
    db_error = _check_database()
    checks["database"] = db_error or "ok"
    try:
        workers = live_workers()
        checks["redis"] = "ok"
        checks["workers"] = f"{len(workers)} live" if workers else "no live worker"
    except Exception as exc:
        checks["redis"] = f"redis unreachable: {type(exc).__name__}"
        checks["workers"] = "unknown"
        workers = []
    ready = db_error is None and checks["redis"] == "ok" and bool(workers)
    return JsonResponse(
        {"status": "ready" if ready else "not ready", "checks": checks, "workers": sorted(workers)},
        status=200 if ready else 503,
    )
