"""Writes of brand models: start and cancel a training run, activate (roll back, deactivate), delete and
export an adapter. Each takes the caller's organization and refuses another's project or adapter as
not found; each write is one transaction with its audit row.

Activation rule: a project only switches to an adapter that beat the base model on its held-out split
(``BrandAdapter.beats_base``), unless the marketer insists (``insist=True``). One adapter is active per
project: the switch locks the project's adapters (``select_for_update``) and the database's partial
unique constraint holds it under any concurrency.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext

from audit.services import record
from billing import services as billing
from core.errors import Conflict, InvalidInput, NotFound
from finetune import dataset, dispatch, storage, training
from finetune.models import TrainingRun
from generation import registry
from generation.models import BrandAdapter, JobStatus, ProjectGenerationSettings, ServingModel

if TYPE_CHECKING:
    from apikeys.models import ApiKey
    from organizations.models import Organization
    from projects.models import Project


def _own_project(organization: Organization, project: Project) -> None:
    if project.organization_id != organization.pk:
        raise NotFound(gettext("Project not found."), code="project_not_found")


def _own_adapter(organization: Organization, adapter: BrandAdapter) -> None:
    if adapter.organization_id != organization.pk:
        raise NotFound(gettext("Brand model not found."), code="adapter_not_found")


def _user(actor: Any) -> Any:
    return actor if getattr(actor, "pk", None) else None


def preview(*, organization: Organization, project: Project) -> dataset.Dataset:
    _own_project(organization, project)
    return dataset.build(project)


def too_little_data(built: dataset.Dataset) -> InvalidInput:
    detail = gettext(
        "Too little training data: %(have)s distinct examples (%(train)s to train on after holding out "
        "%(heldout)s for the evaluation); a brand model needs %(minimum)s to train on. Approve %(needed)s "
        "more variants or add as many brand example texts."
    ) % {
        "have": len(built.train) + len(built.heldout),
        "train": len(built.train),
        "heldout": len(built.heldout),
        "minimum": training.minimum_examples(),
        "needed": built.needed,
    }
    return InvalidInput(detail, code="too_little_data", fields={"examples": [f"{built.needed} more needed"]})


def base_model(organization: Organization, project: Project) -> ServingModel:
    """The model a run trains on: the project's default model when the organization may use it, else the
    installation's default (the bundled model here)."""
    chosen = ProjectGenerationSettings.objects.filter(project=project).values_list("default_model_id", flat=True)
    pk = chosen.first()
    if pk is not None:
        found = registry.usable_models(organization).filter(pk=pk).first()
        if found is not None:
            return found
    return registry.default_model()


def start_training_run(
    *,
    organization: Organization,
    project: Project,
    actor: Any = None,
    api_key: ApiKey | None = None,
    config: Any = None,
) -> TrainingRun:
    """Queue a run on the project's data; one at a time per project (409 while one is queued or running)."""
    _own_project(organization, project)
    if config is not None and not isinstance(config, dict):
        raise InvalidInput(gettext("config must be an object."), code="invalid_config", fields={"config": ["object"]})
    try:
        train_config = training.TrainConfig.from_dict(config or {})
    except ValueError as exc:
        raise InvalidInput(str(exc), code="invalid_config", fields={"config": [str(exc)]}) from exc
    with transaction.atomic():
        type(project).objects.select_for_update().filter(pk=project.pk).first()
        busy = TrainingRun.objects.filter(project=project, status__in=[JobStatus.QUEUED, JobStatus.RUNNING]).first()
        if busy is not None:
            raise Conflict(
                gettext("A brand model of this project is already training (%(pk)s); wait for it or cancel it.")
                % {"pk": busy.pk},
                code="training_already_running",
            )
        # Training is billed in compute seconds, not tokens: only a suspended plan (402) or a hard cap already
        # spent is refused here, as for other work that holds no tokens.
        billing.check_allowance(organization=organization, tokens=0, what=gettext("Training a brand model"))
        built = dataset.build(project)
        if not built.enough:
            raise too_little_data(built)
        run = TrainingRun.objects.create(
            organization=organization,
            project=project,
            serving_model=base_model(organization, project),
            config=train_config.to_dict(),
            dataset=built.summary(),
            created_by=_user(actor),
            api_key=api_key,
        )
        record("finetune.run_started", organization=organization, actor=actor, api_key=api_key, target=run)
        # A broker that is down leaves the run queued for the reconciler (dispatch.enqueue).
        transaction.on_commit(lambda: dispatch.enqueue(run.pk))
    return run


