"""An outsider sees nothing of Acme, on every route the API and the dashboard have: generated from the URL resolver."""

from __future__ import annotations

import functools
import uuid
from typing import Any

import pytest
from django.conf import settings
from django.shortcuts import resolve_url
from django.test import Client

from core.parsers import API_PARSER_CLASSES
from organizations.api.tenancy import TenantViewSet
from projects.models import Project
from tests.api_routes import (
    ACME_DASHBOARD_OBJECTS,
    ACME_OBJECT_FACTORIES,
    UNSWEPT_DASHBOARD_ROUTES,
    DashboardRoute,
    Route,
    acme_identifiers,
    acme_object,
    api_routes,
    assert_error_shape,
    call_id,
    dashboard_routes,
    db_state,
    detail_routes,
    list_routes,
    openapi_path,
    row_of,
    tenant_row_ids,
    valid_body,
)

pytestmark = pytest.mark.django_db

CREDENTIALS = ("session", "api_key")
DETAIL_CALLS = [(route, method) for route in detail_routes() for method in route.methods]


@pytest.fixture
def outsider_client(request, cast, client_for, outsider_key):
    """The outsider (owner of Globex) by session or by one of Globex's write keys."""
    return client_for(cast.outsider) if request.param == "session" else outsider_key


def test_the_sweep_found_the_api():
    # A resolver walk that silently finds nothing would make every sweep below pass.
    names = {route.name for route, _ in DETAIL_CALLS}
    assert {"project-detail", "member-detail", "member-transfer-ownership", "api-key-detail"} <= names
    assert any(route.format_suffix for route, _ in DETAIL_CALLS)
    assert {"project-list", "member-list", "me"} <= {route.name for route in list_routes()}


#: Router viewsets that scope themselves: organizations are filtered by the caller's memberships.
SCOPED_OUTSIDE_TENANT_VIEWSET = {"organization"}


def test_every_resource_is_scoped_by_the_tenant_viewset():
    unscoped = sorted({
        route.basename for route in api_routes()
        if route.basename and route.basename not in SCOPED_OUTSIDE_TENANT_VIEWSET
        and not issubclass(route.view_class, TenantViewSet)
    })
    assert not unscoped, f"router viewsets not built on TenantViewSet: {unscoped}"


def test_every_api_view_uses_the_safe_parsers():
    plain = sorted({route.id for route in api_routes() if tuple(route.view_class.parser_classes) != API_PARSER_CLASSES})
    assert not plain, f"views parsing bodies with DRF's default parsers: {plain}"


@pytest.mark.parametrize("method", TenantViewSet._SEALED)
def test_tenant_scoping_cannot_be_overridden(method):
    with pytest.raises(TypeError, match="tenant scoping lives in TenantViewSet"):
        type("Sneaky", (TenantViewSet,), {"queryset": Project.objects.all(), method: lambda self: None})


def test_every_detail_route_has_an_object_factory():
    missing = sorted({route.id for route, _ in DETAIL_CALLS if route.basename not in ACME_OBJECT_FACTORIES})
    assert not missing, f"detail routes without an entry in ACME_OBJECT_FACTORIES: {missing}"


@pytest.mark.parametrize("outsider_client", CREDENTIALS, indirect=True)
@pytest.mark.parametrize(("route", "method"), DETAIL_CALLS, ids=call_id)
def test_outsider_gets_404_on_acme_object(cast, outsider_client, route, method):
    # given
    target = acme_object(cast, route)
    body = valid_body(route, method)
    row_before = row_of(target)
    state_before = db_state()
    # when
    response = getattr(outsider_client, method)(route.url(target.pk), body, format="json")
    # then
    assert response.status_code == 404, (response.status_code, response.content)
    assert assert_error_shape(response)["code"] == "not_found"
    assert row_of(target) == row_before
    assert db_state() == state_before
    # and the answer is the one for an id that exists nowhere: nothing confirms the object exists
    missing = getattr(outsider_client, method)(route.url(uuid.uuid4()), body, format="json")
    assert (response.status_code, response.json()) == (missing.status_code, missing.json())
    options, options_missing = outsider_client.options(route.url(target.pk)), outsider_client.options(
        route.url(uuid.uuid4())
    )
    assert (options.status_code, options.json()) == (options_missing.status_code, options_missing.json())


@pytest.mark.parametrize("outsider_client", CREDENTIALS, indirect=True)
@pytest.mark.parametrize("route", list_routes(), ids=call_id)
def test_outsider_lists_nothing_of_acme(cast, outsider_client, route):
    # given: one object of every kind in Acme
    for make in ACME_OBJECT_FACTORIES.values():
        make(cast)
    secrets_of_acme = acme_identifiers(cast)
    assert len(secrets_of_acme) > 10
    # when
    response = outsider_client.get(route.url())
    # then: the outsider's own view (keys cannot list keys or invitations: 403), never Acme's rows
    assert response.status_code in (200, 403), (response.status_code, response.content)
    text = response.content.decode()
    leaked = sorted(s for s in secrets_of_acme if s in text)
    assert not leaked, f"{route.id} shows the outsider Acme's {leaked}"


