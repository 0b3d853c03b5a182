"""Dashboard pages for experiments under /experiments/, and the public tracking paths under /t/ (config.urls)."""

from __future__ import annotations

from django.urls import path

from experiments import views

app_name = "experiments"
urlpatterns = [
    path("experiments/", views.experiment_list, name="list"),
    path("experiments/<uuid:pk>/", views.experiment_detail, name="detail"),
    path("experiments/<uuid:pk>/start/", views.experiment_start, name="start"),
    path("experiments/<uuid:pk>/stop/", views.experiment_stop, name="stop"),
    path("experiments/<uuid:pk>/conclude/", views.experiment_conclude, name="conclude"),
    # Before "track": a pixel's path also matches <str:token>.
    path("t/<str:token>.gif", views.pixel, name="pixel"),
    path("t/<str:token>", views.track, name="track"),
]
