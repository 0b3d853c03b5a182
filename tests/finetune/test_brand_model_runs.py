"""Training runs of brand models: the data, the refusals, the worker (a fake training, the app is what is
tested here: the ML is tests/finetune/test_training*.py), resume after a lost worker, billing once."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from billing.models import LedgerEntry
from finetune import dataset, dispatch, evaluation, execution, services, storage, training
from finetune.models import TrainingRun
from generation.models import BrandAdapter, BrandVoice, JobStatus
from tests.support.finetune_factories import BrandAdapterFactory, write_adapter_files
from tests.support.generation_factories import VariantFactory

#: The worker's own wrapper around ``finetune.evaluation.evaluate`` (the ``fake`` fixture replaces it).
REAL_EVALUATE = execution.evaluate


class WorkerKilled(BaseException):
    """Stands in for SIGKILL: nothing in the worker catches it, the run keeps its lease."""


@pytest.fixture(autouse=True)
def adapter_root(settings, tmp_path):
    settings.BRAND_ADAPTER_ROOT = tmp_path / "adapters"
    return settings.BRAND_ADAPTER_ROOT


@pytest.fixture
def enqueued(monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(dispatch, "enqueue", lambda run_id: calls.append(str(run_id)) or True)
    return calls


def _brand_texts(project, count: int) -> BrandVoice:
    texts = [f"Fernhollow socks number {i}: soft as moss, tough as roots." for i in range(count)]
    return BrandVoice.objects.create(project=project, tone="warm", example_texts=texts)


class FakeTraining:
    """``training.train`` with its contract (checkpoints, resume, progress, should_stop) and no model:
    one checkpoint per step as a file; ``die_after`` raises WorkerKilled after that step, once."""

    def __init__(self, total_steps: int = 6, die_after: int | None = None, cancel_after: int | None = None):
        self.total_steps, self.die_after, self.cancel_after = total_steps, die_after, cancel_after
        self.calls: list[dict] = []

    def __call__(self, base, examples, config=None, *, output_dir, checkpoint_dir, on_progress=None, should_stop=None):
        checkpoint_dir, output_dir = Path(checkpoint_dir), Path(output_dir)
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        done = sorted(int(p.name.removeprefix("step-")) for p in checkpoint_dir.glob("step-*"))
        step = done[-1] if done else 0
        self.calls.append({"resumed_from": step, "examples": len(examples), "config": config})
        while step < self.total_steps:
            if should_stop is not None and should_stop():
                raise training.Canceled(f"training canceled at step {step} of {self.total_steps}")
            step += 1
            (checkpoint_dir / f"step-{step}").mkdir()
            if on_progress:
                on_progress(
                    {
                        "step": step,
                        "total_steps": self.total_steps,
                        "epoch": 1,
                        "loss": 3.0 / step,
                        "seconds": float(step),
                    }
                )
            if self.die_after == step:
                self.die_after = None
                raise WorkerKilled
            if self.cancel_after == step:
                TrainingRun.objects.update(cancel_requested_at=timezone.now())
        write_adapter_files(output_dir)
        return training.TrainResult(
            output_dir=output_dir,
            steps=step,
            total_steps=self.total_steps,
            epochs=1,
            final_loss=0.5,
            losses=[],
            seconds=float(step),
            resumed_from_step=done[-1] if done else 0,
            examples=len(examples),
        )


def _evaluation(beats: bool):
    """``finetune.evaluation.evaluate``'s answer, without a model."""
    return lambda run, adapter_dir, heldout: {
        "perplexity": {"base": 20.0, "adapter": 12.0 if beats else 25.0, "ratio": 0.6 if beats else 1.25},
        "constraint_pass_rate": {"base": 0.9, "adapter": 0.9},
        "brand_fit": {"base": 0.5, "adapter": 0.6, "gain": 0.1},
        "samples": [{"brief": heldout[0].user, "reference": heldout[0].assistant, "base": "b", "adapter": "a"}],
        "heldout_examples": len(heldout),
        "beats_base": beats,
    }


