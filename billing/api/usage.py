"""``/api/v1/usage``: billed usage grouped by day, project, key or user, with the allowance against the plan;
``/api/v1/subscription``: the organization's plan, and a plan change at period end.

Every member (viewer and up) and every key reads usage and the subscription: it is
what their calls cost. A key restricted to one project sees that project's usage
only, without the organization-wide allowance, and cannot reach the subscription.
Changing the plan is for admins and the owner, signed in (keys cannot).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings

from billing import services, usage
from billing.models import LedgerEntry, Plan, Subscription
from organizations.api.tenancy import TenantViewSet
from organizations.models import Role

Money = {"max_digits": 18, "decimal_places": 6}


class PlanSerializer(serializers.Serializer):  # type: ignore[type-arg]
    code = serializers.CharField()
    name = serializers.CharField()
    monthly_price = serializers.DecimalField(max_digits=12, decimal_places=2)
    included_tokens = serializers.IntegerField()
    price_per_1k_tokens = serializers.DecimalField(max_digits=12, decimal_places=6)
    price_per_gpu_second = serializers.DecimalField(max_digits=12, decimal_places=6)
    overage_allowed = serializers.BooleanField()
    max_concurrent_jobs = serializers.IntegerField()
    max_variants_per_job = serializers.IntegerField()
    max_members = serializers.IntegerField()
    max_running_experiments = serializers.IntegerField(
        allow_null=True, help_text="Experiments running at once in the organization; null: no limit."
    )
    api_rate_limit_per_minute = serializers.IntegerField(help_text="API calls per minute per key.")
    org_rate_limit_per_minute = serializers.IntegerField(help_text="API calls per minute for the organization.")


class UsageRowSerializer(serializers.Serializer):  # type: ignore[type-arg]
    group = serializers.CharField(
        allow_null=True, help_text="The day (YYYY-MM-DD) or the project, API key or user id; null: none."
    )
    label = serializers.CharField()
    tokens_in = serializers.IntegerField()
    tokens_out = serializers.IntegerField()
    tokens = serializers.IntegerField(help_text="Tokens billed, net of refunds.")
    compute_seconds = serializers.DecimalField(max_digits=15, decimal_places=3)
    amount = serializers.DecimalField(**Money, help_text="Money billed beyond the subscription fee.")
    jobs = serializers.IntegerField()


class UsageTotalsSerializer(UsageRowSerializer):
    group = None  # type: ignore[assignment]
    label = None  # type: ignore[assignment]


class AllowanceSerializer(serializers.Serializer):  # type: ignore[type-arg]
    period_start = serializers.DateTimeField()
    period_end = serializers.DateTimeField()
    status = serializers.CharField()
    included_tokens = serializers.IntegerField()
    credit_tokens = serializers.IntegerField()
    used_tokens = serializers.IntegerField()
    reserved_tokens = serializers.IntegerField(help_text="Held by jobs still running.")
    remaining_tokens = serializers.IntegerField()
    overage_tokens = serializers.IntegerField()
    overage_amount = serializers.DecimalField(**Money, help_text="Usage billed this period so far.")
    percent_used = serializers.IntegerField()


class UsageReportSerializer(serializers.Serializer):  # type: ignore[type-arg]
    group_by = serializers.ChoiceField(choices=usage.GROUPINGS)
    start = serializers.DateTimeField(help_text="Start of the range (inclusive).")
    end = serializers.DateTimeField(help_text="End of the range (exclusive).")
    results = UsageRowSerializer(many=True)
    totals = UsageTotalsSerializer()
    plan = PlanSerializer()
    allowance = AllowanceSerializer(
        allow_null=True, help_text="The current period against the plan; null for project-restricted keys."
    )


class UsageQuerySerializer(serializers.Serializer):  # type: ignore[type-arg]
    # Shapes only; billing.usage parses the values and says what is wrong with them.
    group_by = serializers.CharField(required=False, max_length=20)
    start = serializers.CharField(required=False, max_length=10)
    end = serializers.CharField(required=False, max_length=10)


class SubscriptionSerializer(serializers.Serializer):  # type: ignore[type-arg]
    plan = PlanSerializer()
    pending_plan = PlanSerializer(allow_null=True, help_text="Becomes the plan at current_period_end.")
    status = serializers.CharField()
    current_period_start = serializers.DateTimeField()
    current_period_end = serializers.DateTimeField()
    plans = PlanSerializer(many=True, help_text="The plans one can change to.")


class PlanChangeSerializer(serializers.Serializer):  # type: ignore[type-arg]
    plan = serializers.SlugField(
        max_length=40,
        help_text="The code of the plan to move to at the end of the period; the current plan's code "
        "cancels a scheduled change.",
    )


def _plan(plan: Plan | None) -> dict[str, Any] | None:
    return usage.plan_limits(plan) if plan is not None else None


def _subscription_body(organization: Any) -> dict[str, Any]:
    allowance = usage.allowance(organization)
    return {
        "plan": _plan(allowance.plan),
        "pending_plan": _plan(allowance.pending_plan),
        "status": allowance.status,
        "current_period_start": allowance.period_start,
        "current_period_end": allowance.period_end,
        "plans": [usage.plan_limits(plan) for plan in Plan.objects.filter(is_active=True)],
    }


class SingletonSchema(api_settings.DEFAULT_SCHEMA_CLASS):  # type: ignore[misc,name-defined]
    """Documents one object: the router names these views' GET ``list``, which drf-spectacular
    would otherwise describe as an array."""

    def _is_list_view(self, serializer: Any = None) -> bool:
        return False


class UsageViewSet(TenantViewSet):
    queryset = LedgerEntry.objects.all()
    pagination_class = None  # one report, not a list of rows to page through
    schema = SingletonSchema()
    project_field = "project"
    read_role = Role.VIEWER

    @extend_schema(
        parameters=[
            OpenApiParameter("group_by", OpenApiTypes.STR, enum=list(usage.GROUPINGS), description="Default: day."),
            OpenApiParameter("start", OpenApiTypes.DATE, description="First day (UTC); default: the period's."),
            OpenApiParameter("end", OpenApiTypes.DATE, description="Last day (UTC, inclusive); default: the period's."),
        ],
        responses=UsageReportSerializer,
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Billed usage (charges net of refunds) in a date range, grouped, with totals and the plan's allowance."""
        query = UsageQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        organization = self.tenant.organization
        group_by = usage.parse_grouping(query.validated_data.get("group_by"))
        period = usage.parse_range(
            organization, start=query.validated_data.get("start"), end=query.validated_data.get("end")
        )
        entries = self.get_queryset()
        restricted = self.tenant.project_id is not None
        allowance = None if restricted else usage.allowance(organization)
        body = {
            "group_by": group_by,
            "start": period.start,
            "end": period.end,
            "results": usage.grouped(organization, entries, period, group_by),
            "totals": usage.totals(entries, period),
            "plan": usage.plan_limits(services.current_plan(organization)),
            "allowance": None if allowance is None else {**vars(allowance), "percent_used": allowance.percent_used},
        }
        return Response(UsageReportSerializer(body).data)


class SubscriptionViewSet(TenantViewSet):
    queryset = Subscription.objects.all()
    pagination_class = None
    serializer_class = PlanChangeSerializer  # what OPTIONS describes for POST
    schema = SingletonSchema()
    read_role = Role.VIEWER
    write_role = Role.ADMIN

    @extend_schema(responses=SubscriptionSerializer)
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """The organization's plan, its period, a scheduled plan change and the plans to choose from."""
        return Response(SubscriptionSerializer(_subscription_body(self.tenant.organization)).data)

    @extend_schema(request=PlanChangeSerializer, responses=SubscriptionSerializer)
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Change the plan at the end of the current period (admins and the owner).

        400 ``unknown_plan`` for a plan that does not exist or cannot be chosen,
        ``usage_exceeds_plan`` for one below this period's usage or the member count.
        """
        change = PlanChangeSerializer(data=request.data)
        change.is_valid(raise_exception=True)
        organization = self.tenant.organization
        services.change_plan(actor=self.actor, organization=organization, plan_code=change.validated_data["plan"])
        return Response(SubscriptionSerializer(_subscription_body(organization)).data)
