from django.db import migrations


class Migration(migrations.Migration):
    """The admin's "Bulk batchs" and "Webhook deliverys": plurals Django cannot guess."""

    dependencies = [
        ("generation", "0003_variant_original_constraint_report"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="bulkbatch",
            options={"ordering": ["-created_at"], "verbose_name_plural": "bulk batches"},
        ),
        migrations.AlterModelOptions(
            name="webhookdelivery",
            options={"ordering": ["-created_at"], "verbose_name_plural": "webhook deliveries"},
        ),
    ]
