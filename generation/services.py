"""Writes for templates, brand voices, generation jobs and feedback."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.text import slugify
from django.utils.translation import gettext

from core.errors import Conflict, InvalidInput, NotFound
from core.ids import parse_uuid
from core.text import printable, storable_text
from generation import adapters, dispatch, factcheck, lifecycle, limits, metering, registry
from generation import constraints as constraint_checks
from generation.library import BUILTIN_TEMPLATES, COPYWRITER
from generation.models import (
    BrandVoice,
    GenerationJob,
    JobStatus,
    ServingModel,
    Template,
    TemplateVersion,
    Variant,
)
from generation.moderation import moderate
from knowledge import services as knowledge

if TYPE_CHECKING:
    from apikeys.models import ApiKey
    from organizations.models import Organization
    from projects.models import Project

VARIABLE_TYPES = {"text", "textarea", "choice", "number"}


# --- templates ---------------------------------------------------------------------------------


def templates_for(organization: Organization) -> QuerySet[Template]:
    """Built-in templates plus the organization's own."""
    return Template.objects.filter(Q(organization__isnull=True) | Q(organization=organization))


def resolve_version(organization: Organization, template_id: Any, version: int | None = None) -> TemplateVersion:
    """The requested (or latest) version of a template the organization may use."""
    template = templates_for(organization).filter(pk=template_id).first() if parse_uuid(template_id) else None
    if template is None:
        template = templates_for(organization).filter(slug=str(template_id)).order_by("organization").first()
    if template is None:
        raise NotFound(
            gettext("Unknown template %(template_id)r.") % {"template_id": template_id}, code="template_not_found"
        )
    versions = template.versions.all()
    found = versions.filter(version=version).first() if version is not None else versions.order_by("-version").first()
    if found is None:
        raise InvalidInput(
            f"Template {template.slug!r} has no version {version}; versions: "
            + ", ".join(str(v) for v in versions.order_by("version").values_list("version", flat=True)),
            code="unknown_template_version",
            fields={"template_version": [f"unknown version {version}"]},
        )
    return found


def validate_variables_spec(variables: Any) -> list[str]:
    if not isinstance(variables, list) or not variables:
        return ["variables must be a non-empty list"]
    errors, seen = [], set()
    for i, spec in enumerate(variables):
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            errors.append(f"variable {i}: needs a name")
            continue
        name = spec["name"]
        if not name.isidentifier() or len(name) > limits.MAX_VARIABLE_NAME_LENGTH:
            errors.append(
                f"variable {name!r}: names are letters, digits and _ (at most {limits.MAX_VARIABLE_NAME_LENGTH})"
            )
        if name in seen:
            errors.append(f"variable {name!r} is declared twice")
        seen.add(name)
        if not isinstance(spec.get("type", "text"), str) or spec.get("type", "text") not in VARIABLE_TYPES:
            errors.append(f"variable {name!r}: type must be one of {', '.join(sorted(VARIABLE_TYPES))}")
        max_length = spec.get("max_length", limits.DEFAULT_VARIABLE_MAX_LENGTH)
        if (
            not isinstance(max_length, int)
            or isinstance(max_length, bool)
            or not 1 <= max_length <= limits.MAX_VARIABLE_MAX_LENGTH
        ):
            errors.append(f"variable {name!r}: max_length must be 1..{limits.MAX_VARIABLE_MAX_LENGTH}")
        if spec.get("type") == "choice" and not (
            isinstance(spec.get("choices"), list)
            and spec["choices"]
            and all(isinstance(c, str) for c in spec["choices"])
        ):
            errors.append(f"variable {name!r}: a choice needs a list of choices")
    return errors


