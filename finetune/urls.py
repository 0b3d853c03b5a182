"""Dashboard pages of a project's brand model, mounted at /brand-model/ (config.urls)."""

from __future__ import annotations

from django.urls import path

from finetune import views

app_name = "finetune"
urlpatterns = [
    path("projects/<uuid:pk>/", views.project_page, name="project"),
    path("projects/<uuid:pk>/rollback/", views.rollback, name="rollback"),
    path("projects/<uuid:pk>/deactivate/", views.deactivate, name="deactivate"),
    path("runs/<uuid:pk>/status/", views.run_status, name="run_status"),
    path("runs/<uuid:pk>/cancel/", views.run_cancel, name="run_cancel"),
    path("adapters/<uuid:pk>/activate/", views.activate, name="activate"),
    path("adapters/<uuid:pk>/export/", views.export, name="export"),
    path("adapters/<uuid:pk>/delete/", views.delete, name="delete"),
]
