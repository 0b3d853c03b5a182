"""Writes to a project's knowledge: add, change and delete sources, sync the catalog's products and the
brand voice's examples, and keep a job's knowledge filters. Each in one transaction; (re-)embedding is
queued after commit (``knowledge.dispatch``)."""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_date
from django.utils.translation import gettext

from core.errors import InvalidInput, NotFound
from knowledge import dispatch, embedding, ingest, limits, vectors
from knowledge.models import Chunk, KnowledgeSource, RetrievalScope, SourceKind, SourceStatus
from organizations.models import Organization
from projects.models import Project

METADATA_FIELDS = ("sku", "language", "tags", "valid_from", "valid_until")


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _field_error(field: str, message: str, code: str = "invalid") -> InvalidInput:
    return InvalidInput(f"{field}: {message}.", code=code, fields={field: [message]})


def _date(value: Any, field: str) -> datetime.date | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime.date):
        return value
    parsed = parse_date(value) if isinstance(value, str) else None
    if parsed is None:
        raise _field_error(field, gettext("a date as %(format)s") % {"format": "YYYY-MM-DD"})
    return parsed


def _text(value: Any, field: str, max_length: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value.strip()) > max_length:
        raise _field_error(field, gettext("text of at most %(count)s characters") % {"count": max_length})
    return value.strip()


def _tags(value: Any) -> list[str]:
    if value in (None, ""):
        return []
    if isinstance(value, str):  # a form's "tag, tag"
        value = [t for t in value.split(",")]
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise _field_error("tags", gettext("a list of strings"))
    tags = sorted({t.strip().casefold() for t in value if t.strip()})
    if len(tags) > limits.MAX_TAGS or any(len(t) > limits.MAX_TAG_LENGTH for t in tags):
        raise _field_error(
            "tags",
            gettext("at most %(tags)s tags of at most %(length)s characters")
            % {"tags": limits.MAX_TAGS, "length": limits.MAX_TAG_LENGTH},
        )
    return tags


def clean_metadata(fields: dict[str, Any]) -> dict[str, Any]:
    """The metadata among ``fields``, checked; only the keys given."""
    cleaned: dict[str, Any] = {}
    if "sku" in fields:
        cleaned["sku"] = _text(fields["sku"], "sku", limits.MAX_SKU_LENGTH)
    if "language" in fields:
        cleaned["language"] = _text(fields["language"], "language", limits.MAX_LANGUAGE_LENGTH).lower()
    if "tags" in fields:
        cleaned["tags"] = _tags(fields["tags"])
    for name in ("valid_from", "valid_until"):
        if name in fields:
            cleaned[name] = _date(fields[name], name)
    return cleaned


def _check_validity(source: KnowledgeSource) -> None:
    if source.valid_from and source.valid_until and source.valid_until < source.valid_from:
        raise _field_error(
            "valid_until", gettext("on or after %(field)s") % {"field": "valid_from"}, code="invalid_range"
        )


def read_upload(*, data: bytes, filename: str, declared_mime: str = "") -> tuple[str, str]:
    """``(mime, text)`` of an uploaded file, or the 4xx error that refuses it (nothing is stored then)."""
    if len(data) > ingest.max_bytes():
        raise ingest.too_large(len(data))
    mime = ingest.detect_mime(filename, data, declared_mime)
    return mime, ingest.extract_text(data, mime)


