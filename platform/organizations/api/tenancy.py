"""The tenant-scoped base viewset of every API resource, and the role permission it applies."""

from __future__ import annotations

from functools import cached_property
from typing import Any, ClassVar

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import slug_re
from django.db.models import F, Q, QuerySet
from django.utils.translation import gettext
from rest_framework import exceptions, permissions, viewsets
from rest_framework.request import Request

from core.ids import parse_uuid
from organizations.models import Role
from organizations.tenancy import Tenant, resolve_tenant

SAFE_ACTIONS = frozenset({"list", "retrieve", "metadata"})


class HasTenantRole(permissions.BasePermission):
    """The caller's organization role (or key scope) must reach the view's required role.

    A refusal goes through ``TenantViewSet.permission_denied``, which answers 404
    instead of 403 when the URL names an object outside the caller's scope.
    """

    def has_permission(self, request: Request, view: Any) -> bool:
        tenant = view.tenant
        required = view.required_role()
        if not tenant.has_role(required):
            self.message = f"This needs the {required.label.lower()} role or higher" + (
                " (a read-only key cannot write)." if tenant.api_key and tenant.role == Role.VIEWER else "."
            )
            return False
        if tenant.api_key is not None and required.at_least(Role.ADMIN):
            self.message = "API keys cannot manage members or keys; an organization admin does that in the dashboard."
            return False
        return True


class TenantViewSet(viewsets.GenericViewSet):  # type: ignore[type-arg]
    """Base for every tenant-owned resource.

    ``get_queryset`` always filters by the caller's organization (and project,
    for project-restricted keys). Subclasses narrow the base queryset through
    ``get_base_queryset`` and cannot override ``get_queryset``/``get_object``:
    defining either raises at import time. Another organization's object is
    therefore simply absent: a 404, never a 403 that confirms it exists, and
    a role refusal on it is a 404 too (``permission_denied``, also sealed).
    """

    permission_classes = (permissions.IsAuthenticated, HasTenantRole)
    #: Lookup path from the model to its organization.
    organization_field: ClassVar[str] = "organization"
    #: Lookup path from the model to its project, or None for organization-level resources,
    #: which project-restricted keys may not touch at all.
    project_field: ClassVar[str | None] = None
    read_role: ClassVar[Role] = Role.VIEWER
    write_role: ClassVar[Role] = Role.EDITOR
    #: Per-action overrides, e.g. {"destroy": Role.ADMIN}.
    action_roles: ClassVar[dict[str, Role]] = {}
    #: Rows every organization sees besides its own, as a lookup, e.g. ``{"organization__isnull": True}``
    #: for the built-in template library. They are shared reads: the view must refuse writes on them.
    shared_rows: ClassVar[dict[str, Any] | None] = None
    #: A field a detail URL may name the object by instead of its id (templates: ``/templates/{slug}/``),
    #: used for any value that is not a UUID. Where a row of the organization and a shared row have
    #: the same value, the organization's own is the one found, as ``services.resolve_version`` does.
    slug_lookup_field: ClassVar[str | None] = None

    _SEALED = ("get_queryset", "get_object", "tenant", "permission_denied")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in cls._SEALED:
            if name in cls.__dict__:
                raise TypeError(
                    f"{cls.__name__} overrides {name}; tenant scoping lives in TenantViewSet. "
                    "Narrow the queryset in get_base_queryset() instead."
                )

    @cached_property
    def tenant(self) -> Tenant:
        """Resolved on first use, which is HasTenantRole, right after authentication."""
        tenant = resolve_tenant(self.request)
        if tenant is None:
            raise exceptions.PermissionDenied(
                gettext("You do not belong to any organization yet; create one first.")
            )
        if tenant.project_id is not None and self.project_field is None:
            raise exceptions.PermissionDenied(
                "This API key is restricted to one project and cannot reach this resource."
            )
        return tenant

    def permission_denied(self, request: Request, message: str | None = None, code: str | None = None) -> None:
        """Refuse; but a URL naming an object outside the caller's scope is a 404, as it is for reads.

        Otherwise an outsider (or a project-restricted key) would get 403 on some
        methods and 404 on others for the same foreign object.
        """
        if request.successful_authenticator is not None and self._names_object_out_of_scope():
            raise exceptions.NotFound()
        super().permission_denied(request, message=message, code=code)

    def _names_object_out_of_scope(self) -> bool:
        lookup_url_kwarg = self.lookup_url_kwarg or self.lookup_field
        if lookup_url_kwarg not in self.kwargs:
            return False
        try:
            return not self._named(self.get_queryset(), self.kwargs[lookup_url_kwarg]).exists()
        except (TypeError, ValueError, DjangoValidationError):
            return True

    def _named(self, queryset: QuerySet[Any], value: Any) -> QuerySet[Any]:
        """The rows a detail URL's ``value`` names: by id, or by ``slug_lookup_field``, own rows first."""
        if self.slug_lookup_field is not None and parse_uuid(value) is None:
            if not slug_re.fullmatch(str(value)):  # no slug has it; "\x00" would even fail the query
                return queryset.none()
            own_first = F(self.organization_field).asc(nulls_last=True)
            return queryset.filter(**{self.slug_lookup_field: value}).order_by(own_first)
        return queryset.filter(**{self.lookup_field: value})

    def get_object(self) -> Any:
        """DRF's ``get_object`` over the scoped queryset, also finding an object by ``slug_lookup_field``."""
        queryset = self.filter_queryset(self.get_queryset())
        value = self.kwargs[self.lookup_url_kwarg or self.lookup_field]
        try:
            # A slice, not ``first()``: one row by its id needs no ORDER BY compiled and sent on every call.
            found = next(iter(self._named(queryset, value)[:1]), None)
        except (TypeError, ValueError, DjangoValidationError):  # not an id at all: nothing has it
            found = None
        if found is None:
            raise exceptions.NotFound()
        self.check_object_permissions(self.request, found)
        return found

    def required_role(self) -> Role:
        if self.action in self.action_roles:
            return self.action_roles[self.action]
        if self.action in SAFE_ACTIONS or self.request.method in permissions.SAFE_METHODS:
            return self.read_role
        return self.write_role

    def get_base_queryset(self) -> QuerySet[Any]:
        assert self.queryset is not None, f"{type(self).__name__} needs a queryset"
        return self.queryset.all()

    def get_queryset(self) -> QuerySet[Any]:
        if getattr(self, "swagger_fake_view", False):  # schema generation has no caller
            return self.get_base_queryset().none()
        tenant: Tenant = self.tenant
        own = Q(**{self.organization_field: tenant.organization})
        queryset = self.get_base_queryset().filter(own | Q(**self.shared_rows) if self.shared_rows else own)
        if tenant.project_id is not None:
            assert self.project_field is not None
            queryset = queryset.filter(**{self.project_field: tenant.project_id})
        return queryset

    @property
    def actor(self) -> Any:
        """The user behind the request, or None for API keys."""
        return self.tenant.user
