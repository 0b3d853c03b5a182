"""Writes of the recommendations app: project settings, recommendation jobs and personalized campaigns.

Imports and event ingest live in ``recommendations.importing``; what a worker does
with a job in ``recommendations.execution``; tasks are sent through ``recommendations.dispatch``.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Max, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext

from audit.services import record
from billing.errors import VariantLimitExceeded
from core.errors import Conflict, DomainError, InvalidInput, NotFound
from core.text import printable, storable_text
from experiments import serving
from experiments.models import Experiment
from generation import services as generation
from generation.limits import DEFAULT_VARIABLE_MAX_LENGTH
from generation.models import JobStatus, TemplateVersion, Variant
from recommendations import dispatch, limits
from recommendations.importing import lock_project_data
from recommendations.models import (
    Campaign,
    CampaignRecipient,
    Customer,
    Event,
    EventType,
    Recommendation,
    RecommendationJob,
    RecommendationJobStatus,
    RecommendationSettings,
    display_title,
)

if TYPE_CHECKING:
    from apikeys.models import ApiKey
    from organizations.models import Organization
    from projects.models import Project

def _own_project(organization: Organization, project: Project) -> None:
    if project.organization_id != organization.pk:
        raise NotFound(gettext("Project not found."), code="project_not_found")


def _user(actor: Any) -> Any:
    return actor if getattr(actor, "pk", None) else None


# --- settings ------------------------------------------------------------------------------------


def settings_for(project: Project) -> RecommendationSettings:
    """The project's settings, unsaved defaults when it has none yet."""
    return RecommendationSettings.objects.filter(project=project).first() or RecommendationSettings(project=project)


@transaction.atomic
def save_settings(*, actor: Any, project: Project, exclude_purchased: Any) -> RecommendationSettings:
    if not isinstance(exclude_purchased, bool):
        raise InvalidInput(
            gettext("exclude_purchased must be true or false."), fields={"exclude_purchased": ["must be a boolean"]}
        )
    current, _ = RecommendationSettings.objects.select_for_update().get_or_create(project=project)
    if current.exclude_purchased != exclude_purchased:
        current.exclude_purchased = exclude_purchased
        current.save(update_fields=["exclude_purchased", "updated_at"])
        record(
            "recommendations.settings_changed",
            organization=project.organization,
            actor=actor,
            target=project,
            exclude_purchased=exclude_purchased,
        )
    return current


# --- recommendation jobs -------------------------------------------------------------------------