@pytest.fixture
def fake(monkeypatch):
    fake = FakeTraining()
    monkeypatch.setattr(training, "train", fake)
    monkeypatch.setattr(execution, "evaluate", _evaluation(True))
    monkeypatch.setattr(execution, "POLL_S", 0.0)
    return fake


def _start(cast, django_capture_on_commit_callbacks, **kwargs) -> TrainingRun:
    with django_capture_on_commit_callbacks(execute=True):
        return services.start_training_run(organization=cast.org, project=cast.project, actor=cast.editor, **kwargs)


def _charges(run) -> int:
    return LedgerEntry.objects.filter(reference=f"training:{run.pk}").count()


# --- data ------------------------------------------------------------------------------------------


def test_dataset_uses_edited_approved_copy_voice_examples_and_holds_out_the_newest(cast):
    # given: an approved variant whose copy the marketer edited, an unapproved one, brand example texts
    _brand_texts(cast.project, 20)
    edited = VariantFactory(
        job__project=cast.project,
        approved=True,
        approved_at=timezone.now() + timedelta(minutes=1),
        text="Model's words.",
        edited_text="The marketer's words.",
    )
    VariantFactory(job__project=cast.project, approved=False, text="Never approved.")
    # when
    built = dataset.build(cast.project)
    # then
    copies = [e.assistant for e in built.train + built.heldout]
    assert "The marketer's words." in copies and "Model's words." not in copies and "Never approved." not in copies
    assert built.by_source == {"approved_variants": 1, "brand_examples": 20, "experiment_winners": 0}
    assert len(built.heldout) >= 0.1 * 21 and built.heldout[-1].assistant == "The marketer's words."  # the newest
    approved = next(e for e in built.heldout if e.assistant == "The marketer's words.")
    assert "Tulip bulbs" in approved.user and "Brand voice:" in approved.system
    assert edited.job.template_version.system_prompt in approved.system


def test_duplicates_are_dropped_and_counted(cast):
    BrandVoice.objects.create(project=cast.project, example_texts=["Same words."] * 5 + ["Other words."])

    built = dataset.build(cast.project)

    assert built.duplicates == 4
    assert len(built.train) + len(built.heldout) == 2


def test_too_little_data_is_refused_saying_how_many_more(cast, enqueued, django_capture_on_commit_callbacks):
    # given: 30 distinct texts; 45 are needed (40 to train on, the newest 5 held out)
    _brand_texts(cast.project, 30)
    # when / then
    with pytest.raises(services.InvalidInput) as refused:
        _start(cast, django_capture_on_commit_callbacks)
    assert refused.value.code == "too_little_data"
    assert "15 more" in refused.value.detail
    assert TrainingRun.objects.count() == 0 and enqueued == []


def test_api_refuses_too_little_data_and_bad_config_with_400(cast, client_for):
    _brand_texts(cast.project, 44)
    client = client_for(cast.editor)
    url = f"/api/v1/projects/{cast.project.pk}/training-runs/"

    little = client.post(url, {}, format="json")
    bad = client.post(url, {"config": {"rank": 0, "colour": "blue"}}, format="json")

    assert little.status_code == 400 and little.json()["code"] == "too_little_data"
    assert "1 more" in little.json()["detail"]
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_config"
    assert "rank" in bad.json()["detail"] and "colour" in bad.json()["detail"]
    assert TrainingRun.objects.count() == 0


def test_preview_shows_counts_split_and_examples(cast, client_for):
    _brand_texts(cast.project, 50)

    body = client_for(cast.viewer).get(f"/api/v1/projects/{cast.project.pk}/training-data/").json()

    assert body["by_source"]["brand_examples"] == 50
    assert (body["train"], body["heldout"], body["enough"], body["needed"]) == (45, 5, True, 0)
    assert len(body["examples"]) == 3 and body["examples"][0]["assistant"].startswith("Fernhollow")


# --- runs ------------------------------------------------------------------------------------------


