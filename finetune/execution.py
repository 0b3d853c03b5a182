"""What the training worker does with a run: claim it, train (resuming from its checkpoint), evaluate,
store the adapter as the project's next version, bill. No Celery here.

Safe to run twice, and after a worker died: the lease lets one worker through (``finetune.lifecycle``),
the training data is frozen in the run's folder at its first attempt, so a later attempt trains on the
same examples and ``finetune.training.train`` resumes from the newest checkpoint. The adapter, the final
state and the compute charge (keyed by the run) are written in one transaction: exactly once.

A failed or canceled run charges nothing: compute is billed with the adapter it produced.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict
from decimal import Decimal
from pathlib import Path
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from core.jobs import with_db_retry
from finetune import dataset, lifecycle, metering, storage, training
from finetune.models import TrainingRun
from finetune.training import Example
from generation.models import BrandAdapter, BrandVoice, JobStatus
from projects.models import Project

logger = logging.getLogger(__name__)

#: Seconds between two looks at the database for a cancellation, and between two progress writes.
POLL_S = 2.0
#: Loss points kept for the curve; beyond it every other point is dropped (the curve keeps its shape).
MAX_POINTS = 500


def run_training(run_id: Any) -> TrainingRun | None:
    """Claim, train, evaluate and store one run; returns it in its final state, or None if there was nothing to do."""
    run = with_db_retry(lifecycle.runs.claim, run_id)
    if run is None:
        return None
    try:
        with lifecycle.runs.keep_alive(run.pk):
            train_set, heldout = frozen_examples(run)
            result = training.train(
                base_source(run),
                train_set,
                training.TrainConfig.from_dict(run.config),
                output_dir=storage.run_output_folder(run),
                checkpoint_dir=storage.checkpoint_folder(run),
                on_progress=ProgressWriter(run.pk),
                should_stop=CancelWatch(run.pk),
            )
            started = time.monotonic()
            report = evaluate(run, result.output_dir, heldout)
            seconds = float(result.seconds) + (time.monotonic() - started)
            return store(run, result, report, seconds=seconds, examples=len(train_set))
    except training.Canceled as exc:
        return with_db_retry(finish_canceled, run.pk, str(exc))
    except training.TooLittleData as exc:
        reason = str(exc)
    except SoftTimeLimitExceeded:
        reason = f"Stopped at the time limit ({settings.CELERY_TASK_TIME_LIMIT_S} s) before it finished."
    except Exception as exc:  # storing or billing too: whatever happens, the run ends with a reason
        logger.exception("training run %s failed", run.pk)
        reason = f"Training failed: {type(exc).__name__}: {exc}"
    failed = with_db_retry(lifecycle.runs.fail_unless_final, run.pk, reason)
    if failed.status == JobStatus.FAILED:
        storage.delete_run_files(failed)
    return failed


# --- the work ------------------------------------------------------------------------------------


def base_source(run: TrainingRun) -> str | None:
    """What ``training.train`` loads: None for the installation's own model (its GGUF and device), else
    the serving model's name (a hub id or a folder)."""
    from workers.runtime import ModelSpec  # loads torch-free settings only; kept out of the web's imports

    model = run.serving_model.model
    # An empty name is the installation's model (the registry's default entry); so is its own name.
    return None if not model or model == ModelSpec.from_settings().model else model


def frozen_examples(run: TrainingRun) -> tuple[list[Example], list[Example]]:
    """The run's (train, held-out) examples: built at its first attempt and kept in its folder, so an
    attempt after a lost worker trains on the very data its checkpoint was made for."""
    data = frozen_data(run)
    return [Example(**e) for e in data["train"]], [Example(**e) for e in data["heldout"]]


def frozen_data(run: TrainingRun) -> dict[str, Any]:
    path = storage.run_folder(run) / "data.json"
    if path.is_file():
        return dict(json.loads(path.read_text()))
    built = dataset.build(run.project)
    training.check_enough(len(built.train))
    data = {
        "train": [asdict(e) for e in built.train],
        "heldout": [asdict(e) for e in built.heldout],
        "heldout_constraints": built.heldout_constraints,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)
    return data


def evaluate(run: TrainingRun, adapter_dir: Path, heldout: list[Example]) -> dict[str, Any]:
    """Base model vs adapter on the held-out split (``finetune.evaluation.evaluate``): perplexity, the
    held-out briefs' copy checked against their templates' constraints and scored for brand fit."""
    # Loads the evaluation's ML dependencies (torch, peft) only in the training worker.
    from finetune import evaluation

    data = frozen_data(run)
    return dict(
        evaluation.evaluate(
            base_source(run),
            adapter_dir,
            heldout,
            voice=BrandVoice.objects.filter(project_id=run.project_id).first(),
            approved=[e["assistant"] for e in data["train"]],
            constraints=data.get("heldout_constraints") or None,
        )
    )


