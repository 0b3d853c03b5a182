from __future__ import annotations

import secrets
from datetime import timedelta

import factory
from django.utils import timezone
from factory.django import DjangoModelFactory

from accounts.models import User
from apikeys.models import ApiKey, Scope
from organizations.models import INVITATION_LIFETIME, Invitation, Membership, Organization, Role
from projects.models import Project

PASSWORD = "correct-horse-battery-staple"


class UserFactory(DjangoModelFactory[User]):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@example.com")
    first_name = factory.Faker("first_name")
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def verified(self, create: bool, extracted: object, **kwargs: object) -> None:
        """Mark the address verified, as allauth requires for login with mandatory verification."""
        if create:
            from allauth.account.models import EmailAddress

            self.save()
            EmailAddress.objects.get_or_create(
                user=self, email=self.email, defaults={"verified": True, "primary": True}
            )


class OrganizationFactory(DjangoModelFactory[Organization]):
    class Meta:
        model = Organization

    name = factory.Sequence(lambda n: f"Organization {n}")
    slug = factory.Sequence(lambda n: f"organization-{n}")


class MembershipFactory(DjangoModelFactory[Membership]):
    class Meta:
        model = Membership

    organization = factory.SubFactory(OrganizationFactory)
    user = factory.SubFactory(UserFactory)
    role = Role.VIEWER


class ProjectFactory(DjangoModelFactory[Project]):
    class Meta:
        model = Project

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"Project {n}")
    slug = factory.Sequence(lambda n: f"project-{n}")
    description = "Spring campaign"


class InvitationFactory(DjangoModelFactory[Invitation]):
    """A pending invitation. Its token is unknown (only the hash is stored); invite through the
    service or the API when a test needs to accept it."""

    class Meta:
        model = Invitation

    organization = factory.SubFactory(OrganizationFactory)
    email = factory.Sequence(lambda n: f"invitee{n}@example.com")
    role = Role.EDITOR
    token_hash = factory.LazyFunction(lambda: secrets.token_hex(32))
    expires_at = factory.LazyFunction(lambda: timezone.now() + INVITATION_LIFETIME)


class ApiKeyFactory(DjangoModelFactory[ApiKey]):
    """A key row whose secret nobody knows; use ``key_for`` (the service) for a usable key."""

    class Meta:
        model = ApiKey

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"Key {n}")
    scope = Scope.WRITE
    prefix = factory.Sequence(lambda n: f"fact{n:04d}")
    secret_hash = factory.LazyFunction(lambda: secrets.token_hex(32))
    expires_at = factory.LazyFunction(lambda: timezone.now() + timedelta(days=30))