@pytest.mark.parametrize("outsider_client", CREDENTIALS, indirect=True)
def test_outsider_sees_own_organization_data(cast, outsider_client):
    """The positive control for the leak scan above: the outsider's lists do show Globex."""
    projects = outsider_client.get("/api/v1/projects/").json()["results"]
    organizations = outsider_client.get("/api/v1/organizations/").json()["results"]

    assert [p["id"] for p in projects] == [str(cast.outsider_project.pk)]
    assert [o["id"] for o in organizations] == [str(cast.outsider_org.pk)]


# --- lists, driven by the schema: filters that name Acme's objects find nothing -------------------


@functools.cache
def _schema() -> dict[str, Any]:
    from drf_spectacular.generators import SchemaGenerator

    return SchemaGenerator().get_schema(request=None, public=True)


def _query_parameters(route: Route) -> list[dict[str, Any]]:
    operation = _schema()["paths"].get(openapi_path(route), {}).get("get", {})
    return [p for p in operation.get("parameters", []) if p["in"] == "query"]


def _acme_filters(route: Route, rows: dict[str, str], cast: Any) -> dict[str, str]:
    """Each id-like query parameter of the route, set to the id of one of Acme's objects of the matching model.

    ``project`` -> an Acme project, ``batch`` -> an Acme bulk batch, ``customer`` -> an Acme customer ...;
    a parameter that matches no model gets Acme's project too.
    """
    by_model: dict[str, str] = {}
    for pk, label in rows.items():
        by_model.setdefault(label.split(".")[1].lower(), pk)
    filters = {}
    for parameter in _query_parameters(route):
        schema = parameter.get("schema", {})
        if schema.get("format") != "uuid" and parameter["name"] not in {"project", "job", "template", "customer"}:
            continue
        name = parameter["name"].replace("_", "")
        match = next((pk for model, pk in by_model.items() if model == name or model.endswith(name)), None)
        filters[parameter["name"]] = match or str(cast.project.pk)
    return filters


LIST_ROUTES = [route for route in list_routes() if not route.format_suffix]


def test_the_schema_drives_the_list_filters():
    # A schema walk that finds no filter would make the filtered sweep below compare nothing.
    filtered = {route.name for route in LIST_ROUTES if any(
        p.get("schema", {}).get("format") == "uuid" for p in _query_parameters(route)
    )}
    assert {"job-list", "customer-list", "variant-list"} <= filtered, filtered


def test_the_sweep_finds_every_kind_of_acme_row(cast):
    for make in ACME_OBJECT_FACTORIES.values():
        make(cast)

    labels = set(tenant_row_ids(cast.org).values())

    assert {
        "organizations.Organization", "projects.Project", "apikeys.ApiKey", "generation.GenerationJob",
        "generation.Variant", "generation.Webhook", "generation.WebhookDelivery", "generation.BulkBatch",
    } <= labels
    assert not set(tenant_row_ids(cast.outsider_org)) & set(tenant_row_ids(cast.org))


@pytest.mark.parametrize("route", [r for r in LIST_ROUTES if r.basename in ACME_OBJECT_FACTORIES], ids=call_id)
def test_acme_sees_its_own_rows_in_its_lists(cast, client_for, route):
    """The positive control of the leak scans: the same lists, read by Acme's owner, do show Acme's rows."""
    for make in ACME_OBJECT_FACTORIES.values():
        make(cast)

    response = client_for(cast.owner).get(route.url())

    assert response.status_code == 200, (response.status_code, response.content[:300])
    text = response.content.decode()
    assert any(identifier in text for identifier in acme_identifiers(cast)), f"{route.id} shows Acme nothing"


@pytest.mark.parametrize("outsider_client", CREDENTIALS, indirect=True)
@pytest.mark.parametrize("route", LIST_ROUTES, ids=call_id)
def test_outsider_filtering_by_acme_ids_finds_nothing(cast, outsider_client, route):
    # given: one object of every kind in Acme, and the list's filters pointed at them
    for make in ACME_OBJECT_FACTORIES.values():
        make(cast)
    rows = tenant_row_ids(cast.org)
    filters = _acme_filters(route, rows, cast)
    secrets_of_acme = acme_identifiers(cast) - set(filters.values())
    # when
    response = outsider_client.get(route.url(), filters)
    # then: an empty or refused answer, never Acme's rows (the ids the outsider sent are not a leak)
    assert response.status_code in (200, 400, 403, 404), (response.status_code, response.content[:300])
    text = response.content.decode()
    leaked = sorted(s for s in secrets_of_acme if s in text)
    assert not leaked, f"{route.id}?{filters} shows the outsider Acme's {leaked}"
    if response.status_code == 200 and isinstance(response.json(), dict) and "results" in response.json():
        found = [item.get("id") for item in response.json()["results"] if isinstance(item, dict)]
        assert not [pk for pk in found if pk in rows], f"{route.id}?{filters} lists Acme rows"


