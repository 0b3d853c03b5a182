"""Seed the four plans. Operators edit prices and limits in the admin afterwards.

Free is hard-capped (jobs are refused once its tokens are spent); the paid plans
bill overage per 1,000 tokens. Variants stay within GENERATION_MAX_VARIANTS (8).
"""

from decimal import Decimal

from django.db import migrations

PLANS = [
    {
        "code": "free", "name": "Free", "monthly_price": Decimal("0.00"), "included_tokens": 25_000,
        "price_per_1k_tokens": Decimal("0"), "price_per_gpu_second": Decimal("0"), "max_concurrent_jobs": 2,
        "max_variants_per_job": 2, "max_members": 3, "api_rate_limit_per_minute": 30, "overage_allowed": False,
    },
    {
        "code": "starter", "name": "Starter", "monthly_price": Decimal("19.00"), "included_tokens": 500_000,
        "price_per_1k_tokens": Decimal("0.020000"), "price_per_gpu_second": Decimal("0.000600"),
        "max_concurrent_jobs": 5, "max_variants_per_job": 4, "max_members": 10, "api_rate_limit_per_minute": 120,
        "overage_allowed": True,
    },
    {
        "code": "pro", "name": "Pro", "monthly_price": Decimal("99.00"), "included_tokens": 3_000_000,
        "price_per_1k_tokens": Decimal("0.015000"), "price_per_gpu_second": Decimal("0.000500"),
        "max_concurrent_jobs": 20, "max_variants_per_job": 8, "max_members": 50, "api_rate_limit_per_minute": 600,
        "overage_allowed": True,
    },
    {
        "code": "enterprise", "name": "Enterprise", "monthly_price": Decimal("499.00"), "included_tokens": 20_000_000,
        "price_per_1k_tokens": Decimal("0.010000"), "price_per_gpu_second": Decimal("0.000400"),
        "max_concurrent_jobs": 100, "max_variants_per_job": 8, "max_members": 1000,
        "api_rate_limit_per_minute": 3000, "overage_allowed": True,
    },
]


def seed_plans(apps, schema_editor):
    Plan = apps.get_model("billing", "Plan")
    for plan in PLANS:
        Plan.objects.update_or_create(code=plan["code"], defaults=plan)


def unseed_plans(apps, schema_editor):
    Plan = apps.get_model("billing", "Plan")
    Plan.objects.filter(
        code__in=[p["code"] for p in PLANS], subscriptions__isnull=True, pending_subscriptions__isnull=True
    ).delete()


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_initial")]

    operations = [migrations.RunPython(seed_plans, unseed_plans)]
