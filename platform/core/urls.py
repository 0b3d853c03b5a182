"""The server-rendered dashboard. Every page below is scoped to the user's current organization."""

from __future__ import annotations

from django.urls import include, path

from core import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("projects/", include("projects.urls")),
    path("api-keys/", include("apikeys.urls")),
    path("", include("generation.urls")),
    path("recommendations/", include("recommendations.urls")),
    path("", include("organizations.urls")),
]
