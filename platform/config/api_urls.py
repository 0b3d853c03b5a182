"""``/api/v1/``: every resource of the public API."""

from __future__ import annotations

from django.urls import include, path
from rest_framework.routers import DefaultRouter

from accounts.api.views import MeView
from apikeys.api.views import ApiKeyViewSet
from organizations.api.views import AcceptInvitationView, InvitationViewSet, MemberViewSet, OrganizationViewSet
from projects.api.views import ProjectViewSet

router = DefaultRouter(trailing_slash="/?")
router.include_root_view = False
router.register("organizations", OrganizationViewSet, basename="organization")
router.register("members", MemberViewSet, basename="member")
router.register("invitations", InvitationViewSet, basename="invitation")
router.register("projects", ProjectViewSet, basename="project")
router.register("api-keys", ApiKeyViewSet, basename="api-key")

app_name = "api"
urlpatterns = [
    path("me/", MeView.as_view(), name="me"),
    path("invitations/accept/", AcceptInvitationView.as_view(), name="invitation-accept"),
    path("", include(router.urls)),
]