def test_run_trains_stores_the_next_version_and_bills_once(cast, fake, enqueued, django_capture_on_commit_callbacks):
    _brand_texts(cast.project, 50)
    BrandAdapterFactory(project=cast.project, version=1, beats_base=True, is_active=True)
    run = _start(cast, django_capture_on_commit_callbacks, config={"epochs": 1})
    assert enqueued == [str(run.pk)]

    with django_capture_on_commit_callbacks(execute=True):
        done = execution.run_training(run.pk)

    assert done.status == JobStatus.SUCCEEDED
    adapter = done.adapter
    assert adapter.version == 2 and adapter.beats_base and adapter.evaluation["heldout_examples"] == 5
    assert not adapter.is_active  # the project has an active one: switching is the marketer's decision
    assert (storage.adapter_folder(adapter) / "adapter_model.safetensors").is_file()
    assert not storage.run_folder(done).exists()
    assert done.progress["step"] == 6 and len(done.progress["points"]) == 6
    assert _charges(done) == 1
    assert LedgerEntry.objects.get(reference=f"training:{run.pk}").compute_seconds == done.compute_seconds
    assert fake.calls[0]["config"].epochs == 1 and fake.calls[0]["examples"] == 45


def test_first_adapter_that_beats_base_goes_live(cast, fake, enqueued, django_capture_on_commit_callbacks):
    _brand_texts(cast.project, 50)
    run = _start(cast, django_capture_on_commit_callbacks)

    done = execution.run_training(run.pk)

    assert done.adapter.version == 1 and done.adapter.is_active


def test_worker_killed_mid_training_resumes_from_checkpoint_and_bills_once(
    cast, fake, enqueued, settings, django_capture_on_commit_callbacks
):
    # given: a run whose worker dies after step 4 of 6
    _brand_texts(cast.project, 50)
    fake.die_after = 4
    run = _start(cast, django_capture_on_commit_callbacks)
    with pytest.raises(WorkerKilled):
        execution.run_training(run.pk)
    run.refresh_from_db()
    assert run.status == JobStatus.RUNNING and run.progress["step"] == 4 and _charges(run) == 0
    # when: its lease expires, the reconciler re-queues it and another worker takes it
    TrainingRun.objects.filter(pk=run.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    enqueued.clear()
    assert execution.reconcile() == [str(run.pk)] and enqueued == [str(run.pk)]
    with django_capture_on_commit_callbacks(execute=True):
        done = execution.run_training(run.pk)
    again = execution.run_training(run.pk)  # the task delivered once more: nothing to do
    # then: resumed at step 4, one adapter, one charge
    assert [call["resumed_from"] for call in fake.calls] == [0, 4]
    assert fake.calls[0]["examples"] == fake.calls[1]["examples"]
    assert done.status == JobStatus.SUCCEEDED and done.attempts == 2 and again is None
    assert BrandAdapter.objects.filter(project=cast.project).count() == 1
    assert _charges(run) == 1
    assert [p[0] for p in done.progress["points"]] == [1, 2, 3, 4, 5, 6]


def test_run_that_keeps_losing_its_worker_fails_with_reason_and_charges_nothing(
    cast, fake, enqueued, settings, django_capture_on_commit_callbacks
):
    settings.TRAINING_MAX_ATTEMPTS = 1
    _brand_texts(cast.project, 50)
    fake.die_after = 2
    run = _start(cast, django_capture_on_commit_callbacks)
    with pytest.raises(WorkerKilled):
        execution.run_training(run.pk)
    TrainingRun.objects.filter(pk=run.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))

    assert execution.run_training(run.pk) is None

    run.refresh_from_db()
    assert run.status == JobStatus.FAILED and "worker was lost" in run.failure_reason
    assert _charges(run) == 0 and not BrandAdapter.objects.exists()


def test_training_error_fails_the_run_with_reason_and_charges_nothing(
    cast, monkeypatch, enqueued, django_capture_on_commit_callbacks
):
    _brand_texts(cast.project, 50)

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(training, "train", broken)
    run = _start(cast, django_capture_on_commit_callbacks)

    done = execution.run_training(run.pk)

    assert done.status == JobStatus.FAILED and "out of memory" in done.failure_reason
    assert _charges(done) == 0 and not BrandAdapter.objects.exists()
    assert not storage.run_folder(done).exists()


