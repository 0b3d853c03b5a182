from __future__ import annotations

from django.urls import path

from organizations import views

app_name = "organizations"
urlpatterns = [
    path("organizations/new/", views.organization_create, name="create"),
    path("organizations/switch/", views.organization_switch, name="switch"),
    path("settings/", views.organization_settings, name="settings"),
    path("members/", views.members, name="members"),
    path("members/invite/", views.member_invite, name="invite"),
    path("members/leave/", views.members_leave, name="leave"),
    path("members/transfer-ownership/", views.members_transfer, name="transfer"),
    path("members/<uuid:pk>/role/", views.member_role, name="member-role"),
    path("members/<uuid:pk>/remove/", views.member_remove, name="member-remove"),
    path("members/invitations/<uuid:pk>/revoke/", views.invitation_revoke, name="invitation-revoke"),
    path("invitations/<str:token>/", views.invitation_accept, name="invitation-accept"),
]