class ProgressWriter:
    """``on_progress``: the loss curve and the step, written at most every POLL_S (and on the last step)."""

    def __init__(self, run_id: Any) -> None:
        self.run_id = run_id
        self.points: list[list[float]] = []
        self.written = 0.0

    def __call__(self, event: dict[str, Any]) -> None:
        self.points.append([int(event["step"]), float(event["loss"])])
        if len(self.points) > MAX_POINTS:
            self.points = self.points[::2]
        now = time.monotonic()
        if now - self.written < POLL_S and event["step"] < event["total_steps"]:
            return
        self.written = now
        progress = {key: event.get(key) for key in ("step", "total_steps", "epoch", "loss", "seconds")}
        # A resumed attempt carries on the curve its earlier attempts drew.
        earlier = TrainingRun.objects.filter(pk=self.run_id).values_list("progress", flat=True).first() or {}
        points = [p for p in earlier.get("points", []) if p[0] < self.points[0][0]] + self.points
        progress["points"] = points[-MAX_POINTS:]
        TrainingRun.objects.filter(pk=self.run_id, status=JobStatus.RUNNING).update(
            progress=progress, updated_at=timezone.now()
        )


class CancelWatch:
    """``should_stop``: whether someone asked to cancel the run, looked up at most every POLL_S."""

    def __init__(self, run_id: Any) -> None:
        self.run_id = run_id
        self.checked = 0.0
        self.canceled = False

    def __call__(self) -> bool:
        now = time.monotonic()
        if not self.canceled and now - self.checked >= POLL_S:
            self.checked = now
            self.canceled = TrainingRun.objects.filter(pk=self.run_id, cancel_requested_at__isnull=False).exists()
        return self.canceled


def finish_canceled(run_id: Any, reason: str) -> TrainingRun:
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().get(pk=run_id)
        if not run.is_final:
            run.status = JobStatus.CANCELED
            run.failure_reason = reason[:2000]
            run.finished_at = timezone.now()
            run.lease_expires_at = None
            run.save(update_fields=["status", "failure_reason", "finished_at", "lease_expires_at"])
    storage.delete_run_files(run)
    return run


def auto_activates(project: Project, beats_base: bool) -> bool:
    """A project's first brand model that beat the base model goes live at once; once one is live, the
    switch to a newer one is the marketer's decision (``services.activate_adapter``)."""
    return beats_base and not BrandAdapter.objects.filter(project=project, is_active=True).exists()


def store(
    run: TrainingRun, result: training.TrainResult, report: dict[str, Any], *, seconds: float, examples: int
) -> TrainingRun:
    """The adapter (the project's next version), the final state and the charge: one transaction."""
    with transaction.atomic():
        locked = TrainingRun.objects.select_for_update().select_related("organization", "project").get(pk=run.pk)
        if locked.is_final:
            return locked  # another attempt finished first
        Project.objects.select_for_update().filter(pk=locked.project_id).first()  # versions are numbered in turn
        version = (BrandAdapter.objects.filter(project=locked.project).aggregate(v=Max("version"))["v"] or 0) + 1
        target = storage.root() / storage.adapter_relative_path(locked.project_id, version)
        if target.exists():  # left by a store whose transaction did not commit
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(result.output_dir), str(target))
        beats = bool(report.get("beats_base"))
        now = timezone.now()
        active = auto_activates(locked.project, beats)
        adapter = BrandAdapter.objects.create(
            organization=locked.organization,
            project=locked.project,
            version=version,
            serving_model=locked.serving_model,
            path=storage.adapter_relative_path(locked.project_id, version),
            config={
                **locked.config,
                "examples": examples,
                "heldout": locked.dataset.get("heldout"),
                "steps": result.steps,
                "seconds": round(seconds, 3),
                "final_loss": result.final_loss,
                "device": result.device,
                "run": str(locked.pk),
            },
            evaluation=report,
            beats_base=beats,
            is_active=active,
            activated_at=now if active else None,
            created_by=locked.created_by,
        )
        locked.adapter = adapter
        locked.compute_seconds = Decimal(str(round(seconds, 3)))
        locked.status = JobStatus.SUCCEEDED
        locked.failure_reason = ""
        locked.finished_at = now
        locked.lease_expires_at = None
        locked.save(
            update_fields=["adapter", "compute_seconds", "status", "failure_reason", "finished_at", "lease_expires_at"]
        )
        metering.charge_run(locked, examples=examples)
        # The checkpoints and frozen data served their purpose: the adapter is its own version now.
        transaction.on_commit(lambda: storage.delete_run_files(locked))
    return locked


def reconcile() -> list[str]:
    """Re-enqueue runs whose worker vanished (expired lease) or whose task was lost."""
    return lifecycle.runs.reconcile()
