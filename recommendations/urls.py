"""Dashboard pages for recommendations, mounted at /recommendations/ (config.urls)."""

from __future__ import annotations

from django.urls import path

from recommendations import views

app_name = "recommendations"
urlpatterns = [
    path("", views.data, name="data"),
    path("imports/<uuid:pk>/", views.import_detail, name="import"),
    path("jobs/", views.jobs, name="jobs"),
    path("jobs/<uuid:pk>/", views.job_detail, name="job"),
    path("jobs/<uuid:pk>/status/", views.job_status, name="job_status"),
    path("projects/<uuid:pk>/settings/", views.project_settings, name="settings"),
    path("customers/", views.customers, name="customers"),
    path("customers/<uuid:pk>/", views.customer_detail, name="customer"),
    path("items/<uuid:pk>/", views.item_detail, name="item"),
    path("campaigns/", views.campaigns, name="campaigns"),
    path("campaigns/<uuid:pk>/", views.campaign_detail, name="campaign"),
    path("campaigns/<uuid:pk>/progress/", views.campaign_progress, name="campaign_progress"),
    path("campaigns/<uuid:pk>/results.csv", views.campaign_results, name="campaign_results"),
]
