"""Seed a demo organization, owner and project; idempotent, prints the credentials."""

from __future__ import annotations

import secrets
from typing import Any

from allauth.account.models import EmailAddress
from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from billing.services import assign_plan
from organizations.models import Organization
from organizations.services import create_organization
from projects.models import Project
from projects.services import create_project
from recommendations import demo
from recommendations.importing import import_events
from recommendations.models import Event, RecommendationJob
from recommendations.services import start_recommendation_job

DEMO_EMAIL = "demo@loom.localhost"
DEMO_ORGANIZATION = "Demo Marketing Team"
DEMO_PROJECT = "Spring Launch"


class Command(BaseCommand):
    help = "Create (or reuse) the demo organization, user and project and print how to sign in."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--email", default=DEMO_EMAIL)

    def handle(self, *args: Any, email: str, **options: Any) -> None:
        password = self._password()
        with transaction.atomic():
            user = User.objects.filter(email=email).first()
            if user is None:
                user = User.objects.create_user(email=email, password=password, first_name="Demo", last_name="Marketer")
            else:
                # Keep the printed password true even if someone changed it.
                user.set_password(password)
                user.save(update_fields=["password"])
            EmailAddress.objects.update_or_create(
                user=user, email=email, defaults={"verified": True, "primary": True}
            )
            organization = Organization.objects.filter(memberships__user=user, name=DEMO_ORGANIZATION).first()
            if organization is None:
                organization = create_organization(actor=user, name=DEMO_ORGANIZATION)
                # The demo shows a paid plan: allowance, overage prices and invoices.
                assign_plan(organization=organization, plan_code="pro", reason="demo organization")
            project = Project.objects.filter(organization=organization, name=DEMO_PROJECT).first()
            if project is None:
                project = create_project(
                    actor=user, organization=organization, name=DEMO_PROJECT,
                    description="Product descriptions and ads for the spring collection.",
                )
            shop = self._shop(user, organization, project)
        self.stdout.write(
            self.style.SUCCESS(
                "\nDemo ready.\n"
                f"  URL:          {settings.SITE_URL}\n"
                f"  Email:        {email}\n"
                f"  Password:     {password}\n"
                f"  Organization: {organization.name}\n"
                f"  Project:      {DEMO_PROJECT}\n"
                f"  Shop data:    {shop}\n"
            )
        )

    @staticmethod
    def _shop(user: User, organization: Organization, project: Project) -> str:
        """Import the demo shop's history once and queue a recommendation job on it (the worker runs it)."""
        if Event.objects.filter(project=project).exists():
            return "already imported"
        data_import = import_events(
            organization=organization, project=project, data=demo.events_csv(timezone.now()),
            filename="demo-shop.csv", actor=user,
        )
        if not RecommendationJob.objects.filter(project=project).exists():
            start_recommendation_job(organization=organization, project=project, actor=user, holdout_days=14, seed=7)
        return f"{data_import.events_created} events of {len(demo.catalog())} products imported; recommendations queued"

    @staticmethod
    def _password() -> str:
        """A random password generated once per checkout and kept in var/ (mode 600)."""
        path = settings.VAR_DIR / "demo-password"
        if not path.exists():
            path.write_text(secrets.token_urlsafe(12))
            path.chmod(0o600)
        return path.read_text().strip()
