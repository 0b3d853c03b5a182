from __future__ import annotations

from rest_framework import serializers

from apikeys.models import ApiKey, Scope


class ApiKeySerializer(serializers.ModelSerializer[ApiKey]):
    project = serializers.UUIDField(source="project_id", allow_null=True, required=False)
    scope = serializers.ChoiceField(choices=Scope.choices, default=Scope.WRITE)
    masked = serializers.CharField(read_only=True)
    is_active = serializers.BooleanField(read_only=True)
    created_by = serializers.EmailField(source="created_by.email", read_only=True, default=None)

    class Meta:
        model = ApiKey
        fields = [
            "id", "name", "scope", "project", "masked", "is_active", "created_by", "created_at",
            "last_used_at", "expires_at", "revoked_at",
        ]
        read_only_fields = ["id", "masked", "is_active", "created_by", "created_at", "last_used_at", "revoked_at"]


class IssuedApiKeySerializer(ApiKeySerializer):
    key = serializers.CharField(read_only=True, help_text="The full key. Shown once; store it now.")

    class Meta(ApiKeySerializer.Meta):
        fields = [*ApiKeySerializer.Meta.fields, "key"]
