"""Dashboard pages for generation, mounted at the site root (config.urls)."""

from __future__ import annotations

from django.urls import path

from generation import views

app_name = "generation"
urlpatterns = [
    path("templates/", views.gallery, name="gallery"),
    path("templates/<uuid:template_id>/generate/", views.generate, name="generate"),
    path("jobs/", views.history, name="history"),
    path("jobs/<uuid:pk>/", views.job_detail, name="job"),
    path("jobs/<uuid:pk>/status/", views.job_status, name="job_status"),
    path("jobs/<uuid:pk>/cancel/", views.job_cancel, name="job_cancel"),
    path("jobs/<uuid:pk>/variants/<int:index>/", views.variant_card, name="variant_card"),
    path("variants/<uuid:pk>/feedback/", views.variant_feedback, name="variant_feedback"),
    path("variants/<uuid:pk>/regenerate/", views.variant_regenerate, name="variant_regenerate"),
    path("projects/<uuid:pk>/brand-voice/", views.brand_voice, name="brand_voice"),
    path("projects/<uuid:pk>/models/", views.project_models, name="project_models"),
    path("bulk/", views.bulk_upload, name="bulk"),
    path("bulk/<uuid:pk>/", views.batch_detail, name="batch"),
    path("bulk/<uuid:pk>/progress/", views.batch_progress, name="batch_progress"),
    path("bulk/<uuid:pk>/results.csv", views.batch_results, name="batch_results"),
]
