from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.utils.translation import gettext
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import no_content
from organizations import services
from organizations.api.serializers import (
    AcceptInvitationSerializer,
    InvitationSerializer,
    MemberSerializer,
    OrganizationSerializer,
    RoleChangeSerializer,
)
from organizations.api.tenancy import TenantViewSet
from organizations.models import Invitation, Membership, Organization, Role
from organizations.tenancy import credential_tenant


class OrganizationViewSet(viewsets.ReadOnlyModelViewSet):  # type: ignore[type-arg]
    """Organizations the caller belongs to (an API key: only its own)."""

    serializer_class = OrganizationSerializer
    queryset = Organization.objects.none()

    def get_queryset(self) -> QuerySet[Organization]:
        if getattr(self, "swagger_fake_view", False):
            return Organization.objects.none()
        key_tenant = credential_tenant(self.request)
        if key_tenant is not None:
            return Organization.objects.filter(pk=key_tenant.organization.pk)
        return Organization.objects.filter(memberships__user=self.request.user)

    def get_serializer_context(self) -> dict[str, Any]:
        context = super().get_serializer_context()
        key_tenant = credential_tenant(self.request)
        if key_tenant is not None:
            context["roles"] = {key_tenant.organization.pk: key_tenant.role.value}
        elif self.request.user.is_authenticated:
            context["roles"] = dict(
                Membership.objects.filter(user=self.request.user).values_list("organization_id", "role")
            )
        return context


class MemberViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, TenantViewSet):
    """Members of the current organization. Admins change roles and remove members."""

    queryset = Membership.objects.select_related("user")
    serializer_class = MemberSerializer
    action_roles = {
        "partial_update": Role.ADMIN, "destroy": Role.VIEWER, "transfer_ownership": Role.OWNER,
        "leave": Role.VIEWER,
    }

    @extend_schema(request=RoleChangeSerializer, responses=MemberSerializer)
    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        membership = self.get_object()
        data = RoleChangeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        membership = services.change_role(actor=self.actor, membership=membership, role=data.validated_data["role"])
        return Response(MemberSerializer(membership).data)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Remove a member (admins), or yourself (anyone but the owner)."""
        membership = self.get_object()  # first: another organization's member is a 404 for keys too
        self._require_session()
        services.remove_member(actor=self.actor, membership=membership)
        return no_content()

    @extend_schema(request=None, responses=MemberSerializer)
    @action(detail=True, methods=["post"], url_path="transfer-ownership")
    def transfer_ownership(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        new_owner = services.transfer_ownership(
            actor=self.actor, organization=self.tenant.organization, new_owner=self.get_object()
        )
        return Response(MemberSerializer(new_owner).data)

    @extend_schema(request=None, responses={204: None})
    @action(detail=False, methods=["post"])
    def leave(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        self._require_session()
        services.leave_organization(actor=self.actor, organization=self.tenant.organization)
        return no_content()

    def _require_session(self) -> None:
        if self.tenant.api_key is not None:
            raise PermissionDenied(gettext("API keys cannot manage members; an organization admin does that."))


class InvitationViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, mixins.DestroyModelMixin,
    TenantViewSet,
):
    """Invitations of the current organization (admins)."""

    queryset = Invitation.objects.select_related("invited_by")
    serializer_class = InvitationSerializer
    read_role = Role.ADMIN
    write_role = Role.ADMIN

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        invitation, _token = services.invite_member(
            actor=self.actor, organization=self.tenant.organization, **serializer.validated_data
        )
        return Response(InvitationSerializer(invitation).data, status=status.HTTP_201_CREATED)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        services.revoke_invitation(actor=self.actor, invitation=self.get_object())
        return no_content()


class AcceptInvitationView(APIView):
    """Accept an invitation sent to the signed-in user's email address."""

    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(request=AcceptInvitationSerializer, responses=MemberSerializer)
    def post(self, request: Request) -> Response:
        if credential_tenant(request) is not None:
            raise PermissionDenied(gettext("Invitations are accepted by a signed-in person, not an API key."))
        data = AcceptInvitationSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        membership = services.accept_invitation(actor=request.user, token=data.validated_data["token"])
        return Response(MemberSerializer(membership).data, status=status.HTTP_200_OK)
