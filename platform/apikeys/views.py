"""Dashboard pages for API keys (admins): list, create (secret shown once), revoke."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_POST

from apikeys import services
from apikeys.forms import ApiKeyForm
from apikeys.models import ApiKey
from core.errors import DomainError
from core.web import action_done, action_failed, add_domain_error, form_status, post_data
from organizations.models import Role
from organizations.tenancy import current_organization, scoped, scoped_or_404, tenant_required

_FIELD_ERRORS = {"name_required": "name", "invalid_scope": "scope", "invalid_project": "project"}


def _keys_page(request: HttpRequest, *, status: int = 200, form: ApiKeyForm | None = None) -> HttpResponse:
    organization = current_organization(request)
    context = {
        "keys": scoped(request, ApiKey).select_related("project", "created_by"),
        "form": form or ApiKeyForm(organization=organization),
    }
    return render(request, "apikeys/list.html", context, status=status)


@tenant_required(Role.ADMIN)
def apikey_list(request: HttpRequest) -> HttpResponse:
    """GET lists the keys; POST creates one and answers with its secret, which no later page shows."""
    form = ApiKeyForm(post_data(request), organization=current_organization(request))
    if form.is_bound and form.is_valid():
        try:
            issued = services.create_api_key(
                actor=request.user, organization=current_organization(request),
                **form.cleaned_data,
            )
        except DomainError as exc:
            add_domain_error(form, exc, _FIELD_ERRORS)
        else:
            # Rendered in the POST response itself (not stored for a redirect), and never cached.
            response = render(request, "apikeys/created.html", {"api_key": issued.api_key, "secret": issued.secret})
            response["Cache-Control"] = "no-store"
            return response
    return _keys_page(request, form=form, status=form_status(form))


@require_POST
@tenant_required(Role.ADMIN)
def apikey_revoke(request: HttpRequest, pk: Any) -> HttpResponse:
    api_key = scoped_or_404(request, ApiKey.objects.select_related("organization", "project", "created_by"), pk=pk)
    try:
        api_key = services.revoke_api_key(actor=request.user, api_key=api_key)
    except DomainError as exc:
        return action_failed(request, exc, _keys_page)
    return action_done(
        request, f"Key {api_key.name} revoked; it stops working immediately.", redirect_to="apikeys:list",
        fragment="apikeys/_key_row.html", context={"key": api_key},
    )
