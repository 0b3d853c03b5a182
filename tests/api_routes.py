"""The public API's routes, discovered from the URL resolver, and what the sweeps need to call them.

Nothing here is hand-picked per route: a new route under ``/api/v1/`` joins every
sweep (tenant isolation, role checks, hostile input) the moment it is registered.
What a sweep cannot invent is an object to point a detail route at, so
``ACME_OBJECT_FACTORIES`` maps each router basename to one; a detail route whose
basename is missing there fails ``test_every_detail_route_has_an_object_factory``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.apps import apps
from django.db import models
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from generation.models import JobStatus
from organizations.models import Membership, Role
from sso.models import EmailDomain
from tests.support.experiment_factories import AssignmentFactory, ExperimentFactory
from tests.support.factories import ApiKeyFactory, InvitationFactory, MembershipFactory, ProjectFactory
from tests.support.finetune_factories import BrandAdapterFactory, TrainingRunFactory
from tests.support.generation_factories import (
    BulkBatchFactory,
    GenerationJobFactory,
    ServingModelFactory,
    TemplateVersionFactory,
    VariantFactory,
    WebhookDeliveryFactory,
)
from tests.support.invoice_factories import InvoiceFactory
from tests.support.knowledge_factories import KnowledgeSourceFactory
from tests.support.recommendation_factories import (
    CampaignRecipientFactory,
    CatalogItemFactory,
    CustomerFactory,
    DataImportFactory,
    RecommendationJobFactory,
)

if TYPE_CHECKING:
    from tests.conftest import Cast

API_PREFIX = "api/v1/"
HTTP_METHODS = ("get", "post", "put", "patch", "delete")
WRITE_METHODS = ("post", "put", "patch", "delete")


@dataclass(frozen=True)
class Route:
    name: str  # URL name inside the "api" namespace, e.g. "project-detail"
    regex: str
    view_class: type
    basename: str | None  # the router basename; None for plain API views
    methods: tuple[str, ...]  # lower-case HTTP methods the route answers (HEAD/OPTIONS aside)
    takes_pk: bool
    format_suffix: bool  # the ``.json`` twin DRF's router adds to each route

    @property
    def id(self) -> str:
        return self.name + (".json" if self.format_suffix else "")

    def url(self, pk: object = None) -> str:
        kwargs: dict[str, str] = {}
        if self.takes_pk:
            assert pk is not None, f"{self.id} needs a pk"
            kwargs["pk"] = str(pk)
        if self.format_suffix:
            kwargs["format"] = "json"
        return reverse(f"api:{self.name}", kwargs=kwargs or None)


def _walk(resolver: URLResolver, prefix: str = "") -> Iterator[tuple[str, URLPattern]]:
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            yield from _walk(entry, prefix + str(entry.pattern))
        else:
            yield prefix + str(entry.pattern), entry


def _methods(callback: Any, view_class: type) -> tuple[str, ...]:
    actions = getattr(callback, "actions", None)  # viewsets: {"get": "list", ...}
    if actions:
        return tuple(m for m in HTTP_METHODS if m in actions)
    return tuple(m for m in HTTP_METHODS if hasattr(view_class, m))


def api_routes(*, with_format_suffix: bool = True) -> list[Route]:
    """Every URL pattern under /api/v1/, in resolver order."""
    routes = []
    for full, pattern in _walk(get_resolver()):
        if not full.startswith(API_PREFIX):
            continue
        callback = pattern.callback
        view_class = getattr(callback, "cls", None) or callback.view_class
        groups = set(pattern.pattern.regex.groupindex)
        route = Route(
            name=pattern.name or "",
            regex=full,
            view_class=view_class,
            basename=getattr(callback, "initkwargs", {}).get("basename"),
            methods=_methods(callback, view_class),
            takes_pk="pk" in groups,
            format_suffix="format" in groups,
        )
        if with_format_suffix or not route.format_suffix:
            routes.append(route)
    return routes


def detail_routes() -> list[Route]:
    return [r for r in api_routes() if r.takes_pk]


def list_routes() -> list[Route]:
    """Routes that list or show something without naming an object: what an outsider can GET."""
    return [r for r in api_routes() if not r.takes_pk and "get" in r.methods]


def write_calls(*, with_format_suffix: bool = False) -> list[tuple[Route, str]]:
    return [
        (route, method)
        for route in api_routes(with_format_suffix=with_format_suffix)
        for method in route.methods
        if method in WRITE_METHODS
    ]


def call_id(value: object) -> str:
    """pytest ids for (route, method) parameters."""
    if isinstance(value, Route):
        return value.id
    return str(value).upper()


# --- Objects in Acme, one per router basename -------------------------------------------

ACME_OBJECT_FACTORIES: dict[str, Callable[[Cast], models.Model]] = {
    "organization": lambda cast: cast.org,
    "member": lambda cast: MembershipFactory(organization=cast.org, role=Role.EDITOR),
    "invitation": lambda cast: InvitationFactory(organization=cast.org, email="invitee@acme.test"),
    "project": lambda cast: ProjectFactory(organization=cast.org, name="Acme launch", slug="acme-launch"),
    "api-key": lambda cast: ApiKeyFactory(organization=cast.org, created_by=cast.owner),
    "project-content": lambda cast: cast.project,
    "template": lambda cast: TemplateVersionFactory(template__organization=cast.org).template,
    "job": lambda cast: GenerationJobFactory(project=cast.project, status=JobStatus.QUEUED),
    # A finished job's stream is answered at once; an unfinished one's would follow it for minutes.
    "job-events": lambda cast: VariantFactory(job__project=cast.project, index=0).job,
    "variant": lambda cast: VariantFactory(job__project=cast.project, index=0),
    "webhook": lambda cast: WebhookDeliveryFactory(webhook__organization=cast.org, job__project=cast.project).webhook,
    "bulk-batch": lambda cast: BulkBatchFactory(project=cast.project),
    # A model private to Acme: the only kind of registry entry that is one organization's.
    "model": lambda cast: ServingModelFactory(organization=cast.org),
    "project-generation": lambda cast: cast.project,
    "catalog-item": lambda cast: CatalogItemFactory(project=cast.project),
    "customer": lambda cast: CustomerFactory(project=cast.project),
    "data-import": lambda cast: DataImportFactory(project=cast.project),
    "recommendation-job": lambda cast: RecommendationJobFactory(project=cast.project),
    "campaign": lambda cast: CampaignRecipientFactory(campaign__project=cast.project).campaign,
    "project-recommendations": lambda cast: cast.project,
    "invoice": lambda cast: InvoiceFactory(organization=cast.org),
    "project-knowledge": lambda cast: cast.project,
    "knowledge-source": lambda cast: KnowledgeSourceFactory(project=cast.project),
    "project-brand-model": lambda cast: cast.project,
    "training-run": lambda cast: TrainingRunFactory(project=cast.project),
    "brand-model": lambda cast: BrandAdapterFactory(project=cast.project),
    # Running, with an exposure: assign, outcomes and results have something to work on.
    "experiment": lambda cast: AssignmentFactory(
        experiment=ExperimentFactory(project=cast.project, status="running"), unit="acme-visitor"
    ).experiment,
}


def acme_object(cast: Cast, route: Route) -> models.Model:
    assert route.basename in ACME_OBJECT_FACTORIES, (
        f"No factory for the detail route {route.id} (basename {route.basename!r}): "
        "add one to tests/api_routes.py ACME_OBJECT_FACTORIES so the sweeps cover it."
    )
    return ACME_OBJECT_FACTORIES[route.basename](cast)


#: A request each write route would accept from someone allowed to make it, so a
#: refusal in a sweep is the permission check and not the validator.
VALID_BODIES: dict[tuple[str, str], dict[str, Any] | Callable[[], dict[str, Any]]] = {
    ("project-list", "post"): {"name": "Hijack", "slug": "hijack"},
    ("project-detail", "put"): {"name": "Hijacked", "slug": "hijacked", "description": "", "default_language": "de"},
    ("project-detail", "patch"): {"name": "Hijacked"},
    ("member-detail", "patch"): {"role": Role.ADMIN.value},
    ("invitation-list", "post"): {"email": "mallory@evil.test", "role": Role.ADMIN.value},
    ("api-key-list", "post"): {"name": "Hijack", "scope": "write"},
    ("invitation-accept", "post"): {"token": "not-a-real-token"},
    ("template-list", "post"): {
        "name": "Hijack",
        "variables": [{"name": "product"}],
        "prompt": "Write about {product}.",
    },
    ("template-versions", "post"): {"variables": [{"name": "product"}], "prompt": "Now {product}."},
    ("project-content-brand-voice", "put"): {"tone": "Hijacked", "words_to_avoid": ["quality"]},
    ("project-content-brand-voice", "patch"): {"tone": "Hijacked"},
    ("job-list", "post"): lambda: {
        "project": str(_acme_project().pk),
        "template": "product-description",
        "inputs": {"product": "Bulbs"},
    },
    ("variant-detail", "patch"): {"rating": 1, "approved": True},
    ("webhook-list", "post"): {"url": "https://evil.test/hook"},
    ("event-list", "post"): lambda: {
        "project": str(_acme_project().pk),
        "items": [{"sku": "HIJACK-1", "title": "Hijacked towel"}],
        "events": [{"customer": "mallory", "sku": "HIJACK-1", "timestamp": "2024-01-01T00:00:00Z"}],
    },
    ("recommendation-job-list", "post"): lambda: {"project": str(_acme_project().pk), "k": 5},
    ("campaign-list", "post"): lambda: {"project": str(_acme_project().pk), "name": "Hijack"},
    ("project-generation-generation-settings", "put"): {"default_model": None},
    ("project-generation-generation-settings", "patch"): {"default_model": None},
    ("project-recommendations-recommendation-settings", "put"): {"exclude_purchased": False},
    ("project-recommendations-recommendation-settings", "patch"): {"exclude_purchased": False},
    ("subscription-list", "post"): {"plan": "pro"},
    ("project-knowledge-knowledge", "post"): {"title": "Hijack", "text": "Hijacked facts."},
    ("knowledge-source-detail", "patch"): {"title": "Hijacked"},
    ("experiment-list", "post"): lambda: {
        "project": str(_acme_project().pk),
        "name": "Hijack",
        "arms": [{"text": "Hijacked A"}, {"text": "Hijacked B"}],
    },
    ("experiment-detail", "put"): {"name": "Hijacked", "arms": [{"text": "Hijacked A"}, {"text": "Hijacked B"}]},
    ("experiment-detail", "patch"): {"name": "Hijacked"},
    ("experiment-outcomes", "post"): {"unit": "acme-visitor", "event": "click", "event_id": "hijack-1"},
    ("project-brand-model-training-runs", "post"): {"config": {"epochs": 1}},
    ("project-brand-model-brand-models-rollback", "post"): {"insist": True},
    ("brand-model-activate", "post"): {"insist": True},
    ("experiment-assign-many", "post"): {"units": ["mallory-1", "acme-visitor"]},
}


#: Query parameters a GET route cannot answer 200 without (what a caller must always send).
REQUIRED_QUERY: dict[str, dict[str, str]] = {
    "experiment-assign": {"unit": "acme-visitor"},
    "project-knowledge-knowledge-search": {"q": "rain jacket"},
}


def _acme_project() -> Any:
    from projects.models import Project

    return Project.objects.get(organization__slug="acme", slug="spring")


def valid_body(route: Route, method: str) -> dict[str, Any]:
    body = VALID_BODIES.get((route.name, method), {})
    return body() if callable(body) else body


def acme_identifiers(cast: Cast) -> set[str]:
    """Strings only Acme's data contains: every id of an Acme row, and its people's emails."""
    from apikeys.models import ApiKey
    from organizations.models import Invitation
    from projects.models import Project

    ids = {str(cast.org.pk)}
    ids |= {str(pk) for pk in Membership.objects.filter(organization=cast.org).values_list("pk", flat=True)}
    ids |= {str(pk) for pk in Project.objects.filter(organization=cast.org).values_list("pk", flat=True)}
    ids |= {str(pk) for pk in ApiKey.objects.filter(organization=cast.org).values_list("pk", flat=True)}
    ids |= {str(pk) for pk in Invitation.objects.filter(organization=cast.org).values_list("pk", flat=True)}
    ids |= set(ApiKey.objects.filter(organization=cast.org).values_list("prefix", flat=True))
    ids |= set(Membership.objects.filter(organization=cast.org).values_list("user__email", flat=True))
    ids |= set(Invitation.objects.filter(organization=cast.org).values_list("email", flat=True))
    ids |= _generation_identifiers(cast)
    ids |= _recommendation_identifiers(cast)
    ids |= _billing_identifiers(cast)
    ids |= _finetune_identifiers(cast)
    ids |= set(tenant_row_ids(cast.org))
    return ids


# --- Every tenant-owned row, found from the models --------------------------------------------


def organization_path(model: type[models.Model], depth: int = 3) -> str | None:
    """The lookup from ``model`` to its organization (``organization``, ``job__organization`` ...), or None.

    Found by following foreign keys, so a model added by any app is covered without an entry here.
    """
    from organizations.models import Organization

    if model is Organization:
        return "pk"
    frontier: list[tuple[type[models.Model], str]] = [(model, "")]
    for _ in range(depth):
        following = []
        for current, prefix in frontier:
            for field in current._meta.concrete_fields:
                if not isinstance(field, models.ForeignKey):  # OneToOneField is one too
                    continue
                target = field.related_model
                if target is Organization:
                    return prefix + field.name
                following.append((target, f"{prefix}{field.name}__"))
        frontier = following
    return None


def tenant_row_ids(organization: Any) -> dict[str, str]:
    """``{id: model label}`` for every row of every model that belongs to the organization.

    Only UUID keys: an integer id such as ``2`` would be found in any answer by chance.
    """
    found: dict[str, str] = {}
    for model in apps.get_models():
        if not isinstance(model._meta.pk, models.UUIDField):
            continue
        path = organization_path(model)
        if path is None:
            continue
        lookup = "pk" if path == "pk" else path
        for pk in model._default_manager.filter(**{lookup: organization.pk}).values_list("pk", flat=True):
            found[str(pk)] = model._meta.label
    return found


def openapi_path(route: Route) -> str:
    """'api/v1/^projects/(?P<pk>[^/.]+)/?$' -> '/api/v1/projects/{id}/' (as drf-spectacular writes it)."""
    import re

    path = route.regex.replace("^", "").replace("$", "").replace("/?", "/")
    return "/" + re.sub(r"\(\?P<pk>[^)]*\)", "{id}", path)


def _generation_identifiers(cast: Cast) -> set[str]:
    from generation.models import BulkBatch, GenerationJob, ServingModel, Template, TemplateVersion, Variant, Webhook

    rows = [
        Template.objects.filter(organization=cast.org),
        TemplateVersion.objects.filter(template__organization=cast.org),
        GenerationJob.objects.filter(organization=cast.org),
        Variant.objects.filter(job__organization=cast.org),
        Webhook.objects.filter(organization=cast.org),
        BulkBatch.objects.filter(organization=cast.org),
    ]
    ids = {str(pk) for queryset in rows for pk in queryset.values_list("pk", flat=True)}
    ids |= set(Template.objects.filter(organization=cast.org).values_list("slug", flat=True))
    ids |= set(ServingModel.objects.filter(organization=cast.org).values_list("slug", flat=True))
    return ids


def _finetune_identifiers(cast: Cast) -> set[str]:
    from finetune.models import TrainingRun
    from generation.models import BrandAdapter

    rows = [TrainingRun.objects.filter(organization=cast.org), BrandAdapter.objects.filter(organization=cast.org)]
    return {str(pk) for queryset in rows for pk in queryset.values_list("pk", flat=True)}


def _billing_identifiers(cast: Cast) -> set[str]:
    from billing.models import Invoice

    invoices = Invoice.objects.filter(organization=cast.org)
    return {str(pk) for pk in invoices.values_list("pk", flat=True)} | set(invoices.values_list("number", flat=True))


def _recommendation_identifiers(cast: Cast) -> set[str]:
    from recommendations.models import Campaign, CatalogItem, Customer, DataImport, RecommendationJob

    rows = [
        model.objects.filter(organization=cast.org)
        for model in (CatalogItem, Customer, DataImport, RecommendationJob, Campaign)
    ]
    return {str(pk) for queryset in rows for pk in queryset.values_list("pk", flat=True)}


# --- Database snapshots ----------------------------------------------------------------------

#: Columns that change on a legitimate read: a key's last use, a user's last login.
_VOLATILE_FIELDS = {"apikeys.apikey": {"last_used_at"}, "accounts.user": {"last_login"}}
#: Tables a request writes without changing anything a tenant owns.
_IGNORED_MODELS = {"sessions.session"}


def row_of(obj: models.Model) -> dict[str, Any] | None:
    """The object's stored row, or None once it is gone."""
    return type(obj)._default_manager.filter(pk=obj.pk).values().first()