def test_cancel_stops_a_running_run_without_charge(cast, fake, enqueued, django_capture_on_commit_callbacks):
    _brand_texts(cast.project, 50)
    fake.cancel_after = 2
    run = _start(cast, django_capture_on_commit_callbacks)

    done = execution.run_training(run.pk)

    assert done.status == JobStatus.CANCELED and "canceled at step 2" in done.failure_reason
    assert _charges(done) == 0 and not BrandAdapter.objects.exists()


def test_cancel_of_a_queued_run_is_final_at_once_and_never_trains(
    cast, fake, client_for, enqueued, django_capture_on_commit_callbacks
):
    _brand_texts(cast.project, 50)
    run = _start(cast, django_capture_on_commit_callbacks)

    response = client_for(cast.editor).post(f"/api/v1/training-runs/{run.pk}/cancel/")
    again = client_for(cast.editor).post(f"/api/v1/training-runs/{run.pk}/cancel/")

    assert response.status_code == 200 and response.json()["status"] == "canceled"
    assert again.status_code == 409
    assert execution.run_training(run.pk) is None and fake.calls == []


def test_one_run_at_a_time_per_project(cast, fake, enqueued, django_capture_on_commit_callbacks):
    _brand_texts(cast.project, 50)
    _start(cast, django_capture_on_commit_callbacks)

    with pytest.raises(services.Conflict):
        _start(cast, django_capture_on_commit_callbacks)


def test_frozen_data_is_what_a_resumed_attempt_trains_on(cast, fake, enqueued, django_capture_on_commit_callbacks):
    _brand_texts(cast.project, 50)
    run = _start(cast, django_capture_on_commit_callbacks)
    first, _ = execution.frozen_examples(run)
    BrandVoice.objects.filter(project=cast.project).update(example_texts=["changed"] * 3)

    second, _ = execution.frozen_examples(run)

    assert first == second
    assert json.loads((storage.run_folder(run) / "data.json").read_text())["train"][0]["assistant"]


def test_evaluation_gets_the_voice_the_training_copy_and_each_held_out_briefs_constraints(
    cast, fake, monkeypatch, enqueued, django_capture_on_commit_callbacks
):
    # given: the newest example is an approved variant of a template with a length limit
    _brand_texts(cast.project, 50)
    variant = VariantFactory(
        job__project=cast.project,
        approved=True,
        approved_at=timezone.now() + timedelta(minutes=1),
        text="Newest approved copy.",
    )
    variant.job.template_version.constraints = {"max_chars": 120}
    variant.job.template_version.save()
    seen = {}

    def evaluate(base, adapter_dir, heldout, **kwargs):
        seen.update(kwargs, heldout=heldout, adapter_dir=Path(adapter_dir))
        return {"perplexity": {"base": 2.0, "adapter": 1.0}, "beats_base": True}

    monkeypatch.setattr(execution, "evaluate", REAL_EVALUATE)
    monkeypatch.setattr(evaluation, "evaluate", evaluate)
    run = _start(cast, django_capture_on_commit_callbacks)
    # when
    done = execution.run_training(run.pk)
    # then
    assert done.status == JobStatus.SUCCEEDED
    assert seen["heldout"][-1].assistant == "Newest approved copy."
    assert seen["constraints"][-1] == {"max_chars": 120} and seen["constraints"][0] == {}
    assert seen["voice"].tone == "warm" and len(seen["approved"]) == 45


def test_training_task_runs_on_its_own_queue_with_a_worker_for_it():
    from finetune import tasks
    from srcroot import REPO_ROOT
    from workers.celery import QUEUES, app

    assert tasks.run_training.queue == dispatch.QUEUE == "training" and "training" in QUEUES
    assert app.conf.task_routes[dispatch.RUN_TRAINING] == {"queue": "training"}
    assert app.conf.beat_schedule["reconcile-training-runs"]["task"] == "finetune.reconcile"
    procfile = (REPO_ROOT / "Procfile").read_text()
    worker = next(line for line in procfile.splitlines() if line.startswith("training:"))
    assert "--queues training" in worker and "--concurrency 1" in worker
