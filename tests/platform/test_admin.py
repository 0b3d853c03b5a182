"""Operators: every model is registered, and every admin list and change page renders."""

from __future__ import annotations

import re

import pytest
from django.apps import apps
from django.contrib import admin
from django.urls import reverse

from generation.models import GenerationJob
from tests.support.factories import UserFactory

pytestmark = pytest.mark.django_db

PROJECT_APPS = {
    "accounts", "organizations", "projects", "apikeys", "audit", "sso", "generation", "billing", "recommendations",
}


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


def test_admin_sections_have_distinct_names_and_proper_plurals(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))

    app_list = client.get(reverse("admin:index")).context["app_list"]

    sections = [str(app["name"]) for app in app_list]
    assert len(sections) == len(set(sections)), sections
    assert {"Accounts", "Users", "API keys"} <= set(sections)  # allauth's email addresses, our users, keys
    models = {str(model["name"]) for app in app_list for model in app["models"]}
    assert {"Bulk batches", "Webhook deliveries"} <= models
    # Django's default plural only appends "s": "Bulk batchs", "Webhook deliverys".
    assert not {name for name in models if re.search(r"(?:[^aeiou]ys|chs|shs|xs|ss)$", name)}


def test_the_job_list_leads_with_status_in_few_columns():
    job_admin = admin.site._registry[GenerationJob]

    assert job_admin.list_display[:2] == ["short_id", "status"]
    assert len(job_admin.list_display) <= 7
    assert job_admin.short_id(GenerationJob(pk="2810444c-0000-4000-8000-000000000000")) == "2810444c"
