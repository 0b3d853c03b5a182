"""Operators: every model is registered, and every admin list and change page renders."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.contrib import admin
from django.urls import reverse

from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

PROJECT_APPS = {"accounts", "organizations", "projects", "apikeys", "audit", "generation", "billing", "recommendations"}


def test_every_project_model_is_registered_in_the_admin():
    missing = [
        model._meta.label
        for model in apps.get_models()
        if model._meta.app_label in PROJECT_APPS and model not in admin.site._registry
    ]
    assert missing == []


def test_every_admin_changelist_renders_with_search(cast, client):
    staff = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(staff)
    for model, model_admin in admin.site._registry.items():
        if model._meta.app_label not in PROJECT_APPS:
            continue
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        response = client.get(url, {"q": "acme"} if model_admin.search_fields else {})
        assert response.status_code == 200, url
        first = model.objects.first()
        if first is not None:
            change = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_change", args=[first.pk])
            assert client.get(change).status_code == 200, change
