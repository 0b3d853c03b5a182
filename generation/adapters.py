"""Which brand adapter (a project's fine-tuned LoRA, ``BrandAdapter``) a job runs with, and where its files are.

At submission a job is pinned to its project's active adapter when that adapter was trained on the
job's model; a job may ask for the base model instead (``adapter: null`` or ``"base"``) or for another
version of its own project's adapters (``adapter: 3``). Only the job's project is ever searched, so
another project's or organization's adapter cannot be named: it is an unknown version (400). The pin
is kept: activating a newer version or rolling back never changes a job already submitted.

At execution the worker gets an ``AdapterRef`` (``adapter_ref``); adapter files that are gone fail the
job with that reason before anything is generated (so nothing is charged), never a silent run on the
base model.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.utils.translation import gettext

from core.errors import InvalidInput
from generation.models import BrandAdapter, ServingModel
from workers.contract import AdapterRef

if TYPE_CHECKING:
    from projects.models import Project

#: ``adapter`` values that mean "the base model, no adapter" (besides null).
BASE_CHOICES = frozenset({"base", "none"})
#: ``adapter`` values that mean "the project's active adapter", as when it is left out.
ACTIVE_CHOICES = frozenset({"active", "default"})
#: The files ``peft``'s ``save_pretrained`` writes; both are needed to serve an adapter.
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


class AdapterUnavailable(RuntimeError):
    """A pinned adapter cannot be served (its files are gone): the job fails with this reason."""


def adapter_for_job(*, project: Project, model: ServingModel, params: dict[str, Any]) -> BrandAdapter | None:
    """The adapter a new job of ``project`` on ``model`` runs with; a 400 for one it may not use."""
    if "adapter" not in params:
        return _active(project, model)
    requested = params["adapter"]
    text = "" if requested is None else str(requested).strip().lower()
    if text in BASE_CHOICES or requested is None:
        return None
    if text in ACTIVE_CHOICES or text == "":
        return _active(project, model)
    version = text.removeprefix("v")
    if not version.isdigit() or not 0 < int(version) < 2**31:
        raise _invalid(gettext('adapter is a version number of this project\'s brand models, "base" or null.'))
    found = BrandAdapter.objects.filter(project=project, version=int(version)).first()
    if found is None:
        versions = BrandAdapter.objects.filter(project=project).values_list("version", flat=True)
        known = ", ".join(f"v{v}" for v in versions)
        raise _invalid(
            gettext("This project has no brand model v%(version)s (it has: %(known)s).")
            % {"version": int(version), "known": known or gettext("none")}
        )
    if found.serving_model_id != model.pk:
        raise _invalid(
            gettext("Brand model v%(version)s was trained on %(trained)s; this job runs on %(model)s.")
            % {"version": found.version, "trained": found.serving_model.slug, "model": model.slug}
        )
    return found


def _active(project: Project, model: ServingModel) -> BrandAdapter | None:
    # An active adapter trained on another model does not apply: the job runs on its model's base.
    return BrandAdapter.objects.filter(project=project, is_active=True, serving_model=model).first()


def _invalid(reason: str) -> InvalidInput:
    return InvalidInput(reason, code="invalid_adapter", fields={"adapter": [reason]})


def adapter_folder(adapter: BrandAdapter) -> Path:
    return Path(settings.BRAND_ADAPTER_ROOT) / adapter.path


def adapter_ref(adapter: BrandAdapter | None, *, pinned_version: int | None = None) -> AdapterRef | None:
    """What the engine gets for a job's pinned adapter; ``AdapterUnavailable`` when its files are gone
    or the adapter itself was deleted after the job was pinned to it (``pinned_version`` set, no row)."""
    if adapter is None:
        if pinned_version is not None:
            raise AdapterUnavailable(
                gettext("Brand model v%(version)s was deleted after this job was submitted.")
                % {"version": pinned_version}
            )
        return None
    folder = adapter_folder(adapter)
    missing = [name for name in ADAPTER_FILES if not (folder / name).is_file()]
    if missing:
        raise AdapterUnavailable(
            gettext("Brand model v%(version)s cannot be served: %(missing)s missing in its folder %(path)s.")
            % {"version": adapter.version, "missing": ", ".join(missing), "path": adapter.path}
        )
    return AdapterRef(name=adapter.name, path=str(folder))