def db_state() -> dict[str, list[dict[str, Any]]]:
    """Every row of every model (minus volatile columns): equal snapshots mean nothing was written."""
    state = {}
    for model in apps.get_models():
        label = model._meta.label_lower
        if label in _IGNORED_MODELS or not model._meta.managed:
            continue
        skip = _VOLATILE_FIELDS.get(label, set())
        rows = model._default_manager.order_by("pk").values()
        state[label] = [{k: v for k, v in row.items() if k not in skip} for row in rows]
    return state


def assert_error_shape(response: Any) -> dict[str, Any]:
    """An API error: JSON with a string ``code`` and ``detail`` (and ``fields`` for validation)."""
    assert response["Content-Type"].startswith("application/json"), (response.status_code, response.content[:300])
    body = response.json()
    assert isinstance(body, dict), body
    assert isinstance(body.get("code"), str) and body["code"], body
    assert isinstance(body.get("detail"), str) and body["detail"], body
    if "fields" in body:
        assert isinstance(body["fields"], dict), body
    return body


# --- Dashboard routes: every page outside /api/, /admin/ and /accounts/ that names an object ---------

#: URL prefixes that are not the dashboard: the API (swept above), Django's admin, allauth's pages.
NOT_DASHBOARD = ("api/", "admin/", "accounts/")


