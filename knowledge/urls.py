"""Dashboard pages for a project's knowledge, mounted at /knowledge/ (config.urls)."""

from __future__ import annotations

from django.urls import path

from knowledge import views

app_name = "knowledge"
urlpatterns = [
    path("projects/<uuid:pk>/", views.project_knowledge, name="project"),
    path("sources/<uuid:pk>/", views.source_detail, name="source"),
    path("sources/<uuid:pk>/delete/", views.source_delete, name="delete"),
]