def cancel_training_run(*, organization: Organization, run: TrainingRun, actor: Any = None) -> TrainingRun:
    """A queued run is canceled at once; a running one stops at its next step (the worker makes it final)."""
    if run.organization_id != organization.pk:
        raise NotFound(gettext("Training run not found."), code="run_not_found")
    with transaction.atomic():
        locked = TrainingRun.objects.select_for_update().get(pk=run.pk)
        if locked.is_final:
            raise Conflict(
                gettext("This run already ended (%(status)s).") % {"status": locked.status}, code="run_final"
            )
        now = timezone.now()
        locked.cancel_requested_at = locked.cancel_requested_at or now
        fields = ["cancel_requested_at"]
        if locked.status == JobStatus.QUEUED:
            locked.status = JobStatus.CANCELED
            locked.failure_reason = gettext("Canceled before it started.")
            locked.finished_at = now
            fields += ["status", "failure_reason", "finished_at"]
        locked.save(update_fields=fields)
        record("finetune.run_canceled", organization=organization, actor=actor, target=locked)
    return locked


def _switch(
    organization: Organization, adapter: BrandAdapter | None, project: Project, actor: Any, action: str
) -> None:
    """Make ``adapter`` (or none) the project's active one, with every adapter of the project locked."""
    list(BrandAdapter.objects.select_for_update().filter(project=project).values_list("pk", flat=True))
    BrandAdapter.objects.filter(project=project, is_active=True).exclude(pk=adapter.pk if adapter else None).update(
        is_active=False
    )
    if adapter is not None:
        BrandAdapter.objects.filter(pk=adapter.pk).update(is_active=True, activated_at=timezone.now())
    record(
        action,
        organization=organization,
        actor=actor,
        target=adapter or project,
        version=adapter.version if adapter else None,
    )


def activate_adapter(
    *, organization: Organization, adapter: BrandAdapter, actor: Any = None, insist: bool = False
) -> BrandAdapter:
    """Make the adapter the project's active one; refused (409) if it did not beat the base model, unless ``insist``."""
    _own_adapter(organization, adapter)
    if not isinstance(insist, bool):
        raise InvalidInput(gettext("insist must be true or false."), fields={"insist": ["boolean"]})
    if not adapter.beats_base and not insist:
        raise Conflict(
            gettext(
                "Brand model v%(version)s did not beat the base model on the held-out copy; activate it anyway "
                "with insist."
            )
            % {"version": adapter.version},
            code="adapter_not_better",
        )
    with transaction.atomic():
        _switch(organization, adapter, adapter.project, actor, "finetune.adapter_activated")
    adapter.refresh_from_db()
    return adapter


def rollback_adapter(
    *, organization: Organization, project: Project, actor: Any = None, insist: bool = False
) -> BrandAdapter:
    """Activate the newest version older than the active one (the same rule as activating it)."""
    _own_project(organization, project)
    active = BrandAdapter.objects.filter(project=project, is_active=True).first()
    if active is None:
        raise Conflict(gettext("No brand model is active: there is nothing to roll back."), code="no_active_adapter")
    older = BrandAdapter.objects.filter(project=project, version__lt=active.version).order_by("-version").first()
    if older is None:
        raise Conflict(
            gettext("Brand model v%(version)s is the oldest version; deactivate it to use the base model.")
            % {"version": active.version},
            code="no_older_adapter",
        )
    return activate_adapter(organization=organization, adapter=older, actor=actor, insist=insist)


def deactivate_adapter(*, organization: Organization, project: Project, actor: Any = None) -> None:
    """The project's new jobs run on the base model (jobs already submitted keep their adapter)."""
    _own_project(organization, project)
    with transaction.atomic():
        _switch(organization, None, project, actor, "finetune.adapter_deactivated")


def delete_adapter(*, organization: Organization, adapter: BrandAdapter, actor: Any = None) -> None:
    """Remove the adapter and its files once the deletion commits. Jobs pinned to it keep their rows."""
    _own_adapter(organization, adapter)
    with transaction.atomic():
        locked = BrandAdapter.objects.select_for_update().get(pk=adapter.pk)
        record(
            "finetune.adapter_deleted",
            organization=organization,
            actor=actor,
            target=locked.project,
            version=locked.version,
        )
        locked.delete()
        transaction.on_commit(lambda: storage.delete_adapter_files(locked))


def export_adapter(*, organization: Organization, adapter: BrandAdapter) -> tuple[str, bytes]:
    """(file name, zip bytes): the adapter's safetensors, its config and a README model card."""
    _own_adapter(organization, adapter)
    try:
        data = storage.export_zip(adapter)
    except FileNotFoundError as exc:
        raise Conflict(
            gettext("The files of brand model v%(version)s are gone (%(missing)s).")
            % {"version": adapter.version, "missing": exc},
            code="adapter_files_missing",
        ) from exc
    return f"{adapter.project.slug}-brand-model-v{adapter.version}.zip", data