@transaction.atomic
def create_source(
    *,
    organization: Organization,
    project: Project,
    title: str,
    actor: Any = None,
    text: str | None = None,
    data: bytes | None = None,
    filename: str = "",
    declared_mime: str = "",
    kind: str = SourceKind.DOCUMENT,
    **metadata: Any,
) -> KnowledgeSource:
    """A document from a file (``data``) or from ``text``; embedded on the queue once committed."""
    if project.organization_id != organization.pk:
        raise NotFound(gettext("Project not found."), code="project_not_found")
    unknown = set(metadata) - set(METADATA_FIELDS)
    if unknown:
        raise InvalidInput(
            gettext("Unknown fields: %(names)s.") % {"names": ", ".join(sorted(unknown))}, code="invalid_field"
        )
    if kind not in SourceKind.values:
        raise _field_error("kind", gettext("one of %(choices)s") % {"choices": ", ".join(SourceKind.values)})
    if (data is None) == (text is None):
        raise InvalidInput(
            gettext("Give either a file or a text."), code="invalid", fields={"file": [gettext("a file or a text")]}
        )
    mime, original = "text/plain", None
    if data is not None:
        mime, text = read_upload(data=data, filename=filename, declared_mime=declared_mime)
        original = data
    else:
        if not isinstance(text, str) or len(text) > limits.MAX_PASTED_TEXT_CHARS:
            raise _field_error(
                "text", gettext("text of at most %(count)s characters") % {"count": f"{limits.MAX_PASTED_TEXT_CHARS:,}"}
            )
        text = ingest.tidy(text)
        if not text:
            raise _field_error("text", gettext("must not be empty"), code="empty_text")
    # Without a title or a file name, the text's first words name the source (as a file's name would).
    title = (
        _text(title, "title", limits.MAX_TITLE_LENGTH)
        or filename[: limits.MAX_TITLE_LENGTH]
        or " ".join(text.split()[:8])[: limits.MAX_TITLE_LENGTH]
    )
    if not title:
        raise _field_error("title", gettext("must not be empty"))
    source = KnowledgeSource(
        organization=organization,
        project=project,
        kind=kind,
        title=title,
        filename=filename[: limits.MAX_FILENAME_LENGTH],
        mime=mime,
        original=original,
        text=text,
        content_hash=content_hash(text),
        created_by=actor if getattr(actor, "pk", None) else None,
        **clean_metadata(metadata),
    )
    _check_validity(source)
    source.save()
    dispatch.embed_after_commit(source.pk)
    return source


@transaction.atomic
def update_source(*, source: KnowledgeSource, actor: Any = None, **fields: Any) -> KnowledgeSource:
    """Change a source's title, text or metadata. New text is re-chunked and re-embedded on the queue;
    new metadata reaches its chunks at once (retrieval filters on the chunks' copy)."""
    unknown = set(fields) - {"title", "text", *METADATA_FIELDS}
    if unknown:
        raise InvalidInput(
            gettext("Unknown fields: %(names)s.") % {"names": ", ".join(sorted(unknown))}, code="invalid_field"
        )
    locked = KnowledgeSource.objects.select_for_update().get(pk=source.pk)
    if "title" in fields:
        locked.title = _text(fields["title"], "title", limits.MAX_TITLE_LENGTH) or locked.title
    for name, value in clean_metadata(fields).items():
        setattr(locked, name, value)
    _check_validity(locked)
    changed_text = False
    if "text" in fields:
        text = fields["text"]
        if not isinstance(text, str) or len(text) > limits.MAX_PASTED_TEXT_CHARS or not ingest.tidy(text):
            raise _field_error(
                "text",
                gettext("non-empty text of at most %(count)s characters")
                % {"count": f"{limits.MAX_PASTED_TEXT_CHARS:,}"},
            )
        locked.text = ingest.tidy(text)
        changed_text = content_hash(locked.text) != locked.content_hash
        locked.content_hash = content_hash(locked.text)
    return _save_changed(locked, changed_text)


def _save_changed(locked: KnowledgeSource, changed_text: bool) -> KnowledgeSource:
    if changed_text:
        # The old chunks state what the source no longer says: gone now, not when the new ones are ready.
        _delete_chunks([locked.pk])
        locked.status, locked.failure_reason = SourceStatus.PENDING, ""
        dispatch.embed_after_commit(locked.pk)
    locked.updated_at = timezone.now()
    locked.save()
    locked.chunks.update(**embedding.metadata_of(locked))
    return locked


@transaction.atomic
def delete_source(*, source: KnowledgeSource, actor: Any = None) -> None:
    """Delete the source and its chunks (and their vectors) at once: no later prompt can retrieve them."""
    delete_sources(KnowledgeSource.objects.filter(pk=source.pk))