@transaction.atomic
def create_template(
    *,
    actor: Any,
    organization: Organization,
    name: str,
    slug: str = "",
    category: str = "custom",
    description: str = "",
    variables: Any,
    system_prompt: str,
    prompt: str,
    constraints: Any = None,
    default_max_new_tokens: int = limits.DEFAULT_TEMPLATE_MAX_NEW_TOKENS,
    knowledge_token_budget: int | None = None,
) -> TemplateVersion:
    if not name.strip():
        raise InvalidInput(gettext("A template needs a name."), code="name_required")
    # A name without ASCII letters or digits ("Newsletter №1" is fine, "日本語" or "|" is not) slugifies to
    # nothing: such a template gets a generated slug rather than a refusal of a name people chose.
    slug = slugify(slug or name)[: limits.MAX_SLUG_LENGTH] or f"template-{secrets.token_hex(4)}"
    if Template.objects.filter(organization=organization, slug=slug).exists():
        raise Conflict(gettext("A template with the slug %(slug)r already exists.") % {"slug": slug}, code="slug_taken")
    template = Template.objects.create(
        organization=organization, slug=slug, name=name.strip(), category=category or "custom", description=description
    )
    return add_template_version(
        actor=actor,
        template=template,
        variables=variables,
        system_prompt=system_prompt,
        prompt=prompt,
        constraints=constraints or {},
        default_max_new_tokens=default_max_new_tokens,
        knowledge_token_budget=knowledge_token_budget,
    )


@transaction.atomic
def add_template_version(
    *,
    actor: Any,
    template: Template,
    variables: Any,
    system_prompt: str,
    prompt: str,
    constraints: Any,
    default_max_new_tokens: int = limits.DEFAULT_TEMPLATE_MAX_NEW_TOKENS,
    knowledge_token_budget: int | None = None,
    changelog: str = "",
) -> TemplateVersion:
    errors = validate_variables_spec(variables) + constraint_checks.validate_spec(constraints)
    names = (
        {v["name"] for v in variables if isinstance(v, dict) and isinstance(v.get("name"), str)}
        if isinstance(variables, list)
        else set()
    )
    unknown = set(re.findall(r"\{(\w+)\}", prompt)) - names
    if unknown:
        errors.append("the prompt uses undeclared variables: " + ", ".join(sorted(unknown)))
    if not (1 <= default_max_new_tokens <= limits.max_new_tokens()):
        errors.append(f"default_max_new_tokens must be 1..{limits.max_new_tokens()}")
    if knowledge_token_budget is not None and not (0 <= knowledge_token_budget <= limits.MAX_KNOWLEDGE_TOKEN_BUDGET):
        errors.append(f"knowledge_token_budget must be 0..{limits.MAX_KNOWLEDGE_TOKEN_BUDGET}")
    if errors:
        raise InvalidInput(errors[0], code="invalid_template", fields={"template": errors})
    last = Template.objects.select_for_update().get(pk=template.pk).versions.order_by("-version").first()
    return TemplateVersion.objects.create(
        template=template,
        version=(last.version + 1) if last else 1,
        variables=variables,
        system_prompt=system_prompt,
        prompt=prompt,
        constraints=constraints,
        changelog=changelog,
        default_max_new_tokens=default_max_new_tokens,
        knowledge_token_budget=knowledge_token_budget,
        created_by=actor if getattr(actor, "pk", None) else None,
    )


def sync_builtin_templates() -> int:
    """Store the built-in library; a changed entry gets a new version. Returns versions created."""
    created = 0
    for entry in BUILTIN_TEMPLATES:
        with transaction.atomic():
            template, _ = Template.objects.update_or_create(
                organization=None,
                slug=entry["slug"],
                defaults={"name": entry["name"], "category": entry["category"], "description": entry["description"]},
            )
            latest = template.versions.order_by("-version").first()
            wanted = {
                "variables": entry["variables"],
                "system_prompt": COPYWRITER,
                "prompt": entry["prompt"],
                "constraints": entry["constraints"],
                "default_max_new_tokens": entry["max_new_tokens"],
            }
            if latest and all(getattr(latest, k) == v for k, v in wanted.items()):
                continue
            TemplateVersion.objects.create(template=template, version=(latest.version + 1) if latest else 1, **wanted)
            created += 1
    return created


# --- brand voice -------------------------------------------------------------------------------


def _string_list(value: Any, field: str, *, max_items: int, max_length: int) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidInput(
            gettext("%(field)s must be a list of strings.") % {"field": field},
            code="invalid",
            fields={field: ["must be a list of strings"]},
        )
    cleaned = [v.strip() for v in value if v.strip()]
    if len(cleaned) > max_items or any(len(v) > max_length for v in cleaned):
        raise InvalidInput(
            gettext("%(field)s: at most %(max_items)s entries of at most %(max_length)s characters.")
            % {"field": field, "max_items": max_items, "max_length": max_length},
            code="invalid",
            fields={field: [f"at most {max_items} entries of at most {max_length} characters"]},
        )
    return cleaned


