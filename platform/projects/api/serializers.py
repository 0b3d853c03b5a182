from __future__ import annotations

from django.conf import settings
from rest_framework import serializers

from projects.models import Project


class ProjectSerializer(serializers.ModelSerializer[Project]):
    slug = serializers.SlugField(max_length=140, required=False, allow_blank=True)
    default_language = serializers.ChoiceField(choices=settings.CONTENT_LANGUAGES, required=False, default="en")
    created_by = serializers.EmailField(source="created_by.email", read_only=True, default=None)

    class Meta:
        model = Project
        fields = ["id", "name", "slug", "description", "default_language", "created_by", "created_at", "updated_at"]
        read_only_fields = ["id", "created_by", "created_at", "updated_at"]