@dataclass(frozen=True)
class DashboardRoute:
    name: str  # namespaced URL name, e.g. "generation:job"
    path: str  # e.g. "jobs/<uuid:pk>/"
    kwargs: tuple[str, ...]  # the URL's arguments, e.g. ("pk", "index")
    converters: tuple[str, ...]  # their converters' class names, e.g. ("UUIDConverter", "IntConverter")

    @property
    def id(self) -> str:
        return self.name

    def url(self, kwargs: dict[str, Any]) -> str:
        return reverse(self.name, kwargs=kwargs)


def _walk_named(resolver: URLResolver, prefix: str = "", namespace: str = "") -> Iterator[tuple[str, str, URLPattern]]:
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from _walk_named(entry, prefix + str(entry.pattern), inner)
        else:
            yield prefix + str(entry.pattern), namespace, entry


def dashboard_routes() -> list[DashboardRoute]:
    """Every URL pattern outside the API, the admin and the account pages that takes an argument."""
    routes = []
    for full, namespace, pattern in _walk_named(get_resolver()):
        if full.startswith(NOT_DASHBOARD) or not pattern.pattern.regex.groupindex:
            continue
        converters = getattr(pattern.pattern, "converters", {})
        kwargs = tuple(pattern.pattern.regex.groupindex)
        routes.append(DashboardRoute(
            name=namespace + (pattern.name or ""),
            path=full,
            kwargs=kwargs,
            converters=tuple(type(converters[k]).__name__ if k in converters else "regex" for k in kwargs),
        ))
    return routes


