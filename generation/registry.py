"""The model registry: which serving models exist, which an organization may use, which a job runs on,
and whether each is reachable.

Operators manage ``ServingModel`` rows in the admin. An organization may use every active global model
that is not limited to plans (or is limited to its plan) and the active models private to it. A job runs
on the first of: the model it names, its template's default, its project's default, the global default
(``default_model``). A named model the organization may not use is a 400; a template's or project's
default it may no longer use (a plan change, a model switched off) is passed over for the next one,
so a stale preference never blocks every job of a project.

Reachability comes from ``workers.engines.probe`` and is cached in Redis (``MODEL_PROBE_CACHE_S``), so
pages that show it stay fast and a dead server costs one probe per interval, not one per request: a
stale answer is shown while a background thread asks again, and only a model never probed (or whose
server settings changed) is probed on the request itself.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet

from audit.services import record
from billing import services as billing
from core.errors import InvalidInput
from generation.models import ProjectGenerationSettings, ServingModel, Template
from workers import engines

if TYPE_CHECKING:
    from organizations.models import Organization
    from projects.models import Project

logger = logging.getLogger(__name__)

#: The zero-configuration default (also written by migration 0006): in process on each worker's own
#: ``LOOM_MODEL``. It reads the settings where it runs instead of copying them, so changing
#: ``LOOM_MODEL`` (bundled SmolLM2, a bigger model on GPU workers, ``stub``) needs no registry change.
DEFAULT_MODEL = {
    "slug": "default",
    "name": "Default model",
    "backend_kind": "inprocess",
    "model": "",
    "is_active": True,
    "is_default": True,
}

#: Most probes run at once when a page needs several models' reachability (each waits on the network).
_PROBE_THREADS = 8
#: A cached answer is kept this many intervals: shown while a background probe refreshes it.
_STALE_INTERVALS = 30


# --- which model ------------------------------------------------------------------------------


def default_model() -> ServingModel:
    """The global default model, recreated from ``DEFAULT_MODEL`` if there is none (so a fresh or
    flushed database works with no configuration)."""
    found = ServingModel.objects.filter(is_default=True).first()
    if found is not None:
        return found
    fields = {k: v for k, v in DEFAULT_MODEL.items() if k != "slug"}
    try:
        with transaction.atomic():
            found, _ = ServingModel.objects.get_or_create(slug=DEFAULT_MODEL["slug"], defaults=fields)
    except IntegrityError:  # another request made a default at the same moment
        found = ServingModel.objects.filter(is_default=True).first() or ServingModel.objects.get(
            slug=DEFAULT_MODEL["slug"]
        )
    return found


def usable_models(organization: Organization) -> QuerySet[ServingModel]:
    """The active models the organization may use: global ones open to its plan, and its own."""
    plan = billing.current_plan(organization, subscription=billing.loaded_subscription(organization))
    limits = ServingModel.plans.through.objects.filter(servingmodel_id=OuterRef("pk"))
    open_to_plan = ~Exists(limits) | Exists(limits.filter(plan_id=plan.pk))
    return ServingModel.objects.filter(
        Q(organization=organization) | (Q(organization__isnull=True) & open_to_plan), is_active=True
    )


def model_for_job(
    *, organization: Organization, project: Project, template: Template, requested: str | None = None
) -> ServingModel:
    """The model a job runs on (see the module's docstring for the order); a 400 for a named model
    the organization cannot use, saying why."""
    usable = usable_models(organization)
    if requested:
        found = usable.filter(slug=requested).first()
        if found is None:
            raise _refusal(organization, requested, usable)
        return found
    preferred = [
        template.default_model_id,
        ProjectGenerationSettings.objects.filter(project=project).values_list("default_model_id", flat=True).first(),
    ]
    wanted = [pk for pk in preferred if pk is not None]
    if wanted:
        found_by_pk = {m.pk: m for m in usable.filter(pk__in=wanted)}
        for pk in wanted:
            if pk in found_by_pk:
                return found_by_pk[pk]
    return default_model()


def _refusal(organization: Organization, slug: str, usable: QuerySet[ServingModel]) -> InvalidInput:
    # Another organization's private model is "unknown": the answer must not confirm it exists.
    known = (
        ServingModel.objects.filter(slug=slug)
        .filter(Q(organization__isnull=True) | Q(organization=organization))
        .first()
    )
    if known is None:
        choices = ", ".join(usable.order_by("slug").values_list("slug", flat=True)[:20])
        reason = f"Unknown model {slug!r}; available: {choices or 'none'}."
    elif not known.is_active:
        reason = f"The model {slug!r} is switched off; choose another."
    else:
        plan = billing.current_plan(organization, subscription=billing.loaded_subscription(organization))
        reason = f"The model {slug!r} is not available on the {plan.name} plan."
    return InvalidInput(reason, code="invalid_model", fields={"model": [reason]})


def resolve_usable(organization: Organization, slug: str | None) -> ServingModel | None:
    """The usable model named ``slug`` (None for an empty choice), else a 400 saying why."""
    if not slug:
        return None
    usable = usable_models(organization)
    found = usable.filter(slug=slug).first()
    if found is None:
        raise _refusal(organization, slug, usable)
    return found


# --- a project's choice -----------------------------------------------------------------------


def settings_for(project: Project) -> ProjectGenerationSettings:
    """The project's generation settings, unsaved defaults when it has none yet."""
    found = ProjectGenerationSettings.objects.select_related("default_model").filter(project=project).first()
    return found or ProjectGenerationSettings(project=project)


@transaction.atomic
def save_project_settings(*, actor: Any, project: Project, default_model: str | None) -> ProjectGenerationSettings:
    """Set the model the project's jobs run on by default (a slug it may use; empty: the global default)."""
    model = resolve_usable(project.organization, default_model)
    current, _ = ProjectGenerationSettings.objects.select_for_update().get_or_create(project=project)
    if current.default_model_id != (model.pk if model else None):
        current.default_model = model
        current.save(update_fields=["default_model", "updated_at"])
        record(
            "generation.project_model_changed",
            organization=project.organization,
            actor=actor,
            target=project,
            default_model=model.slug if model else None,
        )
    return current


# --- reachability -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Reachability:
    reachable: bool
    detail: str
    checked_at: float = 0.0


def reachability(models: Iterable[ServingModel]) -> dict[str, Reachability]:
    """Each model's reachability by slug, from the cache where it is fresh enough.

    A cached answer older than ``MODEL_PROBE_CACHE_S`` is returned as it is while one background
    thread per model probes again; a model with no cached answer is probed now, several at once.
    Redis being away means probing every time (and saying so in the log), never an error.
    """
    models = list(models)
    keys = {m.slug: _probe_key(m) for m in models}
    try:
        cached = cache.get_many(list(keys.values()))
    except Exception as exc:
        logger.warning("cannot read model reachability from the cache: %s", exc)
        cached = {}
    now = time.time()
    found: dict[str, Reachability] = {}
    to_probe: list[ServingModel] = []
    for model in models:
        answer = cached.get(keys[model.slug])
        if answer is None:
            to_probe.append(model)
            continue
        found[model.slug] = Reachability(*answer)
        if now - answer[2] > settings.MODEL_PROBE_CACHE_S and _claim_probe(keys[model.slug]):
            threading.Thread(target=_probe_and_store, args=(keys[model.slug], model), daemon=True).start()
    if to_probe:
        with ThreadPoolExecutor(max_workers=min(_PROBE_THREADS, len(to_probe))) as pool:
            answers = list(pool.map(_probe_and_store, [keys[m.slug] for m in to_probe], to_probe))
        found.update({m.slug: answer for m, answer in zip(to_probe, answers, strict=True)})
    return found


def _probe_key(model: ServingModel) -> str:
    # Its settings' last change is in the key: an edited model (another URL, another key) is probed afresh.
    changed = model.updated_at.timestamp() if model.updated_at else 0
    return f"loom:model-probe:{model.pk}:{changed:.6f}"


def _claim_probe(key: str) -> bool:
    """Whether this process refreshes ``key`` now (one refresh per model and interval, across processes)."""
    try:
        return bool(cache.add(f"{key}:refreshing", 1, timeout=max(settings.MODEL_PROBE_CACHE_S, 1)))
    except Exception:
        return False


def _probe_and_store(key: str, model: ServingModel) -> Reachability:
    """Probe one model and cache the answer. Touches no database (``backend()`` only decrypts), so it
    can run on any thread."""
    try:
        reachable, detail = engines.probe(model.backend())
    except Exception as exc:  # a probe that breaks (or a key SECRET_KEY no longer opens) says why it is down
        reachable, detail = False, f"probe failed: {type(exc).__name__}: {exc}"
    answer = Reachability(bool(reachable), str(detail)[:300], time.time())
    try:
        cache.set(
            key,
            (answer.reachable, answer.detail, answer.checked_at),
            timeout=settings.MODEL_PROBE_CACHE_S * _STALE_INTERVALS,
        )
    except Exception as exc:
        logger.warning("cannot store model reachability in the cache: %s", exc)
    return answer


# --- operators -------------------------------------------------------------------------------


@transaction.atomic
def make_default(*, actor: Any, model: ServingModel) -> ServingModel:
    """Make ``model`` the global default (the one before it stops being it), audited."""
    model = ServingModel.objects.select_for_update().get(pk=model.pk)
    if not model.is_active or model.organization_id is not None:
        raise InvalidInput("The default model must be active and global.", code="invalid_default_model")
    # One statement each, in this order: the partial unique index allows one default at every moment.
    ServingModel.objects.filter(is_default=True).exclude(pk=model.pk).update(is_default=False)
    if not model.is_default:
        model.is_default = True
        model.save(update_fields=["is_default", "updated_at"])
        record("generation.default_model_changed", organization=None, actor=actor, target=model, slug=model.slug)
    return model