# --- the dashboard: every page that names an object, with Acme's ids ----------------------------

DASHBOARD_ROUTES = [route for route in dashboard_routes() if route.name not in UNSWEPT_DASHBOARD_ROUTES]
DASHBOARD_CALLS = [(route, method) for route in DASHBOARD_ROUTES for method in ("get", "post")]


def _dashboard_id(value: object) -> str:
    return value.name if isinstance(value, DashboardRoute) else str(value).upper()


def _elsewhere(route: DashboardRoute, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The same URL with every id replaced by one that exists nowhere."""
    return {
        name: uuid.uuid4() if converter == "UUIDConverter" else kwargs[name]
        for name, converter in zip(route.kwargs, route.converters, strict=True)
    }


def _signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_sweep_found_the_dashboard():
    names = {route.name for route in dashboard_routes()}
    assert {
        "projects:detail", "generation:job", "generation:variant_card", "generation:batch_results",
        "recommendations:campaign", "billing:invoice_pdf", "organizations:member-role", "apikeys:revoke",
    } <= names
    assert not any(route.path.startswith(("api/", "admin/", "accounts/")) for route in dashboard_routes())


def test_every_dashboard_route_is_swept():
    names = {route.name for route in dashboard_routes()}
    unswept = sorted(names - set(ACME_DASHBOARD_OBJECTS) - set(UNSWEPT_DASHBOARD_ROUTES))
    assert not unswept, (
        f"dashboard routes naming an object with no entry in tests/api_routes.py ACME_DASHBOARD_OBJECTS "
        f"(or, with a reason, UNSWEPT_DASHBOARD_ROUTES): {unswept}"
    )
    stale = sorted((set(ACME_DASHBOARD_OBJECTS) | set(UNSWEPT_DASHBOARD_ROUTES)) - names)
    assert not stale, f"entries for dashboard routes that no longer exist: {stale}"


@pytest.mark.parametrize("route", DASHBOARD_ROUTES, ids=_dashboard_id)
def test_acme_reaches_its_own_objects_on_the_dashboard(cast, route):
    """The positive control: the URLs the sweep below builds do name Acme's objects, for Acme."""
    kwargs = ACME_DASHBOARD_OBJECTS[route.name](cast)

    response = _signed_in(cast.owner).get(route.url(kwargs))

    assert response.status_code in (200, 405), (route.name, response.status_code, response.content[:300])


@pytest.mark.parametrize(("route", "method"), DASHBOARD_CALLS, ids=_dashboard_id)
def test_outsider_gets_404_on_acme_dashboard_object(cast, route, method):
    # given: one of Acme's objects, and the outsider (owner of Globex, so no role stands in the way)
    kwargs = ACME_DASHBOARD_OBJECTS[route.name](cast)
    secrets_of_acme = acme_identifiers(cast) - {str(value) for value in kwargs.values()}
    state_before = db_state()
    outsider = _signed_in(cast.outsider)
    # when
    response = getattr(outsider, method)(route.url(kwargs))
    # then: a 404 (405 where the method is never allowed), as for an id that exists nowhere
    assert response.status_code in (404, 405), (route.name, response.status_code, response.content[:300])
    missing = getattr(outsider, method)(route.url(_elsewhere(route, kwargs)))
    assert response.status_code == missing.status_code
    text = response.content.decode(errors="replace")
    leaked = sorted(s for s in secrets_of_acme if s in text)
    assert not leaked, f"{route.name} shows the outsider Acme's {leaked}"
    assert db_state() == state_before


@pytest.mark.parametrize(("route", "method"), DASHBOARD_CALLS, ids=_dashboard_id)
def test_anonymous_is_sent_to_sign_in_on_acme_dashboard_object(cast, route, method):
    kwargs = ACME_DASHBOARD_OBJECTS[route.name](cast)
    state_before = db_state()

    response = getattr(Client(), method)(route.url(kwargs))

    assert response.status_code in (302, 405), (route.name, response.status_code, response.content[:300])
    if response.status_code == 302:
        assert response["Location"].startswith(resolve_url(settings.LOGIN_URL) + "?next="), response["Location"]
    assert db_state() == state_before
