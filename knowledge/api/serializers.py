"""What the knowledge API reads and answers."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from core.errors import InvalidInput
from core.fields import NonEmptyFileField
from knowledge import limits
from knowledge.models import KnowledgeSource, SourceKind


class KnowledgeSourceSerializer(serializers.ModelSerializer[KnowledgeSource]):
    project = serializers.UUIDField(source="project_id", read_only=True)
    chunks = serializers.SerializerMethodField(help_text="Chunks retrieval can use now (0 while pending).")
    characters = serializers.SerializerMethodField(help_text="Length of the source's extracted text.")

    class Meta:
        model = KnowledgeSource
        fields = [
            "id", "project", "kind", "title", "filename", "mime", "sku", "language", "tags", "valid_from",
            "valid_until", "status", "failure_reason", "chunks", "characters", "content_hash", "created_at",
            "updated_at", "embedded_at",
        ]
        read_only_fields = fields

    def get_chunks(self, source: KnowledgeSource) -> int:
        counted = getattr(source, "chunk_count", None)
        return counted if counted is not None else source.chunks.count()

    def get_characters(self, source: KnowledgeSource) -> int:
        counted = getattr(source, "characters", None)  # annotated by lists, which do not load the text
        return counted if counted is not None else len(source.text)


class KnowledgeSourceDetailSerializer(KnowledgeSourceSerializer):
    class Meta(KnowledgeSourceSerializer.Meta):
        fields = [*KnowledgeSourceSerializer.Meta.fields, "text"]
        read_only_fields = fields


class _FormDateField(serializers.DateField):
    """A nullable date that a multipart form (where JSON's null cannot be written) may send as "" or "null"."""

    def to_internal_value(self, value: Any) -> Any:
        if value in ("", "null"):
            return None
        return super().to_internal_value(value)


class _Metadata(serializers.Serializer[Any]):
    sku = serializers.CharField(required=False, allow_blank=True, max_length=limits.MAX_SKU_LENGTH)
    language = serializers.CharField(required=False, allow_blank=True, max_length=limits.MAX_LANGUAGE_LENGTH)
    tags = serializers.ListField(
        child=serializers.CharField(max_length=limits.MAX_TAG_LENGTH), required=False, max_length=limits.MAX_TAGS
    )
    valid_from = _FormDateField(required=False, allow_null=True)
    valid_until = _FormDateField(required=False, allow_null=True)


class KnowledgeSourceCreateSerializer(_Metadata):
    file = NonEmptyFileField(required=False, help_text="Plain text, Markdown, HTML or PDF.")
    text = serializers.CharField(
        required=False, max_length=limits.MAX_PASTED_TEXT_CHARS, help_text="The text itself, instead of a file."
    )
    title = serializers.CharField(
        required=False, allow_blank=True, max_length=limits.MAX_TITLE_LENGTH, help_text="Default: the file's name."
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("file" in attrs) == ("text" in attrs):
            # Its own code: "exactly one of two optional fields" is a rule OpenAPI cannot state.
            raise InvalidInput(
                "Send either a file or a text.", code="file_or_text", fields={"file": ["Send either a file or a text."]}
            )
        return attrs


class KnowledgeTextCreateSerializer(_Metadata):
    """The JSON form of a new source (the schema's ``application/json`` body): text, never a file."""

    text = serializers.CharField(max_length=limits.MAX_PASTED_TEXT_CHARS, help_text="The text of the document.")
    title = serializers.CharField(required=False, allow_blank=True, max_length=limits.MAX_TITLE_LENGTH)


class KnowledgeSourceUpdateSerializer(_Metadata):
    title = serializers.CharField(required=False, max_length=limits.MAX_TITLE_LENGTH)
    text = serializers.CharField(
        required=False, max_length=limits.MAX_PASTED_TEXT_CHARS, help_text="New text: re-chunked and re-embedded."
    )


class _KindsField(serializers.MultipleChoiceField):
    """Kinds from the query string, where ``?kind=`` (an empty value) means no filter rather than an error."""

    def get_value(self, dictionary: Any) -> Any:
        if hasattr(dictionary, "getlist") and self.field_name in dictionary:
            return [value for value in dictionary.getlist(self.field_name) if value != ""]
        return super().get_value(dictionary)


class KnowledgeSearchSerializer(serializers.Serializer[Any]):
    q = serializers.CharField(max_length=2000, help_text="A brief: what the copy will be about.")
    kind = _KindsField(choices=SourceKind.choices, required=False)
    sku = serializers.CharField(required=False, max_length=2000, help_text="SKUs, comma-separated.")
    tags = serializers.CharField(required=False, max_length=2000, help_text="Tags, comma-separated (any of them).")
    language = serializers.CharField(required=False, max_length=limits.MAX_LANGUAGE_LENGTH)
    k = serializers.IntegerField(required=False, min_value=1, max_value=20)


class RetrievedChunkSerializer(serializers.Serializer[Any]):
    id = serializers.CharField()
    source_id = serializers.CharField()
    source = serializers.CharField()
    text = serializers.CharField()
    score = serializers.FloatField()
    similarity = serializers.FloatField()
    keyword = serializers.FloatField()
    tokens = serializers.IntegerField()
    kind = serializers.CharField()
    sku = serializers.CharField()