@transaction.atomic
def save_brand_voice(*, actor: Any, project: Project, **fields: Any) -> BrandVoice:
    allowed = {"tone", "audience", "words_to_use", "words_to_avoid", "example_texts"}
    unknown = set(fields) - allowed
    if unknown:
        raise InvalidInput(
            gettext("Unknown brand voice fields: %(join)s.") % {"join": ", ".join(sorted(unknown))},
            code="invalid_field",
        )
    voice, _ = BrandVoice.objects.select_for_update().get_or_create(project=project)
    for name, max_length in (("tone", limits.MAX_TONE_LENGTH), ("audience", limits.MAX_AUDIENCE_LENGTH)):
        if name in fields:
            value = fields[name] or ""
            if not isinstance(value, str) or len(value) > max_length:
                raise InvalidInput(
                    gettext("%(name)s must be text of at most %(max_length)s characters.")
                    % {"name": name, "max_length": max_length},
                    code="invalid",
                    fields={name: ["too long or not text"]},
                )
            setattr(voice, name, value.strip())
    words = {"max_items": limits.MAX_WORDS, "max_length": limits.MAX_WORD_LENGTH}
    if "words_to_use" in fields:
        voice.words_to_use = _string_list(fields["words_to_use"], "words_to_use", **words)
    if "words_to_avoid" in fields:
        voice.words_to_avoid = _string_list(fields["words_to_avoid"], "words_to_avoid", **words)
    if "example_texts" in fields:
        voice.example_texts = _string_list(
            fields["example_texts"],
            "example_texts",
            max_items=limits.MAX_EXAMPLES,
            max_length=limits.MAX_EXAMPLE_LENGTH,
        )
    voice.save()
    if "example_texts" in fields:
        # The examples are project knowledge too (kind brand_example); knowledge cannot read brand voices.
        knowledge.sync_brand_examples(project=project, examples=voice.example_texts)
    return voice


# --- jobs --------------------------------------------------------------------------------------


def validate_inputs(version: TemplateVersion, inputs: Any) -> dict[str, Any]:
    """Inputs checked against the version's declared variables; errors name each variable."""
    if not isinstance(inputs, dict):
        raise InvalidInput(
            gettext("inputs must be an object of variable names to values."),
            code="invalid_inputs",
            fields={"inputs": ["must be an object"]},
        )
    errors: dict[str, list[str]] = {}
    declared = {v["name"]: v for v in version.variables}
    for name in inputs:
        if name not in declared:
            errors[printable(name)[:60]] = [f"unknown variable; this template takes: {', '.join(declared)}"]
    cleaned: dict[str, Any] = {}
    for name, spec in declared.items():
        value = inputs.get(name, spec.get("default"))
        if value is None or (isinstance(value, str) and not value.strip()):
            if spec.get("required", True):
                errors[name] = ["this variable is required"]
            continue
        if spec.get("type") == "number":
            if isinstance(value, bool) or not isinstance(value, int | float):
                errors[name] = ["must be a number"]
                continue
        elif not isinstance(value, str):
            errors[name] = ["must be text"]
            continue
        else:
            value = value.strip()
            if not storable_text(value):
                errors[name] = ["contains a NUL or an unpaired surrogate character"]
                continue
            max_length = spec.get("max_length", limits.DEFAULT_VARIABLE_MAX_LENGTH)
            if len(value) > max_length:
                errors[name] = [f"at most {max_length} characters (got {len(value)})"]
                continue
            if spec.get("type") == "choice" and value not in spec.get("choices", []):
                errors[name] = [f"must be one of: {', '.join(spec['choices'])}"]
                continue
        cleaned[name] = value
    if errors:
        first = next(iter(errors.items()))
        raise InvalidInput(
            f"{first[0]}: {first[1][0]}", code="invalid_inputs", fields={f"inputs.{k}": v for k, v in errors.items()}
        )
    return cleaned


