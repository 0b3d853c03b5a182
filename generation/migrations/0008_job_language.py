from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def project_language(apps, schema_editor):
    """Jobs made before the field were written in their project's language (the only one it had)."""
    job = apps.get_model("generation", "GenerationJob")
    project = apps.get_model("projects", "Project")
    job.objects.update(
        language=Subquery(project.objects.filter(pk=OuterRef("project_id")).values("default_language")[:1])
    )


class Migration(migrations.Migration):
    dependencies = [
        ("generation", "0007_grounding_fact_check"),
        ("projects", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="generationjob",
            name="language",
            field=models.CharField(
                choices=[
                    ("en", "English"), ("de", "German"), ("fr", "French"), ("es", "Spanish"), ("it", "Italian"),
                    ("nl", "Dutch"), ("pt", "Portuguese"), ("sv", "Swedish"), ("da", "Danish"), ("pl", "Polish"),
                    ("ja", "Japanese"), ("zh", "Chinese"),
                ],
                default="en",
                max_length=16,
            ),
        ),
        migrations.RunPython(project_language, migrations.RunPython.noop),
    ]