def _variant_card(cast: Cast) -> dict[str, Any]:
    variant = VariantFactory(job__project=cast.project, index=0)
    return {"pk": variant.job.pk, "index": variant.index}


def _pk(make: Callable[[Cast], models.Model]) -> Callable[[Cast], dict[str, Any]]:
    return lambda cast: {"pk": make(cast).pk}


_acme_job = _pk(lambda cast: GenerationJobFactory(project=cast.project, status=JobStatus.QUEUED))
_acme_variant = _pk(lambda cast: VariantFactory(job__project=cast.project, index=0))
_acme_batch = _pk(lambda cast: BulkBatchFactory(project=cast.project))
_acme_project_pk = _pk(lambda cast: cast.project)
_acme_invoice = _pk(lambda cast: InvoiceFactory(organization=cast.org))
_acme_recommendation_job = _pk(lambda cast: RecommendationJobFactory(project=cast.project))
_acme_campaign = _pk(lambda cast: CampaignRecipientFactory(campaign__project=cast.project).campaign)
_acme_experiment = _pk(lambda cast: ExperimentFactory(project=cast.project))
_acme_member = _pk(lambda cast: MembershipFactory(organization=cast.org, role=Role.EDITOR))
_acme_email_domain = _pk(lambda cast: EmailDomain.objects.create(organization=cast.org, domain="sweep.acme.example"))

