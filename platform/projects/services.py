from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils.text import slugify
from django.utils.translation import gettext

from core.errors import Conflict, InvalidInput
from organizations.models import Organization
from projects.models import Project

if TYPE_CHECKING:
    from accounts.models import User

_LANGUAGES = {code for code, _ in settings.CONTENT_LANGUAGES}


def _validated(fields: dict[str, Any]) -> dict[str, Any]:
    if "name" in fields:
        fields["name"] = (fields["name"] or "").strip()
        if not fields["name"]:
            raise InvalidInput(gettext("A project needs a name."), code="name_required")
    if "slug" in fields and fields["slug"] is not None:
        fields["slug"] = slugify(fields["slug"])
        if not fields["slug"]:
            raise InvalidInput(gettext("The slug must contain letters or digits."), code="invalid_slug")
    if "default_language" in fields and fields["default_language"] not in _LANGUAGES:
        raise InvalidInput(
            gettext("Unknown language %(default_language)r.") % {"default_language": fields["default_language"]},
            code="invalid_language",
        )
    return fields


def _save(project: Project, update_fields: list[str] | None = None) -> Project:
    try:
        with transaction.atomic():
            project.save(update_fields=update_fields)
    except IntegrityError:
        raise Conflict(
            gettext("A project with the slug %(slug)r already exists.") % {"slug": project.slug}, code="slug_taken"
        ) from None
    return project


@transaction.atomic
def create_project(
    *,
    actor: User | None,
    organization: Organization,
    name: str,
    slug: str | None = None,
    description: str = "",
    default_language: str = "en",
) -> Project:
    """Create a project. Role checks happen at the edge (session role or API key scope).

    A missing or blank slug is derived from the name.
    """
    fields = _validated(
        {"name": name, "slug": slug or None, "description": description or "", "default_language": default_language}
    )
    if not fields["slug"]:
        fields["slug"] = _free_slug(organization, slugify(fields["name"])[:120] or "project")
    project = Project(organization=organization, created_by=actor, **fields)
    return _save(project)


def _free_slug(organization: Organization, base: str, exclude: Any = None) -> str:
    slug, n = base, 1
    while Project.objects.filter(organization=organization, slug=slug).exclude(pk=exclude).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


@transaction.atomic
def update_project(*, actor: User | None, project: Project, **changes: Any) -> Project:
    allowed = {"name", "slug", "description", "default_language"}
    unknown = set(changes) - allowed
    if unknown:
        raise InvalidInput(
            gettext("Cannot change %(join)s.") % {"join": ", ".join(sorted(unknown))}, code="invalid_field"
        )
    if "slug" in changes and not (changes["slug"] or "").strip():
        # As at creation, a blank slug is derived from the name (the new one, if it changes too).
        base = slugify(changes.get("name") or project.name)[:120] or "project"
        changes["slug"] = _free_slug(project.organization, base, exclude=project.pk)
    changes = _validated(changes)
    for field, value in changes.items():
        setattr(project, field, value)
    return _save(project, update_fields=[*changes, "updated_at"])


#: What a deleted project leaves outside the database (a feature app's files: brand adapters), removed once
#: the deletion commits. Apps above projects in the layers register theirs in ``AppConfig.ready``.
_PROJECT_CLEANUPS: list[Callable[[Any], None]] = []


def register_project_cleanup(cleanup: Callable[[Any], None]) -> None:
    """``cleanup(project_id)`` runs after a project's deletion commits; registered once per function."""
    if cleanup not in _PROJECT_CLEANUPS:
        _PROJECT_CLEANUPS.append(cleanup)


@transaction.atomic
def delete_project(*, actor: User | None, project: Project) -> None:
    project_id = project.pk
    project.delete()
    for cleanup in _PROJECT_CLEANUPS:
        transaction.on_commit(partial(cleanup, project_id))
