from __future__ import annotations

from rest_framework import serializers

from organizations.models import ASSIGNABLE_ROLE_CHOICES, Invitation, Membership, Organization

ROLE_CHOICES = ASSIGNABLE_ROLE_CHOICES


class OrganizationSerializer(serializers.ModelSerializer[Organization]):
    role = serializers.SerializerMethodField()

    class Meta:
        model = Organization
        fields = ["id", "name", "slug", "created_at", "role"]
        read_only_fields = fields

    def get_role(self, organization: Organization) -> str | None:
        roles: dict[object, str] = self.context.get("roles", {})
        return roles.get(organization.pk)


class MemberSerializer(serializers.ModelSerializer[Membership]):
    email = serializers.EmailField(source="user.email", read_only=True)
    name = serializers.CharField(source="user.display_name", read_only=True)

    class Meta:
        model = Membership
        fields = ["id", "email", "name", "role", "created_at"]
        read_only_fields = ["id", "email", "name", "created_at"]


class RoleChangeSerializer(serializers.Serializer[None]):
    role = serializers.ChoiceField(choices=ROLE_CHOICES)


class TransferOwnershipSerializer(serializers.Serializer[None]):
    pass


class InvitationSerializer(serializers.ModelSerializer[Invitation]):
    role = serializers.ChoiceField(choices=ROLE_CHOICES)
    status = serializers.CharField(read_only=True)
    invited_by = serializers.EmailField(source="invited_by.email", read_only=True, default=None)

    class Meta:
        model = Invitation
        fields = ["id", "email", "role", "status", "invited_by", "created_at", "expires_at"]
        read_only_fields = ["id", "status", "invited_by", "created_at", "expires_at"]


class AcceptInvitationSerializer(serializers.Serializer[None]):
    token = serializers.CharField(max_length=200)
