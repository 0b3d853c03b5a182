"""Liveness and readiness probes for load balancers and orchestrators."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from generation import registry
from generation.models import ServingModel
from workers.heartbeat import READY, heartbeats, queue_status


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
    """Ready when the database and Redis answer and every queue in READY_QUEUES has a ready worker.

    A worker is live from its first heartbeat but ready for the generation queue only once its
    model is loaded; until then a job sent would just wait, so the deployment is not ready.
    ``queues`` reports each expected queue (and any other a live worker consumes).

    ``models`` reports whether each active model's server answers (cached a few seconds, see
    ``generation.registry.reachability``). It does not decide readiness: a model server that is down
    is not cured by taking this web server out of the load balancer, and jobs on other models still run.
    """
    checks: dict[str, str] = {}
    db_error = _check_database()
    checks["database"] = db_error or "ok"
    expected = list(settings.READY_QUEUES)
    try:
        beats = heartbeats()
        workers = [beat["hostname"] for beat in beats]
        beating = {queue for beat in beats for queue in beat.get("queues", [])}
        queues = queue_status([*expected, *sorted(beating - set(expected))], beats)
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"redis unreachable: {type(exc).__name__}"
        checks["workers"] = "unknown"
        workers, queues = [], {}
    else:
        checks["workers"] = _workers_check(workers, {queue: queues[queue] for queue in expected})
    ready = db_error is None and checks["redis"] == "ok" and all(queues[q]["state"] == READY for q in expected)
    body = {"status": "ready" if ready else "not ready", "checks": checks, "workers": sorted(workers), "queues": queues}
    body["models"] = _models() if db_error is None else {}
    return JsonResponse(body, status=200 if ready else 503)


def _models() -> dict[str, dict[str, Any]]:
    """Each active model's reachability, by slug."""
    models = list(ServingModel.objects.filter(is_active=True).order_by("slug"))
    found = registry.reachability(models)
    return {
        model.slug: {
            "backend": model.backend_kind,
            "reachable": found[model.slug].reachable,
            "detail": found[model.slug].detail,
        }
        for model in models
    }


def _workers_check(workers: list[str], expected: dict[str, dict[str, Any]]) -> str:
    if not workers:
        return "no live worker"
    waiting = [f"{queue}: {status['state'].replace('_', ' ')}" for queue, status in expected.items()
               if status["state"] != READY]
    return f"{len(workers)} live" + (f"; not ready: {', '.join(waiting)}" if waiting else "")