def _whole_number(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(
            gettext("%(name)s must be a whole number from %(low)s to %(high)s.")
            % {"name": name, "low": low, "high": high},
            fields={name: [f"{low}..{high}"]},
        )
    return value


def start_recommendation_job(
    *,
    organization: Organization,
    project: Project,
    actor: Any = None,
    api_key: ApiKey | None = None,
    k: Any = 10,
    holdout_days: Any = 28,
    exclude_purchased: Any = None,
    seed: Any = None,
) -> RecommendationJob:
    """Queue a training job for the project; one at a time per project (409 while one is queued or running)."""
    _own_project(organization, project)
    k = _whole_number(k, "k", 1, limits.MAX_K)
    holdout_days = _whole_number(holdout_days, "holdout_days", 1, limits.MAX_HOLDOUT_DAYS)
    if exclude_purchased is None:
        exclude_purchased = settings_for(project).exclude_purchased
    elif not isinstance(exclude_purchased, bool):
        raise InvalidInput(
            gettext("exclude_purchased must be true or false."), fields={"exclude_purchased": ["boolean"]}
        )
    seed = secrets.randbelow(2**31) if seed is None else _whole_number(seed, "seed", 0, 2**31 - 1)
    with transaction.atomic():
        lock_project_data(project)
        active = RecommendationJob.objects.filter(
            project=project, status__in=[RecommendationJobStatus.QUEUED, RecommendationJobStatus.RUNNING]
        ).first()
        if active is not None:
            raise Conflict(
                gettext("A recommendation job of this project is already %(status)s (%(pk)s); wait for it.")
                % {"status": active.status, "pk": active.pk},
                code="job_already_running",
            )
        if not Event.objects.filter(project=project).exclude(type=EventType.RETURN).exists():
            raise Conflict(
                gettext("This project has no events yet: import a CSV file or send events first."), code="no_events"
            )
        job = RecommendationJob.objects.create(
            organization=organization,
            project=project,
            k=k,
            holdout_days=holdout_days,
            exclude_purchased=exclude_purchased,
            seed=seed,
            requested_by=_user(actor),
            api_key=api_key,
        )
        # A broker that is down leaves the job queued for the reconciler (see dispatch.enqueue).
        transaction.on_commit(lambda: dispatch.enqueue(job.pk))
    return job


def latest_job(project: Project) -> RecommendationJob | None:
    """The project's newest succeeded job: the one whose results the API and campaigns use."""
    return (
        RecommendationJob.objects.filter(project=project, status=RecommendationJobStatus.SUCCEEDED)
        .order_by("-finished_at")
        .first()
    )


def recommendations_for(customer: Customer) -> tuple[RecommendationJob | None, QuerySet[Recommendation]]:
    job = latest_job(customer.project)
    rows = Recommendation.objects.filter(job=job, customer=customer).select_related("item").order_by("rank")
    return job, rows if job is not None else Recommendation.objects.none()


# --- personalized campaigns ----------------------------------------------------------------------

#: Template variables a campaign fills per customer, by name. A list variable gets every
#: recommended item, a single one the best item (and a "more" variable the others).
PRODUCTS_VARIABLES = ("products", "recommended_products", "items")
PRODUCT_VARIABLES = ("product", "item")
MORE_PRODUCTS_VARIABLES = ("also_recommended", "other_products")
NAME_VARIABLES = ("customer_name", "name", "customer")
COUNTRY_VARIABLES = ("country",)
#: Default sampling temperature of campaign jobs (see generation/library.py, personalized-recommendation).
CAMPAIGN_TEMPERATURE = 0.2
#: Times a customer's copy that names none of their items is regenerated before it is left as it is.
#: With the personalized-recommendation template ~5% of first attempts miss (see generation/library.py).
#: Each rewrite is a fresh sample; a title the model keeps "correcting" (a misspelling) can still miss.
MAX_REGENERATIONS = 4
SEGMENT_KEYS = {"countries", "attributes", "purchased_within_days", "min_purchases", "customers", "limit"}


def _segment_error(message: str, field: str = "segment") -> InvalidInput:
    return InvalidInput(message, code="invalid_segment", fields={field: [message]})


def _usable_name(value: Any) -> bool:
    return (
        isinstance(value, str)
        and bool(value.strip())
        and storable_text(value)
        and len(value) <= limits.MAX_SEGMENT_NAME_LENGTH
    )


def clean_segment(segment: Any) -> dict[str, Any]:
    """The segment a caller described, checked: which customers a campaign reaches.

    ``countries``: customers whose ``country`` attribute is one of these; ``attributes``:
    exact matches on other attributes; ``purchased_within_days``: bought something in the
    N days before the project's latest event (the data's own "now", so historical data
    works too); ``min_purchases``: at least N purchase events; ``customers``: these
    external ids only; ``limit``: at most this many (the most recent buyers first).
    """
    if segment is None:
        segment = {}
    if not isinstance(segment, dict):
        raise _segment_error("The segment must be an object.")
    unknown = sorted(str(k) for k in segment if k not in SEGMENT_KEYS)
    if unknown:
        raise _segment_error(
            f"Unknown segment filter {printable(unknown[0])[:40]!r}; filters: " + ", ".join(sorted(SEGMENT_KEYS))
        )
    cleaned: dict[str, Any] = {}
    for name in ("countries", "customers"):
        values = segment.get(name)
        if values in (None, [], ""):
            continue
        if isinstance(values, str):
            values = [values]
        if (
            not isinstance(values, list)
            or len(values) > limits.MAX_SEGMENT_NAMES
            or not all(_usable_name(v) for v in values)
        ):
            raise _segment_error(
                f"{name} must be a list of at most {limits.MAX_SEGMENT_NAMES} names.", f"segment.{name}"
            )
        cleaned[name] = sorted({v.strip() for v in values})
    attributes = segment.get("attributes")
    if attributes:
        if (
            not isinstance(attributes, dict)
            or len(attributes) > limits.MAX_SEGMENT_ATTRIBUTES
            or not all(
                isinstance(k, str)
                and isinstance(v, str)
                and storable_text(k + v)
                and len(k) <= limits.MAX_ATTRIBUTE_NAME_LENGTH
                and len(v) <= limits.MAX_ATTRIBUTE_VALUE_LENGTH
                for k, v in attributes.items()
            )
        ):
            raise _segment_error("attributes must be an object of names to text values.", "segment.attributes")
        cleaned["attributes"] = dict(attributes)
    for name, high in (
        ("purchased_within_days", limits.MAX_PURCHASED_WITHIN_DAYS),
        ("min_purchases", limits.MAX_MIN_PURCHASES),
        ("limit", limits.MAX_SEGMENT_LIMIT),
    ):
        value = segment.get(name)
        if value is None or value == "":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
            raise _segment_error(f"{name} must be a whole number from 1 to {high}.", f"segment.{name}")
        cleaned[name] = value
    return cleaned


def segment_customers(project: Project, segment: dict[str, Any]) -> QuerySet[Customer]:
    """The project's customers matching a cleaned segment, most recent buyers first."""
    customers = Customer.objects.filter(project=project)
    if "countries" in segment:
        customers = customers.filter(attributes__country__in=segment["countries"])
    for key, value in segment.get("attributes", {}).items():
        customers = customers.filter(**{f"attributes__{key}": value})
    if "customers" in segment:
        customers = customers.filter(external_id__in=segment["customers"])
    purchases = Q(events__type=EventType.PURCHASE)
    if "purchased_within_days" in segment:
        latest = Event.objects.filter(project=project).aggregate(latest=Max("occurred_at"))["latest"]
        if latest is None:
            return customers.none()
        since = latest - timedelta(days=segment["purchased_within_days"])
        customers = customers.filter(
            pk__in=Event.objects.filter(project=project, type=EventType.PURCHASE, occurred_at__gte=since).values(
                "customer_id"
            )
        )
    customers = customers.annotate(
        purchase_count=Count("events", filter=purchases), last_purchase=Max("events__occurred_at", filter=purchases)
    )
    if "min_purchases" in segment:
        customers = customers.filter(purchase_count__gte=segment["min_purchases"])
    return customers.order_by(F("last_purchase").desc(nulls_last=True), "external_id")


def _first_variable(version: TemplateVersion, names: tuple[str, ...]) -> dict[str, Any] | None:
    return next((spec for name in names if (spec := version.variable(name)) is not None), None)


def _products_text(titles: list[str], max_length: int) -> str:
    """As many item titles as the variable holds, best first (at least the first, cut to fit)."""
    text = titles[0][:max_length] if titles else ""
    for title in titles[1:]:
        candidate = f"{text}, {title}"
        if len(candidate) > max_length:
            break
        text = candidate
    return text


def customer_inputs(
    version: TemplateVersion, customer: Customer, titles: list[str], extra_inputs: dict[str, Any]
) -> dict[str, Any]:
    """The template inputs for one customer: their items, name and country, plus the campaign's shared inputs."""
    inputs = dict(extra_inputs)

    def fill(names: tuple[str, ...], value: str) -> None:
        spec = _first_variable(version, names)
        if spec is not None and spec["name"] not in extra_inputs and value:
            inputs[spec["name"]] = value[: int(spec.get("max_length", DEFAULT_VARIABLE_MAX_LENGTH))]

    listed = _first_variable(version, PRODUCTS_VARIABLES)
    if listed is not None:
        inputs[listed["name"]] = _products_text(titles, int(listed.get("max_length", DEFAULT_VARIABLE_MAX_LENGTH)))
    else:
        fill(PRODUCT_VARIABLES, titles[0] if titles else "")
        spec = _first_variable(version, MORE_PRODUCTS_VARIABLES)
        if spec is not None and len(titles) > 1:
            inputs[spec["name"]] = _products_text(titles[1:], int(spec.get("max_length", DEFAULT_VARIABLE_MAX_LENGTH)))
    fill(NAME_VARIABLES, customer.name.strip())
    fill(COUNTRY_VARIABLES, customer.country)
    return {k: v for k, v in inputs.items() if v not in ("", None)}


def _products_variable(version: TemplateVersion) -> dict[str, Any] | None:
    return _first_variable(version, PRODUCTS_VARIABLES) or _first_variable(version, PRODUCT_VARIABLES)


def _campaign_params(params: Any) -> dict[str, Any]:
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise InvalidInput(gettext("params must be an object."), fields={"params": ["must be an object"]})
    allowed = {"max_new_tokens", "temperature", "top_p", "seed"}
    unknown = sorted(str(k) for k in params if k not in allowed)
    if unknown:
        raise InvalidInput(
            gettext("Unknown parameter %(printable)r; parameters: %(join)s.")
            % {"printable": printable(unknown[0])[:40], "join": ", ".join(sorted(allowed))},
            fields={"params": [f"unknown {unknown[0][:40]}"]},
        )
    # One piece of copy per customer: the campaign is the batch, each job writes one variant. A low
    # temperature keeps a small model on the template (naming the product first) more often.
    return {"temperature": CAMPAIGN_TEMPERATURE, **params, "num_variants": 1}


def create_campaign(
    *,
    organization: Organization,
    project: Project,
    name: str,
    template: Any = "personalized-recommendation",
    template_version: int | None = None,
    segment: Any = None,
    items_per_customer: Any = 3,
    extra_inputs: Any = None,
    params: Any = None,
    experiment: Any = None,
    landing_url: Any = "",
    actor: Any = None,
    api_key: ApiKey | None = None,
) -> Campaign:
    """One generation job per customer of the segment, about that customer's top recommended items.

    The recommendations come from the project's latest succeeded job. Customers of the
    segment without recommendations are listed in ``skipped``. Jobs are admitted like bulk
    rows (``holds_slot=False``): billed per job, queued behind each other instead of taking
    the plan's concurrent-job slots; when the plan cannot pay for all of them (402), the
    whole campaign is refused and nothing is kept.

    With ``experiment`` (a running experiment of the project, by id) the campaign runs as that
    experiment instead: each customer is assigned an arm (``experiments.serving.assign``, the
    customer's external id as the unit, so their later events count as the arm's outcomes) and
    their copy is the arm's text, written and approved before the experiment started. No job is
    queued and nothing is charged: generating new copy per customer would test the model's samples,
    not the arms. ``landing_url`` is where each customer's tracking link leads (the experiment's
    target URL when empty; its host must be one the experiment allows).
    """
    _own_project(organization, project)
    running, landing_url = _campaign_experiment(organization, project, experiment, landing_url)
    name = (name or "").strip() if isinstance(name, str) else ""
    if not name or len(name) > limits.MAX_CAMPAIGN_NAME_LENGTH or not storable_text(name):
        raise InvalidInput(
            gettext("A campaign needs a name of at most %(MAX_CAMPAIGN_NAME_LENGTH)s characters.")
            % {"MAX_CAMPAIGN_NAME_LENGTH": limits.MAX_CAMPAIGN_NAME_LENGTH},
            fields={"name": [f"1..{limits.MAX_CAMPAIGN_NAME_LENGTH} characters"]},
        )
    version = generation.resolve_version(organization, template, template_version)
    if _products_variable(version) is None:
        raise InvalidInput(
            gettext(
                "The template %(name)r has no variable for the products (%(join)s); choose one that has, "
                "e.g. personalized-recommendation."
            )
            % {"name": version.template.name, "join": ", ".join(PRODUCTS_VARIABLES + PRODUCT_VARIABLES)},
            code="template_without_products",
            fields={"template": ["no products variable"]},
        )
    count = _whole_number(items_per_customer, "items_per_customer", 1, limits.MAX_ITEMS_PER_CUSTOMER)
    if extra_inputs is None:
        extra_inputs = {}
    if not isinstance(extra_inputs, dict):
        raise InvalidInput(gettext("inputs must be an object."), fields={"inputs": ["must be an object"]})
    segment = clean_segment(segment)
    values = _campaign_params(params)
    generation.validate_parameters(version, values)
    job = latest_job(project)
    if job is None:
        raise Conflict(
            gettext("This project has no recommendations yet: run a recommendation job first."),
            code="no_recommendations",
        )
    customers = segment_customers(project, segment)
    total = customers.count()
    limit = segment.get("limit")
    if limit is None and total > limits.max_campaign_customers():
        raise _segment_error(
            f"The segment has {total:,} customers; a campaign reaches at most {limits.max_campaign_customers():,}. "
            "Narrow it or set a limit."
        )
    chosen = list(customers[: min(limit or total, limits.max_campaign_customers())])
    if not chosen:
        raise _segment_error("No customer matches this segment.")
    top = _top_items(job, chosen, count)
    first = next((c for c in chosen if top.get(c.pk)), None)
    if first is not None:
        # Inputs the template cannot take (a missing shared input) are every customer's problem: refuse now.
        titles = [item["title"] for item in top[first.pk]]
        generation.validate_inputs(version, customer_inputs(version, first, titles, extra_inputs))
    with transaction.atomic():
        if running is not None:
            running = _lock_running(running)
        campaign = Campaign.objects.create(
            organization=organization,
            project=project,
            name=name,
            template_version=version,
            recommendation_job=job,
            segment=segment,
            items_per_customer=count,
            extra_inputs=extra_inputs,
            params=values,
            experiment=running,
            landing_url=landing_url,
            created_by=_user(actor),
            api_key=api_key,
        )
        recipients, skipped = [], []
        for customer in chosen:
            items = top.get(customer.pk, [])
            if not items:
                skipped.append({"customer": customer.external_id, "reason": "no recommendations in the latest job"})
                continue
            if running is not None:
                recipients.append(_assign_recipient(campaign, running, customer, items))
            else:
                recipients.append(_queue_recipient(campaign, customer, items, actor=actor, api_key=api_key))
        if not recipients:
            raise _segment_error("No customer of this segment has recommendations; run a recommendation job first.")
        CampaignRecipient.objects.bulk_create(recipients)
        if running is None:  # an experiment campaign has no job to watch: its copy is written already
            transaction.on_commit(lambda: dispatch.watch(campaign.pk))
        campaign.skipped = skipped
        campaign.save(update_fields=["skipped"])
        record(
            "recommendations.campaign_created",
            organization=organization,
            actor=actor,
            api_key=api_key,
            target=campaign,
            customers=len(recipients),
            skipped=len(skipped),
            experiment=str(running.pk) if running is not None else None,
        )
    return campaign


def _experiment_error(message: str, field: str = "experiment", code: str = "invalid_experiment") -> InvalidInput:
    return InvalidInput(message, code=code, fields={field: [message]})


def _campaign_experiment(
    organization: Organization, project: Project, experiment: Any, landing_url: Any
) -> tuple[Experiment | None, str]:
    """The running experiment of the project a campaign runs as (None: none asked) and its landing URL."""
    landing_url = landing_url.strip() if isinstance(landing_url, str) else landing_url
    if experiment in (None, ""):
        if landing_url:
            raise _experiment_error(
                gettext("A landing URL needs an experiment: only an experiment campaign has tracking links."),
                "landing_url", "landing_url_without_experiment",
            )
        return None, ""
    if isinstance(experiment, Experiment):
        experiment = experiment.pk
    # Another organization's experiment, another project's and an unknown id read the same: a 400
    # naming the field, which confirms nothing about other organizations' experiments.
    found = (
        Experiment.objects.filter(organization=organization, project=project, pk=experiment).first()
        if _is_uuid(experiment) else None
    )
    if found is None:
        raise _experiment_error(gettext("The experiment must be one of this project's experiments."))
    _require_running(found)
    if not isinstance(landing_url, str):
        raise _experiment_error(gettext("landing_url must be a URL."), "landing_url", "invalid_landing_url")
    try:
        target = serving.click_target(found, landing_url)
    except InvalidInput as exc:
        raise _experiment_error(
            gettext("landing_url: its host is not the experiment's target URL's or one of its allowed hosts."),
            "landing_url", exc.code,
        ) from None
    return found, target


def _require_running(experiment: Experiment) -> None:
    if not experiment.is_running:
        raise _experiment_error(
            gettext("The experiment %(name)r is %(status)s; a campaign can only run as a running experiment.")
            % {"name": experiment.name, "status": experiment.status},
            code="experiment_not_running",
        )


def _lock_running(experiment: Experiment) -> Experiment:
    """The experiment again, locked until the campaign commits, and still running.

    Stopping and concluding take the same row lock: a stop at this instant either waits for the
    campaign (whose exposures then predate it) or is seen here, and the campaign is refused. A share
    lock would let two campaigns proceed together, but Django offers none; campaigns of one
    experiment are rare enough to queue.
    """
    locked = Experiment.objects.select_for_update(no_key=True).get(pk=experiment.pk)
    _require_running(locked)
    return locked


def _is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def _assign_recipient(
    campaign: Campaign, experiment: Experiment, customer: Customer, items: list[dict[str, Any]]
) -> CampaignRecipient:
    """The customer's arm, their exposure recorded once (a later campaign of the experiment that
    reaches them finds the same assignment, so the same arm, and records nothing new)."""
    served = serving.assign(experiment, customer.external_id)
    return CampaignRecipient(
        campaign=campaign, customer=customer, items=items,
        assignment_id=served.assignment_id, arm_label=served.arm.label, arm_text=served.arm.text,
    )


def _top_items(job: RecommendationJob, customers: list[Customer], count: int) -> dict[Any, list[dict[str, Any]]]:
    rows = (
        Recommendation.objects.filter(job=job, customer__in=customers, rank__lte=count)
        .select_related("item")
        .order_by("customer_id", "rank")
    )
    top: dict[Any, list[dict[str, Any]]] = {}
    for row in rows:
        top.setdefault(row.customer_id, []).append(
            {
                "sku": row.item.sku,
                "title": display_title(row.item.title or row.item.sku),
                "score": row.score,
                "reason": row.reason,
            }
        )
    return top


def _queue_recipient(
    campaign: Campaign, customer: Customer, items: list[dict[str, Any]], *, actor: Any, api_key: ApiKey | None
) -> CampaignRecipient:
    version = campaign.template_version
    inputs = customer_inputs(version, customer, [item["title"] for item in items], campaign.extra_inputs)
    recipient = CampaignRecipient(campaign=campaign, customer=customer, items=items)
    try:
        with transaction.atomic():  # a refused row rolls back alone
            job, _ = generation.submit_generation(
                organization=campaign.organization,
                project=campaign.project,
                version=version,
                inputs=inputs,
                params=campaign.params,
                actor=actor,
                api_key=api_key,
                idempotency_key=f"campaign:{campaign.pk}:{customer.pk}",
                holds_slot=False,
                # The copy may use these items' catalog facts (and the project's general knowledge),
                # never another product's, so it names their real attributes instead of inventing some.
                knowledge_filters={"sku": [item["sku"] for item in items]} if items else None,
            )
    except VariantLimitExceeded:
        raise
    except InvalidInput as exc:  # this customer's inputs only (the first customer's were checked up front)
        recipient.error = exc.detail[:2000]
        if exc.fields:
            recipient.error += " (" + "; ".join(f"{k}: {', '.join(v)}" for k, v in exc.fields.items()) + ")"
    else:
        recipient.job = job
    # Billing refusals (402 quota, suspended) propagate: as with a bulk file, the whole campaign is
    # refused and nothing of it is kept, rather than a campaign that silently reaches part of its segment.
    return recipient


def regeneration_pending(recipient: CampaignRecipient, variant: Variant | None, now: Any) -> bool:
    """A regeneration was asked and its new revision has not arrived (nor had the time to be lost)."""
    if variant is None or variant.revision >= recipient.regenerations or recipient.regenerated_at is None:
        return False
    return now - recipient.regenerated_at < timedelta(seconds=settings.GENERATION_JOB_DEADLINE_S * 2)


def needs_rewrite(recipient: CampaignRecipient, variant: Variant | None) -> bool:
    """Succeeded copy that names none of the customer's items, whose last rewrite (if any) arrived,
    with rewrites left and none refused."""
    return (
        recipient.job is not None
        and recipient.job.status == JobStatus.SUCCEEDED
        and variant is not None
        and variant.revision >= recipient.regenerations
        and recipient.regenerations < MAX_REGENERATIONS
        and not recipient.error
        and not recipient.mentioned(variant.text)
    )


def current_variants(recipients: list[CampaignRecipient]) -> dict[Any, Variant]:
    """The current first variant of each recipient's job, by job id."""
    jobs = [r.job_id for r in recipients if r.job_id]
    return {v.job_id: v for v in Variant.objects.filter(job_id__in=jobs, index=0, is_current=True)}


def repair_campaign(campaign: Campaign) -> bool:
    """Regenerate copy that names none of the customer's recommended items; True while work is pending.

    A campaign promises copy about each customer's items, and a small model sometimes wanders
    off; each new revision is real model output, checked the same way, up to MAX_REGENERATIONS.
    """
    now = timezone.now()
    rows = list(campaign.recipients.filter(job__isnull=False).select_related("job"))
    variants = current_variants(rows)
    pending = False
    for recipient in rows:
        variant = variants.get(recipient.job_id)
        if not recipient.job.is_final or regeneration_pending(recipient, variant, now):
            pending = True
        elif needs_rewrite(recipient, variant):
            pending |= _regenerate(recipient, variant, now)  # type: ignore[arg-type]
    return pending


def _regenerate(recipient: CampaignRecipient, variant: Variant, now: Any) -> bool:
    with transaction.atomic():
        locked = CampaignRecipient.objects.select_for_update().get(pk=recipient.pk)
        if locked.regenerations != recipient.regenerations:
            return True  # another watcher got here first
        try:
            generation.regenerate_variant(variant=variant)
        except DomainError as exc:  # e.g. the plan's tokens ran out: the copy stays as it is
            locked.error = f"Not regenerated: {exc.detail}"[:2000]
            locked.save(update_fields=["error"])
            return False
        locked.regenerations += 1
        locked.regenerated_at = now
        locked.save(update_fields=["regenerations", "regenerated_at"])
    return True