def validate_parameters(
    version: TemplateVersion, params: dict[str, Any], model: ServingModel | None = None
) -> dict[str, Any]:
    """The job's sampling parameters, checked; what the caller left out comes from the model's defaults,
    then the template's and the platform's. A model with a known context length bounds max_new_tokens."""
    ranges = {
        "num_variants": (1, limits.max_variants()),
        "max_new_tokens": (1, limits.max_new_tokens()),
        "temperature": (limits.MIN_TEMPERATURE, limits.MAX_TEMPERATURE),
        "top_p": (limits.MIN_TOP_P, limits.MAX_TOP_P),
        "seed": (0, limits.MAX_SEED),
    }
    if model is not None and model.context_length:
        # The prompt needs at least a token of the window; a default beyond it is cut to fit, a request is refused.
        ranges["max_new_tokens"] = (1, max(min(limits.max_new_tokens(), model.context_length - 1), 1))
    defaults = {
        "max_new_tokens": (model and model.max_new_tokens) or version.default_max_new_tokens,
        "temperature": _first_set(model and model.temperature, limits.DEFAULT_TEMPERATURE),
        "top_p": _first_set(model and model.top_p, limits.DEFAULT_TOP_P),
    }
    values = {
        "num_variants": params.get("num_variants", 1),
        "max_new_tokens": params.get("max_new_tokens") or min(defaults["max_new_tokens"], ranges["max_new_tokens"][1]),
        "temperature": params.get("temperature", defaults["temperature"]),
        "top_p": params.get("top_p", defaults["top_p"]),
        "seed": params.get("seed") if params.get("seed") is not None else secrets.randbelow(2**31),
    }
    errors = {}
    for name, (low, high) in ranges.items():
        value = values[name]
        if isinstance(value, bool) or not isinstance(value, int | float):
            errors[name] = ["must be a number"]
        elif name in {"num_variants", "max_new_tokens", "seed"} and not float(value).is_integer():
            errors[name] = ["must be a whole number"]
        elif not low <= value <= high:
            errors[name] = [f"must be between {low} and {high}"]
    if errors:
        first = next(iter(errors.items()))
        raise InvalidInput(f"{first[0]}: {first[1][0]}", code="invalid_parameters", fields=errors)
    values["num_variants"], values["max_new_tokens"], values["seed"] = (
        int(values["num_variants"]),
        int(values["max_new_tokens"]),
        int(values["seed"]),
    )
    return values


def job_language(project: Project, requested: Any) -> str:
    """The language a job writes in: the one asked for, else the project's."""
    language = requested or project.default_language
    if language not in {code for code, _ in settings.CONTENT_LANGUAGES}:
        raise InvalidInput(
            gettext("Unknown language %(language)r.") % {"language": language},
            code="invalid_language",
            fields={"language": [gettext("Choose one of the content languages.")]},
        )
    return str(language)


def _first_set(*values: Any) -> Any:
    return next(v for v in values if v is not None)


