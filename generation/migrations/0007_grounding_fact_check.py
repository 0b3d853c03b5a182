from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("generation", "0006_serving_models"),
    ]

    operations = [
        migrations.AddField(
            model_name="generationjob",
            name="grounding",
            field=models.JSONField(blank=True, default=list),
        ),
        migrations.AddField(
            model_name="variant",
            name="fact_check",
            field=models.JSONField(blank=True, default=dict),
        ),
    ]