def delete_sources(sources: Any) -> int:
    ids = list(sources.values_list("pk", flat=True))
    _delete_chunks(ids)
    KnowledgeSource.objects.filter(pk__in=ids).delete()
    return len(ids)


def _delete_chunks(source_ids: list[Any]) -> None:
    if not source_ids:
        return
    if vectors.enabled():
        vectors.ensure_table()
        vectors.delete_for_sources(source_ids)
    Chunk.objects.filter(source_id__in=source_ids).delete()


# --- synced sources: catalog products and brand voice examples ---------------------------------------


def _price(value: Any) -> str:
    if value in (None, ""):
        return ""
    try:
        return f"{Decimal(str(value)).normalize():f}"
    except ArithmeticError:
        return str(value)


def product_text(item: Any) -> str:
    """A catalog item as a fact sheet: what its copy may state."""
    get = item.get if isinstance(item, dict) else lambda name, default=None: getattr(item, name, default)
    lines = [f"Product: {get('title') or get('sku')}", f"SKU: {get('sku')}"]
    if price := _price(get("price")):
        lines.append(f"Price: {price}")
    for name, value in sorted((get("attributes") or {}).items()):
        if value not in (None, "", [], {}):
            lines.append(f"{str(name).replace('_', ' ').capitalize()}: {value}")
    if description := (get("description") or "").strip():
        lines.append(f"Description: {description}")
    return "\n".join(lines)


def _upsert_synced(
    *, organization_id: Any, project_id: Any, key: str, kind: str, title: str, text: str, sku: str = ""
) -> bool:
    """Create or update one synced source; whether its text changed (and it was queued)."""
    text = ingest.tidy(text)[: limits.MAX_TEXT_CHARS]
    digest = content_hash(text)
    source = KnowledgeSource.objects.select_for_update().filter(project_id=project_id, external_key=key).first()
    if source is None:
        source = KnowledgeSource.objects.create(
            organization_id=organization_id, project_id=project_id, external_key=key, kind=kind,
            title=title[: limits.MAX_TITLE_LENGTH], text=text, content_hash=digest, sku=sku, mime="text/plain",
        )
        dispatch.embed_after_commit(source.pk)
        return True
    if source.content_hash == digest and source.title == title[: limits.MAX_TITLE_LENGTH]:
        return False
    source.title, source.text = title[: limits.MAX_TITLE_LENGTH], text
    changed = source.content_hash != digest
    source.content_hash = digest
    _save_changed(source, changed)
    return changed


#: Rows per query and per bulk write of a catalog sync (as recommendations' imports write items).
SYNC_BATCH = 1000


@transaction.atomic
def sync_products(*, organization_id: Any, project_id: Any, items: Iterable[Any]) -> int:
    """One ``product`` source per catalog item (title, description, price, attributes; SKU metadata).

    Called by the catalog's import and ingest with the items they created or changed, in bulk (an import
    of 30,000 items is a few queries, not 60,000); an item whose fact sheet did not change is not
    re-embedded. Returns how many sources were queued.
    """
    wanted: dict[str, tuple[str, str, str]] = {}
    for item in items:
        get = item.get if isinstance(item, dict) else lambda name, default=None, item=item: getattr(item, name, default)
        sku = str(get("sku"))[: limits.MAX_SKU_LENGTH]
        title = str(get("title") or sku)[: limits.MAX_TITLE_LENGTH]
        wanted[f"product:{sku}"] = (sku, title, ingest.tidy(product_text(item)))
    keys = sorted(wanted)
    existing: dict[str, KnowledgeSource] = {}
    for start in range(0, len(keys), SYNC_BATCH):
        for source in KnowledgeSource.objects.select_for_update().filter(
            project_id=project_id, external_key__in=keys[start : start + SYNC_BATCH]
        ):
            existing[source.external_key] = source
    now = timezone.now()
    new, changed = [], []
    for key, (sku, title, text) in wanted.items():
        digest = content_hash(text)
        source = existing.get(key)
        if source is None:
            new.append(KnowledgeSource(
                organization_id=organization_id, project_id=project_id, external_key=key, kind=SourceKind.PRODUCT,
                title=title, text=text, content_hash=digest, sku=sku, mime="text/plain", created_at=now, updated_at=now,
            ))
        elif source.content_hash != digest or source.title != title:
            source.title, source.text, source.content_hash = title, text, digest
            source.status, source.failure_reason, source.updated_at = SourceStatus.PENDING, "", now
            changed.append(source)
    _delete_chunks([source.pk for source in changed])  # an old price must not reach a prompt meanwhile
    KnowledgeSource.objects.bulk_create(new, batch_size=SYNC_BATCH)
    KnowledgeSource.objects.bulk_update(
        changed, ["title", "text", "content_hash", "status", "failure_reason", "updated_at"], batch_size=SYNC_BATCH
    )
    queued = [source.pk for source in new + changed]
    dispatch.embed_after_commit(*queued)
    return len(queued)


