from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import include, path

from tests.support.oidc_idp import views

urlpatterns = [
    path("o/", include("oauth2_provider.urls", namespace="oauth2_provider")),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("manage/users/", views.users, name="users"),
    path("manage/users/<str:username>/", views.user, name="user"),
    path("manage/applications/", views.applications, name="applications"),
    path("healthz", views.healthz),
]
