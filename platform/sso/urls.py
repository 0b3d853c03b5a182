from __future__ import annotations

from django.urls import path

from sso import views

app_name = "sso"
urlpatterns = [
    path("accounts/sso/", views.sso_start, name="start"),
    path("settings/sso/", views.sso_settings, name="settings"),
    path("settings/sso/provider/remove/", views.provider_remove, name="provider-remove"),
    path("settings/sso/domains/", views.domain_add, name="domain-add"),
    path("settings/sso/domains/<uuid:pk>/verify/", views.domain_verify, name="domain-verify"),
    path("settings/sso/domains/<uuid:pk>/remove/", views.domain_remove, name="domain-remove"),
]