@transaction.atomic
def sync_brand_examples(*, project: Project, examples: list[str]) -> int:
    """The brand voice's example texts as ``brand_example`` sources: new ones added, removed ones deleted."""
    keys = {f"brand_example:{content_hash(text)[:32]}": text for text in examples if text.strip()}
    stale = KnowledgeSource.objects.filter(project=project, kind=SourceKind.BRAND_EXAMPLE).exclude(
        external_key__in=list(keys)
    )
    delete_sources(stale)
    queued = 0
    for number, (key, text) in enumerate(keys.items(), start=1):
        queued += _upsert_synced(
            organization_id=project.organization_id, project_id=project.pk, key=key,
            kind=SourceKind.BRAND_EXAMPLE, title=f"Brand voice example {number}", text=text,
        )
    return queued


# --- a job's filters -----------------------------------------------------------------------------------

FILTER_KEYS = ("kind", "sku", "language", "tags")


def clean_filters(filters: Any) -> dict[str, Any]:
    """``{"kind": [...], "sku": [...], "language": "en", "tags": [...]}``, each optional; 400 on anything else."""
    if filters in (None, ""):
        return {}
    if not isinstance(filters, dict):
        raise _field_error(
            "knowledge_filters",
            gettext("an object such as %(example)s") % {"example": '{"sku": ["TENT-2"], "tags": ["summer"]}'},
        )
    unknown = set(filters) - set(FILTER_KEYS)
    if unknown:
        allowed = ", ".join(FILTER_KEYS)
        raise _field_error(
            "knowledge_filters",
            gettext("unknown keys %(keys)s (allowed: %(allowed)s)")
            % {"keys": ", ".join(sorted(unknown)), "allowed": allowed},
        )
    cleaned: dict[str, Any] = {}
    for name in ("kind", "sku", "tags"):
        if name not in filters:
            continue
        values = filters[name]
        values = [values] if isinstance(values, str) else values
        if (
            not isinstance(values, list)
            or not all(isinstance(v, str) and 0 < len(v) <= limits.MAX_SKU_LENGTH for v in values)
            or len(values) > limits.MAX_FILTER_VALUES
        ):
            raise _field_error(
                f"knowledge_filters.{name}",
                gettext("a list of at most %(count)s strings") % {"count": limits.MAX_FILTER_VALUES},
            )
        if name == "kind" and (bad := set(values) - set(SourceKind.values)):
            raise _field_error(
                "knowledge_filters.kind", gettext("unknown kinds %(kinds)s") % {"kinds": ", ".join(sorted(bad))}
            )
        cleaned[name] = sorted({v.casefold() for v in values}) if name == "tags" else sorted(set(values))
    if "language" in filters:
        language = _text(filters["language"], "knowledge_filters.language", limits.MAX_LANGUAGE_LENGTH)
        cleaned["language"] = language.lower()
    return cleaned


def remember_filters(*, organization_id: Any, project_id: Any, reference: Any, filters: dict[str, Any]) -> None:
    """Keep ``filters`` (already cleaned) for the work ``reference`` names; nothing is kept for no filters."""
    if filters:
        RetrievalScope.objects.update_or_create(
            reference=reference,
            defaults={"organization_id": organization_id, "project_id": project_id, "filters": filters},
        )