def fingerprint(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def submit_generation(
    *,
    organization: Organization,
    project: Project,
    version: TemplateVersion,
    inputs: Any,
    params: dict[str, Any],
    actor: Any = None,
    api_key: ApiKey | None = None,
    idempotency_key: str = "",
    batch: Any = None,
    batch_line: int | None = None,
    holds_slot: bool | None = None,
    knowledge_filters: Any = None,
) -> tuple[GenerationJob, bool]:
    """Validate, admit (billing) and queue a job. Returns ``(job, created)``.

    A repeated idempotency key with the same body returns the first job
    (created=False); with a different body, 409. Admission reserves the job's
    maximum cost in the same transaction as the job row, so a refused job
    (402 quota, 429 concurrency, 400 variant limit) leaves nothing behind.
    ``holds_slot`` defaults to True except for rows of a batch (see
    ``generation.metering.reserve_for_job``).
    """
    if project.organization_id != organization.pk:
        raise NotFound(gettext("Project not found."))
    if len(idempotency_key) > limits.MAX_IDEMPOTENCY_KEY_LENGTH or not storable_text(idempotency_key):
        raise InvalidInput(
            gettext("Idempotency-Key is at most %(MAX_IDEMPOTENCY_KEY_LENGTH)s printable characters.")
            % {"MAX_IDEMPOTENCY_KEY_LENGTH": limits.MAX_IDEMPOTENCY_KEY_LENGTH},
            code="invalid_idempotency_key",
        )
    filters = knowledge.clean_filters(knowledge_filters)
    request = {"project": str(project.pk), "version": str(version.pk), "inputs": inputs, "params": params}
    if filters:  # only when given: the fingerprints of requests without them stay what they were
        request["knowledge_filters"] = filters
    request_print = fingerprint(request)
    if idempotency_key:
        existing = GenerationJob.objects.filter(organization=organization, idempotency_key=idempotency_key).first()
        if existing is not None:
            return _replay(existing, request_print), False
    cleaned_inputs = validate_inputs(version, inputs)
    model = registry.model_for_job(
        organization=organization, project=project, template=version.template, requested=params.get("model")
    )
    values = validate_parameters(version, params, model)
    values["language"] = job_language(project, params.get("language"))
    # Pinned now: activating another version later never changes this job (generation.adapters).
    adapter = adapters.adapter_for_job(project=project, model=model, params=params)
    verdict = moderate(" \n".join(str(v) for v in cleaned_inputs.values()))
    now = timezone.now()
    try:
        with transaction.atomic():
            job = GenerationJob.objects.create(
                organization=organization,
                project=project,
                template_version=version,
                inputs=cleaned_inputs,
                requested_by=actor if getattr(actor, "pk", None) else None,
                api_key=api_key,
                idempotency_key=idempotency_key,
                request_fingerprint=request_print,
                batch=batch,
                batch_line=batch_line,
                serving_model=model,
                adapter=adapter,
                adapter_version=adapter.version if adapter is not None else None,
                **values,
            )
            knowledge.remember_filters(
                organization_id=organization.pk, project_id=project.pk, reference=job.pk, filters=filters
            )
            if verdict.blocked:
                # A blocked request never reaches a model and is never charged.
                job.status, job.failure_reason, job.finished_at = JobStatus.FAILED, "Input " + verdict.reason, now
                job.save(update_fields=["status", "failure_reason", "finished_at"])
                transaction.on_commit(lambda: lifecycle.job_finished(job.pk))
            else:
                slot = batch is None if holds_slot is None else holds_slot
                metering.reserve_for_job(job=job, holds_slot=slot, new_job=True)
                transaction.on_commit(lambda: dispatch.enqueue(job.pk))
    except IntegrityError:
        existing = GenerationJob.objects.filter(organization=organization, idempotency_key=idempotency_key).first()
        if existing is None:
            raise
        return _replay(existing, request_print), False
    return job, True


def _replay(existing: GenerationJob, request_print: str) -> GenerationJob:
    if existing.request_fingerprint != request_print:
        raise Conflict(
            gettext("This Idempotency-Key was already used with a different request body; use a new key."),
            code="idempotency_key_reused",
        )
    return existing


@transaction.atomic
def cancel_job(*, job: GenerationJob, actor: Any = None) -> GenerationJob:
    job = GenerationJob.objects.select_for_update().get(pk=job.pk)
    if job.is_final:
        raise Conflict(gettext("This job already %(status)s.") % {"status": job.status}, code="job_final")
    now = timezone.now()
    job.cancel_requested_at = now
    fields = ["cancel_requested_at"]
    if job.status == JobStatus.QUEUED:
        job.status, job.finished_at, job.failure_reason = JobStatus.CANCELED, now, "Canceled before it started."
        fields += ["status", "finished_at", "failure_reason"]
    job.save(update_fields=fields)
    if job.is_final:
        lifecycle.on_final(job)
    transaction.on_commit(lambda: dispatch.request_cancel(job.pk))
    return job


@transaction.atomic
def regenerate_variant(*, variant: Variant) -> Variant:
    """Queue a new revision of one variant; the current one stays until the new one is stored."""
    job = GenerationJob.objects.select_for_update().get(pk=variant.job_id)
    if not job.is_final or job.status != JobStatus.SUCCEEDED:
        raise Conflict(gettext("Only variants of a succeeded job can be regenerated."), code="job_not_succeeded")
    metering.check_regeneration(job=job)
    transaction.on_commit(lambda: dispatch.regenerate_variant(str(job.pk), variant.index, variant.revision + 1))
    return variant


def recheck_constraints(variant: Variant) -> list[str]:
    """Make the variant's report describe the text it shows now; returns the fields it changed.

    An edit is checked as the marketer wrote it (it cannot be cut off at the token limit); going back
    to the generated text brings back the report of the model's output, kept unchanged.
    """
    if variant.is_withheld:
        return []  # its text is not shown, whatever was typed over it: no report, no passes
    if variant.edited_text:
        job = variant.job
        report = constraint_checks.check(
            variant.edited_text, job.template_version.constraints, job.inputs, language=job.language
        )
        # The edit's claims against the same brief and knowledge; its statements by shared words, since a
        # web request does not load the embedding model (the stored fact_check stays the model output's).
        (facts,) = factcheck.fact_check_all([variant.edited_text], factcheck.job_sources(job))
        report += factcheck.report_entries(facts)
    else:
        report = variant.original_constraint_report
    variant.constraint_report = report
    variant.constraints_passed = constraint_checks.passed(report)
    return ["constraint_report", "constraints_passed"]


@transaction.atomic
def give_feedback(
    *,
    variant: Variant,
    actor: Any = None,
    rating: int | None = None,
    edited_text: str | None = None,
    approved: bool | None = None,
) -> Variant:
    variant = Variant.objects.select_for_update(of=("self",)).select_related("job__template_version").get(pk=variant.pk)
    fields = []
    if rating is not None:
        low, high = limits.MIN_RATING, limits.MAX_RATING
        if isinstance(rating, bool) or not isinstance(rating, int) or not low <= rating <= high:
            raise InvalidInput(
                gettext("rating must be a whole number from %(low)s to %(high)s.") % {"low": low, "high": high},
                code="invalid",
                fields={"rating": [f"{low}..{high}"]},
            )
        variant.rating = rating
        fields.append("rating")
    if edited_text is not None:
        if not isinstance(edited_text, str) or len(edited_text) > limits.MAX_EDITED_TEXT_LENGTH:
            raise InvalidInput(
                gettext("edited_text must be text of at most %(MAX_EDITED_TEXT_LENGTH)s characters.")
                % {"MAX_EDITED_TEXT_LENGTH": format(limits.MAX_EDITED_TEXT_LENGTH, ",")},
                code="invalid",
                fields={"edited_text": [f"at most {limits.MAX_EDITED_TEXT_LENGTH} characters"]},
            )
        variant.edited_text = edited_text.strip()
        fields += ["edited_text", *recheck_constraints(variant)]
    if approved is not None:
        variant.approved = bool(approved)
        variant.approved_at = timezone.now() if approved else None
        variant.approved_by = actor if approved and getattr(actor, "pk", None) else None
        fields += ["approved", "approved_at", "approved_by"]
    if fields:
        variant.save(update_fields=fields)
    return variant


@transaction.atomic
def record_outcome_lift(
    *,
    variant: Variant,
    experiment_id: Any,
    lift: float | None,
    conversions: int,
    exposures: int,
    baseline: str = "",
) -> Variant:
    """A variant won an experiment: approve it and keep what it measured.

    Approving goes through ``give_feedback``, as a marketer's approval does, so few-shot examples
    (``prompts.approved_examples``) and the fine-tune export pick it up; an approval already given
    keeps its time and approver, and a withheld variant is never approved. ``lift`` is the winner's
    conversion rate over the ``baseline`` arm's, minus 1 (None when the baseline converted nobody).
    The experiments app calls this; generation knows nothing of experiments beyond this record.
    """
    variant = Variant.objects.select_for_update(of=("self",)).get(pk=variant.pk)
    if not variant.approved and not variant.is_withheld:
        variant = give_feedback(variant=variant, approved=True)
    variant.outcome = {
        "experiment": str(experiment_id),
        "lift": None if lift is None else round(lift, 4),
        "conversions": conversions,
        "exposures": exposures,
        "baseline": baseline,
    }
    variant.save(update_fields=["outcome"])
    return variant