#: For each dashboard route that names an object, the URL arguments naming one of Acme's.
#: A route missing here (and from ``UNSWEPT_DASHBOARD_ROUTES``) fails
#: ``test_every_dashboard_route_is_swept``.
ACME_DASHBOARD_OBJECTS: dict[str, Callable[[Cast], dict[str, Any]]] = {
    "billing:invoice": _acme_invoice,
    "billing:invoice_pdf": _acme_invoice,
    "projects:detail": _acme_project_pk,
    "projects:edit": _acme_project_pk,
    "projects:delete": _acme_project_pk,
    "apikeys:revoke": _pk(lambda cast: ApiKeyFactory(organization=cast.org, created_by=cast.owner)),
    "generation:generate": lambda cast: {
        "template_id": TemplateVersionFactory(template__organization=cast.org).template.pk
    },
    "generation:job": _acme_job,
    "generation:job_status": _acme_job,
    "generation:job_cancel": _acme_job,
    "generation:variant_card": _variant_card,
    "generation:variant_feedback": _acme_variant,
    "generation:variant_regenerate": _acme_variant,
    "generation:brand_voice": _acme_project_pk,
    "generation:project_models": _acme_project_pk,
    "generation:batch": _acme_batch,
    "generation:batch_progress": _acme_batch,
    "generation:batch_results": _acme_batch,
    "recommendations:import": _pk(lambda cast: DataImportFactory(project=cast.project)),
    "recommendations:job": _acme_recommendation_job,
    "recommendations:job_status": _acme_recommendation_job,
    "recommendations:settings": _acme_project_pk,
    "recommendations:customer": _pk(lambda cast: CustomerFactory(project=cast.project)),
    "recommendations:item": _pk(lambda cast: CatalogItemFactory(project=cast.project)),
    "recommendations:campaign": _acme_campaign,
    "recommendations:campaign_progress": _acme_campaign,
    "recommendations:campaign_results": _acme_campaign,
    "organizations:member-role": _acme_member,
    "organizations:member-remove": _acme_member,
    "organizations:invitation-revoke": _pk(lambda cast: InvitationFactory(organization=cast.org)),
    "knowledge:project": _acme_project_pk,
    "knowledge:source": _pk(lambda cast: KnowledgeSourceFactory(project=cast.project)),
    "knowledge:delete": _pk(lambda cast: KnowledgeSourceFactory(project=cast.project)),
    "experiments:detail": _acme_experiment,
    "experiments:start": _acme_experiment,
    "experiments:stop": _acme_experiment,
    "experiments:conclude": _acme_experiment,
    "finetune:project": _acme_project_pk,
    "finetune:rollback": _acme_project_pk,
    "finetune:deactivate": _acme_project_pk,
    "finetune:run_status": _pk(lambda cast: TrainingRunFactory(project=cast.project)),
    "finetune:run_cancel": _pk(lambda cast: TrainingRunFactory(project=cast.project, status="running")),
    "finetune:activate": _pk(lambda cast: BrandAdapterFactory(project=cast.project)),
    "finetune:export": _pk(lambda cast: BrandAdapterFactory(project=cast.project)),
    "finetune:delete": _pk(lambda cast: BrandAdapterFactory(project=cast.project)),
    "sso:domain-verify": _acme_email_domain,
    "sso:domain-remove": _acme_email_domain,
}

#: Dashboard routes with arguments that do not name a tenant's object, and why.
UNSWEPT_DASHBOARD_ROUTES: dict[str, str] = {
    "experiments:track": (
        "public by design, named by a signed token rather than an id: the link in a customer's email or page "
        "(tests/experiments/test_experiments_tracking.py: tampered and foreign tokens are refused)"
    ),
    "experiments:pixel": "the open-tracking twin of experiments:track, as public and signed",
    "organizations:invitation-accept": (
        "named by the invitation's secret token, not an id: the emailed link is meant to be opened by someone "
        "outside the organization, and only the invited email can accept (tests/platform/test_web_members.py)"
    ),
}
