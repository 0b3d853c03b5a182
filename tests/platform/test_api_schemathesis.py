"""schemathesis against the OpenAPI schema: every operation, every check, as a real write key, DEBUG off.

The schema is loaded from the app itself (``/api/schema/`` through Django's WSGI
handler, in this process and this test's transaction), so a route added anywhere
is fuzzed the day it is registered. Acme gets one object of every kind first; a
detail operation is called alternately with a random id (404) and with the id of
Acme's real object of that route's model, so the handlers behind the 404 run too.

Every built-in check runs (server errors, undocumented status codes, content types
and headers, response schemas, schema-violating requests accepted, schema-valid
requests rejected, auth ignored, use after delete ...). One is narrowed:
``positive_data_acceptance`` tolerates a 400 whose error ``code`` names a rule the
schema cannot state (``RULES_BEYOND_THE_SCHEMA``, each with its reason); any other
400 for a schema-valid request still fails it.

Examples per operation are kept small for CI (``MAX_EXAMPLES``, one to two minutes
on 2 cores); ``SCHEMATHESIS_MAX_EXAMPLES=200`` runs the same test deeper (README).
"""

from __future__ import annotations

import itertools
import json
import os
import uuid
from typing import Any

import pytest
import schemathesis
from django.urls import Resolver404, resolve
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from billing import ratelimit
from core.text import storable_text
from organizations.api.tenancy import TenantViewSet
from tests.api_routes import ACME_OBJECT_FACTORIES

pytestmark = [pytest.mark.django_db, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

#: Hypothesis examples per operation (plus schemathesis' own coverage cases). SCHEMATHESIS_MAX_EXAMPLES deepens it.
MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "10"))

#: 400 codes for schema-valid requests that break a rule OpenAPI cannot express.
RULES_BEYOND_THE_SCHEMA = {
    # which variables a job's inputs need depends on the template version named in the same body
    "invalid_inputs",
    # a template version must exist for the template named in the same body
    "unknown_template_version",
    # a template's placeholders must be among its declared variables, types and choices must agree
    "invalid_template",
    # a bulk upload's CSV content: encoding, header row, rows against the template's variables
    "invalid_csv",
    "empty_file",
    "no_rows",
    "too_many_rows",
    "file_too_large",
    # a date range's end must not come before its start (two parameters compared)
    "invalid_range",
    # a model slug must name a registry row the organization may use (operators manage the registry)
    "invalid_model",
    # an experiment's arms: approved variants of the project, labels unique, a control text not blank once
    # trimmed; an adaptive floor the arms can share (min_share x arms <= 1); tracking hosts and targets
    "invalid_arms",
    "invalid_min_share",
    "invalid_allowed_hosts",
    "invalid_target_url",
    "invalid_unit",
    "target_not_allowed",
    # goal and outcome event names: letters, digits and _ - . : only (experiments.services.event_name)
    "invalid_goal_event",
    "invalid_event",
    # an outcome names its unit or its assignment, exactly one of the two
    "unit_or_assignment",
    # a campaign's experiment must be a running one of the same project; a landing URL needs an experiment
    "invalid_experiment",
    "experiment_not_running",
    "landing_url_without_experiment",
    # a knowledge document's text must hold something once whitespace is trimmed
    "empty_text",
    "file_or_text",
    # what a file holds (its type by name and content, 415) is read from the file, not from the schema
    "unsupported_file",
    # a training run needs enough distinct examples in the project's data (approved copy, brand examples)
    "too_little_data",
}


def _load_schema() -> Any:
    from config.wsgi import application

    return schemathesis.openapi.from_wsgi("/api/schema/", application)


schema = _load_schema()


@pytest.fixture
def wsgi_app():
    """Django's WSGI handler, called in this thread, inside the test's transaction.

    As Django's test client does: the handler closes the database connection at the end
    of each request (close_old_connections), which would close the test's transaction.
    """
    from django.core import signals
    from django.db import close_old_connections

    from config.wsgi import application

    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield application
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def acme_world(cast):
    """One object of every kind in Acme, so detail routes have something real to find."""
    for make in ACME_OBJECT_FACTORIES.values():
        make(cast)


@pytest.fixture
def auth_header(key_for, acme_world):
    _, _, secret = key_for(scope="write")
    return {"Authorization": f"Bearer {secret}"}


_turns = itertools.count()


def _real_id(cast: Any, path: str) -> str | None:
    """The id of one of Acme's objects of the model behind a detail route, or None."""
    try:
        match = resolve(path.replace("{id}", str(uuid.uuid4())))
    except Resolver404:
        return None
    view = getattr(match.func, "cls", None)
    if view is None or not issubclass(view, TenantViewSet) or view.queryset is None:
        return None
    if view.organization_field == "organization" and view.queryset.model._meta.model_name == "organization":
        return str(cast.org.pk)
    found = view.queryset.model._default_manager.filter(**{view.organization_field: cast.org}).order_by("?").first()
    return str(found.pk) if found is not None else None


def _unstorable(value: Any) -> bool:
    """Whether a JSON value holds text Postgres cannot store (NUL, a lone surrogate), keys included."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not storable_text(item):
                return True
        elif isinstance(item, dict):
            stack.extend([*item.keys(), *item.values()])
        elif isinstance(item, list):
            stack.extend(item)
    return False


def positive_data_acceptance_beyond_schema(ctx: Any, response: Any, case: Any) -> bool | None:
    """``positive_data_acceptance``, except for 400s of rules the schema cannot state.

    Those are the codes in RULES_BEYOND_THE_SCHEMA, and text Postgres cannot store: JSON
    Schema has no way to exclude NUL or lone surrogates from a string, and the API refuses
    them (400) rather than failing to store them (500).
    """
    if response.status_code in (400, 415):  # 415: a file whose content the API does not read
        try:
            code = json.loads(response.content).get("code")
        except (ValueError, AttributeError):
            code = None
        sent = [case.body, case.query, case.path_parameters, case.headers]
        if code in RULES_BEYOND_THE_SCHEMA or _unstorable(sent):
            return None
    return positive_data_acceptance(ctx, response, case)


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_api(case, cast, auth_header, wsgi_app, settings):
    settings.DEBUG = False
    # Thousands of calls from one address in a minute: the limits are tested in test_billing_ratelimit.
    ratelimit.clear()
    if "id" in (case.path_parameters or {}) and case.meta and case.meta.generation.mode.is_positive:
        real = _real_id(cast, case.operation.path) if next(_turns) % 2 else None
        if real is not None:
            case.path_parameters["id"] = real
    case.call_and_validate(
        headers=auth_header,
        excluded_checks=[positive_data_acceptance],
        additional_checks=[positive_data_acceptance_beyond_schema],
    )
